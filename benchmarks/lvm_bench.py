"""Time LVM thin snapshot sets of 1 and 4 thin LVs: bare ``lvcreate -s`` vs the daemon.

Needs device-mapper, so the measuring happens inside the UML guests. On the host (what
``python -m benchmarks`` and ``./run bench`` do) this boots each guest kernel (Linux 6.1,
where each ``lvcreate`` freezes only its own filesystem, and 6.12, where the daemon holds
every filesystem of the set frozen across all of them), runs itself there, prints the
tables and writes them to ``benchmarks/results/lvm.md``::

    python benchmarks/lvm_bench.py [--rounds 9] [--sizes 1,4] [--kernels debian12,6.12]
                                   [--out FILE] [--profile]
    tests/guest/run --exec python benchmarks/lvm_bench.py --in-guest   # the table only

For each set size N it makes N thin LVs with ext4 (16 MiB of data each) and starts
snapd-vssd (lvm_thin provider) on a private bus with one scripted writer per LV whose
data is on that LV. Each round (bare first in even rounds, daemon first in odd ones):

- **bare**: the N snapshots taken one after another with ``lvcreate -s`` (what a
  hand-written script does, without writers); on a kernel where the daemon holds the
  filesystems frozen across the set (Linux 6.8 or later), the bare commands for the same
  guarantee: every filesystem frozen (FIFREEZE in-process), the ``lvcreate``s, thawed;
- **provider**: ``LvmThinProvider.prepare`` then ``commit`` for the N volumes, in-process;
- **daemon**: a backup session with every writer's component selected; the time of the
  ``DoSnapshotSet`` call as the requestor sees it (providers' prepare, the writers'
  PrepareForFreeze/Freeze/Thaw/PostSnapshot, the commits), and the session's freeze and
  commit windows. Closing the session releases the snapshots (not timed).

The overhead is the daemon's DoSnapshotSet beyond the bare commands, in percent of them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: python benchmarks/lvm_bench.py
    sys.path.insert(0, str(REPO))

from snapd_vss.model import SnapshotRecord, Volume  # noqa: E402
from snapd_vss.providers.base import ProviderContext  # noqa: E402
from snapd_vss.providers.lvm_thin import LvmThinProvider  # noqa: E402
from snapd_vss.volumes import resolve_volume  # noqa: E402

VG = "benchvg"
POOL = "pool"
NO_UDEV = ["--yes", "--noudevsync"]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "lvm.md"
BEGIN, END = "<!-- lvm_bench table -->", "<!-- end of lvm_bench table -->"
DAEMON_CONFIG = """\
[timeouts]
freeze_window_s = 60
commit_window_s = 30

[providers]
enabled = ["lvm_thin"]
"""


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
        (mp / "w").mkdir()
        with open(mp / "w" / "payload", "wb") as f:
            f.write(os.urandom(16 << 20))
        volumes.append(resolve_volume(str(mp)))
    return volumes


def teardown(disk: str, top: Path) -> None:
    for mp in sorted(top.iterdir(), reverse=True):
        subprocess.run(["umount", "-l", str(mp)], check=False, capture_output=True)
    subprocess.run(["lvm", "vgremove", "-ff", "--yes", VG], check=False, capture_output=True)
    subprocess.run(["lvm", "pvremove", "-ff", "--yes", disk], check=False, capture_output=True)


def remove_snapshots() -> None:
    subprocess.run(["lvm", "lvremove", *NO_UDEV, "@snapd_vss"], check=False, capture_output=True)


def daemon_holds() -> bool:
    """Whether the daemon (default settings) holds the set's filesystems on this kernel."""
    from snapd_vss.providers.lvm.freezing import CoordinatorFreeze, decide

    return decide(CoordinatorFreeze.AUTO).hold


def bare_round(volumes: list[Volume], hold: bool) -> float:
    """The bare commands for the guarantee the daemon gives on this kernel.

    Without the hold: ``lvcreate -s`` for each LV. With it: every filesystem frozen
    (FIFREEZE, as ``fsfreeze -f`` does, but in-process: no command to start), ``lvcreate
    -s`` for each LV, every filesystem thawed.
    """
    from snapd_vss.freeze.ioctl import freeze_fd, open_mount, thaw_fd

    names = [Path(v.mount_point).name for v in volumes]
    start = time.perf_counter()
    fds = [open_mount(v.mount_point) for v in volumes] if hold else []
    try:
        for fd in fds:
            freeze_fd(fd)
        for i, name in enumerate(names):
            sh("lvm", "lvcreate", *NO_UDEV, "-s", "-n", f"{name}_bare{i}", "--addtag",
               "snapd_vss", f"{VG}/{name}")
    finally:
        for fd in fds:
            thaw_fd(fd)
            os.close(fd)
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


