"""The service facade: what the D-Bus layer calls. Authorization is decided here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from snapd_vss.coordinator.backup_session import BackupSession
from snapd_vss.coordinator.events import Listener, NullListener
from snapd_vss.coordinator.options import check_options
from snapd_vss.coordinator.restore_session import RestoreSession
from snapd_vss.coordinator.session_base import SessionCore
from snapd_vss.coordinator.settings import Caller, Settings, is_backup_operator
from snapd_vss.coordinator.snapshots import SnapshotManager
from snapd_vss.coordinator.writers import (
    RegisteredWriter,
    WriterConnection,
    WriterFanout,
    WriterRegistry,
)
from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.documents.writer_metadata import parse_writer_metadata
from snapd_vss.errors import (
    AccessDenied,
    InvalidState,
    NotFound,
    Timeout,
    VssError,
    WriterError,
)
from snapd_vss.freeze import SpareGuard, thaw_leftovers
from snapd_vss.model import SnapshotRecord
from snapd_vss.providers.registry import ProviderRegistry
from snapd_vss.store import SnapshotStore
from snapd_vss.vocabulary import Context, SessionState

log = logging.getLogger(__name__)


class Service:
    def __init__(
        self,
        settings: Settings,
        providers: ProviderRegistry,
        store: SnapshotStore,
        listener: Listener | None = None,
    ) -> None:
        self.settings = settings
        self.providers = providers
        self.store = store
        self.listener: Listener = listener or NullListener()
        self.registry = WriterRegistry()
        self.fanout = WriterFanout(settings.max_writer_calls_in_flight)
        self.snapshots = SnapshotManager(store, providers, self.listener, settings.runtime_dir)
        self.sessions: dict[int, SessionCore] = {}
        self.snapshot_set_lock = asyncio.Lock()
        self.spare_guard = SpareGuard(settings.runtime_dir)
        """A freeze guard process started ahead of the next freeze (see snapd_vss.freeze)."""
        self._next_session = 1

    def set_listener(self, listener: Listener) -> None:
        self.listener = listener
        self.snapshots.listener = listener

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        thawed = thaw_leftovers(self.settings.runtime_dir)
        for mount in thawed:
            log.warning("thawed %s, left frozen by a previous run", mount)
        for provider in self.providers.all():
            provider.invalidated = self._snapshot_invalidated
            if provider.availability().available:
                await provider.startup()
        await self.snapshots.recover()
        if any(p.may_need_fs_freeze and p.availability().available for p in self.providers.all()):
            self.spare_guard.prepare()

    async def stop(self) -> None:
        for session in list(self.sessions.values()):
            await self._end_session(session, "the service is stopping")
        await self.spare_guard.close()
        for provider in self.providers.all():
            if provider.availability().available:
                await provider.shutdown()

    # -- authorization -------------------------------------------------------------------

    def require_operator(self, caller: Caller, what: str) -> None:
        if not is_backup_operator(caller, self.settings.backup_group):
            group = self.settings.backup_group
            who = f"root or a member of group {group!r}" if group else "root"
            raise AccessDenied(f"{what} is only allowed for {who}; uid {caller.uid} is neither")

    # -- writers -------------------------------------------------------------------------

    async def register_writer(
        self,
        caller: Caller,
        object_path: str,
        connection: WriterConnection,
        options: Mapping[str, Any],
    ) -> RegisteredWriter:
        check_options(options, {}, "RegisterWriter")
        hint = f"writer {object_path} on {caller.bus_name}"
        try:
            async with asyncio.timeout(self.settings.identify_s):
                xml = await connection.identify()
        except TimeoutError:
            raise Timeout(
                f"{hint} did not answer OnIdentify within {self.settings.identify_s:g} s; "
                "export the writer object before calling RegisterWriter"
            ) from None
        except WriterError as exc:
            raise type(exc)(f"{hint} failed OnIdentify: {exc.message}") from None
        metadata = parse_writer_metadata(xml, source=hint)
        writer = self.registry.add(caller.bus_name, object_path, caller.uid, connection, metadata)
        self.listener.writer_added(writer)
        log.info(
            "registered %s as writer %d (uid %d)",
            writer.describe(),
            writer.number,
            caller.uid,
            extra={"WRITER": writer.name, "WRITER_INSTANCE": writer.instance_id},
        )
        return writer

    def unregister_writer(self, caller: Caller, number: int) -> None:
        writer = self.registry.get(number)
        if caller.uid != 0 and caller.bus_name != writer.owner:
            raise AccessDenied(
                f"writer {number} was registered by {writer.owner}; "
                "only it or root may unregister it"
            )
        self._remove_writer(writer)

    def _remove_writer(self, writer: RegisteredWriter) -> None:
        self.registry.remove(writer.number)
        self.listener.writer_removed(writer)
        log.info("unregistered %s", writer.describe(), extra={"WRITER": writer.name})

    # -- sessions ------------------------------------------------------------------------

    def create_backup_session(self, caller: Caller, options: Mapping[str, Any]) -> BackupSession:
        self.require_operator(caller, "creating a backup session")
        opts = check_options(options, {"context": str, "wait": bool}, "CreateBackupSession")
        context = Context(Context.parse(opts.get("context", Context.BACKUP.value)))
        session = BackupSession(
            service=self,
            number=self._next_session,
            owner=caller,
            context=context,
            wait_for_snapshot_set=opts.get("wait", True),
        )
        self._add_session(session)
        log.info(
            "session %d created by %s (uid %d), context %s",
            session.number,
            caller.bus_name,
            caller.uid,
            context.value,
            extra={"SESSION": str(session.number)},
        )
        return session

    def create_restore_session(
        self, caller: Caller, backup_components: str, options: Mapping[str, Any]
    ) -> RestoreSession:
        self.require_operator(caller, "creating a restore session")
        check_options(options, {}, "CreateRestoreSession")
        document = parse_backup_components(backup_components, source="the requestor")
        session = RestoreSession(
            service=self, number=self._next_session, owner=caller, document=document
        )
        self._add_session(session)
        log.info(
            "restore session %d created by %s (uid %d) for snapshot set %s",
            session.number,
            caller.bus_name,
            caller.uid,
            document.snapshot_set_id or "-",
            extra={"SESSION": str(session.number)},
        )
        return session

    def _add_session(self, session: SessionCore) -> None:
        self._next_session += 1
        self.sessions[session.number] = session
        self.listener.session_added(session)

    def session(self, number: int, caller: Caller) -> SessionCore:
        try:
            session = self.sessions[number]
        except KeyError:
            raise NotFound(f"no session number {number}") from None
        session.check_owner(caller)
        return session

    async def close_session(self, session: SessionCore) -> None:
        try:
            await session.close()
        finally:
            self._forget(session)

    def _forget(self, session: SessionCore) -> None:
        if self.sessions.pop(session.number, None) is not None:
            self.listener.session_removed(session)

    async def _end_session(self, session: SessionCore, why: str) -> None:
        log.warning("%s: %s; aborting it", session.describe(), why)
        try:
            if session.state is not SessionState.BACKUP_COMPLETED:
                await session.abort()
            await session.close()
        except VssError as exc:
            log.error("%s could not be closed cleanly: %s", session.describe(), exc.message)
        finally:
            self._forget(session)

    # -- snapshots -----------------------------------------------------------------------

    async def delete_snapshot(
        self, caller: Caller, record: SnapshotRecord, options: Mapping[str, Any]
    ) -> None:
        self.require_operator(caller, "deleting a snapshot")
        check_options(options, {}, "Delete")
        for session in self.sessions.values():
            if not isinstance(session, BackupSession):
                continue
            if record in session.snapshots and not record.persistent:
                raise InvalidState(
                    f"snapshot {record.id} belongs to open {session.describe()}; "
                    "close that session to release it"
                )
        await self.snapshots.delete(record, f"deleted by uid {caller.uid}")

    async def expose_snapshot(
        self, caller: Caller, record: SnapshotRecord, mount_point: str, options: Mapping[str, Any]
    ) -> str:
        self.require_operator(caller, "exposing a snapshot")
        check_options(options, {}, "Expose")
        return await self.snapshots.expose(record, mount_point)

    async def unexpose_snapshot(
        self, caller: Caller, record: SnapshotRecord, options: Mapping[str, Any]
    ) -> None:
        self.require_operator(caller, "unexposing a snapshot")
        check_options(options, {}, "Unexpose")
        await self.snapshots.unexpose(record)

    def _snapshot_invalidated(self, snapshot_id: str, reason: str) -> None:
        """A provider lost a snapshot by itself: keep it listed as INVALID, with the reason."""
        try:
            record = self.snapshots.get(snapshot_id)
        except NotFound:
            log.warning("provider reported unknown snapshot %s lost: %s", snapshot_id, reason)
            return
        self.snapshots.invalidate(record, reason)

    # -- connections ---------------------------------------------------------------------

    async def connection_closed(self, bus_name: str) -> None:
        """A client left the bus: drop its writers, abort and close its sessions."""
        for writer in self.registry.by_owner(bus_name):
            self._remove_writer(writer)
        for session in [s for s in self.sessions.values() if s.owner.bus_name == bus_name]:
            await self._end_session(session, f"its requestor {bus_name} left the bus")
