"""The btrfs provider on a real btrfs on a loop device."""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from snapd_vss.errors import InvalidArgs, InvalidState, ProviderFailure, VolumeNotSupported
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.btrfs import SNAPSHOT_DIR, BtrfsProvider
from snapd_vss.testing.loopdev import LoopFs, unmount_all
from snapd_vss.vocabulary import ProviderType
from snapd_vss.volumes import is_mount_point, resolve_volume

pytestmark = pytest.mark.root


@pytest.fixture
def provider(tmp_path: object) -> BtrfsProvider:
    base = str(tmp_path)
    return BtrfsProvider(ProviderContext(os.path.join(base, "state"), os.path.join(base, "run")))


def new_record(volume: Volume) -> SnapshotRecord:
    return SnapshotRecord(
        id=str(uuid.uuid4()), snapshot_set_id=str(uuid.uuid4()),
        volume=volume.mount_point, provider="btrfs",
    )  # fmt: skip


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


async def snapshot(provider: BtrfsProvider, volume: Volume) -> SnapshotRecord:
    rec = new_record(volume)
    await provider.prepare(rec, volume)
    await provider.commit(rec, volume)
    rec.committed = True
    return rec


@pytest.fixture
def mounted_elsewhere(btrfs_volume: LoopFs) -> Iterator[str]:
    """A second mount point under the loop fs' workdir, unmounted after the test."""
    path = os.path.join(btrfs_volume.workdir, "other")
    os.mkdir(path)
    yield path
    unmount_all(path)


def test_kind_and_availability(provider: BtrfsProvider) -> None:
    assert provider.name == "btrfs"
    assert provider.type is ProviderType.SYSTEM
    assert provider.availability().available


