"""The copy-on-write engine against a reference model of full copies (hypothesis).

The model keeps the live volume and one full copy per snapshot. Every operation is
applied to both; after each one every snapshot (and the live volume) must read back
exactly like the model. The crash property runs the same operations on a
:class:`MemDisk` that "loses power" after N operations, keeps a random subset of the
unsynced writes (some torn), reopens the engine and checks that every snapshot
acknowledged before the crash reads back exactly right (or, only where the diff-area
policy may drop snapshots, is marked invalid with a reason) — and that the engine keeps
working correctly afterwards.

Reproducibility: CI must explore exactly what a developer's run explores. ``derandomize``
fixes Hypothesis' random stream (and implies no example database), but Hypothesis also
mixes in integer constants harvested from every *local* module already imported — a set
that depends on which other tests ran first and on other people's code. The
``_no_local_constants`` fixture pins that pool to empty for these tests. Every failure
Hypothesis has found is kept below as an ``@example`` so it is replayed on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import providers as hypothesis_providers
from hypothesis.internal.constants_ast import Constants

from snapd_vss.errors import InsufficientStorage, InvalidArgs, NotFound, ProviderFailure
from snapd_vss.providers.diff_area import journal, slots
from snapd_vss.providers.diff_area.config import FullPolicy
from snapd_vss.providers.diff_area.engine import CowEngine, SnapshotDropped
from snapd_vss.providers.diff_area.journal import RecordType
from snapd_vss.providers.diff_area.memstore import MemDiffStore, MemDisk, MemFile, SimulatedCrash
from snapd_vss.providers.diff_area.storage import DATA_FILE, JOURNAL_FILE, OLD_DATA_FILE

CS = 4096
SIZE = 6 * CS + 1000  # few chunks, so writes collide often; a partial last chunk on purpose

PROFILE = settings(
    max_examples=1000,
    deadline=None,
    derandomize=True,  # implies database=None: nothing from earlier runs is replayed
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def _no_local_constants() -> Iterator[None]:
    """Keep Hypothesis from drawing constants out of whatever local modules are loaded."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hypothesis_providers, "_get_local_constants", Constants)
        hypothesis_providers.CONSTANTS_CACHE.cache.clear()
        yield
    hypothesis_providers.CONSTANTS_CACHE.cache.clear()


@dataclass
class Model:
    live: bytearray
    snaps: dict[str, bytes] = field(default_factory=dict)  # oldest first
    dropped: dict[str, str] = field(default_factory=dict)  # announced drops: id -> reason
    counter: int = 0


Op = tuple[str, int, int, int]

ops_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("write"),
            st.one_of(st.integers(0, SIZE - 1), st.sampled_from([0, CS, 3 * CS, 6 * CS])),
            st.one_of(st.integers(1, 2 * CS + 1), st.just(CS)),
            st.integers(0, 2**32),
        ),
        # several concurrent writes applied as one group (write_many), derived from seed
        st.tuples(
            st.just("group"),
            st.integers(0, SIZE - 1),
            st.integers(1, 2 * CS + 1),
            st.integers(0, 2**32),
        ),
        st.tuples(st.just("snap"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("delete"), st.integers(0, 8), st.just(0), st.just(0)),
    ),
    min_size=5,
    max_size=40,
)


def payload(offset: int, length: int, seed: int) -> bytes:
    length = min(length, SIZE - offset)
    return random.Random(seed).randbytes(length)


def new_disk(scatter: bool = False) -> MemDisk:
    """A disk with a random image; ``scatter``: torn data-file writes keep random sectors."""
    disk = MemDisk(frozenset({"diff/" + DATA_FILE}) if scatter else frozenset())
    image = disk.file("image")
    image.pwrite(random.Random(7).randbytes(SIZE), 0)
    image.sync()
    return disk


def open_engine(
    disk: MemDisk, max_chunks: int, policy: FullPolicy, events: list[SnapshotDropped]
) -> CowEngine:
    return CowEngine(
        disk.file("image"),
        MemDiffStore(disk),
        chunk_size=CS,
        max_bytes=max_chunks * CS,
        policy=policy,
        on_event=events.append,
    )


