"""The Backup Components Document (API.md): the state of one backup or restore session.

The requestor stores it with the backup and hands it back at restore time; writers see
it in ``OnPrepareBackup``/``OnPreRestore``/``OnPostRestore`` and may change only their
own components' metadata, stamp, restore target and failures
(:func:`apply_writer_changes` enforces that).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from lxml import etree

from snapd_vss.documents._xml import Builder, Reader, attr, choice, finish, flag, wire_bool
from snapd_vss.documents.writer_metadata import (
    AlternateLocationMapping,
    mapping_attrs,
    read_mapping,
)
from snapd_vss.documents.xmlsafe import Schema, invalid, parse_and_validate
from snapd_vss.errors import InvalidDocument, NotFound
from snapd_vss.vocabulary import (
    BackupType,
    ComponentType,
    Context,
    FileRestoreStatus,
    RestoreTarget,
)

NAMESPACE = Schema.BACKUP_COMPONENTS.namespace
VERSION = "1"

# Limits of backup-components.xsd, for callers that store text from elsewhere (truncate!).
MAX_OPAQUE_TEXT_CHARS = 1024 * 1024  # BackupOptions, RestoreOptions, *Metadata
MAX_STAMP_CHARS = 4096  # backupStamp, previousBackupStamp
MAX_FAILURE_MESSAGE_CHARS = 16384  # Failure/@message
MAX_FAILURES_PER_COMPONENT = 100

__all__ = [
    "MAX_FAILURES_PER_COMPONENT",
    "MAX_FAILURE_MESSAGE_CHARS",
    "MAX_OPAQUE_TEXT_CHARS",
    "MAX_STAMP_CHARS",
    "NAMESPACE",
    "AlternateLocationMapping",
    "BackupComponents",
    "ComponentEntry",
    "ComponentFailure",
    "SnapshotEntry",
    "WriterEntry",
    "apply_writer_changes",
    "parse_backup_components",
    "timestamp_to_us",
    "utc_timestamp",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_timestamp(us: int | None = None) -> str:
    """``createdAt`` text for ``us`` microseconds since the epoch (default: now).

    Always ISO-8601 UTC with a 'Z' and microseconds, e.g. ``2026-11-22T10:00:00.000000Z``;
    ``datetime.isoformat()`` gives ``+00:00``, which the schema refuses.
    """
    when = datetime.now(UTC) if us is None else _EPOCH + timedelta(microseconds=us)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_to_us(text: str) -> int:
    """Microseconds since the epoch of a ``createdAt`` value (0 for ``""``)."""
    if not text:
        return 0
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (when - _EPOCH) // timedelta(microseconds=1)


@dataclass
class SnapshotEntry:
    id: str
    volume: str
    provider: str
    device_path: str = ""
    exposed_path: str = ""
    created_at: str = ""
    persistent: bool = False


@dataclass
class ComponentFailure:
    phase: str  # a WriterEvent value, e.g. "PREPARE_BACKUP"
    message: str


@dataclass
class ComponentEntry:
    type: ComponentType
    logical_path: str
    name: str
    backup_succeeded: bool = False
    backup_stamp: str = ""
    previous_backup_stamp: str = ""
    selected_for_restore: bool = False
    restore_target: RestoreTarget = RestoreTarget.ORIGINAL
    file_restore_status: FileRestoreStatus = FileRestoreStatus.UNDEFINED
    backup_options: str = ""
    restore_options: str = ""
    backup_metadata: str = ""
    restore_metadata: str = ""
    alternate_location_mappings: list[AlternateLocationMapping] = field(default_factory=list)
    failures: list[ComponentFailure] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.logical_path, self.name)


@dataclass
class WriterEntry:
    writer_id: str
    instance_id: str
    name: str
    components: list[ComponentEntry] = field(default_factory=list)

    def component(self, logical_path: str, name: str) -> ComponentEntry:
        for component in self.components:
            if component.key == (logical_path, name):
                return component
        raise NotFound(
            f"Writer {self.name!r} has no component {_label(logical_path, name)} in this "
            "backup; add it with AddComponent or pick one from the document"
        )


@dataclass
class BackupComponents:
    backup_type: BackupType = BackupType.FULL
    select_components: bool = True
    bootable_system_state: bool = False
    partial_file_support: bool = False
    context: Context = Context.BACKUP
    snapshot_set_id: str = ""
    created_at: str = ""  # ISO-8601 UTC with 'Z'
    snapshots: list[SnapshotEntry] = field(default_factory=list)
    writers: list[WriterEntry] = field(default_factory=list)

    def writer(self, instance_id: str) -> WriterEntry | None:
        for writer in self.writers:
            if writer.instance_id == instance_id:
                return writer
        return None

    def component(self, instance_id: str, logical_path: str, name: str) -> ComponentEntry:
        writer = self.writer(instance_id)
        if writer is None:
            raise NotFound(
                f"No writer instance {instance_id!r} in this backup; "
                "use an instance id from GatherWriterMetadata"
            )
        return writer.component(logical_path, name)

    def to_xml(self) -> str:
        """The document; raises InvalidDocument if a field breaks the schema's limits."""
        return finish(Schema.BACKUP_COMPONENTS, self._build, "backup components document")

    def _build(self) -> etree._Element:
        b = Builder(Schema.BACKUP_COMPONENTS)
        root = b.root(
            {
                "version": VERSION,
                "backupType": self.backup_type.value,
                "selectComponents": wire_bool(self.select_components),
                "bootableSystemState": wire_bool(self.bootable_system_state),
                "partialFileSupport": wire_bool(self.partial_file_support),
                "context": self.context.value,
                "snapshotSetId": self.snapshot_set_id,
                "createdAt": self.created_at,
            }
        )
        if self.snapshot_set_id or self.snapshots:
            snapshot_set = b.add(root, "SnapshotSet", {"id": self.snapshot_set_id})
            for snapshot in self.snapshots:
                b.add(snapshot_set, "Snapshot", _snapshot_attrs(snapshot))
        for writer in self.writers:
            element = b.add(
                root,
                "Writer",
                {
                    "writerId": writer.writer_id,
                    "instanceId": writer.instance_id,
                    "name": writer.name,
                },
            )
            for component in writer.components:
                _build_component(b, element, component)
        return root


