"""The copy-on-write engine against a reference model of full copies (hypothesis).

The model keeps the live volume and one full copy per snapshot. Every operation is
applied to both; after each one every snapshot (and the live volume) must read back
exactly like the model. The crash property runs the same operations on a
:class:`MemDisk` that "loses power" after N operations, keeps a random subset of the
unsynced writes (some torn), reopens the engine and checks that every snapshot
acknowledged before the crash reads back exactly right (or, only where the diff-area
policy may drop snapshots, is marked invalid with a reason) — and that the engine keeps
working correctly afterwards.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snapd_vss.errors import InsufficientStorage, NotFound
from snapd_vss.providers.diff_area.config import FullPolicy
from snapd_vss.providers.diff_area.engine import CowEngine, SnapshotDropped
from snapd_vss.providers.diff_area.memstore import MemDiffStore, MemDisk, SimulatedCrash

CS = 4096
SIZE = 6 * CS + 1000  # few chunks, so writes collide often; a partial last chunk on purpose

PROFILE = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Model:
    live: bytearray
    snaps: dict[str, bytes] = field(default_factory=dict)  # oldest first
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
        st.tuples(st.just("snap"), st.just(0), st.just(0), st.just(0)),
        st.tuples(st.just("delete"), st.integers(0, 8), st.just(0), st.just(0)),
    ),
    min_size=5,
    max_size=40,
)


def payload(offset: int, length: int, seed: int) -> bytes:
    length = min(length, SIZE - offset)
    return random.Random(seed).randbytes(length)


def new_disk() -> MemDisk:
    disk = MemDisk()
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
            for event in events:
                assert event.snapshot_id == next(iter(model.snaps)), "dropped a non-oldest"
                del model.snaps[event.snapshot_id]
            events.clear()
        model.live[a : a + len(data)] = data
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
)
def test_crash_at_any_point_keeps_snapshots_exact(
    ops: list[Op],
    more: list[Op],
    crash_after: int,
    crash_in_recovery: int | None,
    seed: int,
    max_chunks: int,
    policy: FullPolicy,
) -> None:
    disk = new_disk()
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

    found = {s.id: s for s in engine.snapshots()}
    for snap_id, content in model.snaps.items():
        info = found.pop(snap_id, None)
        deleting = in_flight is not None and in_flight[0] == "delete"
        if info is None:
            assert deleting, f"acknowledged snapshot {snap_id} vanished"
            continue
        if not info.valid:
            assert info.reason
            may_drop = in_flight is not None and in_flight[0] == "write"
            assert may_drop and policy is FullPolicy.DROP_OLDEST_SNAPSHOT, info.reason
            continue
        assert engine.read_snapshot(snap_id, 0, SIZE) == content, snap_id
    for snap_id, info in found.items():  # only the snapshot being created may be extra
        assert in_flight is not None and in_flight[0] == "snap", snap_id
        assert info.valid
        assert engine.read_snapshot(snap_id, 0, SIZE) == live_before
        model.snaps[snap_id] = live_before

    # the engine keeps working: continue from what survived
    model.snaps = {s.id: model.snaps[s.id] for s in engine.snapshots() if s.valid}
    model.live = bytearray(engine.read(0, SIZE))
    model.counter += 100
    for op in more:
        apply(engine, model, op, events)
    check(engine, model)


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
