"""Which of some files any process has open: ``/proc/*/fd`` and ``/proc/*/maps``.

A file counts as in use when a process holds a descriptor on it (matched by device and
inode) or has it mapped (matched by inode and path, since ``maps`` shows the
superblock's device, which differs from ``st_dev`` on btrfs subvolumes). Processes
that vanish during the scan are skipped; this process itself is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

PROC = "/proc"
DELETED = " (deleted)"


@dataclass(frozen=True)
class User:
    pid: int
    command: str
    path: str
    how: str  # "fd N" or "mapped"

    def describe(self) -> str:
        return f"{self.path} ({self.how} of pid {self.pid} {self.command})"


def _command(pid: str) -> str:
    try:
        with open(f"{PROC}/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def files_in_use(paths: Iterable[str]) -> list[User]:
    """The processes using any of ``paths`` (existing regular files; others are ignored)."""
    by_id: dict[tuple[int, int], str] = {}
    by_path: dict[tuple[str, int], str] = {}
    for path in paths:
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            continue
        by_id[(st.st_dev, st.st_ino)] = path
        by_path[(os.path.realpath(path), st.st_ino)] = path
    if not by_id:
        return []
    users: list[User] = []
    me = str(os.getpid())
    for pid in os.listdir(PROC):
        if not pid.isdigit() or pid == me:
            continue
        users.extend(_fds(pid, by_id))
        users.extend(_maps(pid, by_path))
    return users


def _fds(pid: str, by_id: dict[tuple[int, int], str]) -> list[User]:
    found: list[User] = []
    directory = f"{PROC}/{pid}/fd"
    try:
        fds = os.listdir(directory)
    except OSError:
        return found
    for fd in fds:
        try:
            st = os.stat(f"{directory}/{fd}")
        except OSError:
            continue
        path = by_id.get((st.st_dev, st.st_ino))
        if path is not None:
            found.append(User(int(pid), _command(pid), path, f"fd {fd}"))
    return found


def _maps(pid: str, by_path: dict[tuple[str, int], str]) -> list[User]:
    found: list[User] = []
    try:
        with open(f"{PROC}/{pid}/maps") as f:
            lines = f.readlines()
    except OSError:
        return found
    seen: set[str] = set()
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue
        try:
            inode = int(fields[4])
        except ValueError:
            continue
        mapped = fields[5].rstrip("\n").removesuffix(DELETED)
        path = by_path.get((mapped, inode))
        if path is not None and path not in seen:
            seen.add(path)
            found.append(User(int(pid), _command(pid), path, "mapped"))
    return found
