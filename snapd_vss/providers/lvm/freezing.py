"""Whether the service can hold an LVM thin LV's filesystem frozen while LVM snapshots it.

``lvcreate -s`` of a thin LV suspends the origin's device-mapper device with "lockfs",
which freezes the filesystem in the kernel for the instant of the snapshot. For a set
over several LVs to be one point in time, the service must hold every filesystem of the
set frozen (FIFREEZE) across all those ``lvcreate`` calls, and LVM's own freeze must
then nest inside the service's.

Measured in the guest kernels (tests/guest): on Linux 6.1 (Debian 12's kernel) the
lockfs suspend of an FIFREEZEd filesystem fails with EBUSY ("Unable to suspend"), so
the freezes cannot nest; on Linux 6.12 the suspend succeeds, the snapshot holds the
frozen state, and the filesystem stays frozen until the service thaws it. The kernel
learnt to nest a block-device freeze inside a userspace freeze in 6.8 (freeze holders,
``bdev_freeze``), which is the version ``auto`` goes by.

The setting ``[lvm_thin] coordinator_freeze``: ``"auto"`` (the default) holds the
filesystems on kernels that nest the freezes; ``true``/``"always"`` always does (LVM
then fails with a named error on older kernels); ``false``/``"never"`` never does (each
snapshot is consistent by itself, taken at its own instant).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum

NESTED_FREEZE_SINCE = (6, 8)


class CoordinatorFreeze(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"

    @classmethod
    def parse(cls, value: object) -> CoordinatorFreeze | None:
        """The mode a config value names (``true`` = always, ``false`` = never), or None."""
        if isinstance(value, bool):
            return cls.ALWAYS if value else cls.NEVER
        if isinstance(value, str):
            try:
                return cls(value)
            except ValueError:
                return None
        return None


@dataclass(frozen=True)
class FreezeDecision:
    """Whether the service holds lvm_thin filesystems frozen, and why, in plain words."""

    hold: bool
    reason: str


def kernel_version(release: str) -> tuple[int, int] | None:
    """``(major, minor)`` of a kernel release string such as ``6.1.0-28-amd64``."""
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else None


def decide(mode: CoordinatorFreeze, release: str | None = None) -> FreezeDecision:
    """What ``mode`` means on the kernel ``release`` (default: the running kernel)."""
    release = os.uname().release if release is None else release
    if mode is CoordinatorFreeze.ALWAYS:
        return FreezeDecision(True, "coordinator_freeze = true in the configuration")
    if mode is CoordinatorFreeze.NEVER:
        return FreezeDecision(
            False,
            "coordinator_freeze = false in the configuration: each LVM snapshot is "
            "consistent by itself, taken at its own instant",
        )
    version = kernel_version(release)
    since = ".".join(map(str, NESTED_FREEZE_SINCE))
    if version is not None and version >= NESTED_FREEZE_SINCE:
        return FreezeDecision(
            True, f"Linux {release} nests LVM's freeze inside the service's (since {since})"
        )
    return FreezeDecision(
        False,
        f"Linux {release} cannot let LVM snapshot a filesystem that is already frozen "
        f"(that needs Linux {since} or later, e.g. Debian 12's bookworm-backports kernel); "
        "each LVM snapshot is consistent by itself, taken at its own instant",
    )


def device_of(path: str) -> str:
    """``MAJ:MIN`` of the filesystem holding ``path`` (its nearest existing ancestor)."""
    path = os.path.abspath(path)
    while True:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                raise
            path = parent
            continue
        return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
