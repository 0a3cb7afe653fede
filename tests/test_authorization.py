"""Authorization on a bus with the shipped policy: who may do what, checked by uid."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import BACKUP_GROUP, LocalUser, PrivateBus, popen_as, run_as
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.loopdev import LoopFs

PROBE = r"""
import asyncio, json, sys
from snapd_vss.ipc.client import VssClient
from snapd_vss import errors

async def main(address, snapshot_id):
    out = {}
    async with await VssClient.connect(address) as client:
        async def attempt(key, coro):
            try:
                await coro
                out[key] = "ok"
            except errors.VssError as exc:
                out[key] = type(exc).__name__ + ": " + exc.message
        await attempt("create_session", client.manager.create_backup_session())
        if snapshot_id:
            await attempt("expose_snapshot", client.snapshot(snapshot_id).expose(""))
            await attempt("delete_snapshot", client.snapshot(snapshot_id).delete())
        out["writers_visible"] = len(await client.writers())
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def daemon_with_group(private_bus: PrivateBus) -> Iterator[VssDaemon]:
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vssd-auth-"))
    daemon = VssDaemon(
        private_bus.address, workdir, extra_config=f'\n[access]\nbackup_group = "{BACKUP_GROUP}"\n'
    )
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)


async def persistent_snapshot(address: str, volume: LoopFs) -> str:
    async with await VssClient.connect(address) as client:
        session = await client.manager.create_backup_session("NAS_ROLLBACK")
        await session.gather_writer_metadata()
        await session.start_snapshot_set()
        snap_id = await session.add_to_snapshot_set(volume.mount_point, "")
        await session.prepare_for_backup()
        await session.do_snapshot_set()
        await session.close()
        return snap_id


def probe(user: LocalUser, pythonpath: Path, address: str, snapshot_id: str) -> dict[str, str]:
    done = run_as(
        user,
        [sys.executable, "-c", PROBE, address, snapshot_id],
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout)
    return result


async def test_nonroot_user_cannot_run_sessions_or_touch_snapshots(
    private_bus: PrivateBus,
    daemon_with_group: VssDaemon,
    btrfs_volume: LoopFs,
    nonroot_user: LocalUser,
    nonroot_pythonpath: Path,
) -> None:
    snap_id = await persistent_snapshot(private_bus.address, btrfs_volume)
    out = await asyncio.to_thread(
        probe, nonroot_user, nonroot_pythonpath, private_bus.address, snap_id
    )
    assert out["create_session"].startswith("AccessDenied")
    assert out["delete_snapshot"].startswith("AccessDenied")
    assert out["expose_snapshot"].startswith("AccessDenied")
    async with await VssClient.connect(private_bus.address) as client:
        assert [s.id for s in await client.snapshots()] == [snap_id]


async def test_backup_group_member_may_run_sessions(
    private_bus: PrivateBus,
    daemon_with_group: VssDaemon,
    btrfs_volume: LoopFs,
    backup_operator: LocalUser,
    nonroot_pythonpath: Path,
) -> None:
    snap_id = await persistent_snapshot(private_bus.address, btrfs_volume)
    out = await asyncio.to_thread(
        probe, backup_operator, nonroot_pythonpath, private_bus.address, snap_id
    )
    assert out["create_session"] == "ok"
    assert out["expose_snapshot"] == "ok"
    assert out["delete_snapshot"] == "ok"


async def test_nonroot_user_may_register_a_writer(
    private_bus: PrivateBus,
    daemon_with_group: VssDaemon,
    nonroot_user: LocalUser,
    nonroot_pythonpath: Path,
) -> None:
    data = Path(tempfile.mkdtemp(prefix="snapd-vss-userdata-"))
    data.chmod(0o755)
    writer = popen_as(
        nonroot_user,
        [
            sys.executable,
            "-m",
            "snapd_vss.testing.scripted_writer",
            "--name",
            "user-writer",
            "--data",
            str(data),
        ],
        env={
            "PYTHONPATH": str(nonroot_pythonpath),
            "PATH": "/usr/bin:/bin",
            "DBUS_SYSTEM_BUS_ADDRESS": private_bus.address,
        },
    )
    try:
        async with await VssClient.connect(private_bus.address) as client:
            for _ in range(200):
                writers = await client.writers()
                if writers:
                    break
                await asyncio.sleep(0.05)
            else:
                writer.kill()
                pytest.fail("the non-root writer never registered: " + writer.communicate()[1])
            (registered,) = writers
            assert registered.name == "user-writer"
            assert registered.uid == nonroot_user.uid
    finally:
        writer.terminate()
        try:
            writer.wait(10)
        except subprocess.TimeoutExpired:
            writer.kill()
        shutil.rmtree(data, ignore_errors=True)
