"""A requestor's backup session, as ``vssctl create`` and ``vssctl exec`` run it.

The sequence (DESIGN.md): SetBackupState → GatherWriterMetadata → AddComponent… →
StartSnapshotSet → AddToSnapshotSet… → PrepareForBackup → DoSnapshotSet →
GetSnapshotProperties… → (copy) → SetBackupSucceeded… → BackupComplete → Close.
Each step runs under :func:`doing`, so a failure says which step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from snapd_vss import errors
from snapd_vss.backupset import (
    BackupSet,
    BackupSetWriter,
    BaseRef,
    ComponentRecord,
    Compression,
    Entry,
    EntryType,
    Manifest,
    Selection,
    SnapshotMount,
    SpecKind,
    SpecRecord,
    WriterRecord,
    index_by_path,
    select,
)
from snapd_vss.backupset.archive import zstd_available
from snapd_vss.backupset.manifest import VOLUME_COMPONENT
from snapd_vss.backupset.writer import source_unchanged
from snapd_vss.cli import output
from snapd_vss.cli.selection import SelectedComponent, full_path, is_under, select_components
from snapd_vss.documents import BackupComponents, Component, WriterMetadata, parse_writer_metadata
from snapd_vss.documents.backup_components import utc_timestamp
from snapd_vss.errors import VssError
from snapd_vss.ipc.client import BackupSessionProxy, VssClient
from snapd_vss.vocabulary import BackupType, Context
from snapd_vss.volumes import resolve_volume


class StepFailed(Exception):
    """A step of vssctl's work failed with a domain error."""

    def __init__(self, what: str, error: VssError) -> None:
        super().__init__(f"{what}: {error.message}")
        self.what = what
        self.error = error


@contextmanager
def doing(what: str) -> Iterator[None]:
    """Label domain errors raised inside with what was being done."""
    try:
        yield
    except VssError as error:
        raise StepFailed(what, error) from error


def choose_context(persistent: bool, with_writers: bool) -> Context:
    if persistent:
        return Context.APP_ROLLBACK if with_writers else Context.NAS_ROLLBACK
    return Context.BACKUP if with_writers else Context.FILE_SHARE_BACKUP


def unique_volumes(volumes: Sequence[str]) -> list[str]:
    """The volume arguments as absolute paths, each once, in the order given."""
    seen: dict[str, None] = {}
    for volume in volumes:
        seen.setdefault(os.path.realpath(volume), None)
    return list(seen)


def path_in_snapshot(argument: str, volume: str, root: str) -> str:
    """Where ``argument`` (a path on ``volume``) is inside the snapshot exposed at ``root``."""
    if not root:
        return ""
    relative = os.path.relpath(os.path.realpath(argument), volume) if volume else "."
    if relative == "." or relative.startswith(".."):
        return root
    return os.path.join(root, relative)


@dataclass
class SnapshotSummary:
    """One snapshot of the set, with where the requestor can read it."""

    id: str
    argument: str  # the VOLUME the user named
    volume: str  # the volume's mount point, as the service reports it
    provider: str
    device_path: str
    persistent: bool
    exposed_path: str = ""  # the snapshot's root, when exposed
    path: str = ""  # ``argument``'s place inside the exposed snapshot
    exposed_by_us: bool = False

    @classmethod
    def from_properties(cls, argument: str, props: dict[str, Any]) -> SnapshotSummary:
        summary = cls(
            id=str(props.get("Id", "")),
            argument=argument,
            volume=str(props.get("Volume", "")),
            provider=str(props.get("Provider", "")),
            device_path=str(props.get("DevicePath", "")),
            persistent=bool(props.get("Persistent", False)),
        )
        summary.set_exposed(str(props.get("ExposedPath", "")))
        return summary

    def set_exposed(self, root: str) -> None:
        self.exposed_path = root
        self.path = path_in_snapshot(self.argument, self.volume, root)


