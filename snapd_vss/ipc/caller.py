"""Who is calling: the sender of the message being handled, and its credentials."""

from __future__ import annotations

import contextvars

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from snapd_vss.coordinator.settings import Caller
from snapd_vss.errors import AccessDenied

_sender: contextvars.ContextVar[str] = contextvars.ContextVar("sender", default="")


def remember_sender(msg: Message) -> None:
    """A bus message handler: runs before dispatch, so the handler's task inherits the sender."""
    if msg.message_type is MessageType.METHOD_CALL:
        _sender.set(msg.sender or "")


def current_sender() -> str:
    return _sender.get()


class CallerResolver:
    """Looks up (and caches) the uid and groups behind a unique bus name."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self._cache: dict[str, Caller] = {}

    def forget(self, bus_name: str) -> None:
        self._cache.pop(bus_name, None)

    async def current(self) -> Caller:
        return await self.resolve(current_sender())

    async def resolve(self, bus_name: str) -> Caller:
        if not bus_name:
            raise AccessDenied("the call carries no sender; it cannot be authorized")
        cached = self._cache.get(bus_name)
        if cached is not None:
            return cached
        reply = await self.bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="GetConnectionCredentials",
                signature="s",
                body=[bus_name],
            )
        )
        if reply is None or reply.message_type is not MessageType.METHOD_RETURN:
            raise AccessDenied(f"could not learn who {bus_name} is; it may have left the bus")
        creds = reply.body[0]
        uid = int(creds["UnixUserID"].value)
        gids = tuple(int(g) for g in creds["UnixGroupIDs"].value) if "UnixGroupIDs" in creds else ()
        caller = Caller(bus_name=bus_name, uid=uid, gids=gids)
        self._cache[bus_name] = caller
        return caller