def _label(logical_path: str, name: str) -> str:
    return repr(f"{logical_path}/{name}" if logical_path else name)


def _snapshot_attrs(snapshot: SnapshotEntry) -> dict[str, str]:
    return {
        "id": snapshot.id,
        "volume": snapshot.volume,
        "provider": snapshot.provider,
        "devicePath": snapshot.device_path,
        "exposedPath": snapshot.exposed_path,
        "createdAt": snapshot.created_at,
        "persistent": wire_bool(snapshot.persistent),
    }


def _build_component(b: Builder, parent: etree._Element, component: ComponentEntry) -> None:
    element = b.add(
        parent,
        "Component",
        {
            "type": component.type.value,
            "logicalPath": component.logical_path,
            "name": component.name,
            "backupSucceeded": wire_bool(component.backup_succeeded),
            "backupStamp": component.backup_stamp,
            "previousBackupStamp": component.previous_backup_stamp,
            "selectedForRestore": wire_bool(component.selected_for_restore),
            "restoreTarget": component.restore_target.value,
            "fileRestoreStatus": component.file_restore_status.value,
        },
    )
    b.add(element, "BackupOptions", text=component.backup_options)
    b.add(element, "RestoreOptions", text=component.restore_options)
    b.add(element, "BackupMetadata", text=component.backup_metadata)
    b.add(element, "RestoreMetadata", text=component.restore_metadata)
    for mapping in component.alternate_location_mappings:
        b.add(element, "AlternateLocationMapping", mapping_attrs(mapping))
    for failure in component.failures:
        b.add(element, "Failure", {"phase": failure.phase, "message": failure.message})


# ----- parsing -----

_R = Reader(Schema.BACKUP_COMPONENTS)


def _read_snapshot(element: etree._Element) -> SnapshotEntry:
    return SnapshotEntry(
        id=attr(element, "id"),
        volume=attr(element, "volume"),
        provider=attr(element, "provider"),
        device_path=attr(element, "devicePath"),
        exposed_path=attr(element, "exposedPath"),
        created_at=attr(element, "createdAt"),
        persistent=flag(element, "persistent", False),
    )


