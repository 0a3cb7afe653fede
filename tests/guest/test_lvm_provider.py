"""The lvm_thin provider against real LVM (runs inside the UML guest only)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import NO_UDEV, POOL, mounts_below, sh

from snapd_vss.errors import InsufficientStorage, ProviderFailure, VolumeNotSupported
from snapd_vss.freeze import FrozenFilesystems
from snapd_vss.freeze.ioctl import is_frozen
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze, decide
from snapd_vss.providers.lvm_thin import LvmThinProvider
from snapd_vss.volumes import resolve_volume


def tagged_lvs(vg: str) -> list[dict[str, str]]:
    out = sh("lvm", "lvs", "--reportformat", "json", "-o", "lv_name,lv_tags,lv_active",
             "@snapd_vss").stdout
    return [row for rep in json.loads(out)["report"] for row in rep["lv"]]


def write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def test_available_in_the_guest(lvm_provider: LvmThinProvider) -> None:
    assert lvm_provider.availability().available, lvm_provider.availability().reason


def test_supports_thin_lvs_only(lvm_provider, thin_fs, scratch_vg, tmp_path) -> None:
    lvm_provider.supports(thin_fs("ext4"))

    with pytest.raises(VolumeNotSupported, match="tmpfs"):
        lvm_provider.supports(resolve_volume("/tmp"))

    sh("lvm", "lvcreate", *NO_UDEV, "-L", "64M", "-n", "thick", scratch_vg)
    try:
        sh("mkfs.ext4", "-q", f"/dev/{scratch_vg}/thick")
        mp = tmp_path / "thick"
        mp.mkdir()
        sh("mount", f"/dev/{scratch_vg}/thick", str(mp))
        try:
            with pytest.raises(VolumeNotSupported, match="thick"):
                lvm_provider.supports(resolve_volume(str(mp)))
        finally:
            sh("umount", str(mp))
    finally:
        sh("lvm", "lvremove", *NO_UDEV, f"{scratch_vg}/thick")


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
async def test_snapshot_is_point_in_time_and_delete_leaves_nothing(
    lvm_provider, thin_fs, new_record, scratch_vg, tmp_path, fs
) -> None:
    volume = thin_fs(fs)
    data = Path(volume.mount_point)
    write(data / "file.txt", "before\n")
    rec = new_record(volume.mount_point)

    await lvm_provider.prepare(rec, volume)
    assert rec.provider_data["pool"] == POOL
    await lvm_provider.commit(rec, volume)
    write(data / "file.txt", "after\n")
    write(data / "new.txt", "only in the origin\n")

    lv = rec.provider_data["lv"]
    origin = rec.provider_data["origin"]
    assert re.fullmatch(rf"{origin}_vss_\d{{14}}_[0-9a-f]{{8}}", lv), lv
    assert rec.device_path == f"/dev/{scratch_vg}/{lv}"
    (row,) = [r for r in tagged_lvs(scratch_vg) if r["lv_name"] == lv]
    tags = row["lv_tags"].split(",")
    assert "snapd_vss" in tags
    assert f"snapd_vss_set_{rec.snapshot_set_id.replace('-', '')[:8]}" in tags
    assert f"snapd_vss_id_{rec.id}" in tags
    assert await lvm_provider.exists(rec)

    snap_dir = tmp_path / "exposed"
    path = await lvm_provider.expose(rec, str(snap_dir))
    assert path == str(snap_dir)
    assert (snap_dir / "file.txt").read_text() == "before\n"
    assert not (snap_dir / "new.txt").exists()
    with pytest.raises(OSError):
        (snap_dir / "x").write_text("read-only")
    assert await lvm_provider.expose(rec, str(snap_dir)) == path  # again: same answer

    await lvm_provider.unexpose(rec)
    assert mounts_below(snap_dir) == []
    assert not snap_dir.exists()  # the provider made it, the provider removed it
    await lvm_provider.expose(rec, str(snap_dir))

    await lvm_provider.delete(rec)  # unexposes first
    assert mounts_below(snap_dir) == []
    assert tagged_lvs(scratch_vg) == []
    assert not os.path.exists(rec.device_path)
    assert not await lvm_provider.exists(rec)
    await lvm_provider.delete(rec)  # already gone: still fine
    assert (data / "file.txt").read_text() == "after\n"


async def test_commit_on_a_fifrozen_fs_on_this_kernel(
    lvm_provider, thin_fs, new_record, tmp_path
) -> None:
    """The kernel behaviour the coordinator freeze is built on (see lvm/freezing.py).

    Linux 6.12 nests LVM's lockfs suspend inside an FIFREEZE: lvcreate works on the
    frozen filesystem, which stays frozen, and the snapshot holds the frozen state; so
    the provider asks the coordinator to hold it. On Linux 6.1 the suspend fails with
    EBUSY; so the provider does not.
    """
    volume = thin_fs("ext4")
    nests = decide(CoordinatorFreeze.AUTO).hold
    assert lvm_provider.needs_fs_freeze(volume) is nests
    data = Path(volume.mount_point) / "file.txt"
    data.write_text("frozen state\n")
    rec = new_record(volume.mount_point)
    await lvm_provider.prepare(rec, volume)
    if nests:
        async with FrozenFilesystems([volume.mount_point], 30.0, str(tmp_path)):
            await lvm_provider.commit(rec, volume)
            assert is_frozen(volume.mount_point), "LVM's resume thawed the service's freeze"
        data.write_text("after the thaw\n")
        path = await lvm_provider.expose(rec, str(tmp_path / "snap"))
        assert (Path(path) / "file.txt").read_text() == "frozen state\n"
        await lvm_provider.delete(rec)
        return
    async with FrozenFilesystems([volume.mount_point], 30.0, str(tmp_path)):
        assert is_frozen(volume.mount_point)
        with pytest.raises(ProviderFailure) as err:
            await lvm_provider.commit(rec, volume)
    message = str(err.value)
    assert "lvcreate" in message  # the command
    assert "Device or resource busy" in message  # LVM's own words
    assert not is_frozen(volume.mount_point)
    info = sh("dmsetup", "info", "-c", "--noheadings", "-o", "attr",
              volume.source.replace("/dev/mapper/", "")).stdout
    assert "s" not in info.split()[0][:2], f"origin left suspended: {info}"
    assert "lv" not in rec.provider_data
    # Without the foreign freeze the same commit works (LVM's own lockfs freezes).
    await lvm_provider.commit(rec, volume)
    await lvm_provider.delete(rec)


async def test_command_failure_carries_lvms_message(lvm_provider, new_record, scratch_vg) -> None:
    rec = new_record("/nowhere")
    rec.provider_data.update(vg=scratch_vg, lv="no_such_lv", fs_type="ext4")
    with pytest.raises(ProviderFailure) as err:
        await lvm_provider.expose(rec, "/tmp/never-mounted")
    assert 'Failed to find logical volume "vssvg/no_such_lv"' in str(err.value)
    assert "lvchange" in str(err.value)
    assert not os.path.exists("/tmp/never-mounted")
    assert not await lvm_provider.exists(rec)
    await lvm_provider.delete(rec)  # gone already: success


async def test_full_pool_is_refused(
    lvm_provider, thin_fs, new_record, scratch_vg, tmp_path
) -> None:
    sh("lvm", "lvcreate", *NO_UDEV, "--type", "thin-pool", "-L", "64M", "-n", "small", scratch_vg)
    try:
        volume = thin_fs("ext4", size="128M", pool="small")
        with open(Path(volume.mount_point) / "fill", "wb") as f:
            for _ in range(58):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        usage = {p.pool: p for p in await lvm_provider.pool_usage()}
        assert usage["small"].data_percent > 80.0
        rec = new_record(volume.mount_point)
        with pytest.raises(InsufficientStorage) as err:
            await lvm_provider.prepare(rec, volume)
        message = str(err.value)
        assert f"{scratch_vg}/small" in message and "80% limit" in message
        assert "lvextend" in message
        assert tagged_lvs(scratch_vg) == []
    finally:
        for mp in mounts_below(tmp_path):
            sh("umount", mp, check=False)
        sh("lvm", "lvremove", *NO_UDEV, f"{scratch_vg}/small", check=False)


async def test_thresholds_are_configurable(thin_fs, new_record, tmp_path) -> None:
    from snapd_vss.providers.base import ProviderContext

    volume = thin_fs("ext4")
    strict = LvmThinProvider(
        ProviderContext(str(tmp_path), str(tmp_path)), data_threshold=0.0, metadata_threshold=99
    )
    with pytest.raises(InsufficientStorage, match=r"data is .* above the 0% limit"):
        await strict.prepare(new_record(volume.mount_point), volume)


async def test_pool_usage_reports_every_pool(lvm_provider, scratch_vg) -> None:
    (pool,) = [p for p in await lvm_provider.pool_usage() if p.vg == scratch_vg]
    assert pool.pool == POOL
    assert 0.0 <= pool.data_percent < 100.0
    assert 0.0 < pool.metadata_percent < 100.0
    assert pool.size_bytes == 1 << 30


async def test_reconcile_finds_removed_and_unknown_snapshots(
    lvm_provider, thin_fs, new_record, scratch_vg
) -> None:
    a = thin_fs("ext4")
    b = thin_fs("xfs")
    set_id = "5e7f00d1-0000-4000-8000-000000000000"
    ra, rb = new_record(a.mount_point, set_id), new_record(b.mount_point, set_id)
    for rec, vol in ((ra, a), (rb, b)):
        await lvm_provider.prepare(rec, vol)
        await lvm_provider.commit(rec, vol)
    # by hand: one of ours removed, one foreign LV carrying our tag
    sh("lvm", "lvremove", *NO_UDEV, f"{scratch_vg}/{ra.provider_data['lv']}")
    origin = ra.provider_data["origin"]
    sh("lvm", "lvcreate", *NO_UDEV, "-s", "-n", "stray", "--addtag", "snapd_vss",
       f"{scratch_vg}/{origin}")

    report = await lvm_provider.reconcile([ra, rb])
    assert [r.id for r in report.missing] == [ra.id]
    assert [lv.name for lv in report.unknown] == ["stray"]
    assert not await lvm_provider.exists(ra)
    assert await lvm_provider.exists(rb)
    await lvm_provider.delete(rb)


async def test_delete_finds_an_unrecorded_lv_by_its_id_tag(
    lvm_provider, thin_fs, new_record, scratch_vg
) -> None:
    """A commit whose LV was made but never recorded (killed daemon, cancelled lvcreate)."""
    volume = thin_fs("ext4")
    rec = new_record(volume.mount_point)
    await lvm_provider.prepare(rec, volume)
    await lvm_provider.commit(rec, volume)
    lv = rec.provider_data.pop("lv")
    assert [r["lv_name"] for r in tagged_lvs(scratch_vg)] == [lv]
    await lvm_provider.delete(rec)
    assert tagged_lvs(scratch_vg) == []
    await lvm_provider.delete(rec)  # nothing tagged with its id: still fine


async def test_startup_reports_unclaimed_lvs_and_pools(
    thin_fs, new_record, scratch_vg, tmp_path
) -> None:
    from snapd_vss.providers.base import ProviderContext
    from snapd_vss.store import SnapshotStore

    volume = thin_fs("ext4")
    state = tmp_path / "state"
    state.mkdir()
    provider = LvmThinProvider(ProviderContext(str(state), str(tmp_path)))
    known, stray = new_record(volume.mount_point), new_record(volume.mount_point)
    for rec in (known, stray):
        await provider.prepare(rec, volume)
        await provider.commit(rec, volume)
    with SnapshotStore(str(state / "snapshots.db")) as store:
        store.put(known)
    seen = []
    provider.pools_changed = seen.append
    provider.pools = []
    await provider.startup()
    try:
        assert [lv.name for lv in provider.unclaimed] == [stray.provider_data["lv"]]
        assert [p.pool for p in provider.pools if p.vg == scratch_vg] == [POOL]
        assert seen and seen[-1] == provider.pools
    finally:
        await provider.shutdown()
        await provider.delete(known)
        await provider.delete(stray)


async def test_pool_refreshes_wait_while_a_snapshot_is_being_made(
    lvm_provider, thin_fs, new_record
) -> None:
    volume = thin_fs()
    await lvm_provider.pool_usage()
    record = new_record(volume.mount_point)
    assert not lvm_provider.snapshot_in_progress()
    await lvm_provider.prepare(record, volume)
    assert lvm_provider.snapshot_in_progress()  # the periodic lvs waits
    await lvm_provider.commit(record, volume)
    assert not lvm_provider.snapshot_in_progress()
    before = {p.pool: p for p in lvm_provider.pools}
    await lvm_provider.delete(record)  # refreshes its pool from the kernel
    assert {p.pool: p.size_bytes for p in lvm_provider.pools} == {
        name: p.size_bytes for name, p in before.items()
    }
    abandoned = new_record(volume.mount_point)
    await lvm_provider.prepare(abandoned, volume)
    await lvm_provider.delete(abandoned)  # an aborted set deletes what it prepared
    assert not lvm_provider.snapshot_in_progress()
