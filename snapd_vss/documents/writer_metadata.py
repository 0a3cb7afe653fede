"""The Writer Metadata Document (API.md): what a writer is and which data it owns.

A writer returns it from ``OnIdentify``; :func:`parse_writer_metadata` turns it into a
:class:`WriterMetadata` and :meth:`WriterMetadata.to_xml` writes it back. The two are
exact inverses for every valid tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from snapd_vss.documents._xml import Builder, Reader, attr, choice, finish, flag, number, wire_bool
from snapd_vss.documents.xmlsafe import Schema, invalid, parse_and_validate
from snapd_vss.errors import NotFound
from snapd_vss.vocabulary import (
    ApplicationLevel,
    BackupType,
    ComponentType,
    RestoreMethod,
    Source,
    Usage,
    WriterRestore,
)

NAMESPACE = Schema.WRITER_METADATA.namespace
VERSION = "1"
DEFAULT_FREEZE_TIMEOUT_MS = 60000
ALL_BACKUP_TYPES: frozenset[BackupType] = frozenset(BackupType)


@dataclass
class FileSpec:
    """Files under ``path`` matching ``filespec`` (a shell pattern, no ``/``)."""

    path: str
    filespec: str = "*"
    recursive: bool = False
    alternate_path: str = ""


@dataclass
class AlternateLocationMapping:
    """Where to restore files that cannot go back to ``path``."""

    path: str
    filespec: str
    recursive: bool
    destination: str


@dataclass
class Component:
    """A unit the requestor can select, identified by (logical_path, name)."""

    type: ComponentType
    logical_path: str
    name: str
    caption: str = ""
    selectable: bool = True
    selectable_for_restore: bool = False
    restore_metadata: bool = False
    notify_on_backup_complete: bool = False
    files: list[FileSpec] = field(default_factory=list)
    database_files: list[FileSpec] = field(default_factory=list)
    database_log_files: list[FileSpec] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.logical_path, self.name)

    def all_file_specs(self) -> list[FileSpec]:
        return [*self.files, *self.database_files, *self.database_log_files]


@dataclass
class RestoreMethodSpec:
    method: RestoreMethod = RestoreMethod.RESTORE_IF_CAN_REPLACE
    service: str = ""
    writer_restore: WriterRestore = WriterRestore.NEVER
    reboot_required: bool = False


@dataclass
class WriterMetadata:
    writer_id: str
    name: str
    instance_id: str = ""
    instance_name: str = ""
    usage: Usage = Usage.OTHER
    source: Source = Source.OTHER
    application_level: ApplicationLevel = ApplicationLevel.FRONT_END
    freeze_timeout_ms: int = DEFAULT_FREEZE_TIMEOUT_MS
    backup_schema: frozenset[BackupType] = field(default_factory=lambda: ALL_BACKUP_TYPES)
    restore_method: RestoreMethodSpec = field(default_factory=RestoreMethodSpec)
    components: list[Component] = field(default_factory=list)
    excludes: list[FileSpec] = field(default_factory=list)
    alternate_location_mappings: list[AlternateLocationMapping] = field(default_factory=list)

    def component(self, logical_path: str, name: str) -> Component:
        for component in self.components:
            if component.key == (logical_path, name):
                return component
        raise NotFound(
            f"Writer {self.name!r} has no component {_component_label(logical_path, name)}; "
            "use a (logicalPath, name) from its writer metadata"
        )

    def to_xml(self) -> str:
        """The document; raises InvalidDocument if a field breaks the schema's limits."""
        return finish(Schema.WRITER_METADATA, self._build, f"writer metadata for {self.name!r}")

    def _build(self) -> etree._Element:
        b = Builder(Schema.WRITER_METADATA)
        attrs = {"version": VERSION, "writerId": self.writer_id}
        if self.instance_id:
            attrs["instanceId"] = self.instance_id
        attrs |= {
            "instanceName": self.instance_name,
            "name": self.name,
            "usage": self.usage.value,
            "source": self.source.value,
            "applicationLevel": self.application_level.value,
            "freezeTimeoutMs": str(self.freeze_timeout_ms),
        }
        root = b.root(attrs)
        schema_words = [t.value for t in BackupType if t in self.backup_schema]
        b.add(root, "BackupSchema", text=" ".join(schema_words))
        b.add(root, "RestoreMethod", _restore_method_attrs(self.restore_method))
        for component in self.components:
            _build_component(b, root, component)
        for spec in self.excludes:
            b.add(root, "ExcludeFiles", _file_spec_attrs(spec))
        for mapping in self.alternate_location_mappings:
            b.add(root, "AlternateLocationMapping", mapping_attrs(mapping))
        return root


def _component_label(logical_path: str, name: str) -> str:
    return repr(f"{logical_path}/{name}" if logical_path else name)


def _restore_method_attrs(spec: RestoreMethodSpec) -> dict[str, str]:
    return {
        "method": spec.method.value,
        "service": spec.service,
        "writerRestore": spec.writer_restore.value,
        "rebootRequired": wire_bool(spec.reboot_required),
    }


def _file_spec_attrs(spec: FileSpec) -> dict[str, str]:
    return {
        "path": spec.path,
        "filespec": spec.filespec,
        "recursive": wire_bool(spec.recursive),
        "alternatePath": spec.alternate_path,
    }


