import io
import logging
import os
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss.errors import InvalidArgs
from snapd_vss.logs import bind, log_fields, running_under_journal, setup_logging

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def journal_stream_of(path: Path) -> str:
    info = path.stat()
    return f"{info.st_dev}:{info.st_ino}"


def test_journal_stream_must_match_stderr(tmp_path: Path) -> None:
    ours, other = tmp_path / "ours", tmp_path / "other"
    ours.touch()
    other.touch()
    with ours.open("w") as stderr:
        fd = stderr.fileno()
        assert running_under_journal({"JOURNAL_STREAM": journal_stream_of(ours)}, fd)
        assert not running_under_journal({"JOURNAL_STREAM": journal_stream_of(other)}, fd)
        assert not running_under_journal({"JOURNAL_STREAM": "garbage"}, fd)
        assert not running_under_journal({}, fd)
        # A service whose stderr systemd did not connect still has INVOCATION_ID.
        assert running_under_journal({"INVOCATION_ID": uuid.uuid4().hex}, fd)


def test_stderr_shows_fields_as_key_value(restore_root_logger: None) -> None:
    out = io.StringIO()
    log = setup_logging("snapd-vssd", logging.DEBUG, env={}, stream=out)
    log_fields(log, logging.INFO, "froze %d filesystems", 2, SESSION="3", WRITER="example db")
    bind(logging.getLogger("snapd_vss.test"), SNAPSHOT_SET_ID="abc").warning(
        "thawed", extra={"WRITER": "w1"}
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "INFO snapd-vssd: froze 2 filesystems" in lines[0]
    assert lines[0].endswith('SESSION=3 WRITER="example db"')
    assert "WARNING snapd_vss.test: thawed" in lines[1]
    assert lines[1].endswith("SNAPSHOT_SET_ID=abc WRITER=w1")


def test_setup_twice_keeps_one_handler(restore_root_logger: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("a", env={}, stream=first)
    log = setup_logging("a", logging.WARNING, env={}, stream=second)
    log.info("hidden")
    log.warning("shown")
    assert first.getvalue() == ""
    assert "hidden" not in second.getvalue()
    assert second.getvalue().count("shown") == 1


def test_bad_field_names_are_refused() -> None:
    with pytest.raises(InvalidArgs, match="log field name"):
        log_fields(logging.getLogger("x"), logging.INFO, "m", session="lower")
    with pytest.raises(InvalidArgs, match="log field name"):
        bind(logging.getLogger("x"), _PRIVATE="no")


def parse_journal_datagram(data: bytes) -> dict[str, bytes]:
    """Decode journald's native protocol: KEY=value lines, or KEY, a size and raw bytes."""
    fields: dict[str, bytes] = {}
    while data:
        line_end = data.index(b"\n")
        line = data[:line_end]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            data = data[line_end + 1 :]
        else:
            key = line
            (size,) = struct.unpack("<Q", data[line_end + 1 : line_end + 9])
            value = data[line_end + 9 : line_end + 9 + size]
            data = data[line_end + 10 + size :]
        fields[key.decode()] = value
    return fields


@pytest.fixture
def journal_socket() -> Iterator[socket.socket]:
    """A datagram socket where sd_journal_send() sends; only where no journald runs."""
    if JOURNAL_SOCKET.exists():
        pytest.skip("a real journald owns /run/systemd/journal/socket; use journalctl there")
    created = [p for p in (JOURNAL_SOCKET.parent.parent, JOURNAL_SOCKET.parent) if not p.exists()]
    for directory in created:
        directory.mkdir(mode=0o755)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        server.bind(str(JOURNAL_SOCKET))
        server.settimeout(30)
        yield server
    finally:
        server.close()
        JOURNAL_SOCKET.unlink(missing_ok=True)
        for directory in reversed(created):
            directory.rmdir()


def test_under_systemd_fields_become_journal_fields(
    tmp_path: Path, journal_socket: socket.socket, restore_root_logger: None
) -> None:
    stderr_file = tmp_path / "stderr"
    stderr_file.touch()
    marker = uuid.uuid4().hex
    with stderr_file.open("w") as stderr:
        env = {"JOURNAL_STREAM": journal_stream_of(stderr_file)}
        log = setup_logging("snapd-vssd", logging.INFO, env=env, stream=stderr)
        log_fields(log, logging.WARNING, "writer %s timed out", marker, SESSION="7", WRITER="db")
    assert stderr_file.read_text() == "", "under the journal nothing goes to stderr"
    while True:
        fields = parse_journal_datagram(journal_socket.recv(1 << 20))
        if marker.encode() in fields.get("MESSAGE", b""):
            break
    assert fields["MESSAGE"] == f"writer {marker} timed out".encode()
    assert fields["SESSION"] == b"7"
    assert fields["WRITER"] == b"db"
    assert fields["PRIORITY"] == b"4"
    assert fields["SYSLOG_IDENTIFIER"] == b"snapd-vssd"
    assert fields["LOGGER"] == b"snapd-vssd"
    assert os.path.basename(fields["CODE_FILE"].decode()) == "test_logs.py"
