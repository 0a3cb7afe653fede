"""Benchmark of the diff-area provider's data path (issue 3's speed section).

    python -m benchmarks.diff_area_bench [--dir DIR] [--mib 256] [--chunk-sizes 16,32,64]

In one run on the same disk: sequential (1 MiB) and random 4 KiB write throughput and
sequential read throughput on the raw loop device for
(a) a loop device on a plain file, (b) the attached volume with no snapshot,
(c) with one snapshot (first writes: every chunk is copied), (d) rewrites of chunks
already copied; then snapshot creation time for a 1 GiB and a 16 GiB volume.
Writes are buffered and end with fsync; reads use O_DIRECT on the loop device (the
backing files' caches are warm in every case). Needs root. Call :func:`run` to get
the figures as a dict; :func:`main` prints them and writes them, with the machine's
load average at start and end, to ``benchmarks/results/diff_area.md``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from typing import Any

from snapd_vss.providers.diff_area import process
from snapd_vss.providers.diff_area.config import FullPolicy, VolumeConfig

MiB = 1024 * 1024
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "diff_area.md")


def seq_write(dev: str, nbytes: int) -> float:
    block = os.urandom(MiB)
    fd = os.open(dev, os.O_WRONLY)
    try:
        start = time.perf_counter()
        for off in range(0, nbytes, MiB):
            os.pwrite(fd, block, off)
        os.fsync(fd)
        return nbytes / MiB / (time.perf_counter() - start)
    finally:
        os.close(fd)


def rand_write(dev: str, nbytes: int, count: int, seed: int = 1) -> float:
    rng = random.Random(seed)
    block = os.urandom(4096)
    offsets = [rng.randrange(nbytes // 4096) * 4096 for _ in range(count)]
    fd = os.open(dev, os.O_WRONLY)
    try:
        start = time.perf_counter()
        for off in offsets:
            os.pwrite(fd, block, off)
        os.fsync(fd)
        return count * 4096 / MiB / (time.perf_counter() - start)
    finally:
        os.close(fd)


def seq_read(dev: str, nbytes: int) -> float:
    import mmap

    buf = mmap.mmap(-1, MiB)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    try:
        start = time.perf_counter()
        for off in range(0, nbytes, MiB):
            os.preadv(fd, [buf], off)
        return nbytes / MiB / (time.perf_counter() - start)
    finally:
        os.close(fd)
        buf.close()


def _image(path: str, size: int) -> str:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


class Attached:
    def __init__(self, root: str, size: int, chunk_size: int, max_bytes: int) -> None:
        self.volume_dir = os.path.join(root, "vol")
        self.run_dir = os.path.join(root, "run")
        image = _image(os.path.join(root, "image"), size)
        VolumeConfig("bench", image, os.path.join(root, "diff"), max_bytes,
                     FullPolicy.DROP_OLDEST_SNAPSHOT, chunk_size).save(self.volume_dir)
        process.start_server(self.volume_dir, self.run_dir)
        self.loop = process.loop_attach(process.device_file(self.run_dir), read_only=False)

    def snapshot(self, snap_id: str) -> float:
        start = time.perf_counter()
        process.call(self.run_dir, "create_snapshot", id=snap_id, created_us=0)
        return time.perf_counter() - start

    def close(self) -> None:
        process.loop_detach(self.loop)
        process.stop_server(self.run_dir)


def measure_set(dev: str, nbytes: int, randoms: int) -> dict[str, float]:
    return {
        "seq_write": seq_write(dev, nbytes),
        "rand_write": rand_write(dev, nbytes, randoms),
        "seq_read": seq_read(dev, nbytes),
    }


def run(workdir: str, mib: int = 256, chunk_sizes: tuple[int, ...] = (16, 32, 64),
        randoms: int = 4000) -> dict[str, Any]:
    nbytes = mib * MiB
    results: dict[str, Any] = {"mib": mib}
    root = tempfile.mkdtemp(prefix="diff-area-bench-", dir=workdir)
    try:
        plain = _image(os.path.join(root, "plain"), nbytes)
        loop = process.loop_attach(plain, read_only=False)
        try:
            results["a_plain_loop"] = measure_set(loop, nbytes, randoms)
        finally:
            process.loop_detach(loop)
        os.unlink(plain)
        for kib in chunk_sizes:
            sub = os.path.join(root, f"c{kib}")
            os.makedirs(sub)
            vol = Attached(sub, nbytes, kib * 1024, 4 * nbytes)
            try:
                results[f"b_no_snapshot_{kib}k"] = measure_set(vol.loop, nbytes, randoms)
                vol.snapshot("s1")
                c = {"seq_write": seq_write(vol.loop, nbytes)}
                vol.snapshot("s2")
                c["rand_write"] = rand_write(vol.loop, nbytes, randoms, seed=2)
                results[f"c_first_writes_{kib}k"] = c
                results[f"d_rewrites_{kib}k"] = {
                    "seq_write": seq_write(vol.loop, nbytes),
                    "rand_write": rand_write(vol.loop, nbytes, randoms, seed=2),
                    "snapshot_read": seq_read(os.path.join(process.mountpoint(vol.run_dir),
                                                           "snap-s1"), nbytes),
                }
            finally:
                vol.close()
            shutil.rmtree(sub, ignore_errors=True)
        for gib in (1, 16):
            sub = os.path.join(root, f"g{gib}")
            os.makedirs(sub)
            vol = Attached(sub, gib * 1024 * MiB, 64 * 1024, 64 * MiB)
            try:
                seq_write(vol.loop, 64 * MiB)
                results[f"snapshot_create_{gib}g_ms"] = vol.snapshot("s") * 1000
            finally:
                vol.close()
            shutil.rmtree(sub, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict[str, Any]) -> str:
    base = results["a_plain_loop"]
    lines = [f"diff-area benchmark, {results['mib']} MiB per pass (MiB/s; ratio vs plain loop)"]
    for key, figures in results.items():
        if not isinstance(figures, dict):
            continue
        cells = []
        for metric, value in figures.items():
            ref = base.get(metric if metric != "snapshot_read" else "seq_read")
            ratio = f" ({value / ref:.0%})" if ref else ""
            cells.append(f"{metric} {value:8.1f}{ratio}")
        lines.append(f"  {key:22s} " + "  ".join(cells))
    for key, value in results.items():
        if key.startswith("snapshot_create"):
            lines.append(f"  {key:22s} {value:.1f} ms")
    return "\n".join(lines)


def conditions() -> str:
    """When and on what: the machine is shared, so the load is part of every figure."""
    uname = os.uname()
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{uname.sysname} {uname.release}, {os.cpu_count()} CPUs; {stamp}; load average {load}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/var/tmp", help="where the images go")
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--chunk-sizes", default="16,32,64", help="KiB, comma separated")
    parser.add_argument("--randoms", type=int, default=4000)
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="also write the figures here as markdown ('' for nowhere)")
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.chunk_sizes.split(","))
    before = conditions()
    text = report(run(args.dir, args.mib, sizes, args.randoms))
    text += f"\n  (start: {before})\n  (end:   {conditions()})"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# diff-area benchmark (`python -m benchmarks.diff_area_bench`)\n\n"
                    f"```\n{text}\n```\n")


if __name__ == "__main__":
    main()
