"""The restore methods (VSS semantics): how one component's files go back.

| method | what happens |
|---|---|
| RESTORE_IF_NOT_THERE | restored only if none of the component's files (or links) exists |
| | at the target; otherwise the whole component is skipped (status NONE) |
| RESTORE_IF_CAN_REPLACE | if a file of the component is open by any process, all go to the |
| | alternate location (if mapped), else none is restored |
| STOP_RESTORE_START | the writer's systemd unit is stopped, files restored, the unit started |
| RESTORE_STOP_START | files restored, then the unit stopped and started |
| RESTORE_TO_ALTERNATE_LOCATION | all files through the writer's alternate location mappings |
| RESTORE_AT_REBOOT | files staged; the boot-time unit puts them in place |
| RESTORE_AT_REBOOT_IF_CANNOT_REPLACE | in place now, or staged when a file is in use |
| CUSTOM | nothing is placed: the writer restores in OnPostRestore |

A writer's ``restoreTarget`` (set in OnPreRestore) of ALTERNATE sends the files through
the mappings; ``--to-alternate PATH`` (the requestor) sends them below PATH. Before a
byte is written, every destination directory is checked against the writer's
credentials and for symlinks; an error then fails the component with nothing touched.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from snapd_vss.backupset.manifest import EntryType
from snapd_vss.documents.writer_metadata import AlternateLocationMapping
from snapd_vss.errors import InvalidArgs, VssError
from snapd_vss.restore import pending
from snapd_vss.restore.openfiles import files_in_use
from snapd_vss.restore.placement import (
    Placed,
    Placement,
    at_alternate,
    at_original,
    to_alternate,
)
from snapd_vss.restore.placer import Content, Contents, check_placement, place, prune
from snapd_vss.restore.report import ComponentOutcome
from snapd_vss.restore.safety import Credentials
from snapd_vss.restore.source import RestoreSource, SourceComponent
from snapd_vss.vocabulary import RestoreMethod, RestoreTarget

M = RestoreMethod


class UnitControl(Protocol):
    """Stops and starts a systemd unit, replying when the job is done."""

    async def stop(self, unit: str) -> None: ...

    async def start(self, unit: str) -> None: ...


@dataclass
class ComponentJob:
    """One component to restore, and everything that decides how."""

    component: SourceComponent
    method: RestoreMethod
    credentials: Credentials
    service: str = ""  # systemd unit for STOP_RESTORE_START / RESTORE_STOP_START
    target: RestoreTarget = RestoreTarget.ORIGINAL
    mappings: list[AlternateLocationMapping] = field(default_factory=list)
    to_alternate: str = ""
    note: str = ""  # said in the outcome (e.g. how the writer's uid was found)

    def outcome(self) -> ComponentOutcome:
        c = self.component
        outcome = ComponentOutcome(
            c.instance_id, c.logical_path, c.name, c.label, self.method.value
        )
        if self.note:
            outcome.notes.append(self.note)
        return outcome


@dataclass
class RestoreEngine:
    source: RestoreSource
    units: UnitControl | None = None
    pending_root: str | None = None
    dry_run: bool = False

    async def restore(self, job: ComponentJob) -> ComponentOutcome:
        outcome = job.outcome()
        try:
            await self._restore(job, outcome)
        except VssError as exc:
            outcome.fail(exc.code, exc.message)
        except OSError as exc:
            outcome.fail("Failed", f"{exc.filename or ''}: {exc.strerror or exc}")
        return outcome

    async def _restore(self, job: ComponentJob, outcome: ComponentOutcome) -> None:
        if job.method is M.CUSTOM and not job.to_alternate:
            outcome.placement = "none"
            outcome.message = "CUSTOM restore method: the writer restores its files itself"
            return
        placement = self._placement(job)
        outcome.mappings_used = list(placement.mappings_used)
        with_unit = job.method in (M.STOP_RESTORE_START, M.RESTORE_STOP_START)
        if with_unit and placement.kind == "original":
            await self._with_unit(job, placement, outcome)
            return
        if job.method is M.RESTORE_AT_REBOOT and placement.kind == "original":
            await self._stage(job, placement, outcome)
            return
        if placement.kind == "original" and job.method in (
            M.RESTORE_IF_CAN_REPLACE,
            M.RESTORE_AT_REBOOT_IF_CANNOT_REPLACE,
        ):
            users = files_in_use(p.destination for p in placement.items)
            if users:
                in_use = "; ".join(u.describe() for u in users[:5])
                if job.method is M.RESTORE_AT_REBOOT_IF_CANNOT_REPLACE:
                    outcome.message = f"in use, staged for the next boot: {in_use}"
                    await self._stage(job, placement, outcome)
                    return
                if not job.mappings:
                    raise _InUse(
                        f"{job.component.label}: files are in use ({in_use}); nothing was "
                        "restored. Stop the program using them, or restore with "
                        "--to-alternate PATH"
                    )
                placement = at_alternate(job.component, job.mappings)
                outcome.mappings_used = list(placement.mappings_used)
                outcome.message = f"in use, restored to the alternate location: {in_use}"
        await self._place(job, placement, outcome)

    def _placement(self, job: ComponentJob) -> Placement:
        if job.to_alternate:
            return to_alternate(job.component, job.to_alternate)
        if job.method is M.RESTORE_TO_ALTERNATE_LOCATION or job.target is RestoreTarget.ALTERNATE:
            return at_alternate(job.component, job.mappings)
        if job.target not in (RestoreTarget.ORIGINAL, RestoreTarget.ORIGINAL_LOCATION):
            raise InvalidArgs(
                f"{job.component.label}: restore target {job.target.value} is not supported "
                "(use ORIGINAL or ALTERNATE)"
            )
        return at_original(job.component)

    async def _place(
        self, job: ComponentJob, placement: Placement, outcome: ComponentOutcome
    ) -> None:
        check_placement(placement, job.credentials, _who(job))
        if job.method is M.RESTORE_IF_NOT_THERE and _skip_if_there(placement, outcome):
            return
        outcome.placement = placement.kind
        if self.dry_run:
            outcome.restored = [p.destination for p in placement.items if not _is_dir(p)]
            return
        await asyncio.to_thread(
            place, placement, self._contents(job.component), job.credentials, outcome
        )
        if outcome.ok and job.method is not M.RESTORE_IF_NOT_THERE:
            await asyncio.to_thread(prune, job.component, placement, outcome)

    async def _stage(
        self, job: ComponentJob, placement: Placement, outcome: ComponentOutcome
    ) -> None:
        if self.dry_run:
            outcome.placement = "pending"
            outcome.restored = [p.destination for p in placement.items]
            return
        await asyncio.to_thread(
            pending.stage,
            placement,
            self._contents(job.component),
            outcome,
            job.credentials,
            self.source.path,
            self.source.set_id,
            self.pending_root,
        )
        outcome.restored = [p.destination for p in placement.items]

    async def _with_unit(
        self, job: ComponentJob, placement: Placement, outcome: ComponentOutcome
    ) -> None:
        if not job.service:
            raise InvalidArgs(
                f"{job.component.label}: restore method {job.method.value} needs the writer "
                "to name its systemd unit (RestoreMethod service=)"
            )
        if self.units is None:
            raise InvalidArgs(f"{job.component.label}: no systemd connection to stop {job.service}")
        check_placement(placement, job.credentials, _who(job))
        if self.dry_run:
            await self._place(job, placement, outcome)
            return
        if job.method is M.STOP_RESTORE_START:
            await self.units.stop(job.service)
            try:
                await self._place(job, placement, outcome)
            finally:
                await self.units.start(job.service)
            return
        await self._place(job, placement, outcome)
        await self.units.stop(job.service)
        await self.units.start(job.service)

    def _contents(self, component: SourceComponent) -> Contents:
        source = self.source

        def contents(items: list[Placed]) -> Iterator[Content]:
            by_path = {p.entry.path: p for p in items}
            for entry, chunks, extent in source.contents(component, [p.entry for p in items]):
                yield Content(by_path[entry.path], chunks, False, extent)  # the write checks

        return contents


class _InUse(VssError):
    """Files of the component are in use."""

    code = "Failed"


def _who(job: ComponentJob) -> str:
    return f"writer {job.component.writer_name!r} ({job.component.label})"


def _is_dir(item: Placed) -> bool:
    return item.entry.type is EntryType.DIR


def _skip_if_there(placement: Placement, outcome: ComponentOutcome) -> bool:
    """RESTORE_IF_NOT_THERE (VSS): skip the whole component if any of its files exists.

    Directories do not count (the component's own directory usually exists); files and
    symbolic links do, whatever they hold now. Returns True when skipped.
    """
    items = [p for p in placement.items if not _is_dir(p)]
    there = [p.destination for p in items if os.path.lexists(p.destination)]
    if not there:
        return False
    outcome.placement = "none"
    outcome.skipped = [
        f"{p.destination}: " + ("exists" if p.destination in there else "another file exists")
        for p in items
    ]
    named = ", ".join(there[:5]) + (f" and {len(there) - 5} more" if len(there) > 5 else "")
    outcome.message = (
        f"RESTORE_IF_NOT_THERE: {len(there)} of the component's {len(items)} files already "
        f"exist ({named}); the component was skipped and nothing was restored. Remove them "
        "to restore it, or restore with --to-alternate PATH"
    )
    return True
