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
import threading
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


class Prefetcher:
    """Asks the kernel to read the next files ahead (POSIX_FADV_WILLNEED) while one is copied.

    A fresh snapshot's page cache is cold; many small files would otherwise be read one
    synchronous request at a time.
    """

    AHEAD_FILES = 64
    AHEAD_BYTES = 64 << 20

    def __init__(self, files: list[SourceFile]) -> None:
        self.files = [f for f in files if f.type is EntryType.FILE]
        self.position = 0  # index of the file being copied
        self.stopped = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)
        self._thread.start()

    def copied(self, source: SourceFile) -> None:
        if source.type is EntryType.FILE:
            with self._changed:
                self.position += 1
                self._changed.notify()

    def stop(self) -> None:
        with self._changed:
            self.stopped = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        ahead_bytes = 0
        for index, source in enumerate(self.files):
            with self._changed:
                while not self.stopped and (
                    index - self.position > self.AHEAD_FILES
                    or (index > self.position and ahead_bytes > self.AHEAD_BYTES)
                ):
                    self._changed.wait()
                    ahead_bytes = sum(f.stat.st_size for f in self.files[self.position : index])
                if self.stopped:
                    return
            ahead_bytes += source.stat.st_size
            try:
                fd = os.open(source.source, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)


def source_unchanged(source: SourceFile, base: Entry) -> bool:
    """Whether a file in the snapshot is the one ``base`` (from the base set) stored.

    Same size, mtime and ctime (a snapshot keeps ctimes; any write or metadata change
    moves the ctime).
    """
    st = source.stat
    return (
        source.type is EntryType.FILE
        and base.type is EntryType.FILE
        and (base.size, base.mtime_ns, base.ctime_ns)
        == (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    )


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
        unchanged = {
            source.original
            for source in selection.files
            if (base := (base_files or {}).get(source.original)) is not None
            and source_unchanged(source, base)
        }
        prefetch = Prefetcher([f for f in selection.files if f.original not in unchanged])
        try:
            with compressed_writer(path, self.manifest.compression) as (sink, _raw):
                tar = TarWriter(sink, progress)
                for source in selection.files:
                    xattrs = (
                        read_xattrs(source.source) if source.type is not EntryType.SYMLINK else {}
                    )
                    entry = self._entry(source, xattrs)
                    if source.original in unchanged:
                        base = (base_files or {})[source.original]
                        entry.sha256, entry.data_set_id = base.sha256, base.data_set_id
                        result.unchanged_files += 1
                    else:
                        if entry.type is EntryType.FILE:
                            entry.data_set_id = self.manifest.set_id
                            result.stored_files += 1
                            result.stored_bytes += entry.size
                        tar.add(entry, xattrs, source.source)
                    prefetch.copied(source)
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
        finally:
            prefetch.stop()
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
