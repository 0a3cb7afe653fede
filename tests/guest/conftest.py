"""Fixtures for the tests that run inside the UML guest (started by tests/guest/run).

The host's pytest run does not even collect this directory (a skip would look like a
pass): everything here needs device-mapper, which only the guest kernel has.

Fixtures: ``scratch_vg`` (a VG on the guest's scratch disk with a 1 GiB thin pool),
``thin_fs`` (factory: a mounted ext4/xfs filesystem on a new thin LV, as a Volume),
``lvm`` (run an LVM command, check it, return stdout), ``lvm_provider``.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from snapd_vss.ipc.client import BackupSessionProxy, VssClient

IN_GUEST = os.environ.get("SNAPD_VSS_IN_GUEST") == "1"

if not IN_GUEST:
    # Not collected at all on the host: a skip would look like a pass.
    collect_ignore_glob = ["*.py"]

VG = "vssvg"
POOL = "pool"
POOL_SIZE = "1G"
NO_UDEV = ["--yes", "--noudevsync"]


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def lvm_cmd(*args: str) -> str:
    return sh("lvm", *args).stdout


def mounts_below(path: Path) -> list[str]:
    from snapd_vss.volumes import list_mounts

    prefix = str(path.resolve())
    return [v.mount_point for v in list_mounts() if v.mount_point.startswith(prefix)]


def unmount_below(path: Path) -> None:
    for mp in reversed(mounts_below(path)):
        sh("umount", "-l", mp, check=False)


def remove_lvs(selection: str) -> None:
    """lvremove everything matching ``selection`` (``VG/LV`` or ``@tag``), if any."""
    sh("lvm", "lvremove", *NO_UDEV, selection, check=False)


@pytest.fixture(scope="session")
def guest_disk() -> str:
    disks = os.environ.get("SNAPD_VSS_GUEST_DISKS", "").split()
    assert disks, "SNAPD_VSS_GUEST_DISKS is not set: run these tests through tests/guest/run"
    return disks[0]


@pytest.fixture(scope="session")
def scratch_vg(guest_disk: str) -> Iterator[str]:
    sh("lvm", "pvcreate", "-ff", "--yes", guest_disk)
    sh("lvm", "vgcreate", VG, guest_disk)
    sh("lvm", "lvcreate", *NO_UDEV, "--type", "thin-pool", "-L", POOL_SIZE, "-n", POOL, VG)
    try:
        yield VG
    finally:
        sh("lvm", "vgremove", "-ff", "--yes", VG, check=False)
        sh("lvm", "pvremove", "-ff", "--yes", guest_disk, check=False)


@pytest.fixture
def lvm() -> Callable[..., str]:
    return lvm_cmd



@pytest.fixture
def thin_fs(scratch_vg: str, tmp_path: Path) -> Iterator[Callable[..., object]]:
    """``thin_fs(fs="ext4", size="512M", pool=POOL, name=None) -> Volume``: mounted, empty."""
    from snapd_vss.volumes import resolve_volume

    created: list[str] = []

    def make(fs: str = "ext4", size: str = "512M", pool: str = POOL, name: str | None = None):
        name = name or f"t{uuid.uuid4().hex[:8]}"
        sh("lvm", "lvcreate", *NO_UDEV, "-V", size, "-T", f"{scratch_vg}/{pool}", "-n", name)
        created.append(f"{scratch_vg}/{name}")
        dev = f"/dev/{scratch_vg}/{name}"
        if fs == "xfs":
            sh("mkfs.xfs", "-q", "-f", dev)
        else:
            sh(f"mkfs.{fs}", "-q", "-F", dev)
        mp = tmp_path / f"mnt-{name}"
        mp.mkdir()
        sh("mount", "-t", fs, dev, str(mp))
        return resolve_volume(str(mp))

    try:
        yield make
    finally:
        unmount_below(tmp_path)
        remove_lvs("@snapd_vss")
        for lv in reversed(created):
            remove_lvs(lv)


@pytest.fixture
def lvm_provider(tmp_path: Path):  # type: ignore[no-untyped-def]
    from snapd_vss.providers.base import ProviderContext
    from snapd_vss.providers.lvm_thin import LvmThinProvider

    state = tmp_path / "state"
    runtime = tmp_path / "runtime"
    state.mkdir()
    runtime.mkdir()
    return LvmThinProvider(ProviderContext(state_dir=str(state), runtime_dir=str(runtime)))


@pytest.fixture
def new_record() -> Callable[..., object]:
    from snapd_vss.model import SnapshotRecord

    def make(volume: str, set_id: str | None = None) -> SnapshotRecord:
        return SnapshotRecord(
            id=str(uuid.uuid4()),
            snapshot_set_id=set_id or str(uuid.uuid4()),
            volume=volume,
            provider="lvm_thin",
        )

    return make


def tagged() -> list[str]:
    """VG/LV of every LV carrying the snapd_vss tag."""
    out = sh("lvm", "lvs", "--reportformat", "json", "-o", "vg_name,lv_name", "@snapd_vss").stdout
    rows = [row for rep in json.loads(out)["report"] for row in rep["lv"]]
    return [f"{r['vg_name']}/{r['lv_name']}" for r in rows]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


async def snapshot_set(
    client: VssClient, volumes: list[str], context: str = "BACKUP", component: str = ""
) -> tuple[BackupSessionProxy, list[str]]:
    """A session with a done snapshot set over ``volumes`` (the writer's component if named)."""
    session = await client.manager.create_backup_session(context)
    await session.set_backup_state(True, False, "FULL", False)
    metadata = await session.gather_writer_metadata()
    if component:
        (instance_id,) = metadata
        await session.add_component(instance_id, "files", component)
    await session.start_snapshot_set()
    ids = [await session.add_to_snapshot_set(v, "lvm_thin") for v in volumes]
    await session.prepare_for_backup()
    await session.do_snapshot_set()
    return session, ids