def group_writes(offset: int, length: int, seed: int) -> list[tuple[int, bytes]]:
    """2-5 writes, some overlapping, one of them possibly past the end of the volume."""
    rng = random.Random(seed)
    out = [(offset, payload(offset, length, seed))]
    for i in range(rng.randrange(1, 5)):
        near = rng.random() < 0.3  # overlapping or abutting the previous write
        off = max(0, out[-1][0] + rng.randrange(-CS, CS) if near else rng.randrange(SIZE))
        size = rng.choice([CS, rng.randrange(1, 2 * CS)])
        data = payload(off, size, seed + i + 1) if off < SIZE else b""
        if rng.random() < 0.1:
            data = bytes(SIZE)  # out of bounds: refused, the others still land
        out.append((off, data))
    return out


def note_drops(model: Model, events: list[SnapshotDropped]) -> None:
    # a drop is announced only once it is durable, even if the write then fails
    for event in events:
        assert event.snapshot_id == next(iter(model.snaps)), "dropped a non-oldest"
        assert event.reason
        del model.snaps[event.snapshot_id]
        model.dropped[event.snapshot_id] = event.reason
    events.clear()


def apply(engine: CowEngine, model: Model, op: Op, events: list[SnapshotDropped]) -> None:
    kind, a, b, seed = op
    if kind == "write":
        data = payload(a, b, seed)
        try:
            engine.write(a, data)
        except InsufficientStorage:
            assert engine.policy is FullPolicy.FAIL_WRITES
            return
        finally:
            note_drops(model, events)
        model.live[a : a + len(data)] = data
    elif kind == "group":
        writes = group_writes(a, b, seed)
        try:
            results = engine.write_many(writes)
        finally:
            note_drops(model, events)
        for (off, data), error in zip(writes, results, strict=True):
            if error is None:
                model.live[off : off + len(data)] = data
            elif isinstance(error, InsufficientStorage):
                assert engine.policy is FullPolicy.FAIL_WRITES
            else:
                assert isinstance(error, InvalidArgs) and off + len(data) > SIZE, error
    elif kind == "snap":
        model.counter += 1
        snap_id = f"s{model.counter}"
        engine.create_snapshot(snap_id, model.counter)
        model.snaps[snap_id] = bytes(model.live)
    elif kind == "delete" and model.snaps:
        snap_id = list(model.snaps)[a % len(model.snaps)]
        engine.delete_snapshot(snap_id)
        del model.snaps[snap_id]


def check(engine: CowEngine, model: Model) -> None:
    assert engine.read(0, SIZE) == bytes(model.live)
    live = [s.id for s in engine.snapshots() if s.valid]
    assert live == list(model.snaps)
    dead = {s.id: s.reason for s in engine.snapshots() if not s.valid}
    assert dead == model.dropped  # every drop is visible, with its reason, and no other
    for snap_id, content in model.snaps.items():
        assert engine.read_snapshot(snap_id, 0, SIZE) == content, snap_id
        # unaligned partial reads too
        assert engine.read_snapshot(snap_id, CS - 7, 2 * CS + 9) == content[CS - 7 : 3 * CS + 2]
    assert engine.used_bytes <= engine.max_bytes


@PROFILE
@given(
    ops=ops_strategy,
    max_chunks=st.sampled_from([4, 9, 1000]),
    policy=st.sampled_from(list(FullPolicy)),
)
def test_snapshots_match_full_copies(ops: list[Op], max_chunks: int, policy: FullPolicy) -> None:
    disk = new_disk()
    events: list[SnapshotDropped] = []
    engine = open_engine(disk, max_chunks, policy, events)
    model = Model(bytearray(engine.read(0, SIZE)))
    for op in ops:
        apply(engine, model, op, events)
        check(engine, model)
    for snap_id in list(model.snaps):
        engine.delete_snapshot(snap_id)
    assert engine.used_bytes == 0
    # a clean reopen sees the same state
    engine.close()
    model.snaps.clear()
    check(open_engine(disk, max_chunks, policy, events), model)