@dataclass
class WriterStatus:
    instance_id: str
    name: str
    state: str
    last_error: str
    message: str


@dataclass
class BackupSummary:
    session: str
    context: str
    backup_type: str
    snapshot_set_id: str = ""
    components: list[SelectedComponent] = field(default_factory=list)
    snapshots: list[SnapshotSummary] = field(default_factory=list)
    writers: list[WriterStatus] = field(default_factory=list)
    freeze_window_ms: float = 0.0  # first OnFreeze → last OnThaw
    commit_window_ms: float = 0.0  # the provider commit
    backup_succeeded: bool | None = None


@dataclass
class BackupRun:
    """One backup session on ``client``; call :meth:`close` in a ``finally``."""

    client: VssClient
    volumes: Sequence[str]
    context: Context
    backup_type: BackupType
    provider: str = ""
    session: BackupSessionProxy | None = None
    summary: BackupSummary | None = None
    _arguments: dict[str, str] = field(default_factory=dict)  # snapshot id → argument

    async def snapshot(self) -> BackupSummary:
        """Everything up to and including DoSnapshotSet; returns what was made."""
        with doing("cannot create a backup session"):
            self.session = await self.client.manager.create_backup_session(self.context.value)
        session = self.session
        self.summary = BackupSummary(session.path, self.context.value, self.backup_type.value)
        with doing("cannot set the backup state"):
            await session.set_backup_state(True, False, self.backup_type.value, False)
        if self.context.with_writers:
            self.summary.components = await self._select(session)
        with doing("cannot start the snapshot set"):
            self.summary.snapshot_set_id = await session.start_snapshot_set()
        for volume in unique_volumes(self.volumes):
            with doing(f"cannot add {volume} to the snapshot set"):
                snapshot_id = await session.add_to_snapshot_set(volume, self.provider)
            self._arguments[snapshot_id] = volume
        with doing("the writers could not prepare for the backup"):
            await session.prepare_for_backup()
        with doing("the snapshot set was not created"):
            await session.do_snapshot_set()
        with doing("cannot read the session's properties"):
            session_props = await session.properties()
        self.summary.freeze_window_ms = int(session_props.get("FreezeWindowUsec", 0)) / 1000
        self.summary.commit_window_ms = int(session_props.get("CommitWindowUsec", 0)) / 1000
        for snapshot_id, argument in self._arguments.items():
            with doing(f"cannot read the properties of snapshot {snapshot_id}"):
                props = await session.get_snapshot_properties(snapshot_id)
            props.setdefault("Id", snapshot_id)
            self.summary.snapshots.append(SnapshotSummary.from_properties(argument, props))
        await self.refresh_writer_status()
        return self.summary

    async def _select(self, session: BackupSessionProxy) -> list[SelectedComponent]:
        with doing("cannot gather the writers' metadata"):
            documents = await session.gather_writer_metadata()
        metadata: dict[str, WriterMetadata] = {}
        for instance_id, xml in documents.items():
            with doing(f"the metadata of writer instance {instance_id} is not valid"):
                metadata[instance_id] = parse_writer_metadata(xml, source=instance_id)
        selected = select_components(metadata, self.volumes)
        for component in selected:
            with doing(f"cannot select component {component.label}"):
                await session.add_component(
                    component.instance_id, component.logical_path, component.name
                )
        return selected

    async def refresh_writer_status(self) -> None:
        if self.session is None or self.summary is None or not self.context.with_writers:
            return
        with doing("cannot read the writers' status"):
            rows = await self.session.gather_writer_status()
        self.summary.writers = [WriterStatus(*row) for row in rows]

    async def expose_all(self) -> None:
        """Make every snapshot of the set readable (unless the service already did)."""
        assert self.summary is not None
        for snapshot in self.summary.snapshots:
            if snapshot.exposed_path:
                continue
            with doing(f"cannot expose snapshot {snapshot.id} of {snapshot.volume}"):
                root = await self.client.snapshot(snapshot.id).expose("")
            snapshot.set_exposed(root)
            snapshot.exposed_by_us = True

    async def unexpose_ours(self) -> list[StepFailed]:
        """Undo :meth:`expose_all`; returns the failures instead of raising them."""
        failures: list[StepFailed] = []
        for snapshot in self.summary.snapshots if self.summary else []:
            if not snapshot.exposed_by_us:
                continue
            try:
                with doing(f"cannot unexpose snapshot {snapshot.id}"):
                    await self.client.snapshot(snapshot.id).unexpose()
                snapshot.exposed_by_us = False
            except StepFailed as failure:
                failures.append(failure)
        return failures

    async def complete(self, succeeded: bool) -> None:
        """Record every selected component's outcome, then BackupComplete."""
        assert self.session is not None and self.summary is not None
        for component in self.summary.components:
            with doing(f"cannot record the outcome of {component.label}"):
                await self.session.set_backup_succeeded(
                    component.instance_id, component.logical_path, component.name, succeeded
                )
        with doing("cannot complete the backup"):
            await self.session.backup_complete()
        self.summary.backup_succeeded = succeeded
        await self.refresh_writer_status()

    async def save_as_xml(self) -> str:
        assert self.session is not None
        with doing("cannot save the Backup Components Document"):
            return await self.session.save_as_xml()

    async def close_checked(self) -> None:
        """Unexpose what this run exposed, then close; raises the first failure."""
        failures = await self.unexpose_ours()
        try:
            await self.close()
        except StepFailed as failure:
            failures.append(failure)
        if failures:
            raise failures[0]

    async def close(self) -> None:
        """Close the session (the service aborts an unfinished backup first)."""
        if self.session is None:
            return
        session, self.session = self.session, None
        with doing("cannot close the backup session"):
            await session.close()


