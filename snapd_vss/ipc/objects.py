"""The exported objects: each method unwraps its arguments, asks the service, wraps the answer."""

# dbus-fast reads the Annotated signatures at class creation,
# so this module has no `from __future__ import annotations`.

from typing import TYPE_CHECKING

from dbus_fast import Variant
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from snapd_vss import __version__
from snapd_vss.coordinator.backup_session import BackupSession
from snapd_vss.coordinator.restore_session import RestoreSession
from snapd_vss.coordinator.writers import RegisteredWriter
from snapd_vss.errors import NotFound
from snapd_vss.ipc import (
    BACKUP_SESSION_IFACE,
    MANAGER_IFACE,
    PROVIDER_IFACE,
    REGISTERED_WRITER_IFACE,
    RESTORE_SESSION_IFACE,
    SNAPSHOT_IFACE,
)
from snapd_vss.ipc.errors import dbus_method_errors, unwrap
from snapd_vss.ipc.paths import number_from, session_path, writer_path
from snapd_vss.ipc.types import (
    Bool,
    ObjPath,
    Options,
    PathList,
    StatusList,
    Str,
    StrMap,
    UInt32,
    UInt64,
    VariantMap,
)
from snapd_vss.ipc.writer_proxy import DBusWriterConnection
from snapd_vss.model import SnapshotRecord
from snapd_vss.providers.base import Provider

if TYPE_CHECKING:
    from snapd_vss.ipc.exporter import Exporter


def snapshot_properties(record: SnapshotRecord) -> dict[str, Variant]:
    return {
        "Id": Variant("s", record.id),
        "SnapshotSetId": Variant("s", record.snapshot_set_id),
        "Volume": Variant("s", record.volume),
        "Provider": Variant("s", record.provider),
        "DevicePath": Variant("s", record.device_path),
        "ExposedPath": Variant("s", record.exposed_path),
        "CreationTime": Variant("t", record.creation_time_us),
        "Persistent": Variant("b", record.persistent),
        "State": Variant("s", record.state.value),
        "StateReason": Variant("s", record.state_reason),
    }


class ManagerInterface(ServiceInterface):
    def __init__(self, exporter: "Exporter") -> None:
        super().__init__(MANAGER_IFACE)
        self.exporter = exporter
        self.service = exporter.service

    @dbus_method()
    @dbus_method_errors
    async def RegisterWriter(self, writer: ObjPath, options: Options) -> ObjPath:
        caller = await self.exporter.callers.current()
        connection = DBusWriterConnection(self.exporter.bus, caller.bus_name, writer)
        registered = await self.service.register_writer(caller, writer, connection, unwrap(options))
        return writer_path(registered.number)

    @dbus_method()
    @dbus_method_errors
    async def UnregisterWriter(self, registration: ObjPath) -> None:
        caller = await self.exporter.callers.current()
        number = number_from(registration, "writers")
        if number < 0:
            raise NotFound(f"{registration} is not a writer registration path")
        self.service.unregister_writer(caller, number)

    @dbus_method()
    @dbus_method_errors
    async def CreateBackupSession(self, options: Options) -> ObjPath:
        caller = await self.exporter.callers.current()
        session = self.service.create_backup_session(caller, unwrap(options))
        return session_path(session.number)

    @dbus_method()
    @dbus_method_errors
    async def CreateRestoreSession(self, backup_components: Str, options: Options) -> ObjPath:
        caller = await self.exporter.callers.current()
        session = self.service.create_restore_session(caller, backup_components, unwrap(options))
        return session_path(session.number)

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> Str:
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def Writers(self) -> PathList:
        return [writer_path(w.number) for w in self.service.registry.all()]

    @dbus_property(access=PropertyAccess.READ)
    def Snapshots(self) -> PathList:
        return self.exporter.snapshot_paths()

    @dbus_property(access=PropertyAccess.READ)
    def Providers(self) -> PathList:
        return self.exporter.provider_paths()

    @dbus_property(access=PropertyAccess.READ)
    def Sessions(self) -> PathList:
        return [session_path(n) for n in self.service.sessions]


