"""End to end through the real path: server process + FUSE + loop device + ext4."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from snapd_vss.errors import InsufficientStorage
from snapd_vss.providers.diff_area import control, process
from snapd_vss.providers.diff_area.config import FullPolicy, VolumeConfig

pytestmark = pytest.mark.root
MiB = 1024 * 1024


@dataclass
class Vol:
    root: str
    volume_dir: str
    run_dir: str
    mounts: list[str] = field(default_factory=list)
    loops: list[str] = field(default_factory=list)

    @property
    def device_file(self) -> str:
        return process.device_file(self.run_dir)

    def snap_file(self, snap_id: str) -> str:
        return os.path.join(process.mountpoint(self.run_dir), "snap-" + snap_id)

    def loop(self, path: str, *, read_only: bool) -> str:
        dev = process.loop_attach(path, read_only=read_only)
        self.loops.append(dev)
        return dev

    def mount(self, dev: str, name: str, options: str = "") -> str:
        target = os.path.join(self.root, name)
        os.makedirs(target, exist_ok=True)
        argv = ["mount", dev, target] + (["-o", options] if options else [])
        subprocess.run(argv, check=True, capture_output=True)
        self.mounts.append(target)
        return target

    def umount(self, target: str) -> None:
        subprocess.run(["umount", target], check=True, capture_output=True)
        self.mounts.remove(target)

    def snapshot(self, snap_id: str, mnt: str | None = None) -> None:
        if mnt is not None:
            subprocess.run(["fsfreeze", "-f", mnt], check=True)
        try:
            process.call(self.run_dir, "create_snapshot", id=snap_id, created_us=1)
        finally:
            if mnt is not None:
                subprocess.run(["fsfreeze", "-u", mnt], check=True)


@contextlib.contextmanager
def attached(tmp_path: str, size: int, max_bytes: int, policy: FullPolicy) -> Iterator[Vol]:
    root = str(tmp_path)
    image = os.path.join(root, "image")
    with open(image, "wb") as f:
        f.truncate(size)
    vol = Vol(root, os.path.join(root, "vol"), os.path.join(root, "run"))
    VolumeConfig("t", image, os.path.join(root, "diff"), max_bytes, policy, 64 * 1024).save(
        vol.volume_dir
    )
    process.start_server(vol.volume_dir, vol.run_dir)
    try:
        yield vol
    finally:
        for target in reversed(vol.mounts):
            subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        for dev in reversed(vol.loops):
            process.loop_detach(dev)
        process.stop_server(vol.run_dir)


def md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def write_random(path: str, size: int) -> str:
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.md5(data).hexdigest()


def tree(mnt: str) -> dict[str, str]:
    return {name: md5(os.path.join(mnt, name)) for name in sorted(os.listdir(mnt))
            if os.path.isfile(os.path.join(mnt, name))}


def test_ext4_snapshots_read_back_their_point_in_time(tmp_path: str) -> None:
    with attached(tmp_path, 256 * MiB, 128 * MiB, FullPolicy.DROP_OLDEST_SNAPSHOT) as vol:
        dev = vol.loop(vol.device_file, read_only=False)
        subprocess.run(["mkfs.ext4", "-q", dev], check=True)
        live = vol.mount(dev, "live")
        for i in range(4):
            write_random(os.path.join(live, f"f{i}"), (i + 1) * MiB)
        first = tree(live)
        vol.snapshot("one", live)
        write_random(os.path.join(live, "f0"), 3 * MiB)  # overwrite
        os.unlink(os.path.join(live, "f1"))
        write_random(os.path.join(live, "new"), 5 * MiB)
        second = tree(live)
        vol.snapshot("two", live)
        write_random(os.path.join(live, "f2"), 7 * MiB)
        os.sync()

        for snap_id, expected in (("one", first), ("two", second)):
            sdev = vol.loop(vol.snap_file(snap_id), read_only=True)
            smnt = vol.mount(sdev, "snap-" + snap_id, "ro,noload")
            assert tree(smnt) == expected
        status = process.call(vol.run_dir, "status")
        assert [s["id"] for s in status["snapshots"]] == ["one", "two"]
        assert 0 < status["used_bytes"] <= status["max_bytes"]
        with pytest.raises(OSError) as exc:
            os.open(vol.snap_file("one"), os.O_RDWR)
        assert exc.value.errno in (errno.EROFS, errno.EACCES)


def subscribe(run_dir: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(30)
    sock.connect(process.socket_path(run_dir))
    sock.sendall(control.encode({"op": "subscribe"}))
    return sock


def test_full_diff_area_drops_the_oldest_snapshot_and_announces_it(tmp_path: str) -> None:
    with attached(tmp_path, 64 * MiB, 4 * MiB, FullPolicy.DROP_OLDEST_SNAPSHOT) as vol:
        events = subscribe(vol.run_dir)
        reader = events.makefile("rb")
        assert control.decode(reader.readline())["ok"]
        process.call(vol.run_dir, "create_snapshot", id="old", created_us=1)
        fd = os.open(vol.device_file, os.O_RDWR)
        try:
            os.pwrite(fd, os.urandom(3 * MiB), 0)
            process.call(vol.run_dir, "create_snapshot", id="new", created_us=2)
            os.pwrite(fd, os.urandom(3 * MiB), 8 * MiB)  # the live write never fails
        finally:
            os.close(fd)
        event = control.decode(reader.readline())
        assert event["event"] == "snapshot_dropped" and event["id"] == "old"
        assert "maximum" in event["reason"]
        events.close()
        snaps = {s["id"]: s for s in process.call(vol.run_dir, "status")["snapshots"]}
        assert not snaps["old"]["valid"] and snaps["old"]["reason"]
        assert snaps["new"]["valid"]
        assert not os.path.exists(vol.snap_file("old"))


def test_full_diff_area_fail_writes_gives_enospc_and_keeps_snapshots(tmp_path: str) -> None:
    with attached(tmp_path, 64 * MiB, 1 * MiB, FullPolicy.FAIL_WRITES) as vol:
        with open(vol.device_file, "rb") as f:
            before = f.read()
        process.call(vol.run_dir, "create_snapshot", id="s", created_us=1)
        fd = os.open(vol.device_file, os.O_RDWR)
        try:
            with pytest.raises(OSError) as exc:  # 1 MiB of chunks fit, then ENOSPC
                for offset in range(0, 2 * MiB, 64 * 1024):
                    os.pwrite(fd, b"x" * 64 * 1024, offset)
            assert exc.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        assert md5(vol.snap_file("s")) == hashlib.md5(before).hexdigest()
        with pytest.raises(InsufficientStorage):
            process.call(vol.run_dir, "resize", max_bytes=0)  # FAIL_WRITES never drops
        assert [s["valid"] for s in process.call(vol.run_dir, "status")["snapshots"]] == [True]


READER = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 65536)
try:
    os.preadv(fd, [buf], int(sys.argv[2]))
except OSError as e:
    print(e.errno)
    sys.exit(0)
print("ok")
"""


