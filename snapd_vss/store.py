"""Where the service remembers its snapshots: an embedded SQLite database.

A record is written *before* the provider commits (``committed=False``), so that a
restarted daemon finds half-made snapshots and cleans them up; non-persistent
snapshots are recorded too and released on the next start.

Statements are small and fast, so the store is used directly from the asyncio
thread; a lock makes it safe from other threads as well.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from types import TracebackType

from snapd_vss.errors import Failed, NotFound
from snapd_vss.model import SnapshotRecord
from snapd_vss.vocabulary import SnapshotState

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    snapshot_set_id TEXT NOT NULL,
    volume TEXT NOT NULL,
    provider TEXT NOT NULL,
    device_path TEXT NOT NULL,
    exposed_path TEXT NOT NULL,
    creation_time_us INTEGER NOT NULL,
    persistent INTEGER NOT NULL,
    state TEXT NOT NULL,
    state_reason TEXT NOT NULL,
    committed INTEGER NOT NULL,
    provider_data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_by_set ON snapshots (snapshot_set_id);
"""

_COLUMNS = (
    "id, snapshot_set_id, volume, provider, device_path, exposed_path, creation_time_us, "
    "persistent, state, state_reason, committed, provider_data"
)

Row = tuple[str, str, str, str, str, str, int, int, str, str, int, str]


def _to_row(r: SnapshotRecord) -> Row:
    return (
        r.id, r.snapshot_set_id, r.volume, r.provider, r.device_path, r.exposed_path,
        r.creation_time_us, int(r.persistent), str(r.state.value), r.state_reason,
        int(r.committed), json.dumps(r.provider_data, sort_keys=True),
    )  # fmt: skip


def _from_row(row: Row) -> SnapshotRecord:
    data = json.loads(row[11])
    return SnapshotRecord(
        id=row[0],
        snapshot_set_id=row[1],
        volume=row[2],
        provider=row[3],
        device_path=row[4],
        exposed_path=row[5],
        creation_time_us=row[6],
        persistent=bool(row[7]),
        state=SnapshotState(row[8]),
        state_reason=row[9],
        committed=bool(row[10]),
        provider_data={str(k): str(v) for k, v in data.items()},
    )


class SnapshotStore:
    """``SnapshotStore(path)``: records of snapshots, durable across restarts and crashes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if path != ":memory:":
                os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            raise Failed(
                f"Cannot open the snapshot database {path}: {e}; check that the state "
                "directory exists, is writable by the service, and the disk is not full."
            ) from e

    def _migrate(self) -> None:
        self._db.executescript(_SCHEMA)  # idempotent; each statement is atomic
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"it has schema version {version}, newer than this service knows "
                    f"({SCHEMA_VERSION}); upgrade snapd-vss"
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _run(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, params).fetchall())
            except sqlite3.Error as e:
                raise Failed(f"The snapshot database {self.path} failed: {e}") from e

    def schema_version(self) -> int:
        rows = self._run("SELECT max(version) FROM schema_version")
        return int(rows[0][0])

    def put(self, record: SnapshotRecord) -> None:
        """Insert or replace the record with ``record.id``."""
        self._run(f"INSERT OR REPLACE INTO snapshots ({_COLUMNS}) VALUES ({', '.join('?' * 12)})",
                  _to_row(record))  # fmt: skip

    def get(self, snapshot_id: str) -> SnapshotRecord:
        rows = self._run(f"SELECT {_COLUMNS} FROM snapshots WHERE id = ?", (snapshot_id,))
        if not rows:
            raise NotFound(
                f"No snapshot with id {snapshot_id!r}; list them with 'vssctl list snapshots'."
            )
        return _from_row(rows[0])

    def find(self, snapshot_id: str) -> SnapshotRecord | None:
        try:
            return self.get(snapshot_id)
        except NotFound:
            return None

    def all(self) -> list[SnapshotRecord]:
        rows = self._run(f"SELECT {_COLUMNS} FROM snapshots ORDER BY creation_time_us, id")
        return [_from_row(r) for r in rows]

    def by_set(self, snapshot_set_id: str) -> list[SnapshotRecord]:
        rows = self._run(
            f"SELECT {_COLUMNS} FROM snapshots WHERE snapshot_set_id = ? "
            "ORDER BY creation_time_us, id",
            (snapshot_set_id,),
        )
        return [_from_row(r) for r in rows]

    def delete(self, snapshot_id: str) -> None:
        """Forget a record; forgetting an unknown one is fine."""
        self._run("DELETE FROM snapshots WHERE id = ?", (snapshot_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
