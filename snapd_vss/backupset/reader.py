"""Reading a backup set: open, verify, list, read — what a restore needs.

backup = BackupSet.open("/backups/2026-11-22-full")
backup.verify()                          # before any file is touched; raises InvalidBackupSet
for component in backup.components:
    for entry in component.entries:      # every file at this backup point (chain resolved)
        if entry.type is EntryType.FILE:
            with backup.open_entry(component, entry) as data:   # checks sha256 at EOF
                ...
for entry, data in backup.read_files(component, files):   # many files: each archive
    ...                                                   # read once, in its order
backup.backup_components_xml()          # the saved document, for CreateRestoreSession
backup.writer_documents()               # instance id → Writer Metadata Document
backup.chain()                          # [full, incremental…, this set]
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO

from snapd_vss.backupset.archive import (
    CHUNK,
    decode_xattrs,
    decompressed_reader,
    hash_stream,
    member_mtime_ns,
    member_xattrs,
)
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
    DATA_DIR,
    MANIFEST,
    WRITERS_DIR,
    ComponentRecord,
    Compression,
    Entry,
    EntryType,
    Manifest,
    parse_manifest,
)
from snapd_vss.backupset.paths import check_member_name, check_relative, link_escapes
from snapd_vss.documents import (
    BackupComponents,
    WriterMetadata,
    parse_backup_components,
    parse_writer_metadata,
)
from snapd_vss.errors import NotFound
from snapd_vss.vocabulary import BackupType

MAX_MANIFEST_BYTES = 1 << 30
MAX_CHAIN = 1000

_TAR_TYPES = {
    EntryType.FILE: (tarfile.REGTYPE, tarfile.AREGTYPE),
    EntryType.DIR: (tarfile.DIRTYPE,),
    EntryType.SYMLINK: (tarfile.SYMTYPE,),
}


@dataclass
class VerifyReport:
    """What :meth:`BackupSet.verify` checked."""

    sets: list[str] = field(default_factory=list)  # set ids verified (the chain too)
    files: int = 0
    bytes: int = 0
    outside_links: list[str] = field(default_factory=list)  # "component: path -> target"


class BackupSet:
    """One backup set directory (see :mod:`snapd_vss.backupset.manifest` for its layout)."""

    def __init__(self, path: str, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._base: BackupSet | None = None

    @classmethod
    def open(cls, path: str) -> BackupSet:
        """Read and check ``path``/manifest.json (its schema, not yet the data)."""
        path = os.path.abspath(path)
        manifest_path = os.path.join(path, MANIFEST)
        try:
            with open(manifest_path, "rb") as f:
                text = f.read(MAX_MANIFEST_BYTES + 1)
        except FileNotFoundError:
            raise NotFound(
                f"{path} is not a backup set: it has no {MANIFEST}; "
                "give the directory vssctl backup --to created"
            ) from None
        except OSError as exc:
            raise InvalidBackupSet(f"cannot read {manifest_path}: {exc.strerror}") from exc
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(f"{manifest_path} is larger than {MAX_MANIFEST_BYTES} bytes")
        return cls(path, parse_manifest(text))

    # -- what it is --

    @property
    def id(self) -> str:
        return self.manifest.set_id

    @property
    def backup_type(self) -> BackupType:
        return self.manifest.backup_type

    @property
    def components(self) -> list[ComponentRecord]:
        return self.manifest.components

    def component(self, instance_id: str, logical_path: str, name: str) -> ComponentRecord:
        for component in self.components:
            if component.key == (instance_id, logical_path, name):
                return component
        raise NotFound(
            f"backup set {self.id} has no component {logical_path}/{name} of writer "
            f"instance {instance_id}; see its manifest.json"
        )

    def _member(self, name: str) -> str:
        return os.path.join(self.path, check_member_name(name, f"backup set {self.path}"))

    def _read_text(self, name: str) -> str:
        try:
            with open(self._member(name), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            raise MissingMember(f"backup set {self.path} has no {name}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidBackupSet(f"cannot read {name} of backup set {self.path}: {exc}") from exc

    def backup_components_xml(self) -> str:
        """The Backup Components Document saved after BackupComplete."""
        return self._read_text(self.manifest.backup_components)

    def backup_components(self) -> BackupComponents:
        return parse_backup_components(self.backup_components_xml(), f"backup set {self.id}")

    def writer_documents(self) -> dict[str, str]:
        """Writer instance id → its Writer Metadata Document as it was at backup time."""
        return {w.instance_id: self._read_text(w.document) for w in self.manifest.writers}

    def writer_metadata(self) -> dict[str, WriterMetadata]:
        return {
            instance_id: parse_writer_metadata(xml, f"backup set {self.id}")
            for instance_id, xml in self.writer_documents().items()
        }

    # -- the chain --

    def base(self) -> BackupSet | None:
        """The set this one was taken against (None for a FULL or COPY set)."""
        ref = self.manifest.base
        if ref is None:
            return None
        if self._base is not None:
            return self._base
        candidates = [os.path.normpath(os.path.join(self.path, ref.relative_path)), ref.path]
        for candidate in dict.fromkeys(c for c in candidates if c):
            if not os.path.isfile(os.path.join(candidate, MANIFEST)):
                continue
            found = BackupSet.open(candidate)
            if found.id == ref.set_id:
                self._base = found
                return found
            raise BrokenChain(
                f"the base of backup set {self.id} at {candidate} is set {found.id}, not "
                f"{ref.set_id}; put the right base set back at {ref.path}"
            )
        raise BrokenChain(
            f"backup set {self.id} is {self.backup_type.value} against set {ref.set_id}, "
            f"which is at neither {candidates[0]} nor {ref.path}; restore it there first"
        )

    def chain(self) -> list[BackupSet]:
        """The sets a restore of this point needs: the FULL first, this set last."""
        sets: list[BackupSet] = [self]
        while (base := sets[-1].base()) is not None:
            if len(sets) > MAX_CHAIN or any(s.id == base.id for s in sets):
                raise BrokenChain(f"the chain of backup set {self.id} loops at set {base.id}")
            sets.append(base)
        return list(reversed(sets))

    def last_full(self) -> BackupSet:
        """The FULL (or COPY) set at the start of this set's chain."""
        return self.chain()[0]

    # -- verification --

    def verify(self, allow_outside_links: bool = False, include_chain: bool = True) -> VerifyReport:
        """Check everything before a restore touches a file; raises InvalidBackupSet.

        Documents parse and validate; every path is relative without '..' and passes
        through no symbolic link; with ``allow_outside_links`` False no link points
        outside its component; every archive holds exactly what the manifest lists,
        with matching type, mode, owner, mtime, xattrs, size and sha256; no stray
        files. ``include_chain``: the base sets too, and that each unchanged file is
        in the set it names.
        """
        report = VerifyReport()
        sets = self.chain() if include_chain else [self]
        known = {s.id: s for s in sets}
        for backup in sets:
            backup._verify_one(report, allow_outside_links)
            report.sets.append(backup.id)
            if include_chain:
                backup._verify_references(known)
        return report

    def _verify_one(self, report: VerifyReport, allow_outside_links: bool) -> None:
        self.backup_components()
        self.writer_metadata()
        self._check_stray_files()
        for component in self.components:
            self._check_entries(component, report, allow_outside_links)
            if component.archive:
                self._check_archive(component, report)

    def _check_stray_files(self) -> None:
        expected = {MANIFEST, self.manifest.backup_components}
        expected |= {w.document for w in self.manifest.writers}
        expected |= {c.archive for c in self.components if c.archive}
        found: set[str] = set()
        for directory, dirs, files in os.walk(self.path):
            relative = os.path.relpath(directory, self.path)
            for name in files:
                found.add(name if relative == "." else f"{relative}/{name}")
            for name in dirs:
                if relative != "." or name not in (DATA_DIR, WRITERS_DIR):
                    found.add(name if relative == "." else f"{relative}/{name}")
        stray = sorted(found - expected)
        if stray:
            raise UnexpectedMember(
                f"backup set {self.path} holds files its manifest does not list: "
                f"{', '.join(stray[:5])}; it was changed after it was written"
            )
        missing = sorted(expected - found)
        if missing:
            raise MissingMember(f"backup set {self.path} lacks {', '.join(missing[:5])}")

    def _check_entries(
        self, component: ComponentRecord, report: VerifyReport, allow_outside_links: bool
    ) -> None:
        label = f"backup set {self.id}, {component.label}"
        if component.archive:
            check_member_name(component.archive, label)
            if not component.archive.startswith(f"{DATA_DIR}/"):
                raise UnsafePath(f"{label}: archive {component.archive!r} is not under data/")
        elif component.entries:
            raise ManifestInvalid(f"{label}: entries listed but no archive")
        if not os.path.isabs(component.original_root):
            raise UnsafePath(f"{label}: original_root {component.original_root!r} is relative")
        by_path: dict[str, Entry] = {}
        for entry in component.entries:
            check_relative(entry.path, label)
            if entry.path in by_path:
                raise UnexpectedMember(f"{label}: {entry.path!r} is listed twice")
            by_path[entry.path] = entry
        links = {p: e.link_target for p, e in by_path.items() if e.type is EntryType.SYMLINK}
        for entry in component.entries:
            parent = posixpath.dirname(entry.path)
            while parent:
                above = by_path.get(parent)
                if above is not None and above.type is not EntryType.DIR:
                    raise UnsafePath(
                        f"{label}: {entry.path!r} lies under {parent!r}, which is a "
                        f"{above.type.value}; restoring it could write outside the component"
                    )
                parent = posixpath.dirname(parent)
            if entry.type is EntryType.SYMLINK and link_escapes(
                entry.path, entry.link_target, component.original_root, links
            ):
                where = f"{component.label}: {entry.path} -> {entry.link_target}"
                if not allow_outside_links:
                    raise UnsafeLink(
                        f"{label}: symbolic link {entry.path!r} -> {entry.link_target!r} "
                        "points outside its component; refusing the set "
                        "(verify(allow_outside_links=True) accepts links kept as links)"
                    )
                report.outside_links.append(where)

    def _check_archive(self, component: ComponentRecord, report: VerifyReport) -> None:
        label = f"backup set {self.id}, {component.label}"
        path = self._member(component.archive)
        size = os.lstat(path).st_size
        if size != component.archive_size:
            raise ChecksumMismatch(
                f"{label}: {component.archive} is {size} bytes, the manifest says "
                f"{component.archive_size}"
            )
        expected = {
            e.path: e
            for e in component.entries
            if e.type is not EntryType.FILE or e.data_set_id == self.id
        }
        seen: set[str] = set()
        compression = self.manifest.compression
        with decompressed_reader(path, compression) as stream:
            for member, data in _members(stream, compression, label):
                entry = expected.get(member.name)
                if entry is None or member.name in seen:
                    raise UnexpectedMember(
                        f"{label}: the archive holds {member.name!r}, which the manifest does "
                        "not list (or lists once); the set was changed"
                    )
                seen.add(member.name)
                _check_member(member, entry, label, compression)
                if entry.type is EntryType.FILE:
                    assert data is not None
                    digest, got = hash_stream(data, member.size)
                    if got != entry.size or digest != entry.sha256:
                        raise ChecksumMismatch(
                            f"{label}: {entry.path!r} does not match its sha256 or size; "
                            "the set is damaged"
                        )
                    report.files += 1
                    report.bytes += got
        missing = sorted(set(expected) - seen)
        if missing:
            raise MissingMember(f"{label}: the archive lacks {', '.join(missing[:5])}")

    def _verify_references(self, known: dict[str, BackupSet]) -> None:
        for component in self.components:
            root = component.original_root.rstrip("/")
            for entry in component.entries:
                if entry.type is not EntryType.FILE or entry.data_set_id == self.id:
                    continue
                holder = known.get(entry.data_set_id)
                if holder is None:
                    raise BrokenChain(
                        f"backup set {self.id}: {root}/{entry.path} is in set "
                        f"{entry.data_set_id}, which is not in this set's chain"
                    )
                held = holder.find_stored(f"{root}/{entry.path}")
                if held is None or held.sha256 != entry.sha256:
                    raise BrokenChain(
                        f"backup set {self.id}: set {entry.data_set_id} does not hold "
                        f"{root}/{entry.path} with the recorded sha256"
                    )

    def find_stored(self, original: str) -> Entry | None:
        """The file entry stored in *this* set's archives for the original path."""
        located = self._locate(original)
        return located[1] if located is not None else None

    def _locate(self, original: str) -> tuple[ComponentRecord, Entry] | None:
        for component in self.components:
            root = component.original_root.rstrip("/")
            if not original.startswith(root + "/"):
                continue
            relative = original[len(root) + 1 :]
            for entry in component.entries:
                if (
                    entry.path == relative
                    and entry.type is EntryType.FILE
                    and entry.data_set_id == self.id
                ):
                    return component, entry
        return None

    # -- reading content --

    def archive_path(self, component: ComponentRecord) -> str:
        return self._member(component.archive)

    @contextlib.contextmanager
    def open_entry(self, component: ComponentRecord, entry: Entry) -> Iterator[EntryReader]:
        """A file's content, from this set or the set of the chain that holds it.

        The stream raises ChecksumMismatch when its end is read and the bytes do not
        match the manifest (write to a temporary name; rename only after EOF).
        """
        if entry.type is not EntryType.FILE:
            raise NotFound(f"{entry.path} is a {entry.type.value}, not a file")
        holder: BackupSet = self
        if entry.data_set_id != self.id:
            found = next((s for s in self.chain() if s.id == entry.data_set_id), None)
            if found is None:
                raise BrokenChain(
                    f"set {entry.data_set_id} holding {entry.path} is not in the chain"
                )
            holder = found
            original = f"{component.original_root.rstrip('/')}/{entry.path}"
            located = holder._locate(original)
            if located is None:
                raise BrokenChain(f"set {holder.id} does not hold {original}")
            component, entry = located[0], _with_sha(located[1], entry.sha256)
        with holder._open_stored(component, entry) as raw:
            yield EntryReader(raw, entry)

    @contextlib.contextmanager
    def _open_stored(self, component: ComponentRecord, entry: Entry) -> Iterator[IO[bytes]]:
        path = self.archive_path(component)
        compression = self.manifest.compression
        if compression is Compression.NONE and entry.offset >= 0:
            with open(path, "rb") as f:
                f.seek(entry.offset)
                yield f
            return
        label = f"backup set {self.id}, {component.label}"
        with decompressed_reader(path, compression) as stream:
            for member, data in _members(stream, compression, label):
                if member.name == entry.path and data is not None:
                    yield data
                    return
        raise MissingMember(f"{label}: the archive lacks {entry.path!r}")

    def read_files(
        self, component: ComponentRecord, entries: Sequence[Entry], check: bool = True
    ) -> Iterator[tuple[Entry, EntryReader]]:
        """The content of many file ``entries`` of ``component``: each archive read once.

        Yields ``(entry, reader)`` for every entry, grouped by the archive that holds it
        (the chain's sets first to last) and in that archive's order, so a compressed
        archive is decompressed once, not once per file. Read each reader to its end
        (which checks the sha256, raising ChecksumMismatch) before taking the next.
        ``check=False``: the caller checks each file's sha256 itself.
        """
        chain = {s.id: s for s in self.chain()} if self.manifest.base else {self.id: self}
        order = list(chain)
        indexes: dict[str, dict[str, tuple[ComponentRecord, Entry]]] = {}
        groups: dict[tuple[int, str], tuple[BackupSet, ComponentRecord, list[_Wanted]]] = {}
        for entry in entries:
            holder, stored_component, stored = self._stored(component, entry, chain, indexes)
            key = (order.index(holder.id), stored_component.archive)
            group = groups.setdefault(key, (holder, stored_component, []))
            group[2].append(_Wanted(entry, stored))
        for key in sorted(groups):
            holder, stored_component, wanted = groups[key]
            yield from holder._read_archive(stored_component, wanted, check)

    def _stored(
        self,
        component: ComponentRecord,
        entry: Entry,
        chain: dict[str, BackupSet],
        indexes: dict[str, dict[str, tuple[ComponentRecord, Entry]]],
    ) -> tuple[BackupSet, ComponentRecord, Entry]:
        """Which set, component and entry hold ``entry``'s bytes."""
        if entry.type is not EntryType.FILE:
            raise NotFound(f"{entry.path} is a {entry.type.value}, not a file")
        if entry.data_set_id == self.id:
            return self, component, entry
        holder = chain.get(entry.data_set_id)
        if holder is None:
            raise BrokenChain(f"set {entry.data_set_id} holding {entry.path} is not in the chain")
        index = indexes.get(holder.id)
        if index is None:
            index = indexes[holder.id] = holder._stored_index()
        original = f"{component.original_root.rstrip('/')}/{entry.path}"
        located = index.get(original)
        if located is None:
            raise BrokenChain(f"set {holder.id} does not hold {original}")
        return holder, located[0], _with_sha(located[1], entry.sha256)

    def _stored_index(self) -> dict[str, tuple[ComponentRecord, Entry]]:
        """Every file stored in this set's archives, by its original absolute path."""
        index: dict[str, tuple[ComponentRecord, Entry]] = {}
        for component in self.components:
            root = component.original_root.rstrip("/")
            for entry in component.entries:
                if entry.type is EntryType.FILE and entry.data_set_id == self.id:
                    index.setdefault(f"{root}/{entry.path}", (component, entry))
        return index

    def _read_archive(
        self, component: ComponentRecord, wanted: list[_Wanted], check: bool
    ) -> Iterator[tuple[Entry, EntryReader]]:
        path = self.archive_path(component)
        compression = self.manifest.compression
        if all(w.stored.offset >= 0 for w in wanted):
            yield from self._read_at_offsets(path, compression, wanted, check)
            return
        label = f"backup set {self.id}, {component.label}"
        by_name = {w.stored.path: w for w in wanted}
        with decompressed_reader(path, compression) as stream:
            for member, data in _members(stream, compression, label):
                w = by_name.get(member.name)
                if w is None:
                    continue
                if data is None:
                    raise UnexpectedMember(f"{label}: {member.name!r} is not a file in the archive")
                del by_name[member.name]
                yield w.entry, EntryReader(data, w.stored, check)
                if not by_name:
                    return
        raise MissingMember(f"{label}: the archive lacks {', '.join(sorted(by_name)[:5])}")

    def _read_at_offsets(
        self, path: str, compression: Compression, wanted: list[_Wanted], check: bool
    ) -> Iterator[tuple[Entry, EntryReader]]:
        """Straight to each file's data by its recorded offset in the uncompressed tar.

        Plain archives seek; compressed ones are decompressed once, front to back, the
        bytes between wanted files skipped (no tar parsing: the manifest knows where each
        file's bytes are, and their sha256 is checked as they are read).
        """
        ordered = sorted(wanted, key=lambda x: x.stored.offset)
        if compression is Compression.NONE:
            with open(path, "rb", buffering=0) as f:
                for one in ordered:
                    f.seek(one.stored.offset)
                    yield one.entry, EntryReader(f, one.stored, check)
            return
        scratch = memoryview(bytearray(CHUNK))
        with decompressed_reader(path, compression) as stream:
            position = 0
            for one in ordered:
                if one.stored.offset < position:
                    raise ManifestInvalid(f"{one.stored.path}: its data offset overlaps another")
                _skip(stream, one.stored.offset - position, scratch, one.stored.path)
                reader = EntryReader(stream, one.stored, check)
                yield one.entry, reader
                position = one.stored.offset + one.stored.size - reader.remaining

    def iter_contents(self, component: ComponentRecord) -> Iterator[tuple[Entry, IO[bytes] | None]]:
        """This set's archive of ``component`` in order, one pass: (entry, data or None)."""
        if not component.archive:
            return
        label = f"backup set {self.id}, {component.label}"
        by_path = {e.path: e for e in component.entries}
        compression = self.manifest.compression
        with decompressed_reader(self.archive_path(component), compression) as stream:
            for member, data in _members(stream, compression, label):
                entry = by_path.get(member.name)
                if entry is None:
                    raise UnexpectedMember(f"{label}: {member.name!r} is not in the manifest")
                yield entry, data