@dataclass
class Samples:
    bare: list[float] = field(default_factory=list)
    prepare: list[float] = field(default_factory=list)
    commit: list[float] = field(default_factory=list)
    daemon: list[float] = field(default_factory=list)
    freeze: list[float] = field(default_factory=list)
    commit_window: list[float] = field(default_factory=list)


async def daemon_round(
    client: object,
    volumes: list[Volume],
    samples: Samples,
    client_times: list[tuple[float, float]] | None = None,
) -> None:
    """One backup session over the volumes, every writer's component selected."""
    from snapd_vss.documents.writer_metadata import parse_writer_metadata
    from snapd_vss.ipc.client import VssClient

    assert isinstance(client, VssClient)
    session = await client.manager.create_backup_session()
    try:
        await session.set_backup_state(True, False, "FULL", False)
        for instance_id, xml in (await session.gather_writer_metadata()).items():
            for c in parse_writer_metadata(xml).components:
                await session.add_component(instance_id, c.logical_path, c.name)
        await session.start_snapshot_set()
        for volume in volumes:
            await session.add_to_snapshot_set(volume.mount_point, "lvm_thin")
        await session.prepare_for_backup()
        start, mono_start = time.perf_counter(), time.monotonic()
        await session.do_snapshot_set()
        samples.daemon.append(time.perf_counter() - start)
        if client_times is not None:
            client_times.append((mono_start, time.monotonic()))
        samples.freeze.append(int(await session.get("FreezeWindowUsec")) / 1e6)
        samples.commit_window.append(int(await session.get("CommitWindowUsec")) / 1e6)
    finally:
        await session.close()  # releases the (non-persistent) snapshots


def start_writers(
    bus_address: str, volumes: list[Volume], logdir: Path
) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=bus_address, PYTHONPATH=str(REPO))
    writers = []
    for i, volume in enumerate(volumes):
        with open(logdir / f"writer{i}.log", "wb") as log:
            writers.append(subprocess.Popen(
                [sys.executable, "-m", "snapd_vss.testing.scripted_writer", "--name", f"bench{i}",
                 "--data", os.path.join(volume.mount_point, "w")],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            ))
    return writers


@contextlib.asynccontextmanager
async def daemon_with_writers(
    volumes: list[Volume], workdir: Path, python: str | None = None
) -> AsyncIterator[tuple[Any, Any]]:
    """snapd-vssd on a private bus with one registered writer per volume, warmed up by one
    session; yields (client, daemon)."""
    from snapd_vss.ipc.client import VssClient
    from snapd_vss.testing.bus import PrivateBus
    from snapd_vss.testing.daemon import VssDaemon

    with PrivateBus() as bus:
        daemon = VssDaemon(bus.address, workdir / "daemon", python=python or sys.executable)
        daemon.workdir.mkdir()
        daemon.config_path.write_text(DAEMON_CONFIG)
        daemon.start(timeout_s=120)
        writers = start_writers(bus.address, volumes, workdir)
        try:
            async with await VssClient.connect(bus.address) as client:
                deadline = time.monotonic() + 60
                while len(await client.writers()) < len(volumes):
                    if time.monotonic() > deadline:
                        raise SystemExit("the benchmark's writers did not register in 60 s")
                    await asyncio.sleep(0.1)
                await daemon_round(client, volumes, Samples())  # warm-up
                yield client, daemon
        finally:
            for w in writers:
                w.kill()
                w.wait()
            daemon.stop()


async def measure(volumes: list[Volume], rounds: int, workdir: Path) -> Samples:
    samples = Samples()
    hold = daemon_holds()
    provider = LvmThinProvider(ProviderContext(str(workdir), str(workdir)), pool_refresh_s=0)
    async with daemon_with_writers(volumes, workdir) as (client, _daemon):
        for i in range(rounds):
            # bare first in even rounds, last in odd ones: no side always follows
            # the other's clean-up
            if i % 2:
                await daemon_round(client, volumes, samples)
            else:
                samples.bare.append(bare_round(volumes, hold))
                remove_snapshots()
            p, c = await provider_round(provider, volumes)
            samples.prepare.append(p)
            samples.commit.append(c)
            remove_snapshots()
            if i % 2:
                samples.bare.append(bare_round(volumes, hold))
                remove_snapshots()
            else:
                await daemon_round(client, volumes, samples)
    return samples


