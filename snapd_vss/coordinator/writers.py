"""Registered writers and the calls the coordinator makes to them.

The D-Bus layer implements :class:`WriterConnection` for each registered writer object; the
coordinator never knows how the call travels. A connection raises one of the
``snapd_vss.errors.Writer*`` errors when the writer vetoes, and ``WriterLost`` when the
writer's process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from snapd_vss.documents.writer_metadata import WriterMetadata
from snapd_vss.errors import (
    InvalidArgs,
    InvalidDocument,
    NotFound,
    WriterError,
    WriterInconsistentSnapshot,
    WriterLost,
    WriterNonRetryable,
    WriterOutOfResources,
    WriterRetryable,
    WriterTimeout,
    WriterVetoUnknown,
)
from snapd_vss.vocabulary import WriterEvent, WriterFailure, WriterState

log = logging.getLogger(__name__)

T = TypeVar("T")


class WriterConnection(Protocol):
    """How the coordinator reaches one writer object (API.md, interface Writer)."""

    async def identify(self) -> str: ...
    async def prepare_backup(self, backup_components: str) -> str: ...
    async def prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None: ...
    async def freeze(self, snapshot_set_id: str) -> None: ...
    async def thaw(self, snapshot_set_id: str) -> None: ...
    async def post_snapshot(self, snapshot_set_id: str, mapping: dict[str, str]) -> None: ...
    async def abort(self, snapshot_set_id: str) -> None: ...
    async def backup_complete(self, backup_components: str) -> None: ...
    async def backup_shutdown(self, snapshot_set_id: str) -> None: ...
    async def pre_restore(self, backup_components: str) -> str: ...
    async def post_restore(self, backup_components: str) -> str: ...


FAILURE_OF: dict[type[WriterError], WriterFailure] = {
    WriterRetryable: WriterFailure.RETRYABLE,
    WriterNonRetryable: WriterFailure.NON_RETRYABLE,
    WriterTimeout: WriterFailure.TIMEOUT,
    WriterInconsistentSnapshot: WriterFailure.INCONSISTENT_SNAPSHOT,
    WriterOutOfResources: WriterFailure.OUT_OF_RESOURCES,
    WriterLost: WriterFailure.NON_RETRYABLE,
    WriterVetoUnknown: WriterFailure.NON_RETRYABLE,
}


def failure_of(error: WriterError) -> WriterFailure:
    for cls in type(error).__mro__:
        if cls in FAILURE_OF:
            return FAILURE_OF[cls]
    return WriterFailure.NON_RETRYABLE


@dataclass
class RegisteredWriter:
    """A writer object the service knows, with its last metadata and VSS-style state."""

    number: int
    owner: str  # the writer's unique bus name
    object_path: str  # the writer's own object path on its connection
    uid: int
    connection: WriterConnection
    metadata: WriterMetadata
    state: WriterState = WriterState.STABLE
    last_error: WriterFailure = WriterFailure.NONE
    last_error_message: str = ""
    connected: bool = True

    @property
    def instance_id(self) -> str:
        return self.metadata.instance_id

    @property
    def name(self) -> str:
        return self.metadata.name

    def describe(self) -> str:
        return f"writer {self.name!r} (instance {self.instance_id}, {self.owner})"

    def set_state(self, state: WriterState) -> None:
        self.state = state

    def fail(self, event: WriterEvent, error: WriterError) -> None:
        self.state = event.failed_state
        self.last_error = failure_of(error)
        self.last_error_message = error.message

    def reset(self) -> None:
        self.state = WriterState.STABLE
        self.last_error = WriterFailure.NONE
        self.last_error_message = ""


@dataclass
class CallResult(Generic[T]):
    writer: RegisteredWriter
    value: T | None = None
    error: WriterError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class WriterFanout:
    """Calls many writers concurrently, with a deadline per call and a bound on calls in flight."""

    max_in_flight: int = 64
    _semaphore: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._semaphore = asyncio.Semaphore(self.max_in_flight)

    async def call_one(
        self,
        writer: RegisteredWriter,
        event: WriterEvent,
        call: Callable[[WriterConnection], Awaitable[T]],
        timeout_s: float,
    ) -> CallResult[T]:
        if not writer.connected:
            error: WriterError = WriterLost(
                f"{writer.describe()} left the bus before {event.value}"
            )
            writer.fail(event, error)
            return CallResult(writer, error=error)
        try:
            async with self._semaphore:
                async with asyncio.timeout(timeout_s):
                    value = await call(writer.connection)
        except TimeoutError:
            error = WriterTimeout(
                f"{writer.describe()} did not answer {event.value} within {timeout_s:g} s"
            )
        except WriterError as exc:
            error = exc
            if not isinstance(exc, WriterLost):
                error = type(exc)(f"{writer.describe()} failed at {event.value}: {exc.message}")
        except InvalidDocument as exc:
            error = WriterNonRetryable(
                f"{writer.describe()} returned an invalid document at {event.value}: {exc.message}"
            )
        else:
            return CallResult(writer, value=value)
        writer.fail(event, error)
        log.warning("%s", error.message, extra={"WRITER": writer.name, "EVENT": event.value})
        return CallResult(writer, error=error)

    async def call_all(
        self,
        writers: Iterable[RegisteredWriter],
        event: WriterEvent,
        call: Callable[[WriterConnection], Awaitable[T]],
        timeout_s: float,
    ) -> list[CallResult[T]]:
        """The same call to every writer."""
        return await self.call_all_each(writers, event, lambda _w: call, timeout_s)

    async def call_all_each(
        self,
        writers: Iterable[RegisteredWriter],
        event: WriterEvent,
        call_for: Callable[[RegisteredWriter], Callable[[WriterConnection], Awaitable[T]]],
        timeout_s: float,
    ) -> list[CallResult[T]]:
        """A call made for each writer (e.g. with its own view of the document)."""
        return list(
            await asyncio.gather(
                *(self.call_one(w, event, call_for(w), timeout_s) for w in writers)
            )
        )


class WriterRegistry:
    """The writers registered with the service, numbered for their object paths."""

    def __init__(self) -> None:
        self._writers: dict[int, RegisteredWriter] = {}
        self._next = 1

    def all(self) -> list[RegisteredWriter]:
        return list(self._writers.values())

    def get(self, number: int) -> RegisteredWriter:
        try:
            return self._writers[number]
        except KeyError:
            raise NotFound(f"no registered writer number {number}") from None

    def by_instance(self, instance_id: str) -> RegisteredWriter:
        for writer in self._writers.values():
            if writer.instance_id == instance_id:
                return writer
        raise NotFound(
            f"no registered writer has instance id {instance_id!r}; "
            "call GatherWriterMetadata and use an instance id it returned"
        )

    def by_owner(self, owner: str) -> list[RegisteredWriter]:
        return [w for w in self._writers.values() if w.owner == owner]

    def add(
        self,
        owner: str,
        object_path: str,
        uid: int,
        connection: WriterConnection,
        metadata: WriterMetadata,
    ) -> RegisteredWriter:
        for other in self._writers.values():
            if other.owner == owner and other.object_path == object_path:
                raise InvalidArgs(
                    f"{object_path} on {owner} is already registered as writer {other.number}"
                )
            if metadata.instance_id and other.instance_id == metadata.instance_id:
                raise InvalidArgs(
                    f"writer instance id {metadata.instance_id} is already registered by "
                    f"{other.owner}; give each instance its own instanceId"
                )
        if not metadata.instance_id:
            metadata.instance_id = str(uuid.uuid4())
        writer = RegisteredWriter(self._next, owner, object_path, uid, connection, metadata)
        self._writers[writer.number] = writer
        self._next += 1
        return writer

    def remove(self, number: int) -> RegisteredWriter:
        writer = self.get(number)
        del self._writers[number]
        writer.connected = False
        return writer