def _skip(stream: IO[bytes], count: int, scratch: memoryview, what: str) -> None:
    readinto = getattr(stream, "readinto", None)
    while count:
        want = min(count, len(scratch))
        n = readinto(scratch[:want]) if readinto is not None else len(stream.read(want))
        if not n:
            raise ChecksumMismatch(f"{what}: the archive ends before its data")
        count -= n


@dataclass(frozen=True)
class _Wanted:
    entry: Entry  # as the restored set lists it
    stored: Entry  # as the set holding the bytes stores it (same content)


def _with_sha(entry: Entry, sha256: str) -> Entry:
    if entry.sha256 != sha256:
        raise BrokenChain(f"{entry.path}: the base set holds different content")
    return entry


class EntryReader:
    """Reads exactly ``entry.size`` bytes; checks the sha256 when the end is reached.

    ``check=False`` leaves the sha256 to the caller (e.g. a restore that hashes beside
    its writes); the size is always enforced.
    """

    def __init__(self, raw: IO[bytes], entry: Entry, check: bool = True) -> None:
        self.raw = raw
        self.entry = entry
        self.remaining = entry.size
        self.digest = hashlib.sha256()
        self.check = check
        self.checked = not check

    def readinto(self, buffer: memoryview) -> int:
        """Read up to ``len(buffer)`` bytes into it; 0 at the end of the entry."""
        want = min(len(buffer), self.remaining)
        if not want:
            return 0
        target = buffer[:want]
        readinto = getattr(self.raw, "readinto", None)
        if readinto is not None:
            n: int = readinto(target) or 0
        else:
            data = self.raw.read(want)
            n = len(data)
            target[:n] = data
        if not n:
            raise ChecksumMismatch(f"{self.entry.path}: the archive ends early")
        self.remaining -= n
        if self.check:
            self.digest.update(target[:n])
        self._check_at_end()
        return n

    def _check_at_end(self) -> None:
        if self.remaining == 0 and not self.checked:
            self.checked = True
            if self.digest.hexdigest() != self.entry.sha256:
                raise ChecksumMismatch(
                    f"{self.entry.path}: content does not match its sha256; the set is damaged"
                )

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self.raw.read(min(size, CHUNK * 8)) if size else b""
        self.remaining -= len(data)
        if self.check:
            self.digest.update(data)
        if size and not data:
            raise ChecksumMismatch(f"{self.entry.path}: the archive ends early")
        self._check_at_end()
        return data

    def readable(self) -> bool:
        return True


