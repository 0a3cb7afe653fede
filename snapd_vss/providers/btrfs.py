"""Read-only btrfs snapshots of a mounted subvolume.

Snapshots live in ``<mount>/.snapd-vss/<snapshot id>`` (a directory made in
:meth:`BtrfsProvider.prepare`, mode 0700). A btrfs snapshot is atomic by itself and
must not be taken on a frozen btrfs (it would wait for the thaw), so this provider
does not ask for a filesystem freeze. All kernel calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import time

from snapd_vss.errors import (
    InsufficientStorage,
    InvalidArgs,
    InvalidState,
    ProviderFailure,
    VolumeNotSupported,
)
from snapd_vss.freeze.ioctl import describe_errno
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import Availability, Provider
from snapd_vss.vocabulary import ProviderType
from snapd_vss.volumes import is_mount_point

BTRFS_IOC_SNAP_CREATE_V2 = 0x50009417
BTRFS_IOC_SNAP_DESTROY = 0x5000940F
BTRFS_SUBVOL_RDONLY = 2
BTRFS_FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root directory
VOL_ARGS_SIZE = 4096
V2_NAME_OFFSET = 56  # fd, transid, flags, 4 x u64 union
V1_NAME_OFFSET = 8  # fd
NAME_MAX = 255

SNAPSHOT_DIR = ".snapd-vss"

MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check_errno(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def syncfs(path: str) -> None:
    """Write the filesystem's dirty data now, so that the snapshot itself is quick."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _check_errno(_libc.syncfs(fd), f"syncfs {path}")
    finally:
        os.close(fd)


def bind_mount_read_only(source: str, target: str) -> None:
    _check_errno(_libc.mount(source.encode(), target.encode(), None, MS_BIND, None), "bind mount")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    try:
        _check_errno(_libc.mount(None, target.encode(), None, flags, None), "remount read-only")
    except OSError:
        _libc.umount2(target.encode(), MNT_DETACH)
        raise


def unmount(target: str) -> None:
    """Unmount ``target``; retry while busy, detach lazily as the last resort."""
    for attempt in range(10):
        if _libc.umount2(target.encode(), 0) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOENT):  # not a mount point (any more), or gone
            return
        if code != errno.EBUSY:
            raise OSError(code, f"umount {target}: {os.strerror(code)}")
        time.sleep(0.05 * (attempt + 1))
    _check_errno(_libc.umount2(target.encode(), MNT_DETACH), f"lazy umount {target}")


def _vol_args(name: str, offset: int) -> bytearray:
    encoded = os.fsencode(name)
    args = bytearray(VOL_ARGS_SIZE)
    args[offset : offset + len(encoded)] = encoded
    return args


