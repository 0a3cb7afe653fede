"""Run the LVM tools (and mount/umount) as asyncio subprocesses, never interactively.

Every failure becomes a domain error that carries the command line and the tool's own
message: ``InsufficientStorage`` when LVM says the pool or VG is out of space,
``ProviderFailure`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
from dataclasses import dataclass

from snapd_vss.errors import InsufficientStorage, ProviderFailure

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
TERMINATE_GRACE_S = 5.0

# LVM's words for "no space": the snapshot would make the pool or VG overflow.
_NO_SPACE = (
    "reached threshold",
    "insufficient free space",
    "out of data space",
    "out of metadata space",
    "is full",
    "exceeds the size of thin pools and the amount of free space",
)
# Lines that say nothing to the admin about the failure at hand.
_NOISE = ("NOT backed up", "leaked on lvm invocation")


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def message(self) -> str:
        """The tool's own message (stderr without noise), one line."""
        lines = [ln.strip() for ln in self.stderr.splitlines()]
        kept = [ln for ln in lines if ln and not any(n in ln for n in _NOISE)]
        return "; ".join(kept) or self.stdout.strip() or "(no message)"


def find_program(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


def tool_env() -> dict[str, str]:
    """The environment for LVM: no fd warnings, C locale; LVM_SYSTEM_DIR etc. pass through."""
    env = dict(os.environ)
    env["LVM_SUPPRESS_FD_WARNINGS"] = "1"
    env["LC_ALL"] = "C"
    env["PATH"] = env.get("PATH", "") + ":" + SBIN_PATH
    return env


async def run(argv: list[str]) -> CommandResult:
    """Run ``argv`` with no stdin (a prompt reads EOF and says no); kill it if cancelled."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=tool_env(),
        )
    except OSError as e:
        raise ProviderFailure(f"cannot run `{shlex.join(argv)}`: {e}") from None
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        await _stop(proc)
        raise
    return CommandResult(tuple(argv), proc.returncode or 0, out.decode(errors="replace"),
                         err.decode(errors="replace"))


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM first: LVM defers it out of its critical sections (a suspended device)."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), TERMINATE_GRACE_S)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def failure(result: CommandResult, what: str, hint: str = "") -> Exception:
    """The domain error for a failed command."""
    text = (
        f"{what}: `{result.command}` failed (exit {result.returncode}): {result.message}"
        + (f". {hint}" if hint else "")
    )
    lowered = result.message.lower()
    if any(p in lowered for p in _NO_SPACE):
        return InsufficientStorage(
            text + ". Extend the thin pool (lvextend -L +SIZE VG/POOL) or remove old snapshots."
        )
    return ProviderFailure(text)


async def check(argv: list[str], what: str, hint: str = "") -> CommandResult:
    """Run ``argv``; raise the domain error unless it succeeded."""
    result = await run(argv)
    if result.returncode != 0:
        raise failure(result, what, hint)
    return result
