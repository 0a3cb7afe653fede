"""vssctl restore: put a backup set back, with the writers, per each component's restore method.

    vssctl restore FROM [--component WRITER:LOGICAL_PATH[/NAME] ...] [--to-alternate PATH]
                        [--dry-run] [--save-components FILE] [--systemd-bus ADDRESS] [--json]
    vssctl restore --pending [--json]        restores staged for the next boot
    vssctl restore --cancel ID               drop a staged restore
    vssctl restore --apply-pending           apply them (snapd-vss-restore-at-boot.service)

FROM is a backup set directory (``vssctl backup --to``); an incremental set restores the
state at its point, with its base sets found beside it. The set is verified completely
(checksums, paths, links, chain) before the session starts or any file is touched.
Then: CreateRestoreSession with the saved document → GatherWriterMetadata →
SetSelectedForRestore → PreRestore (writers may set a restore target) → files put back
per method → AddAlternativeLocationMapping for mappings used → SetFileRestoreStatus →
PostRestore → Close. ``--to-alternate PATH`` puts every component below PATH (``PATH/<its
original directory>``) instead. ``--dry-run`` checks everything and says what would be
written, with no session and no writes. Exit status 0 when every component is restored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass
from typing import Any

from snapd_vss.cli import output
from snapd_vss.cli.backup import doing
from snapd_vss.documents import (
    AlternateLocationMapping,
    BackupComponents,
    WriterMetadata,
    parse_backup_components,
    parse_writer_metadata,
)
from snapd_vss.errors import InvalidArgs, VssError
from snapd_vss.ipc.client import RestoreSessionProxy, VssClient
from snapd_vss.ipc.systemd_units import SystemdUnits
from snapd_vss.restore import pending
from snapd_vss.restore.engine import ComponentJob, RestoreEngine, UnitControl
from snapd_vss.restore.report import ComponentOutcome, RestoreReport
from snapd_vss.restore.safety import ROOT, Credentials, writer_credentials
from snapd_vss.restore.source import RestoreSource, SourceComponent, open_backup_set
from snapd_vss.vocabulary import RestoreMethod, RestoreTarget

NEEDS_UNIT = (RestoreMethod.STOP_RESTORE_START, RestoreMethod.RESTORE_STOP_START)


def add_parser(commands: Any, json_too: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "restore",
        parents=[json_too],
        help="restore a backup set with the writers",
        description=(__doc__ or "").split("\n\n")[0],
    )
    parser.add_argument("source", nargs="?", metavar="FROM", help="backup set directory")
    parser.add_argument(
        "--component",
        action="append",
        default=[],
        metavar="WRITER:LOGICAL_PATH[/NAME]",
        help="restore only this component (repeat; default: all in the set)",
    )
    parser.add_argument("--to-alternate", metavar="PATH", help="restore below PATH instead")
    parser.add_argument("--dry-run", action="store_true", help="check and show, write nothing")
    parser.add_argument("--save-components", metavar="FILE", help="write the final document")
    parser.add_argument(
        "--systemd-bus", metavar="ADDRESS", help="bus of systemd (default: the --bus one)"
    )
    parser.add_argument("--pending-dir", metavar="DIR", help=f"default {pending.DEFAULT_DIR}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--pending", action="store_true", help="list restores staged for boot")
    mode.add_argument("--cancel", metavar="ID", help="cancel a staged restore")
    mode.add_argument("--apply-pending", action="store_true", help="apply staged restores")


def is_offline(args: argparse.Namespace) -> bool:
    """Whether this restore command needs no snapshot service (the pending ones)."""
    return bool(args.pending or args.cancel or args.apply_pending)


def check_args(args: argparse.Namespace, parser_error: Any) -> None:
    if is_offline(args):
        if args.source or args.component or args.to_alternate or args.dry_run:
            parser_error("--pending, --cancel and --apply-pending take no FROM or other options")
    elif not args.source:
        parser_error("restore needs FROM (a backup set directory), or --pending/--cancel")


# ----- the staged restores (no daemon) ------------------------------------------------------


def run_offline(args: argparse.Namespace) -> int:
    root = args.pending_dir
    if args.cancel:
        with doing(f"cannot cancel pending restore {args.cancel}"):
            plan = pending.cancel(args.cancel, root)
        _say(args, {"cancelled": plan.summary()}, f"cancelled {plan.id} ({plan.label})")
        return 0
    if args.apply_pending:
        with doing("cannot apply the pending restores"):
            outcomes = pending.apply_all(root)
        report = RestoreReport(pending.pending_dir(root), "", components=outcomes)
        print_report(report, args.json)
        return 0 if report.ok else 1
    plans = pending.list_pending(root)
    if args.json:
        output.print_json([p.summary() for p in plans])
        return 0
    columns = ("ID", "CREATED", "COMPONENT", "METHOD", "FILES", "STATE")
    rows = [
        (p.id, p.created_at, p.label, p.method, str(p.summary()["files"]), p.state) for p in plans
    ]
    print(output.plain_table(columns, rows) if rows else "no pending restores")
    return 0


def _say(args: argparse.Namespace, value: Any, text: str) -> None:
    if args.json:
        output.print_json(value)
    else:
        print(text)


# ----- a restore session ------------------------------------------------------------------


@dataclass
class Context:
    source: RestoreSource
    document: BackupComponents
    saved_metadata: dict[str, WriterMetadata]
    live_metadata: dict[str, WriterMetadata]
    uids: dict[str, int]


def metadata_for(ctx: Context, component: SourceComponent) -> WriterMetadata | None:
    return ctx.live_metadata.get(component.instance_id) or ctx.saved_metadata.get(
        component.instance_id
    )


def credentials_for(
    ctx: Context, component: SourceComponent, to_alternate: str
) -> tuple[Credentials, str]:
    """The writer's credentials, and a note when they were not its live registration's.

    In order: its ``Uid`` while registered now; else the uid the backup set recorded for it
    (its ``Uid`` at backup time); else — only for sets made before the uid was recorded —
    a guess: the owner of the component's directory (or its closest existing parent).
    With --to-alternate the admin chose the place: the writer directs nothing.
    """
    if to_alternate or component.is_volume:
        return ROOT, ""
    return writer_credentials(
        ctx.uids.get(component.instance_id),
        ctx.source.writer_uid(component.instance_id),
        component.original_root,
    )


def job_for(ctx: Context, component: SourceComponent, to_alternate: str) -> ComponentJob:
    metadata = metadata_for(ctx, component)
    method = RestoreMethod.RESTORE_IF_CAN_REPLACE
    service = ""
    mappings: list[AlternateLocationMapping] = []
    target = RestoreTarget.ORIGINAL
    if metadata is not None:
        method = metadata.restore_method.method
        service = metadata.restore_method.service
        mappings.extend(metadata.alternate_location_mappings)
    if not component.is_volume:
        entry = ctx.document.component(
            component.instance_id, component.logical_path, component.name
        )
        target = entry.restore_target
        mappings = [*entry.alternate_location_mappings, *mappings]
    credentials, note = credentials_for(ctx, component, to_alternate)
    return ComponentJob(
        component=component,
        method=method,
        credentials=credentials,
        service=service,
        target=target,
        mappings=mappings,
        to_alternate=to_alternate,
        note=note,
    )


async def _units(args: argparse.Namespace, jobs: list[ComponentJob]) -> SystemdUnits | None:
    if args.dry_run or not any(j.method in NEEDS_UNIT and not j.to_alternate for j in jobs):
        return None
    with doing("cannot reach systemd"):
        return await SystemdUnits.connect(args.systemd_bus or args.bus)


async def run(client: VssClient, args: argparse.Namespace) -> int:
    with doing(f"{args.source} cannot be restored"):
        source = await asyncio.to_thread(open_backup_set, args.source)
        await asyncio.to_thread(source.verify)
        chosen = source.select(args.component)
        if args.to_alternate and not os.path.isabs(args.to_alternate):
            raise InvalidArgs(f"--to-alternate {args.to_alternate}: give an absolute path")
    with doing("cannot read the writers' documents in the set"):
        saved = {
            i: parse_writer_metadata(x, f"backup set {source.set_id}")
            for i, x in source.writer_documents().items()
        }
        document = parse_backup_components(source.backup_components_xml(), "backup set")
    with doing("cannot list the writers"):
        uids = {w.instance_id: w.uid for w in await client.writers()}
    ctx = Context(source, document, saved, {}, uids)
    report = RestoreReport(source.path, source.set_id, dry_run=args.dry_run)
    if args.dry_run:
        engine = RestoreEngine(source, dry_run=True, pending_root=args.pending_dir)
        for component in chosen:
            report.components.append(await engine.restore(job_for(ctx, component, "")))
        print_report(report, args.json)
        return 0 if report.ok else 1
    await _session(client, args, ctx, chosen, report)
    print_report(report, args.json)
    return 0 if report.ok else 1


async def _session(
    client: VssClient,
    args: argparse.Namespace,
    ctx: Context,
    chosen: list[SourceComponent],
    report: RestoreReport,
) -> None:
    with doing("cannot start the restore session"):
        session = await client.manager.create_restore_session(ctx.source.backup_components_xml())
    try:
        with doing("GatherWriterMetadata failed"):
            live = await session.gather_writer_metadata()
            ctx.live_metadata = {i: parse_writer_metadata(x, "writer") for i, x in live.items()}
        writers = [c for c in chosen if not c.is_volume]
        with doing("cannot select the components"):
            for c in writers:
                await session.set_selected_for_restore(c.instance_id, c.logical_path, c.name, True)
                if args.to_alternate:
                    m = _alternate_mapping(c, args.to_alternate)
                    await session.add_alternative_location_mapping(
                        c.instance_id,
                        c.logical_path,
                        c.name,
                        m.path,
                        m.filespec,
                        m.recursive,
                        m.destination,
                    )
                job = job_for(ctx, c, args.to_alternate or "")
                if job.method is RestoreMethod.CUSTOM:
                    await session.set_restore_options(
                        c.instance_id, c.logical_path, c.name, f"backup-set={ctx.source.path}"
                    )
        if writers:
            with doing("PreRestore failed"):
                await session.pre_restore()
                ctx.document = parse_backup_components(await session.save_as_xml(), "service")
        await _restore_all(args, ctx, chosen, report, session)
        if writers:
            with doing("PostRestore failed"):
                await session.post_restore()
        if args.save_components:
            with doing(f"cannot save the document to {args.save_components}"):
                xml = await session.save_as_xml()
                with open(args.save_components, "w", encoding="utf-8") as f:
                    f.write(xml)
    finally:
        try:
            await session.close()
        except VssError as exc:
            print(f"vssctl: closing the restore session: {exc.message}", file=sys.stderr)


def _alternate_mapping(component: SourceComponent, base: str) -> AlternateLocationMapping:
    root = component.original_root
    return AlternateLocationMapping(root, "*", True, os.path.join(base, root.lstrip("/")))


def _vetoed(ctx: Context, component: SourceComponent) -> str:
    if component.is_volume:
        return ""
    entry = ctx.document.component(component.instance_id, component.logical_path, component.name)
    failures = [f for f in entry.failures if f.phase == "PRE_RESTORE"]
    return failures[-1].message if failures else ""


async def _restore_all(
    args: argparse.Namespace,
    ctx: Context,
    chosen: list[SourceComponent],
    report: RestoreReport,
    session: RestoreSessionProxy,
) -> None:
    jobs = [job_for(ctx, c, args.to_alternate or "") for c in chosen]
    units: UnitControl | None = await _units(args, jobs)
    engine = RestoreEngine(ctx.source, units=units, pending_root=args.pending_dir)
    try:
        for job in jobs:
            veto = _vetoed(ctx, job.component)
            if veto:
                outcome = job.outcome()
                outcome.fail("WriterNonRetryable", f"the writer vetoed in OnPreRestore: {veto}")
            else:
                outcome = await engine.restore(job)
            report.components.append(outcome)
            if not job.component.is_volume:
                await _tell_session(session, job, outcome, bool(args.to_alternate))
    finally:
        if isinstance(units, SystemdUnits):
            await units.close()


async def _tell_session(
    session: RestoreSessionProxy, job: ComponentJob, outcome: ComponentOutcome, recorded: bool
) -> None:
    c = job.component
    with doing(f"cannot record the restore of {c.label}"):
        if not recorded:
            for m in outcome.mappings_used:
                await session.add_alternative_location_mapping(
                    c.instance_id,
                    c.logical_path,
                    c.name,
                    m.path,
                    m.filespec,
                    m.recursive,
                    m.destination,
                )
        await session.set_file_restore_status(
            c.instance_id, c.logical_path, c.name, outcome.status.value
        )


# ----- output -------------------------------------------------------------------------------


def print_report(report: RestoreReport, as_json: bool) -> None:
    if as_json:
        output.print_json(report.to_json())
        return
    verb = "would restore" if report.dry_run else "restored"
    for c in report.components:
        where = f"{c.placement}" + (f" (staged as {c.staged})" if c.staged else "")
        print(
            f"{c.label}: {c.status.value or 'NONE'} [{c.method}, {where or '-'}] — "
            f"{len(c.restored)} {verb}, {len(c.skipped)} skipped, {len(c.removed)} removed, "
            f"{len(c.failed)} failed, {len(c.not_restored)} not attempted"
        )
        if c.message:
            print(f"  {c.message}")
        for note in c.notes:
            print(f"  note: {note}")
        for line in c.failed:
            print(f"  FAILED {line}")
        for line in c.not_restored:
            print(f"  NOT RESTORED {line}")
        for m in c.mappings_used:
            print(f"  alternate location: {m.path} ({m.filespec}) -> {m.destination}")
