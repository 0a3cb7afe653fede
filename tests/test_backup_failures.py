"""Writers that hang, veto or die; requestors that vanish; one set at a time; SIGTERM.

Every test runs the real daemon on a private bus with real writer processes and a real
btrfs volume on a loop device.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from snapd_vss import errors
from snapd_vss.ipc.client import BackupSessionProxy, VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, WriterProcess, wait_for_writers
from snapd_vss.testing.loopdev import LoopFs


def data_dir(volume: LoopFs, name: str) -> str:
    path = os.path.join(volume.mount_point, name)
    os.makedirs(path, exist_ok=True)
    return path


async def prepared_session(
    client: VssClient, volume: LoopFs, context: str | None = None, **opts: bool
) -> BackupSessionProxy:
    """A session with every writer's components selected, prepared, ready to snapshot."""
    session = await client.manager.create_backup_session(context, opts or None)
    metadata = await session.gather_writer_metadata()
    for instance_id, xml in metadata.items():
        from snapd_vss.documents.writer_metadata import parse_writer_metadata

        for component in parse_writer_metadata(xml).components:
            await session.add_component(instance_id, component.logical_path, component.name)
    await session.start_snapshot_set()
    await session.add_to_snapshot_set(volume.mount_point, "")
    await session.prepare_for_backup()
    return session


async def status_of(client: VssClient, name: str) -> tuple[str, str]:
    for writer in await client.writers():
        if writer.name == name:
            return writer.state, writer.last_error
    raise AssertionError(f"no writer {name}")


async def start_writers(
    client: VssClient, factory: WriterFactory, volume: LoopFs, *specs: tuple[str, ...]
) -> list[WriterProcess]:
    writers = [factory(spec[0], data_dir(volume, spec[0]), *spec[1:]) for spec in specs]
    await wait_for_writers(client, len(writers))
    return writers


