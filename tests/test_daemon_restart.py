"""What survives a daemon restart, and what a killed daemon leaves for the next start to clean."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, wait_for_writers
from snapd_vss.testing.loopdev import LoopFs


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="snapd-vssd-restart-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def snapshot_dir(volume: LoopFs) -> str:
    return os.path.join(volume.mount_point, ".snapd-vss")


async def test_persistent_snapshot_is_listed_and_deletable_after_restart(
    private_bus: PrivateBus, workdir: Path, btrfs_volume: LoopFs
) -> None:
    first = VssDaemon(private_bus.address, workdir).start()
    try:
        async with await VssClient.connect(private_bus.address) as client:
            session = await client.manager.create_backup_session("NAS_ROLLBACK")
            await session.gather_writer_metadata()
            await session.start_snapshot_set()
            snap_id = await session.add_to_snapshot_set(btrfs_volume.mount_point, "btrfs")
            await session.prepare_for_backup()
            await session.do_snapshot_set()
            await session.close()
            (kept,) = await client.snapshots()
            assert kept.id == snap_id and kept.persistent
    finally:
        assert first.stop() == 0
    second = VssDaemon(private_bus.address, workdir).start()
    try:
        async with await VssClient.connect(private_bus.address) as client:
            (again,) = await client.snapshots()
            assert (again.id, again.state, again.device_path) == (
                snap_id,
                "CREATED",
                kept.device_path,
            )
            await client.snapshot(snap_id).delete()
            assert await client.snapshots() == []
        assert os.listdir(snapshot_dir(btrfs_volume)) == []
    finally:
        second.stop()


async def test_snapshot_removed_by_hand_is_shown_invalid_after_restart(
    private_bus: PrivateBus, workdir: Path, btrfs_volume: LoopFs
) -> None:
    first = VssDaemon(private_bus.address, workdir).start()
    try:
        async with await VssClient.connect(private_bus.address) as client:
            session = await client.manager.create_backup_session("NAS_ROLLBACK")
            await session.gather_writer_metadata()
            await session.start_snapshot_set()
            await session.add_to_snapshot_set(btrfs_volume.mount_point, "btrfs")
            await session.prepare_for_backup()
            await session.do_snapshot_set()
            await session.close()
            (kept,) = await client.snapshots()
    finally:
        first.stop()
    proc = await asyncio.create_subprocess_exec(
        "btrfs", "subvolume", "delete", kept.device_path, stdout=asyncio.subprocess.DEVNULL
    )
    assert await proc.wait() == 0
    second = VssDaemon(private_bus.address, workdir).start()
    try:
        async with await VssClient.connect(private_bus.address) as client:
            (gone,) = await client.snapshots()
            assert gone.state == "INVALID"
            assert "removed outside snapd-vss" in gone.state_reason
            await client.snapshot(gone.id).delete()
            assert await client.snapshots() == []
    finally:
        second.stop()


async def test_sigkill_mid_set_leaves_nothing_after_restart(
    private_bus: PrivateBus,
    workdir: Path,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    first = VssDaemon(private_bus.address, workdir).start()
    data = os.path.join(btrfs_volume.mount_point, "w")
    os.makedirs(data)
    writer = scripted_writers("w", data, "--delay-in", "thaw=5")
    async with await VssClient.connect(private_bus.address) as client:
        await wait_for_writers(client, 1)
        session = await client.manager.create_backup_session()
        (instance_id,) = await session.gather_writer_metadata()
        await session.add_component(instance_id, "files", "w")
        await session.start_snapshot_set()
        await session.add_to_snapshot_set(data, "")
        await session.prepare_for_backup()
        running = asyncio.ensure_future(session.do_snapshot_set())
        await writer.await_event("thaw")
        assert len(os.listdir(snapshot_dir(btrfs_volume))) == 1  # committed, set not finished
        first.kill()
        with pytest.raises(Exception):  # noqa: B017 - the service vanished mid-call
            await running
    second = VssDaemon(private_bus.address, workdir).start()
    try:
        assert os.listdir(snapshot_dir(btrfs_volume)) == []
        assert "left half-made by a previous run" in second.log_text()
        async with await VssClient.connect(private_bus.address) as client:
            assert await client.snapshots() == []
            await wait_for_writers(client, 1)  # the SDK re-registered with the new daemon
    finally:
        second.stop()
