"""Writing entries in place safely, relative to directory fds (no path re-walks).

A restore writes in two steps (see :mod:`.placer`): first every file to a temporary name
in its destination directory (``O_EXCL``, mode 0600), its bytes checked against the
sha256, owner, mode, xattrs and times set (:func:`write_temp`); then, once the
filesystem is flushed (:func:`syncfs`), each temporary name is renamed over the real one
(:func:`rename_into_place`) and the directories are fsynced. A large file's bytes are
copied in the kernel when the archive stores them as they are, and checked by reading
the temporary back in another thread (:class:`Check`) while the next files are written
and the filesystem is flushed; no temporary is renamed before its check passed. A reader
of the destination sees the old file or the new one, never half of it, and a crash
leaves at most stray ``.snapd-vss-restore.*`` temporaries, never a half-written file
under a real name.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from snapd_vss.backupset.errors import ChecksumMismatch
from snapd_vss.errors import Failed

TEMP_PREFIX = ".snapd-vss-restore."
HASH_BESIDE = 1 << 20  # files larger than this are read back and hashed in another thread
CHECK_CHUNK = 1 << 20  # read-back buffer of each checking thread
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


@dataclass(frozen=True)
class Extent:
    """Bytes stored as they are: the file's bytes start at ``offset`` of the open ``fd``."""

    fd: int
    offset: int


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
    checker: Executor | None = None,
    extent: Extent | None = None,
) -> tuple[str, Check | None]:
    """Write a temporary file for ``name`` in ``dir_fd``; its name, and its pending check.

    The bytes come from ``extent`` (copied in the kernel, ``copy_file_range(2)``) when
    given and possible, else from ``chunks``. ``sha256`` ("" when ``chunks`` check it
    themselves and raise at their end) and ``size`` are checked; on any error the
    temporary is removed. Not fsynced: the caller flushes the filesystem before renaming.

    A file over :data:`HASH_BESIDE` with a ``checker`` (an executor) is checked there, by
    reading the temporary back and hashing it, while the caller writes the next files:
    the returned :class:`Check` raises ChecksumMismatch (and the caller must not rename the
    temporary, but remove it) or returns when the bytes are right and the metadata set.
    A smaller file is hashed as it is written. Either way the owner, mode (setuid
    included), xattrs and times are set only once the bytes are known right: until then
    the temporary is root's, mode 0600.
    """
    temp = temp_name(name)
    fd = os.open(
        temp,
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        read_back = checker is not None and bool(sha256) and size > HASH_BESIDE
        written = -1
        if extent is not None and read_back:
            written = _copy_extent(extent, fd, size)
        digest = hashlib.sha256() if sha256 and not read_back else None
        if written < 0:
            written = _write_chunks(fd, chunks, digest)
        if written != size or (digest is not None and digest.hexdigest() != sha256):
            raise _mismatch(display)
        metadata = _Metadata(mode, uid, gid, xattrs, mtime_ns)
        check: Check | None = None
        if read_back:
            assert checker is not None
            job = checker.submit(_check_written, fd, size, sha256, display, metadata)
            check = Check(job, fd)
        else:
            metadata.apply(fd)
            os.close(fd)
        fd = -1
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    return temp, check


def _mismatch(display: str) -> ChecksumMismatch:
    return ChecksumMismatch(
        f"{display}: the content read from the backup set does not match its size or "
        "sha256 (the set changed while being restored); this file was not replaced"
    )


#: copy_file_range(2) errors meaning "not between these files": write the chunks instead.
_NO_COPY = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF)


def _copy_extent(extent: Extent, fd: int, size: int) -> int:
    """Copy ``size`` bytes from ``extent`` into ``fd``; -1 if the kernel cannot (nothing
    written then). Fewer bytes when the source ends early."""
    copied = 0
    while copied < size:
        try:
            n = os.copy_file_range(extent.fd, fd, size - copied, extent.offset + copied)
        except OSError as exc:
            if copied == 0 and exc.errno in _NO_COPY:
                return -1
            raise
        if n == 0:
            break
        copied += n
    return copied


def _write_chunks(
    fd: int, chunks: Iterable[bytes | memoryview], digest: hashlib._Hash | None
) -> int:
    written = 0
    for chunk in chunks:
        if digest is not None:
            digest.update(chunk)
        view = memoryview(chunk)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        written += len(chunk)
    return written


_local = threading.local()


@dataclass(frozen=True)
class _Metadata:
    mode: int
    uid: int
    gid: int
    xattrs: Mapping[str, bytes]
    mtime_ns: int

    def apply(self, fd: int) -> None:
        _apply_metadata(fd, self.mode, self.uid, self.gid, self.xattrs, self.mtime_ns)


def _check_written(fd: int, size: int, sha256: str, display: str, metadata: _Metadata) -> None:
    """Read ``fd`` (a temporary just written) back and check its sha256, then set its
    metadata; closes ``fd``. Checks the very bytes the file holds, whatever wrote them
    (a kernel copy included)."""
    try:
        buffer: memoryview | None = getattr(_local, "buffer", None)
        if buffer is None:
            buffer = _local.buffer = memoryview(bytearray(CHECK_CHUNK))
        digest = hashlib.sha256()
        offset = 0
        while n := os.preadv(fd, [buffer], offset):
            digest.update(buffer[:n])
            offset += n
        if offset != size or digest.hexdigest() != sha256:
            raise _mismatch(display)
        metadata.apply(fd)
        start_writeback(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Check:
    """The pending read-back check of a temporary (:func:`write_temp`); it owns ``fd``."""

    future: Future[None]
    fd: int

    def wait(self) -> None:
        """Returns when the bytes are right; ChecksumMismatch (or OSError) otherwise."""
        self.future.result()

    def cancel(self) -> None:
        """Forget the check (its temporary is being removed); waits if it is running."""
        if self.future.cancel():
            os.close(self.fd)
            return
        with contextlib.suppress(Exception):
            self.future.result()


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
