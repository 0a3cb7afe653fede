"""vssctl: the admin and requestor command line of snapd-vss.

    vssctl [--bus ADDRESS] [--json] COMMAND ...

    list writers | snapshots | providers
    create VOLUME... [--no-writers] [--provider P] [--backup-type T]
    delete ID... | --all | --oldest  [--volume V]
    expose ID [MOUNTPOINT]
    unexpose ID
    volume attach IMAGE --diff-area DIR [--max-size SIZE] [--policy P] [--chunk-size SIZE]
    volume detach IMAGE|NAME|LOOPDEV [--delete-snapshots] | resize ... --max-size SIZE | list
    exec VOLUME... [--no-writers] [--provider P] [--backup-type T] [--save-components FILE]
         -- COMMAND [ARG...]

``create`` makes *persistent* snapshots, like ``vssadmin create shadow``: a
non-persistent snapshot is released when its session closes, which for a command that
exits at once is immediately. To read a non-persistent snapshot, run the reader inside
the session with ``exec``.

``exec`` runs COMMAND while the snapshots exist, each exposed read-only, with:
    VSS_SNAPSHOT_SET_ID     the snapshot set's id
    VSS_SNAPSHOT_COUNT      how many volumes
    VSS_SNAPSHOT_<n>        VOLUME n's place inside its snapshot (n from 0, in the
                            order the volumes were given)
    VSS_SNAPSHOT_ROOT_<n>   the root of VOLUME n's snapshot
    VSS_SNAPSHOT_ID_<n>     the snapshot's id
    VSS_VOLUME_<n>          VOLUME n as given (made absolute)
    VSS_SNAPSHOT_PATHS      the VSS_SNAPSHOT_<n> values joined by ":"
If COMMAND exits 0 every selected component is marked backed up, otherwise failed;
then BackupComplete; the session is always closed (which releases the snapshots).
vssctl exits with COMMAND's exit status (126/127 when it cannot be run).

Errors print one line, ``vssctl: <what happened>: <message> (<D-Bus error name>)``, and
exit with a code per error class (see EXIT_CODES).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from snapd_vss import errors
from snapd_vss.cli import output, restore, volume
from snapd_vss.cli.backup import (
    BackupRun,
    BackupSummary,
    SnapshotSummary,
    StepFailed,
    add_backup_parser,
    choose_context,
    cmd_backup,
    doing,
)
from snapd_vss.cli.selection import is_under
from snapd_vss.errors import VssError
from snapd_vss.ipc.client import SnapshotInfo, VssClient, gather_bounded
from snapd_vss.vocabulary import BackupType, SnapshotState

PROG = "vssctl"

#: Exit status per error class (2 is argparse's usage error).
EXIT_CODES: dict[str, int] = {
    "Failed": 1,
    "InvalidArgs": 3,
    "InvalidState": 4,
    "InvalidDocument": 5,
    "NotFound": 6,
    "AccessDenied": 7,
    "SnapshotSetInProgress": 8,
    "VolumeNotSupported": 9,
    "ProviderFailure": 10,
    "InsufficientStorage": 11,
    "Timeout": 12,
    "Cancelled": 13,
    "WriterRetryable": 14,
    "WriterNonRetryable": 15,
    "WriterTimeout": 16,
    "WriterInconsistentSnapshot": 17,
    "WriterOutOfResources": 18,
}
EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class UsageError(Exception):
    """The command line is wrong in a way argparse cannot see."""


# -- the command line --


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Coordinated, application-consistent snapshots (snapd-vss).",
        epilog="exec: vssctl exec VOLUME... -- COMMAND [ARG...]",
    )
    parser.add_argument(
        "--bus",
        metavar="ADDRESS",
        help="D-Bus address of the bus snapd-vssd runs on "
        "(default: $DBUS_SYSTEM_BUS_ADDRESS, else the system bus)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser(
        "list", parents=[json_too], help="list writers, snapshots or providers"
    )
    listing.add_argument("what", choices=("writers", "snapshots", "providers"))

    create = commands.add_parser(
        "create",
        parents=[json_too],
        help="create persistent snapshots of volumes (with their writers)",
        description="Create a persistent snapshot set of the volumes, coordinated with the "
        "writers whose files are on them (like vssadmin create shadow).",
    )
    _session_arguments(create, default_type=BackupType.COPY)
    create.add_argument(
        "--persistent",
        action="store_true",
        default=True,
        help="keep the snapshots after vssctl exits (always so for create)",
    )

    delete = commands.add_parser("delete", parents=[json_too], help="delete snapshots")
    delete.add_argument("ids", nargs="*", metavar="ID", help="snapshot id")
    which = delete.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every persistent snapshot")
    which.add_argument("--oldest", action="store_true", help="the oldest persistent snapshot")
    delete.add_argument("--volume", metavar="V", help="with --all/--oldest: only snapshots of V")

    expose = commands.add_parser("expose", parents=[json_too], help="make a snapshot readable")
    expose.add_argument("id", metavar="ID")
    expose.add_argument("mount_point", nargs="?", default="", metavar="MOUNTPOINT")

    unexpose = commands.add_parser("unexpose", parents=[json_too], help="undo expose")
    unexpose.add_argument("id", metavar="ID")

    run = commands.add_parser(
        "exec",
        parents=[json_too],
        help="snapshot volumes, run a command on the snapshots, complete the backup",
        usage=f"{PROG} exec [options] VOLUME... -- COMMAND [ARG...]",
    )
    _session_arguments(run, default_type=BackupType.FULL)
    run.add_argument(
        "--save-components",
        metavar="FILE",
        help="write the Backup Components Document (for a later restore) to FILE",
    )
    volume.add_parser(commands, json_too)
    add_backup_parser(commands, [json_too])
    restore.add_parser(commands, json_too)
    return parser


def _session_arguments(parser: argparse.ArgumentParser, default_type: BackupType) -> None:
    parser.add_argument("volumes", nargs="+", metavar="VOLUME", help="mount point or path in it")
    parser.add_argument(
        "--no-writers", action="store_true", help="do not involve writers (crash-consistent)"
    )
    parser.add_argument("--provider", default="", metavar="P", help="btrfs, lvm_thin, diff_area")
    parser.add_argument(
        "--backup-type",
        default=default_type.value,
        choices=[t.value for t in BackupType],
        help=f"what the writers are told (default {default_type.value})",
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` (without the program name); ``exec``'s COMMAND follows ``--``."""
    argv = list(argv)
    command: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    args.exec_command = command
    if args.command == "exec" and not command:
        parser.error("exec needs a command after --: vssctl exec VOLUME... -- COMMAND")
    if args.command != "exec" and command:
        parser.error(f"'--' and a command only go with exec, not {args.command}")
    if args.command == "restore":
        restore.check_args(args, parser.error)
    if args.command == "delete":
        if not (args.ids or args.all or args.oldest):
            parser.error("delete needs snapshot ids, --all or --oldest")
        if args.ids and (args.all or args.oldest):
            parser.error("give snapshot ids or --all/--oldest, not both")
        if args.volume and not (args.all or args.oldest):
            parser.error("--volume goes with --all or --oldest")
    return args


