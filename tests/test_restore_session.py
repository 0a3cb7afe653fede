"""Restore sessions on the real daemon: the sequence, the writer's part, bad input, access."""

from __future__ import annotations

import os

import pytest

from snapd_vss import errors
from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon_fixtures import WriterFactory, WriterProcess, wait_for_writers
from snapd_vss.testing.loopdev import LoopFs

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE b [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<BackupComponents xmlns="urn:snapdvss:backup-components:1" version="1" backupType="&b;"/>"""


async def backed_up(
    client: VssClient, volume: LoopFs, factory: WriterFactory, *writer_args: str
) -> tuple[str, str, WriterProcess]:
    """A completed backup of one scripted writer; returns (document, instance id, writer)."""
    data = os.path.join(volume.mount_point, "w")
    os.makedirs(data, exist_ok=True)
    writer = factory("w", data, "--annotate", "lsn=42", *writer_args)
    await wait_for_writers(client, 1)
    session = await client.manager.create_backup_session()
    (instance_id,) = await session.gather_writer_metadata()
    await session.add_component(instance_id, "files", "w")
    await session.start_snapshot_set()
    await session.add_to_snapshot_set(data, "")
    await session.prepare_for_backup()
    await session.do_snapshot_set()
    await session.set_backup_succeeded(instance_id, "files", "w", True)
    await session.backup_complete()
    document = await session.save_as_xml()
    await session.close()
    return document, instance_id, writer


async def test_restore_sequence_reaches_the_writer(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    document, instance_id, writer = await backed_up(client, btrfs_volume, scripted_writers)
    session = await client.manager.create_restore_session(document)
    assert await session.get("State") == "CREATED"
    with pytest.raises(errors.InvalidState):
        await session.pre_restore()
    await session.gather_writer_metadata()
    await session.set_selected_for_restore(instance_id, "files", "w", True)
    await session.add_alternative_location_mapping(
        instance_id, "files", "w", "/srv/w", "*", True, "/srv/restored"
    )
    with pytest.raises(errors.InvalidState):
        await session.set_file_restore_status(instance_id, "files", "w", "ALL")
    await session.pre_restore()
    await writer.await_event("pre_restore")
    await session.set_file_restore_status(instance_id, "files", "w", "ALL")
    await session.post_restore()
    await writer.await_event("post_restore")
    saved = parse_backup_components(await session.save_as_xml())
    component = saved.component(instance_id, "files", "w")
    assert component.selected_for_restore
    assert component.file_restore_status.value == "ALL"
    assert component.restore_metadata == "restoring from lsn=42"  # set by the writer
    assert component.alternate_location_mappings[0].destination == "/srv/restored"
    lines = writer.events_path.read_text().splitlines()
    assert "post_restore ALL" in lines  # the writer saw the file restore status
    await session.close()
    assert await client.manager.get("Sessions") == []


async def test_restore_refuses_bad_selections_and_paths(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    document, instance_id, _ = await backed_up(client, btrfs_volume, scripted_writers)
    failed = document.replace('backupSucceeded="true"', 'backupSucceeded="false"')
    session = await client.manager.create_restore_session(failed)
    await session.gather_writer_metadata()
    with pytest.raises(errors.InvalidArgs, match="not backed up successfully"):
        await session.set_selected_for_restore(instance_id, "files", "w", True)
    with pytest.raises(errors.NotFound):
        await session.set_selected_for_restore(instance_id, "files", "nope", True)
    for path, destination in (("/srv/../etc", "/x"), ("/srv", "relative/dir"), ("/srv", "/a/./b")):
        with pytest.raises(errors.InvalidArgs):
            await session.add_alternative_location_mapping(
                instance_id, "files", "w", path, "*", True, destination
            )
    with pytest.raises(errors.InvalidState, match="no component is selected"):
        await session.pre_restore()
    await session.close()


async def test_writer_veto_in_pre_restore_is_recorded(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    document, instance_id, _ = await backed_up(
        client, btrfs_volume, scripted_writers, "--veto-in", "pre_restore=non_retryable"
    )
    session = await client.manager.create_restore_session(document)
    await session.gather_writer_metadata()
    await session.set_selected_for_restore(instance_id, "files", "w", True)
    await session.pre_restore()
    (status,) = await client.writers()
    assert (status.state, status.last_error) == ("FAILED_AT_PRE_RESTORE", "NON_RETRYABLE")
    saved = parse_backup_components(await session.save_as_xml())
    failures = saved.component(instance_id, "files", "w").failures
    assert [f.phase for f in failures] == ["PRE_RESTORE"]
    await session.close()


@pytest.mark.parametrize("document", [BILLION_LAUGHS, "", "<BackupComponents/>", "x" * 100])
async def test_hostile_restore_document_is_refused(client: VssClient, document: str) -> None:
    with pytest.raises(errors.InvalidDocument):
        await client.manager.create_restore_session(document)
    assert await client.manager.get("Sessions") == []


async def test_restore_session_belongs_to_its_connection(
    private_bus: PrivateBus,
    client: VssClient,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    document, _, _ = await backed_up(client, btrfs_volume, scripted_writers)
    session = await client.manager.create_restore_session(document)
    async with await VssClient.connect(private_bus.address) as other:
        with pytest.raises(errors.AccessDenied):
            await other.restore_session(session.path).gather_writer_metadata()
    await session.close()