def test_server_death_gives_eio_and_restart_brings_the_volume_back(tmp_path: str) -> None:
    with attached(tmp_path, 128 * MiB, 64 * MiB, FullPolicy.DROP_OLDEST_SNAPSHOT) as vol:
        dev = vol.loop(vol.device_file, read_only=False)
        subprocess.run(["mkfs.ext4", "-q", dev], check=True)
        live = vol.mount(dev, "live")
        expected = write_random(os.path.join(live, "data"), 4 * MiB)
        vol.snapshot("s", live)
        os.sync()
        pid = process.server_pid(vol.run_dir)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        process.stop_pid(pid)
        # I/O on the loop device fails instead of hanging (the timeout would fail the test)
        out = subprocess.run([sys.executable, "-c", READER, dev, str(64 * MiB)],
                             capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout.strip() == str(errno.EIO)
        vol.umount(live)
        vol.loops.remove(dev)
        process.loop_detach(dev)

        process.start_server(vol.volume_dir, vol.run_dir)
        dev = vol.loop(vol.device_file, read_only=False)
        live = vol.mount(dev, "live")
        assert md5(os.path.join(live, "data")) == expected
        snaps = process.call(vol.run_dir, "status")["snapshots"]
        assert [(s["id"], s["valid"]) for s in snaps] == [("s", True)]


def test_kill_during_heavy_writes_keeps_snapshots_exact(tmp_path: str) -> None:
    size = 32 * MiB
    with attached(tmp_path, size, 64 * MiB, FullPolicy.DROP_OLDEST_SNAPSHOT) as vol:
        expected: dict[str, str] = {}
        fd = os.open(vol.device_file, os.O_RDWR)
        try:
            for round_ in range(3):
                os.pwrite(fd, os.urandom(2 * MiB), (round_ * 5 * MiB) % size)
                snap_id = f"s{round_}"
                process.call(vol.run_dir, "create_snapshot", id=snap_id, created_us=round_)
                expected[snap_id] = md5(vol.snap_file(snap_id))
            stop = threading.Event()

            def hammer() -> None:
                rnd = 0
                while not stop.is_set():
                    rnd += 1
                    try:
                        os.pwrite(fd, os.urandom(256 * 1024), (rnd * 777 * 4096) % (size - MiB))
                    except OSError:
                        return

            writers = [threading.Thread(target=hammer) for _ in range(2)]
            for w in writers:
                w.start()
            threading.Event().wait(0.7)
            pid = process.server_pid(vol.run_dir)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            process.stop_pid(pid)
            stop.set()
            for w in writers:
                w.join(timeout=30)
        finally:
            with contextlib.suppress(OSError):  # ENOTCONN once the server is gone
                os.close(fd)
        process.start_server(vol.volume_dir, vol.run_dir)
        for snap_id, digest in expected.items():
            assert md5(vol.snap_file(snap_id)) == digest, snap_id


def test_concurrent_writes_are_grouped_and_snapshots_stay_exact(tmp_path: str) -> None:
    """Many writers at once, O_DIRECT so each write is its own FUSE request, through the
    server's write groups: the snapshot still holds exactly the old bytes. (This kernel
    hands one inode's writes over one at a time, so a group may hold a single write;
    requests queue up for real with AIO, e.g. a loop device in direct-I/O mode.)"""
    size = 16 * MiB
    with attached(tmp_path, size, 64 * MiB, FullPolicy.DROP_OLDEST_SNAPSHOT) as vol:
        original = os.urandom(size)
        with open(vol.device_file, "r+b") as f:
            f.write(original)
            os.fsync(f.fileno())
        vol.snapshot("s")
        block = 64 * 1024
        expected = bytearray(original)
        plan: list[list[tuple[int, bytes]]] = [[] for _ in range(8)]
        for i, off in enumerate(range(0, size, 3 * block + 4096)):  # unaligned to chunks
            data = os.urandom(block)
            plan[i % 8].append((off, data))
            expected[off : off + block] = data
        errors: list[BaseException] = []

        def writer(items: list[tuple[int, bytes]]) -> None:
            import mmap

            buf = mmap.mmap(-1, block)  # O_DIRECT wants an aligned buffer
            fd = os.open(vol.device_file, os.O_WRONLY | os.O_DIRECT)
            try:
                for off, data in items:
                    buf[:] = data
                    os.pwrite(fd, buf, off)
            except BaseException as exc:
                errors.append(exc)
            finally:
                os.close(fd)
                buf.close()

        threads = [threading.Thread(target=writer, args=(items,)) for items in plan]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        status = process.call(vol.run_dir, "status")
        assert 0 < status["write_groups"] <= status["grouped_writes"]
        with open(vol.snap_file("s"), "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(original).digest()
        with open(vol.device_file, "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(expected).digest()
        # a fresh server (journal replay) sees the same snapshot
        process.stop_server(vol.run_dir)
        process.start_server(vol.volume_dir, vol.run_dir)
        with open(vol.snap_file("s"), "rb") as f:
            assert hashlib.sha256(f.read()).digest() == hashlib.sha256(original).digest()
