"""Which files of a component to copy, found inside the snapshot.

A component's file specs (path, filespec, recursive — Files, DatabaseFiles and
DatabaseLogFiles alike) name files on the live system; each is looked up in the
snapshot of the volume that holds it. Symbolic links are never followed: a link is
kept as a link, a spec directory reached through a link inside the snapshot is skipped
(with the reason), and nothing outside the snapshot is read. The writers' excludes
(ExcludeFiles) remove files and whole directories.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from snapd_vss.backupset.manifest import EntryType, SpecRecord
from snapd_vss.errors import InvalidArgs, NotFound


@dataclass(frozen=True)
class SnapshotMount:
    """A volume (its mount point) and where its snapshot can be read."""

    volume: str
    root: str
    snapshot_id: str = ""


@dataclass
class SourceFile:
    relative: str  # relative to the component's original root
    original: str  # the absolute path on the live system
    source: str  # the path inside the exposed snapshot
    type: EntryType
    stat: os.stat_result
    link_target: str = ""


@dataclass
class Selection:
    original_root: str
    snapshot_root: str
    mount: SnapshotMount
    files: list[SourceFile] = field(default_factory=list)  # parents before children
    skipped: list[str] = field(default_factory=list)  # what was left out, and why

    @property
    def total_bytes(self) -> int:
        return sum(f.stat.st_size for f in self.files if f.type is EntryType.FILE)


def is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def mount_for(path: str, mounts: Sequence[SnapshotMount]) -> SnapshotMount:
    """The snapshot of the volume holding ``path`` (the deepest volume that contains it)."""
    holding = [m for m in mounts if is_under(path, m.volume)]
    if not holding:
        volumes = ", ".join(m.volume for m in mounts) or "none"
        raise NotFound(
            f"{path} is on none of the snapshotted volumes ({volumes}); "
            "add its volume to the snapshot set"
        )
    return max(holding, key=lambda m: len(m.volume))


def component_root(specs: Sequence[SpecRecord]) -> str:
    """The directory all of a component's file specs share (its declared path)."""
    if not specs:
        raise InvalidArgs("a component without file specs has nothing to back up")
    return os.path.commonpath([os.path.realpath(s.path) for s in specs])


def matches(spec: SpecRecord, original: str) -> bool:
    """Whether the file or directory ``original`` is named by ``spec`` (path/filespec/recursive)."""
    directory = os.path.realpath(spec.path)
    parent, name = os.path.split(original)
    in_place = parent == directory or (spec.recursive and is_under(parent, directory))
    return in_place and fnmatch.fnmatchcase(name, spec.filespec)


def select(
    specs: Sequence[SpecRecord],
    excludes: Sequence[SpecRecord],
    mounts: Sequence[SnapshotMount],
    leave_out: Iterable[str] = (),
) -> Selection:
    """The files ``specs`` name, as found in the snapshot, less ``excludes`` and ``leave_out``.

    ``leave_out``: original paths not to take (e.g. files another component holds).
    """
    root = component_root(specs)
    mount = mount_for(root, mounts)
    for spec in specs:
        if mount_for(os.path.realpath(spec.path), mounts) != mount:
            raise InvalidArgs(
                f"the file specs of one component lie on different volumes ({root} and "
                f"{spec.path}); a component's files must be on one volume"
            )
    snapshot_root = _inside(mount, root)
    selection = Selection(root, snapshot_root, mount)
    chosen: dict[str, SourceFile] = {}
    skip = set(leave_out)
    for spec in specs:
        for found in _spec_files(spec, root, selection, excludes):
            if found.original not in skip:
                chosen.setdefault(found.relative, found)
    _add_parents(chosen, selection)
    selection.files = [chosen[k] for k in sorted(chosen)]
    return selection


def _inside(mount: SnapshotMount, original: str) -> str:
    relative = os.path.relpath(original, mount.volume)
    return mount.root if relative == "." else os.path.join(mount.root, relative)


def _no_link_on_the_way(mount: SnapshotMount, target: str) -> str:
    """ "" if ``target`` is reached from the snapshot root without symlinks; else why not."""
    relative = os.path.relpath(target, mount.root)
    current = mount.root
    for part in [] if relative == "." else relative.split("/"):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            return f"{current} does not exist in the snapshot"
        if stat.S_ISLNK(st.st_mode):
            return f"{current} is a symbolic link in the snapshot; it is not followed"
        if not stat.S_ISDIR(st.st_mode):
            return f"{current} is not a directory in the snapshot"
    return ""


def _spec_files(
    spec: SpecRecord, root: str, selection: Selection, excludes: Sequence[SpecRecord]
) -> Iterator[SourceFile]:
    directory = os.path.realpath(spec.path)
    source_dir = _inside(selection.mount, directory)
    why_not = _no_link_on_the_way(selection.mount, source_dir)
    if why_not:
        selection.skipped.append(f"{spec.path} ({spec.filespec}): {why_not}")
        return
    yield from _walk(spec, directory, source_dir, root, selection, excludes)


def _walk(
    spec: SpecRecord,
    directory: str,
    source_dir: str,
    root: str,
    selection: Selection,
    excludes: Sequence[SpecRecord],
) -> Iterator[SourceFile]:
    try:
        with os.scandir(source_dir) as scan:
            items = sorted(scan, key=lambda e: e.name)
    except OSError as exc:
        selection.skipped.append(f"{directory}: cannot list: {exc.strerror}")
        return
    for item in items:
        original = os.path.join(directory, item.name)
        if any(matches(ex, original) for ex in excludes):
            selection.skipped.append(f"{original}: excluded by the writer")
            continue
        st = item.stat(follow_symlinks=False)
        kind = _kind(st.st_mode)
        wanted = fnmatch.fnmatchcase(item.name, spec.filespec)
        if kind is EntryType.DIR:
            if spec.recursive:
                if spec.filespec == "*":
                    yield _source(original, item.path, root, kind, st)
                yield from _walk(spec, original, item.path, root, selection, excludes)
            continue
        if not wanted:
            continue
        if kind is None:
            selection.skipped.append(f"{original}: not a regular file, directory or link")
            continue
        target = os.readlink(item.path) if kind is EntryType.SYMLINK else ""
        yield _source(original, item.path, root, kind, st, target)


def _kind(mode: int) -> EntryType | None:
    if stat.S_ISREG(mode):
        return EntryType.FILE
    if stat.S_ISDIR(mode):
        return EntryType.DIR
    if stat.S_ISLNK(mode):
        return EntryType.SYMLINK
    return None


def _source(
    original: str, source: str, root: str, kind: EntryType, st: os.stat_result, target: str = ""
) -> SourceFile:
    relative = os.path.relpath(original, root)
    return SourceFile(relative, original, source, kind, st, target)


def _add_parents(chosen: dict[str, SourceFile], selection: Selection) -> None:
    """Every directory between the root and a chosen file, so modes and owners come back."""
    for relative in list(chosen):
        parent = os.path.dirname(relative)
        while parent and parent not in chosen:
            original = os.path.join(selection.original_root, parent)
            source = os.path.join(selection.snapshot_root, parent)
            chosen[parent] = SourceFile(parent, original, source, EntryType.DIR, os.lstat(source))
            parent = os.path.dirname(parent)
