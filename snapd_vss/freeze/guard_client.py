"""The daemon's side of the freeze guard (see :mod:`snapd_vss.freeze.guard`).

::

    async with FrozenFilesystems(["/srv", "/var"], deadline_s=10, runtime_dir=rt) as frozen:
        ...  # commit snapshots; frozen.thawed_by_deadline tells if the guard gave up

The guard thaws on :meth:`FreezeGuard.thaw`, when the daemon dies (its stdin hits
EOF), on SIGTERM, and at the deadline. If the guard itself dies while frozen, this
client thaws the mounts directly.

Guards run in ``--on-request`` mode: started, they say READY and wait for the freeze
request. :class:`SpareGuard` keeps one such process ready ahead of time, so that a
freeze does not wait for a Python interpreter to start while writers are frozen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sys
from collections.abc import Sequence
from types import TracebackType
from urllib.parse import unquote

import snapd_vss
from snapd_vss.errors import ProviderFailure
from snapd_vss.freeze import guard as proto
from snapd_vss.freeze.ioctl import describe_errno, thaw_path
from snapd_vss.freeze.markers import marker_dir, marker_path, remove_marker

log = logging.getLogger(__name__)

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(snapd_vss.__file__)))
_background: set[asyncio.Task[None]] = set()


def _guard_env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = _PACKAGE_PARENT + (os.pathsep + path if path else "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # never write .pyc files near a frozen fs
    return env


def _parse_error(line: str) -> tuple[str, int, str]:
    """``ERROR <mount> <errno> <message>`` -> (mount, errno, message)."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or not parts[2].isdigit():
        return "", 0, line
    return unquote(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else ""


def _freeze_failure(line: str) -> ProviderFailure:
    mount, code, message = _parse_error(line)
    if code == errno.EBUSY:
        return ProviderFailure(
            f"Cannot freeze {mount}: {describe_errno(code)}: it is already frozen by someone "
            f"else (another backup tool or fsfreeze?); retry when it is thawed, or thaw it with "
            f"'fsfreeze -u {mount}' if nothing should hold it frozen."
        )
    if code == errno.EOPNOTSUPP:
        return ProviderFailure(
            f"Cannot freeze {mount}: {describe_errno(code)}: this filesystem cannot be frozen; "
            "use a provider that does not need a filesystem freeze."
        )
    if code:
        return ProviderFailure(f"Cannot freeze {mount}: {describe_errno(code)}: {message}")
    return ProviderFailure(f"The freeze guard failed: {line}")


class FreezeGuard:
    """Filesystems held frozen by a guard process."""

    def __init__(self, mounts: tuple[str, ...], runtime_dir: str) -> None:
        self.mounts = mounts
        self.runtime_dir = runtime_dir
        self.pid = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._thawed = asyncio.Event()
        self._thawed_by_deadline = False
        self._guard_died = False
        self._thaw_errors: list[str] = []

    @classmethod
    async def start(
        cls,
        mounts: Sequence[str],
        deadline_s: float,
        runtime_dir: str,
        spare: IdleGuard | None = None,
    ) -> FreezeGuard:
        """Freeze ``mounts`` (in order, duplicates dropped) for at most ``deadline_s``.

        Uses ``spare`` (a guard started ahead of time for ``runtime_dir``) if it is still
        waiting, else starts a guard. Raises ``ProviderFailure`` naming the mount and the
        reason if one cannot be frozen; then nothing is left frozen by us.
        """
        unique = tuple(dict.fromkeys(mounts))
        self = cls(unique, runtime_dir)
        if spare is not None and not (unique and spare.waiting):
            await spare.close()  # not needed, or no longer usable
            spare = None
        if not unique:
            self._thawed.set()
            return self
        idle = spare if spare is not None else await IdleGuard.spawn(runtime_dir)
        self._proc = idle.proc
        self.pid = idle.proc.pid
        try:
            idle.send(proto.freeze_request(deadline_s, list(unique)))
            first = await self._read_line()
        except BaseException:
            self._abandon()
            raise
        if first == proto.FROZEN:
            self._monitor = asyncio.create_task(self._watch(), name=f"freeze-guard-{self.pid}")
            return self
        await self._proc.wait()
        self._thawed.set()
        if first.startswith(proto.ERROR + " "):
            raise _freeze_failure(first)
        # The guard died before saying anything: whatever it froze, thaw it.
        await asyncio.to_thread(self._thaw_directly)
        raise ProviderFailure(
            f"The freeze guard for {', '.join(unique)} exited unexpectedly "
            f"(status {self._proc.returncode}); nothing is left frozen. Check the service log."
        )

    @property
    def thawed_by_deadline(self) -> bool:
        """True if the guard thawed because the deadline passed."""
        return self._thawed_by_deadline

    @property
    def guard_died(self) -> bool:
        """True if the guard process died while frozen (and we thawed directly)."""
        return self._guard_died

    @property
    def is_frozen(self) -> bool:
        return not self._thawed.is_set()

    async def wait_thawed(self) -> None:
        """Return once the filesystems are thawed (for whatever reason)."""
        await self._thawed.wait()

    async def thaw(self) -> None:
        """Thaw everything now; raise ``ProviderFailure`` if the kernel refused to thaw.

        The request reaches the guard even if the caller is cancelled meanwhile.
        """
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self._proc.stdin.write((proto.THAW + "\n").encode())
                self._proc.stdin.close()  # EOF also thaws, should the line get lost
        if self._monitor is not None:
            await asyncio.shield(self._monitor)
        await self._thawed.wait()
        if self._thaw_errors:
            raise ProviderFailure(
                "Thawing failed: "
                + "; ".join(self._thaw_errors)
                + ". Run 'fsfreeze -u MOUNT' on each and check the kernel log."
            )

    async def _read_line(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        raw = await self._proc.stdout.readline()
        return raw.decode(errors="replace").rstrip("\n")

    async def _watch(self) -> None:
        """Follow the guard until it exits; thaw directly if it died still frozen."""
        assert self._proc is not None
        outcome = ""
        try:
            while True:
                line = await self._read_line()
                if not line:
                    break
                if line.startswith(proto.THAW_ERROR + " "):
                    mount, code, _msg = _parse_error(line)
                    self._thaw_errors.append(f"{mount}: {describe_errno(code)}")
                elif line in (proto.THAWED, proto.THAWED_BY_DEADLINE):
                    outcome = line
            await self._proc.wait()
            if not outcome:
                self._guard_died = True
                log.error(
                    "freeze guard %d died (status %s) while %s were frozen; thawing directly",
                    self.pid, self._proc.returncode, ", ".join(self.mounts),
                )  # fmt: skip
                await asyncio.to_thread(self._thaw_directly)
            elif outcome == proto.THAWED_BY_DEADLINE:
                self._thawed_by_deadline = True
                log.warning("freeze deadline passed: the guard thawed %s", ", ".join(self.mounts))
        finally:
            self._thawed.set()

    def _thaw_directly(self) -> None:
        for mount in reversed(self.mounts):
            try:
                thaw_path(mount)
            except OSError as e:
                self._thaw_errors.append(f"{mount}: {describe_errno(e.errno or 0)}")
        if not self._thaw_errors:
            remove_marker(marker_path(marker_dir(self.runtime_dir), self.pid))

    def _abandon(self) -> None:
        """We were cancelled while the guard starts: tell it to thaw, and reap it later."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()

        async def reap() -> None:
            try:
                await proc.wait()
            finally:
                self._thawed.set()

        task = asyncio.get_running_loop().create_task(reap())
        _background.add(task)
        task.add_done_callback(_background.discard)


class IdleGuard:
    """A guard process in ``--on-request`` mode that said READY: nothing frozen yet."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, runtime_dir: str) -> IdleGuard:
        """Start a guard and wait for its READY; ``ProviderFailure`` if it does not come."""
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "snapd_vss.freeze.guard",
                "--on-request", "--marker-dir", marker_dir(runtime_dir),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                start_new_session=True,
                cwd="/",
                env=_guard_env(),
            )  # fmt: skip
        except OSError as e:
            raise ProviderFailure(
                f"Cannot start the freeze guard ({sys.executable}): {e}; nothing was frozen."
            ) from e
        idle = cls(proc)
        assert proc.stdout is not None
        try:
            line = (await proc.stdout.readline()).decode(errors="replace").rstrip("\n")
        except BaseException:
            await asyncio.shield(idle.close())
            raise
        if line != proto.READY:
            await idle.close()
            raise ProviderFailure(
                f"The freeze guard ({sys.executable} -m snapd_vss.freeze.guard) did not start "
                f"(status {proc.returncode}, said {line!r}); nothing was frozen. "
                "Check the service log."
            )
        return idle

    @property
    def waiting(self) -> bool:
        """Still running and not yet asked to freeze."""
        return self.proc.returncode is None and self.proc.stdin is not None and (
            not self.proc.stdin.is_closing()
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())

    async def close(self) -> None:
        """End an idle guard (stdin EOF: it exits with nothing frozen) and reap it."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.proc.stdin.close()
        await self.proc.wait()


class SpareGuard:
    """One idle guard kept ready for the next freeze (started again after each use)."""

    def __init__(self, runtime_dir: str) -> None:
        self.runtime_dir = runtime_dir
        self._next: asyncio.Task[IdleGuard] | None = None

    def prepare(self) -> None:
        """Start a spare guard in the background, unless one is there or on its way."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_task(
                IdleGuard.spawn(self.runtime_dir), name="spare-freeze-guard"
            )

    async def take(self) -> IdleGuard | None:
        """The spare guard (waiting for it if it is still starting), or None when there is
        none or it could not start: the caller then starts its own. Call :meth:`prepare`
        for the next one once the filesystems are thawed (a Python start-up competes for
        the CPU with the snapshots)."""
        task, self._next = self._next, None
        if task is None:
            return None
        try:
            return await asyncio.shield(task)
        except ProviderFailure as exc:
            log.warning("the spare freeze guard did not start: %s", exc.message)
            return None

    async def close(self) -> None:
        task, self._next = self._next, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ProviderFailure):
            await task
        if task.done() and not task.cancelled() and task.exception() is None:
            await task.result().close()


class FrozenFilesystems:
    """``async with FrozenFilesystems(mounts, deadline_s, runtime_dir) as frozen:``."""

    def __init__(self, mounts: Sequence[str], deadline_s: float, runtime_dir: str) -> None:
        self._mounts = mounts
        self._deadline_s = deadline_s
        self._runtime_dir = runtime_dir
        self._guard: FreezeGuard | None = None

    async def __aenter__(self) -> FreezeGuard:
        self._guard = await FreezeGuard.start(self._mounts, self._deadline_s, self._runtime_dir)
        return self._guard

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._guard is not None:
            await self._guard.thaw()
