"""The protocol's XML documents (API.md): Writer Metadata and Backup Components.

Both are parsed by the hardened parser in :mod:`snapd_vss.documents.xmlsafe` and
validated against the XSDs in ``schemas/``; every failure is ``InvalidDocument``.
"""

from snapd_vss.documents.backup_components import (
    BackupComponents,
    ComponentEntry,
    ComponentFailure,
    SnapshotEntry,
    WriterEntry,
    apply_writer_changes,
    parse_backup_components,
)
from snapd_vss.documents.writer_metadata import (
    AlternateLocationMapping,
    Component,
    FileSpec,
    RestoreMethodSpec,
    WriterMetadata,
    parse_writer_metadata,
)
from snapd_vss.documents.xmlsafe import MAX_DOCUMENT_BYTES, Schema, parse_and_validate

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "AlternateLocationMapping",
    "BackupComponents",
    "Component",
    "ComponentEntry",
    "ComponentFailure",
    "FileSpec",
    "RestoreMethodSpec",
    "Schema",
    "SnapshotEntry",
    "WriterEntry",
    "WriterMetadata",
    "apply_writer_changes",
    "parse_and_validate",
    "parse_backup_components",
    "parse_writer_metadata",
]
