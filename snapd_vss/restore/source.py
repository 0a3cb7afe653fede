"""What a restore puts back: components of a backup set, their entries, their bytes.

A thin view over :class:`snapd_vss.backupset.BackupSet` (the set and its chain).
:func:`open_backup_set` opens it; :meth:`RestoreSource.verify` checks everything
(documents, paths, links, every archive's sizes and sha256, the chain) *before* a single
file is touched. A chain restores the state of the chosen set: its manifest lists every
file the component had at that point, wherever in the chain the bytes are stored.
"""

from __future__ import annotations

import functools
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from snapd_vss.backupset import (
    BackupSet,
    ComponentRecord,
    Entry,
    EntryReader,
    EntryType,
    SpecRecord,
)
from snapd_vss.backupset.archive import decode_xattrs
from snapd_vss.errors import InvalidArgs, InvalidState, NotFound
from snapd_vss.restore.files import Extent

CHUNK = 1 << 20
#: Buffers :meth:`RestoreSource.contents` hands out in turn: a chunk stays valid until
#: ``RING - 1`` more chunks are taken.
RING = 2


@dataclass(frozen=True)
class SourceEntry:
    """One file, directory or symlink to put back, relative to its component's root."""

    path: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    sha256: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict, hash=False, compare=False)
    link_target: str = ""
    data_set_id: str = ""
    offset: int = -1
    record: Entry | None = field(default=None, hash=False, compare=False, repr=False)

    @classmethod
    def of(cls, entry: Entry) -> SourceEntry:
        return cls(
            path=entry.path,
            type=entry.type,
            mode=entry.mode,
            uid=entry.uid,
            gid=entry.gid,
            mtime_ns=entry.mtime_ns,
            size=entry.size,
            sha256=entry.sha256,
            xattrs=decode_xattrs(entry.xattrs),
            link_target=entry.link_target,
            data_set_id=entry.data_set_id,
            offset=entry.offset,
            record=entry,
        )


@dataclass
class SourceComponent:
    record: ComponentRecord
    entries: list[SourceEntry]

    @property
    def instance_id(self) -> str:
        return self.record.instance_id

    @property
    def writer_id(self) -> str:
        return self.record.writer_id

    @property
    def writer_name(self) -> str:
        return self.record.writer_name

    @property
    def logical_path(self) -> str:
        return self.record.logical_path

    @property
    def name(self) -> str:
        return self.record.name

    @functools.cached_property
    def original_root(self) -> str:
        return os.path.normpath(self.record.original_root)

    @property
    def file_specs(self) -> list[SpecRecord]:
        return self.record.file_specs

    @property
    def excludes(self) -> list[SpecRecord]:
        return self.record.excludes

    @property
    def key(self) -> tuple[str, str, str]:
        return self.record.key

    @property
    def label(self) -> str:
        return self.record.label

    @property
    def is_volume(self) -> bool:
        return not self.record.instance_id

    def matches(self, selector: str) -> bool:
        """``WRITER:LOGICAL_PATH[/NAME]``; WRITER is a writer name, writer id or instance id."""
        writer, sep, path = selector.partition(":")
        if not sep:
            raise InvalidArgs(f"--component {selector!r}: write WRITER:LOGICAL_PATH[/NAME]")
        if writer not in (self.writer_name, self.writer_id, self.instance_id):
            return False
        full = f"{self.logical_path}/{self.name}" if self.logical_path else self.name
        path = path.strip("/")
        return path in (full, self.logical_path) or full.startswith(path + "/")


