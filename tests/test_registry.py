"""Provider registry: lookup, choice per volume, errors that say why."""

from __future__ import annotations

import os

import pytest

from snapd_vss.errors import InvalidArgs, NotFound, VolumeNotSupported
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import Availability, Provider, ProviderContext
from snapd_vss.providers.btrfs import BtrfsProvider
from snapd_vss.providers.registry import ProviderRegistry, default_providers
from snapd_vss.testing.loopdev import LoopFs
from snapd_vss.volumes import resolve_volume


class NeverAvailable(Provider):
    """A provider whose backend is missing on this machine."""

    name = "never"

    def availability(self) -> Availability:
        return Availability(False, "the never-tools are not installed")

    def supports(self, volume: Volume) -> None:
        pass

    async def commit(self, record: SnapshotRecord, volume: Volume) -> None:
        raise AssertionError("not available")

    async def delete(self, record: SnapshotRecord) -> None:
        pass

    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        return ""

    async def unexpose(self, record: SnapshotRecord) -> None:
        pass


@pytest.fixture
def context(tmp_path: object) -> ProviderContext:
    return ProviderContext(os.path.join(str(tmp_path), "state"), os.path.join(str(tmp_path), "run"))


def test_get_and_all(context: ProviderContext) -> None:
    btrfs = BtrfsProvider(context)
    registry = ProviderRegistry([btrfs, NeverAvailable(context)])
    assert registry.get("btrfs") is btrfs
    assert [p.name for p in registry.all()] == ["btrfs", "never"]
    with pytest.raises(NotFound, match=r"'lvm'.* btrfs, never"):
        registry.get("lvm")


def test_duplicate_names_are_refused(context: ProviderContext) -> None:
    with pytest.raises(InvalidArgs, match="twice"):
        ProviderRegistry([BtrfsProvider(context), BtrfsProvider(context)])


@pytest.mark.root
def test_pick_best_available(context: ProviderContext, btrfs_volume: LoopFs) -> None:
    registry = ProviderRegistry([NeverAvailable(context), BtrfsProvider(context)])
    volume = resolve_volume(btrfs_volume.mount_point)
    assert registry.pick(volume).name == "btrfs"
    assert registry.pick(volume, "btrfs").name == "btrfs"
    with pytest.raises(VolumeNotSupported, match=r"'never' .*never-tools are not installed"):
        registry.pick(volume, "never")
    with pytest.raises(NotFound):
        registry.pick(volume, "nope")


@pytest.mark.root
def test_no_provider_lists_every_reason(context: ProviderContext, ext4_volume: LoopFs) -> None:
    registry = ProviderRegistry([BtrfsProvider(context), NeverAvailable(context)])
    volume = resolve_volume(ext4_volume.mount_point)
    with pytest.raises(VolumeNotSupported) as info:
        registry.pick(volume)
    message = info.value.message
    assert volume.mount_point in message
    assert "btrfs: " in message and "ext4, not btrfs" in message
    assert "never: not available" in message
    with pytest.raises(VolumeNotSupported, match="ext4, not btrfs"):
        registry.pick(volume, "btrfs")
    with pytest.raises(VolumeNotSupported, match="no providers are enabled"):
        ProviderRegistry([]).pick(volume)


def test_default_providers(context: ProviderContext) -> None:
    providers = default_providers(context)
    names = [p.name for p in providers]
    assert names[0] == "btrfs"
    assert all(p.context == context for p in providers)
    assert [p.name for p in default_providers(context, ["btrfs"])] == ["btrfs"]
    assert default_providers(context, []) == []
    with pytest.raises(InvalidArgs, match=r"Unknown provider 'zfs'.*btrfs, lvm_thin, diff_area"):
        default_providers(context, ["zfs"])
