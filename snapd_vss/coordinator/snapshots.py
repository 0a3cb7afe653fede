"""The snapshots the service owns: in memory, in the store, and in their providers."""

from __future__ import annotations

import logging
import os

from snapd_vss.coordinator.events import Listener
from snapd_vss.errors import InvalidArgs, InvalidState, NotFound, VssError
from snapd_vss.model import SnapshotRecord
from snapd_vss.providers.registry import ProviderRegistry
from snapd_vss.store import SnapshotStore
from snapd_vss.vocabulary import SnapshotState

log = logging.getLogger(__name__)


class SnapshotManager:
    def __init__(
        self,
        store: SnapshotStore,
        providers: ProviderRegistry,
        listener: Listener,
        runtime_dir: str,
    ) -> None:
        self.store = store
        self.providers = providers
        self.listener = listener
        self.runtime_dir = runtime_dir
        self._records: dict[str, SnapshotRecord] = {}

    # -- queries -------------------------------------------------------------------------

    def all(self) -> list[SnapshotRecord]:
        """Committed snapshots, oldest first (pending ones are internal)."""
        listed = [r for r in self._records.values() if r.committed]
        return sorted(listed, key=lambda r: r.creation_time_us)

    def get(self, snapshot_id: str) -> SnapshotRecord:
        record = self._records.get(snapshot_id)
        if record is None or not record.committed:
            raise NotFound(
                f"no snapshot with id {snapshot_id!r}; `vssctl list snapshots` shows them"
            )
        return record

    # -- life cycle ----------------------------------------------------------------------

    def begin(self, record: SnapshotRecord) -> None:
        """Record a snapshot before its provider makes it, so a crash leaves a trace to clean."""
        record.committed = False
        self._records[record.id] = record
        self.store.put(record)

    def committed(self, record: SnapshotRecord) -> None:
        record.committed = True
        self.store.put(record)
        self.listener.snapshot_added(record)

    async def delete(self, record: SnapshotRecord, reason: str) -> None:
        """Release a snapshot in its provider and forget it; raises if the provider fails."""
        provider = self.providers.get(record.provider)
        await provider.delete(record)
        was_listed = record.committed
        record.state = SnapshotState.DELETED
        record.state_reason = reason
        self._records.pop(record.id, None)
        self.store.delete(record.id)
        if was_listed:
            self.listener.snapshot_removed(record)
        log.info(
            "snapshot %s of %s deleted: %s",
            record.id,
            record.volume,
            reason,
            extra={"SNAPSHOT_ID": record.id, "SNAPSHOT_SET_ID": record.snapshot_set_id},
        )

    async def delete_quietly(self, record: SnapshotRecord, reason: str) -> str:
        """Delete, logging instead of raising; returns the error message or ``""``."""
        try:
            await self.delete(record, reason)
        except VssError as exc:
            log.error("could not delete snapshot %s: %s", record.id, exc.message)
            return exc.message
        return ""

    def invalidate(self, record: SnapshotRecord, reason: str) -> None:
        record.state = SnapshotState.INVALID
        record.state_reason = reason
        self.store.put(record)
        self.listener.snapshot_changed(record)
        log.warning("snapshot %s of %s is invalid: %s", record.id, record.volume, reason)

    def default_expose_path(self, record: SnapshotRecord) -> str:
        return os.path.join(self.runtime_dir, "snapshots", record.id)

    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        if record.state is SnapshotState.INVALID:
            raise InvalidState(
                f"snapshot {record.id} is invalid ({record.state_reason}); delete it"
            )
        if record.state is SnapshotState.EXPOSED:
            raise InvalidState(
                f"snapshot {record.id} is already exposed at {record.exposed_path}; "
                "unexpose it first"
            )
        if mount_point and not os.path.isabs(mount_point):
            raise InvalidArgs(f"mount point {mount_point!r} must be an absolute path")
        target = os.path.normpath(mount_point) if mount_point else self.default_expose_path(record)
        provider = self.providers.get(record.provider)
        path = await provider.expose(record, target)
        record.exposed_path = path
        record.state = SnapshotState.EXPOSED
        self.store.put(record)
        self.listener.snapshot_changed(record)
        return path

    async def unexpose(self, record: SnapshotRecord) -> None:
        if record.state is not SnapshotState.EXPOSED:
            raise InvalidState(f"snapshot {record.id} is not exposed")
        provider = self.providers.get(record.provider)
        await provider.unexpose(record)
        record.exposed_path = ""
        record.state = SnapshotState.CREATED
        self.store.put(record)
        self.listener.snapshot_changed(record)

    # -- start-up ------------------------------------------------------------------------

    async def recover(self) -> None:
        """Reconcile the store with the providers after a (re)start.

        Half-made snapshots (never committed) and non-persistent ones (their session died
        with the previous daemon) are released; persistent ones that vanished from their
        provider are kept in the list as INVALID with the reason, so nothing disappears silently.
        """
        for record in self.store.all():
            self._records[record.id] = record
            if not record.committed or not record.persistent:
                why = (
                    "left half-made by a previous run"
                    if not record.committed
                    else "non-persistent snapshot of a session that ended with the previous run"
                )
                await self.delete_quietly(record, why)  # never exported, so nothing to announce
                continue
            try:
                present = await self.providers.get(record.provider).exists(record)
            except VssError as exc:
                present = True
                log.warning("could not check snapshot %s: %s", record.id, exc.message)
            if not present and record.state is not SnapshotState.INVALID:
                record.state = SnapshotState.INVALID
                record.state_reason = (
                    f"the {record.provider} snapshot was removed outside snapd-vss; "
                    "delete this entry"
                )
                self.store.put(record)
            self.listener.snapshot_added(record)