class RegisteredWriterInterface(ServiceInterface):
    def __init__(self, writer: RegisteredWriter) -> None:
        super().__init__(REGISTERED_WRITER_IFACE)
        self.writer = writer

    def changed(self) -> None:
        w = self.writer
        self.emit_properties_changed(
            {
                "State": w.state.value,
                "LastError": w.last_error.value,
                "LastErrorMessage": w.last_error_message,
                "Name": w.name,
                "InstanceName": w.metadata.instance_name,
            }
        )

    @dbus_property(access=PropertyAccess.READ)
    def WriterId(self) -> Str:
        return self.writer.metadata.writer_id

    @dbus_property(access=PropertyAccess.READ)
    def InstanceId(self) -> Str:
        return self.writer.instance_id

    @dbus_property(access=PropertyAccess.READ)
    def InstanceName(self) -> Str:
        return self.writer.metadata.instance_name

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> Str:
        return self.writer.name

    @dbus_property(access=PropertyAccess.READ)
    def Usage(self) -> Str:
        return self.writer.metadata.usage.value

    @dbus_property(access=PropertyAccess.READ)
    def Source(self) -> Str:
        return self.writer.metadata.source.value

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> Str:
        return self.writer.state.value

    @dbus_property(access=PropertyAccess.READ)
    def LastError(self) -> Str:
        return self.writer.last_error.value

    @dbus_property(access=PropertyAccess.READ)
    def LastErrorMessage(self) -> Str:
        return self.writer.last_error_message

    @dbus_property(access=PropertyAccess.READ)
    def Owner(self) -> Str:
        return self.writer.owner

    @dbus_property(access=PropertyAccess.READ)
    def Uid(self) -> UInt32:
        return self.writer.uid


