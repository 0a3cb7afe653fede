"""The snapshot store: SQLite round trips that survive a reopen."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest

from snapd_vss.errors import Failed, NotFound
from snapd_vss.model import SnapshotRecord
from snapd_vss.store import SCHEMA_VERSION, SnapshotStore
from snapd_vss.vocabulary import SnapshotState


def record(n: int, set_id: str = "set-a", **kw: object) -> SnapshotRecord:
    rec = SnapshotRecord(
        id=f"snap-{n}",
        snapshot_set_id=set_id,
        volume=f"/srv/vol {n}",
        provider="btrfs",
        creation_time_us=1_000_000 + n,
    )
    for key, value in kw.items():
        setattr(rec, key, value)
    return rec


def test_round_trip_of_every_field(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "state", "snapshots.db")
    rec = record(
        1,
        device_path="/srv/.snapd-vss/snap-1",
        exposed_path="/run/snapd-vss/snapshots/snap-1",
        persistent=True,
        state=SnapshotState.EXPOSED,
        state_reason="exposed by root",
        committed=True,
        provider_data={"path": "/srv/.snapd-vss/snap-1", "ünïcode": "ok"},
    )
    with SnapshotStore(path) as store:
        store.put(rec)
        assert store.get("snap-1") == rec
        assert isinstance(store.get("snap-1").state, SnapshotState)


def test_survives_reopen_and_updates_in_place(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "snapshots.db")
    with SnapshotStore(path) as store:
        rec = record(1)
        store.put(rec)  # before commit: committed=False
        rec.committed = True
        rec.device_path = "/dev/x"
        store.put(rec)
        store.put(record(2))
    with SnapshotStore(path) as store:
        assert [r.id for r in store.all()] == ["snap-1", "snap-2"]
        again = store.get("snap-1")
        assert again.committed and again.device_path == "/dev/x"
        assert not store.get("snap-2").committed
        assert store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 1


def test_by_set_delete_and_missing(tmp_path: object) -> None:
    with SnapshotStore(os.path.join(str(tmp_path), "s.db")) as store:
        for n in range(3):
            store.put(record(n, set_id="a" if n < 2 else "b"))
        assert [r.id for r in store.by_set("a")] == ["snap-0", "snap-1"]
        assert [r.id for r in store.by_set("b")] == ["snap-2"]
        assert store.by_set("c") == []
        store.delete("snap-0")
        store.delete("snap-0")  # unknown: fine
        assert [r.id for r in store.all()] == ["snap-1", "snap-2"]
        with pytest.raises(NotFound, match="snap-0"):
            store.get("snap-0")
        assert store.find("snap-0") is None


def test_usable_from_threads(tmp_path: object) -> None:
    with SnapshotStore(os.path.join(str(tmp_path), "s.db")) as store:
        threads = [threading.Thread(target=lambda n=n: store.put(record(n))) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(store.all()) == 20


def test_newer_schema_is_refused(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s.db")
    SnapshotStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(Failed, match="upgrade snapd-vss"):
        SnapshotStore(path)


def test_unusable_path_is_a_clear_failure(tmp_path: object) -> None:
    blocker = os.path.join(str(tmp_path), "file")
    open(blocker, "w").close()
    with pytest.raises(Failed, match="Cannot open the snapshot database"):
        SnapshotStore(os.path.join(blocker, "s.db"))
