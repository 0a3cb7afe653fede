"""A hundred writers at the shipped bound on calls in flight: the daemon's connection holds.

With dbus-fast's own writer, this burst filled the socket buffer and the daemon lost the
bus (EAGAIN treated as fatal); snapd_vss.ipc.bus makes the writer wait instead. Each
writer also sees only its own part of the Backup Components Document.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.backup_bench import WindowRun, WriterHost, one_session, wait_for_count
from snapd_vss.ipc.client import VssClient
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.loopdev import LoopFs

WRITERS = 100


async def test_hundred_writers_full_session_at_default_bound(
    private_bus: PrivateBus, vss_daemon: VssDaemon, btrfs_volume: LoopFs
) -> None:
    assert "max_writer_calls_in_flight" not in vss_daemon.config_path.read_text()  # default 64
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vss-farm-"))
    host = WriterHost.farm(
        WRITERS, btrfs_volume.mount_point, private_bus.address, workdir / "farm.log"
    )
    try:
        async with await VssClient.connect(private_bus.address) as client:
            await wait_for_count(client, WRITERS, host)
            run = WindowRun(writers=WRITERS, hosting="farm")
            for _ in range(2):
                await one_session(client, btrfs_volume, run)
            assert len(run.freeze_ms) == 2
            states = {w.state for w in await client.writers()}
            assert states == {"STABLE"}
        assert vss_daemon.process is not None and vss_daemon.process.poll() is None
    finally:
        host.stop()
