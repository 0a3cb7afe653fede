"""Putting one entry in place, atomically, relative to a directory fd (no path re-walks).

A file is written to a temporary name in its destination directory (``O_EXCL``,
mode 0600), its bytes checked against the sha256 while written, owner, mode, xattrs and
times set, fsynced, then renamed over the old name; the directory is fsynced after.
A reader of the destination sees the old file or the new one, never half of it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping

from snapd_vss.backupset.errors import ChecksumMismatch
from snapd_vss.errors import Failed

TEMP_PREFIX = ".snapd-vss-restore."
SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID


def temp_name(name: str) -> str:
    return f"{TEMP_PREFIX}{secrets.token_hex(6)}.{name[:100]}"


def _apply_metadata(
    fd: int, mode: int, uid: int, gid: int, xattrs: Mapping[str, bytes], mtime_ns: int
) -> None:
    os.fchown(fd, uid, gid)  # before chmod: chown clears setuid/setgid
    os.fchmod(fd, mode & 0o7777)
    for name, value in xattrs.items():
        with contextlib.suppress(OSError):  # a filesystem without that namespace
            os.setxattr(fd, name, value)
    os.utime(fd, ns=(mtime_ns, mtime_ns))


def write_file(
    dir_fd: int,
    name: str,
    chunks: Iterable[bytes],
    *,
    sha256: str,
    mode: int,
    uid: int,
    gid: int,
    mtime_ns: int,
    xattrs: Mapping[str, bytes],
    display: str,
) -> int:
    """Write ``name`` in ``dir_fd`` from ``chunks``; returns the bytes written."""
    temp = temp_name(name)
    fd = os.open(
        temp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        digest = hashlib.sha256()
        written = 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            digest.update(chunk)
            written += len(chunk)
        if sha256 and digest.hexdigest() != sha256:
            raise ChecksumMismatch(
                f"{display}: the content read from the backup set does not match its "
                "sha256 (the set changed while being restored); this file was not replaced"
            )
        _apply_metadata(fd, mode, uid, gid, xattrs, mtime_ns)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    return written


def write_symlink(
    dir_fd: int, name: str, target: str, *, uid: int, gid: int, mtime_ns: int
) -> None:
    temp = temp_name(name)
    os.symlink(target, temp, dir_fd=dir_fd)
    try:
        os.chown(temp, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        with contextlib.suppress(OSError):
            os.utime(temp, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
        _replace(dir_fd, temp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


def _replace(dir_fd: int, temp: str, name: str) -> None:
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise Failed(f"{name} is a directory now; a link cannot replace it")
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def make_directory(dir_fd: int, name: str) -> bool:
    """Create ``name`` (mode 0700 until its metadata is set); False if it existed."""
    try:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    except FileExistsError:
        st = os.lstat(name, dir_fd=dir_fd)
        if not stat.S_ISDIR(st.st_mode):
            raise Failed(
                f"{name} exists and is not a directory; move it away to restore the "
                "directory of the same name"
            ) from None
        return False
    return True


def set_directory_metadata(
    dir_fd: int, mode: int, uid: int, gid: int, xattrs: Mapping[str, bytes], mtime_ns: int
) -> None:
    _apply_metadata(dir_fd, mode, uid, gid, xattrs, mtime_ns)


def fsync_directory(dir_fd: int) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as exc:  # some filesystems refuse fsync on directories
        if exc.errno not in (errno.EINVAL, errno.EROFS):
            raise


def remove_file(dir_fd: int, name: str) -> None:
    os.unlink(name, dir_fd=dir_fd)


def file_exists(dir_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True
