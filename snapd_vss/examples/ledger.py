"""A small bank ledger in SQLite (WAL mode) under continuous write load, and a checker.

The load moves random amounts between ``accounts`` accounts, one transaction each, and
appends every move to ``ledger`` (ids increase by one per transaction). Its invariant:
the balances always add up to ``expected_total`` (stored in ``meta``). A copy that passes
:func:`verify_copy` is intact (``PRAGMA integrity_check``) and transaction-consistent
(the invariant holds and the ledger has no gaps).
"""

from __future__ import annotations

import contextlib
import logging
import random
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("snapd_vss.examples.ledger")

INITIAL_BALANCE = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    from_account INTEGER NOT NULL,
    to_account INTEGER NOT NULL,
    amount INTEGER NOT NULL
);
"""


def connect(path: Path | str, *, timeout: float = 30.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with WAL on."""
    connection = sqlite3.connect(
        str(path), timeout=timeout, isolation_level=None, check_same_thread=False
    )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    return connection


def create_database(path: Path | str, accounts: int = 10) -> None:
    """Create the ledger database at ``path`` unless it already exists."""
    with contextlib.closing(connect(path)) as db:
        db.executescript(SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT value FROM meta WHERE key = 'expected_total'").fetchone() is None:
                db.executemany(
                    "INSERT INTO accounts (id, balance) VALUES (?, ?)",
                    [(i, INITIAL_BALANCE) for i in range(1, accounts + 1)],
                )
                db.execute(
                    "INSERT INTO meta (key, value) VALUES ('expected_total', ?)",
                    (str(accounts * INITIAL_BALANCE),),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def last_ledger_id(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT COALESCE(MAX(id), 0) FROM ledger").fetchone()
    return int(row[0])


def checkpoint(db: sqlite3.Connection) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)``: (busy, wal frames, frames checkpointed)."""
    row = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(row[0]), int(row[1]), int(row[2])


class LedgerLoad:
    """A background thread doing transfers until stopped; ``pause()``/``resume()`` gate it.

    While paused, no transaction is in flight: the load thread holds the gate for the
    whole of each transaction, and ``pause()`` takes the gate.
    """

    def __init__(self, path: Path | str, *, interval: float = 0.001, seed: int | None = None):
        self.path = Path(path)
        self.interval = interval
        self.transactions = 0
        self.error: BaseException | None = None
        self._random = random.Random(seed)
        self._gate = threading.Lock()
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ledger-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.resume()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def pause(self) -> None:
        """Block until no transaction is in flight, then keep new ones from starting."""
        if self._paused:
            return
        self._gate.acquire()
        self._paused = True

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._gate.release()

    def _run(self) -> None:
        try:
            with contextlib.closing(connect(self.path)) as db:
                accounts = [int(r[0]) for r in db.execute("SELECT id FROM accounts")]
                while not self._stop.is_set():
                    with self._gate:
                        if self._stop.is_set():
                            break
                        self._transfer(db, accounts)
                    if self.interval:
                        self._stop.wait(self.interval)
        except BaseException as exc:  # reported through .error; the thread must not die silently
            self.error = exc
            log.exception("ledger load stopped")

    def _transfer(self, db: sqlite3.Connection, accounts: list[int]) -> None:
        source, target = self._random.sample(accounts, 2)
        amount = self._random.randint(1, 100)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, source))
            db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, target))
            db.execute(
                "INSERT INTO ledger (from_account, to_account, amount) VALUES (?, ?, ?)",
                (source, target, amount),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.transactions += 1


@dataclass(frozen=True)
class VerifyResult:
    """What :func:`verify_copy` found in a copy of the ledger database."""

    integrity_ok: bool
    total: int
    expected_total: int
    last_ledger_id: int
    ledger_rows: int = 0
    integrity_message: str = "ok"

    @property
    def consistent(self) -> bool:
        """Intact, the invariant holds, and the ledger has no holes."""
        return (
            self.integrity_ok
            and self.total == self.expected_total
            and self.ledger_rows == self.last_ledger_id
        )


def verify_copy(db_path: Path | str) -> VerifyResult:
    """Check a copy of the ledger database (with its ``-wal`` if one was copied).

    Opens the copy read-write (SQLite needs to replay a WAL), so pass a copy, never the
    live database or a read-only snapshot path.
    """
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; copy the database file there first")
    with contextlib.closing(sqlite3.connect(str(path), isolation_level=None)) as db:
        messages = [str(r[0]) for r in db.execute("PRAGMA integrity_check")]
        integrity_ok = messages == ["ok"]
        total = int(db.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts").fetchone()[0])
        row = db.execute("SELECT value FROM meta WHERE key = 'expected_total'").fetchone()
        expected = int(row[0]) if row is not None else -1
        last_id = last_ledger_id(db)
        rows = int(db.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    return VerifyResult(
        integrity_ok=integrity_ok,
        total=total,
        expected_total=expected,
        last_ledger_id=last_id,
        ledger_rows=rows,
        integrity_message="; ".join(messages[:5]),
    )
