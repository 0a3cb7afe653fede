"""Restore throughput: the restore engine against ``tar -x`` of the same archive.

    python -m benchmarks.restore_throughput [--mib 256] [--small 2000] [--rounds 5]

On an ext4 loop filesystem: a tree of a few large files and many small ones is put in a
backup set (:func:`snapd_vss.restore.testsets.make_set`), plain and zstd-compressed;
then, each round into a fresh directory on the same filesystem:

- ``tar -x``            the component's archive, as an admin would by hand;
- ``tar -x + sync -f``  the same, then the filesystem flushed (a restore makes its data
                        durable, so this is the like-for-like bare figure);
- ``restore``           the engine (``--to-alternate``): the archive read once, every
                        file written to a temporary name (large ones copied in the
                        kernel, then read back and hashed in another thread) with its
                        sha256 checked and owner/mode/xattrs/times set, one syncfs, the
                        renames, one fsync per directory;
- the same two from the zstd set (``zstd -dc | tar -x`` + sync, and the engine);
- ``verify``            ``BackupSet.verify()`` (every archive read and hashed), which a
                        restore does once before touching anything.

Figures are MiB/s of file content (median of the rounds); the ratio is restore / (tar -x
+ sync). The table is printed and written to ``benchmarks/results/restore_throughput.md``.
Needs root (loop device).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from snapd_vss.backupset import Compression
from snapd_vss.restore.engine import ComponentJob, RestoreEngine
from snapd_vss.restore.safety import ROOT
from snapd_vss.restore.source import open_backup_set
from snapd_vss.restore.testsets import SetSpec, make_set
from snapd_vss.testing.loopdev import loop_filesystem
from snapd_vss.vocabulary import RestoreMethod

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "restore_throughput.md"
AIM = 0.8


def make_tree(root: Path, mib: int, small: int) -> int:
    """Large files (4 x mib/4 MiB minus the small ones) and ``small`` 4 KiB files; bytes."""
    total = 0
    root.mkdir(parents=True)
    block = os.urandom(1 << 20)
    small_bytes = small * 4096
    large = max(0, mib * (1 << 20) - small_bytes) // 4
    for i in range(4):
        with open(root / f"large-{i}.bin", "wb") as f:
            written = 0
            while written < large:
                n = min(len(block), large - written)
                f.write(block[:n])
                written += n
        total += large
    for i in range(small):
        sub = root / f"dir-{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f-{i}.dat").write_bytes(os.urandom(4096))
        total += 4096
    subprocess.run(["sync"], check=True)
    return total


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def tar_x(archive: str, into: Path, flush: bool) -> None:
    into.mkdir()
    if archive.endswith(".zst"):
        script = 'zstd -q -dc "$0" | tar -xf - -C "$1"'
        subprocess.run(["sh", "-c", script, archive, str(into)], check=True)
    else:
        subprocess.run(["tar", "-xf", archive, "-C", str(into)], check=True)
    if flush:
        subprocess.run(["sync", "-f", str(into)], check=True)


def restore(set_path: str, into: Path) -> None:
    source = open_backup_set(set_path)
    source.verified = True  # verify is measured on its own
    (component,) = source.components
    job = ComponentJob(
        component, RestoreMethod.RESTORE_IF_CAN_REPLACE, ROOT, to_alternate=str(into)
    )
    outcome = asyncio.run(RestoreEngine(source).restore(job))
    if not outcome.ok:
        raise RuntimeError(f"restore failed: {outcome.message} {outcome.failed[:3]}")


def verify(set_path: str) -> None:
    open_backup_set(set_path).verify()


def run(mib: int, small: int, rounds: int) -> dict[str, float]:
    with loop_filesystem("ext4", max(512, mib * 4), "/var/tmp") as fs:
        mnt = Path(fs.mount_point)
        nbytes = make_tree(mnt / "data", mib, small)
        set_path = str(mnt / "set")
        make_set(set_path, SetSpec(str(mnt / "data")))
        archive = str(next((Path(set_path) / "data").iterdir()))
        zstd_set = str(mnt / "set-zstd")
        make_set(zstd_set, SetSpec(str(mnt / "data")), compression=Compression.ZSTD)
        zstd_archive = str(next((Path(zstd_set) / "data").iterdir()))
        actions: dict[str, Callable[[Path], None]] = {
            "tar": lambda into: tar_x(archive, into, False),
            "tar_sync": lambda into: tar_x(archive, into, True),
            "restore": lambda into: restore(set_path, into),
            "zstd_tar_sync": lambda into: tar_x(zstd_archive, into, True),
            "zstd_restore": lambda into: restore(zstd_set, into),
        }
        times: dict[str, list[float]] = {k: [] for k in [*actions, "verify"]}
        for r in range(rounds):
            for name, action in actions.items():
                into = mnt / f"{name}-{r}"
                times[name].append(timed(lambda a=action, i=into: a(i)))  # type: ignore[misc]
                shutil.rmtree(into)
                subprocess.run(["sync", "-f", str(mnt)], check=True)
            times["verify"].append(timed(lambda: verify(set_path)))
        mib_total = nbytes / (1 << 20)
        return {k: mib_total / statistics.median(v) for k, v in times.items()} | {"mib": mib_total}


def report(result: dict[str, float], small: int, rounds: int) -> str:
    ratio = result["restore"] / result["tar_sync"]
    zstd_ratio = result["zstd_restore"] / result["zstd_tar_sync"]
    verdict = "meets" if ratio >= AIM else "misses"
    return (
        f"## Restore throughput ({result['mib']:.0f} MiB: 4 large files + {small} x 4 KiB)\n\n"
        f"ext4 on a loop device; MiB/s of file content, medians of {rounds} rounds.\n\n"
        "| what | MiB/s |\n|---|---|\n"
        f"| tar -x | {result['tar']:.0f} |\n"
        f"| tar -x + sync -f | {result['tar_sync']:.0f} |\n"
        "| restore engine (archive read once; temporaries, large ones copied in the kernel "
        "and read back for their sha256, small ones hashed as written; owner/mode/xattrs/"
        f"times; one syncfs; renames; fsync per directory) | {result['restore']:.0f} |\n"
        f"| zstd -dc \\| tar -x + sync -f (zstd set) | {result['zstd_tar_sync']:.0f} |\n"
        f"| restore engine, zstd set | {result['zstd_restore']:.0f} |\n"
        f"| verify (read + hash every archive) | {result['verify']:.0f} |\n\n"
        f"restore / (tar -x + sync): **{ratio:.2f}x** ({verdict} the aim of ≥ {AIM}x); "
        f"zstd set: **{zstd_ratio:.2f}x**\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root for a loop device", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory():
        result = run(args.mib, args.small, args.rounds)
    text = report(result, args.small, args.rounds)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
