"""The D-Bus side of the writer SDK: exports ``org.snapdvss.Vss1.Writer`` for one
``Writer`` and keeps it registered with snapd-vssd.

Only translation lives here: each method hands its arguments to the writer's
``WriterDispatcher`` and turns the ``VssError`` it raises into the named D-Bus error.
The registration loop watches ``NameOwnerChanged`` for ``org.snapdvss.Vss1``: it waits
while the service is absent, registers when it appears and again after every restart.
"""

# No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures
# from the annotations, and a postponed ``-> None`` would reach it as the string "None".

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from dbus_fast import BusType, DBusError, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from snapd_vss.errors import (
    ERROR_PREFIX,
    AccessDenied,
    Failed,
    InvalidArgs,
    InvalidDocument,
    VssError,
    from_code,
)
from snapd_vss.writer.base import Writer
from snapd_vss.writer.dispatch import WriterDispatcher

log = logging.getLogger("snapd_vss.writer")

SERVICE_NAME = "org.snapdvss.Vss1"
MANAGER_PATH = "/org/snapdvss/Vss1"
MANAGER_INTERFACE = "org.snapdvss.Vss1.Manager"
WRITER_INTERFACE = "org.snapdvss.Vss1.Writer"
WRITER_PATH_PREFIX = "/org/snapdvss/Vss1/Writer"
DBUS_NAME = "org.freedesktop.DBus"
DBUS_PATH = "/org/freedesktop/DBus"

REGISTER_TIMEOUT_S = 60.0
UNREGISTER_TIMEOUT_S = 5.0
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0

# Errors after which registering again cannot help: the writer must be fixed.
PERMANENT_ERRORS = {
    ERROR_PREFIX + InvalidDocument.code,
    ERROR_PREFIX + InvalidArgs.code,
    ERROR_PREFIX + AccessDenied.code,
    "org.freedesktop.DBus.Error.AccessDenied",
}

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusStrMap = Annotated[dict[str, str], DBusSignature("a{ss}")]

T = TypeVar("T")


async def _translate(call: Awaitable[T]) -> T:
    try:
        return await call
    except VssError as exc:
        raise DBusError(exc.dbus_name, exc.message) from exc


class WriterInterface(ServiceInterface):
    """``org.snapdvss.Vss1.Writer``, exactly as API.md pins it."""

    def __init__(self, dispatcher: WriterDispatcher) -> None:
        super().__init__(WRITER_INTERFACE)
        self._dispatcher = dispatcher

    @dbus_method()
    async def OnIdentify(self) -> DBusStr:
        return await _translate(self._dispatcher.identify())

    @dbus_method()
    async def OnPrepareBackup(self, backup_components: DBusStr) -> DBusStr:
        return await _translate(self._dispatcher.prepare_backup(backup_components))

    @dbus_method()
    async def OnPrepareForFreeze(self, snapshot_set_id: DBusStr, volumes: DBusStrList) -> None:
        await _translate(self._dispatcher.prepare_for_freeze(snapshot_set_id, volumes))

    @dbus_method()
    async def OnFreeze(self, snapshot_set_id: DBusStr) -> None:
        await _translate(self._dispatcher.freeze(snapshot_set_id))

    @dbus_method()
    async def OnThaw(self, snapshot_set_id: DBusStr) -> None:
        await _translate(self._dispatcher.thaw(snapshot_set_id))

    @dbus_method()
    async def OnPostSnapshot(
        self, snapshot_set_id: DBusStr, volume_to_snapshot_path: DBusStrMap
    ) -> None:
        await _translate(self._dispatcher.post_snapshot(snapshot_set_id, volume_to_snapshot_path))

    @dbus_method()
    async def OnAbort(self, snapshot_set_id: DBusStr) -> None:
        await _translate(self._dispatcher.abort(snapshot_set_id))

    @dbus_method()
    async def OnBackupComplete(self, backup_components: DBusStr) -> None:
        await _translate(self._dispatcher.backup_complete(backup_components))

    @dbus_method()
    async def OnBackupShutdown(self, snapshot_set_id: DBusStr) -> None:
        await _translate(self._dispatcher.backup_shutdown(snapshot_set_id))

    @dbus_method()
    async def OnPreRestore(self, backup_components: DBusStr) -> DBusStr:
        return await _translate(self._dispatcher.pre_restore(backup_components))

    @dbus_method()
    async def OnPostRestore(self, backup_components: DBusStr) -> DBusStr:
        return await _translate(self._dispatcher.post_restore(backup_components))


