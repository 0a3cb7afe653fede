"""Keeps the bus's objects in step with the service (the coordinator's Listener)."""

from __future__ import annotations

import importlib

from dbus_fast import Message
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from snapd_vss import ROOT_PATH
from snapd_vss.coordinator.backup_session import BackupSession
from snapd_vss.coordinator.restore_session import RestoreSession
from snapd_vss.coordinator.service import Service
from snapd_vss.coordinator.session_base import SessionCore
from snapd_vss.coordinator.writers import RegisteredWriter
from snapd_vss.ipc.caller import CallerResolver
from snapd_vss.ipc.objects import (
    BackupSessionInterface,
    ManagerInterface,
    ProviderInterface,
    RegisteredWriterInterface,
    RestoreSessionInterface,
    SnapshotInterface,
)
from snapd_vss.ipc.paths import provider_path, session_path, snapshot_path, writer_path
from snapd_vss.model import SnapshotRecord
from snapd_vss.providers.base import Provider


def provider_interfaces(provider: Provider, exporter: Exporter) -> list[ServiceInterface]:
    """A provider's own management interfaces (e.g. ``org.snapdvss.Vss1.DiffArea``).

    They live in ``snapd_vss/ipc/provider_<name>.py``, which defines
    ``interfaces(provider, exporter) -> list[ServiceInterface]``; no such module, none.
    """
    try:
        module = importlib.import_module(f"snapd_vss.ipc.provider_{provider.name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"snapd_vss.ipc.provider_{provider.name}":
            return []
        raise
    made: list[ServiceInterface] = module.interfaces(provider, exporter)
    return made


class Exporter:
    def __init__(self, bus: MessageBus, service: Service) -> None:
        self.bus = bus
        self.service = service
        self.callers = CallerResolver(bus)
        self.manager = ManagerInterface(self)
        self._writers: dict[int, RegisteredWriterInterface] = {}
        self._sessions: dict[int, BackupSessionInterface | RestoreSessionInterface] = {}
        self._snapshots: dict[str, SnapshotInterface] = {}
        self._providers: dict[str, ProviderInterface] = {}

    def export_all(self) -> None:
        self.bus.export(ROOT_PATH, self.manager)
        for provider in self.service.providers.all():
            iface = ProviderInterface(provider)
            self._providers[provider.name] = iface
            self.bus.export(provider_path(provider.name), iface)
            for extra in provider_interfaces(provider, self):
                self.bus.export(provider_path(provider.name), extra)
        for record in self.service.snapshots.all():
            self.snapshot_added(record)

    def snapshot_paths(self) -> list[str]:
        return [snapshot_path(i) for i in self._snapshots]

    def provider_paths(self) -> list[str]:
        return [provider_path(n) for n in self._providers]

    def _manager_changed(self, prop: str) -> None:
        values = {
            "Writers": lambda: [writer_path(w.number) for w in self.service.registry.all()],
            "Sessions": lambda: [session_path(n) for n in self.service.sessions],
            "Snapshots": self.snapshot_paths,
        }
        self.manager.emit_properties_changed({prop: values[prop]()})

    def _unexport(self, path: str, iface: ServiceInterface) -> None:
        self.bus.unexport(path, iface)

    # -- Listener ------------------------------------------------------------------------

    def writer_added(self, writer: RegisteredWriter) -> None:
        iface = RegisteredWriterInterface(writer)
        self._writers[writer.number] = iface
        self.bus.export(writer_path(writer.number), iface)
        self._manager_changed("Writers")

    def writer_changed(self, writer: RegisteredWriter) -> None:
        iface = self._writers.get(writer.number)
        if iface is not None:
            iface.changed()

    def writer_removed(self, writer: RegisteredWriter) -> None:
        iface = self._writers.pop(writer.number, None)
        if iface is not None:
            self._unexport(writer_path(writer.number), iface)
            self._manager_changed("Writers")

    def session_added(self, session: SessionCore) -> None:
        iface: BackupSessionInterface | RestoreSessionInterface
        if isinstance(session, RestoreSession):
            iface = RestoreSessionInterface(self, session)
        else:
            assert isinstance(session, BackupSession)
            iface = BackupSessionInterface(self, session)
        self._sessions[session.number] = iface
        self.bus.export(session_path(session.number), iface)
        self._manager_changed("Sessions")

    def session_changed(self, session: SessionCore) -> None:
        iface = self._sessions.get(session.number)
        if iface is not None:
            iface.changed()
            iface.PhaseChanged(session.state.value)

    def session_removed(self, session: SessionCore) -> None:
        iface = self._sessions.pop(session.number, None)
        if iface is not None:
            self._unexport(session_path(session.number), iface)
            self._manager_changed("Sessions")

    def snapshot_added(self, record: SnapshotRecord) -> None:
        if record.id in self._snapshots:
            return
        iface = SnapshotInterface(self, record)
        self._snapshots[record.id] = iface
        self.bus.export(snapshot_path(record.id), iface)
        self._manager_changed("Snapshots")

    def snapshot_changed(self, record: SnapshotRecord) -> None:
        iface = self._snapshots.get(record.id)
        if iface is not None:
            iface.changed()

    def snapshot_removed(self, record: SnapshotRecord) -> None:
        iface = self._snapshots.pop(record.id, None)
        if iface is not None:
            self._unexport(snapshot_path(record.id), iface)
            self._manager_changed("Snapshots")

    # -- bus events ----------------------------------------------------------------------

    def name_owner_changed(self, msg: Message) -> str:
        """The unique name that left the bus, or ``""``."""
        if (
            msg.member == "NameOwnerChanged"
            and msg.interface == "org.freedesktop.DBus"
            and len(msg.body) == 3
        ):
            name, old, new = msg.body
            if name.startswith(":") and old and not new:
                self.callers.forget(name)
                return str(name)
        return ""
