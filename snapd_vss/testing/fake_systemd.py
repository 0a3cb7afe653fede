"""A stand-in for systemd's D-Bus API on a private bus (systemd is not PID 1 here).

It owns ``org.freedesktop.systemd1`` and speaks the same protocol as the real one, for
the parts a restore uses:

- ``Manager.StartUnit(s name, s mode) -> o job`` and ``StopUnit(s, s) -> o job``: reply
  with the job path at once, run the job, then emit
  ``JobRemoved(u id, o job, s unit, s result)`` (``done`` or ``failed``);
- ``Manager.GetUnit(s name) -> o unit`` (``org.freedesktop.systemd1.NoSuchUnit`` if
  unknown), ``Manager.Subscribe()``;
- unit objects ``/org/freedesktop/systemd1/unit/<escaped name>`` with
  ``org.freedesktop.systemd1.Unit`` properties ``Id`` and ``ActiveState``.

A unit is a real process: starting runs its command, stopping sends SIGTERM (SIGKILL
after 10 s) and waits. ``history`` records every job as ``("stop"|"start", unit)``.

    async with FakeSystemd(bus_address, {"ledger.service": ["python", "-m", ...]}) as fake:
        ...
"""

# No ``from __future__ import annotations``: dbus-fast reads signatures from annotations.
import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Annotated, Any

from dbus_fast import BusType, DBusError, PropertyAccess
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusObjectPath, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
UNIT_PREFIX = "/org/freedesktop/systemd1/unit/"
JOB_PREFIX = "/org/freedesktop/systemd1/job/"

#: What PrivateBus(extra_policy=...) needs so that root may own and call the name.
POLICY = """\
  <policy user="root">
    <allow own="org.freedesktop.systemd1"/>
    <allow send_destination="org.freedesktop.systemd1"/>
  </policy>
"""


JobRemovedArgs = Annotated[list[Any], DBusSignature("uoss")]


def unit_path(name: str) -> str:
    """systemd's object path escaping: every byte outside [A-Za-z0-9] becomes ``_xx``."""
    escaped = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return UNIT_PREFIX + escaped


class FakeUnit(ServiceInterface):
    """One unit: a command run as a child process while the unit is active."""

    def __init__(self, name: str, command: Sequence[str]) -> None:
        super().__init__("org.freedesktop.systemd1.Unit")
        self.unit_name = name
        self.command = list(command)
        self.state = "inactive"
        self.process: asyncio.subprocess.Process | None = None

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> DBusStr:
        return self.unit_name

    @dbus_property(access=PropertyAccess.READ)
    def ActiveState(self) -> DBusStr:
        return self.state

    def _set_state(self, state: str) -> None:
        self.state = state
        self.emit_properties_changed({"ActiveState": state})

    async def start(self) -> str:
        if self.process is not None and self.process.returncode is None:
            return "done"
        self._set_state("activating")
        try:
            self.process = await asyncio.create_subprocess_exec(*self.command)
        except OSError:
            self._set_state("failed")
            return "failed"
        self._set_state("active")
        return "done"

    async def stop(self) -> str:
        process = self.process
        if process is not None and process.returncode is None:
            self._set_state("deactivating")
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self.process = None
        self._set_state("inactive")
        return "done"


class FakeManager(ServiceInterface):
    def __init__(self, owner: "FakeSystemd") -> None:
        super().__init__("org.freedesktop.systemd1.Manager")
        self.owner = owner

    @method()
    def Subscribe(self) -> None:
        return None

    @method()
    def GetUnit(self, name: DBusStr) -> DBusObjectPath:
        self.owner.unit(name)
        return unit_path(name)

    @method()
    def StartUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self.owner.queue("start", name, mode)

    @method()
    def StopUnit(self, name: DBusStr, mode: DBusStr) -> DBusObjectPath:
        return self.owner.queue("stop", name, mode)

    @signal()
    def JobRemoved(
        self, job_id: DBusUInt32, job: DBusObjectPath, unit: DBusStr, result: DBusStr
    ) -> JobRemovedArgs:
        return [job_id, job, unit, result]


class FakeSystemd:
    """The stand-in; a context manager that connects, exports and owns the name."""

    def __init__(self, address: str, units: Mapping[str, Sequence[str]]) -> None:
        self.address = address
        self.units = {name: FakeUnit(name, cmd) for name, cmd in units.items()}
        self.manager = FakeManager(self)
        self.history: list[tuple[str, str]] = []
        self._next_job = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._bus: MessageBus | None = None

    async def start(self) -> "FakeSystemd":
        bus = await MessageBus(bus_address=self.address, bus_type=BusType.SYSTEM).connect()
        bus.export(MANAGER_PATH, self.manager)
        for name, unit in self.units.items():
            bus.export(unit_path(name), unit)
        await bus.request_name(BUS_NAME)
        self._bus = bus
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for unit in self.units.values():
            with contextlib.suppress(Exception):
                await unit.stop()
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    async def __aenter__(self) -> "FakeSystemd":
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def unit(self, name: str) -> FakeUnit:
        unit = self.units.get(name)
        if unit is None:
            raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        return unit

    def queue(self, verb: str, name: str, mode: str) -> str:
        unit = self.unit(name)
        if mode not in ("replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements"):
            raise DBusError("org.freedesktop.DBus.Error.InvalidArgs", f"Unknown job mode {mode}")
        job_id = self._next_job
        self._next_job += 1
        job = f"{JOB_PREFIX}{job_id}"
        task = asyncio.get_running_loop().create_task(self._run(verb, unit, job_id, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, verb: str, unit: FakeUnit, job_id: int, job: str) -> None:
        await asyncio.sleep(0)  # the reply goes out before the job ends, as with systemd
        self.history.append((verb, unit.unit_name))
        result = await (unit.start() if verb == "start" else unit.stop())
        self.manager.JobRemoved(job_id, job, unit.unit_name, result)

    def state(self, name: str) -> str:
        return self.unit(name).state

    def process(self, name: str) -> Any:
        return self.unit(name).process