def _read_component(element: etree._Element) -> ComponentEntry:
    return ComponentEntry(
        type=ComponentType(attr(element, "type")),
        logical_path=attr(element, "logicalPath"),
        name=attr(element, "name"),
        backup_succeeded=flag(element, "backupSucceeded", False),
        backup_stamp=attr(element, "backupStamp"),
        previous_backup_stamp=attr(element, "previousBackupStamp"),
        selected_for_restore=flag(element, "selectedForRestore", False),
        restore_target=choice(element, "restoreTarget", RestoreTarget, RestoreTarget.ORIGINAL),
        file_restore_status=choice(
            element, "fileRestoreStatus", FileRestoreStatus, FileRestoreStatus.UNDEFINED
        ),
        backup_options=_R.text(element, "BackupOptions"),
        restore_options=_R.text(element, "RestoreOptions"),
        backup_metadata=_R.text(element, "BackupMetadata"),
        restore_metadata=_R.text(element, "RestoreMetadata"),
        alternate_location_mappings=[
            read_mapping(e) for e in _R.children(element, "AlternateLocationMapping")
        ],
        failures=[
            ComponentFailure(phase=attr(e, "phase"), message=attr(e, "message"))
            for e in _R.children(element, "Failure")
        ],
    )


def _read_writer(element: etree._Element, what: str) -> WriterEntry:
    writer = WriterEntry(
        writer_id=attr(element, "writerId"),
        instance_id=attr(element, "instanceId"),
        name=attr(element, "name"),
    )
    seen: set[tuple[str, str]] = set()
    for child in _R.children(element, "Component"):
        component = _read_component(child)
        if component.key in seen:
            raise invalid(
                what,
                f"writer {writer.name!r} lists component {_label(*component.key)} twice; "
                "(logicalPath, name) must be unique per writer",
                child,
            )
        seen.add(component.key)
        writer.components.append(component)
    return writer


def _read_writers(root: etree._Element, what: str) -> list[WriterEntry]:
    writers: list[WriterEntry] = []
    seen: set[str] = set()
    for element in _R.children(root, "Writer"):
        writer = _read_writer(element, what)
        if writer.instance_id in seen:
            raise invalid(what, f"writer instance {writer.instance_id!r} appears twice", element)
        seen.add(writer.instance_id)
        writers.append(writer)
    return writers


def _read_snapshots(root: etree._Element, snapshot_set_id: str, what: str) -> list[SnapshotEntry]:
    snapshot_set = _R.child(root, "SnapshotSet")
    if snapshot_set is None:
        return []
    if attr(snapshot_set, "id") != snapshot_set_id:
        raise invalid(
            what,
            f"<SnapshotSet id={attr(snapshot_set, 'id')!r}> does not match "
            f"snapshotSetId={snapshot_set_id!r} on <BackupComponents>",
            snapshot_set,
        )
    return [_read_snapshot(e) for e in _R.children(snapshot_set, "Snapshot")]


def parse_backup_components(xml: str | bytes, source: str = "requestor") -> BackupComponents:
    """Parse and validate a Backup Components Document; ``source`` names the sender."""
    what = f"backup components document from {source!r}"
    root = parse_and_validate(xml, Schema.BACKUP_COMPONENTS, what)
    snapshot_set_id = attr(root, "snapshotSetId")
    return BackupComponents(
        backup_type=choice(root, "backupType", BackupType, BackupType.FULL),
        select_components=flag(root, "selectComponents", True),
        bootable_system_state=flag(root, "bootableSystemState", False),
        partial_file_support=flag(root, "partialFileSupport", False),
        context=choice(root, "context", Context, Context.BACKUP),
        snapshot_set_id=snapshot_set_id,
        created_at=attr(root, "createdAt"),
        snapshots=_read_snapshots(root, snapshot_set_id, what),
        writers=_read_writers(root, what),
    )


# ----- what a writer may change -----

ALLOWED_WRITER_CHANGES = "BackupMetadata, RestoreMetadata, backupStamp, restoreTarget and Failure"

_TOP_LEVEL_ATTRIBUTES = {
    "backup_type": "backupType",
    "select_components": "selectComponents",
    "bootable_system_state": "bootableSystemState",
    "partial_file_support": "partialFileSupport",
    "context": "context",
    "snapshot_set_id": "snapshotSetId",
    "created_at": "createdAt",
}