@PROFILE
@given(
    ops=ops_strategy,
    more=ops_strategy,
    crash_after=st.integers(0, 120),
    crash_in_recovery=st.one_of(st.none(), st.integers(0, 6)),
    seed=st.integers(0, 2**32),
    max_chunks=st.sampled_from([5, 1000]),
    policy=st.sampled_from(list(FullPolicy)),
    scatter=st.booleans(),
)
# Found by CI: a write that fills the diff area drops the oldest snapshot (durably,
# announced) and the crash hits before the write completes; the tombstone must survive.
@example(
    ops=[("snap", 0, 0, 0), ("write", 0, 4096, 0), ("snap", 0, 0, 0), ("write", 0, 4096, 0),
         ("write", 4097, 4096, 0), ("write", 12289, 4096, 0)],
    more=[("snap", 0, 0, 0), ("write", 0, 4096, 0), ("snap", 0, 0, 0), ("write", 0, 4096, 0),
          ("snap", 0, 0, 0)],
    crash_after=23, crash_in_recovery=None, seed=0, max_chunks=5,
    policy=FullPolicy.DROP_OLDEST_SNAPSHOT, scatter=False,
)
# Found by CI: an earlier write dropped the oldest snapshot; the crash hits while the
# next snapshot is being created. The old tombstone is not the snapshot being created.
@example(
    ops=[("snap", 0, 0, 0), ("write", 0, 4096, 0), ("snap", 0, 0, 0), ("write", 1, 4096, 0),
         ("write", 12289, 4096, 0), ("write", 4097, 4096, 0), ("snap", 0, 0, 0)],
    more=[("snap", 0, 0, 0), ("write", 0, 4096, 0), ("delete", 0, 0, 0), ("write", 0, 8192, 1)],
    crash_after=28, crash_in_recovery=None, seed=0, max_chunks=5,
    policy=FullPolicy.DROP_OLDEST_SNAPSHOT, scatter=False,
)
def test_crash_at_any_point_keeps_snapshots_exact(
    ops: list[Op],
    more: list[Op],
    crash_after: int,
    crash_in_recovery: int | None,
    seed: int,
    max_chunks: int,
    policy: FullPolicy,
    scatter: bool,
) -> None:
    disk = new_disk(scatter)
    events: list[SnapshotDropped] = []
    engine = open_engine(disk, max_chunks, policy, events)
    model = Model(bytearray(engine.read(0, SIZE)))
    disk.schedule_crash(crash_after)
    in_flight: Op | None = None
    live_before = bytes(model.live)
    try:
        for op in ops:
            in_flight, live_before = op, bytes(model.live)
            apply(engine, model, op, events)
            in_flight = None
    except SimulatedCrash:
        pass
    rng = random.Random(seed)
    disk.crash(rng)
    if crash_in_recovery is not None:
        disk.schedule_crash(crash_in_recovery)
        try:
            open_engine(disk, max_chunks, policy, events)
        except SimulatedCrash:
            disk.crash(rng)
    disk.schedule_crash(None)
    events.clear()
    engine = open_engine(disk, max_chunks, policy, events)
    check_after_crash(engine, model, in_flight, live_before, policy)

    # the engine keeps working: continue from what survived
    model.snaps = {s.id: model.snaps[s.id] for s in engine.snapshots() if s.valid}
    model.dropped = {s.id: s.reason for s in engine.snapshots() if not s.valid}
    model.live = bytearray(engine.read(0, SIZE))
    model.counter += 100
    for op in more:
        apply(engine, model, op, events)
        check(engine, model)


