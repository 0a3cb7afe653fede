"""org.snapdvss.Vss1.LvmThin on the running daemon (host: the provider is unavailable here).

The same interface with real pools is tested in the guest (tests/guest/test_lvm_daemon.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from dbus_fast.aio import MessageBus

from snapd_vss import errors
from snapd_vss.ipc.client import VssClient
from snapd_vss.ipc.interfaces import load_interface
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze, decide
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon

PATH = "/org/snapdvss/Vss1/providers/lvm_thin"
CONFIG = """\
[timeouts]
freeze_window_s = 10
commit_window_s = 5

[providers]
enabled = ["btrfs", "lvm_thin"]

[lvm_thin]
data_threshold_percent = 70
metadata_threshold_percent = 65
"""


@pytest.fixture
def lvm_daemon(private_bus: PrivateBus) -> Iterator[VssDaemon]:
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vssd-"))
    daemon = VssDaemon(private_bus.address, workdir)
    workdir.mkdir(exist_ok=True)
    daemon.config_path.write_text(CONFIG)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def client(private_bus: PrivateBus, lvm_daemon: VssDaemon) -> AsyncIterator[VssClient]:
    async with await VssClient.connect(private_bus.address) as c:
        yield c


async def test_lvm_thin_interface_matches_its_xml(
    private_bus: PrivateBus, client: VssClient
) -> None:
    bus = await MessageBus(bus_address=private_bus.address).connect()
    try:
        node = await bus.introspect("org.snapdvss.Vss1", PATH)
    finally:
        bus.disconnect()
    (running,) = [i for i in node.interfaces if i.name == "org.snapdvss.Vss1.LvmThin"]
    expected = load_interface("LvmThin")
    assert [(m.name, m.out_signature) for m in running.methods] == [
        (m.name, m.out_signature) for m in expected.methods
    ]
    assert {p.name: p.signature for p in running.properties} == {
        p.name: p.signature for p in expected.properties
    }


async def test_properties_without_lvm(client: VssClient) -> None:
    props = await client.get_all(PATH, "LvmThin")
    kernel = decide(CoordinatorFreeze.AUTO)  # the daemon's default, on this host's kernel
    assert os.uname().release in kernel.reason
    assert props.pop("CoordinatorFreezeReason") == kernel.reason
    assert props == {
        "Pools": [],
        "DataThresholdPercent": 70.0,  # from the config file: the daemon passes it on
        "MetadataThresholdPercent": 65.0,
        "CoordinatorFreeze": kernel.hold,
        "UnclaimedSnapshots": [],
    }
    provider = await client.provider("lvm_thin").info()
    assert not provider.available
    with pytest.raises(errors.ProviderFailure, match="lvm_thin provider is not available"):
        await client.call(PATH, "LvmThin", "RefreshPools")
