"""org.snapdvss.Vss1.DiffArea on /org/snapdvss/Vss1/providers/diff_area.

Loaded by :func:`snapd_vss.ipc.exporter.provider_interfaces` for the ``diff_area``
provider. It translates calls into :class:`DiffAreaProvider`'s admin API (attach, detach,
resize, list) and the provider's "snapshot dropped" events into the ``SnapshotDropped``
signal. See dbus/org.snapdvss.Vss1.DiffArea.xml for the contract.
"""

# dbus-fast reads the Annotated signatures at class creation,
# so this module has no `from __future__ import annotations`.

import logging
import os
from typing import TYPE_CHECKING, Annotated

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from snapd_vss.coordinator.options import check_options
from snapd_vss.coordinator.settings import Caller
from snapd_vss.errors import AccessDenied, InvalidArgs, NotFound, ProviderFailure
from snapd_vss.ipc import IFACE_PREFIX
from snapd_vss.ipc.errors import dbus_method_errors, unwrap
from snapd_vss.ipc.types import Options, Str, StrList, UInt32, UInt64
from snapd_vss.providers.base import Provider
from snapd_vss.providers.diff_area.config import (
    CONFIG_FILE,
    DEFAULT_CHUNK_SIZE,
    FullPolicy,
    check_chunk_size,
)
from snapd_vss.providers.diff_area.provider import AttachedVolume, DiffAreaProvider

if TYPE_CHECKING:
    from snapd_vss.ipc.exporter import Exporter

log = logging.getLogger(__name__)

DIFF_AREA_IFACE = f"{IFACE_PREFIX}.DiffArea"
DEFAULT_POLICY = FullPolicy.DROP_OLDEST_SNAPSHOT
#: Without max_bytes, the diff area may hold a tenth of the image, and at least this
#: many chunks.
DEFAULT_MIN_CHUNKS = 16

VolumeList = Annotated[list[dict[str, Variant]], DBusSignature("aa{sv}")]
TwoStrings = Annotated[list[str], DBusSignature("ss")]


def interfaces(provider: Provider, exporter: "Exporter") -> list[ServiceInterface]:
    """The exporter's hook: the interfaces to export beside org.snapdvss.Vss1.Provider."""
    if not isinstance(provider, DiffAreaProvider):
        raise TypeError(f"provider_diff_area serves DiffAreaProvider, not {type(provider)}")
    iface = DiffAreaInterface(provider, exporter)
    provider.listeners.append(iface.snapshot_dropped)
    return [iface]


def volume_properties(volume: AttachedVolume) -> dict[str, Variant]:
    """One entry of ListVolumes."""
    return {
        "Name": Variant("s", volume.name),
        "Image": Variant("s", volume.image),
        "DiffAreaDir": Variant("s", volume.diff_area_dir),
        "LoopDevice": Variant("s", volume.loop_device),
        "DeviceFile": Variant("s", volume.device_file),
        "Size": Variant("t", volume.size),
        "MaxBytes": Variant("t", volume.max_bytes),
        "UsedBytes": Variant("t", volume.used_bytes),
        "Policy": Variant("s", volume.policy.value),
        "ChunkSize": Variant("u", volume.chunk_size),
    }


def attached_names(provider: DiffAreaProvider) -> list[str]:
    """The attached volumes' names, from the provider's state directory (no I/O to servers)."""
    try:
        entries = os.listdir(provider.volumes_dir)
    except FileNotFoundError:
        return []
    return sorted(
        n for n in entries if os.path.exists(os.path.join(provider.volumes_dir, n, CONFIG_FILE))
    )


def require_root(caller: Caller, what: str) -> None:
    """Attaching serves a file as a writable block device: that is root's business only."""
    if caller.uid != 0:
        raise AccessDenied(f"{what} is only allowed for root; uid {caller.uid} is not root")


def require_absolute(path: str, what: str) -> str:
    if not os.path.isabs(path):
        raise InvalidArgs(f"{what} {path!r} must be an absolute path")
    return os.path.normpath(path)


def parse_policy(value: str) -> FullPolicy:
    try:
        return FullPolicy(value)
    except ValueError:
        allowed = " or ".join(p.value for p in FullPolicy)
        raise InvalidArgs(f"AttachVolume: policy {value!r} is not known; use {allowed}") from None