def check_after_crash(
    engine: CowEngine, model: Model, in_flight: Op | None, live_before: bytes, policy: FullPolicy
) -> None:
    """What a crash during ``in_flight`` (None: between operations) may legally leave."""
    kind = in_flight[0] if in_flight is not None else ""
    found = {s.id: s for s in engine.snapshots()}
    # an announced drop was durable before it was announced: it stays invalid, same reason
    for snap_id, reason in model.dropped.items():
        info = found.pop(snap_id, None)
        assert info is not None and not info.valid and info.reason == reason, snap_id
    # acknowledged snapshots read back exactly, unless the in-flight operation may have
    # removed them: a delete its target, a write (DROP_OLDEST) the oldest ones
    order = list(model.snaps)
    invalid: list[str] = []
    for snap_id, content in model.snaps.items():
        info = found.pop(snap_id, None)
        if info is None:
            assert in_flight is not None and kind == "delete", f"{snap_id} vanished"
            assert snap_id == order[in_flight[1] % len(order)], f"{snap_id} vanished"
            continue
        if not info.valid:
            assert kind in ("write", "group"), info.reason
            assert policy is FullPolicy.DROP_OLDEST_SNAPSHOT, info.reason
            assert "maximum" in info.reason, info.reason
            invalid.append(snap_id)
            continue
        assert engine.read_snapshot(snap_id, 0, SIZE) == content, snap_id
    assert invalid == order[: len(invalid)], "only the oldest snapshots may be dropped"
    # only the snapshot being created may be extra, and it holds the data before it
    for snap_id, info in found.items():
        assert kind == "snap" and snap_id == f"s{model.counter}", snap_id
        assert info.valid, info
        assert engine.read_snapshot(snap_id, 0, SIZE) == live_before
        model.snaps[snap_id] = live_before
    # (the live volume itself may lose writes that were never flushed, like any disk)


def test_shared_chunks_and_merge_on_delete() -> None:
    disk = new_disk()
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    original = engine.read(0, SIZE)
    engine.create_snapshot("old", 1)
    engine.create_snapshot("new", 2)
    engine.write(0, b"x" * CS)  # preserved once, for "new"; "old" looks through it
    assert engine.used_bytes == CS
    assert engine.read_snapshot("old", 0, SIZE) == original
    engine.delete_snapshot("new")  # the chunk moves to "old", nothing is freed
    assert engine.used_bytes == CS
    assert engine.read_snapshot("old", 0, SIZE) == original
    engine.write(0, b"y" * CS)  # already preserved for "old" (now newest): no copy
    assert engine.used_bytes == CS
    engine.delete_snapshot("old")
    assert engine.used_bytes == 0
    with pytest.raises(NotFound):
        engine.delete_snapshot("old")