# -- commands --


async def cmd_list(client: VssClient, args: argparse.Namespace) -> int:
    listing: output.Listing
    items: Sequence[Any]
    with doing(f"cannot list {args.what}"):
        if args.what == "writers":
            items = await client.writers()
            listing = output.writers_listing(items)
        elif args.what == "snapshots":
            items = await client.snapshots()
            listing = output.snapshots_listing(items)
        else:
            items = await client.providers()
            listing = output.providers_listing(items)
    if args.json:
        output.print_json(list(items))
    else:
        output.print_listing(listing)
    return 0


async def cmd_create(client: VssClient, args: argparse.Namespace) -> int:
    run = BackupRun(
        client,
        args.volumes,
        choose_context(persistent=True, with_writers=not args.no_writers),
        BackupType(args.backup_type),
        args.provider,
    )
    try:
        summary = await run.snapshot()
        await run.complete(succeeded=True)
    except BaseException:
        await shutdown(run, quiet=True)
        raise
    await shutdown(run, quiet=False)
    if args.json:
        output.print_json(summary)
    else:
        print_summary(summary, sys.stdout)
    return 0


def print_summary(summary: BackupSummary, out: Any) -> None:
    kind = "persistent" if any(s.persistent for s in summary.snapshots) else "non-persistent"
    out.write(f"Snapshot set {summary.snapshot_set_id} ({kind}, context {summary.context})\n")
    out.write(
        f"Freeze window {summary.freeze_window_ms:.1f} ms, "
        f"commit window {summary.commit_window_ms:.1f} ms\n"
    )
    output.print_listing(
        output.Listing(
            ("SNAPSHOT ID", "VOLUME", "PROVIDER", "DEVICE", "EXPOSED AT"),
            [
                (s.id, s.volume or s.argument, s.provider, s.device_path, s.exposed_path)
                for s in summary.snapshots
            ],
            "no snapshots",
        ),
        out,
    )
    if summary.context in ("BACKUP", "APP_ROLLBACK"):
        if summary.components:
            labels = ", ".join(c.label for c in summary.components)
            out.write(f"Components: {labels}\n")
        else:
            out.write("Components: none (no writer has files on these volumes)\n")
    for writer in summary.writers:
        if writer.last_error or writer.state.startswith("FAILED"):
            out.write(
                f"Writer {writer.name} ({writer.instance_id}): {writer.state} "
                f"{writer.last_error} {writer.message}".rstrip()
                + "\n"
            )