async def test_writer_hanging_in_freeze_aborts_the_set(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    _hung, good = await start_writers(
        client,
        scripted_writers,
        btrfs_volume,
        ("hung", "--hang-in", "freeze", "--freeze-timeout-ms", "1500"),
        ("good",),
    )
    session = await prepared_session(client, btrfs_volume)
    with pytest.raises(errors.WriterTimeout, match="did not answer FREEZE"):
        await session.do_snapshot_set()
    assert await status_of(client, "hung") == ("FAILED_AT_FREEZE", "TIMEOUT")
    assert (await status_of(client, "good"))[0] == "STABLE"
    await good.await_event("abort")
    assert "thaw" not in good.events()
    assert await client.snapshots() == []
    assert os.listdir(os.path.join(btrfs_volume.mount_point, ".snapd-vss")) == []
    assert await session.get("State") == "ABORTED"
    statuses = {row[1]: row for row in await session.gather_writer_status()}
    assert statuses["hung"][2:4] == ("FAILED_AT_FREEZE", "TIMEOUT")
    await session.close()


async def test_writer_veto_in_freeze_names_the_writer_error(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    _, good = await start_writers(
        client,
        scripted_writers,
        btrfs_volume,
        ("veto", "--veto-in", "freeze=retryable"),
        ("good",),
    )
    session = await prepared_session(client, btrfs_volume)
    with pytest.raises(errors.WriterRetryable, match="scripted veto in freeze"):
        await session.do_snapshot_set()
    assert await status_of(client, "veto") == ("FAILED_AT_FREEZE", "RETRYABLE")
    await good.await_event("abort")
    assert await client.snapshots() == []


async def test_writer_hanging_in_identify_is_marked_failed(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    await start_writers(
        client,
        scripted_writers,
        btrfs_volume,
        ("wedged", "--hang-in", "identify_again"),
        ("good",),
    )
    session = await client.manager.create_backup_session()
    metadata = await session.gather_writer_metadata()
    names = {m.split('name="')[1].split('"')[0] for m in metadata.values()}
    assert "good" in names and "wedged" not in names
    assert await status_of(client, "wedged") == ("FAILED_AT_IDENTIFY", "TIMEOUT")
    await session.close()


async def test_writer_killed_while_frozen_aborts_the_set(
    client: VssClient, btrfs_volume: LoopFs, scripted_writers: WriterFactory
) -> None:
    slow, victim = await start_writers(
        client,
        scripted_writers,
        btrfs_volume,
        ("slow", "--delay-in", "freeze=2"),
        ("victim",),
    )
    session = await prepared_session(client, btrfs_volume)
    snapshotting = asyncio.ensure_future(session.do_snapshot_set())
    await victim.await_event("freeze")
    victim.process.send_signal(signal.SIGKILL)
    with pytest.raises(errors.WriterNonRetryable):
        await snapshotting
    await slow.await_event("abort")
    assert "thaw" not in slow.events() or slow.events().index("abort") > 0
    assert await client.snapshots() == []
    assert os.listdir(os.path.join(btrfs_volume.mount_point, ".snapd-vss")) == []
    assert [w.name for w in await client.writers()] == ["slow"]


async def test_requestor_leaving_aborts_its_session(
    private_bus: PrivateBus,
    client: VssClient,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    (writer,) = await start_writers(client, scripted_writers, btrfs_volume, ("w",))
    requestor = await VssClient.connect(private_bus.address)
    session = await prepared_session(requestor, btrfs_volume)
    await session.do_snapshot_set()
    (snapshot,) = await client.snapshots()
    assert os.path.isdir(snapshot.device_path)
    await requestor.close()
    await writer.await_event("abort")
    for _ in range(100):
        if not await client.snapshots():
            break
        await asyncio.sleep(0.05)
    assert await client.snapshots() == []
    assert not os.path.exists(snapshot.device_path)
    assert await client.manager.get("Sessions") == []


async def test_session_refuses_other_connections(
    private_bus: PrivateBus, client: VssClient, btrfs_volume: LoopFs
) -> None:
    session = await client.manager.create_backup_session()
    other = await VssClient.connect(private_bus.address)
    try:
        with pytest.raises(errors.AccessDenied, match="belongs to connection"):
            await other.backup_session(session.path).gather_writer_metadata()
    finally:
        await other.close()
    await session.gather_writer_metadata()  # the owner still may
    await session.close()


async def test_one_snapshot_set_at_a_time(
    private_bus: PrivateBus,
    client: VssClient,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    (writer,) = await start_writers(
        client, scripted_writers, btrfs_volume, ("slow", "--delay-in", "freeze=1.5")
    )
    first = await prepared_session(client, btrfs_volume)
    other = await VssClient.connect(private_bus.address)
    try:
        impatient = await prepared_session(other, btrfs_volume, wait=False)
        patient_client = await VssClient.connect(private_bus.address)
        patient = await prepared_session(patient_client, btrfs_volume)
        running = asyncio.ensure_future(first.do_snapshot_set())
        await writer.await_event("freeze")
        with pytest.raises(errors.SnapshotSetInProgress):
            await impatient.do_snapshot_set()
        await patient.do_snapshot_set()  # queues behind the first, then succeeds
        await running
        assert len(await client.snapshots()) == 2
        await patient_client.close()
    finally:
        await other.close()
    await first.close()


async def test_sigterm_aborts_open_sessions_and_exits_cleanly(
    client: VssClient,
    vss_daemon: VssDaemon,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    (writer,) = await start_writers(client, scripted_writers, btrfs_volume, ("w",))
    session = await prepared_session(client, btrfs_volume)
    await session.do_snapshot_set()
    (snapshot,) = await client.snapshots()
    assert await asyncio.to_thread(vss_daemon.stop) == 0, vss_daemon.log_text()
    await writer.await_event("abort")
    assert not os.path.exists(snapshot.device_path)
    assert "aborting 1 open sessions" in vss_daemon.log_text()
    assert any("STOPPING=1" in m for m in vss_daemon.notifications)


async def test_requestor_leaving_during_do_snapshot_set_aborts_it(
    private_bus: PrivateBus,
    client: VssClient,
    vss_daemon: VssDaemon,
    btrfs_volume: LoopFs,
    scripted_writers: WriterFactory,
) -> None:
    (writer,) = await start_writers(
        client, scripted_writers, btrfs_volume, ("slow", "--delay-in", "freeze=2")
    )
    requestor = await VssClient.connect(private_bus.address)
    session = await prepared_session(requestor, btrfs_volume)
    running = asyncio.ensure_future(session.do_snapshot_set())
    await writer.await_event("freeze")
    await requestor.close()  # gone while the writer is frozen
    with pytest.raises(errors.VssError):
        await running
    await writer.await_event("abort")
    for _ in range(100):
        if not await client.manager.get("Sessions"):
            break
        await asyncio.sleep(0.05)
    assert await client.manager.get("Sessions") == []
    assert await client.snapshots() == []
    assert os.listdir(os.path.join(btrfs_volume.mount_point, ".snapd-vss")) == []
    assert vss_daemon.process is not None and vss_daemon.process.poll() is None
    assert "Traceback" not in vss_daemon.log_text()
