"""Marker files: which mounts a freeze guard froze, so that a later start can thaw them.

A guard writes ``<runtime_dir>/frozen/<pid>.json`` before it freezes anything and
removes it after it thawed everything. A marker that is still there after the guard
and the daemon are gone means a filesystem may be frozen: :func:`thaw_leftovers`
thaws what it names (run at daemon start and from the unit's ``ExecStopPost``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass

from snapd_vss.freeze.ioctl import describe_errno, thaw_path

log = logging.getLogger(__name__)

MARKER_SUBDIR = "frozen"


@dataclass(frozen=True)
class Marker:
    path: str
    pid: int
    mounts: tuple[str, ...]


def marker_dir(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, MARKER_SUBDIR)


def marker_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}.json")


def write_marker(directory: str, pid: int, mounts: list[str]) -> str:
    """Durably record ``mounts`` as (about to be) frozen by ``pid``; return the file."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = marker_path(directory, pid)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"pid": pid, "mounts": mounts}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove_marker(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_markers(runtime_dir: str) -> list[Marker]:
    directory = marker_dir(runtime_dir)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    markers = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".json"):
            if name.endswith(".json.tmp"):  # crashed while writing: nothing frozen yet
                remove_marker(path)
            continue
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            markers.append(Marker(path, int(data["pid"]), tuple(str(m) for m in data["mounts"])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring unreadable freeze marker %s: %s", path, e)
    return markers


def _is_own_live_child(pid: int) -> bool:
    """Whether ``pid`` is a guard this process started and that still runs."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    state, ppid = fields[0], int(fields[1])
    return ppid == os.getpid() and state != "Z"


def thaw_leftovers(runtime_dir: str) -> list[str]:
    """Thaw every mount recorded by a guard that is gone; return the mounts that were frozen.

    Markers of guards that this very process runs are left alone. Thawing a mount
    that is not frozen is harmless, so a marker whose guard is still finishing is
    simply thawed twice.
    """
    thawed: list[str] = []
    for marker in read_markers(runtime_dir):
        if _is_own_live_child(marker.pid):
            continue
        failed = False
        for mount in reversed(marker.mounts):
            try:
                if thaw_path(mount):
                    log.warning("thawed %s, left frozen by guard %d", mount, marker.pid)
                    thawed.append(mount)
            except OSError as e:
                failed = True
                log.error("cannot thaw %s: %s", mount, describe_errno(e.errno or 0))
        if not failed:
            remove_marker(marker.path)
    return thawed
