"""DiffAreaProvider through the Provider interface, on real FUSE, loop devices and ext4."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from snapd_vss.errors import InvalidState, VolumeNotSupported
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.diff_area import process
from snapd_vss.providers.diff_area.config import FullPolicy
from snapd_vss.providers.diff_area.provider import DiffAreaProvider

pytestmark = pytest.mark.root
MiB = 1024 * 1024


def volume_at(mount_point: str) -> Volume:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fields = left.split()
            if fields[4] == mount_point:
                rfields = right.split()
                return Volume(mount_point, rfields[0], rfields[1], fields[3], fields[2], fields[5])
    raise AssertionError(f"{mount_point} is not mounted")


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


async def test_provider_lifecycle(tmp_path: Path) -> None:
    image = tmp_path / "image"
    with open(image, "wb") as f:
        f.truncate(128 * MiB)
    ctx = ProviderContext(str(tmp_path / "state"), str(tmp_path / "run"))
    provider = DiffAreaProvider(ctx)
    assert provider.availability().available
    live = str(tmp_path / "live")
    os.makedirs(live)
    os.makedirs(tmp_path / "diff")
    mounted: list[str] = []
    dropped: list[tuple[str, str]] = []
    provider.listeners.append(lambda i, r: dropped.append((i, r)))
    attached = await provider.attach(str(image), str(tmp_path / "diff"), 32 * MiB,
                                     FullPolicy.DROP_OLDEST_SNAPSHOT, 64 * 1024)
    try:
        assert attached.loop_device and os.path.exists(attached.device_file)
        subprocess.run(["mkfs.ext4", "-q", attached.loop_device], check=True)
        subprocess.run(["mount", attached.loop_device, live], check=True)
        mounted.append(live)
        volume = volume_at(live)
        provider.supports(volume)
        with pytest.raises(VolumeNotSupported):
            provider.supports(Volume("/", "ext4", "/dev/vda", "/", "254:0"))

        with open(os.path.join(live, "a"), "wb") as f:
            f.write(os.urandom(3 * MiB))
        before = digest(os.path.join(live, "a"))
        record = SnapshotRecord("snap-1", "set-1", live, "diff_area")
        await provider.prepare(record, volume)
        subprocess.run(["fsfreeze", "-f", live], check=True)
        try:
            await provider.commit(record, volume)
        finally:
            subprocess.run(["fsfreeze", "-u", live], check=True)
        with open(os.path.join(live, "a"), "wb") as f:
            f.write(os.urandom(3 * MiB))
        os.sync()
        assert await provider.exists(record)

        exposed = await provider.expose(record, "")
        mounted.append(exposed)
        assert digest(os.path.join(exposed, "a")) == before
        with pytest.raises(InvalidState):
            await provider.detach(attached.name)  # the live volume is mounted
        await provider.unexpose(record)
        mounted.remove(exposed)
        assert not os.path.exists(exposed)

        # a daemon restart: a new provider reconnects to the running server
        await provider.shutdown()
        provider = DiffAreaProvider(ctx)
        provider.listeners.append(lambda i, r: dropped.append((i, r)))
        await provider.startup()
        assert [v.name for v in await provider.list_attached()] == [attached.name]
        assert await provider.exists(record)

        # shrinking the diff area below its use drops the snapshot and says so
        resized = await provider.resize_diff_area(attached.name, 64 * 1024)
        assert resized.max_bytes == 64 * 1024
        status = await provider.snapshot_status(record)
        assert not status.valid and "shrunk" in status.reason
        assert not await provider.exists(record)
        for _ in range(200):
            if dropped:
                break
            await asyncio.sleep(0.05)
        assert dropped == [("snap-1", status.reason)]
        await provider.delete(record)
        await provider.delete(record)  # already gone: fine
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", target], check=False)
        for name in [v.name for v in await provider.list_attached()]:
            await provider.detach(name, delete_snapshots=True)
        await provider.shutdown()
    assert not process.loops_backed_by(attached.device_file)
    assert not process.is_mounted(os.path.dirname(attached.device_file))
