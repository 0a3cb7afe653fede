"""The copy-on-write engine: a volume image, its snapshots and their diff area.

Pure Python, no FUSE: the server process wraps it, the tests drive it directly.

The classic volsnap scheme
--------------------------
Snapshots of a volume are ordered oldest → newest. Each owns a map *chunk → slot* of the
chunks preserved while it was the newest snapshot. The first write to a chunk since the
newest snapshot was taken copies the chunk's current bytes into a free slot of the diff
area and records it in the newest snapshot's map; later writes to that chunk copy
nothing. Reading chunk *c* of snapshot *i* looks at the maps of *i, i+1, …, newest* and
takes the first hit, else the live image: a chunk not preserved by *i* was not written
between *i* and *i+1*, so whatever *i+1* (or a newer one) preserved is also *i*'s
content. Deleting snapshot *i* hands each of its chunks to *i-1* when *i-1* has no copy
of its own (it was looking forward through *i*), and frees the rest.

Durability ordering (what makes a crash harmless)
-------------------------------------------------
1. copy the old chunk bytes into free slots of the data file, each as a self-validating
   record (:mod:`.slots`: owner snapshot, chunk index, checksum); ``fdatasync`` — ONE
   sync per request, or per group of concurrent requests
   (:meth:`CowEngine.write_many`: the server gathers the writes that arrive while the
   previous group is being made durable);
2. only then write the new bytes into the image.

The index journal learns of preserves lazily: their PRESERVE records are appended
together with the next record that must be synced anyway (a snapshot created or deleted,
a drop, a tombstone forgotten, or every ``PENDING_MAX`` pairs). So the journal always
names only chunks whose records are durable, and every preserve it does not name yet is
a durable, checksummed record in a slot the journal thinks free. Recovery replays the
journal and then reads the headers of the free slots: a record with a good checksum
whose owner is a live snapshot that lacks that chunk is adopted; a torn one (bad
checksum) was never acknowledged — the image chunk it guarded was not overwritten — and
is ignored. Adopting such a record is always right: a chunk is copied for a snapshot
only while that snapshot is the newest and has no copy of it, when the image still
holds exactly the snapshot's content. Records name the diff area's random ``area`` id,
so a data file left from an earlier diff area is never mistaken for this one.

A slot the journal names is checked against its checksum whenever it is read; one that
fails (the diff area's disk corrupted it) makes every snapshot that reads through it
invalid, with the reason, instead of returning wrong bytes. Snapshot creation
``fdatasync``s the image first (the point-in-time content must survive a power cut) and
then appends a synced CREATE record; deletions are synced before their slots can be
reused. After recovery the journal is compacted, so it names every adopted slot.

When the diff area is full, the volume's :class:`~.config.FullPolicy` decides: drop the
oldest snapshot (a durable tombstone keeps the reason, and ``on_event`` reports it) until
the preserve fits, or fail the write with :class:`~snapd_vss.errors.InsufficientStorage`
before anything was changed.

Older diff areas (format 1: ``diff.dat`` beside a journal whose records had to be synced
before every image write) are refused with a message saying how to start over.
"""

from __future__ import annotations

import heapq
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from snapd_vss.errors import (
    InsufficientStorage,
    InvalidArgs,
    NotFound,
    ProviderFailure,
    VssError,
)
from snapd_vss.providers.diff_area import journal, slots
from snapd_vss.providers.diff_area.config import FullPolicy, check_chunk_size
from snapd_vss.providers.diff_area.journal import RecordType
from snapd_vss.providers.diff_area.storage import (
    DATA_FILE,
    JOURNAL_FILE,
    OLD_DATA_FILE,
    BlockFile,
    DiffStore,
)

COMPACT_MIN_BYTES = 8 * 1024 * 1024
PAIRS_PER_RECORD = 4096
JOURNAL_STEP = 1024 * 1024
COPY_AHEAD_BYTES = 1024 * 1024  # see CowEngine._preserve_for
PENDING_MAX = 16 * PAIRS_PER_RECORD  # preserves the journal may lag behind (then a synced append)


@dataclass
class _Snap:
    seq: int
    id: str
    created_us: int
    chunks: dict[int, int] = field(default_factory=dict)  # chunk -> slot


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    created_us: int
    valid: bool
    reason: str = ""  # why it is invalid
    preserved_chunks: int = 0


@dataclass(frozen=True)
class SnapshotDropped:
    """A snapshot was deleted by the engine itself (diff area full, damage found)."""

    snapshot_id: str
    reason: str