# ----- vssctl backup: a complete backup into a backup set ------------------------------

BACKUP_USAGE = (
    "vssctl backup --to DEST [--component WRITER:LOGICAL_PATH[/NAME] ...] [--volume PATH ...]\n"
    "              [--type full|incremental|differential|log|copy] [--base PREVIOUS_SET]\n"
    "              [--compress none|zstd] [--verify] [--json]"
)

BACKUP_DESCRIPTION = """\
Back up writer components (and whole volumes) into a backup set at DEST: a complete
session with the writers, the files copied from the snapshot, fsynced, marked backed up
per component, then BackupComplete. DEST becomes a directory holding manifest.json,
backup-components.xml, writers/*.xml and data/NN-<component>.tar (one POSIX tar per
component, paths relative to the component's directory). Open a tar with
  tar --xattrs --xattrs-include='*' --numeric-owner -xpf DEST/data/01-….tar
or, compressed (--compress zstd), zstd -dc DEST/data/01-….tar.zst | tar … -xpf -.

--component WRITER:LOGICAL_PATH[/NAME] picks a component (WRITER: the writer's name,
instance name, instance id or writer id); --volume PATH backs up everything under PATH
too, and without --component selects the components with files there.
incremental stores the files changed since --base, differential those changed since the
FULL set at the start of --base's chain; both list every file and record the chain."""


@dataclass(frozen=True)
class ComponentChoice:
    """A ``--component`` argument."""

    writer: str
    path: str  # LOGICAL_PATH or LOGICAL_PATH/NAME

    @classmethod
    def parse(cls, text: str) -> ComponentChoice:
        writer, sep, path = text.partition(":")
        if not sep or not writer or not path:
            raise errors.InvalidArgs(
                f"--component {text!r}: write it as WRITER:LOGICAL_PATH[/NAME], "
                "e.g. 'Example SQLite ledger:sqlite/ledger'"
            )
        return cls(writer, path.strip("/"))

    def matches_writer(self, metadata: WriterMetadata, instance_id: str) -> bool:
        return self.writer in (
            metadata.name,
            metadata.instance_name,
            instance_id,
            metadata.writer_id,
        )

    def matches(self, component: Component) -> bool:
        whole = full_path(component)
        return self.path == whole or is_under(component.logical_path, self.path)


