"""An example writer: an SQLite database (WAL mode) under continuous write load.

- on_prepare_backup: record the last committed ledger id (this database's "LSN") in the
  component's backup metadata, as ``last_ledger_id=N``;
- on_prepare_for_freeze: ``PRAGMA wal_checkpoint(TRUNCATE)`` so little is left to flush;
- on_freeze: pause the load (no transaction in flight) and checkpoint again, so the
  ``.db`` file alone holds every committed transaction;
- on_thaw / on_abort: resume the load.

Run it standalone::

    python -m snapd_vss.examples.sqlite_writer --db /srv/ledger/ledger.db [--bus ADDRESS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

from snapd_vss.examples.ledger import (
    LedgerLoad,
    VerifyResult,
    checkpoint,
    connect,
    create_database,
    last_ledger_id,
    verify_copy,
)
from snapd_vss.vocabulary import ApplicationLevel, RestoreMethod, Source, Usage
from snapd_vss.writer import BackupView, FileSpec, Writer, WriterRetryable, serve

__all__ = ["LOGICAL_PATH", "SqliteWriter", "VerifyResult", "main", "verify_copy"]

log = logging.getLogger("snapd_vss.examples.sqlite_writer")

WRITER_ID = "5f3a9c1e-2b7d-4e60-8a41-9d0c6b2e7f13"
LOGICAL_PATH = "sqlite"


class SqliteWriter(Writer):
    """A writer owning the ledger database at ``db_path`` and its write load."""

    writer_id = WRITER_ID
    name = "Example SQLite ledger"
    usage = Usage.USER_DATA
    source = Source.TRANSACTED_DB
    application_level = ApplicationLevel.BACK_END

    def __init__(
        self,
        db_path: Path | str,
        *,
        accounts: int = 10,
        interval: float = 0.001,
        instance_name: str | None = None,
        freeze_timeout_ms: int | None = None,
    ) -> None:
        self.db_path = Path(db_path).resolve()
        super().__init__(
            instance_name=instance_name if instance_name is not None else self.db_path.stem,
            freeze_timeout_ms=freeze_timeout_ms,
        )
        self.component_name = self.db_path.stem
        directory = str(self.db_path.parent)
        self.add_database(
            LOGICAL_PATH,
            self.component_name,
            files=[FileSpec(path=directory, filespec=self.db_path.name)],
            logs=[
                FileSpec(path=directory, filespec=f"{self.db_path.name}-wal"),
                FileSpec(path=directory, filespec=f"{self.db_path.name}-shm"),
            ],
            caption=f"SQLite ledger {self.db_path}",
            selectable_for_restore=True,
            notify_on_backup_complete=True,
        )
        self.set_restore_method(RestoreMethod.RESTORE_IF_CAN_REPLACE)
        self.accounts = accounts
        self.load = LedgerLoad(self.db_path, interval=interval)
        self.frozen_at_ledger_id: int | None = None

    # ----- lifetime -----------------------------------------------------------------

    def start_load(self) -> None:
        """Create the database if needed and start the write load."""
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        create_database(self.db_path, self.accounts)
        self.load.start()

    def stop_load(self) -> None:
        self.load.stop()

    def last_ledger_id(self) -> int:
        with contextlib.closing(connect(self.db_path)) as db:
            return last_ledger_id(db)

    def _checkpoint(self) -> None:
        with contextlib.closing(connect(self.db_path)) as db:
            busy, wal_frames, done = checkpoint(db)
        if busy:
            raise WriterRetryable(
                f"SQLite checkpoint of {self.db_path} was blocked by another connection "
                f"({done}/{wal_frames} WAL frames written); retry the backup"
            )

    # ----- callbacks ----------------------------------------------------------------

    async def on_prepare_backup(self, backup: BackupView) -> None:
        if not backup.has_component(LOGICAL_PATH, self.component_name):
            return
        lsn = await asyncio.to_thread(self.last_ledger_id)
        backup.set_backup_metadata(LOGICAL_PATH, self.component_name, f"last_ledger_id={lsn}")
        log.info("prepare backup: last committed ledger id %d", lsn)

    async def on_prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        await asyncio.to_thread(self._checkpoint)

    async def on_freeze(self, snapshot_set_id: str) -> None:
        pausing = asyncio.ensure_future(asyncio.to_thread(self.load.pause))
        try:
            await asyncio.shield(pausing)
        except asyncio.CancelledError:
            await pausing  # pause() finishes within one transaction; then undo it
            self.load.resume()
            raise
        try:
            await asyncio.to_thread(self._checkpoint)
            self.frozen_at_ledger_id = await asyncio.to_thread(self.last_ledger_id)
        except BaseException:
            self.load.resume()
            raise
        log.info("frozen at ledger id %d", self.frozen_at_ledger_id)

    async def on_thaw(self, snapshot_set_id: str) -> None:
        self.load.resume()
        log.info("thawed")

    async def on_abort(self, snapshot_set_id: str) -> None:
        self.load.resume()
        log.info("aborted snapshot set %s; load resumed", snapshot_set_id)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", required=True, type=Path, help="the SQLite database file")
    parser.add_argument("--bus", default=None, help="bus address (default: the system bus)")
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument(
        "--interval", type=float, default=0.001, help="pause between transactions, seconds"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    writer = SqliteWriter(args.db, accounts=args.accounts, interval=args.interval)
    writer.start_load()
    try:
        serve(writer, args.bus)
    finally:
        writer.stop_load()


if __name__ == "__main__":
    main()
