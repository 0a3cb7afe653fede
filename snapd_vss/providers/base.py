"""The interface every snapshot provider implements.

The coordinator drives a provider like this for each snapshot of a set::

    provider.supports(volume)            -> None or raises VolumeNotSupported
    await provider.prepare(rec, volume)  # before writers freeze: checks, space, dirs
    # writers frozen; filesystems frozen if provider.needs_fs_freeze(volume)
    await provider.commit(rec, volume)   # fast: make the point-in-time copy
    # thaw
    await provider.delete(rec)           # release (also after a failed commit)

Providers raise only :mod:`snapd_vss.errors` domain errors (``ProviderFailure``,
``InsufficientStorage``, ``VolumeNotSupported``...), wrapping their backend's errors with
a message that names the volume and the backend's own words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.vocabulary import ProviderType


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # why not, in words an admin can act on


@dataclass(frozen=True)
class ProviderContext:
    """Where a provider may keep its files."""

    state_dir: str  # persistent ($STATE_DIRECTORY)
    runtime_dir: str  # runtime ($RUNTIME_DIRECTORY); exposed snapshots go below it


def _ignore(snapshot_id: str, reason: str) -> None:
    return None


class Provider(ABC):
    name: ClassVar[str]
    type: ClassVar[ProviderType] = ProviderType.SOFTWARE
    version: ClassVar[str] = "1"
    may_need_fs_freeze: ClassVar[bool] = True
    """False when :meth:`needs_fs_freeze` is never true (no freeze guard is kept ready)."""

    def __init__(self, context: ProviderContext) -> None:
        self.context = context
        self.invalidated: Callable[[str, str], None] = _ignore
        """Call ``invalidated(snapshot_id, reason)`` when the backend lost a snapshot on its
        own (e.g. a full diff area dropped it); the service marks it INVALID, logs it and
        announces it. Set by the service before :meth:`startup`."""

    @abstractmethod
    def availability(self) -> Availability:
        """Whether this provider can work on this machine at all."""

    @abstractmethod
    def supports(self, volume: Volume) -> None:
        """Raise ``VolumeNotSupported`` (with the reason) unless this provider can snapshot it."""

    def needs_fs_freeze(self, volume: Volume) -> bool:
        """Whether the coordinator must FIFREEZE the filesystem around :meth:`commit`."""
        return True

    def consistent_alone(self, volume: Volume) -> bool:
        """Whether :meth:`commit` alone makes a filesystem-consistent snapshot of the volume
        (the backend freezes the filesystem for its instant), although the coordinator
        would hold it. The coordinator then leaves one such volume unheld when it holds
        every other volume of the set: its snapshot is an instant inside the held span."""
        return False

    def why_not_held(self, volume: Volume) -> str:
        """Why the coordinator does not hold this volume's filesystem frozen ("" if it does).

        Such a snapshot is taken at its own instant during the commit; a set stays one
        point in time as long as at most one of its volumes is not held.
        """
        if self.needs_fs_freeze(volume):
            return ""
        return f"the {self.name} provider snapshots it without a filesystem freeze"

    async def prepare(self, record: SnapshotRecord, volume: Volume) -> None:  # noqa: B027
        """Checks and set-up done before writers freeze (may be slow)."""

    @abstractmethod
    async def commit(self, record: SnapshotRecord, volume: Volume) -> None:
        """Make the point-in-time copy; set ``record.device_path`` (and provider_data)."""

    @abstractmethod
    async def delete(self, record: SnapshotRecord) -> None:
        """Remove the snapshot, unexposing it first; succeed if it is already gone."""

    @abstractmethod
    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        """Make the snapshot readable at ``mount_point`` (read-only); return the path."""

    @abstractmethod
    async def unexpose(self, record: SnapshotRecord) -> None:
        """Undo :meth:`expose`; succeed if it is not exposed."""

    async def exists(self, record: SnapshotRecord) -> bool:
        """Whether the snapshot still exists in the backend (used to reconcile on start)."""
        return True

    async def startup(self) -> None:  # noqa: B027
        """Called once when the daemon starts (reconnect to backends, recover state)."""

    async def shutdown(self) -> None:  # noqa: B027
        """Called once when the daemon stops."""