def writer_object_path(writer: Writer) -> str:
    """``/org/snapdvss/Vss1/Writer/<instance name or name>``, made a valid path element."""
    element = re.sub(r"[^A-Za-z0-9_]", "_", writer.instance_name or writer.name) or "writer"
    return f"{WRITER_PATH_PREFIX}/{element}"


class WriterConnection:
    """One writer on one bus connection, kept registered with snapd-vssd."""

    def __init__(self, writer: Writer, bus_address: str | None = None) -> None:
        self.writer = writer
        self.dispatcher = WriterDispatcher(writer)
        self.bus_address = bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or None
        self.object_path = writer_object_path(writer)
        self.registration: str | None = None
        self.registered = asyncio.Event()
        self._bus: MessageBus | None = None
        self._service_owner = ""
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self._fatal: VssError | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def bus(self) -> MessageBus:
        if self._bus is None:
            raise Failed("the writer is not connected; call start() first")
        return self._bus

    async def start(self) -> None:
        """Connect, export the writer object and start the registration loop."""
        try:
            if self.bus_address:
                bus = MessageBus(bus_address=self.bus_address)
            else:
                bus = MessageBus(bus_type=BusType.SYSTEM)
            self._bus = await bus.connect()
        except (OSError, ValueError) as exc:
            where = self.bus_address or "the system bus"
            raise Failed(
                f"cannot connect to {where}: {exc}; is dbus running, and is "
                "DBUS_SYSTEM_BUS_ADDRESS right?"
            ) from exc
        self.bus.export(self.object_path, WriterInterface(self.dispatcher))
        self.bus.add_message_handler(self._on_message)
        rule = (
            f"type='signal',sender='{DBUS_NAME}',interface='{DBUS_NAME}',"
            f"member='NameOwnerChanged',arg0='{SERVICE_NAME}'"
        )
        await self._call_bus("AddMatch", "s", [rule])
        self._service_owner = await self._current_owner()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._registration_loop(), name="writer-registration"),
            loop.create_task(self._watch_disconnect(), name="writer-bus-watch"),
        ]
        log.info(
            "writer %r (%s) exported at %s on %s",
            self.writer.name,
            self.writer.instance_id,
            self.object_path,
            self.bus.unique_name,
        )

    async def wait_closed(self) -> None:
        """Wait until the connection ends; raise why it ended if it was not ``stop()``."""
        await self._closed.wait()
        if self._fatal is not None:
            raise self._fatal

    async def stop(self) -> None:
        """Unregister, resume the writer if frozen, and disconnect."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.dispatcher.close()
        bus = self._bus
        if bus is not None and bus.connected:
            if self.registration is not None:
                await self._unregister(bus, self.registration)
            bus.unexport(self.object_path)
            bus.disconnect()
        self._bus = None
        self.registration = None
        self.registered.clear()
        self._closed.set()

    # ----- registration -------------------------------------------------------------

    async def _registration_loop(self) -> None:
        delay = RETRY_MIN_S
        announced_absence = False
        while True:
            self._wakeup.clear()
            if not self._service_owner:
                if not announced_absence:
                    log.info(
                        "writer %r: snapd-vssd (%s) is not on the bus; waiting for it to start",
                        self.writer.name,
                        SERVICE_NAME,
                    )
                    announced_absence = True
                await self._wakeup.wait()
                continue
            announced_absence = False
            if self.registration is None:
                try:
                    await self._register()
                    delay = RETRY_MIN_S
                except (InvalidDocument, InvalidArgs, AccessDenied) as exc:
                    self._fail(exc)
                    return
                except VssError as exc:
                    log.warning(
                        "writer %r: registration failed: %s; retrying in %.0f s",
                        self.writer.name,
                        exc.message,
                        delay,
                    )
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wakeup.wait()
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
            await self._wakeup.wait()

    async def _register(self) -> None:
        owner = self._service_owner
        reply = await self._call(
            Message(
                destination=SERVICE_NAME,
                path=MANAGER_PATH,
                interface=MANAGER_INTERFACE,
                member="RegisterWriter",
                signature="oa{sv}",
                body=[self.object_path, {}],
            ),
            REGISTER_TIMEOUT_S,
        )
        if reply.message_type == MessageType.ERROR:
            name = reply.error_name or ""
            text = str(reply.body[0]) if reply.body else name
            if name in PERMANENT_ERRORS:
                code = name.removeprefix(ERROR_PREFIX).rsplit(".", 1)[-1]
                raise from_code(code, f"snapd-vssd refused writer {self.writer.name!r}: {text}")
            raise Failed(f"{name}: {text}")
        if owner != self._service_owner:
            return  # the service restarted meanwhile; the loop registers again
        self.registration = str(reply.body[0])
        self.registered.set()
        log.info(
            "writer %r registered with snapd-vssd (%s) as %s",
            self.writer.name,
            owner,
            self.registration,
        )

    async def _unregister(self, bus: MessageBus, registration: str) -> None:
        message = Message(
            destination=SERVICE_NAME,
            path=MANAGER_PATH,
            interface=MANAGER_INTERFACE,
            member="UnregisterWriter",
            signature="o",
            body=[registration],
        )
        try:
            async with asyncio.timeout(UNREGISTER_TIMEOUT_S):
                reply = await bus.call(message)
        except (TimeoutError, OSError, EOFError) as exc:
            log.info("writer %r: could not unregister: %s", self.writer.name, exc)
            return
        if reply is not None and reply.message_type == MessageType.ERROR:
            log.info("writer %r: unregister refused: %s", self.writer.name, reply.error_name)
        else:
            log.info("writer %r unregistered", self.writer.name)

    def _on_message(self, message: Message) -> None:
        if (
            message.message_type != MessageType.SIGNAL
            or message.member != "NameOwnerChanged"
            or message.interface != DBUS_NAME
            or not message.body
            or message.body[0] != SERVICE_NAME
        ):
            return
        new_owner = str(message.body[2])
        if new_owner != self._service_owner:
            if self.registration is not None:
                log.warning(
                    "writer %r: snapd-vssd %s; registration %s is gone",
                    self.writer.name,
                    "restarted" if new_owner else "left the bus",
                    self.registration,
                )
            self.registration = None
            self.registered.clear()
        self._service_owner = new_owner
        self._wakeup.set()

    async def _watch_disconnect(self) -> None:
        try:
            await self.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # stop() cancels this task
        except Exception as exc:
            log.debug("bus connection ended: %s", exc)
        self._fail(Failed("lost the connection to the bus; restart the writer"))

    def _fail(self, error: VssError) -> None:
        log.error("writer %r stops: %s", self.writer.name, error.message)
        self._fatal = error
        self._closed.set()

    # ----- bus helpers --------------------------------------------------------------

    async def _current_owner(self) -> str:
        reply = await self._call_bus("NameHasOwner", "s", [SERVICE_NAME])
        if not reply.body[0]:
            return ""
        reply = await self._call_bus("GetNameOwner", "s", [SERVICE_NAME])
        return str(reply.body[0]) if reply.message_type == MessageType.METHOD_RETURN else ""

    async def _call_bus(self, member: str, signature: str, body: list[object]) -> Message:
        return await self._call(
            Message(
                destination=DBUS_NAME,
                path=DBUS_PATH,
                interface=DBUS_NAME,
                member=member,
                signature=signature,
                body=body,
            ),
            REGISTER_TIMEOUT_S,
        )

    async def _call(self, message: Message, timeout: float) -> Message:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
            # cancellation that arrives together with the reply (stop() would hang).
            async with asyncio.timeout(timeout):
                reply = await self.bus.call(message)
        except TimeoutError:
            raise Failed(f"{message.member} got no reply within {timeout:.0f} s") from None
        except (OSError, EOFError) as exc:
            raise Failed(f"{message.member} failed: {exc}") from exc
        if reply is None:
            raise Failed(f"{message.member} got no reply")
        return reply
