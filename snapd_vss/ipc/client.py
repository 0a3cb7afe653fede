"""A small typed async client for snapd-vssd, over dbus-fast.

Proxies are built from the interface XML shipped in :mod:`snapd_vss.ipc.interfaces`
(no live introspection): each call takes its signature from there. Every D-Bus error
comes back as the domain error of :mod:`snapd_vss.errors` (``org.snapdvss.Vss1.Error.X``
→ ``from_code(X, message)``; the bus's own errors are mapped to the nearest one), and
every Variant is unwrapped, so callers (``vssctl``, the demo, tests) never see dbus_fast.

    async with await VssClient.connect() as client:       # system bus or --bus address
        session = await client.manager.create_backup_session(context="BACKUP")
        metadata = await session.gather_writer_metadata()
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from snapd_vss import errors
from snapd_vss.errors import ERROR_PREFIX, VssError
from snapd_vss.ipc.interfaces import full_name, load_interface

BUS_NAME = "org.snapdvss.Vss1"
ROOT_PATH = "/org/snapdvss/Vss1"
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"

#: Calls in flight at once when the client fans out (a burst kills the connection).
MAX_IN_FLIGHT = 16

OptionValue = str | bool | int

_T = TypeVar("_T")

# The bus's own errors, as the nearest domain error.
_BUS_ERRORS: dict[str, type[VssError]] = {
    "org.freedesktop.DBus.Error.AccessDenied": errors.AccessDenied,
    "org.freedesktop.DBus.Error.AuthFailed": errors.AccessDenied,
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": errors.AccessDenied,
    "org.freedesktop.DBus.Error.InvalidArgs": errors.InvalidArgs,
    "org.freedesktop.DBus.Error.InvalidSignature": errors.InvalidArgs,
    "org.freedesktop.DBus.Error.UnknownObject": errors.NotFound,
    "org.freedesktop.DBus.Error.UnknownMethod": errors.NotFound,
    "org.freedesktop.DBus.Error.UnknownInterface": errors.NotFound,
    "org.freedesktop.DBus.Error.UnknownProperty": errors.NotFound,
    "org.freedesktop.DBus.Error.NoReply": errors.Timeout,
    "org.freedesktop.DBus.Error.Timeout": errors.Timeout,
    "org.freedesktop.DBus.Error.TimedOut": errors.Timeout,
}
_NO_SUCH_OBJECT = (
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",
    "org.freedesktop.DBus.Error.UnknownInterface",
)
_NOT_RUNNING = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
)


def error_from_reply(error_name: str, message: str, missing: str = "") -> VssError:
    """The domain error for a D-Bus error reply.

    ``missing`` is the message for "no such object" (the object path names something
    that does not exist, e.g. a deleted snapshot).
    """
    if missing and error_name in _NO_SUCH_OBJECT:
        return errors.NotFound(missing)
    if error_name.startswith(ERROR_PREFIX):
        return errors.from_code(error_name.removeprefix(ERROR_PREFIX), message)
    if error_name in _NOT_RUNNING:
        return errors.Failed(
            f"the snapshot service ({BUS_NAME}) is not running on this bus; start snapd-vssd, "
            "or point --bus / DBUS_SYSTEM_BUS_ADDRESS at the bus it runs on"
        )
    cls = _BUS_ERRORS.get(error_name, errors.Failed)
    return cls(f"{message} ({error_name})" if message else error_name)


def unwrap(value: Any) -> Any:
    """Replace every Variant inside ``value`` by its value (recursively)."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def variant(value: OptionValue) -> Variant:
    """An option value as a Variant: str → s, bool → b, int → x."""
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    return Variant("s", value)


def options(values: Mapping[str, OptionValue] | None = None) -> dict[str, Variant]:
    """An ``a{sv}`` options argument from plain values."""
    return {key: variant(value) for key, value in (values or {}).items()}


def snapshot_path(snapshot_id: str) -> str:
    """The object path of a snapshot, from its id (or an object path, returned as is)."""
    if snapshot_id.startswith("/"):
        return snapshot_id
    return f"{ROOT_PATH}/snapshots/{snapshot_id.replace('-', '_')}"


def provider_path(name: str) -> str:
    return name if name.startswith("/") else f"{ROOT_PATH}/providers/{name}"


async def gather_bounded(aws: Iterable[Awaitable[_T]], limit: int = MAX_IN_FLIGHT) -> list[_T]:
    """Like ``asyncio.gather`` with at most ``limit`` awaitables running at once."""
    semaphore = asyncio.Semaphore(limit)

    async def one(aw: Awaitable[_T]) -> _T:
        async with semaphore:
            return await aw

    return list(await asyncio.gather(*(one(aw) for aw in aws)))


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@dataclass(frozen=True)
class WriterInfo:
    path: str
    writer_id: str
    instance_id: str
    instance_name: str
    name: str
    usage: str
    source: str
    state: str
    last_error: str
    last_error_message: str
    owner: str
    uid: int