class CountingFile:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.reads: list[tuple[int, int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def pread(self, length: int, offset: int) -> bytes:
        self.reads.append((offset, length))
        return self.inner.pread(length, offset)  # type: ignore[attr-defined, no-any-return]


def test_whole_chunk_write_reads_the_old_chunk_once() -> None:
    disk = new_disk()
    image = CountingFile(disk.file("image"))
    engine = CowEngine(image, MemDiffStore(disk), chunk_size=CS, max_bytes=100 * CS)  # type: ignore[arg-type]
    engine.create_snapshot("s", 1)
    image.reads.clear()
    engine.write(CS, b"z" * (3 * CS))
    assert image.reads == [(CS, 3 * CS)]


def test_full_diff_area_drops_oldest_and_reports() -> None:
    disk = new_disk()
    events: list[SnapshotDropped] = []
    engine = open_engine(disk, 2, FullPolicy.DROP_OLDEST_SNAPSHOT, events)
    engine.create_snapshot("a", 1)
    engine.write(0, b"1" * (2 * CS))
    engine.create_snapshot("b", 2)
    engine.write(0, b"2" * CS)  # needs a slot: "a" (2 chunks) is dropped
    assert [e.snapshot_id for e in events] == ["a"]
    infos = {s.id: s for s in engine.snapshots()}
    assert not infos["a"].valid and "maximum" in infos["a"].reason
    assert infos["b"].valid
    # the tombstone survives a restart, and deleting it forgets it
    engine.close()
    engine = open_engine(disk, 2, FullPolicy.DROP_OLDEST_SNAPSHOT, events)
    assert not {s.id: s for s in engine.snapshots()}["a"].valid
    engine.delete_snapshot("a")
    assert [s.id for s in engine.snapshots()] == ["b"]


def test_full_diff_area_fail_writes_keeps_snapshots() -> None:
    disk = new_disk()
    engine = open_engine(disk, 1, FullPolicy.FAIL_WRITES, [])
    before = engine.read(0, SIZE)
    engine.create_snapshot("a", 1)
    with pytest.raises(InsufficientStorage):
        engine.write(0, b"1" * (2 * CS))
    assert engine.read(0, SIZE) == before  # nothing of the failed write landed
    engine.write(0, b"1" * CS)
    with pytest.raises(InsufficientStorage):
        engine.write(CS, b"1")
    assert engine.read_snapshot("a", 0, SIZE) == before


class SyncCountingStore(MemDiffStore):
    def __init__(self, disk: MemDisk) -> None:
        super().__init__(disk)
        self.syncs = 0

    def open(self, name: str) -> MemFile:
        store = self

        class Counting(MemFile):
            def sync(self) -> None:
                store.syncs += 1
                super().sync()

        inner = super().open(name)  # creates the file
        return Counting(inner.disk, inner.name)


def test_group_of_writes_copies_once_and_syncs_once() -> None:
    disk = new_disk()
    image = CountingFile(disk.file("image"))
    store = SyncCountingStore(disk)
    engine = CowEngine(image, store, chunk_size=CS, max_bytes=100 * CS)  # type: ignore[arg-type]
    engine.create_snapshot("s", 1)
    before = engine.read(0, SIZE)
    image.reads.clear()
    store.syncs = 0
    errors = engine.write_many([(0, b"a" * CS), (CS, b"b" * CS), (3 * CS, b"c" * 10), (SIZE, b"x")])
    assert errors[:3] == [None, None, None] and isinstance(errors[3], InvalidArgs)
    assert image.reads == [(0, 2 * CS), (3 * CS, CS)]  # one read per run of chunks
    assert store.syncs == 1  # the slot records prove themselves: no synced journal record
    assert engine.read_snapshot("s", 0, SIZE) == before
    assert engine.read(0, 2 * CS) == b"a" * CS + b"b" * CS


def test_journal_tail_torn_in_its_zero_filled_step_is_cut_not_damage() -> None:
    good = journal.encode_json(RecordType.CREATE, {"seq": 1, "id": "a", "created_us": 0})
    torn = journal.encode_json(RecordType.CREATE, {"seq": 2, "id": "b", "created_us": 0})
    for cut in range(1, len(torn)):
        result = journal.scan(good + torn[:cut] + bytes(1000))
        assert [r.type for r in result.records] == [RecordType.CREATE]
        assert result.valid_end == len(good) and result.damage == ""
    # a bad record with a good one after it is damage, not a torn append
    bad = bytearray(torn)
    bad[-1] ^= 0xFF
    result = journal.scan(good + bytes(bad) + good + bytes(100))
    assert result.damage


# ------------------------------------------------------------------ damage (format 2)

def flip_bit(disk: MemDisk, name: str, position: int) -> None:
    """Flip one bit of a file's durable (and current) bytes: the disk rotted."""
    state = disk.files["diff/" + name]
    byte, bit = divmod(position, 8)
    state.durable[byte] ^= 1 << bit
    state.current[byte] ^= 1 << bit


def journal_records(disk: MemDisk) -> list[tuple[int, int]]:
    """(start, end) of each record in the durable journal."""
    raw = bytes(disk.files["diff/" + JOURNAL_FILE].durable)
    out, pos = [], 0
    for record in journal.scan(raw).records:
        end = pos + journal.HEADER.size + len(record.payload)
        out.append((pos, end))
        pos = end
    return out


@PROFILE
@given(
    ops=ops_strategy,
    flips=st.lists(st.tuples(st.booleans(), st.integers(0, 2**32)), min_size=1, max_size=3),
    crash_after=st.one_of(st.none(), st.integers(0, 120)),
    seed=st.integers(0, 2**32),
    max_chunks=st.sampled_from([5, 1000]),
    policy=st.sampled_from(list(FullPolicy)),
)
def test_bit_flips_mid_log_never_read_back_wrong(
    ops: list[Op],
    flips: list[tuple[bool, int]],
    crash_after: int | None,
    seed: int,
    max_chunks: int,
    policy: FullPolicy,
) -> None:
    """Rot anywhere in the slot records, or inside a journal record that is not the last
    one (a rotten last record looks like a torn append), after a clean close or a crash
    and recovery: every snapshot still reads back exactly, or refuses to be read and is
    then invalid with a reason."""
    disk = new_disk()
    events: list[SnapshotDropped] = []
    engine = open_engine(disk, max_chunks, policy, events)
    model = Model(bytearray(engine.read(0, SIZE)))
    disk.schedule_crash(crash_after)
    try:
        for op in ops:
            apply(engine, model, op, events)
        engine.close()
    except SimulatedCrash:
        # what the crash left is the crash test's business; here only what recovery
        # kept is the reference, and recovery writes the journal anew (all indexed)
        disk.crash(random.Random(seed))
        disk.schedule_crash(None)
        engine = open_engine(disk, max_chunks, policy, events)
        model.snaps = {s.id: engine.read_snapshot(s.id, 0, SIZE)
                       for s in engine.snapshots() if s.valid}
        engine.close()
    disk.schedule_crash(None)
    events.clear()
    for in_journal, where in flips:
        records = journal_records(disk)[:-1]
        data_size = len(disk.files["diff/" + DATA_FILE].durable)
        if in_journal and records:
            start, end = records[where % len(records)]
            flip_bit(disk, JOURNAL_FILE, start * 8 + where % ((end - start) * 8))
        elif data_size:
            flip_bit(disk, DATA_FILE, where % (data_size * 8))
    engine = open_engine(disk, max_chunks, policy, events)
    journal_rotted = any(in_journal for in_journal, _ in flips)
    for snap_id, content in model.snaps.items():
        info = {s.id: s for s in engine.snapshots()}.get(snap_id)
        if info is None:
            # its CREATE record rotted: the id is gone with it; it reads as NotFound
            # (the service reports a snapshot its provider no longer has), never wrong
            assert journal_rotted, snap_id
            with pytest.raises(NotFound):
                engine.read_snapshot(snap_id, 0, 1)
            continue
        if info.valid:
            try:
                assert engine.read_snapshot(snap_id, 0, SIZE) == content, snap_id
                continue
            except ProviderFailure:
                info = {s.id: s for s in engine.snapshots()}[snap_id]
        assert not info.valid and info.reason, info
    # a snapshot deleted before the rot may come back, but only as invalid with a reason
    for info in engine.snapshots():
        assert info.id in model.snaps or info.id in model.dropped or not info.valid, info
        assert info.valid or info.reason, info
    # what is left keeps working exactly
    model.snaps = {s.id: model.snaps[s.id] for s in engine.snapshots() if s.valid}
    model.dropped = {s.id: s.reason for s in engine.snapshots() if not s.valid}
    model.live = bytearray(engine.read(0, SIZE))
    model.counter += 100
    events.clear()
    for op in ops[:10]:
        apply(engine, model, op, events)
        check(engine, model)


def test_rotten_preserved_chunk_invalidates_the_snapshots_that_read_it() -> None:
    disk = new_disk()
    events: list[SnapshotDropped] = []
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, events)
    original = engine.read(0, SIZE)
    engine.create_snapshot("old", 1)
    engine.write(2 * CS, b"o" * CS)  # preserved for "old" only
    engine.create_snapshot("mid", 2)
    engine.create_snapshot("new", 3)
    engine.write(0, b"n" * CS)  # preserved for "new": "mid" and "old" read through it
    engine.close()
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, events)
    stride = slots.stride(CS)
    flip_bit(disk, DATA_FILE, (1 * stride + slots.HEADER.size + 100) * 8)  # "new"'s chunk 0
    assert engine.read_snapshot("old", 2 * CS, CS) == original[2 * CS : 3 * CS]  # slot 0: fine
    with pytest.raises(ProviderFailure, match="corrupted"):
        engine.read_snapshot("mid", 0, 10)
    infos = {s.id: s for s in engine.snapshots()}
    assert {i for i, s in infos.items() if not s.valid} == {"old", "mid", "new"}
    assert all("chunk 0" in s.reason for s in infos.values())
    assert sorted(e.snapshot_id for e in events) == ["mid", "new", "old"]
    # the verdict is durable
    engine.close()
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    assert not any(s.valid for s in engine.snapshots())
    assert engine.read(0, CS) == b"n" * CS  # the live volume is untouched


