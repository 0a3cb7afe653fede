"""Time LVM thin snapshots of 1 and 4 mounted thin LVs: bare ``lvcreate -s`` vs the provider.

Runs inside the UML guest (it wipes the scratch disk)::

    tests/guest/run --exec python benchmarks/lvm_bench.py [--rounds 5] [--json]

For each set size N it makes N thin LVs with ext4 (a little data in each), then, for
each round, times the N snapshots taken one after another with bare ``lvcreate -s``,
and the same through ``LvmThinProvider.commit`` (``prepare``, done before writers
freeze, is timed apart); snapshots are removed
between rounds (not timed). The daemon's figure (a snapshot set through D-Bus, with
writers) is to be added next to these once the daemon runs in the guest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.lvm_thin import LvmThinProvider
from snapd_vss.volumes import resolve_volume

VG = "benchvg"
POOL = "pool"
NO_UDEV = ["--yes", "--noudevsync"]


def sh(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout


def setup(disk: str, count: int, top: Path) -> list[Volume]:
    sh("lvm", "pvcreate", "-ff", "--yes", disk)
    sh("lvm", "vgcreate", VG, disk)
    sh("lvm", "lvcreate", *NO_UDEV, "--type", "thin-pool", "-L", "2G", "-n", POOL, VG)
    volumes = []
    for i in range(count):
        name = f"data{i}"
        sh("lvm", "lvcreate", *NO_UDEV, "-V", "1G", "-T", f"{VG}/{POOL}", "-n", name)
        sh("mkfs.ext4", "-q", f"/dev/{VG}/{name}")
        mp = top / name
        mp.mkdir()
        sh("mount", f"/dev/{VG}/{name}", str(mp))
        with open(mp / "payload", "wb") as f:
            f.write(os.urandom(16 << 20))
        volumes.append(resolve_volume(str(mp)))
    return volumes


def teardown(disk: str, top: Path) -> None:
    for mp in sorted(top.iterdir(), reverse=True):
        subprocess.run(["umount", str(mp)], check=False, capture_output=True)
    subprocess.run(["lvm", "vgremove", "-ff", "--yes", VG], check=False, capture_output=True)
    subprocess.run(["lvm", "pvremove", "-ff", "--yes", disk], check=False, capture_output=True)


def remove_snapshots() -> None:
    subprocess.run(["lvm", "lvremove", *NO_UDEV, "@snapd_vss"], check=False, capture_output=True)


def bare_round(volumes: list[Volume]) -> float:
    names = [Path(v.mount_point).name for v in volumes]
    start = time.perf_counter()
    for i, name in enumerate(names):
        sh("lvm", "lvcreate", *NO_UDEV, "-s", "-n", f"{name}_bare{i}", "--addtag", "snapd_vss",
           f"{VG}/{name}")
    return time.perf_counter() - start


async def provider_round(provider: LvmThinProvider, volumes: list[Volume]) -> tuple[float, float]:
    """(prepare time, commit time) for the set: only commit is inside the freeze window."""
    set_id = str(uuid.uuid4())
    records = [
        SnapshotRecord(id=str(uuid.uuid4()), snapshot_set_id=set_id, volume=v.mount_point,
                       provider=provider.name)
        for v in volumes
    ]
    start = time.perf_counter()
    for rec, vol in zip(records, volumes, strict=True):
        await provider.prepare(rec, vol)
    prepared = time.perf_counter()
    for rec, vol in zip(records, volumes, strict=True):
        await provider.commit(rec, vol)
    return prepared - start, time.perf_counter() - prepared


def run(disk: str, sizes: list[int], rounds: int) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    for count in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            top = Path(tmp) / "mnt"
            top.mkdir()
            try:
                volumes = setup(disk, count, top)
                ctx = ProviderContext(state_dir=tmp, runtime_dir=tmp)
                provider = LvmThinProvider(ctx)
                bare: list[float] = []
                prep: list[float] = []
                commit: list[float] = []
                for _ in range(rounds):
                    bare.append(bare_round(volumes))
                    remove_snapshots()
                    p, c = asyncio.run(provider_round(provider, volumes))
                    prep.append(p)
                    commit.append(c)
                    remove_snapshots()
                results.append({
                    "lvs": count,
                    "rounds": rounds,
                    "bare_lvcreate_s": statistics.median(bare),
                    "provider_prepare_s": statistics.median(prep),
                    "provider_commit_s": statistics.median(commit),
                    "daemon_snapshot_set_s": None,  # added when the daemon runs in the guest
                })
            finally:
                teardown(disk, top)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    disks = os.environ.get("SNAPD_VSS_GUEST_DISKS", "").split()
    parser.add_argument("--disk", default=disks[0] if disks else "")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", default="1,4")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.environ.get("SNAPD_VSS_IN_GUEST") != "1" or not args.disk:
        print("run me in the guest: tests/guest/run --exec python benchmarks/lvm_bench.py",
              file=sys.stderr)
        return 2
    results = run(args.disk, [int(s) for s in args.sizes.split(",")], args.rounds)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['lvs']} thin LV(s), median of {r['rounds']}: "
                  f"bare lvcreate -s {r['bare_lvcreate_s']:.3f} s, "
                  f"provider commit {r['provider_commit_s']:.3f} s "
                  f"(+ prepare {r['provider_prepare_s']:.3f} s before the freeze)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
