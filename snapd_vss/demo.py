"""The demo: one application-consistent backup of a live SQLite database, end to end.

    sudo python -m snapd_vss.demo          (what ``./run demo`` runs)

As root, with no system services, it starts everything it needs and removes it again:
a private system-like D-Bus, ``snapd-vssd`` (state in a temporary directory), a btrfs
volume on a loop device, and the example SQLite writer as its own process with its
database on that volume under continuous write load. Then it runs one backup session
the way a backup program would (gather → select the database → snapshot set with the
volume → prepare → DoSnapshotSet → expose → copy the files out of the snapshot → check
the copy → SetBackupSucceeded → BackupComplete → Close) and tells the story, one line
a step. Exit status 0 only when the copy passed every check.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rich.console import Console

from snapd_vss.documents.backup_components import parse_backup_components
from snapd_vss.documents.writer_metadata import Component, FileSpec, parse_writer_metadata
from snapd_vss.errors import Failed, VssError
from snapd_vss.examples.sqlite_writer import LOGICAL_PATH, SqliteWriter, verify_copy
from snapd_vss.ipc.client import BackupSessionProxy, VssClient, WriterInfo
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import DaemonTimeouts, VssDaemon
from snapd_vss.testing.loopdev import LoopFs, loop_filesystem, unmount_all

REPO_ROOT = Path(__file__).resolve().parents[1]
WRITER_NAME = SqliteWriter.name
REGISTER_TIMEOUT_S = 30.0
SESSION_TIMEOUT_S = 120.0
MIN_TRANSACTIONS = 20  # let the load run a little before the backup starts
FROZEN_RE = re.compile(r"frozen at ledger id (\d+)")


class Story:
    """One line per step; colours on a terminal, plain text otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.failures: list[str] = []

    def say(self, label: str, text: str) -> None:
        self.console.print(f"[bold]{label:<10}[/bold] {_escape(text)}")

    def check(self, label: str, passed: bool, text: str) -> bool:
        mark = "[green]PASS[/green]" if passed else "[red]FAIL[/red]"
        self.console.print(f"[bold]{'check':<10}[/bold] {mark} {label}: {_escape(text)}")
        if not passed:
            self.failures.append(label)
        return passed

    def result(self, passed: bool, text: str) -> None:
        mark = "[bold green]OK[/bold green]" if passed else "[bold red]FAILED[/bold red]"
        self.console.print(f"[bold]{'result':<10}[/bold] {mark} {_escape(text)}")


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


# ----- the writer process -------------------------------------------------------------


