"""vssctl as a subprocess against the real snapd-vssd on a private bus, on real btrfs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.testing.bus import VENV_PYTHON, LocalUser, PrivateBus, run_as
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, WriterProcess
from snapd_vss.testing.loopdev import LoopFs

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


@dataclass
class Vssctl:
    bus: PrivateBus

    def argv(self, args: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "snapd_vss.cli", "--bus", self.bus.address, *args]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> Result:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        done = subprocess.run(
            self.argv(args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=REPO,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check:
            assert done.returncode == 0, f"vssctl {' '.join(args)} failed: {result}"
        return result


@pytest.fixture
def vssctl(private_bus: PrivateBus, vss_daemon: VssDaemon) -> Vssctl:
    return Vssctl(private_bus)


def _data(volume: LoopFs, name: str, text: str = "before\n") -> str:
    path = os.path.join(volume.mount_point, name)
    os.makedirs(path, exist_ok=True)
    Path(path, "data.txt").write_text(text)
    return path


def _writer(
    scripted_writers: WriterFactory, vssctl: Vssctl, name: str, data: str, *args: str
) -> WriterProcess:
    writer = scripted_writers(name, data, *args)
    writer.wait_for_event("identify")
    # Registered once the daemon lists it.
    for _ in range(400):
        names = [w["name"] for w in vssctl("list", "writers", "--json").json()]  # type: ignore[union-attr]
        if name in names:
            return writer
        writer.process.poll()
        assert writer.process.returncode is None, writer.log_path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"writer {name} never registered: {writer.log_path.read_text()}")


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _one_error_line(result: Result, code: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines, result
    line = lines[-1]
    assert line.startswith("vssctl: "), result
    assert line.endswith(f"(org.snapdvss.Vss1.Error.{code})"), result
    return line


# -- listings --


def test_listings_on_an_idle_service(vssctl: Vssctl) -> None:
    assert vssctl("list", "writers", "--json").json() == []
    assert vssctl("--json", "list", "snapshots").json() == []
    providers = vssctl("list", "providers", "--json").json()
    assert isinstance(providers, list)
    btrfs = next(p for p in providers if p["name"] == "btrfs")
    assert btrfs["available"] is True
    assert btrfs["path"] == "/org/snapdvss/Vss1/providers/btrfs"
    text = vssctl("list", "providers").stdout.splitlines()
    assert text[0].split() == ["NAME", "TYPE", "VERSION", "AVAILABLE", "REASON"]
    assert any(line.split()[:1] == ["btrfs"] and "yes" in line.split() for line in text[1:])
    assert vssctl("list", "writers").stdout.split() == [
        "NAME",
        "WRITER",
        "ID",
        "INSTANCE",
        "INSTANCE",
        "ID",
        "STATE",
        "LAST",
        "ERROR",
    ]


def test_list_writers(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    _writer(scripted_writers, vssctl, "alpha", _data(btrfs_volume, "alpha"))
    _writer(scripted_writers, vssctl, "beta", _data(btrfs_volume, "beta"))
    writers = vssctl("list", "writers", "--json").json()
    assert isinstance(writers, list)
    assert [w["name"] for w in writers] == ["alpha", "beta"]
    assert {w["state"] for w in writers} == {"STABLE"}
    assert all(w["writer_id"] and w["instance_id"] and w["owner"].startswith(":") for w in writers)
    lines = vssctl("list", "writers").stdout.splitlines()
    assert len(lines) == 3
    assert lines[1].split()[0] == "alpha" and "STABLE" in lines[1].split()


# -- create / delete / expose --


def test_create_persistent_list_expose_delete(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    data = _data(btrfs_volume, "w1")
    writer = _writer(scripted_writers, vssctl, "w1", data)

    summary = vssctl("create", btrfs_volume.mount_point, "--json").json()
    assert isinstance(summary, dict)
    assert summary["context"] == "APP_ROLLBACK"
    assert [(c["logical_path"], c["name"]) for c in summary["components"]] == [("files", "w1")]
    (snap,) = summary["snapshots"]
    assert snap["persistent"] is True
    assert snap["volume"] == btrfs_volume.mount_point
    assert snap["provider"] == "btrfs"
    assert summary["freeze_window_ms"] > 0
    writer.wait_for_event("backup_shutdown")
    assert [e for e in writer.events() if e != "identify"] == [
        "prepare_backup",
        "prepare_for_freeze",
        "freeze",
        "thaw",
        "post_snapshot",
        "backup_complete",
        "backup_shutdown",
    ]

    Path(data, "data.txt").write_text("after\n")
    listed = vssctl("list", "snapshots", "--json").json()
    assert isinstance(listed, list)
    assert [s["id"] for s in listed] == [snap["id"]]
    assert listed[0]["snapshot_set_id"] == summary["snapshot_set_id"]
    assert snap["id"] in vssctl("list", "snapshots").stdout

    mount_point = tmp_path / "view"
    mount_point.mkdir()
    exposed = vssctl("expose", snap["id"], str(mount_point)).stdout.strip()
    try:
        assert Path(exposed, "w1", "data.txt").read_text() == "before\n"
        assert vssctl("list", "snapshots", "--json").json()[0]["exposed_path"] == exposed  # type: ignore[index]
    finally:
        vssctl("unexpose", snap["id"])
    assert not _mounted(str(mount_point))

    deleted = vssctl("delete", "--oldest", "--volume", data, "--json").json()
    assert deleted == {"deleted": [snap["id"]]}
    assert vssctl("list", "snapshots", "--json").json() == []


def test_create_without_writers_and_delete_all(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    writer = _writer(scripted_writers, vssctl, "w1", _data(btrfs_volume, "w1"))
    first = vssctl("create", "--no-writers", btrfs_volume.mount_point, "--json").json()
    second = vssctl("create", "--no-writers", btrfs_volume.mount_point, "--json").json()
    assert isinstance(first, dict) and isinstance(second, dict)
    assert first["context"] == "NAS_ROLLBACK"
    assert first["components"] == []
    assert writer.events() == ["identify"] * writer.events().count("identify")
    text = vssctl("create", "--no-writers", btrfs_volume.mount_point).stdout
    assert text.startswith("Snapshot set ")
    assert "Freeze window " in text.splitlines()[1]
    assert len(vssctl("list", "snapshots", "--json").json()) == 3  # type: ignore[arg-type]
    out = vssctl("delete", "--all").stdout.split()
    assert len(out) == 6 and out[::2] == ["deleted"] * 3
    assert first["snapshots"][0]["id"] in out
    assert vssctl("list", "snapshots", "--json").json() == []


def test_persistent_snapshots_outlive_the_daemon(
    vssctl: Vssctl, vss_daemon: VssDaemon, btrfs_volume: LoopFs
) -> None:
    summary = vssctl("create", "--no-writers", btrfs_volume.mount_point, "--json").json()
    assert isinstance(summary, dict)
    vss_daemon.stop()
    vss_daemon.start()
    listed = vssctl("list", "snapshots", "--json").json()
    assert [s["id"] for s in listed] == [summary["snapshots"][0]["id"]]  # type: ignore[union-attr]
    vssctl("delete", summary["snapshots"][0]["id"])
    assert vssctl("list", "snapshots", "--json").json() == []


# -- exec --

READER = """
import json, os, pathlib, sys
env = {k: v for k, v in os.environ.items() if k.startswith("VSS_")}
pathlib.Path(sys.argv[1]).write_text(json.dumps(env))
relative = sys.argv[3]
original = pathlib.Path(os.environ["VSS_VOLUME_0"], relative)
original.write_text("changed while the backup ran\\n")
copy = pathlib.Path(os.environ["VSS_SNAPSHOT_0"], relative).read_text()
print("snapshot says", copy.strip())
sys.exit(int(sys.argv[2]))
"""


def test_exec_runs_the_command_on_the_snapshot(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    data = _data(btrfs_volume, "w1")
    writer = _writer(scripted_writers, vssctl, "w1", data)
    env_file = tmp_path / "env.json"
    bcd_file = tmp_path / "bcd.xml"
    result = vssctl(
        "exec",
        data,
        "--save-components",
        str(bcd_file),
        "--",
        sys.executable,
        "-c",
        READER,
        str(env_file),
        "0",
        "data.txt",
    )
    assert result.stdout == "snapshot says before\n"
    env = json.loads(env_file.read_text())
    assert env["VSS_VOLUME_0"] == data
    assert env["VSS_SNAPSHOT_COUNT"] == "1"
    assert env["VSS_SNAPSHOT_PATHS"] == env["VSS_SNAPSHOT_0"]
    assert env["VSS_SNAPSHOT_0"] == os.path.join(env["VSS_SNAPSHOT_ROOT_0"], "w1")
    assert env["VSS_SNAPSHOT_SET_ID"]
    assert Path(data, "data.txt").read_text() == "changed while the backup ran\n"

    writer.wait_for_event("backup_shutdown")
    assert [e for e in writer.events() if e != "identify"] == [
        "prepare_backup",
        "prepare_for_freeze",
        "freeze",
        "thaw",
        "post_snapshot",
        "backup_complete",
        "backup_shutdown",
    ]
    document = parse_backup_components(bcd_file.read_text())
    assert document.snapshot_set_id == env["VSS_SNAPSHOT_SET_ID"]
    (writer_entry,) = document.writers
    (component,) = writer_entry.components
    assert component.backup_succeeded
    # The non-persistent snapshot went with the session.
    assert vssctl("list", "snapshots", "--json").json() == []
    assert not _mounted(env["VSS_SNAPSHOT_ROOT_0"])


def test_exec_failing_command_marks_the_backup_failed(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    data = _data(btrfs_volume, "w1")
    writer = _writer(scripted_writers, vssctl, "w1", data)
    bcd_file = tmp_path / "bcd.xml"
    result = vssctl(
        "--json",
        "exec",
        btrfs_volume.mount_point,
        "--save-components",
        str(bcd_file),
        "--",
        sys.executable,
        "-c",
        READER,
        str(tmp_path / "env.json"),
        "3",
        "w1/data.txt",
        check=False,
    )
    assert result.returncode == 3, result
    assert "exited with 3" in result.stderr
    summary = json.loads(result.stdout.split("snapshot says before\n", 1)[1])
    assert summary["command_status"] == 3
    assert summary["backup_succeeded"] is False
    writer.wait_for_event("backup_shutdown")
    document = parse_backup_components(bcd_file.read_text())
    assert [c.backup_succeeded for w in document.writers for c in w.components] == [False]
    assert vssctl("list", "snapshots", "--json").json() == []


def test_exec_missing_command_and_signals(vssctl: Vssctl, btrfs_volume: LoopFs) -> None:
    missing = vssctl(
        "exec", "--no-writers", btrfs_volume.mount_point, "--", "/nonexistent/cmd", check=False
    )
    assert missing.returncode == 127
    assert "command not found" in missing.stderr
    killed = vssctl(
        "exec",
        "--no-writers",
        btrfs_volume.mount_point,
        "--",
        sys.executable,
        "-c",
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        check=False,
    )
    assert killed.returncode == 128 + 9
    assert vssctl("list", "snapshots", "--json").json() == []


def test_exec_writer_veto_is_a_named_error(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    data = _data(btrfs_volume, "w1")
    writer = _writer(scripted_writers, vssctl, "w1", data, "--veto-in", "freeze=retryable")
    marker = tmp_path / "ran"
    result = vssctl("exec", data, "--", "touch", str(marker), check=False)
    line = _one_error_line(result, "WriterRetryable")
    assert line.startswith("vssctl: the snapshot set was not created: ")
    assert result.returncode == 14
    assert not marker.exists()
    writer.wait_for_event("abort")
    listed = vssctl("list", "writers", "--json").json()
    assert isinstance(listed, list)
    assert listed[0]["state"] == "FAILED_AT_FREEZE"
    assert listed[0]["last_error"] == "RETRYABLE"
    assert "FAILED_AT_FREEZE" in vssctl("list", "writers").stdout
    assert vssctl("list", "snapshots", "--json").json() == []


# -- errors --


def test_errors_are_one_line_with_a_distinct_code(vssctl: Vssctl, tmp_path: Path) -> None:
    unknown = vssctl("delete", "0b0e0f00-0000-4000-8000-000000000000", check=False)
    assert unknown.returncode == 6, unknown
    assert _one_error_line(unknown, "NotFound") == (
        "vssctl: cannot delete snapshot 0b0e0f00-0000-4000-8000-000000000000: there is no "
        "snapshot 0b0e0f00-0000-4000-8000-000000000000; see vssctl list snapshots for the ids "
        "(org.snapdvss.Vss1.Error.NotFound)"
    )
    exposed = vssctl("expose", "no-such-id", check=False)
    assert exposed.returncode == 6
    assert "there is no snapshot no-such-id" in _one_error_line(exposed, "NotFound")

    not_btrfs = vssctl("create", "--no-writers", str(tmp_path), check=False)
    assert not_btrfs.returncode == 9, not_btrfs
    line = _one_error_line(not_btrfs, "VolumeNotSupported")
    assert line.startswith(f"vssctl: cannot add {tmp_path} to the snapshot set: ")

    nothing = vssctl("delete", "--oldest", check=False)
    assert nothing.returncode == 6
    _one_error_line(nothing, "NotFound")

    assert vssctl("list", "snapshots", "--json").json() == []


def test_a_plain_user_may_list_but_not_create(
    vssctl: Vssctl,
    btrfs_volume: LoopFs,
    nonroot_user: LocalUser,
    nonroot_pythonpath: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(nonroot_pythonpath)}
    base = [str(VENV_PYTHON), "-m", "snapd_vss.cli", "--bus", vssctl.bus.address]
    listed = run_as(nonroot_user, [*base, "list", "providers", "--json"], env)
    assert listed.returncode == 0, listed
    denied = run_as(nonroot_user, [*base, "create", "--no-writers", btrfs_volume.mount_point], env)
    assert denied.returncode == 7, denied
    assert denied.stderr.strip().endswith("(org.snapdvss.Vss1.Error.AccessDenied)")
    assert vssctl("list", "snapshots", "--json").json() == []


# -- exec and signals --

SLEEPER = """
import pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("running")
time.sleep(600)
"""


def _start_exec(vssctl: Vssctl, volume: str, marker: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        vssctl.argv(["exec", volume, "--", sys.executable, "-c", SLEEPER, str(marker)]),
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, so cleanup can reach the command too
    )


def _wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def test_sigterm_to_exec_reaches_the_command_and_closes_the_session(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    writer = _writer(scripted_writers, vssctl, "w1", _data(btrfs_volume, "w1"))
    marker = tmp_path / "running"
    process = _start_exec(vssctl, btrfs_volume.mount_point, marker)
    try:
        _wait_for(lambda: marker.exists() or process.poll() is not None, "the command to start")
        assert marker.exists(), process.communicate()
        assert len(vssctl("list", "snapshots", "--json").json()) == 1  # type: ignore[arg-type]
        process.send_signal(signal.SIGTERM)  # to vssctl only
        _, stderr = process.communicate(timeout=120)
    finally:
        _kill_group(process)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "marking the backup failed" in stderr
    writer.wait_for_event("backup_shutdown")
    assert "backup_complete" in writer.events()
    assert vssctl("list", "snapshots", "--json").json() == []


def test_a_killed_vssctl_leaves_no_snapshot_behind(
    vssctl: Vssctl, btrfs_volume: LoopFs, scripted_writers: WriterFactory, tmp_path: Path
) -> None:
    writer = _writer(scripted_writers, vssctl, "w1", _data(btrfs_volume, "w1"))
    marker = tmp_path / "running"
    process = _start_exec(vssctl, btrfs_volume.mount_point, marker)
    try:
        _wait_for(lambda: marker.exists() or process.poll() is not None, "the command to start")
        assert marker.exists(), process.communicate()
        process.kill()  # vssctl only: its connection drops, the service aborts the session
        process.wait(30)
        _wait_for(
            lambda: vssctl("list", "snapshots", "--json").json() == [],
            "the service to release the snapshot of the dead session",
        )
    finally:
        _kill_group(process)
    writer.wait_for_event("abort")  # the requestor went away mid-session
    assert "backup_complete" not in writer.events()
