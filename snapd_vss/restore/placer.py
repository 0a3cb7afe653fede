"""Writes a :class:`~.placement.Placement`: all temporaries, one flush, then the renames.

Every destination directory is opened without following symlinks and checked against
the writer's credentials *before* the first byte is written, and no file may have
become a directory (nor a directory a file) meanwhile. Then, in batches of at most
:data:`BATCH_BYTES` (one batch for most components):

1. the directories are created (mode 0700 until their own metadata is set, last);
2. every file is written to a temporary name beside its destination, read from the
   backup set in one pass in its order (:data:`Contents`) and checked against its
   sha256: a small file as it is written, a large one (over ``files.HASH_BESIDE``,
   copied in the kernel from a plain archive) by reading the temporary back in one of
   :data:`CHECKERS` threads while the next files are written; every link likewise;
3. each destination filesystem is flushed once (``syncfs``, while the last checks run),
   and every check must have passed;
4. the temporaries are renamed over the real names, in order;

then the directories' owners, modes and times are set and every directory touched is
fsynced. A failure before a batch's renames removes its temporaries: nothing of it
is under a real name. The outcome lists what was restored, what failed and what was
never attempted, so a half-way restore says exactly where it stopped.
"""

from __future__ import annotations

import collections
import contextlib
import fnmatch
import os
import resource
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from snapd_vss.backupset.manifest import EntryType
from snapd_vss.errors import VssError
from snapd_vss.restore import files
from snapd_vss.restore.placement import Placed, Placement, is_under
from snapd_vss.restore.report import ComponentOutcome
from snapd_vss.restore.safety import Credentials, check_writable, open_directory
from snapd_vss.restore.source import SourceComponent, SourceEntry

#: Temporaries written before the filesystem is flushed and they are renamed. Bounds the
#: extra space an in-place restore needs (old and new copies of one batch side by side).
BATCH_BYTES = 1 << 30
#: Threads reading large temporaries back to check their sha256 (beside the writes); one
#: measured best on two cores (a second one competes with the writes and zstd).
CHECKERS = 1
#: Read-back checks that may be pending at once (each holds its temporary's fd).
MAX_CHECKS = 64


@dataclass
class Content:
    """One file's bytes, as a :data:`Contents` source hands them out."""

    item: Placed
    chunks: Iterable[bytes | memoryview]
    checked: bool  # the chunks check the sha256 themselves (raising at their end)
    extent: files.Extent | None = None  # the same bytes, stored as they are (kernel copy)


#: Given the file items, yields each one's content, in the order cheapest to read.
Contents = Callable[[list[Placed]], Iterator[Content]]


