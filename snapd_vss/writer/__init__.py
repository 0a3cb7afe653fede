"""The writer SDK: make an application a snapd-vss writer with a small class.

::

    from snapd_vss.writer import Writer, serve

    class MyDb(Writer):
        writer_id = "3f0c8a0e-5b1e-4a57-9d8e-0a4f5e6b7c8d"
        name = "My database"

        def __init__(self) -> None:
            super().__init__(instance_name="main")
            self.add_database("", "main", files=["/srv/mydb/main.db"], logs=["/srv/mydb/main.wal"])

        async def on_freeze(self, snapshot_set_id: str) -> None:
            ...  # stop writing

        async def on_thaw(self, snapshot_set_id: str) -> None:
            ...  # resume

    serve(MyDb())

``serve`` (blocking) and ``run_writer`` (async) connect to the system bus (or
``DBUS_SYSTEM_BUS_ADDRESS``), register with snapd-vssd, re-register whenever the
service restarts, and unregister on exit. Importing this package does not import the
D-Bus binding; only running a writer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from snapd_vss.documents.writer_metadata import (
    AlternateLocationMapping,
    Component,
    FileSpec,
    RestoreMethodSpec,
    WriterMetadata,
)
from snapd_vss.errors import (
    WriterError,
    WriterInconsistentSnapshot,
    WriterNonRetryable,
    WriterOutOfResources,
    WriterRetryable,
)
from snapd_vss.vocabulary import (
    ApplicationLevel,
    BackupType,
    ComponentType,
    RestoreMethod,
    RestoreTarget,
    Source,
    Usage,
    WriterRestore,
)
from snapd_vss.writer.base import Writer
from snapd_vss.writer.dispatch import WriterDispatcher
from snapd_vss.writer.view import BackupView

__all__ = [
    "AlternateLocationMapping",
    "ApplicationLevel",
    "BackupType",
    "BackupView",
    "Component",
    "ComponentType",
    "FileSpec",
    "RestoreMethod",
    "RestoreMethodSpec",
    "RestoreTarget",
    "Source",
    "Usage",
    "Writer",
    "WriterDispatcher",
    "WriterError",
    "WriterInconsistentSnapshot",
    "WriterMetadata",
    "WriterNonRetryable",
    "WriterOutOfResources",
    "WriterRestore",
    "WriterRetryable",
    "run_writer",
    "serve",
]


async def run_writer(writer: Writer, bus_address: str | None = None) -> None:
    """Serve ``writer`` until cancelled: export it, register it with snapd-vssd (and again
    after every restart of the service), unregister and resume it on the way out.

    ``bus_address`` defaults to ``DBUS_SYSTEM_BUS_ADDRESS``, else the system bus.
    """
    from snapd_vss.ipc.writer_service import WriterConnection

    connection = WriterConnection(writer, bus_address)
    await connection.start()
    try:
        await connection.wait_closed()
    finally:
        await asyncio.shield(connection.stop())


def serve(writer: Writer, bus_address: str | None = None) -> None:
    """Blocking ``run_writer`` for a writer's main program; stops on SIGINT/SIGTERM."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_writer(writer, bus_address)

    asyncio.run(main())
