"""A device-mapper device's status straight from the kernel (what ``dmsetup status`` prints).

One ``DM_TABLE_STATUS`` ioctl on ``/dev/mapper/control``: no process to start, no
device scan, no lock. The layout is ``struct dm_ioctl`` and ``struct dm_target_spec`` of
``<linux/dm-ioctl.h>`` (interface version 4, stable since Linux 2.6)::

    struct dm_ioctl {                      struct dm_target_spec {
        __u32 version[3];                      __u64 sector_start;
        __u32 data_size;  /* whole buffer */   __u64 length;
        __u32 data_start; /* out: results */   __s32 status;
        __u32 target_count;                    __u32 next;   /* from data_start */
        __s32 open_count;                      char target_type[16];
        __u32 flags;                           /* then the NUL-terminated text */
        __u32 event_nr;                    };
        __u32 padding;
        __u64 dev;
        char name[128];
        char uuid[129];
        char data[7];
    };                                     /* 312 bytes */

The device is named by its device-mapper uuid (or name). With ``noflush`` the kernel
does not commit a thin pool's metadata before reporting (``dmsetup status --noflush``;
what ``lvs`` does): the counts are the pool's current in-memory ones.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

CONTROL = "/dev/mapper/control"

_HEADER = struct.Struct("=3I I I I i I I I Q 128s 129s 7s")
_SPEC = struct.Struct("=Q Q i I 16s")
_VERSION = (4, 0, 0)  # any kernel with interface 4.x answers a 4.0 request
_TABLE_STATUS_CMD = 12
# _IOWR(0xfd, DM_TABLE_STATUS_CMD, struct dm_ioctl)
TABLE_STATUS = (3 << 30) | (_HEADER.size << 16) | (0xFD << 8) | _TABLE_STATUS_CMD
BUFFER_FULL_FLAG = 1 << 8
NOFLUSH_FLAG = 1 << 11
_BUFFER = 16 << 10
_MAX_BUFFER = 1 << 20
_NAME_LEN = 128
_UUID_LEN = 129

assert _HEADER.size == 312 and _SPEC.size == 40


@dataclass(frozen=True)
class Target:
    """One line of ``dmsetup status``: ``start length type text``."""

    start: int
    length: int
    type: str
    text: str

    @property
    def line(self) -> str:
        return f"{self.start} {self.length} {self.type} {self.text}".rstrip()


def request(
    *, name: str = "", uuid: str = "", noflush: bool = True, size: int = _BUFFER
) -> bytearray:
    """The ioctl buffer asking for the status of the device with ``uuid`` (or ``name``)."""
    if bool(name) == bool(uuid):
        raise ValueError("name the device by exactly one of name or uuid")
    raw_name, raw_uuid = name.encode(), uuid.encode()
    if len(raw_name) >= _NAME_LEN or len(raw_uuid) >= _UUID_LEN:
        raise ValueError(f"device-mapper name or uuid too long: {name or uuid!r}")
    buf = bytearray(size)
    _HEADER.pack_into(
        buf, 0, *_VERSION, size, _HEADER.size, 0, 0, NOFLUSH_FLAG if noflush else 0, 0, 0, 0,
        raw_name, raw_uuid, b"",
    )
    return buf


def parse(buf: bytes | bytearray) -> list[Target]:
    """The targets of a ``DM_TABLE_STATUS`` answer; ValueError if it is not one."""
    if len(buf) < _HEADER.size:
        raise ValueError(f"a device-mapper answer has {_HEADER.size} bytes or more, not {len(buf)}")
    fields = _HEADER.unpack_from(buf, 0)
    data_size, data_start, target_count = fields[3], fields[4], fields[5]
    if data_size > len(buf) or not _HEADER.size <= data_start <= data_size:
        raise ValueError(f"bad device-mapper answer: data {data_start}..{data_size} of {len(buf)}")
    targets = []
    offset = data_start
    for _ in range(target_count):
        if offset + _SPEC.size > data_size:
            raise ValueError("bad device-mapper answer: a target lies beyond its data")
        start, length, _status, next_offset, raw_type = _SPEC.unpack_from(buf, offset)
        text_at = offset + _SPEC.size
        end = buf.find(b"\0", text_at, data_size)
        if end < 0:
            raise ValueError("bad device-mapper answer: a target's text is not terminated")
        targets.append(Target(
            start, length, _c_string(raw_type), bytes(buf[text_at:end]).decode(errors="replace")
        ))
        offset = data_start + next_offset
    return targets


def table_status(*, name: str = "", uuid: str = "", noflush: bool = True,
                 control: str = CONTROL) -> list[Target]:
    """The status of one device-mapper device, as ``dmsetup status [--noflush]`` has it.

    Raises OSError when there is no device-mapper (ENOENT on the control node), no such
    device (ENXIO) or the kernel refuses the request.
    """
    fd = os.open(control, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = _BUFFER
        while True:
            buf = request(name=name, uuid=uuid, noflush=noflush, size=size)
            fcntl.ioctl(fd, TABLE_STATUS, buf, True)
            flags = _HEADER.unpack_from(buf, 0)[7]
            if not flags & BUFFER_FULL_FLAG:
                break
            if size >= _MAX_BUFFER:
                raise OSError(errno.EOVERFLOW, f"device-mapper status of {name or uuid} too long")
            size *= 4
    finally:
        os.close(fd)
    try:
        return parse(buf)
    except ValueError as e:
        raise OSError(errno.EPROTO, str(e)) from None


def _c_string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")