def create_readonly_snapshot(source: str, dest_dir: str, name: str) -> None:
    """``btrfs subvolume snapshot -r source dest_dir/name`` through the ioctl."""
    src_fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        dst_fd = os.open(dest_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            args = _vol_args(name, V2_NAME_OFFSET)
            struct.pack_into("=qQQ", args, 0, src_fd, 0, BTRFS_SUBVOL_RDONLY)
            fcntl.ioctl(dst_fd, BTRFS_IOC_SNAP_CREATE_V2, args)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def destroy_subvolume(parent_dir: str, name: str) -> bool:
    """Delete subvolume ``parent_dir/name``; False if it did not exist."""
    try:
        dir_fd = os.open(parent_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.ioctl(dir_fd, BTRFS_IOC_SNAP_DESTROY, _vol_args(name, V1_NAME_OFFSET))
    except FileNotFoundError:
        return False
    finally:
        os.close(dir_fd)
    return True


def is_subvolume(path: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return st.st_ino == BTRFS_FIRST_FREE_OBJECTID and os.path.isdir(path)


def btrfs_in_kernel(filesystems: str = "/proc/filesystems") -> bool:
    try:
        with open(filesystems, encoding="utf-8") as f:
            return any(line.split()[-1:] == ["btrfs"] for line in f)
    except OSError:
        return False


class BtrfsProvider(Provider):
    """Kernel-native btrfs snapshots: a SYSTEM provider (it ships with the OS's own fs)."""

    name = "btrfs"
    type = ProviderType.SYSTEM
    version = "1"
    may_need_fs_freeze = False

    def availability(self) -> Availability:
        if not btrfs_in_kernel():
            return Availability(False, "The kernel has no btrfs (not in /proc/filesystems).")
        return Availability(True)

    def supports(self, volume: Volume) -> None:
        where = volume.mount_point
        if volume.fs_type != "btrfs":
            raise VolumeNotSupported(f"{where} is {volume.fs_type}, not btrfs.")
        if "ro" in volume.options.split(","):
            raise VolumeNotSupported(f"{where} is mounted read-only; btrfs cannot snapshot it.")
        if not is_subvolume(where):
            raise VolumeNotSupported(
                f"{where} is not the root of a btrfs subvolume (a bind mount of a directory "
                "inside one?); add the subvolume's own mount point instead."
            )

    def needs_fs_freeze(self, volume: Volume) -> bool:
        return False  # atomic by itself; a snapshot on a frozen btrfs waits for the thaw

    def why_not_held(self, volume: Volume) -> str:
        return "a btrfs snapshot is atomic by itself, and btrfs cannot snapshot a frozen filesystem"

    # -- paths --------------------------------------------------------------------------

    @staticmethod
    def _check_id(record: SnapshotRecord) -> None:
        sid = record.id
        if not sid or "/" in sid or sid in (".", "..") or len(os.fsencode(sid)) > NAME_MAX:
            raise InvalidArgs(f"{sid!r} cannot name a btrfs snapshot directory.")

    def _snapshot_path(self, record: SnapshotRecord) -> str:
        path = record.provider_data.get("path") or record.device_path
        if path:
            return path
        return os.path.join(record.volume, SNAPSHOT_DIR, record.id)

    def _failure(self, what: str, record: SnapshotRecord, e: OSError) -> Exception:
        code = e.errno or 0
        message = f"btrfs: {what} of {record.volume} failed: {describe_errno(code)}"
        if code == errno.ENOSPC:
            return InsufficientStorage(message + "; free space on the volume and retry.")
        if code == errno.EROFS:
            return ProviderFailure(message + "; the volume is mounted read-only.")
        return ProviderFailure(message + ".")

    # -- life cycle -----------------------------------------------------------------------

    async def prepare(self, record: SnapshotRecord, volume: Volume) -> None:
        self.supports(volume)
        self._check_id(record)
        directory = os.path.join(volume.mount_point, SNAPSHOT_DIR)
        path = os.path.join(directory, record.id)
        try:
            await asyncio.to_thread(os.makedirs, directory, 0o700, True)
        except OSError as e:
            raise self._failure(f"creating {directory}", record, e) from e
        if os.path.lexists(path):
            raise ProviderFailure(f"btrfs: {path} already exists; is the snapshot id reused?")
        record.provider_data["path"] = path
        try:  # flush before writers freeze: the snapshot then only has little left to write
            await asyncio.to_thread(syncfs, volume.mount_point)
        except OSError as e:
            raise self._failure("syncing", record, e) from e

    async def commit(self, record: SnapshotRecord, volume: Volume) -> None:
        path = self._snapshot_path(record)
        try:
            await asyncio.to_thread(
                create_readonly_snapshot, volume.mount_point, os.path.dirname(path), record.id
            )
        except OSError as e:
            raise self._failure("snapshot", record, e) from e
        record.provider_data["path"] = path
        record.device_path = path

    async def exists(self, record: SnapshotRecord) -> bool:
        return await asyncio.to_thread(is_subvolume, self._snapshot_path(record))

    async def delete(self, record: SnapshotRecord) -> None:
        await self.unexpose(record)
        path = self._snapshot_path(record)
        try:
            parent, name = os.path.split(path)
            await asyncio.to_thread(destroy_subvolume, parent, name)
        except OSError as e:
            raise self._failure(f"deleting snapshot {path}", record, e) from e

    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        target = mount_point or os.path.join(self.context.runtime_dir, "snapshots", record.id)
        if not os.path.isabs(target):
            raise InvalidArgs(f"{mount_point!r} is not an absolute path.")
        if record.exposed_path:
            if record.exposed_path == target:
                return target
            raise InvalidState(
                f"The snapshot is already exposed at {record.exposed_path}; unexpose it first."
            )
        source = self._snapshot_path(record)
        if not await self.exists(record):
            raise ProviderFailure(f"btrfs: snapshot {source} of {record.volume} does not exist.")
        created = await asyncio.to_thread(self._make_target, target)
        try:
            await asyncio.to_thread(bind_mount_read_only, source, target)
        except OSError as e:
            if created:
                await asyncio.to_thread(_rmdir_quietly, target)
            raise self._failure(f"exposing at {target}", record, e) from e
        record.exposed_path = target
        record.provider_data["exposed_dir_created"] = "1" if created else ""
        return target

    @staticmethod
    def _make_target(target: str) -> bool:
        """Make the (empty) directory to mount on; True if we created it."""
        if os.path.lexists(target):
            if not os.path.isdir(target) or os.listdir(target) or is_mount_point(target):
                raise InvalidArgs(
                    f"{target} is not an empty directory; expose on an empty directory "
                    "or a path that does not exist yet."
                )
            return False
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.mkdir(target, 0o755)
        return True

    async def unexpose(self, record: SnapshotRecord) -> None:
        target = record.exposed_path
        if not target:
            return
        try:
            await asyncio.to_thread(unmount, target)
        except OSError as e:
            raise self._failure(f"unexposing {target}", record, e) from e
        if record.provider_data.pop("exposed_dir_created", ""):
            await asyncio.to_thread(_rmdir_quietly, target)
        record.exposed_path = ""


def _rmdir_quietly(path: str) -> None:
    with contextlib.suppress(OSError):  # not empty or already gone: leave it
        os.rmdir(path)
