"""One backup session: the VSS requestor sequence, enforced in order.

GatherWriterMetadata -> AddComponent -> StartSnapshotSet / AddToSnapshotSet ->
PrepareForBackup -> DoSnapshotSet -> SetBackupSucceeded -> BackupComplete -> Close.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, TypeVar

from snapd_vss.coordinator.session_base import SessionCore
from snapd_vss.coordinator.snapshot_set import SnapshotSetRun
from snapd_vss.coordinator.writers import RegisteredWriter
from snapd_vss.documents.backup_components import (
    ComponentEntry,
    SnapshotEntry,
    WriterEntry,
)
from snapd_vss.errors import (
    Cancelled,
    InvalidArgs,
    InvalidState,
    NotFound,
    SnapshotSetInProgress,
)
from snapd_vss.model import SnapshotRecord
from snapd_vss.vocabulary import (
    BackupType,
    Context,
    SessionState,
    WriterEvent,
    WriterState,
)
from snapd_vss.volumes import resolve_volume

log = logging.getLogger(__name__)
T = TypeVar("T")

S = SessionState
BEFORE_PREPARE = (S.CREATED, S.METADATA_GATHERED, S.SNAPSHOT_SET_STARTED)


@dataclass
class Timing:
    freeze_window_ms: float = 0.0
    commit_window_ms: float = 0.0


@dataclass
class BackupSession(SessionCore):
    context: Context = Context.BACKUP
    wait_for_snapshot_set: bool = True
    state: SessionState = SessionState.CREATED
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    timing: Timing = field(default_factory=Timing)
    _operation: asyncio.Task[None] | None = None

    kind: ClassVar[str] = "backup session"

    def __post_init__(self) -> None:
        self.document.context = self.context
        self.document.created_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def snapshot_set_id(self) -> str:
        return self.document.snapshot_set_id

    @property
    def backup_type(self) -> BackupType:
        return self.document.backup_type

    def _involved(self) -> list[RegisteredWriter]:
        """Writers that get events after PrepareForBackup (VSS: those with selected components)."""
        if not self.context.with_writers:
            return []
        if not self.document.select_components:
            return [g.writer for g in self.gathered.values() if not g.writer.state.failed]
        selected = {w.instance_id for w in self.document.writers if w.components}
        return [g.writer for g in self.gathered.values() if g.writer.instance_id in selected]

    # -- the sequence --------------------------------------------------------------------

    async def set_backup_state(
        self, select_components: bool, bootable_system_state: bool, backup_type: str, partial: bool
    ) -> None:
        self._require("SetBackupState", *BEFORE_PREPARE)
        self.document.backup_type = BackupType(BackupType.parse(backup_type))
        self.document.select_components = select_components
        self.document.bootable_system_state = bootable_system_state
        self.document.partial_file_support = partial
        self.service.listener.session_changed(self)

    async def gather_writer_metadata(self) -> dict[str, str]:
        return await self._run(self._gather)

    async def _gather(self) -> dict[str, str]:
        self._require("GatherWriterMetadata", S.CREATED, S.METADATA_GATHERED)
        self.document.writers.clear()
        answer = await self._identify_all() if self.context.with_writers else {}
        self._set_state(S.METADATA_GATHERED)
        return answer

    async def add_component(self, instance_id: str, logical_path: str, name: str) -> None:
        self._require("AddComponent", S.METADATA_GATHERED, S.SNAPSHOT_SET_STARTED)
        if not self.context.with_writers:
            raise InvalidState(f"a {self.context.value} session involves no writers")
        gathered = self._gathered(instance_id)
        component = gathered.metadata.component(logical_path, name)
        entry = self.document.writer(instance_id)
        if entry is None:
            entry = WriterEntry(
                writer_id=gathered.metadata.writer_id,
                instance_id=instance_id,
                name=gathered.metadata.name,
                components=[],
            )
            self.document.writers.append(entry)
        if any(c.logical_path == logical_path and c.name == name for c in entry.components):
            raise InvalidArgs(f"component {logical_path}/{name} of {instance_id} is already added")
        entry.components.append(
            ComponentEntry(type=component.type, logical_path=logical_path, name=name)
        )

    def _component_for_option(
        self, instance_id: str, logical_path: str, name: str
    ) -> ComponentEntry:
        self._require("this call", S.METADATA_GATHERED, S.SNAPSHOT_SET_STARTED)
        return self._component(instance_id, logical_path, name)

    async def set_backup_options(
        self, instance_id: str, logical_path: str, name: str, options: str
    ) -> None:
        self._component_for_option(instance_id, logical_path, name).backup_options = options

    async def set_previous_backup_stamp(
        self, instance_id: str, logical_path: str, name: str, stamp: str
    ) -> None:
        component = self._component_for_option(instance_id, logical_path, name)
        if self.backup_type not in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL):
            raise InvalidState(
                "a previous backup stamp only makes sense for INCREMENTAL or DIFFERENTIAL "
                f"backups; this session is {self.backup_type.value} (call SetBackupState first)"
            )
        component.previous_backup_stamp = stamp

    async def start_snapshot_set(self) -> str:
        if self.context.with_writers:
            self._require("StartSnapshotSet", S.METADATA_GATHERED)
        else:
            self._require("StartSnapshotSet", S.CREATED, S.METADATA_GATHERED)
        set_id = str(uuid.uuid4())
        self.document.snapshot_set_id = set_id
        self._set_state(S.SNAPSHOT_SET_STARTED)
        return set_id

    async def add_to_snapshot_set(self, volume_path: str, provider_name: str) -> str:
        self._require("AddToSnapshotSet", S.SNAPSHOT_SET_STARTED, S.PREPARED)
        if not volume_path.startswith("/"):
            raise InvalidArgs(f"volume {volume_path!r} must be an absolute path")
        volume = resolve_volume(volume_path)
        if any(r.volume == volume.mount_point for r in self.snapshots):
            raise InvalidArgs(f"volume {volume.mount_point} is already in the snapshot set")
        provider = self.service.providers.pick(volume, provider_name)
        record = SnapshotRecord(
            id=str(uuid.uuid4()),
            snapshot_set_id=self.snapshot_set_id,
            volume=volume.mount_point,
            provider=provider.name,
            persistent=self.context.persistent,
        )
        self.snapshots.append(record)
        return record.id

    async def prepare_for_backup(self) -> None:
        await self._run(self._prepare)

    async def _prepare(self) -> None:
        self._require("PrepareForBackup", S.SNAPSHOT_SET_STARTED)
        writers = self._involved()
        results = await self._exchange(
            writers, WriterEvent.PREPARE_BACKUP, lambda c, doc: c.prepare_backup(doc)
        )
        failed = [r for r in results if r.error is not None]
        if failed:
            await self._abort_writers(writers)
            self._set_state(S.ABORTED)
            first = failed[0].error
            assert first is not None
            raise type(first)(
                f"{first.message}; the session was aborted — fix the writer and start a new session"
            )
        self._set_state(S.PREPARED)

    async def do_snapshot_set(self) -> None:
        await self._run(self._do_snapshot_set)

    async def _do_snapshot_set(self) -> None:
        self._require("DoSnapshotSet", S.PREPARED)
        if not self.snapshots:
            raise InvalidState("the snapshot set is empty; call AddToSnapshotSet first")
        lock = self.service.snapshot_set_lock
        if lock.locked() and not self.wait_for_snapshot_set:
            raise SnapshotSetInProgress(
                "another snapshot set is being created; retry, or create the session with "
                "option wait=true to queue"
            )
        async with lock:
            self._set_state(S.SNAPSHOTTING)
            run = SnapshotSetRun(
                service=self.service,
                snapshot_set_id=self.snapshot_set_id,
                records=self.snapshots,
                writers=self._involved(),
            )
            # Its own task, so that AbortBackup (or the requestor leaving) cancels the run,
            # not the D-Bus call waiting for it: the caller gets a named error instead.
            self._operation = asyncio.create_task(run.execute())
            try:
                await self._operation
            except asyncio.CancelledError:
                self._record_run_failures(run)
                self._set_state(S.ABORTED)
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                raise Cancelled(
                    f"{self.describe()} was aborted while the snapshot set was being created; "
                    "everything was thawed and released"
                ) from None
            except BaseException:
                self._record_run_failures(run)
                self._set_state(S.ABORTED)
                raise
            finally:
                self._operation = None
                self.timing = Timing(run.freeze_window_ms, run.commit_window_ms)
        self.document.snapshots = [self._entry(r) for r in self.snapshots]
        self._record_run_failures(run)
        self._set_state(S.SNAPSHOT_CREATED)

    def _record_run_failures(self, run: SnapshotSetRun) -> None:
        for event, results in run.failures.items():
            self._record_failures(results, event)

    @staticmethod
    def _entry(record: SnapshotRecord) -> SnapshotEntry:
        created = datetime.fromtimestamp(record.creation_time_us / 1e6, UTC)
        return SnapshotEntry(
            id=record.id,
            volume=record.volume,
            provider=record.provider,
            device_path=record.device_path,
            exposed_path=record.exposed_path,
            created_at=created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            persistent=record.persistent,
        )

    def snapshot(self, snapshot_id: str) -> SnapshotRecord:
        self._require("GetSnapshotProperties", S.SNAPSHOT_CREATED, S.BACKUP_COMPLETED)
        for record in self.snapshots:
            if record.id == snapshot_id:
                return record
        raise NotFound(f"snapshot {snapshot_id!r} is not part of {self.describe()}")

    async def set_backup_succeeded(
        self, instance_id: str, logical_path: str, name: str, succeeded: bool
    ) -> None:
        self._require("SetBackupSucceeded", S.SNAPSHOT_CREATED)
        self._component(instance_id, logical_path, name).backup_succeeded = succeeded

    async def backup_complete(self) -> None:
        await self._run(self._backup_complete)

    async def _backup_complete(self) -> None:
        self._require("BackupComplete", S.SNAPSHOT_CREATED)
        writers = [w for w in self._involved() if not w.state.failed]
        for writer in writers:
            writer.set_state(WriterState.WAITING_FOR_BACKUP_COMPLETE)
        views = {w.instance_id: self.view_for(w.instance_id).to_xml() for w in writers}
        results = await self.service.fanout.call_all_each(
            writers,
            WriterEvent.BACKUP_COMPLETE,
            lambda w: lambda c: c.backup_complete(views[w.instance_id]),
            self._fanout_timeout(),
        )
        for result in results:
            if result.ok:
                result.writer.set_state(WriterState.STABLE)
            self.service.listener.writer_changed(result.writer)
        self._record_failures(results, WriterEvent.BACKUP_COMPLETE)
        self._set_state(S.BACKUP_COMPLETED)

    # -- ending --------------------------------------------------------------------------

    async def _abort_writers(self, writers: list[RegisteredWriter]) -> None:
        if not writers or not self.snapshot_set_id:
            return
        set_id = self.snapshot_set_id
        results = await self.service.fanout.call_all(
            writers, WriterEvent.ABORT, lambda c: c.abort(set_id), self._fanout_timeout()
        )
        for result in results:
            if result.ok and not result.writer.state.failed:
                result.writer.set_state(WriterState.STABLE)
            self.service.listener.writer_changed(result.writer)

    async def _release_snapshots(self, why: str) -> None:
        """Delete the set's committed non-persistent snapshots (persistent ones stay)."""
        for record in list(self.snapshots):
            if record.committed and not record.persistent:
                await self.service.snapshots.delete_quietly(record, f"{self.describe()} {why}")

    async def abort(self) -> None:
        """AbortBackup: cancel what runs, tell the involved writers, release the snapshots."""
        if self.state in (S.ABORTED, S.CLOSED):
            return
        if self.state is S.BACKUP_COMPLETED:
            raise InvalidState("the backup is already complete; Close the session instead")
        if self._operation is not None and not self._operation.done():
            self._operation.cancel()
            await asyncio.gather(self._operation, return_exceptions=True)
            if self.state in (S.ABORTED,):  # the cancelled run already told the writers
                return
        prepared = self.state in (S.PREPARED, S.SNAPSHOT_CREATED)
        self._set_state(S.ABORTED)
        if prepared:
            await self._abort_writers(self._involved())
        await self._release_snapshots("aborted")

    async def close(self) -> None:
        """Close: abort if unfinished, OnBackupShutdown, release non-persistent snapshots."""
        if self.state is S.CLOSED:
            return
        prepared = self.state in (
            S.PREPARED,
            S.SNAPSHOTTING,
            S.SNAPSHOT_CREATED,
            S.BACKUP_COMPLETED,
        )
        if self.state not in (S.BACKUP_COMPLETED, S.ABORTED):
            await self.abort()
        await self._release_snapshots("closed")
        set_id = self.snapshot_set_id
        writers = self._involved() if prepared else []
        if writers:
            await self.service.fanout.call_all(
                writers,
                WriterEvent.BACKUP_SHUTDOWN,
                lambda c: c.backup_shutdown(set_id),
                self._fanout_timeout(),
            )
        self._set_state(S.CLOSED)