def _members(
    stream: IO[bytes], compression: Compression, label: str
) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | None]]:
    mode = "r:" if compression is Compression.NONE else "r|"
    try:
        with tarfile.open(fileobj=stream, mode=mode, bufsize=CHUNK) as tar:  # type: ignore[call-overload]
            for member in tar:
                data = tar.extractfile(member) if member.isreg() else None
                yield member, data
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise InvalidBackupSet(f"{label}: the archive is not a valid tar: {exc}") from exc


def _check_member(
    member: tarfile.TarInfo, entry: Entry, label: str, compression: Compression
) -> None:
    problems = []
    if member.type not in _TAR_TYPES[entry.type]:
        problems.append(f"type {member.type!r}")
    if member.mode != entry.mode:
        problems.append(f"mode {member.mode:o}")
    if (member.uid, member.gid) != (entry.uid, entry.gid):
        problems.append(f"owner {member.uid}:{member.gid}")
    if member_mtime_ns(member) != entry.mtime_ns:
        problems.append("mtime")
    if entry.type is EntryType.SYMLINK and member.linkname != entry.link_target:
        problems.append(f"link target {member.linkname!r}")
    if entry.type is EntryType.FILE and member.size != entry.size:
        problems.append(f"size {member.size}")
    if member_xattrs(member) != decode_xattrs(entry.xattrs):
        problems.append("xattrs")
    if (
        compression is Compression.NONE
        and entry.type is EntryType.FILE
        and member.offset_data != entry.offset
    ):
        problems.append(f"data offset {member.offset_data}")
    if problems:
        raise UnexpectedMember(
            f"{label}: {entry.path!r} in the archive differs from the manifest "
            f"({', '.join(problems)}); the set was changed"
        )