def raise_fd_limit() -> None:
    """Directory fds are kept open for the whole restore: allow as many as the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class DirCache:
    """Directory fds by absolute path, opened without following links."""

    owner: Credentials
    fds: dict[str, int] = field(default_factory=dict)

    def get(self, path: str) -> int:
        """The directory's fd; a missing directory is created (0755), and its parent kept
        open too, so that :meth:`sync` makes the new name durable."""
        fd = self.fds.get(path)
        if fd is None:
            parent = os.path.dirname(path)
            if parent != path and parent not in self.fds and not os.path.lexists(path):
                self.get(parent)
            fd = open_directory(path, create_mode=0o755)
            self.fds[path] = fd
        return fd

    def sync(self) -> None:
        """fsync every directory touched (their entries: the renames, the new names)."""
        for fd in self.fds.values():
            files.fsync_directory(fd)

    def close(self) -> None:
        for fd in self.fds.values():
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


@dataclass
class _Temp:
    item: Placed
    dir_fd: int
    name: str
    temp: str
    check: files.Check | None = None  # the read-back check, until it has passed


class _ItemFailed(Exception):
    def __init__(self, destination: str, reason: str) -> None:
        super().__init__(f"{destination}: {reason}")
        self.destination = destination
        self.line = f"{destination}: {reason}"


@dataclass
class _Placer:
    credentials: Credentials
    outcome: ComponentOutcome
    cache: DirCache
    checker: ThreadPoolExecutor
    temps: list[_Temp] = field(default_factory=list)
    temp_bytes: int = 0
    checks: collections.deque[files.Check] = field(default_factory=collections.deque)

    def stage_file(self, content: Content) -> None:
        item, entry = content.item, content.item.entry
        with _blame(item.destination):
            dir_fd, name = self._dir_of(item)
            temp, check = files.write_temp(
                dir_fd,
                name,
                content.chunks,
                size=entry.size,
                sha256="" if content.checked else entry.sha256,
                mode=safe_mode(entry, self.credentials),
                uid=entry.uid,
                gid=entry.gid,
                mtime_ns=entry.mtime_ns,
                xattrs=entry.xattrs,
                display=item.destination,
                checker=self.checker,
                extent=content.extent,
            )
        self.temps.append(_Temp(item, dir_fd, name, temp, check))
        self.temp_bytes += entry.size
        if check is not None:
            self._bound_checks(check)

    def _bound_checks(self, check: files.Check) -> None:
        """At most :data:`MAX_CHECKS` pending: wait for the oldest (failures show later)."""
        self.checks.append(check)
        while self.checks and self.checks[0].future.done():
            self.checks.popleft()
        if len(self.checks) > MAX_CHECKS:
            with contextlib.suppress(Exception):
                self.checks.popleft().wait()

    def stage_link(self, item: Placed) -> None:
        entry = item.entry
        with _blame(item.destination):
            dir_fd, name = self._dir_of(item)
            temp = files.temp_symlink(
                dir_fd,
                name,
                entry.link_target,
                uid=entry.uid,
                gid=entry.gid,
                mtime_ns=entry.mtime_ns,
            )
        self.temps.append(_Temp(item, dir_fd, name, temp))

    def commit(self) -> None:
        """Flush each filesystem holding temporaries once (while the last read-back checks
        run), wait for every check to pass, then rename the temporaries in order."""
        if not self.temps:
            return
        flushed: set[int] = set()
        for dir_fd, destination in {t.dir_fd: t.item.destination for t in self.temps}.items():
            device = os.fstat(dir_fd).st_dev
            if device not in flushed:
                with _blame(destination):
                    files.syncfs(dir_fd)
                flushed.add(device)
        for temp in self.temps:
            if temp.check is not None:
                with _blame(temp.item.destination):
                    temp.check.wait()
                temp.check = None
        self.checks.clear()
        for index, temp in enumerate(self.temps):
            try:
                with _blame(temp.item.destination):
                    files.rename_into_place(temp.dir_fd, temp.temp, temp.name)
            except _ItemFailed:
                del self.temps[:index]  # the rest (this one too) are discarded
                raise
            self.outcome.bytes += temp.item.entry.size
            self.outcome.restored.append(temp.item.destination)
        self.temps.clear()
        self.temp_bytes = 0

    def discard(self) -> None:
        for temp in self.temps:
            if temp.check is not None:
                temp.check.cancel()
            files.discard(temp.dir_fd, temp.temp)
        self.temps.clear()

    def _dir_of(self, item: Placed) -> tuple[int, str]:
        parent, name = os.path.split(item.destination)
        return self.cache.get(parent), name


@contextlib.contextmanager
def _blame(destination: str) -> Iterator[None]:
    """Any failure inside names ``destination``."""
    try:
        yield
    except _ItemFailed:
        raise
    except (OSError, VssError) as exc:
        reason = exc.message if isinstance(exc, VssError) else (exc.strerror or str(exc))
        raise _ItemFailed(destination, reason) from exc


def place(
    placement: Placement,
    contents: Contents,
    credentials: Credentials,
    outcome: ComponentOutcome,
) -> None:
    """Write every item of ``placement`` (see the module's description for the order)."""
    raise_fd_limit()
    dirs = sorted(
        (p for p in placement.items if p.entry.type is EntryType.DIR),
        key=lambda p: (p.destination.count("/"), p.destination),
    )
    regular = [p for p in placement.items if p.entry.type is EntryType.FILE]
    links = [p for p in placement.items if p.entry.type is EntryType.SYMLINK]
    cache = DirCache(credentials)
    checker = ThreadPoolExecutor(max_workers=CHECKERS, thread_name_prefix="restore-check")
    placer = _Placer(credentials, outcome, cache, checker)
    try:
        _check_conflicts(placement.items)
        for item in dirs:
            _make_directory(item, cache)
        _stage_all(placer, contents, regular, links)
        placer.commit()
        _finish_directories(dirs, cache, credentials, outcome)
        cache.sync()
    except _ItemFailed as failure:
        outcome.failed.append(failure.line)
        done = set(outcome.restored) | {failure.destination}
        outcome.not_restored.extend(
            p.destination for p in [*regular, *links] if p.destination not in done
        )
        with contextlib.suppress(OSError):
            cache.sync()  # what was renamed stays renamed
    finally:
        placer.discard()
        cache.close()
        checker.shutdown()


def _stage_all(
    placer: _Placer, contents: Contents, regular: list[Placed], links: list[Placed]
) -> None:
    staged: set[str] = set()
    stream = contents(regular)
    while True:
        with _blame("reading the backup set"):
            content = next(stream, None)
        if content is None:
            break
        placer.stage_file(content)
        staged.add(content.item.destination)
        if placer.temp_bytes >= BATCH_BYTES:
            placer.commit()
    missing = [p.destination for p in regular if p.destination not in staged]
    if missing:
        raise _ItemFailed(missing[0], "the backup set handed out no content for it")
    for item in links:
        placer.stage_link(item)


def _check_conflicts(items: list[Placed]) -> None:
    """Before anything is written: no file or link where a directory is now, and back."""
    for item in items:
        st = _lstat(item.destination)
        if st is None:
            continue
        if item.entry.type is EntryType.DIR and not stat.S_ISDIR(st.st_mode):
            raise _ItemFailed(
                item.destination,
                "exists and is not a directory; move it away to restore the directory",
            )
        if item.entry.type is not EntryType.DIR and stat.S_ISDIR(st.st_mode):
            raise _ItemFailed(item.destination, "is a directory now; move it away first")


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _make_directory(item: Placed, cache: DirCache) -> None:
    parent, name = os.path.split(item.destination)
    with _blame(item.destination):
        files.make_directory(cache.get(parent), name)
        cache.get(item.destination)


def _finish_directories(
    dirs: list[Placed], cache: DirCache, credentials: Credentials, outcome: ComponentOutcome
) -> None:
    """Directory owners, modes and times last (deepest first), after their content."""
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