def add_backup_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``vssctl backup`` on vssctl's subcommands."""
    parser = commands.add_parser(
        "backup",
        parents=parents,
        help="back up writer components and volumes into a backup set",
        usage=BACKUP_USAGE,
        description=BACKUP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--to", required=True, metavar="DEST", help="the new backup set")
    parser.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="WRITER:LOGICAL_PATH[/NAME]",
        help="a writer component to back up (repeatable)",
    )
    parser.add_argument(
        "--volume", action="append", default=[], metavar="PATH", help="back up PATH whole"
    )
    parser.add_argument(
        "--type",
        dest="backup_type",
        default="full",
        type=str.lower,
        choices=[t.value.lower() for t in BackupType],
        help="what the writers are told and what is stored (default full)",
    )
    parser.add_argument("--base", metavar="PREVIOUS_SET", help="the set to take changes against")
    parser.add_argument(
        "--compress", default="none", choices=[c.value for c in Compression], help="data archives"
    )
    parser.add_argument("--provider", default="", metavar="P", help="btrfs, lvm_thin, diff_area")
    parser.add_argument(
        "--verify", action="store_true", help="read the finished set back and check every file"
    )


def _existing_parent(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.exists(path) and path != "/":
        path = os.path.dirname(path)
    return path


def mount_point_of(path: str) -> str:
    return resolve_volume(_existing_parent(path)).mount_point


def spec_records(component: Component, backup_type: BackupType) -> list[SpecRecord]:
    """A component's file specs; a LOG backup takes only its log files."""
    groups = [(SpecKind.LOG, component.database_log_files)]
    if backup_type is not BackupType.LOG:
        groups = [
            (SpecKind.FILES, component.files),
            (SpecKind.DATABASE, component.database_files),
            *groups,
        ]
    return [
        SpecRecord(kind, spec.path, spec.filespec, spec.recursive)
        for kind, specs in groups
        for spec in specs
    ]


def exclude_records(metadata: WriterMetadata) -> list[SpecRecord]:
    return [SpecRecord(SpecKind.FILES, s.path, s.filespec, s.recursive) for s in metadata.excludes]


@dataclass
class Chosen:
    """A selected writer component with its metadata."""

    selected: SelectedComponent
    component: Component
    metadata: WriterMetadata


@dataclass
class SetBackupRun(BackupRun):
    """A backup session that selects components by name or volume and sets previous stamps."""

    choices: Sequence[ComponentChoice] = ()
    whole_volumes: Sequence[str] = ()
    previous: BackupComponents | None = None
    documents: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, WriterMetadata] = field(default_factory=dict)
    chosen: list[Chosen] = field(default_factory=list)
    uids: dict[str, int] = field(default_factory=dict)  # instance id → the writer's Uid

    async def _select(self, session: BackupSessionProxy) -> list[SelectedComponent]:
        with doing("cannot gather the writers' metadata"):
            self.documents = await session.gather_writer_metadata()
        for instance_id, xml in self.documents.items():
            with doing(f"the metadata of writer instance {instance_id} is not valid"):
                self.metadata[instance_id] = parse_writer_metadata(xml, source=instance_id)
        with doing("cannot list the writers"):
            self.uids = {w.instance_id: w.uid for w in await self.client.writers()}
        self.chosen = self._choose()
        for chosen in self.chosen:
            c = chosen.selected
            with doing(f"cannot select component {c.label}"):
                await session.add_component(c.instance_id, c.logical_path, c.name)
            stamp = self._previous_stamp(c)
            if stamp:
                with doing(f"cannot pass the previous backup stamp of {c.label}"):
                    await session.set_previous_backup_stamp(
                        c.instance_id, c.logical_path, c.name, stamp
                    )
        paths = [
            spec.path
            for chosen in self.chosen
            for spec in spec_records(chosen.component, self.backup_type)
        ]
        with doing("cannot find the volumes of the selected files"):
            mounts = [mount_point_of(p) for p in [*paths, *self.whole_volumes]]
        self.volumes = unique_volumes(mounts)
        if not self.volumes:
            raise StepFailed(
                "nothing to back up",
                errors.InvalidArgs(
                    "the selected components name no files; pick others or add --volume"
                ),
            )
        return [c.selected for c in self.chosen]

    def _choose(self) -> list[Chosen]:
        by_key: dict[tuple[str, str, str], Chosen] = {}
        if self.choices:
            for choice in self.choices:
                found = [
                    Chosen(SelectedComponent(i, c.logical_path, c.name, m.name), c, m)
                    for i, m in self.metadata.items()
                    if choice.matches_writer(m, i)
                    for c in m.components
                    if choice.matches(c)
                ]
                if not found:
                    raise StepFailed(
                        f"cannot select {choice.writer}:{choice.path}",
                        errors.NotFound(
                            f"no registered writer has a component {choice.path!r} under the "
                            f"name {choice.writer!r}; see vssctl list writers"
                        ),
                    )
                by_key.update({_key(f.selected): f for f in found})
        else:
            for selected in select_components(self.metadata, self.whole_volumes):
                metadata = self.metadata[selected.instance_id]
                component = metadata.component(selected.logical_path, selected.name)
                by_key[_key(selected)] = Chosen(selected, component, metadata)
        return [by_key[k] for k in sorted(by_key)]

    def _previous_stamp(self, selected: SelectedComponent) -> str:
        if self.previous is None or self.backup_type not in (
            BackupType.INCREMENTAL,
            BackupType.DIFFERENTIAL,
        ):
            return ""
        writer = self.previous.writer(selected.instance_id)
        if writer is None:
            return ""
        for entry in writer.components:
            if entry.key == (selected.logical_path, selected.name):
                return entry.backup_stamp
        return ""