def test_record_naming_another_snapshot_is_damage_even_with_a_good_checksum() -> None:
    disk = new_disk()
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    engine.create_snapshot("a", 1)
    engine.write(0, b"x" * CS)  # slot 0: owner a, chunk 0
    engine.create_snapshot("b", 2)
    engine.write(CS, b"y" * CS)  # slot 1: owner b, chunk 1
    engine.close()
    data = disk.files["diff/" + DATA_FILE]
    stride = slots.stride(CS)
    # a well-formed record claiming slot 1 belongs to "b"... for chunk 0: wrong chunk
    body = bytes(data.durable[stride + slots.HEADER.size : 2 * stride])
    area = slots.decode_header(bytes(data.durable[:stride]))
    assert area is not None
    forged = slots.encode_header(area.area, 2, 0, body) + body
    data.durable[stride : 2 * stride] = forged
    data.current[stride : 2 * stride] = forged
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    with pytest.raises(ProviderFailure):
        engine.read_snapshot("b", CS, CS)


def test_torn_unindexed_records_are_ignored_and_synced_ones_adopted() -> None:
    disk = new_disk()
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    before = engine.read(0, SIZE)
    engine.create_snapshot("s", 1)
    engine.write(0, b"a" * CS)  # synced record, not in the journal yet, image overwritten
    disk.schedule_crash(1)  # the next preserve writes its record, then the sync crashes
    with pytest.raises(SimulatedCrash):
        engine.write(3 * CS, b"b" * CS)
    disk.crash(random.Random(3))
    disk.schedule_crash(None)
    engine = open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    assert engine.read_snapshot("s", 0, SIZE) == before
    # recovery wrote the adopted slot into the journal
    raw = bytes(disk.files["diff/" + JOURNAL_FILE].durable)
    preserves = [r.preserve() for r in journal.scan(raw).records if r.type is RecordType.PRESERVE]
    assert (0, 0) in [pair for _seq, pairs in preserves for pair in pairs]


