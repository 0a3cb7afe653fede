"""DoSnapshotSet: the freeze sequence, with its two bounded windows.

    OnPrepareForFreeze -> OnFreeze -> [FIFREEZE where needed -> provider commit -> FITHAW] -> OnThaw
                          |<------------------- freeze window -------------------------->|
                                      |<----------- commit window ----------->|

Any writer failure up to and including OnThaw, or either window running out, aborts the
set: filesystems are thawed first (a guard process thaws them even if this daemon dies),
half-made snapshots are deleted, and every involved writer gets OnAbort. OnPostSnapshot
failures only mark the writer failed: the snapshot itself is sound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from snapd_vss import failpoints
from snapd_vss.coordinator.writers import CallResult, RegisteredWriter
from snapd_vss.errors import ProviderFailure, Timeout, VssError, WriterError, WriterTimeout
from snapd_vss.freeze import FreezeGuard
from snapd_vss.model import SnapshotRecord, Volume, now_us
from snapd_vss.providers.base import Provider
from snapd_vss.vocabulary import WriterEvent, WriterState
from snapd_vss.volumes import resolve_volume

if TYPE_CHECKING:
    from snapd_vss.coordinator.service import Service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldCandidate:
    volume: str
    why_not_held: str  # "" when the provider needs the coordinator to hold it still
    consistent_alone: bool = False  # ... but its commit alone is consistent (it freezes itself)

    @property
    def needs_freeze(self) -> bool:
        return not self.why_not_held


def choose_held(candidates: list[HoldCandidate]) -> list[str]:
    """The volumes to hold frozen across the commits, sorted.

    Every volume whose provider needs it; but when every volume of the set would be held,
    one that is consistent alone (e.g. an LVM thin LV: lvcreate freezes it for its
    instant) is left unheld. Its snapshot is then an instant inside the span where all
    the others are held, so the set stays one point in time with one freeze less (and
    none at all for a set of one such volume).
    """
    held = {c.volume: c for c in candidates if c.needs_freeze}
    if held and len(held) == len({c.volume for c in candidates}):
        alone = sorted(v for v, c in held.items() if c.consistent_alone)
        if alone:
            del held[alone[0]]
    return sorted(held)


@dataclass
class SnapshotSetRun:
    service: Service
    snapshot_set_id: str
    records: list[SnapshotRecord]
    writers: list[RegisteredWriter]
    failures: dict[WriterEvent, list[CallResult[Any]]] = field(default_factory=dict)
    freeze_window_ms: float = 0.0
    commit_window_ms: float = 0.0
    _volumes: dict[str, Volume] = field(default_factory=dict)
    _begun: list[SnapshotRecord] = field(default_factory=list)

    def _provider(self, record: SnapshotRecord) -> Provider:
        return self.service.providers.get(record.provider)

    def _log_extra(self) -> dict[str, str]:
        return {"SNAPSHOT_SET_ID": self.snapshot_set_id}

    def freeze_window_s(self) -> float:
        limits = [self.service.settings.freeze_window_s]
        limits += [w.metadata.freeze_timeout_ms / 1000 for w in self.writers]
        return max(0.001, min(limits))

    async def _call(
        self, event: WriterEvent, call: Any, timeout_s: float, ok_state: WriterState
    ) -> None:
        results: list[CallResult[Any]] = await self.service.fanout.call_all(
            self.writers, event, call, max(timeout_s, 0.001)
        )
        failed = [r for r in results if r.error is not None]
        for result in results:
            if result.ok:
                result.writer.set_state(ok_state)
            self.service.listener.writer_changed(result.writer)
        if failed:
            self.failures[event] = failed
            first = failed[0].error
            assert first is not None
            raise first

    # -- the sequence --------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            await self._prepare_providers()
            await self._freeze_and_commit()
        except BaseException as exc:
            await asyncio.shield(self._undo(exc))
            raise
        for record in self.records:
            self.service.snapshots.committed(record)
        await self._post_snapshot()

    async def _prepare_providers(self) -> None:
        for record in self.records:
            volume = resolve_volume(record.volume)
            self._volumes[record.id] = volume
            self.service.snapshots.begin(record)
            self._begun.append(record)
            await self._provider(record).prepare(record, volume)
        volumes = [r.volume for r in self.records]
        await self._call(
            WriterEvent.PREPARE_FOR_FREEZE,
            lambda c: c.prepare_for_freeze(self.snapshot_set_id, volumes),
            self.service.settings.writer_call_s,
            WriterState.WAITING_FOR_FREEZE,
        )

    async def _freeze_and_commit(self) -> None:
        window = self.freeze_window_s()
        start = time.monotonic()
        deadline = start + window

        def remaining() -> float:
            return deadline - time.monotonic()

        try:
            await self._call(
                WriterEvent.FREEZE,
                lambda c: c.freeze(self.snapshot_set_id),
                remaining(),
                WriterState.WAITING_FOR_THAW,
            )
            await self._commit(min(self.service.settings.commit_window_s, remaining()))
            await self._call(
                WriterEvent.THAW,
                lambda c: c.thaw(self.snapshot_set_id),
                remaining(),
                WriterState.WAITING_FOR_POST_SNAPSHOT,
            )
        finally:
            self.freeze_window_ms = (time.monotonic() - start) * 1000
        if remaining() < 0:
            raise WriterTimeout(
                f"the freeze window of {window:g} s was exceeded "
                f"({self.freeze_window_ms:.0f} ms); the snapshot set was aborted"
            )
        log.info(
            "snapshot set %s: freeze window %.1f ms, commit window %.1f ms",
            self.snapshot_set_id,
            self.freeze_window_ms,
            self.commit_window_ms,
            extra=self._log_extra(),
        )

    async def _commit(self, budget_s: float) -> None:
        if budget_s <= 0:
            raise WriterTimeout("the freeze window ran out before the providers could commit")
        candidates = self.hold_candidates()
        to_freeze = choose_held(candidates)
        self._warn_if_not_one_instant(candidates)
        start = time.monotonic()
        guard = (
            await FreezeGuard.start(
                to_freeze,
                budget_s,
                self.service.settings.runtime_dir,
                spare=await self.service.spare_guard.take(),
            )
            if to_freeze
            else None
        )
        try:
            await failpoints.pause("frozen")  # tests only: SNAPD_VSS_FAILPOINTS=frozen=S
            async with asyncio.timeout(budget_s):
                await self._commit_all()
        except TimeoutError:
            raise Timeout(
                f"the providers did not commit within the commit window of {budget_s:g} s; "
                "the filesystems were thawed and the snapshot set was aborted"
            ) from None
        finally:
            if guard is not None:
                await guard.thaw()
            self.commit_window_ms = (time.monotonic() - start) * 1000
            if guard is not None:
                self.service.spare_guard.prepare()  # for the next set, now the CPU is free
        if guard is not None and guard.thawed_by_deadline:
            raise Timeout(
                f"the commit window of {budget_s:g} s passed while filesystems were frozen; "
                "they were thawed and the snapshot set was aborted"
            )

    def hold_candidates(self) -> list[HoldCandidate]:
        """Each volume of the set: why the coordinator does not hold it ("" if it does)."""
        candidates = []
        for record in self.records:
            provider, volume = self._provider(record), self._volumes[record.id]
            why = provider.why_not_held(volume)
            alone = not why and provider.consistent_alone(volume)
            candidates.append(HoldCandidate(record.volume, why, alone))
        return candidates

    def _warn_if_not_one_instant(self, candidates: list[HoldCandidate]) -> None:
        """Say so when the set is not one point in time for programs that are not writers.

        Held volumes are still from the freeze until the thaw; each unheld one is
        snapshotted at its own instant inside that span. With one unheld volume the set
        is still one point in time; with two or more it is not.
        """
        unheld = {c.volume: c.why_not_held for c in candidates if not c.needs_freeze}
        if len(unheld) < 2:
            return
        log.warning(
            "snapshot set %s: %s are snapshotted one after another, each at its own instant, "
            "not while all are held still (%s). Registered writers were frozen across the "
            "whole set, but writes of other programs between those instants can be in one "
            "snapshot and not in another.",
            self.snapshot_set_id,
            " and ".join(sorted(unheld)),
            "; ".join(f"{volume}: {why}" for volume, why in sorted(unheld.items())),
            extra=self._log_extra(),
        )

    async def _commit_all(self) -> None:
        """Commit every snapshot concurrently; the first failure cancels the rest."""
        try:
            async with asyncio.TaskGroup() as group:
                for record in self.records:
                    group.create_task(self._commit_one(record))
        except ExceptionGroup as group_error:
            raise _first_failure(group_error) from None

    async def _commit_one(self, record: SnapshotRecord) -> None:
        await self._provider(record).commit(record, self._volumes[record.id])
        record.creation_time_us = now_us()

    async def _post_snapshot(self) -> None:
        mapping = {r.volume: r.device_path for r in self.records}
        with contextlib.suppress(WriterError):  # recorded in self.failures; the snapshot is sound
            await self._call(
                WriterEvent.POST_SNAPSHOT,
                lambda c: c.post_snapshot(self.snapshot_set_id, mapping),
                self.service.settings.writer_call_s,
                WriterState.WAITING_FOR_BACKUP_COMPLETE,
            )

    # -- undo ----------------------------------------------------------------------------

    async def _undo(self, cause: BaseException) -> None:
        reason = getattr(cause, "message", None) or type(cause).__name__
        log.warning(
            "snapshot set %s aborted: %s", self.snapshot_set_id, reason, extra=self._log_extra()
        )
        for record in self._begun:
            await self.service.snapshots.delete_quietly(record, f"snapshot set aborted: {reason}")
        results = await self.service.fanout.call_all(
            self.writers,
            WriterEvent.ABORT,
            lambda c: c.abort(self.snapshot_set_id),
            self.service.settings.writer_call_s,
        )
        for result in results:
            if result.ok and not result.writer.state.failed:
                result.writer.set_state(WriterState.STABLE)
            self.service.listener.writer_changed(result.writer)


def _first_failure(group: ExceptionGroup[Exception]) -> Exception:
    """The domain error to report for failed commits: the first provider's own error.

    (An ``except*`` clause would wrap even a single re-raised error in a new group.)
    """
    leaves: list[Exception] = []
    pending: list[Exception] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, ExceptionGroup):
            pending[:0] = list(error.exceptions)
        else:
            leaves.append(error)
    for error in leaves:
        if isinstance(error, VssError):
            return error
    for error in leaves:
        if isinstance(error, OSError):
            failure = ProviderFailure(f"a provider failed while committing: {error}")
            failure.__cause__ = error
            return failure
    return group
