"""The diff-area provider through the real daemon, on a private bus, with real FUSE + loop + ext4.

Each test attaches a volume image over D-Bus (org.snapdvss.Vss1.DiffArea), makes ext4 on
the loop device it gets back, mounts it and drives snapshots through backup sessions.
The rig tears down everything it made (mounts, loop devices, the per-volume FUSE servers,
which outlive the daemon by design) even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from snapd_vss import errors
from snapd_vss.freeze.markers import read_markers
from snapd_vss.ipc.client import VssClient, options
from snapd_vss.ipc.interfaces import load_interface
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.diff_area.provider import DiffAreaProvider
from snapd_vss.testing.bus import LocalUser, PrivateBus, run_as
from snapd_vss.testing.daemon import DaemonTimeouts, VssDaemon
from snapd_vss.testing.daemon_fixtures import WriterFactory, wait_for_writers

pytestmark = pytest.mark.root

MiB = 1024 * 1024
PROVIDER_PATH = "/org/snapdvss/Vss1/providers/diff_area"
DIFF_AREA = "DiffArea"
WORKDIR = "/var/tmp"

CONFIG = """\
[timeouts]
freeze_window_s = {freeze_window_s}
commit_window_s = {commit_window_s}
writer_call_s = {writer_call_s}
identify_s = {identify_s}