def _select_for_volume(snapshots: list[SnapshotInfo], volume: str | None) -> list[SnapshotInfo]:
    if volume is None:
        return snapshots
    target = os.path.realpath(volume)
    containing = [s.volume for s in snapshots if s.volume and is_under(target, s.volume)]
    if not containing:
        return []
    best = max(containing, key=len)
    return [s for s in snapshots if s.volume == best]


def snapshots_to_delete(
    snapshots: list[SnapshotInfo], all_: bool, oldest: bool, volume: str | None
) -> list[SnapshotInfo]:
    """``--all`` / ``--oldest``: persistent, not yet deleted snapshots (of ``volume``)."""
    candidates = [s for s in snapshots if s.persistent and s.state != SnapshotState.DELETED.value]
    candidates = _select_for_volume(candidates, volume)
    if oldest:
        return sorted(candidates, key=lambda s: (s.creation_time, s.id))[:1]
    return candidates


async def cmd_delete(client: VssClient, args: argparse.Namespace) -> int:
    if args.ids:
        ids = list(dict.fromkeys(args.ids))
    else:
        with doing("cannot list the snapshots"):
            snapshots = await client.snapshots()
        chosen = snapshots_to_delete(snapshots, args.all, args.oldest, args.volume)
        if not chosen and args.oldest:
            where = f" of {args.volume}" if args.volume else ""
            raise StepFailed(
                "nothing to delete",
                errors.NotFound(
                    f"there is no persistent snapshot{where}; see vssctl list snapshots"
                ),
            )
        ids = [s.id for s in chosen]

    async def delete(snapshot_id: str) -> str | StepFailed:
        try:
            with doing(f"cannot delete snapshot {snapshot_id}"):
                await client.snapshot(snapshot_id).delete()
        except StepFailed as failure:
            return failure
        return snapshot_id

    results = await gather_bounded(delete(i) for i in ids)
    deleted = [r for r in results if isinstance(r, str)]
    failures = [r for r in results if isinstance(r, StepFailed)]
    if args.json:
        output.print_json({"deleted": deleted})
    else:
        for snapshot_id in deleted:
            print(f"deleted {snapshot_id}")
    for failure in failures[1:]:
        report(failure)
    if failures:
        raise failures[0]
    return 0


async def cmd_expose(client: VssClient, args: argparse.Namespace) -> int:
    mount_point = os.path.abspath(args.mount_point) if args.mount_point else ""
    with doing(f"cannot expose snapshot {args.id}"):
        path = await client.snapshot(args.id).expose(mount_point)
    if args.json:
        output.print_json({"id": args.id, "exposed_path": path})
    else:
        print(path)
    return 0


async def cmd_unexpose(client: VssClient, args: argparse.Namespace) -> int:
    with doing(f"cannot unexpose snapshot {args.id}"):
        await client.snapshot(args.id).unexpose()
    if args.json:
        output.print_json({"id": args.id, "exposed_path": ""})
    return 0


def snapshot_environment(
    snapshot_set_id: str, snapshots: Sequence[SnapshotSummary]
) -> dict[str, str]:
    """The VSS_* variables ``exec`` gives its command."""
    env = {"VSS_SNAPSHOT_SET_ID": snapshot_set_id, "VSS_SNAPSHOT_COUNT": str(len(snapshots))}
    for n, snapshot in enumerate(snapshots):
        env[f"VSS_SNAPSHOT_{n}"] = snapshot.path
        env[f"VSS_SNAPSHOT_ROOT_{n}"] = snapshot.exposed_path
        env[f"VSS_SNAPSHOT_ID_{n}"] = snapshot.id
        env[f"VSS_VOLUME_{n}"] = snapshot.argument
    env["VSS_SNAPSHOT_PATHS"] = ":".join(s.path for s in snapshots)
    return env