def _key(selected: SelectedComponent) -> tuple[str, str, str]:
    return (selected.instance_id, selected.logical_path, selected.name)


@dataclass
class ComponentReport:
    label: str
    instance_id: str
    logical_path: str
    name: str
    succeeded: bool
    files_stored: int = 0
    bytes_stored: int = 0
    files_unchanged: int = 0
    error: str = ""
    skipped: list[str] = field(default_factory=list)


@dataclass
class BackupSetSummary:
    path: str
    set_id: str
    backup_type: str
    snapshot_set_id: str
    base_set_id: str
    base_path: str
    components: list[ComponentReport]
    bytes_stored: int
    files_stored: int
    seconds: float
    bytes_per_second: float
    freeze_window_ms: float
    verified: bool
    writers: list[WriterStatus]
    snapshot_seconds: float = 0.0  # session start → snapshot set exposed
    copy_seconds: float = 0.0  # selecting and copying the files, fsync included


class Progress:
    """Bytes copied: a rich bar (bytes, rate, ETA) on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.bar: Any = None
        self._task: Any = None
        self._began = self._last_line = time.monotonic()
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self._task = self.bar.add_task("copying", total=total)
            self.bar.start()

    PLAIN_EVERY_S = 5.0

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self._task, advance=n)
            return
        now = time.monotonic()
        if now - self._last_line >= self.PLAIN_EVERY_S:
            self._last_line = now
            rate = self.done / max(now - self._began, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            self.line(
                f"copied {_mib(self.done)} of {_mib(self.total)} "
                f"({_mib(int(rate))}/s, about {eta:.0f} s left)"
            )

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            print(f"vssctl: {text}", file=self.stream, flush=True)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class SetBuilder:
    """Copies the chosen components (and whole volumes) out of the snapshots into a set."""

    def __init__(
        self,
        run: SetBackupRun,
        writer: BackupSetWriter,
        base_files: Mapping[str, Entry] | None,
    ) -> None:
        self.run = run
        self.writer = writer
        self.base_files = base_files
        self.reports: list[ComponentReport] = []

    def plan(self, mounts: list[SnapshotMount]) -> list[tuple[ComponentRecord, Selection | str]]:
        """Every component's record and selection (or why it cannot be selected)."""
        plans: list[tuple[ComponentRecord, Selection | str]] = []
        taken: set[str] = set()
        for chosen in self.run.chosen:
            specs = spec_records(chosen.component, self.run.backup_type)
            record = ComponentRecord(
                instance_id=chosen.selected.instance_id,
                writer_id=chosen.metadata.writer_id,
                writer_name=chosen.metadata.name,
                logical_path=chosen.component.logical_path,
                name=chosen.component.name,
                type=chosen.component.type.value,
                volume="",
                snapshot_id="",
                original_root="",
                snapshot_root="",
                archive="",
                file_specs=specs,
                excludes=exclude_records(chosen.metadata),
            )
            plans.append((record, self._select(record, mounts, ())))
            plan = plans[-1][1]
            if isinstance(plan, Selection):
                taken |= {f.original for f in plan.files}
        all_excludes = [e for m in self.run.metadata.values() for e in exclude_records(m)]
        for path in unique_volumes(self.run.whole_volumes):
            mount_point = mount_point_of(path)
            record = ComponentRecord(
                instance_id="",
                writer_id="",
                writer_name="",
                logical_path="",
                name=path,
                type=VOLUME_COMPONENT,
                volume=mount_point,
                snapshot_id="",
                original_root="",
                snapshot_root="",
                archive="",
                file_specs=[SpecRecord(SpecKind.VOLUME, path, "*", True)],
                excludes=[
                    *all_excludes,
                    SpecRecord(SpecKind.FILES, mount_point, SNAPSHOT_DIR_NAME, False),
                ],
            )
            plans.append((record, self._select(record, mounts, taken)))
        return plans

    def _select(
        self, record: ComponentRecord, mounts: list[SnapshotMount], taken: set[str] | tuple[()]
    ) -> Selection | str:
        if not record.file_specs:
            return "no file specs for this backup type"
        try:
            selection = select(record.file_specs, record.excludes, mounts, taken)
        except VssError as error:
            return error.message
        record.volume = selection.mount.volume
        record.snapshot_id = selection.mount.snapshot_id
        return selection

    def to_store(self, selection: Selection) -> int:
        """Bytes of ``selection`` that will be stored (the rest is unchanged since the base)."""
        total = 0
        for source in selection.files:
            if source.type is not EntryType.FILE:
                continue
            base = (self.base_files or {}).get(source.original)
            if base is None or not source_unchanged(source, base):
                total += source.stat.st_size
        return total

    def copy(self, record: ComponentRecord, plan: Selection | str, progress: Progress) -> None:
        """Copy one component (in a worker thread) and report it."""
        if isinstance(plan, str):
            record.succeeded, record.error = False, plan
            self.writer.manifest.components.append(record)
            report = ComponentReport(record.label, *record.key, succeeded=False, error=plan)
        else:
            result = self.writer.add_component(record, plan, self.base_files, progress.advance)
            report = ComponentReport(
                record.label,
                *record.key,
                succeeded=record.succeeded,
                files_stored=result.stored_files,
                bytes_stored=result.stored_bytes,
                files_unchanged=result.unchanged_files,
                error=record.error,
                skipped=result.skipped,
            )
        self.reports.append(report)
        if report.succeeded:
            progress.line(
                f"{report.label}: {report.files_stored} file(s), {_mib(report.bytes_stored)} "
                f"stored, {report.files_unchanged} unchanged"
            )
        else:
            progress.line(f"{report.label}: FAILED: {report.error}")


