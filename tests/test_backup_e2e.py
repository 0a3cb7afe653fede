"""The full backup sequence against the real daemon, on a real bus, on a real btrfs volume."""

from __future__ import annotations

import os

import pytest

from snapd_vss import errors
from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.daemon_fixtures import WriterFactory, wait_for_writers
from snapd_vss.testing.loopdev import LoopFs


def _data_dir(volume: LoopFs, name: str) -> str:
    path = os.path.join(volume.mount_point, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "data.txt"), "w") as f:
        f.write("before snapshot\n")
    return path


async def test_full_backup_sequence(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    data = _data_dir(btrfs_volume, "w1")
    writer = scripted_writers("w1", data, "--annotate", "lsn=42")
    await wait_for_writers(client, 1)

    session = await client.manager.create_backup_session()
    await session.set_backup_state(True, False, "FULL", False)
    metadata = await session.gather_writer_metadata()
    assert len(metadata) == 1
    (instance_id,) = metadata
    await session.add_component(instance_id, "files", "w1")
    set_id = await session.start_snapshot_set()
    snap_id = await session.add_to_snapshot_set(data, "")
    await session.prepare_for_backup()
    await session.do_snapshot_set()

    with open(os.path.join(data, "data.txt"), "w") as f:
        f.write("after snapshot\n")
    props = await session.get_snapshot_properties(snap_id)
    assert props["SnapshotSetId"] == set_id
    assert props["Provider"] == "btrfs"
    assert props["Volume"] == btrfs_volume.mount_point
    snap_file = os.path.join(props["DevicePath"], "w1", "data.txt")
    with open(snap_file) as f:
        assert f.read() == "before snapshot\n"

    await session.set_backup_succeeded(instance_id, "files", "w1", True)
    await session.backup_complete()
    doc = parse_backup_components(await session.save_as_xml())
    component = doc.component(instance_id, "files", "w1")
    assert component.backup_metadata == "lsn=42"
    assert component.backup_succeeded
    assert doc.snapshots[0].id == snap_id
    assert [w.state for w in await client.writers()] == ["STABLE"]
    await session.close()

    assert [e for e in writer.events() if e != "identify"] == [
        "prepare_backup",
        "prepare_for_freeze",
        "freeze",
        "thaw",
        "post_snapshot",
        "backup_complete",
        "backup_shutdown",
    ]
    # a non-persistent snapshot is released with its session
    assert await client.snapshots() == []
    assert not os.path.exists(props["DevicePath"])


async def test_calls_out_of_order_are_refused(client: VssClient, btrfs_volume: LoopFs) -> None:
    session = await client.manager.create_backup_session()
    with pytest.raises(errors.InvalidState):
        await session.do_snapshot_set()
    with pytest.raises(errors.InvalidState):
        await session.start_snapshot_set()  # before GatherWriterMetadata
    await session.gather_writer_metadata()
    with pytest.raises(errors.InvalidState):
        await session.prepare_for_backup()
    await session.start_snapshot_set()
    with pytest.raises(errors.InvalidState):
        await session.backup_complete()
    await session.close()


async def test_unknown_options_are_an_error(client: VssClient) -> None:
    with pytest.raises(errors.InvalidArgs, match="unknown option"):
        await client.manager.create_backup_session(opts={"colour": "blue"})
    with pytest.raises(errors.InvalidArgs, match="BACKUP"):
        await client.manager.create_backup_session(context="SOMETIMES")