_FIXED_COMPONENT_FIELDS = {
    "type": "the type attribute",
    "backup_succeeded": "the backupSucceeded attribute",
    "previous_backup_stamp": "the previousBackupStamp attribute",
    "selected_for_restore": "the selectedForRestore attribute",
    "file_restore_status": "the fileRestoreStatus attribute",
    "backup_options": "BackupOptions",
    "restore_options": "RestoreOptions",
    "alternate_location_mappings": "the AlternateLocationMapping elements",
}


def _forbidden(writer_name: str, change: str) -> InvalidDocument:
    return InvalidDocument(
        f"Writer {writer_name!r} {change} in the backup components document it returned; "
        f"a writer may change only {ALLOWED_WRITER_CHANGES} of its own components. "
        "Fix the writer to return the document it was given with only those changes."
    )


def _check_outside_own_writer(
    original: BackupComponents, returned: BackupComponents, instance_id: str, writer_name: str
) -> None:
    for name, wire in _TOP_LEVEL_ATTRIBUTES.items():
        if getattr(original, name) != getattr(returned, name):
            raise _forbidden(writer_name, f"changed the {wire} attribute of <BackupComponents>")
    if original.snapshots != returned.snapshots:
        raise _forbidden(writer_name, "changed the snapshot set")
    before = {w.instance_id: w for w in original.writers}
    after = {w.instance_id: w for w in returned.writers}
    for other in before.keys() - after.keys() - {instance_id}:
        raise _forbidden(writer_name, f"removed the <Writer> element of {before[other].name!r}")
    for other in after.keys() - before.keys():
        raise _forbidden(writer_name, f"added a <Writer> element for instance {other!r}")
    for other, entry in before.items():
        if other != instance_id and after.get(other) != entry:
            raise _forbidden(writer_name, f"changed the <Writer> element of {entry.name!r}")


def _merge_component(
    original: ComponentEntry, returned: ComponentEntry, writer_name: str
) -> ComponentEntry:
    label = _label(*original.key)
    for name, wire in _FIXED_COMPONENT_FIELDS.items():
        if getattr(original, name) != getattr(returned, name):
            raise _forbidden(writer_name, f"changed {wire} of component {label}")
    merged = copy.deepcopy(original)
    merged.backup_metadata = returned.backup_metadata
    merged.restore_metadata = returned.restore_metadata
    merged.backup_stamp = returned.backup_stamp
    merged.restore_target = returned.restore_target
    merged.failures = copy.deepcopy(returned.failures)
    return merged


def _merge_writer(original: WriterEntry, returned: WriterEntry, writer_name: str) -> WriterEntry:
    if (original.writer_id, original.name) != (returned.writer_id, returned.name):
        raise _forbidden(writer_name, "changed the writerId or name of its own <Writer> element")
    before = {c.key: c for c in original.components}
    after = {c.key: c for c in returned.components}
    for key in after.keys() - before.keys():
        raise _forbidden(writer_name, f"added component {_label(*key)}")
    for key in before.keys() - after.keys():
        raise _forbidden(writer_name, f"removed component {_label(*key)}")
    return WriterEntry(
        writer_id=original.writer_id,
        instance_id=original.instance_id,
        name=original.name,
        components=[_merge_component(c, after[c.key], writer_name) for c in original.components],
    )


def apply_writer_changes(
    original: BackupComponents, returned_xml: str | bytes, instance_id: str, writer_name: str
) -> BackupComponents:
    """``original`` with the permitted changes from the writer's returned document.

    Raises InvalidDocument if the returned document is invalid or changes anything
    besides its own components' BackupMetadata, RestoreMetadata, backupStamp,
    restoreTarget and Failure children.
    """
    returned = parse_backup_components(returned_xml, writer_name)
    _check_outside_own_writer(original, returned, instance_id, writer_name)
    result = copy.deepcopy(original)
    own_before = original.writer(instance_id)
    own_after = returned.writer(instance_id)
    if own_before is None:
        if own_after is not None:
            raise _forbidden(writer_name, "added its own <Writer> element")
        return result
    if own_after is None:
        raise _forbidden(writer_name, "removed its own <Writer> element")
    merged = _merge_writer(own_before, own_after, writer_name)
    result.writers = [merged if w.instance_id == instance_id else w for w in result.writers]
    return result
