"""The DM_TABLE_STATUS ioctl against the guest kernel's device-mapper, next to dmsetup."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
from conftest import POOL, sh

from snapd_vss.model import Volume
from snapd_vss.providers.lvm import dm, report
from snapd_vss.providers.lvm_thin import LvmThinProvider


def dmsetup(*args: str) -> str:
    return sh("dmsetup", *args).stdout.strip()


def test_status_is_what_dmsetup_says(scratch_vg: str, thin_fs: Callable[..., Volume]) -> None:
    volume = thin_fs()
    with open(f"/sys/dev/block/{volume.major_minor}/dm/name") as f:
        lv = f.read().strip()  # vssvg-tXXXXXXXX
    tpool = f"{scratch_vg}-{POOL}-tpool"
    uuid = dmsetup("info", "--columns", "--noheadings", "-o", "uuid", tpool)
    assert uuid.startswith("LVM-") and uuid.endswith("-tpool")
    for device in ({"name": tpool}, {"uuid": uuid}):
        (target,) = dm.table_status(**device)
        assert target.type == "thin-pool"
        assert target.line == dmsetup("status", "--noflush", tpool)
    (thin,) = dm.table_status(name=lv)
    assert thin.line == dmsetup("status", "--noflush", lv)
    (committed,) = dm.table_status(name=tpool, noflush=False)
    assert committed.line == dmsetup("status", tpool)
    usage = report.parse_thin_pool_status(committed.line)
    assert usage is not None and 0 < usage[0] < 100 and 0 < usage[1] < 100


def test_no_such_device_is_enxio(scratch_vg: str) -> None:
    with pytest.raises(OSError) as caught:
        dm.table_status(name=f"{scratch_vg}-no_such_lv")
    assert caught.value.errno == errno.ENXIO


async def test_prepare_reads_the_pool_from_the_kernel(
    lvm_provider: LvmThinProvider,
    thin_fs: Callable[..., Volume],
    new_record: Callable[..., object],
    scratch_vg: str,
) -> None:
    volume = thin_fs()
    await lvm_provider.pool_usage()  # what lvs says (and the pool's size)
    (before,) = [p for p in lvm_provider.pools if p.pool == POOL]
    record = new_record(volume.mount_point)
    await lvm_provider.prepare(record, volume)  # type: ignore[arg-type]
    assert record.provider_data["vg"] == scratch_vg  # type: ignore[attr-defined]
    (after,) = [p for p in lvm_provider.pools if p.pool == POOL]
    assert after.size_bytes == before.size_bytes
    # lvs rounds to two decimals; the kernel's counts are exact
    assert after.data_percent == pytest.approx(before.data_percent, abs=0.01)
    assert after.metadata_percent == pytest.approx(before.metadata_percent, abs=0.01)
