"""A requestor's backup session, as ``vssctl create`` and ``vssctl exec`` run it.

The sequence (DESIGN.md): SetBackupState → GatherWriterMetadata → AddComponent… →
StartSnapshotSet → AddToSnapshotSet… → PrepareForBackup → DoSnapshotSet →
GetSnapshotProperties… → (copy) → SetBackupSucceeded… → BackupComplete → Close.
Each step runs under :func:`doing`, so a failure says which step failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from snapd_vss.cli.selection import SelectedComponent, select_components
from snapd_vss.documents import WriterMetadata, parse_writer_metadata
from snapd_vss.errors import VssError
from snapd_vss.ipc.client import BackupSessionProxy, VssClient
from snapd_vss.vocabulary import BackupType, Context


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

    async def close(self) -> None:
        """Close the session (the service aborts an unfinished backup first)."""
        if self.session is None:
            return
        session, self.session = self.session, None
        with doing("cannot close the backup session"):
            await session.close()
