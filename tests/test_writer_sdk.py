"""The writer SDK and the example SQLite writer, on a real dbus-daemon.

The test plays snapd-vssd with a small stand-in (``FakeService``) that speaks the real
protocol: it owns org.snapdvss.Vss1, answers Manager.RegisterWriter after calling the
writer's OnIdentify (as the daemon does), and calls the writer's methods over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, RequestNameReply
from dbus_fast.aio import MessageBus
from lxml import etree

from snapd_vss.documents import (
    BackupComponents,
    ComponentEntry,
    WriterEntry,
    apply_writer_changes,
    parse_backup_components,
    parse_writer_metadata,
)
from snapd_vss.errors import ERROR_PREFIX, InvalidDocument
from snapd_vss.examples.ledger import verify_copy
from snapd_vss.examples.sqlite_writer import LOGICAL_PATH, SqliteWriter
from snapd_vss.ipc.client import VssClient, WriterInfo
from snapd_vss.ipc.writer_service import (
    MANAGER_INTERFACE,
    MANAGER_PATH,
    SERVICE_NAME,
    WRITER_INTERFACE,
    WriterConnection,
)
from snapd_vss.testing.bus import REPO_ROOT, PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.vocabulary import ComponentType, WriterFailure, WriterState
from snapd_vss.writer import (
    BackupView,
    FileSpec,
    Writer,
    WriterOutOfResources,
    WriterRetryable,
)

WAIT = 30.0  # an upper bound for things that happen "soon"; never a timing assertion


# ----- a stand-in for snapd-vssd ----------------------------------------------------------


@dataclass
class Registration:
    sender: str
    writer_path: str
    path: str
    metadata_xml: str


@dataclass
class FakeService:
    """Owns org.snapdvss.Vss1 and implements just Manager.RegisterWriter/UnregisterWriter."""

    address: str
    refuse_with: tuple[str, str] | None = None
    registrations: asyncio.Queue[Registration] = field(default_factory=asyncio.Queue)
    unregistrations: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    bus: MessageBus | None = None
    _count: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> FakeService:
        self.bus = await MessageBus(bus_address=self.address).connect()
        self.bus.add_message_handler(self._handle)
        reply = await self.bus.request_name(SERVICE_NAME)
        assert reply == RequestNameReply.PRIMARY_OWNER
        return self

    def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None

    def _handle(self, message: Message) -> Message | bool | None:
        if (
            message.message_type != MessageType.METHOD_CALL
            or message.path != MANAGER_PATH
            or message.interface != MANAGER_INTERFACE
        ):
            return None
        if message.member == "RegisterWriter":
            task = asyncio.get_running_loop().create_task(self._register(message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return True
        if message.member == "UnregisterWriter":
            self.unregistrations.put_nowait(str(message.body[0]))
            return Message.new_method_return(message)
        return None

    async def _register(self, message: Message) -> None:
        assert self.bus is not None and message.sender is not None
        writer_path = str(message.body[0])
        assert message.body[1] == {}
        reply = await self.call(message.sender, writer_path, "OnIdentify")
        if reply.message_type == MessageType.ERROR or self.refuse_with is not None:
            name, text = self.refuse_with or (ERROR_PREFIX + "Failed", "OnIdentify failed")
            self.bus.send(Message.new_error(message, name, text))
            return
        xml = str(reply.body[0])
        parse_writer_metadata(xml, "test")  # the daemon validates it
        self._count += 1
        path = f"/org/snapdvss/Vss1/writers/{self._count}"
        self.bus.send(Message.new_method_return(message, "o", [path]))
        await self.registrations.put(Registration(message.sender, writer_path, path, xml))

    async def call(
        self,
        destination: str,
        path: str,
        member: str,
        signature: str = "",
        body: list[object] | None = None,
    ) -> Message:
        assert self.bus is not None
        reply = await self.bus.call(
            Message(
                destination=destination,
                path=path,
                interface=WRITER_INTERFACE,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        return reply

    async def next_registration(self) -> Registration:
        return await asyncio.wait_for(self.registrations.get(), WAIT)


def check_ok(reply: Message) -> list[object]:
    assert reply.message_type == MessageType.METHOD_RETURN, (reply.error_name, reply.body)
    return list(reply.body)


def check_error(reply: Message, code: str) -> str:
    assert reply.message_type == MessageType.ERROR, reply.body
    assert reply.error_name == ERROR_PREFIX + code, (reply.error_name, reply.body)
    return str(reply.body[0])


@contextlib.asynccontextmanager
async def fake_service(bus: PrivateBus, **kwargs: object) -> AsyncIterator[FakeService]:
    service = await FakeService(bus.address, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield service
    finally:
        service.stop()


@contextlib.asynccontextmanager
async def connected(writer: Writer, bus: PrivateBus) -> AsyncIterator[WriterConnection]:
    connection = WriterConnection(writer, bus.address)
    await connection.start()
    try:
        yield connection
    finally:
        await connection.stop()


# ----- test writers -----------------------------------------------------------------------


class RecordingWriter(Writer):
    writer_id = "0c7f6f55-7d0e-4a5e-9d43-3b8f5d0e9a11"
    name = "Recording writer"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(instance_name="rec", **kwargs)  # type: ignore[arg-type]
        self.add_database(
            "dbs", "main", files=["/srv/rec/main.db"], logs=[FileSpec("/srv/rec", "*.wal")]
        )
        self.add_file_group("", "config", files=[FileSpec("/etc/rec", "*", recursive=True)])
        self.add_exclude(FileSpec("/srv/rec", "*.lock"))
        self.events: list[tuple[str, str]] = []
        self.aborted = asyncio.Event()
        self.fail_with: dict[str, Exception] = {}
        self.hang_in_freeze = False

    def _record(self, event: str, arg: str) -> None:
        self.events.append((event, arg))
        if event in self.fail_with:
            raise self.fail_with[event]

    async def on_prepare_backup(self, backup: BackupView) -> None:
        self._record("prepare_backup", backup.snapshot_set_id)
        backup.set_backup_metadata("dbs", "main", "lsn=42")
        backup.set_backup_stamp("dbs", "main", "stamp-1")

    async def on_prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        self._record("prepare_for_freeze", ",".join(volumes))

    async def on_freeze(self, snapshot_set_id: str) -> None:
        self._record("freeze", snapshot_set_id)
        if self.hang_in_freeze:
            await asyncio.Event().wait()

    async def on_thaw(self, snapshot_set_id: str) -> None:
        self._record("thaw", snapshot_set_id)

    async def on_abort(self, snapshot_set_id: str) -> None:
        self.events.append(("abort", snapshot_set_id))
        self.aborted.set()


def backup_document(writer: Writer, *, with_other: bool = True) -> BackupComponents:
    own = WriterEntry(
        writer_id=writer.writer_id,
        instance_id=writer.instance_id,
        name=writer.name,
        components=[ComponentEntry(type=ComponentType.DATABASE, logical_path="dbs", name="main")],
    )
    other = WriterEntry(
        writer_id=str(uuid.uuid4()),
        instance_id=str(uuid.uuid4()),
        name="Somebody else",
        components=[ComponentEntry(type=ComponentType.FILEGROUP, logical_path="", name="x")],
    )
    return BackupComponents(
        snapshot_set_id=str(uuid.uuid4()), writers=[own, other] if with_other else [own]
    )


# ----- the SDK ------------------------------------------------------------------------------


async def test_registers_and_identifies_with_a_valid_document(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service, connected(writer, private_bus) as conn:
        registration = await service.next_registration()
        await asyncio.wait_for(conn.registered.wait(), WAIT)
        assert conn.registration == registration.path
        assert registration.writer_path == "/org/snapdvss/Vss1/Writer/rec"

        metadata = parse_writer_metadata(registration.metadata_xml, "test")
        assert metadata.writer_id == writer.writer_id
        assert metadata.instance_id == writer.instance_id
        assert metadata.instance_name == "rec"
        db = metadata.component("dbs", "main")
        assert db.type is ComponentType.DATABASE
        assert db.database_files == [FileSpec("/srv/rec", "main.db")]
        assert db.database_log_files == [FileSpec("/srv/rec", "*.wal")]
        assert metadata.component("", "config").files == [FileSpec("/etc/rec", "*", True)]
        assert metadata.excludes == [FileSpec("/srv/rec", "*.lock")]

        # OnIdentify again, later (as GatherWriterMetadata does): the same document.
        reply = await service.call(registration.sender, registration.writer_path, "OnIdentify")
        assert check_ok(reply) == [registration.metadata_xml]


def test_instance_id_is_stable_per_instance_name() -> None:
    assert RecordingWriter().instance_id == RecordingWriter().instance_id
    other = Writer(writer_id=RecordingWriter.writer_id, instance_name="other")
    assert other.instance_id != RecordingWriter().instance_id


async def test_prepare_backup_annotates_only_its_own_components(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service, connected(writer, private_bus):
        registration = await service.next_registration()
        original = backup_document(writer)
        reply = await service.call(
            registration.sender,
            registration.writer_path,
            "OnPrepareBackup",
            "s",
            [original.to_xml()],
        )
        returned = str(check_ok(reply)[0])
        # The daemon's own check of what a writer may change accepts it...
        merged = apply_writer_changes(original, returned, writer.instance_id, writer.name)
        component = merged.component(writer.instance_id, "dbs", "main")
        assert component.backup_metadata == "lsn=42"
        assert component.backup_stamp == "stamp-1"
        # ... and nothing else moved.
        assert parse_backup_components(returned).writers[1] == original.writers[1]
        assert ("prepare_backup", original.snapshot_set_id) in writer.events


@pytest.mark.parametrize(
    ("exception", "code", "text"),
    [
        (WriterRetryable("busy, try later"), "WriterRetryable", "busy, try later"),
        (WriterOutOfResources("no memory"), "WriterOutOfResources", "no memory"),
        (ValueError("disk on fire"), "WriterNonRetryable", "disk on fire"),
    ],
)
async def test_exceptions_become_named_errors(
    private_bus: PrivateBus, exception: Exception, code: str, text: str
) -> None:
    writer = RecordingWriter()
    writer.fail_with["prepare_for_freeze"] = exception
    async with fake_service(private_bus) as service, connected(writer, private_bus) as conn:
        registration = await service.next_registration()
        reply = await service.call(
            registration.sender,
            registration.writer_path,
            "OnPrepareForFreeze",
            "sas",
            ["set-1", ["/srv", "/var"]],
        )
        assert text in check_error(reply, code)
        assert ("prepare_for_freeze", "/srv,/var") in writer.events
        assert state_of(conn) is WriterState.FAILED_AT_PREPARE_FOR_FREEZE
        assert conn.dispatcher.last_failure is not WriterFailure.NONE


async def test_invalid_backup_document_is_refused(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service, connected(writer, private_bus):
        registration = await service.next_registration()
        hostile = '<!DOCTYPE x [<!ENTITY a "aaaa">]><BackupComponents>&a;</BackupComponents>'
        reply = await service.call(
            registration.sender, registration.writer_path, "OnPrepareBackup", "s", [hostile]
        )
        assert reply.message_type == MessageType.ERROR
        assert reply.error_name is not None and reply.error_name.startswith(ERROR_PREFIX + "Writer")
        assert not any(event == "prepare_backup" for event, _ in writer.events)


async def test_freeze_thaw_sequence(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service, connected(writer, private_bus) as conn:
        registration = await service.next_registration()
        sender, path = registration.sender, registration.writer_path
        check_ok(await service.call(sender, path, "OnPrepareForFreeze", "sas", ["s1", ["/srv"]]))
        check_ok(await service.call(sender, path, "OnFreeze", "s", ["s1"]))
        assert state_of(conn) is WriterState.WAITING_FOR_THAW
        check_ok(await service.call(sender, path, "OnThaw", "s", ["s1"]))
        check_ok(
            await service.call(sender, path, "OnPostSnapshot", "sa{ss}", ["s1", {"/srv": "/x"}])
        )
        assert state_of(conn) is WriterState.WAITING_FOR_BACKUP_COMPLETE
        check_ok(await service.call(sender, path, "OnBackupShutdown", "s", ["s1"]))
        assert [e for e, _ in writer.events] == ["prepare_for_freeze", "freeze", "thaw"]
        assert not writer.aborted.is_set()


async def test_safety_net_resumes_a_writer_left_frozen(private_bus: PrivateBus) -> None:
    writer = RecordingWriter(freeze_timeout_ms=200)
    async with fake_service(private_bus) as service, connected(writer, private_bus) as conn:
        registration = await service.next_registration()
        sender, path = registration.sender, registration.writer_path
        check_ok(await service.call(sender, path, "OnFreeze", "s", ["s1"]))
        # No OnThaw comes (the service died): the SDK calls on_abort by itself.
        await asyncio.wait_for(writer.aborted.wait(), WAIT)
        assert ("abort", "s1") in writer.events
        assert state_of(conn) is WriterState.FAILED_AT_FREEZE
        assert conn.dispatcher.last_failure is WriterFailure.TIMEOUT
        # A late OnThaw learns that the snapshot is not application-consistent.
        message = check_error(
            await service.call(sender, path, "OnThaw", "s", ["s1"]), "WriterTimeout"
        )
        assert "freeze_timeout_ms" in message
        assert ("thaw", "s1") not in writer.events


async def test_safety_net_cancels_a_hanging_on_freeze(private_bus: PrivateBus) -> None:
    writer = RecordingWriter(freeze_timeout_ms=200)
    writer.hang_in_freeze = True
    async with fake_service(private_bus) as service, connected(writer, private_bus):
        registration = await service.next_registration()
        reply = await service.call(
            registration.sender, registration.writer_path, "OnFreeze", "s", ["s1"]
        )
        check_error(reply, "WriterTimeout")
        assert writer.aborted.is_set()
        # The service's OnAbort after that is accepted and does not call on_abort twice.
        check_ok(
            await service.call(
                registration.sender, registration.writer_path, "OnAbort", "s", ["s1"]
            )
        )
        assert [e for e, _ in writer.events].count("abort") == 1


async def test_abort_while_on_freeze_runs_unwinds_the_freeze_first(
    private_bus: PrivateBus,
) -> None:
    writer = RecordingWriter()
    writer.hang_in_freeze = True
    async with fake_service(private_bus) as service, connected(writer, private_bus):
        registration = await service.next_registration()
        sender, path = registration.sender, registration.writer_path
        freezing = asyncio.ensure_future(service.call(sender, path, "OnFreeze", "s", ["s3"]))
        await wait_until(lambda: ("freeze", "s3") in writer.events)
        check_ok(await service.call(sender, path, "OnAbort", "s", ["s3"]))
        assert "aborted before" in check_error(await freezing, "WriterRetryable")
        assert [e for e, _ in writer.events].count("abort") == 1
        assert writer.state is WriterState.STABLE


async def test_stopping_a_frozen_writer_resumes_it(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service:
        async with connected(writer, private_bus):
            registration = await service.next_registration()
            check_ok(
                await service.call(
                    registration.sender, registration.writer_path, "OnFreeze", "s", ["s9"]
                )
            )
            assert not writer.aborted.is_set()
        assert ("abort", "s9") in writer.events


async def test_waits_for_the_service_then_registers(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with connected(writer, private_bus) as conn:
        assert conn.registration is None
        async with fake_service(private_bus) as service:
            registration = await service.next_registration()
            await asyncio.wait_for(conn.registered.wait(), WAIT)
            assert conn.registration == registration.path


async def test_registers_again_when_the_service_restarts(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with connected(writer, private_bus) as conn:
        async with fake_service(private_bus) as first:
            one = await first.next_registration()
            await asyncio.wait_for(conn.registered.wait(), WAIT)
            assert first.bus is not None
            first_name = first.bus.unique_name
        # The service's name owner went away: the registration is gone with it.
        await wait_until(lambda: not conn.registered.is_set())
        assert conn.registration is None
        async with fake_service(private_bus) as second:
            two = await second.next_registration()
            assert second.bus is not None
            assert second.bus.unique_name != first_name
            assert two.writer_path == one.writer_path
            await asyncio.wait_for(conn.registered.wait(), WAIT)
            # The new service can drive the writer.
            reply = await second.call(two.sender, two.writer_path, "OnIdentify")
            assert check_ok(reply) == [one.metadata_xml]


async def test_unregisters_on_stop(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    async with fake_service(private_bus) as service:
        async with connected(writer, private_bus) as conn:
            registration = await service.next_registration()
            await asyncio.wait_for(conn.registered.wait(), WAIT)
        gone = await asyncio.wait_for(service.unregistrations.get(), WAIT)
        assert gone == registration.path


async def test_refused_registration_ends_the_writer(private_bus: PrivateBus) -> None:
    writer = RecordingWriter()
    refusal = (ERROR_PREFIX + "InvalidDocument", "component paths must be absolute")
    async with (
        fake_service(private_bus, refuse_with=refusal),
        connected(writer, private_bus) as conn,
    ):
        with pytest.raises(InvalidDocument, match="must be absolute"):
            await asyncio.wait_for(conn.wait_closed(), WAIT)


# ----- against the real snapd-vssd ----------------------------------------------------------


async def registered_writers(bus: PrivateBus) -> list[WriterInfo]:
    async with await VssClient.connect(bus.address) as client:
        return await client.writers()


async def test_real_daemon_keeps_the_writer_registered_across_a_kill(
    private_bus: PrivateBus, vss_daemon: VssDaemon
) -> None:
    writer = RecordingWriter()
    async with connected(writer, private_bus) as conn:
        await asyncio.wait_for(conn.registered.wait(), WAIT)
        [info] = await registered_writers(private_bus)
        assert (info.writer_id, info.instance_id) == (writer.writer_id, writer.instance_id)
        assert info.state == WriterState.STABLE.value
        assert info.path == conn.registration

        # SIGKILL the daemon (its blocking helpers run off the event loop, which must
        # keep serving the writer), then start it again: the writer registers again.
        await asyncio.to_thread(vss_daemon.kill)
        await wait_until(lambda: not conn.registered.is_set())
        await asyncio.to_thread(vss_daemon.start)
        await asyncio.wait_for(conn.registered.wait(), WAIT)
        [again] = await registered_writers(private_bus)
        assert again.instance_id == writer.instance_id
        assert again.path == conn.registration

    # Stopping the writer unregisters it.
    await wait_until_async(lambda: _no_writers(private_bus))


async def _no_writers(bus: PrivateBus) -> bool:
    return not await registered_writers(bus)


async def wait_until_async(condition: Callable[[], Awaitable[bool]]) -> None:
    async def poll() -> None:
        while not await condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), WAIT)


INTROSPECT_POLICY = """\
  <policy user="root">
    <allow send_type="method_call" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
