"""A snapshot set over several thin LVs is one point in time where the kernel allows it.

A program that is not a writer counts 1, 2, 3... into a file on LV A and then the same
number into a file on LV B, forever. A set taken while both filesystems are held still
(the coordinator's FIFREEZE across both lvcreates, with LVM's freeze nested inside)
shows A = B or A = B + 1. Snapshots taken each at its own instant show numbers far
apart. `tests/guest/run` runs this on Linux 6.1 (no nesting: the service says so and
warns) and with `--kernel 6.12` (nesting: the set is one point in time).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from conftest import NO_UDEV, sh, snapshot_set, tagged, unmount_below

from snapd_vss import errors
from snapd_vss.freeze.ioctl import is_frozen
from snapd_vss.ipc.client import VssClient
from snapd_vss.model import Volume
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze, decide
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon

LVM_PATH = "/org/snapdvss/Vss1/providers/lvm_thin"
KERNEL_NESTS = decide(CoordinatorFreeze.AUTO).hold
NOT_ONE_INSTANT = "each at its own instant"

COUNTER = """
import os, sys
paths = sys.argv[1:3]
fds = [os.open(p, os.O_RDWR | os.O_CREAT, 0o644) for p in paths]
n = 0
while True:
    n += 1
    for fd in fds:  # first A, then B; one write of a fixed width: all or nothing
        os.pwrite(fd, b"%012d\\n" % n, 0)
        os.fsync(fd)
"""

ThinFs = Callable[..., Volume]


def config(coordinator_freeze: str) -> str:
    return f"""\
[timeouts]
freeze_window_s = 30
commit_window_s = 20

[providers]
enabled = ["lvm_thin"]

