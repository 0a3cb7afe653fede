"""The freeze guard: a tiny process that holds filesystems frozen and always thaws them.

    python -m snapd_vss.freeze.guard --deadline SECONDS [--marker-dir DIR] MOUNT...
    python -m snapd_vss.freeze.guard --on-request [--marker-dir DIR]

It runs in its own session (the client starts it so), so a signal to the daemon's
process group does not reach it, and it outlives the daemon just long enough to thaw.
With ``--on-request`` it is started ahead of time (Python's start-up then stays out of
the commit window): it prints ``READY`` and waits for one line ``FREEZE <deadline
seconds> <mount>...`` (mounts %-encoded); stdin EOF or a signal before that ends it
with nothing frozen. Then, or at once when started with mounts:

1. records the mounts in a marker file in ``--marker-dir`` (if given);
2. FIFREEZEs each mount in order and prints ``FROZEN``; if one fails it thaws the
   ones it froze and prints ``ERROR <mount> <errno> <message>`` (mount %-encoded);
3. waits for a ``THAW`` line on stdin, stdin EOF (the daemon died), SIGTERM/SIGINT/
   SIGHUP, or the deadline (counted from its start);
4. FITHAWs all in reverse order (a failure other than "not frozen" is reported as
   ``THAW_ERROR <mount> <errno> <message>``), removes the marker and prints
   ``THAWED`` or ``THAWED_BY_DEADLINE``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import select
import signal
import sys
import time
from urllib.parse import quote, unquote

from snapd_vss.freeze.ioctl import freeze_fd, open_mount, thaw_fd
from snapd_vss.freeze.markers import remove_marker, write_marker

READY = "READY"
FREEZE = "FREEZE"
FROZEN = "FROZEN"
THAWED = "THAWED"
THAWED_BY_DEADLINE = "THAWED_BY_DEADLINE"
ERROR = "ERROR"
THAW_ERROR = "THAW_ERROR"
THAW = "THAW"


def _say(line: str) -> None:
    """Print a protocol line; the reader may be gone (daemon died), which is fine."""
    with contextlib.suppress(OSError):
        os.write(1, (line + "\n").encode())


def _error_line(kind: str, what: str, e: OSError) -> str:
    code = e.errno or 0
    return f"{kind} {quote(what, safe='/')} {code} {e.strerror or os.strerror(code)}"


def _protect_from_oom() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("-1000")
    except OSError:
        pass


def _thaw_all(frozen: list[tuple[str, int]]) -> None:
    for mount, fd in reversed(frozen):
        try:
            thaw_fd(fd)
        except OSError as e:
            _say(_error_line(THAW_ERROR, mount, e))
    frozen.clear()


def freeze_request(deadline_s: float, mounts: list[str]) -> str:
    """The line that asks an ``--on-request`` guard to freeze ``mounts``."""
    return " ".join([FREEZE, repr(float(deadline_s)), *(quote(m, safe="/") for m in mounts)])


def _parse_request(line: bytes) -> tuple[float, list[str]] | None:
    words = line.decode(errors="replace").split()
    if len(words) < 3 or words[0] != FREEZE:
        return None
    try:
        deadline_s = float(words[1])
    except ValueError:
        return None
    return deadline_s, [unquote(w) for w in words[2:]]


def _wait_for_request(wake_fd: int) -> tuple[float, list[str], bytes] | None:
    """(deadline, mounts, bytes read after the request) or None (EOF, signal, bad line)."""
    buffered = b""
    while b"\n" not in buffered:
        ready, _, _ = select.select([0, wake_fd], [], [])
        if wake_fd in ready:
            return None
        data = os.read(0, 4096)
        if not data:
            return None
        buffered += data
    line, rest = buffered.split(b"\n", 1)
    request = _parse_request(line)
    if request is None:
        _say(f"{ERROR} - 0 not a freeze request: {line[:200]!r}")
        return None
    return request[0], request[1], rest


def _wait(deadline: float, wake_fd: int, buffered: bytes = b"") -> str:
    """Block until THAW / EOF / signal (-> THAWED) or the deadline (-> THAWED_BY_DEADLINE)."""
    if any(line.strip() == THAW.encode() for line in buffered.split(b"\n")):
        return THAWED
    buffered = buffered.rsplit(b"\n", 1)[-1]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return THAWED_BY_DEADLINE
        ready, _, _ = select.select([0, wake_fd], [], [], remaining)
        if wake_fd in ready:
            return THAWED
        if 0 in ready:
            data = os.read(0, 4096)
            if not data:
                return THAWED  # EOF: the daemon is gone
            buffered += data
            lines = buffered.split(b"\n")
            buffered = lines.pop()
            if any(line.strip() == THAW.encode() for line in lines):
                return THAWED


def _install_signal_wakeup() -> int:
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda _s, _f: None)
    return wake_r


def run_on_request(marker_dir: str) -> int:
    wake_fd = _install_signal_wakeup()
    _protect_from_oom()
    _say(READY)
    request = _wait_for_request(wake_fd)
    if request is None:
        return 0  # nothing was asked, nothing is frozen
    deadline_s, mounts, rest = request
    return run(mounts, deadline_s, marker_dir, wake_fd, rest)


def run(
    mounts: list[str],
    deadline_s: float,
    marker_dir: str,
    wake_fd: int | None = None,
    buffered: bytes = b"",
) -> int:
    deadline = time.monotonic() + deadline_s
    if wake_fd is None:
        wake_fd = _install_signal_wakeup()
        _protect_from_oom()
    opened: list[tuple[str, int]] = []
    frozen: list[tuple[str, int]] = []
    marker = ""
    outcome = THAWED
    try:
        for mount in mounts:
            try:
                opened.append((mount, open_mount(mount)))
            except OSError as e:
                _say(_error_line(ERROR, mount, e))
                return 1
            except ValueError:  # a NUL in the path
                _say(_error_line(ERROR, mount, OSError(errno.EINVAL, "not a path")))
                return 1
        if marker_dir:
            try:
                marker = write_marker(marker_dir, os.getpid(), mounts)
            except OSError as e:
                _say(_error_line(ERROR, marker_dir, e))
                return 1
        for mount, fd in opened:
            try:
                freeze_fd(fd)
            except OSError as e:
                _thaw_all(frozen)
                _say(_error_line(ERROR, mount, e))
                return 1
            frozen.append((mount, fd))
        _say(FROZEN)
        outcome = _wait(deadline, wake_fd, buffered)
    finally:
        _thaw_all(frozen)
        if marker:
            remove_marker(marker)
        for _mount, fd in opened:
            os.close(fd)
    _say(outcome)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snapd_vss.freeze.guard")
    parser.add_argument("--deadline", type=float, help="seconds to stay frozen at most")
    parser.add_argument(
        "--on-request", action="store_true", help="say READY, then wait for a FREEZE line"
    )
    parser.add_argument("--marker-dir", default="", help="where to record the frozen mounts")
    parser.add_argument("mounts", nargs="*", help="mount points to freeze, in order")
    args = parser.parse_args(argv)
    if args.on_request:
        if args.mounts or args.deadline is not None:
            parser.error("--on-request takes the deadline and the mounts from its FREEZE line")
        return run_on_request(args.marker_dir)
    if args.deadline is None or not args.mounts:
        parser.error("give --deadline and the mounts, or --on-request")
    return run(list(args.mounts), args.deadline, args.marker_dir)


if __name__ == "__main__":
    sys.exit(main())
