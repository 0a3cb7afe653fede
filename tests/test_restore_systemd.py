"""STOP_RESTORE_START and RESTORE_STOP_START: the writer's unit through systemd's D-Bus API.

systemd is not PID 1 here, so FakeSystemd speaks the same API (StopUnit/StartUnit →
job, JobRemoved, GetUnit, ActiveState) on a private bus, and its units are real
processes that hold the component's files open.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from snapd_vss import errors
from snapd_vss.ipc.systemd_units import SystemdUnits
from snapd_vss.restore.engine import ComponentJob, RestoreEngine
from snapd_vss.restore.safety import ROOT
from snapd_vss.restore.source import open_backup_set
from snapd_vss.restore.testsets import SetSpec, make_set
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.fake_systemd import POLICY, FakeSystemd
from snapd_vss.testing.loopdev import LoopFs
from snapd_vss.vocabulary import RestoreMethod

UNIT = "ledger-test.service"

# The "service": records what it finds in a.txt when it starts, then keeps it open.
SERVICE = """
import sys, time
data, log = sys.argv[1], sys.argv[2]
f = open(data + "/a.txt")
with open(log, "a") as out:
    out.write(f.read().strip() + "\\n")
time.sleep(600)
"""


@pytest.fixture
def systemd_bus() -> Iterator[PrivateBus]:
    with PrivateBus(extra_policy=POLICY) as bus:
        yield bus


@pytest.fixture
async def service(
    systemd_bus: PrivateBus, ext4_volume: LoopFs
) -> AsyncIterator[tuple[FakeSystemd, Path, Path]]:
    data = Path(ext4_volume.mount_point) / "data"
    data.mkdir()
    (data / "a.txt").write_text("backed up\n")
    log = Path(ext4_volume.mount_point) / "service.log"
    command = [sys.executable, "-c", SERVICE, str(data), str(log)]
    async with FakeSystemd(systemd_bus.address, {UNIT: command}) as fake:
        await fake.unit(UNIT).start()
        await wait_for_lines(log, 1)
        yield fake, data, log


async def wait_for_lines(log: Path, count: int) -> list[str]:
    for _ in range(500):
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.02)
    raise AssertionError(f"the service did not start {count} times")


@pytest.mark.parametrize(
    "method", [RestoreMethod.STOP_RESTORE_START, RestoreMethod.RESTORE_STOP_START]
)
async def test_unit_is_stopped_and_started_through_systemd(
    systemd_bus: PrivateBus,
    service: tuple[FakeSystemd, Path, Path],
    tmp_path: Path,
    method: RestoreMethod,
) -> None:
    fake, data, log = service
    make_set(str(tmp_path / "set"), SetSpec(str(data), method=method, service=UNIT))
    (data / "a.txt").write_text("damaged\n")
    source = open_backup_set(str(tmp_path / "set"))
    source.verify()
    async with await SystemdUnits.connect(systemd_bus.address) as units:
        engine = RestoreEngine(source, units=units)
        job = ComponentJob(source.components[0], method, ROOT, service=UNIT)
        outcome = await engine.restore(job)
        assert outcome.ok, outcome
        assert await units.active_state(UNIT) == "active"
    assert fake.history == [("stop", UNIT), ("start", UNIT)]
    assert (data / "a.txt").read_text() == "backed up\n"
    # the restarted service sees the restored file
    assert (await wait_for_lines(log, 2))[1] == "backed up"


async def test_unknown_unit_fails_with_nothing_restored(
    systemd_bus: PrivateBus, service: tuple[FakeSystemd, Path, Path], tmp_path: Path
) -> None:
    fake, data, _ = service
    method = RestoreMethod.STOP_RESTORE_START
    make_set(str(tmp_path / "set"), SetSpec(str(data), method=method, service="nope.service"))
    (data / "a.txt").write_text("damaged\n")
    source = open_backup_set(str(tmp_path / "set"))
    source.verify()
    async with await SystemdUnits.connect(systemd_bus.address) as units:
        with pytest.raises(errors.NotFound):
            await units.stop("nope.service")
        outcome = await RestoreEngine(source, units=units).restore(
            ComponentJob(source.components[0], method, ROOT, service="nope.service")
        )
    assert outcome.error_code == "NotFound" and outcome.status.value == "NONE"
    assert (data / "a.txt").read_text() == "damaged\n"
    assert fake.state(UNIT) == "active"