def run(disk: str, sizes: list[int], rounds: int) -> list[dict[str, float | int]]:
    results: list[dict[str, float | int]] = []
    for count in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="lvm-bench-"))
        top = tmp / "mnt"
        top.mkdir()
        try:
            volumes = setup(disk, count, top)
            s = asyncio.run(measure(volumes, rounds, tmp))
        finally:
            teardown(disk, top)
            shutil.rmtree(tmp, ignore_errors=True)
        bare, daemon = statistics.median(s.bare), statistics.median(s.daemon)
        per_round = [(d / b - 1) * 100 for b, d in zip(s.bare, s.daemon, strict=True)]
        results.append({
            "lvs": count,
            "rounds": rounds,
            "bare_lvcreate_s": bare,
            "provider_prepare_s": statistics.median(s.prepare),
            "provider_commit_s": statistics.median(s.commit),
            "daemon_snapshot_set_s": daemon,
            "daemon_freeze_window_s": statistics.median(s.freeze),
            "daemon_commit_window_s": statistics.median(s.commit_window),
            "overhead_percent": (daemon / bare - 1) * 100,
            "bare_min_s": min(s.bare),
            "bare_max_s": max(s.bare),
            "daemon_min_s": min(s.daemon),
            "daemon_max_s": max(s.daemon),
            "round_overhead_median_percent": statistics.median(per_round),
            "round_overhead_min_percent": min(per_round),
            "round_overhead_max_percent": max(per_round),
        })
    return results


def markdown(results: list[dict[str, float | int]]) -> str:
    bare = (
        "`fsfreeze -f` all + `lvcreate -s` each + `fsfreeze -u` all"
        if daemon_holds()
        else "`lvcreate -s` each"
    )
    lines = [
        f"## LVM thin on Linux {os.uname().release}: a snapshot set through snapd-vssd vs bare "
        + bare,
        "",
        f"In the UML guest (Linux {os.uname().release}, dm-thin on a sparse file), one "
        f"scripted writer per LV, medians of {results[0]['rounds'] if results else 0} "
        f"rounds, seconds. {held_note()}",
        "",
        "| thin LVs | bare | provider prepare + commit | daemon DoSnapshotSet "
        "| freeze window | commit window | overhead | per round |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['lvs']} | {r['bare_lvcreate_s']:.3f} "
            f"({r['bare_min_s']:.3f}..{r['bare_max_s']:.3f}) | "
            f"{r['provider_prepare_s']:.3f} + {r['provider_commit_s']:.3f} | "
            f"{r['daemon_snapshot_set_s']:.3f} "
            f"({r['daemon_min_s']:.3f}..{r['daemon_max_s']:.3f}) | "
            f"{r['daemon_freeze_window_s']:.3f} | "
            f"{r['daemon_commit_window_s']:.3f} | {r['overhead_percent']:+.0f}% | "
            f"{r['round_overhead_median_percent']:+.0f}% "
            f"({r['round_overhead_min_percent']:+.0f}..{r['round_overhead_max_percent']:+.0f}%) |"
        )
    lines += [
        "",
        "Overhead: the daemon's DoSnapshotSet (the providers' checks of the pools, the "
        "writers' events, the commits) beyond the bare commands, in percent of them "
        "(aim: under 20%): the medians' ratio, then the median (min..max) of each round's "
        "own ratio, bare and daemon being measured back to back in one round (in turns "
        "which goes first). Times in brackets: fastest and slowest round. "
        "The freeze window is the time writers are frozen; the commit "
        "window the time the snapshots take (with the filesystems held frozen, if they are).",
    ]
    return "\n".join(lines) + "\n"


def held_note() -> str:
    """How the daemon held the set's filesystems on this kernel, and what bare is."""
    if daemon_holds():
        return (
            "The daemon holds the filesystems of the set frozen (FIFREEZE) across all the "
            "`lvcreate`s, LVM's own freeze nesting inside (one LV is left to LVM's freeze): "
            "the set is one point in time. Bare does the same by hand: every filesystem "
            "frozen (the FIFREEZE ioctl in-process, as `fsfreeze -f` does), `lvcreate -s` "
            "for each LV, every filesystem thawed."
        )
    return (
        "This kernel cannot nest LVM's freeze inside the daemon's, so no filesystem is "
        "FIFREEZEd by the daemon: each `lvcreate` freezes its own filesystem for its "
        "instant. Bare: `lvcreate -s` for each LV, one after another."
    )


# ----------------------------------------------------------------- --profile
# Where the time of one DoSnapshotSet goes, daemon side. The daemon is started through a
# wrapper that runs this file with --profiled-daemon: it wraps the coordinator's and the
# provider's steps with wall-clock timers (time.monotonic, which all processes of the
# guest share) and prints one "PROF label start end" line per step to its log.

