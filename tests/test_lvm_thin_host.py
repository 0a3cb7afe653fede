"""The lvm_thin provider on this host, whose kernel has no device-mapper (real tools)."""

from __future__ import annotations

import asyncio
import os

import pytest

from snapd_vss.errors import ProviderFailure, VolumeNotSupported
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.lvm import tools
from snapd_vss.providers.lvm_thin import LvmThinProvider
from snapd_vss.vocabulary import ProviderType
from snapd_vss.volumes import resolve_volume

with open("/proc/devices") as _f:
    HAS_DM = "device-mapper" in _f.read()


@pytest.fixture
def provider(tmp_path) -> LvmThinProvider:  # type: ignore[no-untyped-def]
    return LvmThinProvider(ProviderContext(str(tmp_path), str(tmp_path)))


def test_identity(provider: LvmThinProvider) -> None:
    assert provider.name == "lvm_thin"
    assert provider.type is ProviderType.SYSTEM


@pytest.mark.skipif(HAS_DM, reason="this kernel has device-mapper")
def test_unavailable_without_device_mapper(provider: LvmThinProvider) -> None:
    avail = provider.availability()
    assert not avail.available
    assert "device-mapper" in avail.reason or "lvm2" in avail.reason


def test_a_plain_disk_is_not_supported(provider: LvmThinProvider) -> None:
    root = resolve_volume("/")
    if root.fs_type not in ("ext4", "xfs"):
        pytest.skip(f"/ is {root.fs_type}")
    with pytest.raises(VolumeNotSupported, match="not a device-mapper device"):
        provider.supports(root)


def test_unsupported_filesystem_says_which(provider: LvmThinProvider) -> None:
    vol = Volume("/srv", "btrfs", "/dev/mapper/vg-srv", "/", "254:9")
    with pytest.raises(VolumeNotSupported, match="/srv is btrfs"):
        provider.supports(vol)


NO_LVM = tools.find_program("lvm") is None


@pytest.mark.skipif(NO_LVM, reason="needs the lvm2 tools")
async def test_lvm_failure_carries_lvms_message(provider: LvmThinProvider) -> None:
    rec = SnapshotRecord(id="x", snapshot_set_id="y", volume="/srv", provider="lvm_thin")
    rec.provider_data.update(vg="no_such_vg_here", lv="snap")
    with pytest.raises(ProviderFailure) as err:
        await provider.exists(rec)
    message = str(err.value)
    assert "lvs" in message and "no_such_vg_here/snap" in message
    assert 'Volume group "no_such_vg_here" not found' in message


@pytest.mark.skipif(NO_LVM or HAS_DM, reason="needs the lvm2 tools and no VGs")
async def test_no_pools_without_device_mapper(provider: LvmThinProvider) -> None:
    assert await provider.pool_usage() == []


async def test_cancelled_command_is_stopped() -> None:
    task = asyncio.create_task(tools.run(["sleep", "30"]))
    await asyncio.sleep(0.2)
    children_before = _children()
    assert children_before
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (_children() & children_before)


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.add(int(pid))
    return found
