"""``manifest.json``: what a backup set holds, file by file (format version 1).

The manifest is plain JSON so that people and other programs can read it::

    {
      "format": "snapd-vss-backup-set", "version": 1,
      "set_id": "UUID", "created_at": "2026-11-22T10:00:00.000000Z",
      "backup_type": "FULL", "snapshot_set_id": "UUID", "compression": "none",
      "base": null | {"set_id", "backup_type", "path", "relative_path"},
      "backup_components": "backup-components.xml",
      "writers": [{"instance_id", "writer_id", "name", "instance_name", "document",
                   "uid" (optional)}],
      "components": [{
        "instance_id", "writer_id", "writer_name", "logical_path", "name", "type",
        "volume", "snapshot_id", "original_root", "snapshot_root",
        "file_specs": [{"kind", "path", "filespec", "recursive"}],
        "excludes": [{"path", "filespec", "recursive"}],
        "archive": "data/01-NAME.tar", "archive_size": N, "succeeded": true, "error": "",
        "entries": [{"path", "type", "size", "sha256", "mode", "uid", "gid",
                     "mtime_ns", "ctime_ns", "xattrs": {NAME: BASE64}, "link_target",
                     "data_set_id", "offset"}]
      }]
    }

Every component lists *every* file it had at backup time. An entry whose
``data_set_id`` is this set's id has its content in this set's archive (at byte
``offset`` of the uncompressed tar); any other ``data_set_id`` names the set of the
chain (``base`` → its base …) that holds the unchanged content. Paths are relative to
the component's ``original_root``.

A writer's ``uid`` is the uid its process ran as at backup time (the daemon's
RegisteredWriter ``Uid``). It was added later, as an optional key: sets written before
have none, and a manifest without it is still read (``WriterRecord.uid`` is None). A
restore uses it to judge where a writer that is no longer registered may direct files.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

from snapd_vss.backupset.errors import ManifestInvalid
from snapd_vss.vocabulary import BackupType

FORMAT = "snapd-vss-backup-set"
VERSION = 1
MANIFEST = "manifest.json"
BACKUP_COMPONENTS = "backup-components.xml"
WRITERS_DIR = "writers"
DATA_DIR = "data"
SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: ``type`` of a component that is a whole volume (no writer).
VOLUME_COMPONENT = "VOLUME"


class EntryType(StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


class Compression(StrEnum):
    NONE = "none"
    ZSTD = "zstd"

    @property
    def suffix(self) -> str:
        return ".tar.zst" if self is Compression.ZSTD else ".tar"


class SpecKind(StrEnum):
    FILES = "files"
    DATABASE = "database"
    LOG = "log"
    VOLUME = "volume"


@dataclass
class Entry:
    """One file, directory or symbolic link of a component."""

    path: str  # relative to the component's original_root, '/'-separated
    type: EntryType
    mode: int  # permission bits (and setuid/setgid/sticky), without the file type
    uid: int
    gid: int
    mtime_ns: int
    ctime_ns: int = 0
    size: int = 0  # files only
    sha256: str = ""  # files only
    xattrs: dict[str, str] = field(default_factory=dict)  # name → base64 of the value
    link_target: str = ""  # symlinks only
    data_set_id: str = ""  # files: the set whose archive holds the content
    offset: int = -1  # files stored here: data offset in the uncompressed tar


@dataclass
class SpecRecord:
    kind: SpecKind
    path: str
    filespec: str = "*"
    recursive: bool = False


@dataclass
class ComponentRecord:
    """One selected writer component (or one whole volume) and its files."""

    instance_id: str  # "" for a whole volume
    writer_id: str
    writer_name: str
    logical_path: str
    name: str
    type: str  # DATABASE, FILEGROUP, or VOLUME
    volume: str  # the volume's mount point
    snapshot_id: str
    original_root: str  # where the files live (the component's common directory)
    snapshot_root: str  # where they were read from (inside the exposed snapshot)
    archive: str  # relative to the set's directory
    file_specs: list[SpecRecord] = field(default_factory=list)
    excludes: list[SpecRecord] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    archive_size: int = 0
    succeeded: bool = True
    error: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.instance_id, self.logical_path, self.name)

    @property
    def label(self) -> str:
        path = f"{self.logical_path}/{self.name}" if self.logical_path else self.name
        return f"{self.writer_name}: {path}" if self.writer_name else f"volume {path}"


@dataclass
class WriterRecord:
    instance_id: str
    writer_id: str
    name: str
    instance_name: str
    document: str  # relative path of its Writer Metadata Document
    uid: int | None = None  # the writer's Uid at backup time; None in older sets


@dataclass
class BaseRef:
    """The set an incremental/differential/log set was taken against."""

    set_id: str
    backup_type: BackupType
    path: str  # absolute, as it was when this set was made
    relative_path: str  # from this set's directory (found first, so trees can move)


@dataclass
class Manifest:
    set_id: str
    created_at: str
    backup_type: BackupType
    snapshot_set_id: str = ""
    compression: Compression = Compression.NONE
    base: BaseRef | None = None
    backup_components: str = BACKUP_COMPONENTS
    writers: list[WriterRecord] = field(default_factory=list)
    components: list[ComponentRecord] = field(default_factory=list)
    format: str = FORMAT
    version: int = VERSION

    def to_json(self) -> str:
        value = asdict(self)
        for writer in value["writers"]:
            if writer["uid"] is None:  # optional: absent rather than null
                del writer["uid"]
        return json.dumps(value, indent=1, sort_keys=False, ensure_ascii=True) + "\n"


# ----- reading, with a strict schema ---------------------------------------------------

_T = TypeVar("_T")


class _Fields:
    """Typed access to one JSON object; every problem is ManifestInvalid with a location."""

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, dict):
            raise ManifestInvalid(f"manifest.json: {where} must be an object")
        self.value: dict[str, Any] = value
        self.where = where

    def _get(self, key: str, kinds: tuple[type, ...], what: str) -> Any:
        if key not in self.value:
            raise ManifestInvalid(f"manifest.json: {self.where} has no {key!r}")
        value = self.value[key]
        if isinstance(value, bool) and bool not in kinds:
            raise ManifestInvalid(f"manifest.json: {self.where}.{key} must be {what}")
        if not isinstance(value, kinds):
            raise ManifestInvalid(f"manifest.json: {self.where}.{key} must be {what}")
        return value

    def text(self, key: str) -> str:
        text: str = self._get(key, (str,), "a string")
        if "\0" in text:
            raise ManifestInvalid(f"manifest.json: {self.where}.{key} contains a NUL character")
        return text

    def integer(self, key: str, minimum: int = 0) -> int:
        number: int = self._get(key, (int,), "an integer")
        if number < minimum:
            raise ManifestInvalid(f"manifest.json: {self.where}.{key} must be ≥ {minimum}")
        return number

    def flag(self, key: str) -> bool:
        flag: bool = self._get(key, (bool,), "true or false")
        return flag

    def items(self, key: str, item: Callable[[object, str], _T]) -> list[_T]:
        items: list[object] = self._get(key, (list,), "a list")
        return [item(v, f"{self.where}.{key}[{i}]") for i, v in enumerate(items)]

    def choice(self, key: str, cls: Callable[[str], _T]) -> _T:
        text = self.text(key)
        try:
            return cls(text)
        except ValueError:
            raise ManifestInvalid(
                f"manifest.json: {self.where}.{key} = {text!r} is not a known value"
            ) from None

    def check_keys(self, allowed: frozenset[str]) -> None:
        unknown = sorted(set(self.value) - allowed)
        if unknown:
            raise ManifestInvalid(
                f"manifest.json: {self.where} has unknown keys {', '.join(unknown)}"
            )


@functools.cache
def _fields_of(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _xattrs(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ManifestInvalid(f"manifest.json: {where} must map names to base64 strings")
    return dict(value)


def _entry(value: object, where: str) -> Entry:
    f = _Fields(value, where)
    f.check_keys(_fields_of(Entry))
    entry = Entry(
        path=f.text("path"),
        type=f.choice("type", EntryType),
        mode=f.integer("mode"),
        uid=f.integer("uid"),
        gid=f.integer("gid"),
        mtime_ns=f.integer("mtime_ns", minimum=-(2**63)),
        ctime_ns=f.integer("ctime_ns", minimum=-(2**63)),
        size=f.integer("size"),
        sha256=f.text("sha256"),
        xattrs=_xattrs(f.value.get("xattrs", {}), f"{where}.xattrs"),
        link_target=f.text("link_target"),
        data_set_id=f.text("data_set_id"),
        offset=f.integer("offset", minimum=-1),
    )
    if entry.mode > 0o7777:
        raise ManifestInvalid(f"manifest.json: {where}.mode has file-type bits; only 0o7777")
    if entry.type is EntryType.FILE:
        if not SHA256_RE.fullmatch(entry.sha256):
            raise ManifestInvalid(f"manifest.json: {where}.sha256 is not a sha256 hex digest")
        if not entry.data_set_id:
            raise ManifestInvalid(f"manifest.json: {where} is a file without data_set_id")
    elif entry.size or entry.sha256 or entry.data_set_id:
        raise ManifestInvalid(f"manifest.json: {where} is a {entry.type} with file content")
    if (entry.type is EntryType.SYMLINK) != bool(entry.link_target):
        raise ManifestInvalid(f"manifest.json: {where}: only symlinks have a link_target")
    return entry


def _spec(value: object, where: str) -> SpecRecord:
    f = _Fields(value, where)
    f.check_keys(_fields_of(SpecRecord))
    return SpecRecord(
        kind=f.choice("kind", SpecKind),
        path=f.text("path"),
        filespec=f.text("filespec"),
        recursive=f.flag("recursive"),
    )


def _component(value: object, where: str) -> ComponentRecord:
    f = _Fields(value, where)
    f.check_keys(_fields_of(ComponentRecord))
    return ComponentRecord(
        instance_id=f.text("instance_id"),
        writer_id=f.text("writer_id"),
        writer_name=f.text("writer_name"),
        logical_path=f.text("logical_path"),
        name=f.text("name"),
        type=f.text("type"),
        volume=f.text("volume"),
        snapshot_id=f.text("snapshot_id"),
        original_root=f.text("original_root"),
        snapshot_root=f.text("snapshot_root"),
        archive=f.text("archive"),
        file_specs=f.items("file_specs", _spec),
        excludes=f.items("excludes", _spec),
        entries=f.items("entries", _entry),
        archive_size=f.integer("archive_size"),
        succeeded=f.flag("succeeded"),
        error=f.text("error"),
    )


def _writer(value: object, where: str) -> WriterRecord:
    f = _Fields(value, where)
    f.check_keys(_fields_of(WriterRecord))
    return WriterRecord(
        instance_id=f.text("instance_id"),
        writer_id=f.text("writer_id"),
        name=f.text("name"),
        instance_name=f.text("instance_name"),
        document=f.text("document"),
        uid=None if f.value.get("uid") is None else f.integer("uid"),
    )


def _base(value: object, where: str) -> BaseRef | None:
    if value is None:
        return None
    f = _Fields(value, where)
    f.check_keys(_fields_of(BaseRef))
    return BaseRef(
        set_id=f.text("set_id"),
        backup_type=f.choice("backup_type", BackupType),
        path=f.text("path"),
        relative_path=f.text("relative_path"),
    )


def parse_manifest(text: str | bytes) -> Manifest:
    """The manifest in ``text``; ManifestInvalid if it does not follow format version 1."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ManifestInvalid(f"manifest.json is not valid JSON: {exc}") from None
    f = _Fields(value, "the top level")
    if value.get("format") != FORMAT:
        raise ManifestInvalid(
            f"manifest.json: format is {value.get('format')!r}, not {FORMAT!r}; "
            "this is not a snapd-vss backup set"
        )
    if value.get("version") != VERSION:
        raise ManifestInvalid(
            f"manifest.json: version {value.get('version')!r} is not supported "
            f"(this snapd-vss reads version {VERSION}); use a newer snapd-vss"
        )
    f.check_keys(_fields_of(Manifest))
    return Manifest(
        set_id=f.text("set_id"),
        created_at=f.text("created_at"),
        backup_type=f.choice("backup_type", BackupType),
        snapshot_set_id=f.text("snapshot_set_id"),
        compression=f.choice("compression", Compression),
        base=_base(value.get("base"), "base"),
        backup_components=f.text("backup_components"),
        writers=f.items("writers", _writer),
        components=f.items("components", _component),
    )


def index_by_path(components: list[ComponentRecord]) -> Mapping[str, Entry]:
    """Every file entry of ``components`` by its original absolute path."""
    found: dict[str, Entry] = {}
    for component in components:
        root = component.original_root.rstrip("/") or "/"
        for entry in component.entries:
            if entry.type is EntryType.FILE:
                found[f"{root.rstrip('/')}/{entry.path}"] = entry
    return found
