"""The ``Writer`` base class: what an application subclasses to take part in backups.

A writer declares who it is and what data it owns (components), and implements the
callbacks it cares about. Every callback is ``async`` and does nothing by default. To
veto, raise one of the writer errors (``WriterRetryable``, ``WriterNonRetryable``,
``WriterInconsistentSnapshot``, ``WriterOutOfResources``); any other exception is
reported to the service as ``WriterNonRetryable`` with its message.

Nothing here knows about D-Bus: ``snapd_vss.writer.run_writer`` connects a writer to
the bus.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping, Sequence

from snapd_vss.documents.writer_metadata import (
    AlternateLocationMapping,
    Component,
    FileSpec,
    RestoreMethodSpec,
    WriterMetadata,
)
from snapd_vss.errors import InvalidArgs
from snapd_vss.vocabulary import (
    ApplicationLevel,
    BackupType,
    ComponentType,
    RestoreMethod,
    Source,
    Usage,
    WriterFailure,
    WriterRestore,
    WriterState,
)
from snapd_vss.writer.view import BackupView

# uuid5 namespace for instance ids derived from (writer id, instance name): the same
# writer instance gets the same id on every start, so restores find it again.
INSTANCE_NAMESPACE = uuid.UUID("6d1f0b8e-3c52-4a8e-9a3f-1f1d2c0e5b7a")

FileArg = FileSpec | str


def file_spec(value: FileArg) -> FileSpec:
    """A ``FileSpec`` as given, or one file's path turned into (its directory, its name)."""
    if isinstance(value, FileSpec):
        return value
    path = os.path.abspath(value)
    return FileSpec(path=os.path.dirname(path), filespec=os.path.basename(path))


def _check_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgs(
            f"{what} {value!r} is not a UUID; generate one once "
            "(python3 -c 'import uuid; print(uuid.uuid4())') and keep it fixed in your code"
        ) from None


