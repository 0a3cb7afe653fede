"""Writes a :class:`~.placement.Placement`: directories, files, links, then directory metadata.

Every destination directory is opened without following symlinks and checked against
the writer's credentials *before* the first byte is written. Work stops at the first
failing entry; the outcome lists what was restored, what failed and what was never
attempted, so a half-way restore says exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from snapd_vss.backupset.manifest import EntryType
from snapd_vss.errors import Failed, VssError
from snapd_vss.restore import files
from snapd_vss.restore.placement import Placed, Placement, is_under
from snapd_vss.restore.report import ComponentOutcome
from snapd_vss.restore.safety import Credentials, check_writable, open_directory
from snapd_vss.restore.source import SourceComponent, SourceEntry

Chunks = Callable[[Placed], Iterator[bytes]]


@dataclass
class DirCache:
    """Directory fds by absolute path, opened without following links."""

    owner: Credentials
    fds: dict[str, int] = field(default_factory=dict)

    def get(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            fd = open_directory(path, create_mode=0o755)
            self.fds[path] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                files.fsync_directory(fd)
            os.close(fd)
        self.fds.clear()


def safe_mode(entry: SourceEntry, credentials: Credentials) -> int:
    """The mode to set: a non-root writer never gets setuid/setgid files of another owner."""
    if credentials.is_root or entry.uid == credentials.uid:
        return entry.mode
    return entry.mode & ~files.SPECIAL_BITS


def check_placement(placement: Placement, credentials: Credentials, who: str) -> None:
    """AccessDenied / UnsafeDestination before anything is written."""
    directories = placement.directories
    check_writable(credentials, directories, who)
    for directory in sorted(directories):
        if os.path.lexists(directory):
            os.close(open_directory(directory))  # refuses a link on the way


def place(
    placement: Placement,
    chunks: Chunks,
    credentials: Credentials,
    outcome: ComponentOutcome,
    only: Callable[[Placed], str] | None = None,
) -> None:
    """Write every item of ``placement``; ``only(item)`` returns why to skip it, or ""."""
    cache = DirCache(credentials)
    items = sorted(placement.items, key=_order)
    todo = [p.destination for p in items]
    try:
        for index, item in enumerate(items):
            why = only(item) if only is not None else ""
            if why:
                outcome.skipped.append(f"{item.destination}: {why}")
                continue
            try:
                outcome.bytes += _put(item, chunks, credentials, cache)
            except (OSError, VssError) as exc:
                reason = exc.message if isinstance(exc, VssError) else (exc.strerror or str(exc))
                outcome.failed.append(f"{item.destination}: {reason}")
                outcome.not_restored.extend(todo[index + 1 :])
                return
            if item.entry.type is not EntryType.DIR:
                outcome.restored.append(item.destination)
        _finish_directories(items, cache, credentials, outcome)
    finally:
        cache.close()


def _order(item: Placed) -> tuple[int, int, str, int]:
    """Directories first (shallow to deep), then files in archive order, then links."""
    kind = {EntryType.DIR: 0, EntryType.FILE: 1, EntryType.SYMLINK: 2}[item.entry.type]
    depth = item.destination.count("/")
    if kind == 0:
        return (0, depth, item.destination, 0)
    return (kind, 0, item.entry.data_set_id, item.entry.offset)


def _put(item: Placed, chunks: Chunks, credentials: Credentials, cache: DirCache) -> int:
    entry = item.entry
    parent, name = os.path.split(item.destination)
    dir_fd = cache.get(parent)
    if entry.type is EntryType.DIR:
        files.make_directory(dir_fd, name)
        cache.get(item.destination)
        return 0
    if entry.type is EntryType.SYMLINK:
        files.write_symlink(
            dir_fd, name, entry.link_target, uid=entry.uid, gid=entry.gid, mtime_ns=entry.mtime_ns
        )
        return 0
    existing = _lstat(dir_fd, name)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise Failed(f"{item.destination} is a directory now; move it away first")
    return files.write_file(
        dir_fd,
        name,
        chunks(item),
        sha256=entry.sha256,
        mode=safe_mode(entry, credentials),
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        xattrs=entry.xattrs,
        display=item.destination,
    )


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


def _finish_directories(
    items: list[Placed], cache: DirCache, credentials: Credentials, outcome: ComponentOutcome
) -> None:
    """Directory owners, modes and times last (deepest first), after their content."""
    dirs = [p for p in items if p.entry.type is EntryType.DIR]
    for item in sorted(dirs, key=lambda p: -p.destination.count("/")):
        entry = item.entry
        try:
            files.set_directory_metadata(
                cache.get(item.destination),
                safe_mode(entry, credentials),
                entry.uid,
                entry.gid,
                entry.xattrs,
                entry.mtime_ns,
            )
        except OSError as exc:
            outcome.failed.append(f"{item.destination}: cannot set owner/mode: {exc.strerror}")


def prune(component: SourceComponent, placement: Placement, outcome: ComponentOutcome) -> None:
    """Remove files the component's specs name that the set says did not exist then.

    Restoring a point in time means a file created after it (e.g. a database's newer
    journal) must not survive next to the restored files. Only regular files and links
    that match one of the component's own file specs (and no exclude) are removed, only
    at the original place.
    """
    if placement.kind != "original":
        return
    present = {p.destination for p in placement.items}
    for spec in component.file_specs:
        directory = os.path.normpath(spec.path)
        if not is_under(directory, component.original_root) or not os.path.isdir(directory):
            continue
        for path in _spec_files(directory, spec.filespec, spec.recursive):
            if path in present or _excluded(component, path):
                continue
            try:
                fd = open_directory(os.path.dirname(path))
                try:
                    files.remove_file(fd, os.path.basename(path))
                finally:
                    os.close(fd)
            except (OSError, VssError) as exc:
                reason = exc.message if isinstance(exc, VssError) else exc.strerror
                outcome.failed.append(f"{path}: not in the backup, cannot remove: {reason}")
                continue
            outcome.removed.append(path)


def _spec_files(directory: str, filespec: str, recursive: bool) -> Iterator[str]:
    try:
        with os.scandir(directory) as scan:
            items = list(scan)
    except OSError:
        return
    for item in items:
        if item.is_dir(follow_symlinks=False):
            if recursive:
                yield from _spec_files(item.path, filespec, recursive)
            continue
        if item.name.startswith(files.TEMP_PREFIX):
            continue
        if fnmatch.fnmatchcase(item.name, filespec):
            yield item.path


def _excluded(component: SourceComponent, path: str) -> bool:
    parent, name = os.path.split(path)
    for ex in component.excludes:
        root = os.path.normpath(ex.path)
        in_place = parent == root or (ex.recursive and is_under(parent, root))
        if in_place and fnmatch.fnmatchcase(name, ex.filespec):
            return True
    return False
