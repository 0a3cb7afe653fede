"""Backup sets: what ``vssctl backup`` writes and ``vssctl restore`` reads.

A backup set is a directory that ordinary tools can open::

    manifest.json              what the set holds, file by file (format version 1)
    backup-components.xml      the Backup Components Document after BackupComplete
    writers/<instance>.xml     each writer's metadata document at backup time
    data/NN-<component>.tar    one POSIX (pax) tar per component, paths relative to the
                               component's directory (``.tar.zst`` when compressed)

Domain only (no D-Bus). :class:`BackupSetWriter` makes one, :class:`BackupSet` reads and
verifies one; :mod:`.selection` finds a component's files inside a snapshot.
"""

from snapd_vss.backupset.errors import (
    BrokenChain,
    ChecksumMismatch,
    InvalidBackupSet,
    ManifestInvalid,
    MissingMember,
    UnexpectedMember,
    UnsafeLink,
    UnsafePath,
)
from snapd_vss.backupset.manifest import (
    BaseRef,
    ComponentRecord,
    Compression,
    Entry,
    EntryType,
    Manifest,
    SpecKind,
    SpecRecord,
    WriterRecord,
    index_by_path,
    parse_manifest,
)
from snapd_vss.backupset.reader import BackupSet, EntryReader, VerifyReport
from snapd_vss.backupset.selection import Selection, SnapshotMount, SourceFile, select
from snapd_vss.backupset.writer import BackupSetWriter, ComponentResult

__all__ = [
    "BackupSet",
    "BackupSetWriter",
    "BaseRef",
    "BrokenChain",
    "ChecksumMismatch",
    "ComponentRecord",
    "ComponentResult",
    "Compression",
    "Entry",
    "EntryReader",
    "EntryType",
    "InvalidBackupSet",
    "Manifest",
    "ManifestInvalid",
    "MissingMember",
    "Selection",
    "SnapshotMount",
    "SourceFile",
    "SpecKind",
    "SpecRecord",
    "UnexpectedMember",
    "UnsafeLink",
    "UnsafePath",
    "VerifyReport",
    "WriterRecord",
    "index_by_path",
    "parse_manifest",
    "select",
]
