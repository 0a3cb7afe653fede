"""The freeze guard on real loop-device filesystems: it always thaws."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from snapd_vss.errors import ProviderFailure
from snapd_vss.freeze import FreezeGuard, FrozenFilesystems, SpareGuard, thaw_leftovers
from snapd_vss.freeze.guard import freeze_request
from snapd_vss.freeze.guard_client import IdleGuard
from snapd_vss.freeze.ioctl import freeze_fd, is_frozen, open_mount, thaw_path
from snapd_vss.freeze.markers import marker_dir
from snapd_vss.testing.loopdev import LoopFs

pytestmark = pytest.mark.root

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def runtime_dir(tmp_path: object) -> str:
    return str(tmp_path)


def start_writer(path: str) -> threading.Thread:
    """A thread writing (and syncing) a file; it blocks while the filesystem is frozen."""

    def write() -> None:
        with open(path, "w") as f:
            f.write("written")
            f.flush()
            os.fsync(f.fileno())

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def wait_gone(pid: int) -> None:
    """Wait (without a time bound) until ``pid`` exited; tolerate zombies."""
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.05)


def markers(runtime_dir: str) -> list[str]:
    try:
        return [n for n in os.listdir(marker_dir(runtime_dir)) if n.endswith(".json")]
    except FileNotFoundError:
        return []


@pytest.fixture(params=["ext4", "xfs", "btrfs"])
def any_volume(request: pytest.FixtureRequest) -> Iterator[LoopFs]:
    fixture: LoopFs = request.getfixturevalue(f"{request.param}_volume")
    yield fixture


async def test_write_blocks_while_frozen_and_completes_after_thaw(
    any_volume: LoopFs, runtime_dir: str
) -> None:
    mount = any_volume.mount_point
    async with FrozenFilesystems([mount], 60, runtime_dir) as frozen:
        assert frozen.is_frozen
        assert is_frozen(mount)
        assert markers(runtime_dir) == [f"{frozen.pid}.json"]
        writer = start_writer(os.path.join(mount, "file"))
        writer.join(0.5)
        assert writer.is_alive(), "a write went through on a frozen filesystem"
    assert not frozen.is_frozen
    assert not frozen.thawed_by_deadline
    await asyncio.to_thread(writer.join, 60)
    assert not writer.is_alive()
    with open(os.path.join(mount, "file")) as f:
        assert f.read() == "written"
    assert not is_frozen(mount)
    assert markers(runtime_dir) == []


async def test_guard_runs_in_its_own_session(ext4_volume: LoopFs, runtime_dir: str) -> None:
    async with FrozenFilesystems([ext4_volume.mount_point], 60, runtime_dir) as frozen:
        assert os.getsid(frozen.pid) == frozen.pid != os.getsid(0)


async def test_thaws_at_deadline(ext4_volume: LoopFs, runtime_dir: str) -> None:
    guard = await FreezeGuard.start([ext4_volume.mount_point], 0.5, runtime_dir)
    await guard.wait_thawed()
    assert guard.thawed_by_deadline
    assert not guard.guard_died
    assert not is_frozen(ext4_volume.mount_point)
    await guard.thaw()  # late thaw is harmless
    assert markers(runtime_dir) == []


async def test_sigkill_of_guard_makes_client_thaw(
    ext4_volume: LoopFs, xfs_volume: LoopFs, runtime_dir: str
) -> None:
    mounts = [ext4_volume.mount_point, xfs_volume.mount_point]
    guard = await FreezeGuard.start(mounts, 60, runtime_dir)
    assert all(is_frozen(m) for m in mounts)
    os.kill(guard.pid, signal.SIGKILL)
    await guard.wait_thawed()
    assert guard.guard_died
    assert not any(is_frozen(m) for m in mounts)
    assert markers(runtime_dir) == []
    await guard.thaw()


async def test_sigterm_to_guard_thaws(ext4_volume: LoopFs, runtime_dir: str) -> None:
    guard = await FreezeGuard.start([ext4_volume.mount_point], 60, runtime_dir)
    os.kill(guard.pid, signal.SIGTERM)
    await guard.wait_thawed()
    assert not guard.guard_died
    assert not is_frozen(ext4_volume.mount_point)


async def test_double_freeze_is_ebusy_and_first_stays_frozen(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    mount = ext4_volume.mount_point
    first = await FreezeGuard.start([mount], 60, runtime_dir)
    try:
        with pytest.raises(ProviderFailure, match="already frozen by someone else") as info:
            await FreezeGuard.start([mount], 60, runtime_dir)
        assert mount in info.value.message
        assert "EBUSY" in info.value.message
        assert first.is_frozen
        assert is_frozen(mount)
    finally:
        await first.thaw()
    assert not is_frozen(mount)


async def test_failure_on_second_mount_thaws_the_first(
    ext4_volume: LoopFs, xfs_volume: LoopFs, runtime_dir: str
) -> None:
    fd = open_mount(xfs_volume.mount_point)
    try:
        freeze_fd(fd)  # someone else holds the xfs frozen
        with pytest.raises(ProviderFailure, match=xfs_volume.mount_point):
            await FreezeGuard.start(
                [ext4_volume.mount_point, xfs_volume.mount_point], 60, runtime_dir
            )
        assert not is_frozen(ext4_volume.mount_point)
        assert is_frozen(xfs_volume.mount_point)  # not ours to thaw
    finally:
        thaw_path(xfs_volume.mount_point)
        os.close(fd)
    assert markers(runtime_dir) == []


async def test_missing_mount_is_a_provider_failure(runtime_dir: str, tmp_path: object) -> None:
    missing = os.path.join(str(tmp_path), "no such dir")
    with pytest.raises(ProviderFailure, match=r"no such dir.*ENOENT"):
        await FreezeGuard.start([missing], 60, runtime_dir)


async def test_no_mounts_is_a_no_op(runtime_dir: str) -> None:
    async with FrozenFilesystems([], 60, runtime_dir) as frozen:
        assert not frozen.is_frozen


CLIENT = textwrap.dedent(
    """
    import asyncio, sys
    from snapd_vss.freeze import FreezeGuard

    async def main():
        guard = await FreezeGuard.start(sys.argv[2:], 60, sys.argv[1])
        print(guard.pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_guard_thaws_when_the_daemon_is_killed(ext4_volume: LoopFs, runtime_dir: str) -> None:
    mount = ext4_volume.mount_point
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, runtime_dir, mount],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        assert client.stdout is not None
        guard_pid = int(client.stdout.readline())
        assert is_frozen(mount)
        os.killpg(client.pid, signal.SIGKILL)  # the daemon's whole process group
        client.wait()
        wait_gone(guard_pid)  # stdin EOF -> thaw -> exit
        assert not is_frozen(mount)
        assert markers(runtime_dir) == []
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        thaw_path(mount)