def mapping_attrs(mapping: AlternateLocationMapping) -> dict[str, str]:
    """Attributes of an ``<AlternateLocationMapping>`` (shared with backup components)."""
    return {
        "path": mapping.path,
        "filespec": mapping.filespec,
        "recursive": wire_bool(mapping.recursive),
        "destination": mapping.destination,
    }


def _build_component(b: Builder, root: etree._Element, component: Component) -> None:
    element = b.add(
        root,
        "Component",
        {
            "type": component.type.value,
            "logicalPath": component.logical_path,
            "name": component.name,
            "caption": component.caption,
            "selectable": wire_bool(component.selectable),
            "selectableForRestore": wire_bool(component.selectable_for_restore),
            "restoreMetadata": wire_bool(component.restore_metadata),
            "notifyOnBackupComplete": wire_bool(component.notify_on_backup_complete),
        },
    )
    for local, specs in (
        ("Files", component.files),
        ("DatabaseFiles", component.database_files),
        ("DatabaseLogFiles", component.database_log_files),
    ):
        for spec in specs:
            b.add(element, local, _file_spec_attrs(spec))


# ----- parsing -----

_R = Reader(Schema.WRITER_METADATA)


def _read_file_spec(element: etree._Element) -> FileSpec:
    return FileSpec(
        path=attr(element, "path"),
        filespec=attr(element, "filespec", "*"),
        recursive=flag(element, "recursive", False),
        alternate_path=attr(element, "alternatePath"),
    )


def read_mapping(element: etree._Element) -> AlternateLocationMapping:
    """An ``<AlternateLocationMapping>`` (shared with backup components)."""
    return AlternateLocationMapping(
        path=attr(element, "path"),
        filespec=attr(element, "filespec", "*"),
        recursive=flag(element, "recursive", False),
        destination=attr(element, "destination"),
    )


def _read_component(element: etree._Element) -> Component:
    return Component(
        type=ComponentType(attr(element, "type")),
        logical_path=attr(element, "logicalPath"),
        name=attr(element, "name"),
        caption=attr(element, "caption"),
        selectable=flag(element, "selectable", True),
        selectable_for_restore=flag(element, "selectableForRestore", False),
        restore_metadata=flag(element, "restoreMetadata", False),
        notify_on_backup_complete=flag(element, "notifyOnBackupComplete", False),
        files=[_read_file_spec(e) for e in _R.children(element, "Files")],
        database_files=[_read_file_spec(e) for e in _R.children(element, "DatabaseFiles")],
        database_log_files=[_read_file_spec(e) for e in _R.children(element, "DatabaseLogFiles")],
    )


def _read_restore_method(element: etree._Element | None) -> RestoreMethodSpec:
    if element is None:
        return RestoreMethodSpec()
    return RestoreMethodSpec(
        method=choice(element, "method", RestoreMethod, RestoreMethod.RESTORE_IF_CAN_REPLACE),
        service=attr(element, "service"),
        writer_restore=choice(element, "writerRestore", WriterRestore, WriterRestore.NEVER),
        reboot_required=flag(element, "rebootRequired", False),
    )


def _read_backup_schema(element: etree._Element | None) -> frozenset[BackupType]:
    if element is None:
        return ALL_BACKUP_TYPES
    return frozenset(BackupType(word) for word in (element.text or "").split())


def _read_components(root: etree._Element, what: str) -> list[Component]:
    components: list[Component] = []
    seen: set[tuple[str, str]] = set()
    for element in _R.children(root, "Component"):
        component = _read_component(element)
        if component.key in seen:
            raise invalid(
                what,
                f"component {_component_label(*component.key)} appears twice; "
                "(logicalPath, name) must be unique",
                element,
            )
        seen.add(component.key)
        components.append(component)
    return components


def parse_writer_metadata(xml: str | bytes, source: str = "writer") -> WriterMetadata:
    """Parse and validate a Writer Metadata Document; ``source`` names the sender in errors."""
    what = f"writer metadata from {source!r}"
    root = parse_and_validate(xml, Schema.WRITER_METADATA, what)
    return WriterMetadata(
        writer_id=attr(root, "writerId"),
        name=attr(root, "name"),
        instance_id=attr(root, "instanceId"),
        instance_name=attr(root, "instanceName"),
        usage=choice(root, "usage", Usage, Usage.OTHER),
        source=choice(root, "source", Source, Source.OTHER),
        application_level=choice(
            root, "applicationLevel", ApplicationLevel, ApplicationLevel.FRONT_END
        ),
        freeze_timeout_ms=number(root, "freezeTimeoutMs", DEFAULT_FREEZE_TIMEOUT_MS),
        backup_schema=_read_backup_schema(_R.child(root, "BackupSchema")),
        restore_method=_read_restore_method(_R.child(root, "RestoreMethod")),
        components=_read_components(root, what),
        excludes=[_read_file_spec(e) for e in _R.children(root, "ExcludeFiles")],
        alternate_location_mappings=[
            read_mapping(e) for e in _R.children(root, "AlternateLocationMapping")
        ],
    )