def test_old_format_diff_area_is_refused_with_what_to_do() -> None:
    disk = new_disk()
    disk.file("diff/" + OLD_DATA_FILE)
    with pytest.raises(ProviderFailure, match=r"older snapd-vss.*remove"):
        open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])
    disk = new_disk()
    old_header = journal.encode_json(
        RecordType.HEADER, {"format": 1, "chunk_size": CS, "next_seq": 1}
    )
    disk.file("diff/" + JOURNAL_FILE).pwrite(old_header, 0)
    with pytest.raises(ProviderFailure, match="format 1"):
        open_engine(disk, 1000, FullPolicy.DROP_OLDEST_SNAPSHOT, [])


def test_sequential_writes_copy_ahead_into_free_room_only() -> None:
    disk = new_disk()
    store = SyncCountingStore(disk)
    events: list[SnapshotDropped] = []
    engine = CowEngine(disk.file("image"), store, chunk_size=CS, max_bytes=4 * CS,
                       on_event=events.append)
    before = engine.read(0, SIZE)
    engine.create_snapshot("s", 1)
    store.syncs = 0
    engine.write(0, b"a" * CS)  # not a stream yet: chunk 0 only
    assert engine.used_bytes == CS
    engine.write(CS, b"b" * CS)  # continues it: chunk 1, then ahead into the free room
    assert engine.used_bytes == 4 * CS and store.syncs == 2
    engine.write(2 * CS, b"c" * (2 * CS))  # already copied ahead: no copy, no sync
    assert store.syncs == 2
    assert engine.read_snapshot("s", 0, SIZE) == before
    assert not events  # copy-ahead never drops a snapshot for room