PROFILED = (
    # (module, class or "", attribute, label); label "@event" = the writer event's name
    ("snapd_vss.coordinator.backup_session", "BackupSession", "_do_snapshot_set", "session"),
    ("snapd_vss.coordinator.snapshot_set", "SnapshotSetRun", "execute", "run"),
    ("snapd_vss.coordinator.snapshot_set", "SnapshotSetRun", "_prepare_providers",
     "prepare_providers"),
    ("snapd_vss.coordinator.snapshot_set", "SnapshotSetRun", "_call", "@event"),
    ("snapd_vss.coordinator.snapshot_set", "SnapshotSetRun", "_commit", "commit_window"),
    ("snapd_vss.coordinator.snapshot_set", "SnapshotSetRun", "_post_snapshot", "post_snapshot"),
    ("snapd_vss.coordinator.snapshot_set", "", "resolve_volume", "resolve_volume"),
    ("snapd_vss.coordinator.snapshots", "SnapshotManager", "begin", "store.begin"),
    ("snapd_vss.coordinator.snapshots", "SnapshotManager", "committed", "store.committed"),
    ("snapd_vss.coordinator.session_base", "SessionCore", "_set_state", "set_state"),
    ("snapd_vss.ipc.caller", "CallerResolver", "current", "caller"),
    ("snapd_vss.providers.lvm_thin", "LvmThinProvider", "prepare", "lvm.prepare"),
    ("snapd_vss.providers.lvm_thin", "LvmThinProvider", "commit", "lvm.commit"),
    ("snapd_vss.providers.lvm.tools", "", "run", "@argv"),
)


def _prof_label(label: str, args: tuple[object, ...]) -> str:
    if label == "@event":
        return "writers." + str(getattr(args[1], "value", args[1]))
    if label == "@argv":
        argv = args[0]
        assert isinstance(argv, list)
        return "exec:" + ":".join(os.path.basename(str(a)) for a in argv[:2])
    return label


def _prof_wrap(func: object, label: str) -> object:
    import functools
    import inspect

    assert callable(func)

    def emit(name: str, start: float) -> None:
        print(f"PROF {name} {start:.6f} {time.monotonic():.6f}", file=sys.stderr, flush=True)

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def timed_async(*args: object, **kwargs: object) -> object:
            start = time.monotonic()
            try:
                return await func(*args, **kwargs)
            finally:
                emit(_prof_label(label, args), start)
        return timed_async

    @functools.wraps(func)
    def timed(*args: object, **kwargs: object) -> object:
        start = time.monotonic()
        try:
            return func(*args, **kwargs)
        finally:
            emit(_prof_label(label, args), start)
    return timed


def profiled_daemon(argv: list[str]) -> int:
    """Run snapd-vssd (``-m snapd_vss.ipc.daemon ARGS``) with the PROFILED steps timed."""
    import importlib

    for module_name, class_name, attr, label in PROFILED:
        module = importlib.import_module(module_name)
        owner = getattr(module, class_name) if class_name else module
        setattr(owner, attr, _prof_wrap(getattr(owner, attr), label))
    # SnapshotSetRun took resolve_volume by name, and tools.run is called by the module
    from snapd_vss.ipc import daemon

    rest = argv[2:] if argv[:2] == ["-m", "snapd_vss.ipc.daemon"] else argv
    return daemon.main(rest)


def profile_report(log_text: str, client: list[tuple[float, float]]) -> str:
    """Median start (from the request) and duration of each step over the rounds."""
    steps: dict[str, list[tuple[float, float]]] = {}
    rounds: list[list[tuple[str, float, float]]] = [[] for _ in client]
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[0] != "PROF":
            continue
        start, end = float(parts[2]), float(parts[3])
        for i, (c_start, c_end) in enumerate(client):
            if c_start <= start <= c_end:
                rounds[i].append((parts[1], start - c_start, end - start))
    for i, entries in enumerate(rounds):
        seen: dict[str, int] = {}
        for name, offset, duration in entries:
            seen[name] = seen.get(name, 0) + 1
            key = name if seen[name] == 1 else f"{name} #{seen[name]}"
            steps.setdefault(key, []).append((offset, duration))
        del i
    total = statistics.median(e - s for s, e in client)
    lines = [f"DoSnapshotSet as the client sees it: median {total * 1000:.1f} ms "
             f"over {len(client)} rounds (min {min(e - s for s, e in client) * 1000:.1f}, "
             f"max {max(e - s for s, e in client) * 1000:.1f})",
             "",
             "| step | starts at (ms) | takes (ms) | rounds |",
             "|---|---:|---:|---:|"]
    ordered = sorted(steps.items(), key=lambda kv: statistics.median(o for o, _ in kv[1]))
    for name, samples in ordered:
        lines.append(
            f"| {name} | {statistics.median(o for o, _ in samples) * 1000:.1f} | "
            f"{statistics.median(d for _, d in samples) * 1000:.1f} | {len(samples)} |"
        )
    return "\n".join(lines) + "\n"


