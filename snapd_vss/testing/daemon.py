"""Run snapd-vssd as a real process on a private bus, for tests, the demo and benchmarks.

Readiness is learnt the way systemd learns it: the daemon sends READY=1 to the
datagram socket in NOTIFY_SOCKET, which this harness binds itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snapd_vss.errors import Failed

DEFAULT_TEST_CONFIG = """\
[timeouts]
freeze_window_s = {freeze_window_s}
commit_window_s = {commit_window_s}
writer_call_s = {writer_call_s}
identify_s = {identify_s}

[providers]
enabled = ["btrfs"]
"""


@dataclass
class DaemonTimeouts:
    freeze_window_s: float = 10.0
    commit_window_s: float = 5.0
    writer_call_s: float = 5.0
    identify_s: float = 3.0


@dataclass
class VssDaemon:
    """A snapd-vssd process; ``start()`` returns once it has told READY=1."""

    bus_address: str
    workdir: Path
    timeouts: DaemonTimeouts = field(default_factory=DaemonTimeouts)
    extra_config: str = ""
    python: str = sys.executable
    process: subprocess.Popen[bytes] | None = None
    ready_after_s: float = 0.0
    log_path: Path = field(init=False)
    notifications: list[str] = field(default_factory=list)
    _notify: socket.socket | None = None

    def __post_init__(self) -> None:
        self.state_dir = self.workdir / "state"
        self.runtime_dir = self.workdir / "run"
        self.config_path = self.workdir / "snapd-vss.toml"
        self.log_path = self.workdir / "snapd-vssd.log"
        self.notify_path = self.workdir / "notify.sock"

    def write_config(self) -> None:
        self.config_path.write_text(
            DEFAULT_TEST_CONFIG.format(**vars(self.timeouts)) + self.extra_config
        )

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DBUS_SYSTEM_BUS_ADDRESS=self.bus_address,
            STATE_DIRECTORY=str(self.state_dir),
            RUNTIME_DIRECTORY=str(self.runtime_dir),
            NOTIFY_SOCKET=str(self.notify_path),
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        env.pop("JOURNAL_STREAM", None)
        env.pop("INVOCATION_ID", None)
        return env

    def start(self, timeout_s: float = 30.0) -> VssDaemon:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.notify_path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.notify_path))
        notify.settimeout(0.2)
        self._notify = notify  # kept open while the daemon runs, as systemd does
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        started = time.monotonic()
        self.process = subprocess.Popen(
            [self.python, "-m", "snapd_vss.ipc.daemon", "--config", str(self.config_path)],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        try:
            while True:
                if self.process.poll() is not None:
                    raise Failed(
                        f"snapd-vssd exited with {self.process.returncode} before READY:\n"
                        + self.log_text()
                    )
                if time.monotonic() - started > timeout_s:
                    raise Failed(f"snapd-vssd not READY within {timeout_s} s:\n{self.log_text()}")
                try:
                    data = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                self.notifications.append(data)
                if "READY=1" in data.split("\n"):
                    self.ready_after_s = time.monotonic() - started
                    return self
        except BaseException:
            self.kill()
            raise

    def drain_notifications(self) -> list[str]:
        """Every sd_notify message received so far."""
        if self._notify is not None:
            self._notify.settimeout(0)
            while True:
                try:
                    self.notifications.append(self._notify.recv(4096).decode())
                except (BlockingIOError, TimeoutError):
                    break
        return self.notifications

    def _close_notify(self) -> None:
        if self._notify is not None:
            self.drain_notifications()
            self._notify.close()
            self._notify = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
            self._close_notify()
            return code
        except subprocess.TimeoutExpired:
            self.kill()
            raise Failed(f"snapd-vssd did not stop within {timeout_s} s of SIGTERM") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_notify()


@contextlib.contextmanager
def running_daemon(bus_address: str, **kwargs: Any) -> Iterator[VssDaemon]:
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vssd-"))
    daemon = VssDaemon(bus_address, workdir, **kwargs)
    try:
        yield daemon.start()
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