class BackupSessionInterface(ServiceInterface):
    def __init__(self, exporter: "Exporter", session: BackupSession) -> None:
        super().__init__(BACKUP_SESSION_IFACE)
        self.exporter = exporter
        self.session = session

    async def _mine(self) -> BackupSession:
        caller = await self.exporter.callers.current()
        self.session.check_owner(caller)
        return self.session

    def changed(self) -> None:
        s = self.session
        self.emit_properties_changed(
            {
                "State": s.state.value,
                "SnapshotSetId": s.snapshot_set_id,
                "BackupType": s.backup_type.value,
                "FreezeWindowUsec": int(s.timing.freeze_window_ms * 1000),
                "CommitWindowUsec": int(s.timing.commit_window_ms * 1000),
            }
        )

    @dbus_method()
    @dbus_method_errors
    async def SetBackupState(
        self,
        select_components: Bool,
        bootable_system_state: Bool,
        backup_type: Str,
        partial_file_support: Bool,
    ) -> None:
        session = await self._mine()
        await session.set_backup_state(
            select_components, bootable_system_state, backup_type, partial_file_support
        )

    @dbus_method()
    @dbus_method_errors
    async def GatherWriterMetadata(self) -> StrMap:
        return await (await self._mine()).gather_writer_metadata()

    @dbus_method()
    @dbus_method_errors
    async def AddComponent(self, instance_id: Str, logical_path: Str, name: Str) -> None:
        await (await self._mine()).add_component(instance_id, logical_path, name)

    @dbus_method()
    @dbus_method_errors
    async def SetBackupOptions(
        self, instance_id: Str, logical_path: Str, name: Str, options: Str
    ) -> None:
        await (await self._mine()).set_backup_options(instance_id, logical_path, name, options)

    @dbus_method()
    @dbus_method_errors
    async def SetPreviousBackupStamp(
        self, instance_id: Str, logical_path: Str, name: Str, stamp: Str
    ) -> None:
        session = await self._mine()
        await session.set_previous_backup_stamp(instance_id, logical_path, name, stamp)

    @dbus_method()
    @dbus_method_errors
    async def StartSnapshotSet(self) -> Str:
        return await (await self._mine()).start_snapshot_set()

    @dbus_method()
    @dbus_method_errors
    async def AddToSnapshotSet(self, volume: Str, provider: Str) -> Str:
        return await (await self._mine()).add_to_snapshot_set(volume, provider)

    @dbus_method()
    @dbus_method_errors
    async def PrepareForBackup(self) -> None:
        await (await self._mine()).prepare_for_backup()

    @dbus_method()
    @dbus_method_errors
    async def DoSnapshotSet(self) -> None:
        await (await self._mine()).do_snapshot_set()

    @dbus_method()
    @dbus_method_errors
    async def GatherWriterStatus(self) -> StatusList:
        return [list(row) for row in (await self._mine()).gather_writer_status()]

    @dbus_method()
    @dbus_method_errors
    async def GetSnapshotProperties(self, snapshot_id: Str) -> VariantMap:
        return snapshot_properties((await self._mine()).snapshot(snapshot_id))

    @dbus_method()
    @dbus_method_errors
    async def SetBackupSucceeded(
        self, instance_id: Str, logical_path: Str, name: Str, succeeded: Bool
    ) -> None:
        session = await self._mine()
        await session.set_backup_succeeded(instance_id, logical_path, name, succeeded)

    @dbus_method()
    @dbus_method_errors
    async def BackupComplete(self) -> None:
        await (await self._mine()).backup_complete()

    @dbus_method()
    @dbus_method_errors
    async def SaveAsXml(self) -> Str:
        return (await self._mine()).save_as_xml()

    @dbus_method()
    @dbus_method_errors
    async def AbortBackup(self) -> None:
        await (await self._mine()).abort()

    @dbus_method()
    @dbus_method_errors
    async def Close(self) -> None:
        session = await self._mine()
        await self.exporter.service.close_session(session)

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> Str:
        return self.session.state.value

    @dbus_property(access=PropertyAccess.READ)
    def SnapshotSetId(self) -> Str:
        return self.session.snapshot_set_id

    @dbus_property(access=PropertyAccess.READ)
    def BackupType(self) -> Str:
        return self.session.backup_type.value

    @dbus_property(access=PropertyAccess.READ)
    def Context(self) -> Str:
        return self.session.context.value

    @dbus_property(access=PropertyAccess.READ)
    def Owner(self) -> Str:
        return self.session.owner.bus_name

    @dbus_property(access=PropertyAccess.READ)
    def FreezeWindowUsec(self) -> UInt64:
        return int(self.session.timing.freeze_window_ms * 1000)

    @dbus_property(access=PropertyAccess.READ)
    def CommitWindowUsec(self) -> UInt64:
        return int(self.session.timing.commit_window_ms * 1000)

    @dbus_signal()
    def PhaseChanged(self, phase: str) -> Str:
        return phase


class RestoreSessionInterface(ServiceInterface):
    def __init__(self, exporter: "Exporter", session: RestoreSession) -> None:
        super().__init__(RESTORE_SESSION_IFACE)
        self.exporter = exporter
        self.session = session

    async def _mine(self) -> RestoreSession:
        caller = await self.exporter.callers.current()
        self.session.check_owner(caller)
        return self.session

    def changed(self) -> None:
        self.emit_properties_changed({"State": self.session.state.value})

    @dbus_method()
    @dbus_method_errors
    async def GatherWriterMetadata(self) -> StrMap:
        return await (await self._mine()).gather_writer_metadata()

    @dbus_method()
    @dbus_method_errors
    async def SetSelectedForRestore(
        self, instance_id: Str, logical_path: Str, name: Str, selected: Bool
    ) -> None:
        session = await self._mine()
        await session.set_selected_for_restore(instance_id, logical_path, name, selected)

    @dbus_method()
    @dbus_method_errors
    async def SetRestoreOptions(
        self, instance_id: Str, logical_path: Str, name: Str, options: Str
    ) -> None:
        await (await self._mine()).set_restore_options(instance_id, logical_path, name, options)

    @dbus_method()
    @dbus_method_errors
    async def AddAlternativeLocationMapping(
        self,
        instance_id: Str,
        logical_path: Str,
        name: Str,
        path: Str,
        filespec: Str,
        recursive: Bool,
        destination: Str,
    ) -> None:
        session = await self._mine()
        await session.add_alternative_location_mapping(
            instance_id, logical_path, name, path, filespec, recursive, destination
        )

    @dbus_method()
    @dbus_method_errors
    async def PreRestore(self) -> None:
        await (await self._mine()).pre_restore()

    @dbus_method()
    @dbus_method_errors
    async def SetFileRestoreStatus(
        self, instance_id: Str, logical_path: Str, name: Str, status: Str
    ) -> None:
        session = await self._mine()
        await session.set_file_restore_status(instance_id, logical_path, name, status)

    @dbus_method()
    @dbus_method_errors
    async def PostRestore(self) -> None:
        await (await self._mine()).post_restore()

    @dbus_method()
    @dbus_method_errors
    async def SaveAsXml(self) -> Str:
        return (await self._mine()).save_as_xml()

    @dbus_method()
    @dbus_method_errors
    async def Close(self) -> None:
        session = await self._mine()
        await self.exporter.service.close_session(session)

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> Str:
        return self.session.state.value

    @dbus_property(access=PropertyAccess.READ)
    def Owner(self) -> Str:
        return self.session.owner.bus_name

    @dbus_signal()
    def PhaseChanged(self, phase: str) -> Str:
        return phase