def run_raw_guard(mount: str, runtime_dir: str, deadline: float = 60) -> subprocess.Popen[str]:
    guard = subprocess.Popen(
        [sys.executable, "-m", "snapd_vss.freeze.guard", "--deadline", str(deadline),
         "--marker-dir", marker_dir(runtime_dir), mount],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert guard.stdout is not None
    assert guard.stdout.readline() == "FROZEN\n"
    return guard


def test_raw_guard_protocol_thaw_line(ext4_volume: LoopFs, runtime_dir: str) -> None:
    guard = run_raw_guard(ext4_volume.mount_point, runtime_dir)
    out, _ = guard.communicate("THAW\n")
    assert out == "THAWED\n"
    assert guard.returncode == 0
    assert not is_frozen(ext4_volume.mount_point)


def test_raw_guard_thaws_on_stdin_eof(ext4_volume: LoopFs, runtime_dir: str) -> None:
    guard = run_raw_guard(ext4_volume.mount_point, runtime_dir)
    out, _ = guard.communicate("")  # closes stdin
    assert out == "THAWED\n"
    assert not is_frozen(ext4_volume.mount_point)


def test_raw_guard_deadline(ext4_volume: LoopFs, runtime_dir: str) -> None:
    guard = run_raw_guard(ext4_volume.mount_point, runtime_dir, deadline=0.3)
    assert guard.stdout is not None
    assert guard.stdout.readline() == "THAWED_BY_DEADLINE\n"
    guard.communicate()
    assert not is_frozen(ext4_volume.mount_point)


def test_thaw_leftovers_after_guard_and_daemon_were_killed(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    mount = ext4_volume.mount_point
    guard = run_raw_guard(mount, runtime_dir)
    try:
        guard.kill()  # SIGKILL: nobody thaws
        guard.communicate()
        assert is_frozen(mount)
        (name,) = markers(runtime_dir)
        with open(os.path.join(marker_dir(runtime_dir), name)) as f:
            assert json.load(f)["mounts"] == [mount]
        assert thaw_leftovers(runtime_dir) == [mount]
        assert not is_frozen(mount)
        assert markers(runtime_dir) == []
        assert thaw_leftovers(runtime_dir) == []
    finally:
        thaw_path(mount)


async def test_thaw_leftovers_spares_our_own_live_guard(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    async with FrozenFilesystems([ext4_volume.mount_point], 60, runtime_dir) as frozen:
        assert thaw_leftovers(runtime_dir) == []
        assert frozen.is_frozen and is_frozen(ext4_volume.mount_point)
    assert not is_frozen(ext4_volume.mount_point)


def test_thaw_leftovers_command(ext4_volume: LoopFs, runtime_dir: str) -> None:
    mount = ext4_volume.mount_point
    guard = run_raw_guard(mount, runtime_dir)
    try:
        guard.kill()
        guard.communicate()
        done = subprocess.run(
            [sys.executable, "-m", "snapd_vss.freeze", "thaw-leftovers", runtime_dir],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        assert done.stdout == f"thawed {mount}\n"
        assert not is_frozen(mount)
    finally:
        thaw_path(mount)


async def test_cancelled_start_leaves_nothing_frozen(ext4_volume: LoopFs, runtime_dir: str) -> None:
    task = asyncio.create_task(FreezeGuard.start([ext4_volume.mount_point], 60, runtime_dir))
    while not markers(runtime_dir):  # the guard is about to freeze
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while markers(runtime_dir):  # the guard may still be finishing its freeze, then thaws
        await asyncio.sleep(0.05)
    assert not is_frozen(ext4_volume.mount_point)


async def test_context_manager_thaws_when_the_body_fails(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    with pytest.raises(RuntimeError, match="commit failed"):
        async with FrozenFilesystems([ext4_volume.mount_point], 60, runtime_dir):
            raise RuntimeError("commit failed")
    assert not is_frozen(ext4_volume.mount_point)
    assert markers(runtime_dir) == []


# -- guards started ahead of time (--on-request; SpareGuard) -----------------------------


def run_on_request_guard(runtime_dir: str) -> subprocess.Popen[str]:
    guard = subprocess.Popen(
        [sys.executable, "-m", "snapd_vss.freeze.guard", "--on-request",
         "--marker-dir", marker_dir(runtime_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )  # fmt: skip
    assert guard.stdout is not None
    assert guard.stdout.readline() == "READY\n"
    return guard


def test_on_request_guard_freezes_when_asked(ext4_volume: LoopFs, runtime_dir: str) -> None:
    mount = ext4_volume.mount_point
    guard = run_on_request_guard(runtime_dir)
    assert not is_frozen(mount) and markers(runtime_dir) == []  # READY: nothing frozen yet
    assert guard.stdin is not None and guard.stdout is not None
    guard.stdin.write(freeze_request(60, [mount]) + "\n")
    guard.stdin.flush()
    assert guard.stdout.readline() == "FROZEN\n"
    assert is_frozen(mount) and len(markers(runtime_dir)) == 1
    out, _ = guard.communicate("THAW\n")
    assert out == "THAWED\n" and guard.returncode == 0
    assert not is_frozen(mount) and markers(runtime_dir) == []


def test_on_request_guard_takes_the_request_and_thaw_in_one_write(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    guard = run_on_request_guard(runtime_dir)
    out, _ = guard.communicate(freeze_request(60, [ext4_volume.mount_point]) + "\nTHAW\n")
    assert out == "FROZEN\nTHAWED\n"
    assert not is_frozen(ext4_volume.mount_point)


def test_on_request_guard_ends_on_eof_and_refuses_a_bad_request(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    guard = run_on_request_guard(runtime_dir)
    out, _ = guard.communicate("")
    assert (out, guard.returncode) == ("", 0)
    guard = run_on_request_guard(runtime_dir)
    out, _ = guard.communicate(f"FREEZE soon {ext4_volume.mount_point}\n")
    assert out.startswith("ERROR - 0 not a freeze request")
    assert not is_frozen(ext4_volume.mount_point) and markers(runtime_dir) == []


async def test_spare_guard_is_the_process_that_freezes(
    ext4_volume: LoopFs, runtime_dir: str
) -> None:
    spare = SpareGuard(runtime_dir)
    spare.prepare()
    idle = await spare.take()
    assert idle is not None and idle.waiting
    assert await spare.take() is None  # taken: none until prepared again
    guard = await FreezeGuard.start([ext4_volume.mount_point], 60, runtime_dir, spare=idle)
    try:
        assert guard.pid == idle.proc.pid
        assert is_frozen(ext4_volume.mount_point)
    finally:
        await guard.thaw()
    assert not is_frozen(ext4_volume.mount_point)
    spare.prepare()
    following = await spare.take()
    assert following is not None and following.proc.pid != idle.proc.pid
    await following.close()
    assert following.proc.returncode == 0  # EOF while idle: ends with nothing frozen
    await spare.close()
    assert markers(runtime_dir) == []


async def test_a_dead_spare_is_replaced(ext4_volume: LoopFs, runtime_dir: str) -> None:
    idle = await IdleGuard.spawn(runtime_dir)
    idle.proc.kill()
    await idle.proc.wait()
    assert not idle.waiting
    async with FrozenFilesystems([ext4_volume.mount_point], 60, runtime_dir) as frozen:
        assert frozen.pid != idle.proc.pid
        assert is_frozen(ext4_volume.mount_point)
    guard = await FreezeGuard.start([ext4_volume.mount_point], 60, runtime_dir, spare=idle)
    assert guard.pid != idle.proc.pid and is_frozen(ext4_volume.mount_point)
    await guard.thaw()
    assert not is_frozen(ext4_volume.mount_point)


def test_on_request_guard_refuses_a_path_with_a_nul(runtime_dir: str) -> None:
    guard = run_on_request_guard(runtime_dir)
    out, _ = guard.communicate(freeze_request(60, ["/srv/a\0b"]) + "\n")
    assert out.startswith("ERROR /srv/a%00b 22 ")
    assert guard.returncode == 1 and markers(runtime_dir) == []
