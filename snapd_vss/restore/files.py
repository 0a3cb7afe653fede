"""Writing entries in place safely, relative to directory fds (no path re-walks).

A restore writes in two steps (see :mod:`.placer`): first every file to a temporary name
in its destination directory (``O_EXCL``, mode 0600), its bytes checked against the
sha256 as they are written, owner, mode, xattrs and times set (:func:`write_temp`); then,
once the filesystem is flushed (:func:`syncfs`), each temporary name is renamed over the
real one (:func:`rename_into_place`) and the directories are fsynced. A reader of the
destination sees the old file or the new one, never half of it, and a crash leaves at
most stray ``.snapd-vss-restore.*`` temporaries, never a half-written file under a real name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future

from snapd_vss.backupset.errors import ChecksumMismatch
from snapd_vss.errors import Failed

TEMP_PREFIX = ".snapd-vss-restore."
HASH_BESIDE = 1 << 20  # files larger than this are hashed in another thread while written
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


def write_temp(
    dir_fd: int,
    name: str,
    chunks: Iterable[bytes | memoryview],
    *,
    size: int,
    sha256: str,
    mode: int,
    uid: int,
    gid: int,
    mtime_ns: int,
    xattrs: Mapping[str, bytes],
    display: str,
    hasher: Executor | None = None,
) -> str:
    """Write a temporary file for ``name`` in ``dir_fd`` from ``chunks``; its name.

    ``sha256`` ("" when ``chunks`` check it themselves and raise at their end) and
    ``size`` are checked before the metadata is set; on any error the temporary is
    removed. Not fsynced: the caller flushes the filesystem before renaming.
    ``hasher``: a one-thread executor that hashes a chunk while it is written (for
    files over one chunk); a chunk must then stay valid until the chunk after the next
    is taken.
    """
    temp = temp_name(name)
    fd = os.open(
        temp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        digest = hashlib.sha256() if sha256 else None
        beside = hasher if size > HASH_BESIDE else None
        hashing: Future[None] | None = None
        written = 0
        for chunk in chunks:
            if digest is not None:
                if hashing is not None:
                    hashing.result()
                if beside is not None:
                    hashing = beside.submit(digest.update, chunk)
                else:
                    digest.update(chunk)
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            written += len(chunk)
        if hashing is not None:
            hashing.result()
        if written > HASH_BESIDE:
            start_writeback(fd)
        if written != size or (digest is not None and digest.hexdigest() != sha256):
            raise ChecksumMismatch(
                f"{display}: the content read from the backup set does not match its "
                "size or sha256 (the set changed while being restored); this file was not "
                "replaced"
            )
        _apply_metadata(fd, mode, uid, gid, xattrs, mtime_ns)
        os.close(fd)
        fd = -1
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    return temp


def temp_symlink(dir_fd: int, name: str, target: str, *, uid: int, gid: int, mtime_ns: int) -> str:
    """A symbolic link to ``target`` under a temporary name for ``name``; its name."""
    temp = temp_name(name)
    os.symlink(target, temp, dir_fd=dir_fd)
    try:
        os.chown(temp, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        with contextlib.suppress(OSError):
            os.utime(temp, ns=(mtime_ns, mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    return temp


def rename_into_place(dir_fd: int, temp: str, name: str) -> None:
    """``temp`` over ``name``; Failed if ``name`` became a directory meanwhile.

    (rename(2) never replaces a directory by a file or link: it fails with EISDIR,
    ENOTDIR or ENOTEMPTY, so no check beforehand is needed.)
    """
    try:
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
            raise Failed(f"{name} is a directory now; move it away first") from exc
        raise


def discard(dir_fd: int, temp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(temp, dir_fd=dir_fd)


_libc = ctypes.CDLL(None, use_errno=True)


SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to disk without waiting (sync_file_range(2)).

    Only a head start for the flush before the renames (the disk works while the next
    files are read and hashed); it guarantees nothing, so errors are ignored.
    """
    _libc.sync_file_range(fd, ctypes.c_int64(0), ctypes.c_int64(0), SYNC_FILE_RANGE_WRITE)


def syncfs(fd: int) -> None:
    """Flush the whole filesystem holding ``fd`` (syncfs(2)); OSError on a write-back error."""
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"syncfs: {os.strerror(code)}")


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
