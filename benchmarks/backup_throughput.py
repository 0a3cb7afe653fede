"""Backup throughput: ``vssctl backup`` against ``tar`` of the same snapshot tree.

    sudo python -m benchmarks.backup_throughput [--mib 512] [--repeats 3]

In one run, as root: a private bus, a real ``snapd-vssd``, a btrfs volume on a loop
device holding a tree of big and small files (random data, synced). Then, alternately:

- ``vssctl backup --to DEST --volume MOUNT --type copy``: the whole command, end to end —
  session, snapshot, expose, copy into a backup set with sha256 per file, fsync, complete;
- ``vssctl exec MOUNT -- tar -cf OUT -C $VSS_SNAPSHOT_0 . && sync OUT``: tar of the same
  tree in a snapshot made the same way (a fresh btrfs snapshot has its own, cold, page
  cache, so both must read through one), the output synced as the set is;
- for reference, bare ``tar`` + ``sync`` of a persistent snapshot that stays warm.

Throughput is data bytes / wall seconds, medians after one warm-up run of each.
Aim: vssctl backup ≥ 0.8 x tar under ``vssctl exec``. The table is printed
and written to ``benchmarks/results/backup_throughput.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import DaemonTimeouts, VssDaemon
from snapd_vss.testing.loopdev import loop_filesystem

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "backup_throughput.md"
AIM = 0.8
SMALL_FILES = 2000
SMALL_SIZE = 16 * 1024


@dataclass
class Figures:
    data_bytes: int = 0
    files: int = 0
    vssctl_s: list[float] = field(default_factory=list)
    tar_s: list[float] = field(default_factory=list)
    vssctl_copy_s: list[float] = field(default_factory=list)  # vssctl's own copy figure
    exec_tar_s: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return statistics.median(self.exec_tar_s) / statistics.median(self.vssctl_s)


def fill(root: Path, mib: int) -> tuple[int, int]:
    """Big files (8 of them) and SMALL_FILES small ones, ``mib`` MiB in all; synced."""
    small_total = SMALL_FILES * SMALL_SIZE
    big_total = max(mib * (1 << 20) - small_total, 1 << 20)
    data = root / "bench"
    (data / "small").mkdir(parents=True)
    block = os.urandom(1 << 20)
    for n in range(8):
        with open(data / f"big{n}.bin", "wb") as f:
            for _ in range(big_total // 8 // len(block)):
                f.write(block)
    for n in range(SMALL_FILES):
        (data / "small" / f"f{n:05d}.dat").write_bytes(block[n % 64 * 1024 :][:SMALL_SIZE])
    os.sync()
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    return size, 8 + SMALL_FILES


def vssctl(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "snapd_vss.cli", "--bus", bus.address, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"vssctl {' '.join(args)} failed: {done.stderr}")
    return done


def timed_vssctl(bus: PrivateBus, mount: str, dest: Path) -> tuple[float, float]:
    began = time.perf_counter()
    done = vssctl(bus, "backup", "--to", str(dest), "--volume", mount, "--type", "copy", "--json")
    wall = time.perf_counter() - began
    summary = json.loads(done.stdout)
    shutil.rmtree(dest)
    return wall, float(summary["seconds"])


def timed_tar(source: str, out: Path) -> float:
    began = time.perf_counter()
    subprocess.run(["tar", "-cf", str(out), "-C", source, "."], check=True)
    subprocess.run(["sync", str(out)], check=True)
    wall = time.perf_counter() - began
    out.unlink()
    return wall


def timed_exec_tar(bus: PrivateBus, mount: str, out: Path) -> float:
    script = 'tar -cf "$0" -C "$VSS_SNAPSHOT_0" . && sync "$0"'
    began = time.perf_counter()
    vssctl(bus, "exec", mount, "--backup-type", "COPY", "--", "sh", "-c", script, str(out))
    wall = time.perf_counter() - began
    out.unlink()
    return wall


@contextlib.contextmanager
def _temp_dir(prefix: str, where: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def measure(mib: int, repeats: int, workdir: str) -> Figures:
    if os.geteuid() != 0:
        raise PermissionError("the benchmark makes loop devices and mounts btrfs: run it as root")
    figures = Figures()
    size_mb = max(512, mib * 2 + 256)
    with contextlib.ExitStack() as stack:
        temp = stack.enter_context(_temp_dir("snapd-vss-throughput-", workdir))
        bus = stack.enter_context(PrivateBus())
        volume = stack.enter_context(loop_filesystem("btrfs", size_mb, workdir))
        figures.data_bytes, figures.files = fill(Path(volume.mount_point), mib)
        daemon = VssDaemon(bus.address, temp / "daemon", DaemonTimeouts())
        stack.callback(daemon.kill)
        daemon.start()
        created = json.loads(vssctl(bus, "create", volume.mount_point, "--json").stdout)
        snapshot_id = created["snapshots"][0]["id"]
        stack.callback(vssctl, bus, "delete", snapshot_id)
        exposed = vssctl(bus, "expose", snapshot_id).stdout.strip()
        stack.callback(vssctl, bus, "unexpose", snapshot_id)
        timed_tar(exposed, temp / "warm.tar")
        timed_exec_tar(bus, volume.mount_point, temp / "warm-exec.tar")
        timed_vssctl(bus, volume.mount_point, temp / "warm-set")
        for n in range(repeats):
            wall, copy = timed_vssctl(bus, volume.mount_point, temp / f"set{n}")
            figures.vssctl_s.append(wall)
            figures.vssctl_copy_s.append(copy)
            figures.exec_tar_s.append(timed_exec_tar(bus, volume.mount_point, temp / "e.tar"))
            figures.tar_s.append(timed_tar(exposed, temp / f"out{n}.tar"))
    return figures


def _rate(data_bytes: int, seconds: Sequence[float]) -> str:
    return f"{data_bytes / statistics.median(seconds) / (1 << 20):.0f} MiB/s"


def report(figures: Figures, repeats: int) -> str:
    mib = figures.data_bytes / (1 << 20)
    verdict = "meets" if figures.ratio >= AIM else "misses"
    lines = [
        "# Backup throughput: vssctl backup vs tar of the same snapshot tree",
        "",
        f"{mib:.0f} MiB in {figures.files} files (8 big, {SMALL_FILES} of "
        f"{SMALL_SIZE // 1024} KiB) on btrfs on a loop device; medians of {repeats} "
        "alternating runs after one warm-up run each; output on the same disk, fsynced.",
        "",
        "| what | median wall time | throughput |",
        "|---|---|---|",
        f"| `vssctl exec MOUNT -- tar -cf OUT -C $VSS_SNAPSHOT_0 . && sync OUT` "
        f"| {statistics.median(figures.exec_tar_s):.2f} s "
        f"| {_rate(figures.data_bytes, figures.exec_tar_s)} |",
        f"| `vssctl backup --volume MOUNT --type copy` (whole command: session, snapshot, "
        f"copy + sha256, fsync, complete) | {statistics.median(figures.vssctl_s):.2f} s "
        f"| {_rate(figures.data_bytes, figures.vssctl_s)} |",
        f"| vssctl's copy alone (its `seconds`, from session start) "
        f"| {statistics.median(figures.vssctl_copy_s):.2f} s "
        f"| {_rate(figures.data_bytes, figures.vssctl_copy_s)} |",
        f"| reference: bare `tar -cf OUT -C SNAPSHOT . && sync OUT` of a warm persistent "
        f"snapshot | {statistics.median(figures.tar_s):.2f} s "
        f"| {_rate(figures.data_bytes, figures.tar_s)} |",
        "",
        f"vssctl backup / tar (both through a fresh snapshot): **{figures.ratio:.2f}x** "
        f"({verdict} the aim of ≥ {AIM}x).",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=512, help="data on the volume (MiB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default="/var/tmp")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    figures = measure(args.mib, args.repeats, args.workdir)
    text = report(figures, args.repeats)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