[providers]
enabled = ["diff_area"]
"""


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr.strip()}"


def _mount_points_under(prefix: str, *, fuse: bool = True) -> list[str]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            mount_point = left.split()[4].replace("\\040", " ")
            if not fuse and right.split()[0].startswith("fuse"):
                continue
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                found.append(mount_point)
    return found


def _loops_backed_under(prefix: str) -> list[str]:
    found = []
    for name in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{name}/loop/backing_file") as f:
                backing = f.read().strip()
        except OSError:
            continue
        if backing.startswith(prefix + "/"):
            found.append("/dev/" + name)
    return found


class Rig:
    """A daemon with the diff_area provider, a workdir, and the cleanup of all of it."""

    def __init__(self, bus: PrivateBus, workdir: Path, timeouts: DaemonTimeouts) -> None:
        self.bus = bus
        self.workdir = workdir
        self.daemon = VssDaemon(bus.address, workdir / "daemon", timeouts)
        self.daemon.workdir.mkdir(parents=True)
        self.daemon.config_path.write_text(CONFIG.format(**vars(timeouts)))
        self.live = workdir / "live"
        self.live.mkdir()
        self.diff_dir = workdir / "diff"
        self.diff_dir.mkdir()

    def image(self, name: str = "volume.img", size: int = 128 * MiB) -> str:
        path = self.workdir / name
        with open(path, "wb") as f:
            f.truncate(size)
        return str(path)

    async def mount_ext4(self, device: str) -> None:
        await asyncio.to_thread(_run, "mkfs.ext4", "-q", "-F", device)
        await asyncio.to_thread(_run, "mount", device, str(self.live))

    def cleanup(self) -> None:
        """Undo everything, each step even if an earlier one failed; then raise the first error."""
        failures: list[BaseException] = []
        for step in (
            self.daemon.kill,
            self._unmount_non_fuse,
            lambda: asyncio.run(
                _detach_all(str(self.daemon.state_dir), str(self.daemon.runtime_dir))
            ),
            self._remove_leftovers,
        ):
            try:
                step()
            except Exception as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def _unmount_non_fuse(self) -> None:
        # not the FUSE servers' own mounts: stopping a server removes its mount
        for mount_point in sorted(_mount_points_under(str(self.workdir), fuse=False), reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)

    def _remove_leftovers(self) -> None:
        for loop in _loops_backed_under(str(self.workdir)):
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
        for mount_point in sorted(_mount_points_under(str(self.workdir)), reverse=True):
            subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


async def _detach_all(state_dir: str, runtime_dir: str) -> None:
    """Stop every FUSE server of the rig (they outlive the daemon by design)."""
    provider = DiffAreaProvider(ProviderContext(state_dir, runtime_dir))
    for loop in _loops_backed_under(runtime_dir):
        with open(f"/sys/block/{os.path.basename(loop)}/ro") as f:
            read_only = f.read().strip() == "1"
        if read_only:  # an exposed snapshot's loop device
            subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)
    for volume in await provider.list_attached():
        with contextlib.suppress(errors.VssError):
            await provider.detach(volume.name, delete_snapshots=True)
    await provider.shutdown()


@pytest.fixture
def rig(private_bus: PrivateBus) -> Iterator[Rig]:
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vss-diffarea-", dir=WORKDIR))
    made = Rig(private_bus, workdir, DaemonTimeouts())
    try:
        made.daemon.start()
        yield made
    finally:
        made.cleanup()


@pytest.fixture
async def client(rig: Rig) -> AsyncIterator[VssClient]:
    async with await VssClient.connect(rig.bus.address) as c:
        yield c


async def attach(client: VssClient, image: str, diff_dir: Path, **opts: Any) -> str:
    device: str = await client.call(
        PROVIDER_PATH, DIFF_AREA, "AttachVolume", image, str(diff_dir), options(opts)
    )
    return device


async def list_volumes(client: VssClient) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = await client.call(PROVIDER_PATH, DIFF_AREA, "ListVolumes")
    return volumes


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


async def write_completes(path: Path, data: bytes, within_s: float = 30.0) -> None:
    """A write + fsync finishes: the filesystem is not frozen (the bound only avoids a hang)."""
    await asyncio.wait_for(asyncio.to_thread(write_file, path, data), within_s)


async def persistent_snapshot(client: VssClient, volume: str) -> str:
    session = await client.manager.create_backup_session("NAS_ROLLBACK")
    await session.gather_writer_metadata()
    await session.start_snapshot_set()
    snap_id = await session.add_to_snapshot_set(volume, "diff_area")
    await session.prepare_for_backup()
    await session.do_snapshot_set()
    await session.close()
    return snap_id


# -- the tests --


async def test_attach_backup_expose_restart(
    rig: Rig, client: VssClient, scripted_writers: WriterFactory
) -> None:
    image = rig.image()
    device = await attach(client, image, rig.diff_dir, max_bytes=64 * MiB)
    assert device.startswith("/dev/loop")
    (volume,) = await list_volumes(client)
    assert volume["Image"] == image and volume["LoopDevice"] == device
    assert volume["MaxBytes"] == 64 * MiB and volume["Policy"] == "DROP_OLDEST_SNAPSHOT"
    assert await client.get(PROVIDER_PATH, DIFF_AREA, "Volumes") == [volume["Name"]]
    with pytest.raises(errors.InvalidArgs, match="already attached"):
        await attach(client, image, rig.diff_dir)
    with pytest.raises(errors.InvalidArgs, match="unknown option"):
        await attach(client, rig.image("other.img"), rig.diff_dir, colour="blue")

    await rig.mount_ext4(device)
    data = rig.live / "w1"
    data.mkdir()
    write_file(data / "data.txt", b"before snapshot\n")
    writer = scripted_writers("w1", str(data), "--annotate", "lsn=7")
    await wait_for_writers(client, 1)

    session = await client.manager.create_backup_session("APP_ROLLBACK")
    await session.set_backup_state(True, False, "FULL", False)
    (instance_id,) = await session.gather_writer_metadata()
    await session.add_component(instance_id, "files", "w1")
    await session.start_snapshot_set()
    snap_id = await session.add_to_snapshot_set(str(data), "")
    await session.prepare_for_backup()
    await session.do_snapshot_set()
    assert await session.get("CommitWindowUsec") > 0
    assert await session.get("FreezeWindowUsec") >= await session.get("CommitWindowUsec")
    await write_completes(data / "data.txt", b"after snapshot\n")  # nothing left frozen
    assert read_markers(str(rig.daemon.runtime_dir)) == []

    props = await session.get_snapshot_properties(snap_id)
    assert props["Provider"] == "diff_area" and props["Volume"] == str(rig.live)
    exposed = await client.snapshot(snap_id).expose()
    assert (Path(exposed) / "w1" / "data.txt").read_bytes() == b"before snapshot\n"
    await client.snapshot(snap_id).unexpose()
    await session.set_backup_succeeded(instance_id, "files", "w1", True)
    await session.backup_complete()
    await session.close()
    assert [e for e in writer.events() if e in ("freeze", "thaw")] == ["freeze", "thaw"]

    # a restart: the attachment and the persistent snapshot come back
    assert rig.daemon.stop() == 0
    rig.daemon.start()
    async with await VssClient.connect(rig.bus.address) as again:
        (volume_again,) = await list_volumes(again)
        assert volume_again["Name"] == volume["Name"]
        assert volume_again["LoopDevice"] == device  # the server kept serving it
        (snapshot,) = await again.snapshots()
        assert snapshot.id == snap_id and snapshot.state == "CREATED"
        exposed = await again.snapshot(snap_id).expose()
        assert (Path(exposed) / "w1" / "data.txt").read_bytes() == b"before snapshot\n"
        assert (data / "data.txt").read_bytes() == b"after snapshot\n"
        with pytest.raises(errors.InvalidState):
            await again.call(PROVIDER_PATH, DIFF_AREA, "DetachVolume", image, options())
        await again.snapshot(snap_id).delete()
        await asyncio.to_thread(_run, "umount", str(rig.live))
        await again.call(PROVIDER_PATH, DIFF_AREA, "DetachVolume", device, options())
        assert await list_volumes(again) == []
        assert await again.get(PROVIDER_PATH, DIFF_AREA, "Volumes") == []
    assert _loops_backed_under(str(rig.daemon.runtime_dir)) == []  # detached: no loop left


class SignalCatcher:
    """Collects org.snapdvss.Vss1.DiffArea.SnapshotDropped signals."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.dropped: list[tuple[str, str]] = []
        self.arrived = asyncio.Event()
        bus.add_message_handler(self._on_message)

    @classmethod
    async def connect(cls, address: str) -> SignalCatcher:
        bus = await MessageBus(bus_address=address).connect()
        catcher = cls(bus)
        rule = "type='signal',interface='org.snapdvss.Vss1.DiffArea',member='SnapshotDropped'"
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
        return catcher

    def _on_message(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.member == "SnapshotDropped":
            self.dropped.append((str(msg.body[0]), str(msg.body[1])))
            self.arrived.set()

    async def wait(self, within_s: float = 30.0) -> None:
        await asyncio.wait_for(self.arrived.wait(), within_s)


async def test_full_diff_area_drops_the_oldest_snapshot_and_says_so(
    rig: Rig, client: VssClient
) -> None:
    device = await attach(
        client, rig.image(), rig.diff_dir, max_bytes=2 * MiB, chunk_size=64 * 1024
    )
    await rig.mount_ext4(device)
    write_file(rig.live / "keep.txt", b"first\n")
    oldest = await persistent_snapshot(client, str(rig.live))
    newest = await persistent_snapshot(client, str(rig.live))
    catcher = await SignalCatcher.connect(rig.bus.address)
    try:
        # far more new chunks than the diff area holds; the live volume must not fail
        await write_completes(rig.live / "big", os.urandom(8 * MiB), within_s=60)
        await catcher.wait()
        first_id, reason = catcher.dropped[0]
        assert first_id == oldest
        assert reason
        for _ in range(100):
            info = await client.snapshot(oldest).info()
            if info.state == "INVALID":
                break
            await asyncio.sleep(0.05)
        assert info.state == "INVALID" and info.state_reason == reason
        assert oldest in rig.daemon.log_text()  # the journal entry
        with pytest.raises(errors.InvalidState):
            await client.snapshot(oldest).expose()
        assert (rig.live / "keep.txt").read_bytes() == b"first\n"
        for snap_id in (oldest, newest):
            await client.snapshot(snap_id).delete()
        assert await client.snapshots() == []
    finally:
        catcher.bus.disconnect()


async def test_resize_and_options(rig: Rig, client: VssClient) -> None:
    image = rig.image()
    await attach(client, image, rig.diff_dir, policy="FAIL_WRITES", chunk_size=16 * 1024)
    (volume,) = await list_volumes(client)
    assert volume["Policy"] == "FAIL_WRITES" and volume["ChunkSize"] == 16 * 1024
    assert volume["MaxBytes"] == 128 * MiB // 10 // (16 * 1024) * (16 * 1024)
    await client.call(
        PROVIDER_PATH, DIFF_AREA, "ResizeDiffArea", volume["Name"], 8 * MiB, options()
    )
    (volume,) = await list_volumes(client)
    assert volume["MaxBytes"] == 8 * MiB
    with pytest.raises(errors.NotFound):
        await client.call(PROVIDER_PATH, DIFF_AREA, "ResizeDiffArea", "/nope", MiB, options())
    with pytest.raises(errors.InvalidArgs, match="policy 'SOMETIMES' is not known"):
        await attach(client, rig.image("b.img"), rig.diff_dir, policy="SOMETIMES")
    with pytest.raises(errors.InvalidArgs, match="chunk size"):
        await attach(client, rig.image("c.img"), rig.diff_dir, chunk_size=3000)
    with pytest.raises(errors.InvalidArgs, match="absolute"):
        await attach(client, "volume.img", rig.diff_dir)
    await client.call(PROVIDER_PATH, DIFF_AREA, "DetachVolume", image, options())
    assert await list_volumes(client) == []


NONROOT_PROBE = r"""
import asyncio, json, sys
from snapd_vss.ipc.client import VssClient, options
from snapd_vss.ipc.interfaces import load_interface
from snapd_vss import errors

async def main(address, image, diff_dir):
    out = {}
    async with await VssClient.connect(address) as client:
        async def attempt(key, coro):
            try:
                await coro
                out[key] = "ok"
            except errors.VssError as exc:
                out[key] = type(exc).__name__
        path = "/org/snapdvss/Vss1/providers/diff_area"
        await attempt("attach", client.call(path, "DiffArea", "AttachVolume", image, diff_dir,
                                            options()))
        await attempt("list", client.call(path, "DiffArea", "ListVolumes"))
        await attempt("detach", client.call(path, "DiffArea", "DetachVolume", image, options()))
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_non_root_user_cannot_attach(
    rig: Rig, client: VssClient, nonroot_user: LocalUser, nonroot_pythonpath: Path
) -> None:
    image = rig.image()
    os.chmod(rig.workdir, 0o755)
    done = await asyncio.to_thread(
        run_as,
        nonroot_user,
        [sys.executable, "-c", NONROOT_PROBE, rig.bus.address, image, str(rig.diff_dir)],
        {"PYTHONPATH": str(nonroot_pythonpath), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "attach": "AccessDenied",
        "list": "AccessDenied",
        "detach": "AccessDenied",
    }
    assert await list_volumes(client) == []


@pytest.fixture
def frozen_rig(private_bus: PrivateBus, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """A rig whose daemon stays 60 s in the commit window, frozen (a failpoint)."""
    workdir = Path(tempfile.mkdtemp(prefix="snapd-vss-diffarea-", dir=WORKDIR))
    timeouts = DaemonTimeouts(freeze_window_s=300, commit_window_s=240)
    made = Rig(private_bus, workdir, timeouts)
    try:
        monkeypatch.setenv("SNAPD_VSS_FAILPOINTS", "frozen=120")
        made.daemon.start()
        monkeypatch.delenv("SNAPD_VSS_FAILPOINTS")
        yield made
    finally:
        made.cleanup()


async def test_daemon_killed_while_frozen_leaves_the_fs_thawed(frozen_rig: Rig) -> None:
    rig = frozen_rig
    async with await VssClient.connect(rig.bus.address) as client:
        device = await attach(client, rig.image(), rig.diff_dir)
        await rig.mount_ext4(device)
        write_file(rig.live / "a.txt", b"before\n")
        session = await client.manager.create_backup_session("NAS_ROLLBACK")
        await session.gather_writer_metadata()
        await session.start_snapshot_set()
        await session.add_to_snapshot_set(str(rig.live), "diff_area")
        await session.prepare_for_backup()
        doing = asyncio.ensure_future(session.do_snapshot_set())
        try:
            for _ in range(600):
                if "failpoint frozen" in rig.daemon.log_text():
                    break
                await asyncio.sleep(0.05)
            assert "failpoint frozen" in rig.daemon.log_text()
            (marker,) = read_markers(str(rig.daemon.runtime_dir))
            assert marker.mounts == (str(rig.live),)

            # the filesystem is frozen now: a write blocks until it is thawed
            finished = threading.Event()

            def blocked_write() -> None:
                write_file(rig.live / "a.txt", b"during\n")
                finished.set()

            writing = asyncio.ensure_future(asyncio.to_thread(blocked_write))
            await asyncio.sleep(0.5)
            assert not finished.is_set(), "the write went through: the fs was not frozen"
            rig.daemon.kill()  # SIGKILL: the guard sees EOF on stdin and thaws
            await asyncio.wait_for(writing, 60)  # well before the guard's 240 s deadline
        finally:
            with contextlib.suppress(errors.VssError):
                await doing
    assert (rig.live / "a.txt").read_bytes() == b"during\n"
    for _ in range(200):
        if not read_markers(str(rig.daemon.runtime_dir)):
            break
        await asyncio.sleep(0.05)
    assert read_markers(str(rig.daemon.runtime_dir)) == []

    rig.daemon.start()  # without the failpoint
    async with await VssClient.connect(rig.bus.address) as client:
        assert await client.snapshots() == []
        (volume,) = await list_volumes(client)
        assert volume["LoopDevice"] == device
        status = await asyncio.to_thread(
            subprocess.run, ["fsfreeze", "-u", str(rig.live)], capture_output=True, check=False
        )
        assert status.returncode != 0  # EINVAL: it is not frozen
        snap_id = await persistent_snapshot(client, str(rig.live))  # works again, no pause
        await client.snapshot(snap_id).delete()


def vssctl(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    argv = [sys.executable, "-m", "snapd_vss.cli", "--bus", bus.address, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, check=False)


async def test_vssctl_volume_commands(rig: Rig, client: VssClient) -> None:
    image = rig.image()
    attached = await asyncio.to_thread(
        vssctl, rig.bus, "volume", "attach", image, "--diff-area", str(rig.diff_dir),
        "--max-size", "16M", "--policy", "FAIL_WRITES", "--chunk-size", "32K",
    )  # fmt: skip
    assert attached.returncode == 0, attached.stderr
    device = attached.stdout.strip()
    assert device.startswith("/dev/loop")

    listed = await asyncio.to_thread(vssctl, rig.bus, "volume", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (volume,) = json.loads(listed.stdout)
    assert volume["image"] == image and volume["loop_device"] == device
    assert volume["max_bytes"] == 16 * MiB and volume["chunk_size"] == 32 * 1024
    assert volume["policy"] == "FAIL_WRITES"
    table = await asyncio.to_thread(vssctl, rig.bus, "volume", "list")
    assert volume["name"] in table.stdout and "16.0M" in table.stdout

    resized = await asyncio.to_thread(
        vssctl, rig.bus, "volume", "resize", volume["name"], "--max-size", "1G"
    )
    assert resized.returncode == 0, resized.stderr
    (volume,) = await list_volumes(client)
    assert volume["MaxBytes"] == 1024 * MiB

    again = await asyncio.to_thread(
        vssctl, rig.bus, "volume", "attach", image, "--diff-area", str(rig.diff_dir)
    )
    assert again.returncode == 3 and "already attached" in again.stderr  # InvalidArgs
    bad = await asyncio.to_thread(
        vssctl, rig.bus, "volume", "attach", image, "--diff-area", ".", "--max-size", "lots"
    )
    assert bad.returncode == 2 and "not a size" in bad.stderr  # a usage error

    detached = await asyncio.to_thread(vssctl, rig.bus, "volume", "detach", device)
    assert detached.returncode == 0, detached.stderr
    missing = await asyncio.to_thread(vssctl, rig.bus, "volume", "detach", image)
    assert missing.returncode == 6, missing.stderr  # NotFound
    assert await list_volumes(client) == []


async def test_running_interface_matches_its_xml(rig: Rig) -> None:
    bus = await MessageBus(bus_address=rig.bus.address).connect()
    try:
        node = await bus.introspect("org.snapdvss.Vss1", PROVIDER_PATH)
    finally:
        bus.disconnect()
    names = [i.name for i in node.interfaces]
    assert "org.snapdvss.Vss1.Provider" in names
    (running,) = [i for i in node.interfaces if i.name == "org.snapdvss.Vss1.DiffArea"]
    shipped = load_interface(DIFF_AREA)

    def shape(iface: Any) -> dict[str, object]:
        return {
            "methods": {
                m.name: (
                    [(a.name, a.signature) for a in m.in_args],
                    [a.signature for a in m.out_args],
                )
                for m in iface.methods
            },
            "properties": {p.name: (p.signature, p.access.value) for p in iface.properties},
            "signals": {s.name: [a.signature for a in s.args] for s in iface.signals},
        }

    assert shape(running) == shape(shipped)


def test_failpoint_spec() -> None:
    from snapd_vss import failpoints

    assert failpoints.parse("frozen=3, other=0.5") == {"frozen": 3.0, "other": 0.5}
    assert failpoints.parse("frozen, =2, x=-1, y=soon, z=1") == {"z": 1.0}  # bad ones: logged
    assert failpoints.parse("") == {}


def spare_guards(parent: int) -> list[int]:
    """Pids of the idle freeze guards (--on-request) the process ``parent`` started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"--on-request" in cmdline:
            found.append(int(entry))
    return found


async def one_spare_guard(daemon_pid: int, within_s: float = 30.0) -> int:
    for _ in range(int(within_s / 0.05)):
        pids = spare_guards(daemon_pid)
        if len(pids) == 1:
            return pids[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"not one spare freeze guard: {spare_guards(daemon_pid)}")


async def test_a_spare_guard_waits_before_and_after_a_set(rig: Rig, client: VssClient) -> None:
    """The freeze is held by the guard started ahead of time; the next one starts after."""
    first = await one_spare_guard(rig.daemon.pid)  # started with the daemon
    await rig.mount_ext4(await attach(client, rig.image(), rig.diff_dir))
    await persistent_snapshot(client, str(rig.live))
    second = await one_spare_guard(rig.daemon.pid)
    assert second != first
    assert not os.path.exists(f"/proc/{first}"), "the spare did not do the freeze"
    assert read_markers(str(rig.daemon.runtime_dir)) == []
    await write_completes(rig.live / "after.txt", b"thawed\n")