@dataclass
class WriterProcess:
    """The example SQLite writer, run as its own process."""

    db_path: Path
    log_path: Path
    bus_address: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "snapd_vss.examples.sqlite_writer",
                    "--db",
                    str(self.db_path),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
            )

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def frozen_at(self) -> int | None:
        """The ledger id the writer logged when it froze last, if it did."""
        found = FROZEN_RE.findall(self.log_text())
        return int(found[-1]) if found else None

    def stop(self) -> None:
        """SIGTERM (the writer unregisters and stops its load), then SIGKILL if need be."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# ----- the backup session -------------------------------------------------------------


@dataclass
class Copied:
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


def last_ledger_id(db_path: Path) -> int:
    """The newest committed ledger id of the live database (0 before it exists)."""
    if not db_path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        try:
            row = db.execute("SELECT COALESCE(MAX(id), 0) FROM ledger").fetchone()
        except sqlite3.OperationalError:  # tables not made yet
            return 0
    return int(row[0])


async def wait_for_writer(client: VssClient, writer: WriterProcess) -> WriterInfo:
    """The registration of the SQLite writer, once it is registered and has some load."""
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while True:
        if not writer.alive():
            raise Failed(f"the example writer exited before registering:\n{writer.log_text()}")
        found = [w for w in await client.writers() if w.name == WRITER_NAME]
        if found and await asyncio.to_thread(last_ledger_id, writer.db_path) >= MIN_TRANSACTIONS:
            return found[0]
        if time.monotonic() > deadline:
            raise Failed(
                f"the example writer did not register within {REGISTER_TIMEOUT_S:.0f} s:\n"
                + writer.log_text()
            )
        await asyncio.sleep(0.05)


def spec_files(spec: FileSpec, root: Path, volume: str) -> Iterator[tuple[Path, Path]]:
    """(source in the snapshot, path relative to the volume) for each file ``spec`` names."""
    relative_dir = Path(os.path.relpath(spec.path, volume))
    if relative_dir.parts[:1] == ("..",):
        raise Failed(f"{spec.path} is not on the snapshotted volume {volume}")
    base = root / relative_dir
    if not base.is_dir():
        return
    walker = os.walk(base) if spec.recursive else [(str(base), [], os.listdir(base))]
    for directory, _dirs, names in walker:
        for name in sorted(names):
            source = Path(directory) / name
            if fnmatch.fnmatchcase(name, spec.filespec) and source.is_file():
                yield source, source.relative_to(root)


def copy_component(component: Component, snapshot_root: Path, volume: str, target: Path) -> Copied:
    """Copy every file of ``component`` out of the snapshot mounted at ``snapshot_root``."""
    copied = Copied()
    for spec in component.all_file_specs():
        for source, relative in spec_files(spec, snapshot_root, volume):
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
            copied.files.append(destination)
            copied.bytes += destination.stat().st_size
    return copied


@dataclass
class Demo:
    story: Story
    bus: PrivateBus
    volume: LoopFs
    writer: WriterProcess
    backup_dir: Path

    async def run(self) -> bool:
        async with await VssClient.connect(self.bus.address) as client:
            registration = await wait_for_writer(client, self.writer)
            live_before = await asyncio.to_thread(last_ledger_id, self.writer.db_path)
            self.story.say(
                "writer",
                f"{registration.name!r} (pid {self.writer.pid}) registered, state "
                f"{registration.state}; its load has committed {live_before} transactions",
            )
            session = await client.manager.create_backup_session()
            try:
                return await self.backup(session)
            except BaseException:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await session.abort_backup()
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(10):
                        await session.close()
                raise

    async def backup(self, session: BackupSessionProxy) -> bool:
        story = self.story
        await session.set_backup_state(True, False, "FULL", False)
        documents = {
            iid: parse_writer_metadata(xml)
            for iid, xml in (await session.gather_writer_metadata()).items()
        }
        listed = ", ".join(
            f"{m.name} [{m.instance_name or m.instance_id}] with {len(m.components)} component(s)"
            for m in documents.values()
        )
        story.say("gather", f"{len(documents)} writer(s) found: {listed}")
        instance_id, metadata = next(
            ((iid, m) for iid, m in documents.items() if m.name == WRITER_NAME), ("", None)
        )
        if metadata is None:
            raise Failed(f"GatherWriterMetadata did not list {WRITER_NAME!r}")
        component = next(c for c in metadata.components if c.logical_path == LOGICAL_PATH)
        await session.add_component(instance_id, component.logical_path, component.name)
        files = ", ".join(f"{s.path}/{s.filespec}" for s in component.all_file_specs())
        story.say(
            "select",
            f"component {component.logical_path}/{component.name} "
            f"({component.type.value}): {files}",
        )

        set_id = await session.start_snapshot_set()
        snapshot_id = await session.add_to_snapshot_set(self.volume.mount_point, "")
        story.say("set", f"snapshot set {set_id} with volume {self.volume.mount_point}")
        await session.prepare_for_backup()
        started = time.monotonic()
        await session.do_snapshot_set()
        took_ms = (time.monotonic() - started) * 1000
        freeze_ms = int(await session.get("FreezeWindowUsec")) / 1000
        commit_ms = int(await session.get("CommitWindowUsec")) / 1000
        story.say(
            "snapshot",
            f"DoSnapshotSet took {took_ms:.1f} ms: freeze window {freeze_ms:.1f} ms "
            f"(writer quiet), commit window {commit_ms:.1f} ms (provider snapshot)",
        )
        props = await session.get_snapshot_properties(snapshot_id)
        exposed = await session.client.snapshot(snapshot_id).expose("")
        story.say(
            "expose",
            f"snapshot {snapshot_id} by {props['Provider']} at {props['DevicePath']}, "
            f"mounted read-only at {exposed}",
        )

        copied = await asyncio.to_thread(
            copy_component, component, Path(exposed), self.volume.mount_point, self.backup_dir
        )
        names = ", ".join(str(p.relative_to(self.backup_dir)) for p in copied.files)
        story.say(
            "copy",
            f"{copied.bytes} bytes in {len(copied.files)} file(s) to {self.backup_dir}: {names}",
        )

        document = parse_backup_components(await session.save_as_xml())
        noted = document.component(
            instance_id, component.logical_path, component.name
        ).backup_metadata
        passed = await asyncio.to_thread(self.check_copy, component, noted)

        await session.set_backup_succeeded(
            instance_id, component.logical_path, component.name, passed
        )
        await session.backup_complete()
        await session.close()
        story.say(
            "complete", "SetBackupSucceeded, BackupComplete and Close done; snapshot released"
        )
        live_after = await asyncio.to_thread(last_ledger_id, self.writer.db_path)
        story.say("load", f"the live database kept going meanwhile: now at ledger id {live_after}")
        return passed

    def check_copy(self, component: Component, noted: str) -> bool:
        story = self.story
        db_name = next(s.filespec for s in component.database_files)
        copy_path = (
            self.backup_dir
            / os.path.relpath(component.database_files[0].path, self.volume.mount_point)
            / db_name
        )
        result = verify_copy(copy_path)
        story.check(
            "integrity",
            result.integrity_ok,
            f"PRAGMA integrity_check says {result.integrity_message}",
        )
        story.check(
            "invariant",
            result.total == result.expected_total,
            f"balances add up to {result.total} (expected {result.expected_total})",
        )
        story.check(
            "no gaps",
            result.ledger_rows == result.last_ledger_id,
            f"{result.ledger_rows} ledger rows, last id {result.last_ledger_id}",
        )
        frozen = self.writer.frozen_at()
        story.check(
            "frozen state",
            frozen == result.last_ledger_id,
            f"the writer froze at ledger id {frozen}; the copy holds up to {result.last_ledger_id}",
        )
        match = re.fullmatch(r"last_ledger_id=(\d+)", noted)
        prepared = int(match.group(1)) if match else None
        later = result.last_ledger_id - (prepared or 0)
        story.check(
            "metadata",
            prepared is not None and frozen is not None and prepared <= result.last_ledger_id,
            f"the writer noted {noted!r} in PrepareForBackup (saved in the Backup Components "
            f"Document); the copy has that transaction and the {later} committed between "
            "PrepareForBackup and OnFreeze",
        )
        return not story.failures


# ----- set-up, teardown, signals --------------------------------------------------------


class Interrupted(Exception):
    """SIGTERM (or SIGINT) while setting up or tearing down."""


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _ignore_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while starting something, so it is never half-started
    and unknown to the teardown; raise :class:`Interrupted` afterwards if one came."""
    received: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise Interrupted(signal.Signals(received[0]).name)