SNAPSHOT_DIR_NAME = ".snapd-vss"  # where the btrfs provider keeps its snapshots


def open_base(args: argparse.Namespace, backup_type: BackupType) -> BackupSet | None:
    """The set to compare against: --base, or for differential the FULL of its chain."""
    needs_base = backup_type in (BackupType.INCREMENTAL, BackupType.DIFFERENTIAL)
    if not args.base:
        if needs_base:
            raise StepFailed(
                f"a {backup_type.value.lower()} backup needs a base",
                errors.InvalidArgs("name the previous backup set with --base PREVIOUS_SET"),
            )
        return None
    with doing(f"cannot use {args.base} as the base set"):
        base = BackupSet.open(args.base)
        if backup_type is BackupType.DIFFERENTIAL:
            base = base.last_full()
        base.backup_components()
    return base


def new_manifest(
    backup_type: BackupType, compression: Compression, base: BackupSet | None, dest: str
) -> Manifest:
    manifest = Manifest(
        set_id=str(uuid.uuid4()),
        created_at=utc_timestamp(),
        backup_type=backup_type,
        compression=compression,
    )
    if base is not None:
        manifest.base = BaseRef(
            set_id=base.id,
            backup_type=base.backup_type,
            path=base.path,
            relative_path=os.path.relpath(base.path, os.path.abspath(dest)),
        )
    return manifest