def test_supports_only_btrfs_subvolume_roots(
    provider: BtrfsProvider, btrfs_volume: LoopFs, ext4_volume: LoopFs, mounted_elsewhere: str
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    provider.supports(volume)
    assert not provider.needs_fs_freeze(volume)
    with pytest.raises(VolumeNotSupported, match="ext4, not btrfs"):
        provider.supports(resolve_volume(ext4_volume.mount_point))
    os.mkdir(os.path.join(btrfs_volume.mount_point, "plain"))
    subprocess.run(
        ["mount", "--bind", os.path.join(btrfs_volume.mount_point, "plain"), mounted_elsewhere],
        check=True,
    )
    with pytest.raises(VolumeNotSupported, match="not the root of a btrfs subvolume"):
        provider.supports(resolve_volume(mounted_elsewhere))


async def test_subvolume_mount_and_read_only_mount(
    provider: BtrfsProvider, btrfs_volume: LoopFs, mounted_elsewhere: str
) -> None:
    subprocess.run(
        ["btrfs", "-q", "subvolume", "create", os.path.join(btrfs_volume.mount_point, "sub")],
        check=True,
    )
    write(os.path.join(btrfs_volume.mount_point, "sub", "f"), "in sub")
    subprocess.run(
        ["mount", "-o", "subvol=sub", btrfs_volume.device, mounted_elsewhere], check=True
    )
    volume = resolve_volume(mounted_elsewhere)
    provider.supports(volume)
    rec = await snapshot(provider, volume)
    assert read(os.path.join(rec.device_path, "f")) == "in sub"
    await provider.delete(rec)
    subprocess.run(["mount", "-o", "remount,ro", mounted_elsewhere], check=True)
    with pytest.raises(VolumeNotSupported, match="read-only"):
        provider.supports(resolve_volume(mounted_elsewhere))


async def test_snapshot_is_point_in_time_and_read_only(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    mount = btrfs_volume.mount_point
    volume = resolve_volume(mount)
    write(os.path.join(mount, "a"), "before")
    rec = new_record(volume)
    await provider.prepare(rec, volume)
    snapshot_dir = os.path.join(mount, SNAPSHOT_DIR)
    assert os.stat(snapshot_dir).st_mode & 0o777 == 0o700
    assert not await provider.exists(rec)
    await provider.commit(rec, volume)
    assert rec.device_path == os.path.join(snapshot_dir, rec.id)
    assert rec.provider_data["path"] == rec.device_path
    assert await provider.exists(rec)
    write(os.path.join(mount, "a"), "after")
    write(os.path.join(mount, "b"), "new")
    assert read(os.path.join(rec.device_path, "a")) == "before"
    assert not os.path.exists(os.path.join(rec.device_path, "b"))
    with pytest.raises(OSError) as info:
        write(os.path.join(rec.device_path, "c"), "x")
    assert info.value.errno == errno.EROFS
    await provider.delete(rec)
    assert not await provider.exists(rec)
    assert not os.path.exists(rec.device_path)


async def test_expose_under_runtime_dir_then_unexpose(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    write(os.path.join(volume.mount_point, "a"), "content")
    rec = await snapshot(provider, volume)
    try:
        path = await provider.expose(rec, "")
        assert path == os.path.join(provider.context.runtime_dir, "snapshots", rec.id)
        assert rec.exposed_path == path
        assert is_mount_point(path)
        assert "ro" in resolve_volume(path).options.split(",")
        assert read(os.path.join(path, "a")) == "content"
        with pytest.raises(OSError) as info:
            write(os.path.join(path, "new"), "x")
        assert info.value.errno == errno.EROFS
        assert await provider.expose(rec, "") == path  # same place again: fine
        with pytest.raises(InvalidState, match="already exposed"):
            await provider.expose(rec, "/mnt/elsewhere")
        await provider.unexpose(rec)
        assert rec.exposed_path == ""
        assert not is_mount_point(path)
        assert not os.path.exists(path)
        await provider.unexpose(rec)  # not exposed: fine
    finally:
        await provider.delete(rec)


async def test_expose_at_given_mount_point(provider: BtrfsProvider, btrfs_volume: LoopFs) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    rec = await snapshot(provider, volume)
    try:
        busy = os.path.join(btrfs_volume.workdir, "busy")
        os.mkdir(busy)
        write(os.path.join(busy, "x"), "x")
        with pytest.raises(InvalidArgs, match="not an empty directory"):
            await provider.expose(rec, busy)
        with pytest.raises(InvalidArgs, match="absolute"):
            await provider.expose(rec, "relative/dir")
        existing = os.path.join(btrfs_volume.workdir, "empty")
        os.mkdir(existing)
        assert await provider.expose(rec, existing) == existing
        assert is_mount_point(existing)
        await provider.unexpose(rec)
        assert os.path.isdir(existing)  # not ours: kept
        target = os.path.join(btrfs_volume.workdir, "new", "dir")
        assert await provider.expose(rec, target) == target
        assert is_mount_point(target)
        await provider.unexpose(rec)
        assert not os.path.exists(target)
    finally:
        await provider.delete(rec)


async def test_delete_unexposes_and_is_idempotent(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    rec = await snapshot(provider, volume)
    path = await provider.expose(rec, "")
    await provider.delete(rec)
    assert not is_mount_point(path)
    assert not os.path.exists(path)
    assert not await provider.exists(rec)
    await provider.delete(rec)  # already gone: success


async def test_delete_after_a_reboot_emptied_the_runtime_dir(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    rec = await snapshot(provider, volume)
    rec.exposed_path = os.path.join(provider.context.runtime_dir, "snapshots", rec.id)
    rec.provider_data["exposed_dir_created"] = "1"  # as the store kept it; nothing is mounted
    await provider.delete(rec)
    assert rec.exposed_path == ""
    assert not await provider.exists(rec)


async def test_delete_of_a_snapshot_that_was_never_committed(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    rec = new_record(volume)
    await provider.prepare(rec, volume)
    await provider.delete(rec)  # what a restart does with committed=False records
    # and with only what the store kept
    bare = SnapshotRecord(id=rec.id, snapshot_set_id="s", volume=rec.volume, provider="btrfs")
    await provider.delete(bare)


async def test_os_errors_become_provider_failures(
    provider: BtrfsProvider, btrfs_volume: LoopFs
) -> None:
    volume = resolve_volume(btrfs_volume.mount_point)
    rec = new_record(volume)
    await provider.prepare(rec, volume)
    os.rmdir(os.path.join(volume.mount_point, SNAPSHOT_DIR))
    with pytest.raises(ProviderFailure, match=r"snapshot of .* failed: ENOENT"):
        await provider.commit(rec, volume)
    with pytest.raises(InvalidArgs):
        await provider.prepare(
            SnapshotRecord(id="../x", snapshot_set_id="s", volume=rec.volume, provider="btrfs"),
            volume,
        )