def _make_volume(stack: contextlib.ExitStack, size_mb: int, workdir: str) -> LoopFs:
    """A btrfs volume on a loop device; retried, since loop devices are shared with others."""
    for attempt in range(3):
        try:
            return stack.enter_context(loop_filesystem("btrfs", size_mb, workdir))
        except RuntimeError as exc:
            if attempt == 2:
                raise Failed(f"could not make a btrfs volume on a loop device: {exc}") from exc
            time.sleep(0.5)
    raise AssertionError("unreachable")


def _stop_daemon(daemon: VssDaemon) -> None:
    try:
        daemon.stop(timeout_s=20)
    except Failed:
        daemon.kill()


async def _run_with_signals(demo: Demo) -> bool:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with asyncio.timeout(SESSION_TIMEOUT_S):
        return await demo.run()


def run_demo(story: Story, size_mb: int, workdir: str) -> bool:
    """Set everything up, run the backup, tear everything down (also on failure)."""
    with contextlib.ExitStack() as stack:
        try:
            return _set_up_and_run(story, stack, size_mb, workdir)
        finally:
            _ignore_signals()  # let the teardown below finish; main() restores them


def _set_up_and_run(story: Story, stack: contextlib.ExitStack, size_mb: int, workdir: str) -> bool:
    temp = Path(tempfile.mkdtemp(prefix="snapd-vss-demo-"))
    stack.callback(shutil.rmtree, temp, ignore_errors=True)
    stack.callback(unmount_all, str(temp))  # anything left mounted below it
    bus = PrivateBus()
    stack.callback(bus.stop)
    with _signals_deferred():
        bus.start()
    story.say("bus", f"private system bus at {bus.address} (pid {bus.pid})")
    with _signals_deferred():
        volume = _make_volume(stack, size_mb, workdir)
    story.say(
        "volume", f"btrfs on {volume.device} ({volume.image}), mounted at {volume.mount_point}"
    )
    daemon = VssDaemon(bus.address, temp / "daemon", DaemonTimeouts(10.0, 5.0, 10.0, 5.0))
    stack.callback(unmount_all, str(daemon.workdir))  # exposures of an aborted session
    stack.callback(_stop_daemon, daemon)
    with _signals_deferred():
        daemon.start()
    story.say(
        "daemon", f"snapd-vssd (pid {daemon.pid}) READY after {daemon.ready_after_s * 1000:.0f} ms"
    )
    writer = WriterProcess(
        Path(volume.mount_point) / "ledger" / "ledger.db", temp / "writer.log", bus.address
    )
    stack.callback(writer.stop)
    with _signals_deferred():
        writer.start()
    story.say(
        "writer", f"example SQLite writer started (pid {writer.pid}), database {writer.db_path}"
    )
    backup_dir = temp / "backup"
    backup_dir.mkdir()
    demo = Demo(story, bus, volume, writer, backup_dir)
    try:
        passed = asyncio.run(_run_with_signals(demo))
    except asyncio.CancelledError:
        raise Interrupted("SIGTERM") from None
    finally:
        signal.signal(signal.SIGTERM, _raise_interrupted)  # the loop reset it
    story.say("cleanup", "stopping the writer, the daemon and the bus; removing the volume")
    return passed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snapd_vss.demo",
        description="Back up a live SQLite database through snapd-vss, end to end.",
    )
    parser.add_argument("--size-mb", type=int, default=256, help="size of the btrfs image")
    parser.add_argument(
        "--workdir",
        default="/var/tmp",
        help="where the volume's image file goes (default /var/tmp)",
    )
    args = parser.parse_args(argv)
    story = Story()
    if os.geteuid() != 0:
        story.result(False, "the demo makes a loop device and mounts btrfs: run it as root")
        return 2
    previous_int = signal.getsignal(signal.SIGINT)
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        passed = run_demo(story, args.size_mb, args.workdir)
    except (KeyboardInterrupt, Interrupted) as exc:
        story.result(False, f"interrupted ({str(exc) or 'SIGINT'}); everything was cleaned up")
        return 130
    except (VssError, TimeoutError) as exc:
        message = exc.message if isinstance(exc, VssError) else "the backup took too long"
        story.result(False, f"{message}; everything was cleaned up")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
    if passed:
        story.result(
            True, "the copy is intact and transaction-consistent: exactly the frozen state"
        )
        return 0
    story.result(False, f"checks failed: {', '.join(story.failures)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