async def profile_rounds(volumes: list[Volume], rounds: int, workdir: Path) -> str:
    wrapper = workdir / "profiled-python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {Path(__file__).resolve()} "
                       "--profiled-daemon \"$@\"\n")
    wrapper.chmod(0o755)
    client_times: list[tuple[float, float]] = []
    async with daemon_with_writers(volumes, workdir, python=str(wrapper)) as (client, daemon):
        for _ in range(rounds):
            await daemon_round(client, volumes, Samples(), client_times)
    return profile_report(daemon.log_text(), client_times)


def profile(disk: str, count: int, rounds: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="lvm-prof-"))
    top = tmp / "mnt"
    top.mkdir()
    try:
        volumes = setup(disk, count, top)
        return asyncio.run(profile_rounds(volumes, rounds, tmp))
    finally:
        teardown(disk, top)
        shutil.rmtree(tmp, ignore_errors=True)


def in_guest(args: argparse.Namespace) -> int:
    if not args.disk:
        print("no scratch disk: run me through tests/guest/run", file=sys.stderr)
        return 2
    if args.profile:
        for count in (int(s) for s in args.sizes.split(",")):
            print(f"{BEGIN}\n### {count} thin LV(s)\n\n{profile(args.disk, count, args.rounds)}"
                  f"{END}", flush=True)
        return 0
    results = run(args.disk, [int(s) for s in args.sizes.split(",")], args.rounds)
    print(f"{BEGIN}\n{markdown(results)}{END}", flush=True)
    return 0


def on_host(args: argparse.Namespace) -> int:
    """Boot each guest kernel, run this file there, print the tables, write them to ``--out``."""
    from snapd_vss.testing.guest import GuestConfig, GuestError, boot

    command = ["python", "benchmarks/lvm_bench.py", "--in-guest",
               "--rounds", str(args.rounds), "--sizes", args.sizes,
               *(["--profile"] if args.profile else [])]
    sections = []
    for kernel in args.kernels.split(","):
        load_before = os.getloadavg()[0]
        try:
            result = boot(GuestConfig(command=command, kernel=kernel))
        except GuestError as exc:
            print(f"cannot boot the guest ({kernel}): {exc}", file=sys.stderr)
            return 2
        try:
            parts = re.findall(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), result.output, re.S)
            if result.exit_code != 0 or not parts:
                print(result.output[-4000:] or result.console[-4000:], file=sys.stderr)
                print(f"the benchmark failed in the guest {kernel} (exit {result.exit_code})")
                return 1
            for part in parts:
                print(part, end="" if args.profile else "\n")
            load = f"host load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
            sections.append(f"{parts[0]}\nGuest run ({kernel}): {result.seconds:.0f} s ({load}).\n")
        finally:
            shutil.rmtree(result.run_dir, ignore_errors=True)
    if args.profile:
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "# LVM thin benchmark\n\n" + "\n".join(sections)
        + "\nThe guests' timings vary with the host's load. `python benchmarks/lvm_bench.py` "
        "(or `./run bench`) makes this file; `--kernels debian12` or `--kernels 6.12` runs one "
        "guest; `python benchmarks/lvm_bench.py --profile` prints where the daemon's time goes.\n"
    )
    print(f"(written to {out})")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--profiled-daemon"]:
        return profiled_daemon(sys.argv[2:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    disks = os.environ.get("SNAPD_VSS_GUEST_DISKS", "").split()
    parser.add_argument("--disk", default=disks[0] if disks else "")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sizes", default="1,4")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--kernels", default="debian12,6.12",
                        help="guest kernels to measure on, in order (debian12, 6.12)")
    parser.add_argument("--in-guest", action="store_true", help="measure here (in the guest)")
    parser.add_argument("--profile", action="store_true",
                        help="time the daemon's steps of DoSnapshotSet (prints, writes nothing)")
    args = parser.parse_args()
    if args.in_guest or os.environ.get("SNAPD_VSS_IN_GUEST") == "1":
        return in_guest(args)
    return on_host(args)


if __name__ == "__main__":
    sys.exit(main())
