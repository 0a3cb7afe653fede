"""The diff area's data file: self-validating chunk slots (format 2).

Every preserved chunk is stored as one *slot record*: a 32-byte header naming what it
holds, then the chunk's bytes. Slot ``s`` starts at ``s * (HEADER.size + chunk_size)``.

Record layout (little endian)::

    magic "DAS2" | crc32 u32 | area u64 | owner u64 | chunk u64 | chunk_size bytes of data

``crc32`` covers everything after itself (area, owner, chunk and the data); ``area`` is
a random number drawn when the diff area was made (so records of an earlier diff area
in the same file are never taken for this one's); ``owner`` is the sequence number of
the snapshot the chunk was preserved for; ``chunk`` the chunk's index in the volume.

Why: the record proves its own content, so a preserve needs ONE ``fdatasync`` (of this
file) before the image may be overwritten. The index journal learns of the preserve
lazily — its PRESERVE records ride along with the next synced journal append — and
recovery finds the slots the journal does not know yet by reading the headers of the
free slots. A record whose checksum fails was torn by a crash (its preserve was never
acknowledged, the image chunk was not overwritten) and is ignored; a slot the journal
*does* know that fails its checksum is damage, found when it is read.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"DAS2"
HEADER = struct.Struct("<4sIQQQ")
_BODY = struct.Struct("<QQQ")  # area, owner, chunk: what the checksum covers before the data


@dataclass(frozen=True)
class SlotHeader:
    area: int
    owner: int
    chunk: int
    crc: int


def stride(chunk_size: int) -> int:
    return HEADER.size + chunk_size


def encode_header(area: int, owner: int, chunk: int, data: bytes | memoryview) -> bytes:
    body = _BODY.pack(area, owner, chunk)
    return HEADER.pack(MAGIC, zlib.crc32(data, zlib.crc32(body)), area, owner, chunk)


def decode_header(raw: bytes) -> SlotHeader | None:
    """The header's fields, or None if these bytes are not a slot header at all."""
    if len(raw) < HEADER.size:
        return None
    magic, crc, area, owner, chunk = HEADER.unpack_from(raw, 0)
    if magic != MAGIC:
        return None
    return SlotHeader(area, owner, chunk, crc)


def check(record: bytes, area: int) -> SlotHeader | None:
    """The header of a whole record (header + data) whose checksum holds, else None."""
    header = decode_header(record)
    if header is None or header.area != area:
        return None
    body = memoryview(record)[HEADER.size - _BODY.size :]
    return header if zlib.crc32(body) == header.crc else None