async def cmd_backup(client: VssClient, args: argparse.Namespace) -> int:
    """``vssctl backup``: see BACKUP_DESCRIPTION."""
    backup_type = BackupType(args.backup_type.upper())
    compression = Compression(args.compress)
    if compression is Compression.ZSTD and (why := zstd_available()):
        raise StepFailed(
            "cannot compress with zstd", errors.InvalidArgs(f"{why}; use --compress none")
        )
    if not args.component and not args.volume:
        raise StepFailed(
            "nothing to back up",
            errors.InvalidArgs("name components with --component or volumes with --volume"),
        )
    choices = [ComponentChoice.parse(text) for text in args.component]
    base = open_base(args, backup_type)
    started = time.monotonic()
    run = SetBackupRun(
        client,
        [],
        Context.BACKUP,
        backup_type,
        args.provider,
        choices=choices,
        whole_volumes=[os.path.abspath(v) for v in args.volume],
        previous=base.backup_components() if base is not None else None,
    )
    manifest = new_manifest(backup_type, compression, base, args.to)
    writer: BackupSetWriter | None = None
    progress: Progress | None = None
    committed = ""
    try:
        summary = await run.snapshot()
        manifest.snapshot_set_id = summary.snapshot_set_id
        await run.expose_all()
        snapshot_done = time.monotonic()
        with doing(f"cannot create the backup set at {args.to}"):
            writer = BackupSetWriter(args.to, manifest)
        for instance_id, xml in sorted(run.documents.items()):
            m = run.metadata[instance_id]
            writer.add_writer(
                WriterRecord(
                    instance_id,
                    m.writer_id,
                    m.name,
                    m.instance_name,
                    "",
                    uid=run.uids.get(instance_id),
                ),
                xml,
            )
        mounts = [SnapshotMount(s.volume, s.exposed_path, s.id) for s in summary.snapshots]
        base_files = index_by_path(base.components) if base is not None else None
        if backup_type is BackupType.LOG:
            base_files = None
        builder = SetBuilder(run, writer, base_files)
        plans = await asyncio.to_thread(builder.plan, mounts)
        total = sum(builder.to_store(p) for _, p in plans if isinstance(p, Selection))
        progress = Progress(total)
        for record, plan in plans:
            await asyncio.to_thread(builder.copy, record, plan, progress)
        progress.stop()
        copy_done = time.monotonic()
        for failure in await run.unexpose_ours():
            note_line(failure)
        await complete_per_component(run, builder.reports)
        writer.set_backup_components(await run.save_as_xml())
        committed = await asyncio.to_thread(writer.commit)
    except BaseException:
        if progress is not None:
            progress.stop()
        if writer is not None and not committed:
            writer.abort()
        await close_quietly(run)
        raise
    await run.close_checked()
    verified = False
    if args.verify:
        with doing(f"the backup set at {committed} does not verify"):
            await asyncio.to_thread(BackupSet.open(committed).verify, allow_outside_links=True)
        verified = True
    result = _summary(committed, manifest, summary, builder.reports, started, verified)
    result.writers = summary.writers
    result.snapshot_seconds = round(snapshot_done - started, 3)
    result.copy_seconds = round(copy_done - snapshot_done, 3)
    if args.json:
        output.print_json(result)
    else:
        print_set_summary(result, sys.stdout)
    return 0 if all(r.succeeded for r in builder.reports) else 1


