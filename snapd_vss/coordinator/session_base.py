"""What backup and restore sessions share: ownership, one call at a time, writers' views."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from snapd_vss.coordinator.settings import Caller
from snapd_vss.coordinator.writers import CallResult, RegisteredWriter
from snapd_vss.documents.backup_components import (
    MAX_FAILURE_MESSAGE_CHARS,
    MAX_FAILURES_PER_COMPONENT,
    BackupComponents,
    ComponentEntry,
    ComponentFailure,
    apply_writer_changes,
)
from snapd_vss.documents.writer_metadata import WriterMetadata, parse_writer_metadata
from snapd_vss.errors import AccessDenied, InvalidState, NotFound, VssError, WriterError
from snapd_vss.vocabulary import WriterEvent

if TYPE_CHECKING:
    from snapd_vss.coordinator.service import Service

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Gathered:
    writer: RegisteredWriter
    metadata: WriterMetadata


@dataclass
class SessionCore:
    service: Service
    number: int
    owner: Caller
    document: BackupComponents = field(default_factory=BackupComponents)
    gathered: dict[str, Gathered] = field(default_factory=dict)
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: Any = None  # each kind of session narrows this to its own state enum

    kind: ClassVar[str] = "session"

    def describe(self) -> str:
        return f"{self.kind} {self.number}"

    def _require(self, call: str, *allowed: Any) -> None:
        if self.state not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise InvalidState(
                f"{call} is not allowed now: {self.describe()} is {self.state.value}, "
                f"it must be {wanted}"
            )

    def _set_state(self, state: Any) -> None:
        self.state = state
        self.service.listener.session_changed(self)
        log.info(
            "%s: %s",
            self.describe(),
            self.state.value,
            extra={"SESSION": str(self.number), "SNAPSHOT_SET_ID": self.document.snapshot_set_id},
        )

    async def _run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one call at a time per session; a second concurrent call is refused."""
        if self._busy.locked():
            raise InvalidState(f"{self.describe()} is busy with another call; wait for it")
        async with self._busy:
            return await operation()

    def check_owner(self, caller: Caller) -> None:
        if caller.bus_name and caller.bus_name != self.owner.bus_name:
            raise AccessDenied(
                f"{self.describe()} belongs to connection {self.owner.bus_name}; "
                "only the connection that created a session may use it"
            )

    # -- writers -------------------------------------------------------------------------

    def _fanout_timeout(self) -> float:
        return self.service.settings.writer_call_s

    async def _identify_all(self) -> dict[str, str]:
        """OnIdentify to every registered writer; the valid answers, by instance id."""
        self.gathered.clear()
        writers = self.service.registry.all()
        for writer in writers:
            writer.reset()
        results = await self.service.fanout.call_all(
            writers,
            WriterEvent.IDENTIFY,
            lambda c: c.identify(),
            self.service.settings.identify_s,
        )
        answer: dict[str, str] = {}
        for result in results:
            writer = result.writer
            if result.value is not None:
                try:
                    metadata = parse_writer_metadata(result.value, source=writer.describe())
                except VssError as exc:
                    writer.fail(WriterEvent.IDENTIFY, WriterError(exc.message))
                else:
                    metadata.instance_id = writer.instance_id  # the registration is authoritative
                    writer.metadata = metadata
                    self.gathered[writer.instance_id] = Gathered(writer, metadata)
                    answer[writer.instance_id] = metadata.to_xml()
            self.service.listener.writer_changed(writer)
        return answer

    def _gathered(self, instance_id: str) -> Gathered:
        try:
            return self.gathered[instance_id]
        except KeyError:
            raise NotFound(
                f"writer instance {instance_id!r} was not gathered in {self.describe()}; "
                "use an instance id GatherWriterMetadata returned"
            ) from None

    def _component(self, instance_id: str, logical_path: str, name: str) -> ComponentEntry:
        entry = self.document.writer(instance_id)
        if entry is None:
            raise NotFound(f"writer instance {instance_id!r} has no components in the document")
        return entry.component(logical_path, name)

    def view_for(self, instance_id: str) -> BackupComponents:
        """The document as one writer sees it: everything but the other writers' elements.

        A writer may only annotate its own components, and must not learn what other
        writers (possibly other users' services) store; it also keeps each message small.
        """
        view = copy.deepcopy(self.document)
        view.writers = [w for w in view.writers if w.instance_id == instance_id]
        return view

    def _merge_writer_answer(self, writer: RegisteredWriter, answer: str) -> None:
        """Take the permitted changes of ``writer``'s returned document into the session's."""
        updated = apply_writer_changes(
            self.view_for(writer.instance_id), answer, writer.instance_id, writer.name
        )
        own = updated.writer(writer.instance_id)
        self.document.writers = [
            own if own is not None and w.instance_id == writer.instance_id else w
            for w in self.document.writers
        ]

    async def _exchange(
        self,
        writers: list[RegisteredWriter],
        event: WriterEvent,
        call: Callable[[Any, str], Awaitable[str]],
    ) -> list[CallResult[str]]:
        """Send each writer its view, merge what it may change, record who failed."""
        views = {w.instance_id: self.view_for(w.instance_id).to_xml() for w in writers}
        results = await self.service.fanout.call_all_each(
            writers,
            event,
            lambda w: lambda c: call(c, views[w.instance_id]),
            self._fanout_timeout(),
        )
        for result in results:
            if result.value is None:
                continue
            try:
                self._merge_writer_answer(result.writer, result.value)
            except VssError as exc:
                error = WriterError(
                    f"{result.writer.describe()} changed the document in a way it may not: "
                    f"{exc.message}"
                )
                result.writer.fail(event, error)
                result.error = error
        self._record_failures(results, event)
        return results

    def _record_failures(self, results: list[CallResult[T]], event: WriterEvent) -> None:
        for result in results:
            if result.error is None:
                continue
            self.service.listener.writer_changed(result.writer)
            entry = self.document.writer(result.writer.instance_id)
            if entry is None:
                continue
            message = result.error.message[:MAX_FAILURE_MESSAGE_CHARS]
            for component in entry.components:
                if len(component.failures) < MAX_FAILURES_PER_COMPONENT:
                    component.failures.append(ComponentFailure(event.value, message))

    def gather_writer_status(self) -> list[tuple[str, str, str, str, str]]:
        writers = [g.writer for g in self.gathered.values()] or self.service.registry.all()
        return [
            (w.instance_id, w.name, w.state.value, w.last_error.value, w.last_error_message)
            for w in writers
        ]

    def save_as_xml(self) -> str:
        return self.document.to_xml()

    async def abort(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
