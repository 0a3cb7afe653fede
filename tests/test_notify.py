"""Notifier against a real datagram socket bound by the test, as systemd's would be."""

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss.notify import Notifier


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        server.bind(address)
    else:
        name = f"snapd-vss-test-{uuid.uuid4().hex}"
        server.bind("\0" + name)
        address = "@" + name
    server.settimeout(30)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    try:
        yield server
    finally:
        server.close()


def received(server: socket.socket) -> list[str]:
    return server.recv(65536).decode().split("\n")


@pytest.mark.parametrize("use_libsystemd", [True, False], ids=["libsystemd", "builtin"])
def test_messages_reach_the_socket(notify_socket: socket.socket, use_libsystemd: bool) -> None:
    notifier = Notifier(use_libsystemd=use_libsystemd)
    assert notifier.enabled

    assert notifier.ready("serving on the bus")
    assert received(notify_socket) == ["READY=1", "STATUS=serving on the bus"]

    assert notifier.status("2 writers,\nno session")
    assert received(notify_socket) == ["STATUS=2 writers, no session"]

    assert notifier.stopping()
    assert received(notify_socket) == ["STOPPING=1"]

    assert notifier.watchdog()
    assert received(notify_socket) == ["WATCHDOG=1"]

    assert notifier.extend_timeout(1.5)
    assert received(notify_socket) == ["EXTEND_TIMEOUT_USEC=1500000"]


@pytest.mark.parametrize("use_libsystemd", [True, False], ids=["libsystemd", "builtin"])
def test_without_notify_socket_nothing_happens(
    monkeypatch: pytest.MonkeyPatch, use_libsystemd: bool
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier(use_libsystemd=use_libsystemd)
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.status("x")
    assert not notifier.stopping()


def test_a_gone_socket_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not Notifier(use_libsystemd=False).ready()
    assert "NOTIFY_SOCKET" in os.environ