async def run_command(command: Sequence[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end; SIGTERM and SIGHUP to vssctl are passed on to it.

    SIGINT is not passed on (a terminal already sends it to the whole foreground
    group); vssctl ignores it while the command runs and finishes the session.
    """
    try:
        process = await asyncio.create_subprocess_exec(*command, env=env)
    except FileNotFoundError:
        note(f"{command[0]}: command not found")
        return EXIT_NOT_FOUND
    except PermissionError:
        note(f"{command[0]}: permission denied")
        return EXIT_CANNOT_EXECUTE
    loop = asyncio.get_running_loop()
    forwarded = (signal.SIGTERM, signal.SIGHUP)
    for signum in forwarded:
        loop.add_signal_handler(signum, _forward, process, signum)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    try:
        return await process.wait()
    finally:
        for signum in (*forwarded, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _forward(process: asyncio.subprocess.Process, signum: int) -> None:
    if process.returncode is None:
        process.send_signal(signum)


def command_status(returncode: int) -> int:
    """A shell's exit status for a child's return code (killed by N → 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


async def cmd_exec(client: VssClient, args: argparse.Namespace) -> int:
    run = BackupRun(
        client,
        args.volumes,
        choose_context(persistent=False, with_writers=not args.no_writers),
        BackupType(args.backup_type),
        args.provider,
    )
    try:
        summary = await run.snapshot()
        await run.expose_all()
        note(
            f"snapshot set {summary.snapshot_set_id}: {len(summary.components)} component(s), "
            f"freeze window {summary.freeze_window_ms:.1f} ms"
        )
        for snapshot in summary.snapshots:
            note(f"snapshot of {snapshot.argument} readable at {snapshot.path}")
        env = {**os.environ, **snapshot_environment(summary.snapshot_set_id, summary.snapshots)}
        status = command_status(await run_command(args.exec_command, env))
        succeeded = status == 0
        if succeeded:
            note(f"{args.exec_command[0]} succeeded; completing the backup")
        else:
            note(f"{args.exec_command[0]} exited with {status}; marking the backup failed")
        for failure in await run.unexpose_ours():
            report(failure)
        try:
            await run.complete(succeeded)
            if args.save_components:
                _save(args.save_components, await run.save_as_xml())
        except StepFailed as failure:
            if succeeded:
                raise
            report(failure)  # the command's failure is what counts; go on
    except BaseException:
        await shutdown(run, quiet=True)
        raise
    await shutdown(run, quiet=False)
    if args.json:
        output.print_json({**output.to_jsonable(summary), "command_status": status})
    return status


async def shutdown(run: BackupRun, quiet: bool) -> None:
    """Unexpose what vssctl exposed and close the session.

    ``quiet`` (an error is already on its way out): report failures, never raise.
    """
    failures = await run.unexpose_ours()
    try:
        await run.close()
    except StepFailed as close_failure:
        failures.append(close_failure)
    if quiet or not failures:
        for each in failures:
            report(each)
        return
    for each in failures[1:]:
        report(each)
    raise failures[0]


def _save(path: str, xml: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(xml)
    except OSError as exc:
        raise StepFailed(
            f"cannot save the Backup Components Document to {path}",
            errors.Failed(f"{exc.strerror or exc}; choose a writable path"),
        ) from exc


COMMANDS: dict[str, Callable[[VssClient, argparse.Namespace], Awaitable[int]]] = {
    "list": cmd_list,
    "create": cmd_create,
    "delete": cmd_delete,
    "expose": cmd_expose,
    "unexpose": cmd_unexpose,
    "exec": cmd_exec,
    "volume": volume.run,
    "backup": cmd_backup,
    "restore": restore.run,
}


# -- running --


def note(text: str) -> None:
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def error_line(failure: StepFailed) -> str:
    return f"{PROG}: {failure.what}: {failure.error.message} ({failure.error.dbus_name})"


def report(failure: StepFailed) -> None:
    print(error_line(failure), file=sys.stderr, flush=True)


def exit_code(error: VssError) -> int:
    return EXIT_CODES.get(error.code, 1)


async def run(args: argparse.Namespace) -> int:
    with doing("cannot reach the snapshot service"):
        client = await VssClient.connect(args.bus)
    try:
        return await COMMANDS[args.command](client, args)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "restore" and restore.is_offline(args):
            return restore.run_offline(args)
        return asyncio.run(run(args))
    except StepFailed as failure:
        report(failure)
        return exit_code(failure.error)
    except VssError as error:
        report(StepFailed("failed", error))
        return exit_code(error)
    except KeyboardInterrupt:
        note("interrupted; the service aborts the session")
        return 130


if __name__ == "__main__":
    sys.exit(main())
