"""Failpoints: named places where a test can make the daemon pause, to hit a narrow window.

Off unless the environment variable ``SNAPD_VSS_FAILPOINTS`` is set (never in production
units). Its value is a comma-separated list of ``NAME=SECONDS``; ``await pause(NAME)``
then sleeps that long, after logging ``failpoint NAME: pausing S s`` (tests wait for
that line). Places:

- ``frozen``: in the commit of a snapshot set, right after the freeze guard has frozen
  the filesystems and before the providers commit (``coordinator/snapshot_set.py``).
  The commit window still applies: the guard thaws at its deadline.

Example: ``SNAPD_VSS_FAILPOINTS=frozen=30`` holds every set frozen for 30 s, time enough
to SIGKILL the daemon while a filesystem is frozen.
"""

from __future__ import annotations

import asyncio
import logging
import os

log = logging.getLogger(__name__)

ENV = "SNAPD_VSS_FAILPOINTS"


def parse(spec: str) -> dict[str, float]:
    """``"frozen=3,other=0.5"`` → ``{"frozen": 3.0, "other": 0.5}``; bad entries are logged."""
    points: dict[str, float] = {}
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, value = entry.partition("=")
        try:
            seconds = float(value) if sep else -1.0
        except ValueError:
            seconds = -1.0
        if not name.strip() or seconds < 0:
            log.error("%s: ignoring %r; write NAME=SECONDS, e.g. frozen=3", ENV, entry)
            continue
        points[name.strip()] = seconds
    return points


def delay(name: str) -> float:
    """How long failpoint ``name`` pauses (0 when it is not set)."""
    return parse(os.environ.get(ENV, "")).get(name, 0.0)


async def pause(name: str) -> None:
    """Sleep at failpoint ``name`` if ``SNAPD_VSS_FAILPOINTS`` asks for it; else return at once."""
    seconds = delay(name)
    if seconds <= 0:
        return
    log.warning("failpoint %s: pausing %g s", name, seconds)
    await asyncio.sleep(seconds)