EventCallback = Callable[[SnapshotDropped], None]


class CowEngine:
    def __init__(
        self,
        image: BlockFile,
        store: DiffStore,
        *,
        chunk_size: int,
        max_bytes: int,
        policy: FullPolicy = FullPolicy.DROP_OLDEST_SNAPSHOT,
        on_event: EventCallback | None = None,
    ) -> None:
        self.chunk_size = check_chunk_size(chunk_size)
        self.policy = policy
        self.on_event = on_event
        self._image = image
        self._store = store
        self._size = image.size()
        self._max_slots = max_bytes // chunk_size
        self._lock = threading.RLock()
        self._snaps: list[_Snap] = []
        self._tombstones: dict[str, str] = {}
        self._next_seq = 1
        self._free: list[int] = []
        self._high = 0  # slots [0, high) have been handed out at some time
        self._used = 0
        self._broken = ""
        self._stride = slots.stride(self.chunk_size)
        self._area = 0  # the diff area's random id, in every slot record
        self._pending: list[tuple[int, list[tuple[int, int]]]] = []  # (seq, [(chunk, slot)])
        self._pending_pairs = 0
        self._stream_end = -2  # last chunk of the previous write (copy-ahead's detector)
        self._ahead_chunks = max(1, COPY_AHEAD_BYTES // self.chunk_size)
        _refuse_old_format(store)
        self._data = store.open(DATA_FILE)
        self._journal = store.open(JOURNAL_FILE)
        self._jend = 0  # end of the last record
        self._jcap = 0  # the journal file's size: zeros from _jend up to here
        self._recover()

    # ----------------------------------------------------------------- public API

    @property
    def size(self) -> int:
        return self._size

    @property
    def max_bytes(self) -> int:
        return self._max_slots * self.chunk_size

    @property
    def used_bytes(self) -> int:
        return self._used * self.chunk_size

    def snapshots(self) -> list[SnapshotInfo]:
        """Live snapshots oldest first, then the invalid ones (tombstones)."""
        with self._lock:
            live = [SnapshotInfo(s.id, s.created_us, True, "", len(s.chunks)) for s in self._snaps]
            dead = [SnapshotInfo(i, 0, False, r) for i, r in self._tombstones.items()]
            return live + dead

    def read(self, offset: int, length: int) -> bytes:
        with self._lock:
            length = max(0, min(length, self._size - offset))
            return self._image.pread(length, offset) if length else b""

    def write(self, offset: int, data: bytes | memoryview) -> None:
        with self._lock:
            self._check_write(offset, data)
            if not data:
                return
            self._preserve_for([(offset, data)])
            self._image.pwrite(data, offset)

    def write_many(self, writes: Sequence[tuple[int, bytes | memoryview]]) -> list[VssError | None]:
        """Apply several concurrent writes, in order, with one preserve for all of them.

        The chunks that any of them overwrites first are copied together: one
        ``fdatasync`` of the diff data and one synced journal record for the whole
        group, then the image writes. Returns, per write, None or the error that
        refused it (the others still land). If the group as a whole does not fit under
        FAIL_WRITES, the writes are applied one by one so that only those that do not
        fit fail.
        """
        with self._lock:
            results: list[VssError | None] = []
            todo: list[tuple[int, bytes | memoryview]] = []
            for offset, data in writes:
                try:
                    self._check_write(offset, data)
                except VssError as exc:
                    results.append(exc)
                    continue
                results.append(None)
                todo.append((offset, data))
            try:
                self._preserve_for(todo)
            except InsufficientStorage:
                return [r if r is not None else self._try_write(o, d)
                        for r, (o, d) in zip(results, writes, strict=True)]
            for offset, data in todo:
                self._image.pwrite(data, offset)
            return results

    def copies_needed(self, offset: int, length: int) -> bool:
        """Whether a write here would first have to preserve chunks (cheap, no I/O)."""
        with self._lock:
            if not self._snaps or length <= 0:
                return False
            first, last = self._chunk_range(max(offset, 0), length)
            newest = self._snaps[-1].chunks
            return any(c not in newest for c in range(first, last + 1))

    def _try_write(self, offset: int, data: bytes | memoryview) -> VssError | None:
        try:
            self.write(offset, data)
        except VssError as exc:
            return exc
        return None

    def _check_write(self, offset: int, data: bytes | memoryview) -> None:
        if offset < 0 or offset + len(data) > self._size:
            raise InvalidArgs(
                f"write of {len(data)} bytes at {offset} is outside the volume "
                f"({self._size} bytes)"
            )
        if self._broken:
            raise ProviderFailure(self._broken)

    def _preserve_for(self, writes: Sequence[tuple[int, bytes | memoryview]]) -> None:
        """Preserve, for the newest snapshot, every chunk these writes touch first.

        Copy-ahead: when a write continues where the previous call's last write ended (a
        sequential stream), the next ``COPY_AHEAD_BYTES`` of not yet preserved chunks are copied in
        the same pass, so the stream pays one ``fdatasync`` per window instead of one
        per request. Copying a chunk early is always right (it is copied from the image
        while the newest snapshot has no copy of it: exactly its content); it only
        costs space, so copy-ahead uses free room only and never drops a snapshot.
        """
        if not self._snaps:
            return
        newest = self._snaps[-1]
        need: set[int] = set()
        sequential = False
        previous_end, self._stream_end = self._stream_end, -2
        for offset, data in writes:
            if data:
                first, last = self._chunk_range(offset, len(data))
                sequential |= first in (previous_end, previous_end + 1)
                self._stream_end = last
                need.update(c for c in range(first, last + 1) if c not in newest.chunks)
        if need and sequential:
            room = self._max_slots - self._used - len(need)
            top = min(-(-self._size // self.chunk_size), max(need) + 1 + self._ahead_chunks)
            ahead = [c for c in range(max(need) + 1, top) if c not in newest.chunks]
            need.update(ahead[: max(0, room)])
        if need:
            self._preserve(sorted(need))

    def flush(self) -> None:
        with self._lock:
            self._image.sync()

    def create_snapshot(self, snapshot_id: str, created_us: int) -> SnapshotInfo:
        with self._lock:
            if self._broken:
                raise ProviderFailure(self._broken)
            if self._find(snapshot_id) is not None:
                raise InvalidArgs(f"snapshot {snapshot_id} already exists on this volume")
            self._image.sync()
            seq = self._next_seq
            self._append(
                journal.encode_json(
                    RecordType.CREATE, {"seq": seq, "id": snapshot_id, "created_us": created_us}
                )
            )
            self._next_seq += 1
            self._tombstones.pop(snapshot_id, None)
            self._snaps.append(_Snap(seq, snapshot_id, created_us))
            return SnapshotInfo(snapshot_id, created_us, True)

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot, or forget an invalid one; NotFound if neither."""
        with self._lock:
            snap = self._find(snapshot_id)
            if snap is not None:
                self._delete(snap, "")
                return
            if snapshot_id in self._tombstones:
                self._append(journal.encode_json(RecordType.FORGET, {"id": snapshot_id}))
                del self._tombstones[snapshot_id]
                return
            raise NotFound(f"no snapshot {snapshot_id} on this volume")

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        with self._lock:
            index = self._index_of(snapshot_id)
            length = max(0, min(length, self._size - offset))
            if length == 0:
                return b""
            out = bytearray()
            for source, start, count in self._sources(index, offset, length):
                if source < 0:
                    out += self._image.pread(count, start)
                else:
                    chunk, within = divmod(start, self.chunk_size)
                    out += self._read_slot(index, source, chunk)[within : within + count]
            return bytes(out)

    def _read_slot(self, index: int, slot: int, chunk: int) -> bytes:
        """A preserved chunk's bytes, checked against its record; damage invalidates.

        The record must name this chunk, and an owner that is the snapshot holding the
        slot or a newer one since deleted (the holder inherited it): a slot holding
        another snapshot's chunk means the index is wrong, whatever the checksum says.
        """
        record = self._data.pread(self._stride, slot * self._stride)
        header = slots.check(record, self._area)
        holder = next(s for s in self._snaps[index:] if s.chunks.get(chunk) == slot)
        if (
            header is not None
            and header.chunk == chunk
            and (
                header.owner == holder.seq
                or (header.owner > holder.seq and all(s.seq != header.owner for s in self._snaps))
            )
        ):
            return record[slots.HEADER.size :]
        reason = (
            f"preserved chunk {chunk} (diff-area slot {slot}) failed its check: the diff "
            "area's storage returned corrupted data; the snapshot cannot be trusted"
        )
        self._invalidate_readers(slot, chunk, reason)
        raise ProviderFailure(f"{reason}; check the diff area's disk, then delete the snapshot")

    def _invalidate_readers(self, slot: int, chunk: int, reason: str) -> None:
        """Drop, oldest first, every snapshot whose chunk ``chunk`` is read from ``slot``."""
        readers = [s for i, s in enumerate(self._snaps) if self._slot_for(i, chunk) == slot]
        for snap in readers:
            self._delete(snap, reason)
            if self.on_event is not None:
                self.on_event(SnapshotDropped(snap.id, reason))

    def resize(self, max_bytes: int) -> None:
        """Change the diff area's maximum; shrinking below what is used drops (or refuses)."""
        with self._lock:
            slots = max_bytes // self.chunk_size
            if slots < self._used and self.policy is FullPolicy.FAIL_WRITES:
                raise InsufficientStorage(
                    f"the diff area uses {self.used_bytes} bytes, more than {max_bytes}; "
                    "delete snapshots first or choose a larger size"
                )
            self._max_slots = slots
            while self._used > self._max_slots and self._snaps:
                self._drop_oldest(f"the diff area was shrunk to {max_bytes} bytes")

    def close(self) -> None:
        with self._lock:
            self._image.sync()
            if self._pending and not self._broken:
                self._append(b"")  # the journal catches up: a faster next start
            self._data.close()
            self._journal.close()

    # ----------------------------------------------------------------- internals

    def _chunk_range(self, offset: int, length: int) -> tuple[int, int]:
        return offset // self.chunk_size, (offset + length - 1) // self.chunk_size

    def _find(self, snapshot_id: str) -> _Snap | None:
        return next((s for s in self._snaps if s.id == snapshot_id), None)

    def _index_of(self, snapshot_id: str) -> int:
        for i, snap in enumerate(self._snaps):
            if snap.id == snapshot_id:
                return i
        if snapshot_id in self._tombstones:
            raise ProviderFailure(
                f"snapshot {snapshot_id} is invalid: {self._tombstones[snapshot_id]}"
            )
        raise NotFound(f"no snapshot {snapshot_id} on this volume")

    def _slot_for(self, index: int, chunk: int) -> int:
        for snap in self._snaps[index:]:
            slot = snap.chunks.get(chunk)
            if slot is not None:
                return slot
        return -1

    def _sources(self, index: int, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(slot or -1 for the image, volume offset, byte count), merged where contiguous."""
        cs = self.chunk_size
        run: list[int] | None = None  # [slot, start, count]
        pos, end = offset, offset + length
        while pos < end:
            chunk = pos // cs
            piece = min(end, (chunk + 1) * cs) - pos
            slot = self._slot_for(index, chunk)
            if run is not None and _continues(run, slot, cs):
                run[2] += piece
            else:
                if run is not None:
                    yield run[0], run[1], run[2]
                run = [slot, pos, piece]
            pos += piece
        if run is not None:
            yield run[0], run[1], run[2]

    def _preserve(self, need: list[int]) -> None:
        if not self._make_room(len(need)):
            return
        newest = self._snaps[-1]
        taken = [self._alloc() for _ in need]
        cs = self.chunk_size
        try:
            for chunk, slot, count in _runs(need, taken):
                old = memoryview(self._image.pread(count * cs, chunk * cs))
                parts: list[bytes | memoryview] = []
                for i in range(count):
                    data = old[i * cs : (i + 1) * cs]
                    parts += [slots.encode_header(self._area, newest.seq, chunk + i, data), data]
                self._data.pwrite(b"".join(parts), slot * self._stride)
            self._data.sync()  # the one sync: from here on the records prove themselves
        except OSError as exc:
            # What reached the data file is unknown: refuse further writes until a
            # restart recovers, so no slot is reused while a record may name it.
            self._broken = f"the diff area failed ({exc}); check its filesystem and restart"
            raise ProviderFailure(self._broken) from exc
        pairs = list(zip(need, taken, strict=True))
        newest.chunks.update(pairs)
        self._pending.append((newest.seq, pairs))
        self._pending_pairs += len(pairs)
        if self._pending_pairs >= PENDING_MAX:
            self._append(b"")
        self._maybe_compact()

    def _make_room(self, count: int) -> bool:
        """Ensure ``count`` free slots; False when no snapshot is left to preserve for."""
        while self._used + count > self._max_slots:
            if self.policy is FullPolicy.FAIL_WRITES:
                raise InsufficientStorage(
                    f"the diff area is full ({self.used_bytes} of {self.max_bytes} bytes); "
                    "enlarge it or delete snapshots (policy FAIL_WRITES keeps them)"
                )
            if not self._snaps:
                break
            self._drop_oldest(
                f"the diff area reached its maximum of {self.max_bytes} bytes "
                "and the oldest snapshot was deleted to protect the live volume"
            )
        return bool(self._snaps)

    def _drop_oldest(self, reason: str) -> None:
        snap = self._snaps[0]
        self._delete(snap, reason)
        if self.on_event is not None:
            self.on_event(SnapshotDropped(snap.id, reason))

    def _delete(self, snap: _Snap, reason: str) -> None:
        self._append(journal.encode_json(RecordType.DELETE, {"seq": snap.seq, "reason": reason}))
        self._apply_delete(snap.seq, reason, live=True)

    def _apply_delete(self, seq: int, reason: str, *, live: bool) -> None:
        index = next((i for i, s in enumerate(self._snaps) if s.seq == seq), None)
        if index is None:
            return
        snap = self._snaps.pop(index)
        older = self._snaps[index - 1] if index > 0 else None
        for chunk, slot in snap.chunks.items():
            if older is not None and chunk not in older.chunks:
                older.chunks[chunk] = slot
            elif live:
                self._release(slot)
        if reason:
            self._tombstones[snap.id] = reason

    def _alloc(self) -> int:
        self._used += 1
        if self._free:
            return heapq.heappop(self._free)
        self._high += 1
        return self._high - 1

    def _release(self, slot: int) -> None:
        self._used -= 1
        heapq.heappush(self._free, slot)

    def _append(self, record: bytes) -> None:
        """Append ``record`` after the pending PRESERVE records, in one write; sync."""
        if self._pending:
            lazy = bytearray()
            for seq, pairs in self._pending:
                for start in range(0, len(pairs), PAIRS_PER_RECORD):
                    lazy += journal.encode_preserve(seq, pairs[start : start + PAIRS_PER_RECORD])
            record = bytes(lazy) + record
            self._pending.clear()
            self._pending_pairs = 0
        if not record:
            return
        end = self._jend + len(record)
        if end <= self._jcap:
            self._journal.pwrite(record, self._jend)
        else:
            # Grow the file by a zero-filled step together with this record: later
            # appends then overwrite blocks that already exist, and their fdatasync
            # writes the data alone instead of also committing a new file size.
            self._jcap = end + JOURNAL_STEP
            self._journal.pwrite(record + bytes(self._jcap - end), self._jend)
        self._journal.sync()
        self._jend = end

    def _maybe_compact(self) -> None:
        if self._jend > COMPACT_MIN_BYTES and self._jend > 4 * self._state_bytes():
            self._compact()

    def _state_bytes(self) -> int:
        return 64 * (len(self._snaps) + len(self._tombstones)) + 16 * self._used + 64

    # ----------------------------------------------------------------- recovery

    def _recover(self) -> None:
        raw = self._journal.pread(self._journal.size(), 0)
        result = journal.scan(raw)
        for record in result.records + result.salvaged:  # salvaged: only after damage,
            self._apply(record)  # to name (and invalidate) the snapshots it still knows
        if not self._area:  # a new diff area (or one whose journal is gone: start over)
            self._area = secrets.randbits(63) + 1
            self._data.truncate(0)
        data_slots = self._data.size() // self._stride
        for snap in list(self._snaps):
            if result.damage:
                self._apply_delete(snap.seq, result.damage + "; the snapshot cannot be trusted",
                                   live=False)
            elif any(slot >= data_slots for slot in snap.chunks.values()):
                self._apply_delete(snap.seq, "preserved data is missing from the diff area",
                                   live=False)
        self._adopt_unindexed(data_slots)
        self._rebuild_free()
        self._compact()

    def _adopt_unindexed(self, data_slots: int) -> None:
        """Give live snapshots the durable preserves the journal had not caught up with.

        Only slots the journal leaves free are read; a record is adopted when its
        checksum holds, it belongs to this diff area and names a live snapshot that has
        no copy of that chunk yet (see the module's docstring for why that is right).
        """
        owners = {snap.seq: snap for snap in self._snaps}
        if not owners:
            return
        used = {slot for snap in self._snaps for slot in snap.chunks.values()}
        chunks = -(-self._size // self.chunk_size)
        for slot in range(data_slots):
            if slot in used:
                continue
            start = slot * self._stride
            header = slots.decode_header(self._data.pread(slots.HEADER.size, start))
            if header is None or header.area != self._area or header.chunk >= chunks:
                continue
            snap = owners.get(header.owner)
            if snap is None or header.chunk in snap.chunks:
                continue
            if slots.check(self._data.pread(self._stride, start), self._area) is not None:
                snap.chunks[header.chunk] = slot
                used.add(slot)

    def _apply(self, record: journal.Record) -> None:
        if record.type is RecordType.PRESERVE:
            seq, pairs = record.preserve()
            snap = next((s for s in self._snaps if s.seq == seq), None)
            if snap is not None:
                snap.chunks.update(pairs)
            return
        value = record.json()
        if record.type is RecordType.HEADER:
            if int(value.get("format", 1)) != journal.FORMAT:
                raise ProviderFailure(_old_format_message(self._store))
            self._area = int(value["area"])
            if int(value["chunk_size"]) != self.chunk_size:
                raise InvalidArgs(
                    f"the diff area was made with {value['chunk_size']}-byte chunks, "
                    f"not {self.chunk_size}; attach with the same chunk size"
                )
            self._next_seq = max(self._next_seq, int(value["next_seq"]))
        elif record.type is RecordType.CREATE:
            seq = int(value["seq"])
            self._snaps.append(_Snap(seq, str(value["id"]), int(value["created_us"])))
            self._tombstones.pop(str(value["id"]), None)
            self._next_seq = max(self._next_seq, seq + 1)
        elif record.type is RecordType.DELETE:
            self._apply_delete(int(value["seq"]), str(value["reason"]), live=False)
        elif record.type is RecordType.FORGET:
            self._tombstones.pop(str(value["id"]), None)
        elif record.type is RecordType.TOMBSTONE:
            self._tombstones[str(value["id"])] = str(value["reason"])

    def _rebuild_free(self) -> None:
        used = {slot for snap in self._snaps for slot in snap.chunks.values()}
        self._used = len(used)
        self._high = max(used) + 1 if used else 0
        self._free = [slot for slot in range(self._high) if slot not in used]
        heapq.heapify(self._free)

    def _compact(self) -> None:
        """Rewrite the journal as the current state only, atomically."""
        out = bytearray(
            journal.encode_json(
                RecordType.HEADER,
                {"format": journal.FORMAT, "chunk_size": self.chunk_size,
                 "next_seq": self._next_seq, "area": self._area},
            )
        )
        self._pending.clear()  # the state written below holds them
        self._pending_pairs = 0
        for snap in self._snaps:
            out += journal.encode_json(
                RecordType.CREATE, {"seq": snap.seq, "id": snap.id, "created_us": snap.created_us}
            )
            pairs = list(snap.chunks.items())
            for start in range(0, len(pairs), PAIRS_PER_RECORD):
                out += journal.encode_preserve(snap.seq, pairs[start : start + PAIRS_PER_RECORD])
        for snap_id, reason in self._tombstones.items():
            out += journal.encode_json(RecordType.TOMBSTONE, {"id": snap_id, "reason": reason})
        new_name = JOURNAL_FILE + ".new"
        tmp = self._store.open(new_name)
        try:
            tmp.truncate(0)
            tmp.pwrite(bytes(out), 0)
            tmp.sync()
        finally:
            tmp.close()
        self._store.replace(new_name, JOURNAL_FILE)
        self._journal.close()
        self._journal = self._store.open(JOURNAL_FILE)
        self._jend = self._jcap = len(out)


def _continues(run: list[int], slot: int, cs: int) -> bool:
    # image pieces merge; preserved pieces are read (and checked) one slot at a time
    return run[0] < 0 and slot < 0


def _refuse_old_format(store: DiffStore) -> None:
    if store.exists(OLD_DATA_FILE):
        raise ProviderFailure(_old_format_message(store))


def _old_format_message(store: DiffStore) -> str:
    where = getattr(store, "directory", "the diff area's directory")
    return (
        f"the diff area in {where} was written by an older snapd-vss (format 1, "
        f"{OLD_DATA_FILE}); this version cannot read its snapshots. Delete its snapshots "
        f"with the old version, or give up on them: detach the volume, remove {where} "
        "and attach the volume again (the volume's own data is not in the diff area)"
    )


def _runs(chunks: list[int], slots: list[int]) -> Iterator[tuple[int, int, int]]:
    """(first chunk, first slot, count) for runs contiguous in both the volume and the slots."""
    start = 0
    for i in range(1, len(chunks) + 1):
        if i == len(chunks) or chunks[i] != chunks[i - 1] + 1 or slots[i] != slots[i - 1] + 1:
            yield chunks[start], slots[start], i - start
            start = i
