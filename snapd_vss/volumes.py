"""Map paths to the mounted filesystems (volumes) that hold them.

The truth is ``/proc/self/mountinfo`` (see proc(5)); each line is::

    36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    id parent maj:min root mount-point options [optional...] - fstype source super-options

Paths in it escape space, tab, newline and backslash as octal (``\\040``...).
"""

from __future__ import annotations

import os
import re

from snapd_vss.errors import Failed, InvalidArgs, NotFound
from snapd_vss.model import Volume

MOUNTINFO = "/proc/self/mountinfo"

_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escaping of a mountinfo field (``\\040`` -> space)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo_line(line: str) -> Volume:
    """Parse one line of mountinfo; raise ``ValueError`` if it is malformed."""
    fields = line.rstrip("\n").split(" ")
    sep = fields.index("-", 6)  # optional fields end at the lone "-"
    if len(fields) < sep + 3:
        raise ValueError(f"truncated mountinfo line: {line!r}")
    return Volume(
        mount_point=unescape(fields[4]),
        fs_type=unescape(fields[sep + 1]),
        source=unescape(fields[sep + 2]),
        root=unescape(fields[3]),
        major_minor=fields[2],
        options=fields[5],
    )


def list_mounts(mountinfo: str = MOUNTINFO) -> list[Volume]:
    """All mounts visible to this process, in mountinfo order (later mounts on top)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError as e:
        raise Failed(f"Cannot read {mountinfo}: {e.strerror}; is /proc mounted?") from e
    volumes = []
    for line in lines:
        if line.strip():
            try:
                volumes.append(parse_mountinfo_line(line))
            except ValueError as e:
                raise Failed(f"Cannot parse {mountinfo}: {e}") from e
    return volumes


def _is_under(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return True
    return path == mount_point or path.startswith(mount_point + "/")


def resolve_volume(path: str, mountinfo: str = MOUNTINFO) -> Volume:
    """The volume holding ``path``: the mount with the longest mount point containing it.

    Symlinks are resolved first. When several mounts share a mount point, the last
    one (the one on top, that path lookups reach) wins.
    """
    if not path:
        raise InvalidArgs("No volume given; pass a mount point or an absolute path inside one.")
    if not os.path.isabs(path):
        raise InvalidArgs(
            f"{path!r} is not an absolute path; pass a mount point or an absolute path."
        )
    real = os.path.realpath(path)
    if not os.path.exists(real):
        raise NotFound(
            f"{path!r} does not exist; pass an existing mount point or a path inside one."
        )
    best: Volume | None = None
    for volume in list_mounts(mountinfo):
        if not _is_under(real, volume.mount_point):
            continue
        if best is None or len(volume.mount_point) >= len(best.mount_point):
            best = volume
    if best is None:
        raise NotFound(f"No mounted filesystem holds {real!r}; check that it is mounted.")
    return best


def mount_points(mountinfo: str = MOUNTINFO) -> set[str]:
    """The set of mount points currently mounted."""
    return {v.mount_point for v in list_mounts(mountinfo)}


def is_mount_point(path: str, mountinfo: str = MOUNTINFO) -> bool:
    return os.path.realpath(path) in mount_points(mountinfo)