class SnapshotInterface(ServiceInterface):
    def __init__(self, exporter: "Exporter", record: SnapshotRecord) -> None:
        super().__init__(SNAPSHOT_IFACE)
        self.exporter = exporter
        self.record = record

    def changed(self) -> None:
        props = snapshot_properties(self.record)
        self.emit_properties_changed(
            {k: props[k].value for k in ("DevicePath", "ExposedPath", "State", "StateReason")}
        )

    @dbus_method()
    @dbus_method_errors
    async def Delete(self, options: Options) -> None:
        caller = await self.exporter.callers.current()
        await self.exporter.service.delete_snapshot(caller, self.record, unwrap(options))

    @dbus_method()
    @dbus_method_errors
    async def Expose(self, mount_point: Str, options: Options) -> Str:
        caller = await self.exporter.callers.current()
        service = self.exporter.service
        return await service.expose_snapshot(caller, self.record, mount_point, unwrap(options))

    @dbus_method()
    @dbus_method_errors
    async def Unexpose(self, options: Options) -> None:
        caller = await self.exporter.callers.current()
        await self.exporter.service.unexpose_snapshot(caller, self.record, unwrap(options))

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> Str:
        return self.record.id

    @dbus_property(access=PropertyAccess.READ)
    def SnapshotSetId(self) -> Str:
        return self.record.snapshot_set_id

    @dbus_property(access=PropertyAccess.READ)
    def Volume(self) -> Str:
        return self.record.volume

    @dbus_property(access=PropertyAccess.READ)
    def Provider(self) -> Str:
        return self.record.provider

    @dbus_property(access=PropertyAccess.READ)
    def DevicePath(self) -> Str:
        return self.record.device_path

    @dbus_property(access=PropertyAccess.READ)
    def ExposedPath(self) -> Str:
        return self.record.exposed_path

    @dbus_property(access=PropertyAccess.READ)
    def CreationTime(self) -> UInt64:
        return self.record.creation_time_us

    @dbus_property(access=PropertyAccess.READ)
    def Persistent(self) -> Bool:
        return self.record.persistent

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> Str:
        return self.record.state.value

    @dbus_property(access=PropertyAccess.READ)
    def StateReason(self) -> Str:
        return self.record.state_reason


class ProviderInterface(ServiceInterface):
    def __init__(self, provider: Provider) -> None:
        super().__init__(PROVIDER_IFACE)
        self.provider = provider

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> Str:
        return self.provider.name

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> Str:
        return self.provider.type.value

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> Str:
        return self.provider.version

    @dbus_property(access=PropertyAccess.READ)
    def Available(self) -> Bool:
        return self.provider.availability().available

    @dbus_property(access=PropertyAccess.READ)
    def UnavailableReason(self) -> Str:
        return self.provider.availability().reason