@dataclass
class RestoreSource:
    """A backup set (and its chain), seen as components to restore."""

    backup: BackupSet
    components: list[SourceComponent]
    verified: bool = False

    @property
    def path(self) -> str:
        return self.backup.path

    @property
    def set_id(self) -> str:
        return self.backup.id

    def backup_components_xml(self) -> str:
        return self.backup.backup_components_xml()

    def writer_documents(self) -> dict[str, str]:
        return self.backup.writer_documents()

    def writer_uid(self, instance_id: str) -> int | None:
        """The writer's uid at backup time, as the set recorded it (None in older sets)."""
        for writer in self.backup.manifest.writers:
            if writer.instance_id == instance_id:
                return writer.uid
        return None

    def select(self, selectors: list[str]) -> list[SourceComponent]:
        """The components ``selectors`` name (all, when none); NotFound for a miss."""
        if not selectors:
            return list(self.components)
        chosen: list[SourceComponent] = []
        for selector in selectors:
            found = [c for c in self.components if c.matches(selector)]
            if not found:
                have = ", ".join(
                    f"{c.writer_name}:{c.logical_path}/{c.name}" for c in self.components
                )
                raise NotFound(
                    f"--component {selector}: no such component in {self.path} "
                    f"(it has: {have or 'nothing'})"
                )
            chosen.extend(c for c in found if c not in chosen)
        return chosen

    def verify(self) -> int:
        """Check the whole set and its chain; raises InvalidBackupSet. Returns bytes checked."""
        report = self.backup.verify()
        self.verified = True
        return report.bytes

    def chunks(self, component: SourceComponent, entry: SourceEntry) -> Iterator[bytes]:
        """``entry``'s bytes (the sha256 is checked at the end, again, as they are read)."""
        if not self.verified:
            raise InvalidState("verify the backup set before reading files from it")
        assert entry.record is not None
        with self.backup.open_entry(component.record, entry.record) as reader:
            while True:
                chunk = reader.read(CHUNK)
                if not chunk:
                    return
                yield chunk

    def contents(
        self, component: SourceComponent, entries: Sequence[SourceEntry]
    ) -> Iterator[tuple[SourceEntry, Iterator[memoryview], Extent | None]]:
        """Many files' bytes, each archive read once in its order (not ``entries``' order).

        UNCHECKED: the caller checks each file's size and sha256 (``files.write_temp``
        does). A file stored as it is (an uncompressed archive) also comes as an
        :class:`~.files.Extent` (the archive's fd and the offset of its bytes), valid until
        the next file is taken: the caller copies it or reads the chunks, not both. The
        chunks are views of :data:`RING` buffers used in turn (across files): a chunk
        stays valid until ``RING - 1`` more chunks are taken. A chunk iterator begun must
        be read to its end before the next file is taken.
        """
        if not self.verified:
            raise InvalidState("verify the backup set before reading files from it")
        by_path = {e.path: e for e in entries}
        records = [e.record for e in entries if e.record is not None]
        if len(records) != len(entries):
            raise InvalidArgs("entries without their manifest record cannot be read")
        ring = _Ring([memoryview(bytearray(CHUNK)) for _ in range(RING)])
        for record, reader in self.backup.read_files(component.record, records, check=False):
            yield by_path[record.path], ring.chunks(reader), _extent(reader)


def _extent(reader: EntryReader) -> Extent | None:
    """Where ``reader``'s bytes are, if it reads a plain file positioned at their start."""
    raw = reader.raw
    if not isinstance(raw, io.FileIO) or reader.remaining != reader.entry.size:
        return None
    return Extent(raw.fileno(), raw.tell())


@dataclass
class _Ring:
    """Read buffers used in turn, so a chunk outlives the next ``len(buffers) - 1``."""

    buffers: list[memoryview]
    turn: int = 0

    def chunks(self, reader: EntryReader) -> Iterator[memoryview]:
        while True:
            buffer = self.buffers[self.turn]
            n = reader.readinto(buffer)
            if not n:
                return
            self.turn = (self.turn + 1) % len(self.buffers)
            yield buffer[:n]


def open_backup_set(path: str) -> RestoreSource:
    """The set at ``path``; call :meth:`RestoreSource.verify` before restoring from it."""
    backup = BackupSet.open(path)
    components = [
        SourceComponent(record, [SourceEntry.of(e) for e in record.entries])
        for record in backup.components
        if record.succeeded
    ]
    return RestoreSource(backup, components)