@dataclass(frozen=True)
class SnapshotInfo:
    path: str
    id: str
    snapshot_set_id: str
    volume: str
    provider: str
    device_path: str
    exposed_path: str
    creation_time: int  # µs since the epoch
    persistent: bool
    state: str
    state_reason: str


@dataclass(frozen=True)
class ProviderInfo:
    path: str
    name: str
    type: str
    version: str
    available: bool
    unavailable_reason: str


_Info = TypeVar("_Info", WriterInfo, SnapshotInfo, ProviderInfo)

_DEFAULTS: dict[str, Any] = {"s": "", "b": False, "u": 0, "t": 0, "x": 0, "ao": []}


def _info(cls: type[_Info], interface: str, path: str, props: Mapping[str, Any]) -> _Info:
    """A record from a property dict; a property the service lacks gets its type's zero."""
    values: dict[str, Any] = {"path": path}
    for prop in load_interface(interface).properties:
        default = _DEFAULTS.get(prop.signature)
        values[_snake(prop.name)] = props.get(prop.name, default)
    return cls(**values)


class VssClient:
    """One connection to the bus, and the calls snapd-vssd answers on it.

    Sessions belong to the connection that created them: keep one client for a
    whole session.
    """

    def __init__(self, bus: MessageBus, destination: str = BUS_NAME) -> None:
        self._bus = bus
        self.destination = destination
        self.manager = ManagerProxy(self)

    @classmethod
    async def connect(cls, address: str | None = None) -> Self:
        """Connect to ``address``, else ``DBUS_SYSTEM_BUS_ADDRESS``, else the system bus."""
        where = (
            address
            or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
            or "the system bus (/run/dbus/system_bus_socket)"
        )
        try:
            bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
        except Exception as exc:  # dbus-fast raises OSError, AuthError, ValueError...
            raise errors.Failed(
                f"cannot connect to {where}: {exc or type(exc).__name__}; "
                "is the bus running? Point --bus or DBUS_SYSTEM_BUS_ADDRESS at it"
            ) from exc
        return cls(bus)

    @property
    def unique_name(self) -> str:
        return self._bus.unique_name or ""

    async def close(self) -> None:
        self._bus.disconnect()
        with contextlib.suppress(Exception):  # a connection that died already
            await self._bus.wait_for_disconnect()  # type: ignore[no-untyped-call]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the one place that talks to the bus --

    async def _send(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str,
        body: list[Any],
        missing: str = "",
    ) -> list[Any]:
        message = Message(
            destination=self.destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        try:
            reply = await self._bus.call(message)
        except VssError:
            raise
        except Exception as exc:
            raise errors.Failed(
                f"lost the connection to the bus during {member}: {exc or type(exc).__name__}"
            ) from exc
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise error_from_reply(reply.error_name or "", text, missing)
        return [unwrap(v) for v in reply.body]

    async def call(
        self, path: str, interface: str, member: str, *args: Any, missing: str = ""
    ) -> Any:
        """Call ``interface.member`` (short or full interface name) on ``path``.

        The signature comes from the interface XML. Returns None, the one out
        value, or a tuple of them. ``missing``: the NotFound message when ``path``
        does not exist.
        """
        iface = load_interface(interface)
        method = next((m for m in iface.methods if m.name == member), None)
        if method is None:
            raise errors.InvalidArgs(f"{iface.name} has no method {member}")
        if len(args) != len(method.in_args):
            raise errors.InvalidArgs(
                f"{iface.name}.{member} takes {len(method.in_args)} arguments, not {len(args)}"
            )
        out = await self._send(path, iface.name, member, method.in_signature, list(args), missing)
        if not out:
            return None
        return out[0] if len(out) == 1 else tuple(out)

    async def get_all(self, path: str, interface: str, missing: str = "") -> dict[str, Any]:
        body = await self._send(path, PROPERTIES, "GetAll", "s", [full_name(interface)], missing)
        props: dict[str, Any] = body[0]
        return props

    async def get(self, path: str, interface: str, name: str, missing: str = "") -> Any:
        body = await self._send(
            path, PROPERTIES, "Get", "ss", [full_name(interface), name], missing
        )
        return body[0]

    async def managed_objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every object under the root with its interfaces' properties (ObjectManager)."""
        body = await self._send(ROOT_PATH, OBJECT_MANAGER, "GetManagedObjects", "", [])
        objects: dict[str, dict[str, dict[str, Any]]] = body[0]
        return objects

    async def _objects_with(
        self, interface: str, manager_property: str
    ) -> dict[str, dict[str, Any]]:
        """path → properties of every object with ``interface``.

        Uses the ObjectManager (one call); falls back to the Manager's list property and
        one GetAll per object (bounded) when the service has no ObjectManager.
        """
        name = full_name(interface)
        try:
            objects = await self.managed_objects()
        except errors.NotFound:
            paths: list[str] = await self.get(ROOT_PATH, "Manager", manager_property)
            props = await gather_bounded(self.get_all(p, name) for p in paths)
            return dict(zip(paths, props, strict=True))
        return {path: ifaces[name] for path, ifaces in objects.items() if name in ifaces}

    # -- listings --

    async def writers(self) -> list[WriterInfo]:
        objects = await self._objects_with("RegisteredWriter", "Writers")
        infos = [_info(WriterInfo, "RegisteredWriter", p, v) for p, v in objects.items()]
        return sorted(infos, key=lambda w: (w.name, w.instance_name, w.path))

    async def snapshots(self) -> list[SnapshotInfo]:
        objects = await self._objects_with("Snapshot", "Snapshots")
        infos = [_info(SnapshotInfo, "Snapshot", p, v) for p, v in objects.items()]
        return sorted(infos, key=lambda s: (s.creation_time, s.id))

    async def providers(self) -> list[ProviderInfo]:
        objects = await self._objects_with("Provider", "Providers")
        infos = [_info(ProviderInfo, "Provider", p, v) for p, v in objects.items()]
        return sorted(infos, key=lambda p: p.name)

    # -- proxies --

    def backup_session(self, path: str) -> BackupSessionProxy:
        return BackupSessionProxy(self, path)

    def restore_session(self, path: str) -> RestoreSessionProxy:
        return RestoreSessionProxy(self, path)

    def snapshot(self, snapshot_id_or_path: str) -> SnapshotProxy:
        return SnapshotProxy(self, snapshot_path(snapshot_id_or_path))

    def provider(self, name_or_path: str) -> ProviderProxy:
        return ProviderProxy(self, provider_path(name_or_path))

    def registered_writer(self, path: str) -> RegisteredWriterProxy:
        return RegisteredWriterProxy(self, path)


class _Proxy:
    interface = ""

    def __init__(self, client: VssClient, path: str) -> None:
        self.client = client
        self.path = path

    @property
    def missing(self) -> str:
        """The NotFound message when this object does not exist."""
        return f"there is no {self.interface} object {self.path}"

    async def _call(self, member: str, *args: Any) -> Any:
        return await self.client.call(
            self.path, self.interface, member, *args, missing=self.missing
        )

    async def properties(self) -> dict[str, Any]:
        return await self.client.get_all(self.path, self.interface, self.missing)

    async def get(self, name: str) -> Any:
        return await self.client.get(self.path, self.interface, name, self.missing)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class ManagerProxy(_Proxy):
    interface = "Manager"

    def __init__(self, client: VssClient) -> None:
        super().__init__(client, ROOT_PATH)

    async def register_writer(
        self, writer_path: str, opts: Mapping[str, OptionValue] | None = None
    ) -> str:
        path: str = await self._call("RegisterWriter", writer_path, options(opts))
        return path

    async def unregister_writer(self, registration: str) -> None:
        await self._call("UnregisterWriter", registration)

    async def create_backup_session(
        self, context: str | None = None, opts: Mapping[str, OptionValue] | None = None
    ) -> BackupSessionProxy:
        values = dict(opts or {})
        if context is not None:
            values["context"] = context
        path: str = await self._call("CreateBackupSession", options(values))
        return BackupSessionProxy(self.client, path)

    async def create_restore_session(
        self, backup_components: str, opts: Mapping[str, OptionValue] | None = None
    ) -> RestoreSessionProxy:
        path: str = await self._call("CreateRestoreSession", backup_components, options(opts))
        return RestoreSessionProxy(self.client, path)

    async def version(self) -> str:
        value: str = await self.get("Version")
        return value


class BackupSessionProxy(_Proxy):
    interface = "BackupSession"

    async def set_backup_state(
        self,
        select_components: bool = True,
        bootable_system_state: bool = False,
        backup_type: str = "FULL",
        partial_file_support: bool = False,
    ) -> None:
        await self._call(
            "SetBackupState",
            select_components,
            bootable_system_state,
            backup_type,
            partial_file_support,
        )

    async def gather_writer_metadata(self) -> dict[str, str]:
        result: dict[str, str] = await self._call("GatherWriterMetadata")
        return result

    async def add_component(self, instance_id: str, logical_path: str, name: str) -> None:
        await self._call("AddComponent", instance_id, logical_path, name)

    async def set_backup_options(
        self, instance_id: str, logical_path: str, name: str, opts: str
    ) -> None:
        await self._call("SetBackupOptions", instance_id, logical_path, name, opts)

    async def set_previous_backup_stamp(
        self, instance_id: str, logical_path: str, name: str, stamp: str
    ) -> None:
        await self._call("SetPreviousBackupStamp", instance_id, logical_path, name, stamp)

    async def start_snapshot_set(self) -> str:
        set_id: str = await self._call("StartSnapshotSet")
        return set_id

    async def add_to_snapshot_set(self, volume: str, provider: str = "") -> str:
        snapshot_id: str = await self._call("AddToSnapshotSet", volume, provider)
        return snapshot_id

    async def prepare_for_backup(self) -> None:
        await self._call("PrepareForBackup")

    async def do_snapshot_set(self) -> None:
        await self._call("DoSnapshotSet")

    async def gather_writer_status(self) -> list[tuple[str, str, str, str, str]]:
        rows: list[list[str]] = await self._call("GatherWriterStatus")
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def get_snapshot_properties(self, snapshot_id: str) -> dict[str, Any]:
        props: dict[str, Any] = await self._call("GetSnapshotProperties", snapshot_id)
        return props

    async def set_backup_succeeded(
        self, instance_id: str, logical_path: str, name: str, succeeded: bool
    ) -> None:
        await self._call("SetBackupSucceeded", instance_id, logical_path, name, succeeded)

    async def backup_complete(self) -> None:
        await self._call("BackupComplete")

    async def save_as_xml(self) -> str:
        xml: str = await self._call("SaveAsXml")
        return xml

    async def abort_backup(self) -> None:
        await self._call("AbortBackup")

    async def close(self) -> None:
        await self._call("Close")


class RestoreSessionProxy(_Proxy):
    interface = "RestoreSession"

    async def gather_writer_metadata(self) -> dict[str, str]:
        result: dict[str, str] = await self._call("GatherWriterMetadata")
        return result

    async def set_selected_for_restore(
        self, instance_id: str, logical_path: str, name: str, selected: bool
    ) -> None:
        await self._call("SetSelectedForRestore", instance_id, logical_path, name, selected)

    async def set_restore_options(
        self, instance_id: str, logical_path: str, name: str, opts: str
    ) -> None:
        await self._call("SetRestoreOptions", instance_id, logical_path, name, opts)

    async def add_alternative_location_mapping(
        self,
        instance_id: str,
        logical_path: str,
        name: str,
        path: str,
        filespec: str,
        recursive: bool,
        destination: str,
    ) -> None:
        await self._call(
            "AddAlternativeLocationMapping",
            instance_id,
            logical_path,
            name,
            path,
            filespec,
            recursive,
            destination,
        )

    async def pre_restore(self) -> None:
        await self._call("PreRestore")

    async def set_file_restore_status(
        self, instance_id: str, logical_path: str, name: str, status: str
    ) -> None:
        await self._call("SetFileRestoreStatus", instance_id, logical_path, name, status)

    async def post_restore(self) -> None:
        await self._call("PostRestore")

    async def save_as_xml(self) -> str:
        xml: str = await self._call("SaveAsXml")
        return xml

    async def close(self) -> None:
        await self._call("Close")


class SnapshotProxy(_Proxy):
    interface = "Snapshot"

    @property
    def missing(self) -> str:
        name = self.path.rsplit("/", 1)[-1].replace("_", "-")
        return f"there is no snapshot {name}; see vssctl list snapshots for the ids"

    async def delete(self) -> None:
        await self._call("Delete", options())

    async def expose(self, mount_point: str = "") -> str:
        path: str = await self._call("Expose", mount_point, options())
        return path

    async def unexpose(self) -> None:
        await self._call("Unexpose", options())

    async def info(self) -> SnapshotInfo:
        return _info(SnapshotInfo, "Snapshot", self.path, await self.properties())


class ProviderProxy(_Proxy):
    interface = "Provider"

    async def info(self) -> ProviderInfo:
        return _info(ProviderInfo, "Provider", self.path, await self.properties())


class RegisteredWriterProxy(_Proxy):
    interface = "RegisteredWriter"

    async def info(self) -> WriterInfo:
        return _info(WriterInfo, "RegisteredWriter", self.path, await self.properties())
