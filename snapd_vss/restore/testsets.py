"""Backup sets made from a live directory without a daemon (tests and the benchmark).

:func:`make_set` writes a real backup set with :class:`snapd_vss.backupset.BackupSetWriter`,
reading the "snapshot" from ``snapshot_root`` (default: the live directory itself), with
one writer, one FILEGROUP component, its writer metadata (restore method, service,
alternate mappings) and a Backup Components Document — what ``vssctl backup`` would
store, minus the session.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from snapd_vss.backupset import (
    BackupSet,
    BackupSetWriter,
    BaseRef,
    ComponentRecord,
    Compression,
    Manifest,
    SnapshotMount,
    SpecKind,
    SpecRecord,
    WriterRecord,
    index_by_path,
    select,
)
from snapd_vss.documents import (
    AlternateLocationMapping,
    BackupComponents,
    Component,
    ComponentEntry,
    FileSpec,
    RestoreMethodSpec,
    WriterEntry,
    WriterMetadata,
)
from snapd_vss.documents.backup_components import utc_timestamp
from snapd_vss.vocabulary import BackupType, ComponentType, RestoreMethod

WRITER_ID = "0b6d1f0e-3c57-4c1e-9a55-2f4f0c9d7a11"


@dataclass
class SetSpec:
    """The writer and component a test set holds."""

    data_dir: str  # the component's files (recursive, "*")
    instance_id: str = "7c1f7c8e-8a52-4a59-9a8a-3b2f0f8e1d01"
    writer_name: str = "test writer"
    logical_path: str = "files"
    name: str = "data"
    method: RestoreMethod = RestoreMethod.RESTORE_IF_CAN_REPLACE
    service: str = ""
    mappings: list[AlternateLocationMapping] = field(default_factory=list)
    filespec: str = "*"
    uid: int | None = None  # the writer's Uid to record (None: as sets made before it was)


def writer_metadata(spec: SetSpec) -> WriterMetadata:
    return WriterMetadata(
        writer_id=WRITER_ID,
        name=spec.writer_name,
        instance_id=spec.instance_id,
        instance_name=spec.writer_name,
        restore_method=RestoreMethodSpec(method=spec.method, service=spec.service),
        components=[
            Component(
                type=ComponentType.FILEGROUP,
                logical_path=spec.logical_path,
                name=spec.name,
                selectable_for_restore=True,
                files=[FileSpec(spec.data_dir, spec.filespec, True)],
            )
        ],
        alternate_location_mappings=list(spec.mappings),
    )


def backup_components(spec: SetSpec, backup_type: BackupType) -> BackupComponents:
    return BackupComponents(
        backup_type=backup_type,
        created_at=utc_timestamp(),
        writers=[
            WriterEntry(
                writer_id=WRITER_ID,
                instance_id=spec.instance_id,
                name=spec.writer_name,
                components=[
                    ComponentEntry(
                        type=ComponentType.FILEGROUP,
                        logical_path=spec.logical_path,
                        name=spec.name,
                        backup_succeeded=True,
                    )
                ],
            )
        ],
    )


def make_set(
    destination: str,
    spec: SetSpec,
    base: str | None = None,
    snapshot_root: str | None = None,
    backup_type: BackupType | None = None,
    compression: Compression = Compression.NONE,
) -> BackupSet:
    """Back up ``spec.data_dir`` into a new set at ``destination`` (incremental on ``base``)."""
    data_dir = os.path.realpath(spec.data_dir)
    kind = backup_type or (BackupType.INCREMENTAL if base else BackupType.FULL)
    base_set = BackupSet.open(base) if base else None
    manifest = Manifest(
        set_id=str(uuid.uuid4()),
        created_at=utc_timestamp(),
        backup_type=kind,
        compression=compression,
        base=None
        if base_set is None
        else BaseRef(
            set_id=base_set.id,
            backup_type=base_set.backup_type,
            path=base_set.path,
            relative_path=os.path.relpath(base_set.path, os.path.abspath(destination)),
        ),
    )
    writer = BackupSetWriter(destination, manifest)
    writer.add_writer(
        WriterRecord(
            spec.instance_id, WRITER_ID, spec.writer_name, spec.writer_name, "", uid=spec.uid
        ),
        writer_metadata(spec).to_xml(),
    )
    writer.set_backup_components(backup_components(spec, kind).to_xml())
    record = ComponentRecord(
        instance_id=spec.instance_id,
        writer_id=WRITER_ID,
        writer_name=spec.writer_name,
        logical_path=spec.logical_path,
        name=spec.name,
        type=ComponentType.FILEGROUP.value,
        volume=data_dir,
        snapshot_id="",
        original_root="",
        snapshot_root="",
        archive="",
        file_specs=[SpecRecord(SpecKind.FILES, data_dir, spec.filespec, True)],
    )
    mount = SnapshotMount(volume=data_dir, root=snapshot_root or data_dir)
    selection = select(record.file_specs, [], [mount])
    base_files = index_by_path(base_set.components) if base_set is not None else None
    writer.add_component(record, selection, base_files)
    return BackupSet.open(writer.commit())
