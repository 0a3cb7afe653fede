"""The diff area's index: an append-only, checksummed write-ahead journal.

Why a journal and not an index file rewritten in place: a change is one small append
plus one ``fdatasync`` — the cheapest durable step there is — and replay after a crash
is a plain forward scan. The journal is compacted (rewritten to a new file holding
only the live state, then atomically renamed over the old one) when it grows.

Record layout (little endian)::

    magic "DAJ1" | type u8 | payload length u32 | crc32(type + payload) u32 | payload

Types: HEADER (JSON: format, chunk size, next snapshot seq, the diff area's random
id), CREATE (JSON: seq, id, creation time), PRESERVE (u64 snapshot seq, then n x (u64
chunk, u64 slot); written lazily, with the next synced append — the slot records
themselves are the durable proof, see .slots), DELETE (JSON: seq, reason — a non-empty
reason leaves a tombstone saying why the snapshot is gone), FORGET (JSON: id, drops a
tombstone), TOMBSTONE (JSON: id, reason; written by compaction).

Every append is one write followed by one ``fdatasync``, so only the last one can be
torn. The file grows in zero-filled steps, so its tail after the last record is zeros. A
damaged record at the very end (torn by a crash: it runs past the end of the file, or
no whole record follows it, only zeros or a torn prefix) is cut off: it was never
acknowledged. A damaged record with a valid record after it is corruption: the scan
salvages the good records after it, and the caller invalidates every snapshot they and
the records before the damage name.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

MAGIC = b"DAJ1"
HEADER = struct.Struct("<4sBII")
U64 = struct.Struct("<Q")
PAIR = struct.Struct("<QQ")
FORMAT = 2  # 1: diff.dat with bare chunks, PRESERVE synced before each image write


class RecordType(IntEnum):
    HEADER = 1
    CREATE = 2
    PRESERVE = 3
    DELETE = 4
    FORGET = 5
    TOMBSTONE = 6


@dataclass(frozen=True)
class Record:
    type: RecordType
    payload: bytes

    def json(self) -> dict[str, Any]:
        value = json.loads(self.payload.decode())
        assert isinstance(value, dict)
        return value

    def preserve(self) -> tuple[int, list[tuple[int, int]]]:
        (seq,) = U64.unpack_from(self.payload, 0)
        pairs = [PAIR.unpack_from(self.payload, off) for off in range(8, len(self.payload), 16)]
        return seq, pairs


def encode(rtype: RecordType, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(bytes([rtype])))
    return HEADER.pack(MAGIC, rtype, len(payload), crc) + payload


def encode_json(rtype: RecordType, value: dict[str, Any]) -> bytes:
    return encode(rtype, json.dumps(value, sort_keys=True).encode())


def encode_preserve(seq: int, pairs: Iterable[tuple[int, int]]) -> bytes:
    body = bytearray(U64.pack(seq))
    for chunk, slot in pairs:
        body += PAIR.pack(chunk, slot)
    return encode(RecordType.PRESERVE, bytes(body))


@dataclass(frozen=True)
class Scan:
    records: list[Record]
    valid_end: int  # offset just after the last good record
    damage: str  # "" if clean or only a torn tail; else what is wrong
    salvaged: list[Record] = field(default_factory=list)  # good records after the damage


def scan(data: bytes) -> Scan:
    records: list[Record] = []
    for offset, record in _iter(data):
        if record is None:
            after = _next_valid_record(data, offset + 1)
            if after < 0:  # only zeros, a torn prefix or the end of the file follow
                return Scan(records, offset, "")
            damage = f"index journal damaged at byte {offset}"
            return Scan(records, offset, damage, _salvage(data, after))
        records.append(record)
    return Scan(records, len(data), "")


def _salvage(data: bytes, start: int) -> list[Record]:
    """Every good record from ``start`` on, skipping over damaged stretches.

    What a damaged journal still says (which snapshots existed, which were deleted)
    lets the caller report each of them invalid, rather than let them vanish.
    """
    out: list[Record] = []
    pos = start
    while pos >= 0:
        record = _record_at(data, pos)
        if record is None:
            pos = _next_valid_record(data, pos + 1)
            continue
        out.append(record)
        pos += HEADER.size + len(record.payload)
    return out


def _next_valid_record(data: bytes, start: int) -> int:
    """Where the first whole, checksummed record at or after ``start`` begins, or -1.

    Appends are synced one at a time, so a crash can leave only the last one torn, with
    nothing but zeros (the file's preallocated tail) or the end of the file after it. A
    bad record followed by a good one is damage, not a torn append.
    """
    pos = data.find(MAGIC, start)
    while pos >= 0:
        if _record_at(data, pos) is not None:
            return pos
        pos = data.find(MAGIC, pos + 1)
    return -1


def _record_at(data: bytes, offset: int) -> Record | None:
    if offset + HEADER.size > len(data):
        return None
    magic, rtype, length, crc = HEADER.unpack_from(data, offset)
    start = offset + HEADER.size
    payload = data[start : start + length]
    valid = (
        magic == MAGIC
        and len(payload) == length
        and rtype in RecordType._value2member_map_
        and zlib.crc32(payload, zlib.crc32(bytes([rtype]))) == crc
    )
    return Record(RecordType(rtype), payload) if valid else None


def _iter(data: bytes) -> Iterator[tuple[int, Record | None]]:
    offset = 0
    while offset < len(data):
        record = _record_at(data, offset)
        yield offset, record
        if record is None:
            return
        offset += HEADER.size + len(record.payload)
