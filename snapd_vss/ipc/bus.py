"""Connecting to the bus, with one fix to dbus-fast's writer.

dbus-fast (5.2) writes to its non-blocking socket and treats ``EAGAIN`` as fatal: when a
burst of calls (e.g. OnPrepareBackup to a hundred writers) fills the socket's send
buffer faster than dbus-daemon drains it, the whole connection is dropped — and with it
every session. :class:`PatientWriter` treats a full buffer as "wait until writable",
which is what a non-blocking writer must do. If dbus-fast's internals ever change shape,
the fix is skipped with a warning and the bound on calls in flight remains the guard.
"""

from __future__ import annotations

import array
import logging
import socket
from typing import Any

from dbus_fast import BusType
from dbus_fast.aio import MessageBus
from dbus_fast.aio import message_bus as aio_message_bus

log = logging.getLogger(__name__)

_BaseWriter: Any = getattr(aio_message_bus, "_MessageWriter", None)


def _set_result(fut: Any) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


def _set_exception(fut: Any, exc: BaseException) -> None:
    if fut is not None and not fut.done():
        fut.set_exception(exc)


if _BaseWriter is not None:

    class PatientWriter(_BaseWriter):  # type: ignore[misc]
        """dbus-fast's message writer, waiting (not failing) when the socket is full."""

        buf: memoryview | None

        def write_callback(self, remove_writer: bool = True) -> None:
            try:
                while True:
                    if self.buf is None:
                        if not self.messages:
                            if remove_writer:
                                self.loop.remove_writer(self.fd)
                            return
                        buf, unix_fds, fut = self.messages.popleft()
                        self.unix_fds = unix_fds
                        self.buf = memoryview(buf)
                        self.offset = 0
                        self.fut = fut
                    try:
                        self.offset += self._send()
                    except (BlockingIOError, InterruptedError):
                        self.loop.add_writer(self.fd, self.write_callback)
                        return
                    if self.offset < len(self.buf):
                        return
                    self.buf = None
                    _set_result(self.fut)
            except Exception as exc:
                if self.bus._user_disconnect:
                    _set_result(self.fut)
                else:
                    _set_exception(self.fut, exc)
                self.bus._finalize(exc)

        def _send(self) -> int:
            assert self.buf is not None
            if self.unix_fds and self.negotiate_unix_fd:
                ancdata = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", self.unix_fds))]
                sent: int = self.sock.sendmsg([self.buf[self.offset :]], ancdata)
                self.unix_fds = None
                return sent
            sent = self.sock.send(self.buf[self.offset :])
            return sent


def make_patient(bus: MessageBus) -> bool:
    """Swap the connected bus's writer for :class:`PatientWriter`; False if not possible."""
    old = getattr(bus, "_writer", None)
    needed = ("messages", "buf", "offset", "fut", "unix_fds")
    if _BaseWriter is None or old is None or not all(hasattr(old, a) for a in needed):
        log.warning("dbus-fast internals changed; a full socket buffer may drop the connection")
        return False
    writer = PatientWriter(bus)
    for attribute in needed:
        setattr(writer, attribute, getattr(old, attribute))
    bus._writer = writer
    return True


async def connect(address: str | None) -> MessageBus:
    """The system bus, or the bus at ``address``, with the patient writer."""
    if address:
        bus = await MessageBus(bus_address=address).connect()
    else:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    make_patient(bus)
    return bus