async def complete_per_component(run: SetBackupRun, reports: list[ComponentReport]) -> None:
    """SetBackupSucceeded per writer component (as its copy went), then BackupComplete."""
    assert run.session is not None and run.summary is not None
    for report in reports:
        if not report.instance_id:
            continue  # a whole volume: no writer to tell
        with doing(f"cannot record the outcome of {report.label}"):
            await run.session.set_backup_succeeded(
                report.instance_id, report.logical_path, report.name, report.succeeded
            )
    with doing("cannot complete the backup"):
        await run.session.backup_complete()
    run.summary.backup_succeeded = all(r.succeeded for r in reports)
    await run.refresh_writer_status()


def note_line(failure: StepFailed) -> None:
    print(f"vssctl: {failure.what}: {failure.error.message}", file=sys.stderr, flush=True)


async def close_quietly(run: BackupRun) -> None:
    for failure in await run.unexpose_ours():
        note_line(failure)
    try:
        await run.close()
    except StepFailed as failure:
        note_line(failure)


def _summary(
    path: str,
    manifest: Manifest,
    summary: BackupSummary,
    reports: list[ComponentReport],
    started: float,
    verified: bool,
) -> BackupSetSummary:
    seconds = time.monotonic() - started
    stored = sum(r.bytes_stored for r in reports)
    return BackupSetSummary(
        path=path,
        set_id=manifest.set_id,
        backup_type=manifest.backup_type.value,
        snapshot_set_id=manifest.snapshot_set_id,
        base_set_id=manifest.base.set_id if manifest.base else "",
        base_path=manifest.base.path if manifest.base else "",
        components=reports,
        bytes_stored=stored,
        files_stored=sum(r.files_stored for r in reports),
        seconds=round(seconds, 3),
        bytes_per_second=round(stored / seconds, 1) if seconds else 0.0,
        freeze_window_ms=summary.freeze_window_ms,
        verified=verified,
        writers=[],
    )


def print_set_summary(result: BackupSetSummary, out: Any) -> None:
    base = f", against {result.base_set_id} ({result.base_path})" if result.base_set_id else ""
    out.write(f"Backup set {result.set_id} ({result.backup_type}{base}) at {result.path}\n")
    out.write(
        f"{result.files_stored} file(s), {_mib(result.bytes_stored)} stored in "
        f"{result.seconds:.1f} s ({_mib(int(result.bytes_per_second))}/s); freeze window "
        f"{result.freeze_window_ms:.1f} ms{'; verified' if result.verified else ''}\n"
    )
    output.print_listing(
        output.Listing(
            ("COMPONENT", "RESULT", "STORED", "BYTES", "UNCHANGED"),
            [
                (
                    r.label,
                    "ok" if r.succeeded else f"FAILED: {r.error}",
                    str(r.files_stored),
                    str(r.bytes_stored),
                    str(r.files_unchanged),
                )
                for r in result.components
            ],
            "no components",
        ),
        out,
    )
