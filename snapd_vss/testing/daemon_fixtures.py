"""Pytest fixtures: a real snapd-vssd on a private bus, and scripted writers beside it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapd_vss.demo import WriterProcess as SqliteWriterProcess
from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import DaemonTimeouts, VssDaemon
from snapd_vss.testing.loopdev import LoopFs

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def vss_daemon(private_bus: PrivateBus) -> Iterator[VssDaemon]:
    """snapd-vssd (btrfs provider, short timeouts) on a fresh private bus."""
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vssd-"))
    daemon = VssDaemon(private_bus.address, workdir, DaemonTimeouts())
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class WriterProcess:
    name: str
    process: subprocess.Popen[bytes]
    events_path: Path
    log_path: Path

    def events(self) -> list[str]:
        try:
            return [line.split()[0] for line in self.events_path.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def wait_for_event(self, event: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while event not in self.events():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"writer {self.name} never got {event}; got {self.events()}\n"
                    + self.log_path.read_text(errors="replace")
                )
            time.sleep(0.02)

    async def await_event(self, event: str, timeout_s: float = 20.0) -> None:
        await asyncio.to_thread(self.wait_for_event, event, timeout_s)


WriterFactory = Callable[..., WriterProcess]


@pytest.fixture
async def client(private_bus: PrivateBus, vss_daemon: VssDaemon) -> AsyncIterator[VssClient]:
    """A requestor connection to the ``vss_daemon`` (override it to use another daemon)."""
    async with await VssClient.connect(private_bus.address) as connection:
        yield connection


@pytest.fixture
def scripted_writers(private_bus: PrivateBus) -> Iterator[WriterFactory]:
    """Start scripted writers (snapd_vss.testing.scripted_writer) as real processes."""
    started: list[WriterProcess] = []
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vss-writers-"))

    def start(name: str, data: str, *args: str) -> WriterProcess:
        events = workdir / f"{name}.events"
        log = workdir / f"{name}.log"
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private_bus.address, PYTHONPATH=str(REPO))
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snapd_vss.testing.scripted_writer",
                    "--name",
                    name,
                    "--data",
                    data,
                    "--events",
                    str(events),
                    *args,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        writer = WriterProcess(name, process, events, log)
        started.append(writer)
        return writer

    try:
        yield start
    finally:
        for writer in started:
            if writer.process.poll() is None:
                writer.process.kill()
            writer.process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def sqlite_writer(
    private_bus: PrivateBus, btrfs_volume: LoopFs, tmp_path: Path
) -> Iterator[SqliteWriterProcess]:
    """The example SQLite writer as its own process, its database on ``btrfs_volume``."""
    db = Path(btrfs_volume.mount_point, "ledger", "ledger.db")
    writer = SqliteWriterProcess(db, tmp_path / "sqlite-writer.log", private_bus.address)
    writer.start()
    try:
        yield writer
    finally:
        writer.stop()


async def wait_for_writers(client: VssClient, count: int, timeout_s: float = 20.0) -> None:
    """Poll the Manager until ``count`` writers are registered."""
    deadline = time.monotonic() + timeout_s
    while len(await client.writers()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} writers registered after {timeout_s} s")
        await asyncio.sleep(0.05)