[lvm_thin]
coordinator_freeze = {coordinator_freeze}
"""


@pytest.fixture
def start_daemon(
    private_bus: PrivateBus, scratch_vg: str, tmp_path: Path
) -> Iterator[Callable[[str], VssDaemon]]:
    started: list[VssDaemon] = []

    def start(coordinator_freeze: str) -> VssDaemon:
        workdir = tmp_path / f"daemon{len(started)}"
        workdir.mkdir()
        daemon = VssDaemon(private_bus.address, workdir)
        daemon.config_path.write_text(config(coordinator_freeze))
        started.append(daemon)
        return daemon.start(timeout_s=60)

    try:
        yield start
    finally:
        for daemon in started:
            daemon.kill()
            unmount_below(daemon.workdir)
        sh("lvm", "lvremove", *NO_UDEV, "@snapd_vss", check=False)
        for daemon in started:
            shutil.rmtree(daemon.workdir, ignore_errors=True)


@asynccontextmanager
async def counting(a: Path, b: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    """The counting program, running (and past 20) inside the block."""
    proc = subprocess.Popen([sys.executable, "-c", COUNTER, str(a), str(b)])
    try:
        await until(lambda: read(b) > 20, "the counter did not start")
        yield proc
    finally:
        proc.kill()
        proc.wait()


def read(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    return int(text) if text else 0


async def until(condition: Callable[[], bool], message: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        await asyncio.sleep(0.05)


async def counters_in_a_set(
    client: VssClient, a: Volume, b: Volume, exposed: Path
) -> tuple[int, int]:
    """Take a set over A and B while the program counts; the numbers in the two snapshots."""
    counter_a, counter_b = Path(a.mount_point) / "counter", Path(b.mount_point) / "counter"
    async with counting(counter_a, counter_b):
        session, (id_a, id_b) = await snapshot_set(client, [a.mount_point, b.mount_point])
        after = read(counter_b)
        await until(lambda: read(counter_b) > after + 5, "the filesystems stayed frozen")
    path_a = await client.snapshot(id_a).expose(str(exposed / "a"))
    path_b = await client.snapshot(id_b).expose(str(exposed / "b"))
    numbers = read(Path(path_a) / "counter"), read(Path(path_b) / "counter")
    await session.close()
    assert tagged() == []
    return numbers


async def test_the_service_says_whether_it_holds_the_filesystems(
    start_daemon: Callable[[str], VssDaemon],
) -> None:
    daemon = start_daemon('"auto"')
    async with await VssClient.connect(daemon.bus_address) as client:
        hold = await client.get(LVM_PATH, "LvmThin", "CoordinatorFreeze")
        reason = await client.get(LVM_PATH, "LvmThin", "CoordinatorFreezeReason")
    assert hold is KERNEL_NESTS
    assert (reason.startswith("Linux ") and "nests LVM's freeze" in reason) is KERNEL_NESTS
    assert ("cannot let LVM snapshot a filesystem that is already frozen" in reason) is (
        not KERNEL_NESTS
    )


async def test_a_set_over_two_lvs_is_one_point_in_time_where_the_kernel_allows(
    start_daemon: Callable[[str], VssDaemon], thin_fs: ThinFs, tmp_path: Path
) -> None:
    daemon = start_daemon('"auto"')
    a, b = thin_fs("ext4"), thin_fs("xfs")
    async with await VssClient.connect(daemon.bus_address) as client:
        in_a, in_b = await counters_in_a_set(client, a, b, tmp_path)
    print(f"kernel nests freezes: {KERNEL_NESTS}; snapshot of A says {in_a}, of B {in_b}")
    if KERNEL_NESTS:
        assert 0 <= in_a - in_b <= 1, f"A={in_a} B={in_b}: not one point in time"
        assert NOT_ONE_INSTANT not in daemon.log_text()
    else:
        # Linux 6.1: each lvcreate freezes only its own filesystem; the service says so.
        assert NOT_ONE_INSTANT in daemon.log_text()
        assert "cannot let LVM snapshot a filesystem that is already frozen" in daemon.log_text()


async def test_never_takes_each_snapshot_at_its_own_instant(
    start_daemon: Callable[[str], VssDaemon], thin_fs: ThinFs, tmp_path: Path
) -> None:
    """coordinator_freeze = false: what the set looks like without the hold (so the
    test above would notice if the hold were gone)."""
    daemon = start_daemon("false")
    a, b = thin_fs("ext4"), thin_fs("ext4")
    async with await VssClient.connect(daemon.bus_address) as client:
        assert await client.get(LVM_PATH, "LvmThin", "CoordinatorFreeze") is False
        in_a, in_b = await counters_in_a_set(client, a, b, tmp_path)
    print(f"without the hold: snapshot of A says {in_a}, of B {in_b}")
    assert abs(in_a - in_b) >= 2, "the program kept counting between the two lvcreates"
    log = daemon.log_text()
    assert NOT_ONE_INSTANT in log
    assert a.mount_point in log and b.mount_point in log
    assert "coordinator_freeze = false" in log


async def test_always_on_this_kernel(
    start_daemon: Callable[[str], VssDaemon], thin_fs: ThinFs, tmp_path: Path
) -> None:
    """coordinator_freeze = true: held on a kernel that nests; on Linux 6.1 LVM refuses
    (EBUSY), the set fails with LVM's words, and nothing stays frozen or half made."""
    daemon = start_daemon("true")
    a, b = thin_fs("ext4"), thin_fs("xfs")
    async with await VssClient.connect(daemon.bus_address) as client:
        if KERNEL_NESTS:
            in_a, in_b = await counters_in_a_set(client, a, b, tmp_path)
            assert 0 <= in_a - in_b <= 1, f"A={in_a} B={in_b}: not one point in time"
            return
        with pytest.raises(errors.ProviderFailure) as err:
            await snapshot_set(client, [a.mount_point, b.mount_point])
        assert "lvcreate" in str(err.value) and "Device or resource busy" in str(err.value)
        assert not is_frozen(a.mount_point) and not is_frozen(b.mount_point)
        assert tagged() == []
        assert await client.snapshots() == []
