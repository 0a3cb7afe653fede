"""org.snapdvss.Vss1.LvmThin on /org/snapdvss/Vss1/providers/lvm_thin.

Loaded by :func:`snapd_vss.ipc.exporter.provider_interfaces` for the ``lvm_thin``
provider: thin pool usage (kept by :class:`LvmThinProvider`, announced with
PropertiesChanged), the thresholds the provider refuses snapshots above, and the tagged
LVs nobody claimed at start-up. See dbus/org.snapdvss.Vss1.LvmThin.xml.
"""

# dbus-fast reads the Annotated signatures at class creation,
# so this module has no `from __future__ import annotations`.

from typing import TYPE_CHECKING, Annotated, Any

from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from snapd_vss.errors import ProviderFailure
from snapd_vss.ipc import IFACE_PREFIX
from snapd_vss.ipc.errors import dbus_method_errors
from snapd_vss.ipc.types import Bool, Str, StrList
from snapd_vss.providers.base import Provider
from snapd_vss.providers.lvm.report import PoolUsage
from snapd_vss.providers.lvm_thin import LvmThinProvider

if TYPE_CHECKING:
    from snapd_vss.ipc.exporter import Exporter

LVM_THIN_IFACE = f"{IFACE_PREFIX}.LvmThin"

PoolList = Annotated[list[list[Any]], DBusSignature("a(ssddt)")]
Double = Annotated[float, DBusSignature("d")]


def interfaces(provider: Provider, exporter: "Exporter") -> list[ServiceInterface]:
    """The exporter's hook: the interfaces to export beside org.snapdvss.Vss1.Provider."""
    if not isinstance(provider, LvmThinProvider):
        raise TypeError(f"provider_lvm_thin serves LvmThinProvider, not {type(provider)}")
    return [LvmThinInterface(provider, exporter)]


def pool_rows(pools: list[PoolUsage]) -> list[list[Any]]:
    """``a(ssddt)``: (vg, pool, data %, metadata %, size in bytes) per pool."""
    return [
        [p.vg, p.pool, float(p.data_percent), float(p.metadata_percent), int(p.size_bytes)]
        for p in pools
    ]


class LvmThinInterface(ServiceInterface):
    def __init__(self, provider: LvmThinProvider, exporter: "Exporter") -> None:
        super().__init__(LVM_THIN_IFACE)
        self.provider = provider
        self.exporter = exporter
        provider.pools_changed = self._pools_changed

    def _pools_changed(self, pools: list[PoolUsage]) -> None:
        self.emit_properties_changed({"Pools": pool_rows(pools)})

    @dbus_method()
    @dbus_method_errors
    async def RefreshPools(self) -> PoolList:
        caller = await self.exporter.callers.current()
        self.exporter.service.require_operator(caller, "refreshing the thin pools' usage")
        availability = self.provider.availability()
        if not availability.available:
            raise ProviderFailure(f"the lvm_thin provider is not available: {availability.reason}")
        return pool_rows(await self.provider.pool_usage())

    @dbus_property(access=PropertyAccess.READ)
    def Pools(self) -> PoolList:
        return pool_rows(self.provider.pools)

    @dbus_property(access=PropertyAccess.READ)
    def DataThresholdPercent(self) -> Double:
        return float(self.provider.data_threshold)

    @dbus_property(access=PropertyAccess.READ)
    def MetadataThresholdPercent(self) -> Double:
        return float(self.provider.metadata_threshold)

    @dbus_property(access=PropertyAccess.READ)
    def CoordinatorFreeze(self) -> Bool:
        return self.provider.freeze.hold

    @dbus_property(access=PropertyAccess.READ)
    def CoordinatorFreezeReason(self) -> Str:
        return self.provider.freeze.reason

    @dbus_property(access=PropertyAccess.READ)
    def UnclaimedSnapshots(self) -> StrList:
        return [lv.full_name for lv in self.provider.unclaimed]
