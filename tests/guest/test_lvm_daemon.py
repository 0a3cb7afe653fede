"""The lvm_thin provider through the daemon: snapd-vssd on a private bus in the guest.

A scripted writer keeps its data on one thin LV; a snapshot set spans two thin LVs
(ext4 and xfs); snapshots are exposed over D-Bus and checked point-in-time; delete and
Close leave nothing behind; a nearly full pool is refused with InsufficientStorage; a
restart reconciles the store with what LVM really has.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from conftest import NO_UDEV, mounts_below, sh, snapshot_set, tagged, unmount_below, write

from snapd_vss import errors
from snapd_vss.ipc.client import VssClient
from snapd_vss.model import Volume
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, wait_for_writers

LVM_PATH = "/org/snapdvss/Vss1/providers/lvm_thin"
CONFIG = """\
[timeouts]
freeze_window_s = 30
commit_window_s = 20
writer_call_s = 20
identify_s = 10

[providers]
enabled = ["lvm_thin"]

[lvm_thin]
data_threshold_percent = 80
metadata_threshold_percent = 80
"""

ThinFs = Callable[..., Volume]


@pytest.fixture
def daemon(private_bus: PrivateBus, scratch_vg: str, tmp_path: Path) -> Iterator[VssDaemon]:
    workdir = tmp_path / "daemon"
    workdir.mkdir()
    d = VssDaemon(private_bus.address, workdir)
    d.config_path.write_text(CONFIG)
    d.start(timeout_s=60)
    try:
        yield d
    finally:
        d.kill()
        unmount_below(workdir)
        sh("lvm", "lvremove", *NO_UDEV, "@snapd_vss", check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def client(private_bus: PrivateBus, daemon: VssDaemon) -> AsyncIterator[VssClient]:
    async with await VssClient.connect(private_bus.address) as c:
        yield c


async def test_snapshot_set_over_two_thin_lvs_with_a_writer(
    client: VssClient, daemon: VssDaemon, thin_fs: ThinFs, scripted_writers: WriterFactory
) -> None:
    ext4, xfs = thin_fs("ext4"), thin_fs("xfs")
    data = Path(ext4.mount_point) / "w1"
    write(data / "table.db", "row 1\n")
    write(Path(xfs.mount_point) / "logs" / "log.txt", "log 1\n")
    writer = scripted_writers("w1", str(data))
    await wait_for_writers(client, 1)

    session, (id_ext4, id_xfs) = await snapshot_set(
        client, [ext4.mount_point, xfs.mount_point], component="w1"
    )
    write(data / "table.db", "row 1\nrow 2\n")
    write(Path(xfs.mount_point) / "logs" / "log.txt", "log 1\nlog 2\n")
    events = [e for e in writer.events() if e != "identify"]
    assert events[:4] == ["prepare_backup", "prepare_for_freeze", "freeze", "thaw"]

    snapshots = {s.id: s for s in await client.snapshots()}
    assert set(snapshots) == {id_ext4, id_xfs}
    for snap_id, volume in ((id_ext4, ext4), (id_xfs, xfs)):
        info = snapshots[snap_id]
        assert (info.provider, info.volume, info.state) == ("lvm_thin", volume.mount_point,
                                                            "CREATED")
        assert info.device_path.startswith("/dev/vssvg/")
        assert "_vss_" in info.device_path
        assert not info.persistent
    assert len(tagged()) == 2

    path_ext4 = await client.snapshot(id_ext4).expose("")
    path_xfs = await client.snapshot(id_xfs).expose(str(daemon.workdir / "xfs-snap"))
    assert path_ext4.startswith(str(daemon.runtime_dir))
    assert path_xfs == str(daemon.workdir / "xfs-snap")
    assert (Path(path_ext4) / "w1" / "table.db").read_text() == "row 1\n"
    assert (Path(path_xfs) / "logs" / "log.txt").read_text() == "log 1\n"
    info = await client.snapshot(id_xfs).info()
    assert (info.state, info.exposed_path) == ("EXPOSED", path_xfs)
    with pytest.raises(OSError):
        write(Path(path_xfs) / "new.txt", "read-only")

    pools = await client.get(LVM_PATH, "LvmThin", "Pools")
    assert [tuple(p[:2]) for p in pools if p[0] == "vssvg"] == [("vssvg", "pool")]
    assert await client.call(LVM_PATH, "LvmThin", "RefreshPools") is not None

    await session.close()  # BACKUP context: non-persistent, released on Close
    assert tagged() == []
    assert mounts_below(daemon.workdir) == []
    assert await client.snapshots() == []
    assert writer.events()[-1] == "backup_shutdown"


async def test_persistent_snapshot_delete_leaves_nothing(
    client: VssClient, daemon: VssDaemon, thin_fs: ThinFs
) -> None:
    volume = thin_fs("xfs")
    write(Path(volume.mount_point) / "f", "v1\n")
    session, (snap_id,) = await snapshot_set(client, [volume.mount_point], "NAS_ROLLBACK")
    await session.close()
    assert len(tagged()) == 1  # persistent: survives Close
    path = await client.snapshot(snap_id).expose("")
    assert (Path(path) / "f").read_text() == "v1\n"

    await client.snapshot(snap_id).delete()
    assert tagged() == []
    assert mounts_below(daemon.workdir) == []
    assert not os.path.exists(path)
    assert await client.snapshots() == []
    with pytest.raises(errors.NotFound):
        await client.snapshot(snap_id).info()


async def test_pool_above_threshold_is_refused(
    client: VssClient, daemon: VssDaemon, thin_fs: ThinFs, scratch_vg: str, tmp_path: Path
) -> None:
    sh("lvm", "lvcreate", *NO_UDEV, "--type", "thin-pool", "-L", "64M", "-n", "small", scratch_vg)
    try:
        volume = thin_fs("ext4", size="128M", pool="small")
        with open(Path(volume.mount_point) / "fill", "wb") as f:
            for _ in range(58):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        session = await client.manager.create_backup_session("NAS_ROLLBACK")
        await session.gather_writer_metadata()
        await session.start_snapshot_set()
        await session.add_to_snapshot_set(volume.mount_point, "lvm_thin")
        await session.prepare_for_backup()
        with pytest.raises(errors.InsufficientStorage) as err:
            await session.do_snapshot_set()
        message = str(err.value)
        assert f"{scratch_vg}/small" in message and "80% limit" in message, message
        assert "lvextend" in message
        await session.close()
        assert tagged() == []
        assert await client.snapshots() == []
        pools = {p[1]: p for p in await client.get(LVM_PATH, "LvmThin", "Pools")}
        assert pools["small"][2] > 80.0  # data percent, as seen by the refused prepare
    finally:
        unmount_below(tmp_path)
        sh("lvm", "lvremove", *NO_UDEV, f"{scratch_vg}/small", check=False)


async def test_restart_reconciles_with_lvm(
    private_bus: PrivateBus, daemon: VssDaemon, thin_fs: ThinFs, scratch_vg: str
) -> None:
    a, b, c = thin_fs("ext4"), thin_fs("xfs"), thin_fs("ext4")
    for vol in (a, b, c):
        write(Path(vol.mount_point) / "f", f"{vol.mount_point} v1\n")
    client = await VssClient.connect(private_bus.address)
    try:
        session, (id_a, id_b) = await snapshot_set(
            client, [a.mount_point, b.mount_point], "NAS_ROLLBACK"
        )
        await session.close()
        # A BACKUP session still open when the daemon dies: its snapshot is not persistent.
        await snapshot_set(client, [c.mount_point])
        by_id = {s.id: s for s in await client.snapshots()}
        assert len(tagged()) == 3
        # By hand: one persistent snapshot removed, and a stray LV carrying our tag.
        sh("lvm", "lvremove", *NO_UDEV, by_id[id_a].device_path.removeprefix("/dev/"))
        origin_b = Path(b.source).name.split("-", 1)[1]
        sh("lvm", "lvcreate", *NO_UDEV, "-s", "-n", "stray", "--addtag", "snapd_vss",
           f"{scratch_vg}/{origin_b}")
        for vol in (a, b, c):
            write(Path(vol.mount_point) / "f", "changed after the snapshots\n")
        daemon.kill()  # SIGKILL, with the session open: nothing cleaned on the way out
    finally:
        await client.close()
    daemon.start(timeout_s=60)
    async with await VssClient.connect(private_bus.address) as client:
        snaps = {s.id: s for s in await client.snapshots()}
        assert set(snaps) == {id_a, id_b}  # the non-persistent one was released
        assert snaps[id_a].state == "INVALID"
        assert "removed outside snapd-vss" in snaps[id_a].state_reason
        assert snaps[id_b].state == "CREATED"
        with pytest.raises(errors.InvalidState):
            await client.snapshot(id_a).expose("")
        path = await client.snapshot(id_b).expose("")
        assert (Path(path) / "f").read_text() == f"{b.mount_point} v1\n"

        unclaimed = await client.get(LVM_PATH, "LvmThin", "UnclaimedSnapshots")
        assert unclaimed == [f"{scratch_vg}/stray"]
        assert f"lvremove {scratch_vg}/stray" in daemon.log_text()
        assert sorted(tagged()) == sorted([by_id[id_b].device_path.removeprefix("/dev/"),
                                           f"{scratch_vg}/stray"])

        await client.snapshot(id_a).delete()
        await client.snapshot(id_b).delete()
        assert tagged() == [f"{scratch_vg}/stray"]  # reported, never removed by the service
        assert await client.snapshots() == []
