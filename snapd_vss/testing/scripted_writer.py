"""A writer whose behaviour is scripted from the command line, for failure tests.

    python -m snapd_vss.testing.scripted_writer --name W --data /mnt/vol/w \\
        [--hang-in EVENT] [--veto-in EVENT=ERROR] [--delay-in EVENT=SECONDS] \\
        [--events FILE] [--freeze-timeout-ms N] [--annotate TEXT]

EVENT is a callback name without ``on_`` (identify_again = OnIdentify after the first,
prepare_backup, prepare_for_freeze,
freeze, thaw, post_snapshot, abort, backup_complete, backup_shutdown); ERROR one of
retryable, non_retryable, inconsistent_snapshot, out_of_resources. Every callback the
writer receives is appended to FILE as one line ``EVENT SNAPSHOT_SET_ID`` (flushed), so a
test can see what the daemon sent, and when ("freeze" appears once the writer is frozen).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Mapping, Sequence

from snapd_vss.errors import (
    WriterError,
    WriterInconsistentSnapshot,
    WriterNonRetryable,
    WriterOutOfResources,
    WriterRetryable,
)
from snapd_vss.writer import BackupView, FileSpec, Writer, WriterMetadata, serve

ERRORS: dict[str, type[WriterError]] = {
    "retryable": WriterRetryable,
    "non_retryable": WriterNonRetryable,
    "inconsistent_snapshot": WriterInconsistentSnapshot,
    "out_of_resources": WriterOutOfResources,
}


class ScriptedWriter(Writer):
    writer_id = "6a0d3a4e-2b9c-4f57-8e7e-5c3b1f0a9d21"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(
            name=args.name,
            instance_name=args.name,
            instance_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "scripted/" + args.name)),
            freeze_timeout_ms=args.freeze_timeout_ms,
        )
        self.args = args
        self.identified = 0
        self.add_file_group("files", args.name, files=[FileSpec(args.data, "*", True)])

    def metadata(self) -> WriterMetadata:
        self._event("identify", "")
        self.identified += 1
        if "identify_again" in self.args.hang_in and self.identified > 1:
            time.sleep(3600)  # the whole writer stops answering, as a wedged process would
        return super().metadata()

    def _event(self, event: str, set_id: str) -> None:
        if self.args.events:
            with open(self.args.events, "a") as f:
                f.write(f"{event} {set_id}\n")
                f.flush()
                os.fsync(f.fileno())

    async def _script(self, event: str, set_id: str) -> None:
        self._event(event, set_id)
        if event in self.args.hang_in:
            await asyncio.sleep(3600)
        delay = self.args.delay_in.get(event)
        if delay:
            await asyncio.sleep(delay)
        veto = self.args.veto_in.get(event)
        if veto:
            raise ERRORS[veto](f"scripted veto in {event}")

    async def on_prepare_backup(self, backup: BackupView) -> None:
        await self._script("prepare_backup", "")
        if self.args.annotate:
            for component in backup.components:
                backup.set_backup_metadata(
                    component.logical_path, component.name, self.args.annotate
                )

    async def on_prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        await self._script("prepare_for_freeze", snapshot_set_id)

    async def on_freeze(self, snapshot_set_id: str) -> None:
        await self._script("freeze", snapshot_set_id)

    async def on_thaw(self, snapshot_set_id: str) -> None:
        await self._script("thaw", snapshot_set_id)

    async def on_post_snapshot(self, snapshot_set_id: str, snapshots: Mapping[str, str]) -> None:
        await self._script("post_snapshot", snapshot_set_id)

    async def on_abort(self, snapshot_set_id: str) -> None:
        await self._script("abort", snapshot_set_id)

    async def on_backup_complete(self, backup: BackupView) -> None:
        await self._script("backup_complete", "")

    async def on_backup_shutdown(self, snapshot_set_id: str) -> None:
        await self._script("backup_shutdown", snapshot_set_id)

    async def on_pre_restore(self, backup: BackupView) -> None:
        await self._script("pre_restore", "")
        if self.args.annotate:
            for component in backup.components:
                metadata = backup.backup_metadata(component.logical_path, component.name)
                backup.set_restore_metadata(
                    component.logical_path, component.name, f"restoring from {metadata}"
                )

    async def on_post_restore(self, backup: BackupView) -> None:
        statuses = ",".join(c.file_restore_status.value for c in backup.components)
        await self._script("post_restore", statuses)


def _pairs(values: Sequence[str], cast: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for value in values:
        key, _, raw = value.partition("=")
        out[key] = cast(raw)
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--hang-in", action="append", default=[])
    parser.add_argument("--veto-in", action="append", default=[])
    parser.add_argument("--delay-in", action="append", default=[])
    parser.add_argument("--events", default="")
    parser.add_argument("--freeze-timeout-ms", type=int, default=60_000)
    parser.add_argument("--annotate", default="")
    args = parser.parse_args(argv)
    args.veto_in = _pairs(args.veto_in, str)
    args.delay_in = _pairs(args.delay_in, float)
    serve(ScriptedWriter(args))


if __name__ == "__main__":
    main()