class Writer:
    """Subclass this, set the identity (class attributes or keyword arguments), add
    components in ``__init__``, and override the callbacks you need.

    Identity attributes may be set on the subclass::

        class MyWriter(Writer):
            writer_id = "0b1c...-..."
            name = "My service"

    or passed to ``Writer.__init__`` as keyword arguments (which win). ``instance_id``
    defaults to a UUID derived from (writer_id, instance_name), stable across restarts.
    """

    writer_id: str = ""
    name: str = ""
    instance_name: str = ""
    instance_id: str = ""
    usage: Usage = Usage.USER_DATA
    source: Source = Source.OTHER
    application_level: ApplicationLevel = ApplicationLevel.FRONT_END
    freeze_timeout_ms: int = 60_000
    backup_schema: frozenset[BackupType] = frozenset(BackupType)

    def __init__(
        self,
        *,
        writer_id: str | None = None,
        name: str | None = None,
        instance_name: str | None = None,
        instance_id: str | None = None,
        usage: Usage | None = None,
        source: Source | None = None,
        application_level: ApplicationLevel | None = None,
        freeze_timeout_ms: int | None = None,
        backup_schema: Iterable[BackupType] | None = None,
    ) -> None:
        raw_id = writer_id if writer_id is not None else self.writer_id
        if not raw_id:
            raise InvalidArgs(
                f"{type(self).__name__} has no writer_id; set writer_id to a fixed UUID "
                "(python3 -c 'import uuid; print(uuid.uuid4())')"
            )
        self.writer_id = _check_uuid(raw_id, "writer_id")
        self.name = name if name is not None else (self.name or type(self).__name__)
        if instance_name is not None:
            self.instance_name = instance_name
        raw_instance = instance_id if instance_id is not None else self.instance_id
        self.instance_id = (
            _check_uuid(raw_instance, "instance_id")
            if raw_instance
            else str(uuid.uuid5(INSTANCE_NAMESPACE, f"{self.writer_id}/{self.instance_name}"))
        )
        self.usage = usage or self.usage
        self.source = source or self.source
        self.application_level = application_level or self.application_level
        if freeze_timeout_ms is not None:
            self.freeze_timeout_ms = freeze_timeout_ms
        if self.freeze_timeout_ms <= 0:
            raise InvalidArgs(f"freeze_timeout_ms must be positive, not {self.freeze_timeout_ms}")
        if backup_schema is not None:
            self.backup_schema = frozenset(backup_schema)
        if not self.backup_schema:
            raise InvalidArgs("backup_schema is empty; list the backup types this writer supports")
        self.components: list[Component] = []
        self.excludes: list[FileSpec] = []
        self.alternate_location_mappings: list[AlternateLocationMapping] = []
        self.restore_method: RestoreMethodSpec | None = None
        # The SDK's local view of where this writer is in the protocol (for logging;
        # the service's RegisteredWriter.State is the authoritative one).
        self.state = WriterState.STABLE
        self.last_failure = WriterFailure.NONE
        self.last_failure_message = ""

    # ----- declaring data ---------------------------------------------------------

    def add_database(
        self,
        logical_path: str,
        name: str,
        files: Sequence[FileArg],
        logs: Sequence[FileArg] = (),
        *,
        caption: str = "",
        selectable: bool = True,
        selectable_for_restore: bool = False,
        restore_metadata: bool = False,
        notify_on_backup_complete: bool = False,
    ) -> Component:
        """Declare a database component: its data files and its log files."""
        if not files:
            raise InvalidArgs(f"database component {logical_path}/{name} needs at least one file")
        return self._add(
            Component(
                type=ComponentType.DATABASE,
                logical_path=logical_path,
                name=name,
                caption=caption,
                selectable=selectable,
                selectable_for_restore=selectable_for_restore,
                restore_metadata=restore_metadata,
                notify_on_backup_complete=notify_on_backup_complete,
                database_files=[file_spec(f) for f in files],
                database_log_files=[file_spec(f) for f in logs],
            )
        )

    def add_file_group(
        self,
        logical_path: str,
        name: str,
        files: Sequence[FileArg],
        *,
        caption: str = "",
        selectable: bool = True,
        selectable_for_restore: bool = False,
        restore_metadata: bool = False,
        notify_on_backup_complete: bool = False,
    ) -> Component:
        """Declare a file group component: file specs (path, filespec, recursive)."""
        if not files:
            raise InvalidArgs(f"file group {logical_path}/{name} needs at least one file spec")
        return self._add(
            Component(
                type=ComponentType.FILEGROUP,
                logical_path=logical_path,
                name=name,
                caption=caption,
                selectable=selectable,
                selectable_for_restore=selectable_for_restore,
                restore_metadata=restore_metadata,
                notify_on_backup_complete=notify_on_backup_complete,
                files=[file_spec(f) for f in files],
            )
        )

    def add_exclude(self, spec: FileArg) -> None:
        """Files that must never be backed up (e.g. lock files)."""
        self.excludes.append(file_spec(spec))

    def add_alternate_location_mapping(
        self, path: str, filespec: str, recursive: bool, destination: str
    ) -> None:
        self.alternate_location_mappings.append(
            AlternateLocationMapping(
                path=path, filespec=filespec, recursive=recursive, destination=destination
            )
        )

    def set_restore_method(
        self,
        method: RestoreMethod,
        *,
        service: str = "",
        writer_restore: WriterRestore | None = None,
        reboot_required: bool = False,
    ) -> None:
        """How files of this writer are put back; ``service`` names the systemd unit for
        STOP_RESTORE_START / RESTORE_STOP_START."""
        needs_service = method in (
            RestoreMethod.STOP_RESTORE_START,
            RestoreMethod.RESTORE_STOP_START,
        )
        if needs_service and not service:
            raise InvalidArgs(f"restore method {method} needs service= (a systemd unit name)")
        self.restore_method = RestoreMethodSpec(
            method=method,
            service=service,
            writer_restore=writer_restore or self._default_writer_restore(),
            reboot_required=reboot_required,
        )

    def _add(self, component: Component) -> Component:
        key = (component.logical_path, component.name)
        if any((c.logical_path, c.name) == key for c in self.components):
            raise InvalidArgs(f"component {key[0]!r}/{key[1]!r} is declared twice")
        self.components.append(component)
        return component

    def _default_writer_restore(self) -> WriterRestore:
        overrides = type(self).on_pre_restore is not Writer.on_pre_restore or (
            type(self).on_post_restore is not Writer.on_post_restore
        )
        return WriterRestore.ALWAYS if overrides else WriterRestore.NEVER

    # ----- the document -----------------------------------------------------------

    def metadata(self) -> WriterMetadata:
        """The Writer Metadata Document; override to build it yourself."""
        restore = self.restore_method or RestoreMethodSpec(
            method=RestoreMethod.RESTORE_IF_CAN_REPLACE,
            writer_restore=self._default_writer_restore(),
        )
        return WriterMetadata(
            writer_id=self.writer_id,
            name=self.name,
            instance_id=self.instance_id,
            instance_name=self.instance_name,
            usage=self.usage,
            source=self.source,
            application_level=self.application_level,
            freeze_timeout_ms=self.freeze_timeout_ms,
            backup_schema=self.backup_schema,
            restore_method=restore,
            components=list(self.components),
            excludes=list(self.excludes),
            alternate_location_mappings=list(self.alternate_location_mappings),
        )

    # ----- callbacks (all optional) -----------------------------------------------

    async def on_prepare_backup(self, backup: BackupView) -> None:
        """A backup of (some of) your components starts; annotate them, e.g.
        ``backup.set_backup_metadata(logical_path, name, "lsn=42")``."""

    async def on_prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        """Flush and checkpoint: a freeze follows shortly."""

    async def on_freeze(self, snapshot_set_id: str) -> None:
        """Stop writing until ``on_thaw`` or ``on_abort``. Keep it short."""

    async def on_thaw(self, snapshot_set_id: str) -> None:
        """The snapshot is taken (or failed): resume writing."""

    async def on_post_snapshot(self, snapshot_set_id: str, snapshots: Mapping[str, str]) -> None:
        """``snapshots`` maps each volume to the path of its snapshot."""

    async def on_abort(self, snapshot_set_id: str) -> None:
        """The backup was aborted: resume writing if frozen, forget the backup."""

    async def on_backup_complete(self, backup: BackupView) -> None:
        """The requestor finished copying; e.g. truncate logs when
        ``backup.allows_log_truncation`` and the component's backup succeeded."""

    async def on_backup_shutdown(self, snapshot_set_id: str) -> None:
        """The backup session closed; release anything held for it."""

    async def on_pre_restore(self, backup: BackupView) -> None:
        """Files of your selected components are about to be restored."""

    async def on_post_restore(self, backup: BackupView) -> None:
        """Files were restored; reload or recover."""
