"""The daemon's bus connection survives a burst that overfills its socket's send buffer."""

# No `from __future__ import annotations`: dbus-fast reads the method annotations.

import asyncio

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusStr
from dbus_fast.service import ServiceInterface, dbus_method

from snapd_vss.ipc.bus import connect, make_patient
from snapd_vss.testing.bus import PrivateBus

PAYLOAD = "x" * 32 * 1024  # a burst of these is far beyond a unix socket's send buffer
BURST = 400


class Sink(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.snapdvss.Vss1.Writer")
        self.received = 0

    @dbus_method()
    async def OnBackupComplete(self, backup_components: DBusStr) -> None:
        self.received += 1


async def burst(sender: MessageBus, destination: str) -> list[Message | None]:
    calls = [
        sender.call(
            Message(
                destination=destination,
                path="/sink",
                interface="org.snapdvss.Vss1.Writer",
                member="OnBackupComplete",
                signature="s",
                body=[PAYLOAD],
            )
        )
        for _ in range(BURST)
    ]
    return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 120)  # type: ignore[arg-type]


async def test_patient_writer_survives_a_burst(private_bus: PrivateBus) -> None:
    receiver = await MessageBus(bus_address=private_bus.address).connect()
    sink = Sink()
    receiver.export("/sink", sink)
    sender = await connect(private_bus.address)
    try:
        replies = await burst(sender, receiver.unique_name or "")
        assert all(
            isinstance(r, Message) and r.message_type is MessageType.METHOD_RETURN for r in replies
        ), [r for r in replies if not isinstance(r, Message)][:3]
        assert sink.received == BURST
        assert sender.connected
    finally:
        sender.disconnect()
        receiver.disconnect()


async def test_make_patient_replaces_the_writer(private_bus: PrivateBus) -> None:
    bus = await MessageBus(bus_address=private_bus.address).connect()
    try:
        assert make_patient(bus)
        assert type(bus._writer).__name__ == "PatientWriter"
    finally:
        bus.disconnect()