def default_max_bytes(image: str, chunk_size: int) -> int:
    try:
        size = os.path.getsize(image)
    except OSError:
        size = 0  # the provider says what is wrong with the image
    return max(size // 10 // chunk_size * chunk_size, DEFAULT_MIN_CHUNKS * chunk_size)


class DiffAreaInterface(ServiceInterface):
    def __init__(self, provider: DiffAreaProvider, exporter: "Exporter") -> None:
        super().__init__(DIFF_AREA_IFACE)
        self.provider = provider
        self.exporter = exporter
        self.service = exporter.service
        self._names = attached_names(provider)

    # -- helpers --

    def _volumes_changed(self) -> None:
        names = attached_names(self.provider)
        if names != self._names:
            self._names = names
            self.emit_properties_changed({"Volumes": names})

    async def _resolve(self, key: str) -> AttachedVolume:
        """The attached volume named by its name, image path or loop device."""
        real = os.path.realpath(key) if os.path.isabs(key) else key
        volumes = await self.provider.list_attached()
        for volume in volumes:
            if key == volume.name or real in (volume.image, volume.loop_device, volume.device_file):
                return volume
        known = ", ".join(f"{v.name} ({v.image})" for v in volumes) or "none"
        raise NotFound(
            f"no attached diff-area volume {key!r}; give a name, image or loop device "
            f"from ListVolumes (attached: {known})"
        )

    def snapshot_dropped(self, snapshot_id: str, reason: str) -> None:
        """The provider's listener (the service has already marked it INVALID): announce it."""
        log.warning(
            "diff area dropped snapshot %s: %s",
            snapshot_id,
            reason,
            extra={"SNAPSHOT_ID": snapshot_id},
        )
        self.SnapshotDropped(snapshot_id, reason)

    async def _delete_snapshots_of(self, caller: Caller, volume: AttachedVolume) -> None:
        for record in self.service.snapshots.all():
            if record.provider == self.provider.name and (
                record.provider_data.get("volume") == volume.name
            ):
                await self.service.delete_snapshot(caller, record, {})

    # -- methods --

    @dbus_method()
    @dbus_method_errors
    async def AttachVolume(self, image: Str, diff_area_dir: Str, options: Options) -> Str:
        caller = await self.exporter.callers.current()
        require_root(caller, "attaching a volume to the diff-area provider")
        opts = check_options(
            unwrap(options), {"max_bytes": int, "policy": str, "chunk_size": int}, "AttachVolume"
        )
        image = require_absolute(image, "the image")
        diff_area_dir = require_absolute(diff_area_dir, "the diff area directory")
        chunk_size = check_chunk_size(int(opts.get("chunk_size", DEFAULT_CHUNK_SIZE)))
        policy = parse_policy(str(opts.get("policy", DEFAULT_POLICY.value)))
        max_bytes = int(opts.get("max_bytes", default_max_bytes(image, chunk_size)))
        if max_bytes <= 0:
            raise InvalidArgs(f"AttachVolume: max_bytes must be positive, not {max_bytes}")
        attached = await self.provider.attach(image, diff_area_dir, max_bytes, policy, chunk_size)
        log.info(
            "uid %d attached %s as diff-area volume %s on %s (diff area %s, at most %d bytes, "
            "%s, chunks of %d bytes)", caller.uid, attached.image, attached.name,
            attached.loop_device, attached.diff_area_dir, max_bytes, policy.value, chunk_size,
        )  # fmt: skip
        self._volumes_changed()
        if not attached.loop_device:
            raise ProviderFailure(
                f"{attached.image} was attached as {attached.name} but has no loop device; "
                "see the service's log, then detach and attach it again"
            )
        return attached.loop_device

    @dbus_method()
    @dbus_method_errors
    async def DetachVolume(self, image_or_name: Str, options: Options) -> None:
        caller = await self.exporter.callers.current()
        require_root(caller, "detaching a diff-area volume")
        opts = check_options(unwrap(options), {"delete_snapshots": bool}, "DetachVolume")
        volume = await self._resolve(image_or_name)
        delete_snapshots = bool(opts.get("delete_snapshots", False))
        if delete_snapshots:
            await self._delete_snapshots_of(caller, volume)
        try:
            await self.provider.detach(volume.name, delete_snapshots=delete_snapshots)
        finally:
            self._volumes_changed()
        log.info("uid %d detached diff-area volume %s (%s)", caller.uid, volume.name, volume.image)

    @dbus_method()
    @dbus_method_errors
    async def ResizeDiffArea(self, volume: Str, max_bytes: UInt64, options: Options) -> None:
        caller = await self.exporter.callers.current()
        require_root(caller, "resizing a diff area")
        check_options(unwrap(options), {}, "ResizeDiffArea")
        attached = await self._resolve(volume)
        await self.provider.resize_diff_area(attached.name, max_bytes)
        log.info(
            "uid %d resized the diff area of %s (%s) to %d bytes",
            caller.uid,
            attached.name,
            attached.image,
            max_bytes,
        )

    @dbus_method()
    @dbus_method_errors
    async def ListVolumes(self) -> VolumeList:
        caller = await self.exporter.callers.current()
        self.service.require_operator(caller, "listing diff-area volumes")
        volumes = await self.provider.list_attached()
        self._volumes_changed()
        return [volume_properties(v) for v in volumes]

    # -- signals --

    @dbus_signal()
    def SnapshotDropped(self, snapshot_id: str, reason: str) -> TwoStrings:
        return [snapshot_id, reason]

    # -- properties --

    @dbus_property(access=PropertyAccess.READ)
    def Volumes(self) -> StrList:
        return list(self._names)

    @dbus_property(access=PropertyAccess.READ)
    def DefaultChunkSize(self) -> UInt32:
        return DEFAULT_CHUNK_SIZE

    @dbus_property(access=PropertyAccess.READ)
    def DefaultPolicy(self) -> Str:
        return DEFAULT_POLICY.value
