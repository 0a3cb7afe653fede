"""Where a restore may write: no symlink followed, and never past the writer's own rights.

- :func:`open_directory` walks an absolute directory path from ``/`` part by part with
  ``O_NOFOLLOW``: a directory that is (or lies below) a symbolic link is refused, so a
  link planted at the destination cannot send files elsewhere.
- :class:`Credentials` / :func:`check_writable` ask the kernel, in a child process that
  runs with the writer's uid, gid and groups, whether each destination directory is
  writable by that user (permission bits, ACLs, read-only mounts, LSMs alike).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from snapd_vss.errors import AccessDenied, Failed, InvalidArgs

NOGROUP = 65534
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeDestination(AccessDenied):
    """A destination path passes through a symbolic link or is not a directory."""


@dataclass(frozen=True)
class Credentials:
    """Whom a writer runs as."""

    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    @classmethod
    def of_uid(cls, uid: int) -> Credentials:
        """The account's primary group and supplementary groups (none if it has no entry)."""
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            return cls(uid, NOGROUP, ())
        groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
        return cls(uid, entry.pw_gid, tuple(sorted(set(groups))))

    def describe(self) -> str:
        try:
            name = pwd.getpwuid(self.uid).pw_name
        except KeyError:
            name = str(self.uid)
        try:
            group = grp.getgrgid(self.gid).gr_name
        except KeyError:
            group = str(self.gid)
        return f"uid {self.uid} ({name}), gid {self.gid} ({group})"


ROOT = Credentials(0, 0, ())


def writer_credentials(
    live_uid: int | None, recorded_uid: int | None, original_root: str
) -> tuple[Credentials, str]:
    """Whom a writer's restore is judged as, and a note for the report when it matters.

    1. ``live_uid``: its ``Uid`` while it is registered now;
    2. ``recorded_uid``: the uid the backup set recorded for it (its ``Uid`` at backup time);
    3. only for sets made before writer uids were recorded: a guess, the owner of
       ``original_root`` (or of its closest existing parent) — said so in the note.
    """
    note = ""
    if live_uid is not None:
        uid = live_uid
        if recorded_uid is not None and recorded_uid != live_uid:
            note = (
                f"the writer runs as uid {live_uid} now but ran as uid {recorded_uid} at "
                f"backup time; its rights now (uid {live_uid}) decide where it may restore"
            )
    elif recorded_uid is not None:
        uid = recorded_uid
        note = (
            f"the writer is not registered: judged as uid {uid}, which the backup set "
            "recorded for it at backup time"
        )
    else:
        current = nearest_existing(original_root)
        uid = os.lstat(current).st_uid
        note = (
            "the writer is not registered and this backup set (made before writer uids were "
            f"recorded) does not say whom it ran as: GUESSED uid {uid}, the owner of {current}"
        )
    return (ROOT if uid == 0 else Credentials.of_uid(uid)), note


def clean_absolute(path: str, what: str) -> str:
    """``path`` normalised, if absolute without '..' parts; else InvalidArgs."""
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise InvalidArgs(f"{what} {path!r} must be an absolute path without '..'")
    return os.path.normpath(path)


def parts_of(path: str) -> list[str]:
    return [p for p in clean_absolute(path, "path").split("/") if p]


def open_directory(path: str, create_mode: int | None = None) -> int:
    """A directory fd for ``path``, reached without following any symlink.

    ``create_mode``: create missing directories with this mode (else FileNotFoundError).
    """
    fd = os.open("/", DIR_FLAGS)
    try:
        for part in parts_of(path):
            try:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if create_mode is None:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, create_mode, dir_fd=fd)
                next_fd = _open_part(part, fd, path)
            except OSError as exc:
                _refuse_link(exc, part, fd, path)
                raise
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_part(part: str, fd: int, path: str) -> int:
    try:
        return os.open(part, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        _refuse_link(exc, part, fd, path)
        raise


def _refuse_link(exc: OSError, part: str, fd: int, path: str) -> None:
    try:
        st = os.lstat(part, dir_fd=fd)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDestination(
            f"{path}: {part} is a symbolic link; a restore never writes through a link "
            "(it could lead anywhere). Remove the link or restore to another place"
        ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDestination(f"{path}: {part} is not a directory") from exc


def nearest_existing(path: str) -> str:
    """``path`` or its closest existing ancestor (without following links)."""
    current = clean_absolute(path, "path")
    while current != "/" and not os.path.lexists(current):
        current = os.path.dirname(current)
    return current


_CHECK = """
import json, os, sys
denied = [p for p in json.load(sys.stdin) if not os.access(p, os.W_OK | os.X_OK)]
json.dump(denied, sys.stdout)
"""


def check_writable(credentials: Credentials, directories: Iterable[str], who: str) -> None:
    """AccessDenied naming the first directory ``credentials`` could not write into.

    Missing directories are judged by their closest existing ancestor (creating them
    needs write access there). Root may write anywhere; nothing is checked for it.
    """
    if credentials.is_root:
        return
    wanted = sorted({nearest_existing(d) for d in directories})
    if not wanted:
        return
    denied = _ask_kernel(credentials, wanted)
    if denied:
        raise AccessDenied(
            f"{who} runs as {credentials.describe()}, which may not write in {denied[0]}"
            + (f" (nor in {', '.join(denied[1:4])})" if len(denied) > 1 else "")
            + "; a restore never writes where its writer could not. Restore as an admin "
            "with --to-alternate PATH, or fix the writer's paths"
        )


def _ask_kernel(credentials: Credentials, paths: list[str]) -> list[str]:
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _CHECK],
            input=json.dumps(paths),
            capture_output=True,
            text=True,
            user=credentials.uid,
            group=credentials.gid,
            extra_groups=list(credentials.groups),
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise Failed(f"cannot check access as {credentials.describe()}: {exc}") from exc
    if done.returncode != 0:
        raise Failed(
            f"the access check as {credentials.describe()} failed: {done.stderr.strip()[-500:]}"
        )
    denied: list[str] = json.loads(done.stdout)
    return denied
