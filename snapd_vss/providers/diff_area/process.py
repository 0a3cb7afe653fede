"""Starting and stopping volume servers, and the loop devices on their files.

Blocking helpers (subprocess, sockets): the provider runs them in a worker thread; tests
and the benchmark call them directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from snapd_vss.errors import ProviderFailure, from_code
from snapd_vss.providers.diff_area import control
from snapd_vss.providers.diff_area.server import MOUNT_DIR, PID_FILE, VOLUME_NAME

SERVER_MODULE = "snapd_vss.providers.diff_area.server"
LOG_FILE = "server.log"


def mountpoint(run_dir: str) -> str:
    return os.path.join(run_dir, MOUNT_DIR)


def device_file(run_dir: str) -> str:
    return os.path.join(run_dir, MOUNT_DIR, VOLUME_NAME)


def socket_path(run_dir: str) -> str:
    return os.path.join(run_dir, control.SOCKET_NAME)


def call(run_dir: str, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """Blocking version of :func:`.control.call`."""
    path = socket_path(run_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(control.encode({"op": op, **args}))
            with sock.makefile("rb") as reader:
                line = reader.readline(control.MAX_LINE)
    except OSError as exc:
        raise ProviderFailure(
            f"the diff-area server at {path} did not answer {op!r}: {exc}"
        ) from exc
    if not line:
        raise ProviderFailure(f"the diff-area server at {path} closed the connection")
    reply = control.decode(line)
    if not reply.get("ok"):
        raise from_code(str(reply.get("code", "Failed")), str(reply.get("message", "")))
    return reply


def server_pid(run_dir: str) -> int | None:
    """The pid of the live server of this run dir, if it answers."""
    try:
        return int(call(run_dir, "ping", timeout=5.0)["pid"])
    except ProviderFailure:
        return None


def start_server(volume_dir: str, run_dir: str, timeout: float = 20.0) -> int:
    """Start a server in its own session (it outlives the daemon); wait until it serves."""
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    cleanup_mount(run_dir)
    log_path = os.path.join(run_dir, LOG_FILE)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", SERVER_MODULE, "--volume-dir", volume_dir, "--run-dir", run_dir],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProviderFailure(
                f"the diff-area server for {volume_dir} exited with {proc.returncode}: "
                f"{_tail(log_path)}"
            )
        if os.path.exists(socket_path(run_dir)) and server_pid(run_dir) == proc.pid:
            return proc.pid
        time.sleep(0.05)
    stop_pid(proc.pid)
    raise ProviderFailure(f"the diff-area server for {volume_dir} did not start: {_tail(log_path)}")


def stop_server(run_dir: str, timeout: float = 20.0) -> None:
    """Ask the server to stop (it unmounts its FUSE mount); kill it if it does not."""
    pid = server_pid(run_dir)
    if pid is not None:
        with contextlib.suppress(ProviderFailure):
            call(run_dir, "stop", timeout=5.0)
        _wait_gone(pid, timeout)
        stop_pid(pid)
    else:
        pid = _pid_from_file(run_dir)
        if pid is not None:
            stop_pid(pid)
    cleanup_mount(run_dir)


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, timeout):
            return


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _pid_from_file(run_dir: str) -> int | None:
    try:
        with open(os.path.join(run_dir, PID_FILE)) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def cleanup_mount(run_dir: str) -> None:
    """Lazily unmount a FUSE mount left by a dead server (its files give ENOTCONN).

    Loop devices still on its device file are detached first (a busy one goes away when
    its filesystem is unmounted), else they would be left pointing at nothing.
    """
    mnt = mountpoint(run_dir)
    if is_mounted(mnt):
        for dev in loops_backed_by(device_file(run_dir)):
            loop_detach(dev)
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)


def is_mounted(path: str) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == real for line in f)


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return " | ".join(f.read().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------ loop devices


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProviderFailure(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


def loop_attach(path: str, *, read_only: bool) -> str:
    argv = ["losetup", "--find", "--show", "--direct-io=off"]
    if read_only:
        argv.append("--read-only")
    return _run([*argv, path])


def loop_detach(device: str) -> None:
    subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def loop_backing_file(device: str) -> str:
    """The backing file of ``/dev/loopN`` ("" if not a loop device or unbound)."""
    name = os.path.basename(os.path.realpath(device))
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            return f.read().strip()
    except OSError:
        return ""


def loops_backed_by(path: str) -> list[str]:
    real = os.path.realpath(path)
    found = []
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith("loop") and loop_backing_file("/dev/" + name) in (path, real):
            found.append("/dev/" + name)
    return found
