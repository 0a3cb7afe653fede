"""Making a backup set: files out of the snapshot into a new directory, atomically.

Everything is written under ``.<name>.partial-<random>`` beside the destination; each
file is fsynced, then the directories, then the directory is renamed to its final name
and the parent fsynced. A set either exists complete or not at all.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from snapd_vss.backupset.archive import (
    Progress,
    TarWriter,
    compressed_writer,
    encode_xattrs,
    read_xattrs,
)
from snapd_vss.backupset.manifest import (
    BACKUP_COMPONENTS,
    DATA_DIR,
    MANIFEST,
    WRITERS_DIR,
    ComponentRecord,
    Entry,
    EntryType,
    Manifest,
    WriterRecord,
)
from snapd_vss.backupset.selection import Selection, SourceFile
from snapd_vss.errors import Failed, InvalidArgs

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(text: str, limit: int = 60) -> str:
    return _UNSAFE.sub("_", text).strip("_.")[:limit] or "component"


def fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: str, text: str) -> None:
    with open(path, "x", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class ComponentResult:
    record: ComponentRecord
    stored_files: int = 0
    stored_bytes: int = 0
    unchanged_files: int = 0
    skipped: list[str] = field(default_factory=list)


class BackupSetWriter:
    """Builds one backup set at ``destination`` (which must not exist, or be empty)."""

    def __init__(self, destination: str, manifest: Manifest) -> None:
        self.destination = os.path.abspath(destination)
        self.manifest = manifest
        parent = os.path.dirname(self.destination)
        if os.path.lexists(self.destination) and not (
            os.path.isdir(self.destination) and not os.listdir(self.destination)
        ):
            raise InvalidArgs(
                f"{self.destination} already exists and is not an empty directory; "
                "choose a new path for the backup set"
            )
        try:
            os.makedirs(parent, exist_ok=True)
            self.work = tempfile.mkdtemp(
                prefix=f".{os.path.basename(self.destination)}.partial-", dir=parent
            )
        except OSError as exc:
            raise Failed(f"cannot create the backup set in {parent}: {exc.strerror}") from exc
        os.chmod(self.work, 0o700)
        for sub in (DATA_DIR, WRITERS_DIR):
            os.mkdir(os.path.join(self.work, sub), 0o700)

    # -- documents --

    def add_writer(self, record: WriterRecord, xml: str) -> None:
        record.document = f"{WRITERS_DIR}/{slug(record.instance_id, 80)}.xml"
        _write_file(os.path.join(self.work, record.document), xml)
        self.manifest.writers.append(record)

    def set_backup_components(self, xml: str) -> None:
        path = os.path.join(self.work, BACKUP_COMPONENTS)
        if os.path.exists(path):
            os.unlink(path)
        _write_file(path, xml)
        self.manifest.backup_components = BACKUP_COMPONENTS

    # -- data --

    def add_component(
        self,
        record: ComponentRecord,
        selection: Selection,
        base_files: Mapping[str, Entry] | None = None,
        progress: Progress | None = None,
    ) -> ComponentResult:
        """Copy ``selection`` into the component's archive; a file unchanged since the
        matching entry of ``base_files`` (original path → entry) is only listed."""
        index = len(self.manifest.components) + 1
        record.archive = (
            f"{DATA_DIR}/{index:02d}-{slug(record.label)}{self.manifest.compression.suffix}"
        )
        record.original_root = selection.original_root
        record.snapshot_root = selection.snapshot_root
        result = ComponentResult(record, skipped=list(selection.skipped))
        path = os.path.join(self.work, record.archive)
        try:
            with compressed_writer(path, self.manifest.compression) as (sink, _raw):
                tar = TarWriter(sink, progress)
                for source in selection.files:
                    xattrs = (
                        read_xattrs(source.source) if source.type is not EntryType.SYMLINK else {}
                    )
                    entry = self._entry(source, xattrs)
                    base = (base_files or {}).get(source.original)
                    if base is not None and entry.same_content_as(base):
                        entry.sha256, entry.data_set_id = base.sha256, base.data_set_id
                        result.unchanged_files += 1
                    else:
                        if entry.type is EntryType.FILE:
                            entry.data_set_id = self.manifest.set_id
                            result.stored_files += 1
                            result.stored_bytes += entry.size
                        tar.add(entry, xattrs, source.source)
                    record.entries.append(entry)
                tar.finish()
            fsync_path(path)
            record.archive_size = os.stat(path).st_size
        except OSError as exc:
            record.succeeded = False
            record.error = f"copying {record.label} failed: {exc}"
            record.entries = []
            record.archive, record.archive_size = "", 0
            if os.path.exists(path):
                os.unlink(path)
        self.manifest.components.append(record)
        return result

    def _entry(self, source: SourceFile, xattrs: dict[str, bytes]) -> Entry:
        st = source.stat
        mtime_ns = st.st_mtime_ns
        if mtime_ns < 0:  # tar keeps whole seconds before 1970
            mtime_ns = (mtime_ns // 1_000_000_000) * 1_000_000_000
        return Entry(
            path=source.relative,
            type=source.type,
            mode=st.st_mode & 0o7777,
            uid=st.st_uid,
            gid=st.st_gid,
            mtime_ns=mtime_ns,
            ctime_ns=st.st_ctime_ns,
            size=st.st_size if source.type is EntryType.FILE else 0,
            xattrs=encode_xattrs(xattrs),
            link_target=source.link_target,
        )

    # -- finishing --

    def commit(self) -> str:
        """Write manifest.json, fsync, and move the set to its final name; returns that."""
        _write_file(os.path.join(self.work, MANIFEST), self.manifest.to_json())
        for sub in (DATA_DIR, WRITERS_DIR):
            fsync_path(os.path.join(self.work, sub), directory=True)
        os.chmod(self.work, 0o755)
        fsync_path(self.work, directory=True)
        try:
            os.rename(self.work, self.destination)
        except OSError as exc:
            raise Failed(
                f"cannot move the finished backup set to {self.destination}: {exc.strerror}; "
                f"it is complete in {self.work}"
            ) from exc
        fsync_path(os.path.dirname(self.destination), directory=True)
        return self.destination

    def abort(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
