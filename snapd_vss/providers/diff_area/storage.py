"""The byte stores the copy-on-write engine works on.

The engine never touches the OS directly: it reads and writes :class:`BlockFile` objects
and asks a :class:`DiffStore` for the diff area's files. :class:`OsFile` / :class:`OsDiffStore`
are the real thing (``os.pread``/``os.pwrite``/``os.fdatasync``); the crash-simulating
in-memory store in :mod:`.memstore` implements the same protocols so the durability
ordering can be tested by losing every write that was not synced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Protocol

DATA_FILE = "chunks.dat"  # slot records, see .slots (format 2)
OLD_DATA_FILE = "diff.dat"  # format 1: refused, see .engine
JOURNAL_FILE = "index.journal"
LOCK_FILE = "lock"


class BlockFile(Protocol):
    def pread(self, length: int, offset: int) -> bytes: ...

    def pwrite(self, data: bytes | memoryview, offset: int) -> None: ...

    def sync(self) -> None:
        """Make every write so far durable (fdatasync)."""

    def size(self) -> int: ...

    def truncate(self, length: int) -> None: ...

    def close(self) -> None: ...


class DiffStore(Protocol):
    """The diff area: a data file of self-validating chunk slots and the index journal."""

    def open(self, name: str) -> BlockFile:
        """Open (creating if missing) one of the diff area's files for read and write."""

    def exists(self, name: str) -> bool: ...

    def replace(self, src: str, dst: str) -> None:
        """Atomically and durably rename ``src`` over ``dst`` (rename + fsync of the dir)."""

    def remove(self, name: str) -> None: ...


class OsFile:
    """A real file, opened read-write."""

    def __init__(self, path: str, *, create: bool = True, lock: bool = False) -> None:
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        self.path = path
        self.fd = os.open(path, flags, 0o600)
        if lock:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(self.fd)
                raise

    def pread(self, length: int, offset: int) -> bytes:
        first = os.pread(self.fd, length, offset)
        if len(first) == length:
            return first  # the usual case: no second copy
        out = bytearray(first)
        if not first:
            return bytes(length)
        while len(out) < length:
            part = os.pread(self.fd, length - len(out), offset + len(out))
            if not part:
                out.extend(bytes(length - len(out)))  # past EOF reads as zeros
                break
            out.extend(part)
        return bytes(out)

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], offset + done)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, length: int) -> None:
        os.ftruncate(self.fd, length)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class OsDiffStore:
    """A diff area directory on a real filesystem, locked against a second user."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self._lock = os.open(os.path.join(directory, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def open(self, name: str) -> BlockFile:
        return OsFile(self._path(name))

    def exists(self, name: str) -> bool:
        return os.path.exists(self._path(name))

    def replace(self, src: str, dst: str) -> None:
        os.replace(self._path(src), self._path(dst))
        dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))

    def close(self) -> None:
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1
