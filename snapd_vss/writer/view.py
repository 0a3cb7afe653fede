"""What a writer sees of the Backup Components Document: its own ``<Writer>`` entry.

A writer may change only its own components' backup metadata, restore metadata,
backup stamp and restore target (the service rejects anything else); this view offers
exactly those, plus read access to the session-wide facts (backup type, snapshot set).
"""

from __future__ import annotations

from snapd_vss.documents.backup_components import (
    BackupComponents,
    ComponentEntry,
    WriterEntry,
)
from snapd_vss.errors import InvalidArgs
from snapd_vss.vocabulary import BackupType, RestoreTarget


class BackupView:
    """The writer's own part of a Backup Components Document."""

    def __init__(self, document: BackupComponents, writer_id: str, instance_id: str) -> None:
        self.document = document
        self.entry: WriterEntry | None = document.writer(instance_id)
        if self.entry is None:
            # The service may know the writer under another instance id: fall back to
            # the writer id when it is unambiguous.
            same = [w for w in document.writers if w.writer_id == writer_id]
            self.entry = same[0] if len(same) == 1 else None

    # ----- session-wide, read only ------------------------------------------------

    @property
    def backup_type(self) -> BackupType:
        return self.document.backup_type

    @property
    def snapshot_set_id(self) -> str:
        return self.document.snapshot_set_id

    @property
    def allows_log_truncation(self) -> bool:
        """True for FULL, INCREMENTAL and LOG backups (never COPY or DIFFERENTIAL)."""
        return self.document.backup_type.allows_log_truncation

    # ----- this writer's components -------------------------------------------------

    @property
    def components(self) -> list[ComponentEntry]:
        """This writer's components in the document (the selected ones, for a backup)."""
        return list(self.entry.components) if self.entry is not None else []

    def component(self, logical_path: str, name: str) -> ComponentEntry:
        for entry in self.components:
            if entry.logical_path == logical_path and entry.name == name:
                return entry
        present = ", ".join(f"{c.logical_path!r}/{c.name!r}" for c in self.components) or "none"
        raise InvalidArgs(
            f"component {logical_path!r}/{name!r} is not in this backup document "
            f"(this writer's components there: {present})"
        )

    def has_component(self, logical_path: str, name: str) -> bool:
        return any(c.logical_path == logical_path and c.name == name for c in self.components)

    def backup_metadata(self, logical_path: str, name: str) -> str:
        return self.component(logical_path, name).backup_metadata

    def set_backup_metadata(self, logical_path: str, name: str, text: str) -> None:
        self.component(logical_path, name).backup_metadata = text

    def restore_metadata(self, logical_path: str, name: str) -> str:
        return self.component(logical_path, name).restore_metadata

    def set_restore_metadata(self, logical_path: str, name: str, text: str) -> None:
        self.component(logical_path, name).restore_metadata = text

    def set_backup_stamp(self, logical_path: str, name: str, stamp: str) -> None:
        self.component(logical_path, name).backup_stamp = stamp

    def set_restore_target(self, logical_path: str, name: str, target: RestoreTarget) -> None:
        self.component(logical_path, name).restore_target = target
