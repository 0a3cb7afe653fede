"""Stop and start systemd units through systemd's D-Bus API (org.freedesktop.systemd1).

Used by restores with STOP_RESTORE_START / RESTORE_STOP_START. Each call queues a job
(``Manager.StopUnit``/``StartUnit`` with mode ``replace``) and returns only when
systemd's ``JobRemoved`` signal reports that job finished; a result other than
``done`` is an error naming the unit. Implements
:class:`snapd_vss.restore.engine.UnitControl`.

    async with await SystemdUnits.connect(address) as units:
        await units.stop("exampledb.service")
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any, Self

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from snapd_vss import errors

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
DBUS = "org.freedesktop.DBus"
DEFAULT_JOB_TIMEOUT_S = 120.0


class SystemdUnits:
    """One bus connection to systemd; jobs are awaited until ``JobRemoved``."""

    def __init__(self, bus: MessageBus, job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S) -> None:
        self._bus = bus
        self.job_timeout_s = job_timeout_s
        self._finished: dict[str, str] = {}  # job path → result
        self._changed = asyncio.Event()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(
        cls, address: str | None = None, job_timeout_s: float = DEFAULT_JOB_TIMEOUT_S
    ) -> Self:
        """The system bus (or ``address``), subscribed to systemd's job signals."""
        try:
            bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        except Exception as exc:
            raise errors.Failed(f"cannot connect to the bus to reach systemd: {exc}") from exc
        units = cls(bus, job_timeout_s)
        rule = (
            f"type='signal',sender='{SYSTEMD}',interface='{MANAGER}',"
            f"member='JobRemoved',path='{MANAGER_PATH}'"
        )
        await units._call(DBUS, "/org/freedesktop/DBus", DBUS, "AddMatch", "s", [rule])
        with contextlib.suppress(errors.VssError):  # only a real systemd needs it
            await units._call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe", "", [])
        return units

    async def close(self) -> None:
        self._bus.disconnect()
        with contextlib.suppress(Exception):
            await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- UnitControl --

    async def stop(self, unit: str) -> None:
        await self._job("StopUnit", unit, "stop")

    async def start(self, unit: str) -> None:
        await self._job("StartUnit", unit, "start")

    async def active_state(self, unit: str) -> str:
        """The unit's ActiveState (``active``, ``inactive``, ``failed``...)."""
        (path,) = await self._call(SYSTEMD, MANAGER_PATH, MANAGER, "GetUnit", "s", [unit])
        (value,) = await self._call(
            SYSTEMD, path, "org.freedesktop.DBus.Properties", "Get", "ss", [UNIT, "ActiveState"]
        )
        state: str = value.value
        return state

    # -- internals --

    def _on_message(self, message: Message) -> bool:
        if (
            message.message_type is MessageType.SIGNAL
            and message.interface == MANAGER
            and message.member == "JobRemoved"
            and len(message.body) == 4
        ):
            _job_id, job, _unit, result = message.body
            self._finished[job] = result
            self._changed.set()
        return False

    async def _job(self, method: str, unit: str, verb: str) -> None:
        (job,) = await self._call(SYSTEMD, MANAGER_PATH, MANAGER, method, "ss", [unit, "replace"])
        try:
            result = await asyncio.wait_for(self._wait(job), self.job_timeout_s)
        except TimeoutError:
            raise errors.Timeout(
                f"systemd did not finish the {verb} job of {unit} within "
                f"{self.job_timeout_s:.0f} s; see systemctl status {unit}"
            ) from None
        if result != "done":
            raise errors.Failed(
                f"systemd could not {verb} {unit} (job result {result!r}); "
                f"see systemctl status {unit} and journalctl -u {unit}"
            )

    async def _wait(self, job: str) -> str:
        while job not in self._finished:
            self._changed.clear()
            await self._changed.wait()
        return self._finished.pop(job)

    async def _call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str,
        body: list[Any],
    ) -> list[Any]:
        message = Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        try:
            reply = await self._bus.call(message)
        except Exception as exc:
            raise errors.Failed(f"lost the bus connection calling {member}: {exc}") from exc
        if reply is None or reply.message_type is MessageType.ERROR:
            name = reply.error_name if reply is not None else ""
            text = reply.body[0] if reply is not None and reply.body else ""
            if name in (
                "org.freedesktop.DBus.Error.ServiceUnknown",
                "org.freedesktop.DBus.Error.NameHasNoOwner",
            ):
                raise errors.Failed(
                    "systemd is not reachable on this bus (is PID 1 systemd?); "
                    "stop and start the writer's service yourself, or restore with "
                    "--to-alternate"
                )
            if name == "org.freedesktop.systemd1.NoSuchUnit":
                raise errors.NotFound(f"systemd has no unit: {text}")
            raise errors.Failed(f"systemd {member} failed: {text} ({name})")
        return list(reply.body)
