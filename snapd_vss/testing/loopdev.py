"""Loop-device-backed filesystems for tests, demos and benchmarks.

::

    with loop_filesystem("btrfs", 256, "/var/tmp") as fs:
        fs.mount_point  # a fresh, mounted btrfs on a loop device

Teardown is thorough and runs even on failure: thaw (just in case), unmount
everything below the mount point, detach the loop device, remove the files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from snapd_vss.freeze.ioctl import thaw_path
from snapd_vss.volumes import list_mounts

MKFS: dict[str, list[str]] = {
    "btrfs": ["mkfs.btrfs", "-q", "-f"],
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"],
    "xfs": ["mkfs.xfs", "-q", "-f"],
}
MIN_SIZE_MB = {"btrfs": 128, "ext4": 16, "xfs": 300}


@dataclass(frozen=True)
class LoopFs:
    image: str
    device: str
    mount_point: str
    fs_type: str
    workdir: str  # the private directory holding image and mount point


def _run(args: Sequence[str]) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def make_sparse_image(path: str, size_mb: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size_mb * 1024 * 1024)


def attach_loop(image: str) -> str:
    return _run(["losetup", "--find", "--show", image])


def detach_loop(device: str) -> None:
    for attempt in range(20):
        done = subprocess.run(["losetup", "-d", device], capture_output=True, check=False)
        if done.returncode == 0 or not os.path.exists(device):
            return
        time.sleep(0.05 * (attempt + 1))


def mounts_below(path: str) -> list[str]:
    """Mount points at or below ``path``, deepest (most recent) first."""
    found = [v.mount_point for v in list_mounts()]
    inside = [m for m in found if m == path or m.startswith(path.rstrip("/") + "/")]
    return list(reversed(inside))


def unmount_all(path: str) -> None:
    """Unmount ``path`` and everything mounted below it; lazily as the last resort."""
    for mount in mounts_below(path):
        with contextlib.suppress(OSError):
            thaw_path(mount)
        for attempt in range(10):
            done = subprocess.run(["umount", mount], capture_output=True, check=False)
            if done.returncode == 0 or mount not in mounts_below(mount):
                break
            time.sleep(0.05 * (attempt + 1))
        else:
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


@contextlib.contextmanager
def loop_filesystem(
    fs_type: str,
    size_mb: int = 256,
    workdir: str = "/var/tmp",
    mkfs_args: Sequence[str] = (),
    mount_options: str = "",
) -> Iterator[LoopFs]:
    """A fresh ``fs_type`` filesystem on a sparse image and a loop device, mounted."""
    if fs_type not in MKFS:
        raise ValueError(f"unsupported fs_type {fs_type!r}; use one of {sorted(MKFS)}")
    size_mb = max(size_mb, MIN_SIZE_MB[fs_type])
    base = tempfile.mkdtemp(prefix=f"snapd-vss-{fs_type}-", dir=workdir)
    image = os.path.join(base, "image.img")
    mount_point = os.path.join(base, "mnt")
    device = ""
    try:
        os.mkdir(mount_point)
        make_sparse_image(image, size_mb)
        device = attach_loop(image)
        _run([*MKFS[fs_type], *mkfs_args, device])
        options = ["-o", mount_options] if mount_options else []
        _run(["mount", "-t", fs_type, *options, device, mount_point])
        yield LoopFs(image, device, mount_point, fs_type, base)
    finally:
        unmount_all(base)  # also whatever a test mounted beside the filesystem
        if device:
            detach_loop(device)
        shutil.rmtree(base, ignore_errors=True)
