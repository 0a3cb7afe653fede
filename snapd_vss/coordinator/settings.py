"""What the coordinator needs to know from the configuration, and who is calling."""

from __future__ import annotations

import grp
import pwd
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Settings:
    freeze_window_s: float = 60.0  # first OnFreeze -> last OnThaw
    commit_window_s: float = 10.0  # filesystems frozen
    writer_call_s: float = 30.0  # any other writer event
    identify_s: float = 10.0  # OnIdentify
    max_writer_calls_in_flight: int = 64
    backup_group: str = ""  # members may run sessions and manage snapshots, like root
    state_dir: str = "/var/lib/snapd-vss"
    runtime_dir: str = "/run/snapd-vss"


@dataclass(frozen=True)
class Caller:
    """The connection behind a call: its unique bus name and credentials."""

    bus_name: str
    uid: int
    gids: tuple[int, ...] = field(default_factory=tuple)

    @classmethod
    def internal(cls) -> Caller:
        return cls(bus_name="", uid=0)


def is_backup_operator(caller: Caller, backup_group: str) -> bool:
    """Root, or a member of the configured backup group."""
    if caller.uid == 0:
        return True
    if not backup_group:
        return False
    try:
        group = grp.getgrnam(backup_group)
    except KeyError:
        return False
    if group.gr_gid in caller.gids:
        return True
    try:
        user = pwd.getpwuid(caller.uid).pw_name
    except KeyError:
        return False
    return user in group.gr_mem
