"""Malformed, oversized and hostile XML from writers: a named error, nothing else affected.

The writers here are real D-Bus objects on their own connections that speak the Writer
protocol but answer with whatever document the test gives them.
"""

# No `from __future__ import annotations`: dbus-fast reads the method annotations.

import re
import uuid
from collections.abc import Callable

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from snapd_vss import errors
from snapd_vss.documents.writer_metadata import Component, FileSpec, WriterMetadata
from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.loopdev import LoopFs
from snapd_vss.vocabulary import ComponentType

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1" writerId="x" name="&lol3;"/>"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE w [<!ENTITY secret SYSTEM "file:///etc/shadow">]>
<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1" writerId="x" name="&secret;"/>"""
EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE w SYSTEM "http://127.0.0.1:9/evil.dtd">
<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1" writerId="x" name="n"/>"""
OVERSIZED = (
    '<WriterMetadata xmlns="urn:snapdvss:writer-metadata:1" version="1" writerId="x" name="n">'
    + "<!--"
    + "x" * (5 * 1024 * 1024)
    + "-->"
    + "</WriterMetadata>"
)


def good_metadata(name: str, data: str) -> WriterMetadata:
    return WriterMetadata(
        writer_id=str(uuid.uuid4()),
        name=name,
        instance_id=str(uuid.uuid4()),
        components=[
            Component(
                type=ComponentType.FILEGROUP,
                logical_path="files",
                name="a",
                files=[FileSpec(data, "*", True)],
            ),
            Component(
                type=ComponentType.FILEGROUP,
                logical_path="files",
                name="b",
                files=[FileSpec(data, "*", True)],
            ),
        ],
    )


class RawWriter(ServiceInterface):
    """A writer answering with exactly the documents the test chooses."""

    def __init__(self, identify: str, prepare: Callable[[str], str] = lambda doc: doc) -> None:
        super().__init__("org.snapdvss.Vss1.Writer")
        self.identify = identify
        self.prepare = prepare
        self.events: list[str] = []

    @dbus_method()
    async def OnIdentify(self) -> DBusStr:
        return self.identify

    @dbus_method()
    async def OnPrepareBackup(self, backup_components: DBusStr) -> DBusStr:
        return self.prepare(backup_components)

    @dbus_method()
    async def OnAbort(self, snapshot_set_id: DBusStr) -> None:
        self.events.append("abort")

    @dbus_method()
    async def OnBackupShutdown(self, snapshot_set_id: DBusStr) -> None:
        self.events.append("backup_shutdown")


async def register(address: str, writer: RawWriter) -> tuple[MessageBus, str]:
    bus = await MessageBus(bus_address=address).connect()
    bus.export("/test/writer", writer)
    client = VssClient(bus)
    return bus, await client.manager.register_writer("/test/writer")


@pytest.mark.parametrize(
    "document",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        EXTERNAL_DTD,
        OVERSIZED,
        "",
        "not xml at all",
        "<a>",
        '<WriterMetadata xmlns="urn:other" version="1" writerId="x" name="n"/>',
    ],
    ids=[
        "billion-laughs",
        "external-entity",
        "external-dtd",
        "oversized",
        "empty",
        "garbage",
        "unclosed",
        "wrong-namespace",
    ],
)
async def test_hostile_identify_is_refused_and_harms_nothing(
    private_bus: PrivateBus, client: VssClient, btrfs_volume: LoopFs, document: str
) -> None:
    with pytest.raises(errors.InvalidDocument):
        await register(private_bus.address, RawWriter(document))
    assert await client.writers() == []
    # the service is unharmed: a good writer registers and a session works
    good = RawWriter(good_metadata("good", btrfs_volume.mount_point).to_xml())
    bus, _ = await register(private_bus.address, good)
    try:
        session = await client.manager.create_backup_session()
        assert len(await session.gather_writer_metadata()) == 1
        await session.close()
    finally:
        bus.disconnect()


def _edit(pattern: str, replacement: str) -> Callable[[str], str]:
    return lambda doc: re.sub(pattern, replacement, doc, count=1)


@pytest.mark.parametrize(
    ("change", "allowed"),
    [
        (
            _edit(
                r"<BackupMetadata/>|<BackupMetadata></BackupMetadata>",
                "<BackupMetadata>lsn=7</BackupMetadata>",
            ),
            True,
        ),
        (_edit(r'backupType="FULL"', 'backupType="COPY"'), False),
        (_edit(r'backupSucceeded="false"', 'backupSucceeded="true"'), False),
        (lambda doc: doc.replace('name="b"', 'name="c"'), False),
        (lambda doc: BILLION_LAUGHS, False),
        (lambda doc: "", False),
    ],
    ids=[
        "own-metadata",
        "backup-type",
        "backup-succeeded",
        "rename-component",
        "billion-laughs",
        "empty",
    ],
)
async def test_writer_may_change_only_its_own_annotations(
    private_bus: PrivateBus,
    client: VssClient,
    btrfs_volume: LoopFs,
    change: Callable[[str], str],
    allowed: bool,
) -> None:
    metadata = good_metadata("w", btrfs_volume.mount_point)
    writer = RawWriter(metadata.to_xml(), change)
    bus, _ = await register(private_bus.address, writer)
    try:
        session = await client.manager.create_backup_session()
        await session.set_backup_state(True, False, "FULL", False)
        await session.gather_writer_metadata()
        for component in metadata.components:
            await session.add_component(metadata.instance_id, "files", component.name)
        await session.start_snapshot_set()
        if allowed:
            await session.prepare_for_backup()
            assert "lsn=7" in await session.save_as_xml()
        else:
            with pytest.raises(errors.WriterNonRetryable):
                await session.prepare_for_backup()
            assert await session.get("State") == "ABORTED"
            assert writer.events == ["abort"]
            (status,) = await session.gather_writer_status()
            assert status[2] == "FAILED_AT_PREPARE_BACKUP"
            assert "FULL" in await session.save_as_xml()  # the requestor's document is intact
        await session.close()
    finally:
        bus.disconnect()
