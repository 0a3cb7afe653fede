"""A provider that fails in the commit: the requestor gets the provider's named error.

The daemon pauses in the commit window (failpoint ``frozen``); meanwhile the test puts
a file where each btrfs snapshot is to go, so every commit fails. One failing commit or
several at once (concurrent commits), the reply is ``ProviderFailure`` with btrfs's
words, nothing is left behind, and the writers are told OnAbort.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from snapd_vss import errors
from snapd_vss.ipc.client import VssClient
from snapd_vss.providers.btrfs import SNAPSHOT_DIR
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import DaemonTimeouts, VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, wait_for_writers
from snapd_vss.testing.loopdev import LoopFs

NOT_ONE_INSTANT = "each at its own instant"


@pytest.fixture
def paused_daemon(private_bus: PrivateBus, monkeypatch: pytest.MonkeyPatch) -> Iterator[VssDaemon]:
    """snapd-vssd that waits 3 s in the commit window before the providers commit."""
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vssd-commit-"))
    timeouts = DaemonTimeouts(freeze_window_s=30.0, commit_window_s=20.0)
    daemon = VssDaemon(private_bus.address, workdir, timeouts)
    monkeypatch.setenv("SNAPD_VSS_FAILPOINTS", "frozen=3")
    daemon.start()
    monkeypatch.delenv("SNAPD_VSS_FAILPOINTS")
    try:
        yield daemon
    finally:
        daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)


async def wait_for_log(daemon: VssDaemon, text: str, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if text in daemon.log_text():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{text!r} not in the daemon's log:\n{daemon.log_text()}")


@pytest.mark.parametrize("volumes", [1, 2])
async def test_failed_commits_give_the_providers_error(
    private_bus: PrivateBus,
    paused_daemon: VssDaemon,
    loop_fs_factory: Callable[..., LoopFs],
    scripted_writers: WriterFactory,
    volumes: int,
) -> None:
    filesystems = [loop_fs_factory("btrfs") for _ in range(volumes)]
    data = Path(filesystems[0].mount_point) / "app"
    data.mkdir()
    writer = scripted_writers("app", str(data))
    async with await VssClient.connect(private_bus.address) as client:
        await wait_for_writers(client, 1)
        session = await client.manager.create_backup_session("BACKUP")
        metadata = await session.gather_writer_metadata()
        (instance_id,) = metadata
        await session.add_component(instance_id, "files", "app")
        await session.start_snapshot_set()
        ids = [await session.add_to_snapshot_set(fs.mount_point, "btrfs") for fs in filesystems]
        await session.prepare_for_backup()
        doing = asyncio.ensure_future(session.do_snapshot_set())
        await wait_for_log(paused_daemon, "failpoint frozen")
        in_the_way = [
            Path(fs.mount_point) / SNAPSHOT_DIR / snap_id
            for fs, snap_id in zip(filesystems, ids, strict=True)
        ]
        for path in in_the_way:
            path.write_text("in the way\n")
        with pytest.raises(errors.ProviderFailure) as err:
            await doing
        assert "btrfs" in str(err.value) and "File exists" in str(err.value), str(err.value)
        assert await client.snapshots() == []
        assert "abort" in writer.events()
        for path in in_the_way:
            assert path.read_text() == "in the way\n"  # not ours: left alone
        await session.close()
    # Two btrfs volumes are each snapshotted at their own instant; the service says so.
    assert (NOT_ONE_INSTANT in paused_daemon.log_text()) is (volumes > 1)
