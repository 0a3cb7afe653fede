"""Turns the service's events (plain strings, as they come off the wire) into calls of a
``Writer``'s callbacks, and keeps the writer's local state.

This is the domain half of the writer protocol: the D-Bus layer
(``snapd_vss.ipc.writer_service``) only translates calls to these methods and the
``WriterError`` they raise into named D-Bus errors.

It also holds the safety net VSS writers have: once frozen, if neither OnThaw nor
OnAbort arrives within the writer's ``freeze_timeout_ms`` (the service died, the bus
went away), the writer's ``on_abort`` is called so the application never stays frozen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.errors import (
    InvalidDocument,
    VssError,
    WriterError,
    WriterNonRetryable,
    WriterRetryable,
    WriterTimeout,
)
from snapd_vss.vocabulary import WriterEvent, WriterFailure, WriterState
from snapd_vss.writer.base import Writer
from snapd_vss.writer.view import BackupView

log = logging.getLogger("snapd_vss.writer")

_FAILURE_BY_CODE: dict[str, WriterFailure] = {
    "WriterRetryable": WriterFailure.RETRYABLE,
    "WriterNonRetryable": WriterFailure.NON_RETRYABLE,
    "WriterTimeout": WriterFailure.TIMEOUT,
    "WriterInconsistentSnapshot": WriterFailure.INCONSISTENT_SNAPSHOT,
    "WriterOutOfResources": WriterFailure.OUT_OF_RESOURCES,
}


def as_writer_error(exc: BaseException) -> WriterError:
    """The named writer error to report for an exception raised by a callback."""
    if isinstance(exc, WriterError):
        return exc
    if isinstance(exc, VssError):
        return WriterNonRetryable(f"{exc.code}: {exc.message}")
    text = str(exc) or type(exc).__name__
    return WriterNonRetryable(f"{type(exc).__name__}: {text}")


class WriterDispatcher:
    """One writer's end of the protocol, independent of any transport."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.frozen_set_id: str | None = None
        self._guard: asyncio.Task[None] | None = None
        self._freeze_task: asyncio.Future[None] | None = None
        self._interrupted: dict[str, WriterError] = {}
        self._timed_out_sets: set[str] = set()

    # The writer's local view of its state lives on the writer, for its own logging.

    @property
    def state(self) -> WriterState:
        return self.writer.state

    @state.setter
    def state(self, value: WriterState) -> None:
        self.writer.state = value

    @property
    def last_failure(self) -> WriterFailure:
        return self.writer.last_failure

    @last_failure.setter
    def last_failure(self, value: WriterFailure) -> None:
        self.writer.last_failure = value

    @property
    def last_failure_message(self) -> str:
        return self.writer.last_failure_message

    @last_failure_message.setter
    def last_failure_message(self, value: str) -> None:
        self.writer.last_failure_message = value

    # ----- events -----------------------------------------------------------------

    async def identify(self) -> str:
        try:
            return self.writer.metadata().to_xml()
        except Exception as exc:
            raise self._failed(WriterEvent.IDENTIFY, exc) from exc

    async def prepare_backup(self, backup_components: str) -> str:
        view = self._view(backup_components, WriterEvent.PREPARE_BACKUP)
        await self._run(WriterEvent.PREPARE_BACKUP, lambda: self.writer.on_prepare_backup(view))
        self._enter(WriterState.WAITING_FOR_FREEZE)
        return view.document.to_xml()

    async def prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        await self._run(
            WriterEvent.PREPARE_FOR_FREEZE,
            lambda: self.writer.on_prepare_for_freeze(snapshot_set_id, list(volumes)),
        )
        self._enter(WriterState.WAITING_FOR_FREEZE)

    async def freeze(self, snapshot_set_id: str) -> None:
        self._timed_out_sets.discard(snapshot_set_id)
        self.frozen_set_id = snapshot_set_id
        task = asyncio.ensure_future(self.writer.on_freeze(snapshot_set_id))
        self._freeze_task = task
        self._start_guard(snapshot_set_id)
        try:
            await self._run(WriterEvent.FREEZE, lambda: task)
        except asyncio.CancelledError:
            interrupted = self._interrupted.pop(snapshot_set_id, None)
            if interrupted is not None:
                raise interrupted from None
            raise
        except WriterError:
            # A writer that failed to freeze may be half-frozen: let it resume now.
            await self._release(snapshot_set_id, "its freeze failed")
            raise
        finally:
            self._freeze_task = None
        if snapshot_set_id in self._timed_out_sets:
            raise self._timeout_error(snapshot_set_id)
        self._enter(WriterState.WAITING_FOR_THAW)

    async def thaw(self, snapshot_set_id: str) -> None:
        if snapshot_set_id in self._timed_out_sets:
            self._timed_out_sets.discard(snapshot_set_id)
            raise self._timeout_error(snapshot_set_id)
        self._stop_guard()
        self.frozen_set_id = None
        await self._run(WriterEvent.THAW, lambda: self.writer.on_thaw(snapshot_set_id))
        self._enter(WriterState.WAITING_FOR_POST_SNAPSHOT)

    async def post_snapshot(self, snapshot_set_id: str, snapshots: Mapping[str, str]) -> None:
        await self._run(
            WriterEvent.POST_SNAPSHOT,
            lambda: self.writer.on_post_snapshot(snapshot_set_id, dict(snapshots)),
        )
        self._enter(WriterState.WAITING_FOR_BACKUP_COMPLETE)

    async def abort(self, snapshot_set_id: str) -> None:
        if snapshot_set_id in self._timed_out_sets:
            # The safety net already called on_abort for this set.
            self._timed_out_sets.discard(snapshot_set_id)
            return
        self._stop_guard()
        self.frozen_set_id = None
        await self._cancel_freeze(
            snapshot_set_id,
            WriterRetryable(
                f"snapshot set {snapshot_set_id} was aborted before writer "
                f"{self.writer.name!r} finished freezing; retry the backup"
            ),
        )
        try:
            await self._run(WriterEvent.ABORT, lambda: self.writer.on_abort(snapshot_set_id))
        finally:
            if not self.state.failed:
                self._enter(WriterState.STABLE)

    async def backup_complete(self, backup_components: str) -> None:
        view = self._view(backup_components, WriterEvent.BACKUP_COMPLETE)
        await self._run(WriterEvent.BACKUP_COMPLETE, lambda: self.writer.on_backup_complete(view))
        self._enter(WriterState.STABLE)

    async def backup_shutdown(self, snapshot_set_id: str) -> None:
        if self.frozen_set_id == snapshot_set_id:
            await self._release(snapshot_set_id, "the session closed while frozen")
        await self._run(
            WriterEvent.BACKUP_SHUTDOWN, lambda: self.writer.on_backup_shutdown(snapshot_set_id)
        )
        self._enter(WriterState.STABLE)

    async def pre_restore(self, backup_components: str) -> str:
        view = self._view(backup_components, WriterEvent.PRE_RESTORE)
        await self._run(WriterEvent.PRE_RESTORE, lambda: self.writer.on_pre_restore(view))
        return view.document.to_xml()

    async def post_restore(self, backup_components: str) -> str:
        view = self._view(backup_components, WriterEvent.POST_RESTORE)
        await self._run(WriterEvent.POST_RESTORE, lambda: self.writer.on_post_restore(view))
        self._enter(WriterState.STABLE)
        return view.document.to_xml()

    async def close(self) -> None:
        """The writer is going away: never leave the application frozen."""
        if self.frozen_set_id is not None:
            await self._release(self.frozen_set_id, "the writer is stopping")

    # ----- helpers ----------------------------------------------------------------

    def _view(self, backup_components: str, event: WriterEvent) -> BackupView:
        try:
            document = parse_backup_components(backup_components)
        except InvalidDocument as exc:
            raise self._failed(event, exc) from exc
        return BackupView(document, self.writer.writer_id, self.writer.instance_id)

    async def _run(self, event: WriterEvent, call: Callable[[], Awaitable[None]]) -> None:
        log.debug("%s: %s", self.writer.name, event.value)
        try:
            await call()
        except Exception as exc:
            raise self._failed(event, exc) from exc

    def _failed(self, event: WriterEvent, exc: BaseException) -> WriterError:
        error = as_writer_error(exc)
        self.state = event.failed_state
        self.last_failure = _FAILURE_BY_CODE.get(error.code, WriterFailure.NON_RETRYABLE)
        self.last_failure_message = error.message
        log.warning(
            "%s: %s failed (%s): %s", self.writer.name, event.value, error.code, error.message
        )
        return error

    def _enter(self, state: WriterState) -> None:
        if state is WriterState.STABLE or not self.state.failed:
            if state is WriterState.STABLE:
                self.last_failure = WriterFailure.NONE
                self.last_failure_message = ""
            if state is not self.state:
                log.debug("%s: state %s -> %s", self.writer.name, self.state, state)
            self.state = state

    def _timeout_error(self, snapshot_set_id: str) -> WriterTimeout:
        return WriterTimeout(
            f"writer {self.writer.name!r} stayed frozen for snapshot set {snapshot_set_id} longer "
            f"than its freeze_timeout_ms ({self.writer.freeze_timeout_ms} ms) and resumed by "
            "itself; the snapshot is not application-consistent, retry the backup"
        )

    def _start_guard(self, snapshot_set_id: str) -> None:
        self._stop_guard()
        self._guard = asyncio.get_running_loop().create_task(
            self._guard_freeze(snapshot_set_id), name=f"freeze-guard-{snapshot_set_id}"
        )

    def _stop_guard(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()

    async def _guard_freeze(self, snapshot_set_id: str) -> None:
        await asyncio.sleep(self.writer.freeze_timeout_ms / 1000)
        if self.frozen_set_id != snapshot_set_id:
            return
        self._guard = None
        log.error(
            "%s: frozen for snapshot set %s longer than %d ms without OnThaw/OnAbort; "
            "resuming by itself (calling on_abort)",
            self.writer.name,
            snapshot_set_id,
            self.writer.freeze_timeout_ms,
        )
        self._timed_out_sets.add(snapshot_set_id)
        error = self._timeout_error(snapshot_set_id)
        await self._cancel_freeze(snapshot_set_id, error)  # on_freeze itself may hang
        await self._release(snapshot_set_id, "its freeze timed out")
        self.state = WriterEvent.FREEZE.failed_state
        self.last_failure = WriterFailure.TIMEOUT
        self.last_failure_message = error.message

    async def _cancel_freeze(self, snapshot_set_id: str, error: WriterError) -> None:
        """Stop an ``on_freeze`` still running, and wait until it has unwound, so that
        ``on_abort`` never runs before it (the writer could end up frozen)."""
        task = self._freeze_task
        if task is None or task.done():
            return
        self._interrupted[snapshot_set_id] = error
        task.cancel()
        await asyncio.wait({task})

    async def _release(self, snapshot_set_id: str, why: str) -> None:
        """Call ``on_abort`` on a (possibly) frozen writer; log, never raise."""
        self._stop_guard()
        self.frozen_set_id = None
        log.info("%s: calling on_abort for %s because %s", self.writer.name, snapshot_set_id, why)
        try:
            await self.writer.on_abort(snapshot_set_id)
        except Exception as exc:
            log.error("%s: on_abort raised %s: %s", self.writer.name, type(exc).__name__, exc)
