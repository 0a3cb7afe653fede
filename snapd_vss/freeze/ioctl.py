"""FIFREEZE / FITHAW on a mount point (see ioctl_fifreeze(2) in util-linux' fsfreeze)."""

from __future__ import annotations

import errno
import fcntl
import os

FIFREEZE = 0xC0045877
FITHAW = 0xC0045878


def open_mount(path: str) -> int:
    """An O_RDONLY directory fd on ``path`` (the mount point), for the freeze ioctls."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def freeze_fd(fd: int) -> None:
    """Freeze the filesystem of ``fd``; ``OSError(EBUSY)`` if it is already frozen."""
    fcntl.ioctl(fd, FIFREEZE, 0)


def thaw_fd(fd: int) -> bool:
    """Thaw the filesystem of ``fd``; return False if it was not frozen (EINVAL)."""
    try:
        fcntl.ioctl(fd, FITHAW, 0)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return False
        raise
    return True


def thaw_path(path: str) -> bool:
    """Thaw the filesystem mounted at ``path``; False if it was not frozen or is gone."""
    try:
        fd = open_mount(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        return thaw_fd(fd)
    finally:
        os.close(fd)


def is_frozen(path: str) -> bool:
    """Whether the filesystem at ``path`` is frozen, found by trying to freeze it.

    Freezing an unfrozen filesystem and thawing it again is harmless but not free
    (it syncs); this is meant for tests and diagnostics, not for hot paths.
    """
    fd = open_mount(path)
    try:
        try:
            freeze_fd(fd)
        except OSError as e:
            if e.errno == errno.EBUSY:
                return True
            raise
        thaw_fd(fd)
        return False
    finally:
        os.close(fd)


def describe_errno(code: int) -> str:
    """``EBUSY (Device or resource busy)``-style text for messages."""
    name = errno.errorcode.get(code, f"errno {code}")
    return f"{name} ({os.strerror(code)})"
