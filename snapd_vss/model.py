"""Plain records shared by the coordinator, the providers and the store."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from snapd_vss.vocabulary import SnapshotState


@dataclass(frozen=True)
class Volume:
    """A mounted filesystem, as found in /proc/self/mountinfo."""

    mount_point: str
    fs_type: str
    source: str  # the mount source, e.g. /dev/loop3 or /dev/mapper/vg-lv
    root: str  # the mount's root inside the filesystem (btrfs: the subvolume path)
    major_minor: str  # "MAJ:MIN" of the device
    options: str = ""  # per-mount options, e.g. "ro,relatime"


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class SnapshotRecord:
    """One snapshot of one volume, as the service and the store know it.

    ``provider_data`` holds whatever the provider needs to find its snapshot again
    (e.g. an LV name); it is stored as JSON and never shown on D-Bus.
    """

    id: str
    snapshot_set_id: str
    volume: str  # the volume's mount point
    provider: str
    device_path: str = ""
    exposed_path: str = ""
    creation_time_us: int = field(default_factory=now_us)
    persistent: bool = False
    state: SnapshotState = SnapshotState.CREATED
    state_reason: str = ""
    committed: bool = False  # False until the provider's commit returned
    provider_data: dict[str, str] = field(default_factory=dict)