"""


async def test_introspection_matches_the_shipped_interface() -> None:
    writer = RecordingWriter()
    # The shipped policy lets root call only the Writer interface on a writer; this
    # test also needs Introspect.
    with PrivateBus(extra_policy=INTROSPECT_POLICY) as bus:
        async with fake_service(bus) as service, connected(writer, bus):
            registration = await service.next_registration()
            assert service.bus is not None
            reply = await service.bus.call(
                Message(
                    destination=registration.sender,
                    path=registration.writer_path,
                    interface="org.freedesktop.DBus.Introspectable",
                    member="Introspect",
                )
            )
            assert reply is not None
            exported = _methods(etree.fromstring(str(check_ok(reply)[0]).encode()))
    shipped_xml = (REPO_ROOT / "dbus" / f"{WRITER_INTERFACE}.xml").read_bytes()
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    shipped = _methods(etree.fromstring(shipped_xml, parser))
    assert exported == shipped
    assert len(shipped) == 11


def _methods(node: etree._Element) -> dict[str, list[tuple[str, str]]]:
    methods: dict[str, list[tuple[str, str]]] = {}
    for interface in node.iter("interface"):
        if interface.get("name") != WRITER_INTERFACE:
            continue
        for method in interface.iter("method"):
            methods[str(method.get("name"))] = [
                (str(arg.get("direction", "in")), str(arg.get("type")))
                for arg in method.iter("arg")
            ]
    return methods


def state_of(connection: WriterConnection) -> WriterState:
    return connection.dispatcher.state


async def wait_until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT)


# ----- the example SQLite writer --------------------------------------------------------------


@pytest.fixture
def sqlite_writer(tmp_path: Path) -> Iterator[SqliteWriter]:
    writer = SqliteWriter(tmp_path / "data" / "ledger.db", accounts=8, interval=0.001)
    writer.start_load()
    try:
        yield writer
    finally:
        writer.stop_load()


async def test_sqlite_writer_freeze_stops_writes_and_copy_is_consistent(
    private_bus: PrivateBus, sqlite_writer: SqliteWriter, tmp_path: Path
) -> None:
    await wait_until(lambda: sqlite_writer.load.transactions > 20)
    async with fake_service(private_bus) as service, connected(sqlite_writer, private_bus):
        registration = await service.next_registration()
        sender, path = registration.sender, registration.writer_path
        metadata = parse_writer_metadata(registration.metadata_xml, "test")
        component = metadata.component(LOGICAL_PATH, "ledger")
        assert component.database_files == [
            FileSpec(str(sqlite_writer.db_path.parent), "ledger.db")
        ]
        assert {f.filespec for f in component.database_log_files} == {
            "ledger.db-wal",
            "ledger.db-shm",
        }

        document = BackupComponents(
            snapshot_set_id="s1",
            writers=[
                WriterEntry(
                    writer_id=sqlite_writer.writer_id,
                    instance_id=sqlite_writer.instance_id,
                    name=sqlite_writer.name,
                    components=[
                        ComponentEntry(
                            type=ComponentType.DATABASE, logical_path=LOGICAL_PATH, name="ledger"
                        )
                    ],
                )
            ],
        )
        reply = await service.call(sender, path, "OnPrepareBackup", "s", [document.to_xml()])
        annotated = parse_backup_components(str(check_ok(reply)[0]))
        lsn_text = annotated.component(sqlite_writer.instance_id, LOGICAL_PATH, "ledger")
        lsn = int(lsn_text.backup_metadata.removeprefix("last_ledger_id="))
        assert lsn > 0

        check_ok(await service.call(sender, path, "OnPrepareForFreeze", "sas", ["s1", ["/"]]))
        check_ok(await service.call(sender, path, "OnFreeze", "s", ["s1"]))
        try:
            frozen_id = sqlite_writer.last_ledger_id()
            assert frozen_id >= lsn
            assert frozen_id == sqlite_writer.frozen_at_ledger_id
            transactions = sqlite_writer.load.transactions
            # The checkpoint at freeze left nothing in the WAL: the .db alone is complete.
            wal = sqlite_writer.db_path.with_name("ledger.db-wal")
            assert not wal.exists() or wal.stat().st_size == 0
            copy = tmp_path / "copy" / "ledger.db"
            copy.parent.mkdir()
            shutil.copyfile(sqlite_writer.db_path, copy)
            await asyncio.sleep(0.2)  # give the load every chance to write (it must not)
            assert sqlite_writer.load.transactions == transactions
            assert sqlite_writer.last_ledger_id() == frozen_id
        finally:
            check_ok(await service.call(sender, path, "OnThaw", "s", ["s1"]))

        result = verify_copy(copy)
        assert result.integrity_ok, result.integrity_message
        assert result.total == result.expected_total == 8 * 1000
        assert result.last_ledger_id == frozen_id
        assert result.consistent

        await wait_until(lambda: sqlite_writer.last_ledger_id() > frozen_id)
        assert sqlite_writer.load.error is None


async def test_sqlite_writer_abort_resumes_the_load(
    private_bus: PrivateBus, sqlite_writer: SqliteWriter
) -> None:
    async with fake_service(private_bus) as service, connected(sqlite_writer, private_bus):
        registration = await service.next_registration()
        sender, path = registration.sender, registration.writer_path
        check_ok(await service.call(sender, path, "OnFreeze", "s", ["s2"]))
        assert sqlite_writer.load.paused
        check_ok(await service.call(sender, path, "OnAbort", "s", ["s2"]))
        assert not sqlite_writer.load.paused
        before = sqlite_writer.last_ledger_id()
        await wait_until(lambda: sqlite_writer.last_ledger_id() > before)


async def test_sqlite_writer_runs_standalone(private_bus: PrivateBus, tmp_path: Path) -> None:
    db = tmp_path / "standalone" / "ledger.db"
    argv = [sys.executable, "-m", "snapd_vss.examples.sqlite_writer", "--db", str(db)]
    async with fake_service(private_bus) as service:
        process = await asyncio.create_subprocess_exec(
            *argv, "--bus", private_bus.address, cwd=REPO_ROOT, stderr=asyncio.subprocess.PIPE
        )
        try:
            registration = await service.next_registration()
            metadata = parse_writer_metadata(registration.metadata_xml, "test")
            assert metadata.component(LOGICAL_PATH, "ledger").database_files == [
                FileSpec(str(db.parent), "ledger.db")
            ]
            sender, path = registration.sender, registration.writer_path
            check_ok(await service.call(sender, path, "OnFreeze", "s", ["s4"]))
            check_ok(await service.call(sender, path, "OnThaw", "s", ["s4"]))
            process.send_signal(signal.SIGTERM)
            gone = await asyncio.wait_for(service.unregistrations.get(), WAIT)
            assert gone == registration.path
            assert await asyncio.wait_for(process.wait(), WAIT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert verify_copy(db).consistent


def test_verify_copy_detects_a_broken_invariant(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "ledger.db", accounts=4, interval=0)
    writer.start_load()
    try:
        asyncio.run(wait_until(lambda: writer.load.transactions > 10))
        writer.load.pause()
        try:
            with contextlib.closing(sqlite3.connect(writer.db_path)) as db:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(writer.db_path, tmp_path / "copy.db")
        finally:
            writer.load.resume()
    finally:
        writer.stop_load()
    assert verify_copy(tmp_path / "copy.db").consistent
    with contextlib.closing(sqlite3.connect(tmp_path / "copy.db")) as db:
        db.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        db.commit()
    broken = verify_copy(tmp_path / "copy.db")
    assert broken.integrity_ok
    assert broken.total == broken.expected_total + 1
    assert not broken.consistent
