"""vssctl without a service: argument parsing, output, component selection, environment."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from snapd_vss import errors
from snapd_vss.cli import output
from snapd_vss.cli.backup import (
    SnapshotSummary,
    StepFailed,
    choose_context,
    path_in_snapshot,
    unique_volumes,
)
from snapd_vss.cli.selection import select_components
from snapd_vss.cli.vssctl import (
    EXIT_CODES,
    command_status,
    error_line,
    exit_code,
    parse_args,
    snapshot_environment,
    snapshots_to_delete,
)
from snapd_vss.documents import Component, FileSpec, WriterMetadata
from snapd_vss.ipc.client import SnapshotInfo, WriterInfo, error_from_reply, snapshot_path, unwrap
from snapd_vss.vocabulary import ComponentType, Context

PYTHON = sys.executable


# -- parsing --


def test_exec_splits_command_at_double_dash() -> None:
    args = parse_args(
        ["--bus", "unix:path=/x", "exec", "/srv", "/var", "--", "tar", "-C", "--", "x"]
    )
    assert args.command == "exec"
    assert args.volumes == ["/srv", "/var"]
    assert args.exec_command == ["tar", "-C", "--", "x"]
    assert args.bus == "unix:path=/x"
    assert args.backup_type == "FULL"
    assert not args.no_writers


def test_json_before_or_after_the_command() -> None:
    assert parse_args(["--json", "list", "writers"]).json
    assert parse_args(["list", "snapshots", "--json"]).json
    assert not parse_args(["list", "providers"]).json


def test_create_is_persistent_and_copy_by_default() -> None:
    args = parse_args(["create", "/srv", "--provider", "btrfs"])
    assert args.persistent
    assert args.backup_type == "COPY"
    assert args.provider == "btrfs"


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "/srv"],  # no command
        ["exec", "/srv", "--"],  # empty command
        ["list", "writers", "--", "ls"],  # a command where none belongs
        ["list", "things"],
        ["delete"],
        ["delete", "abc", "--all"],
        ["delete", "--all", "--oldest"],
        ["delete", "abc", "--volume", "/srv"],
        ["create"],
        ["create", "/srv", "--backup-type", "WEEKLY"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vssctl")
    assert "error:" in err


def test_delete_forms() -> None:
    assert parse_args(["delete", "a", "b"]).ids == ["a", "b"]
    args = parse_args(["delete", "--oldest", "--volume", "/srv"])
    assert args.oldest and args.volume == "/srv" and not args.ids


# -- errors --


def test_error_line_and_exit_codes_are_distinct() -> None:
    failure = StepFailed("cannot do it", errors.SnapshotSetInProgress("another set is being made"))
    assert error_line(failure) == (
        "vssctl: cannot do it: another set is being made "
        "(org.snapdvss.Vss1.Error.SnapshotSetInProgress)"
    )
    assert set(EXIT_CODES) == set(errors.BY_CODE)
    codes = [exit_code(cls()) for cls in errors.ALL_ERRORS]
    assert len(set(codes)) == len(codes)
    assert 0 not in codes and 2 not in codes


def test_remote_errors_become_domain_errors() -> None:
    error = error_from_reply("org.snapdvss.Vss1.Error.InvalidState", "call StartSnapshotSet first")
    assert isinstance(error, errors.InvalidState)
    assert error.message == "call StartSnapshotSet first"
    assert isinstance(error_from_reply("org.snapdvss.Vss1.Error.NoSuchThing", "x"), errors.Failed)
    denied = error_from_reply("org.freedesktop.DBus.Error.AccessDenied", "policy says no")
    assert isinstance(denied, errors.AccessDenied)
    assert "policy says no" in denied.message
    missing = error_from_reply("org.freedesktop.DBus.Error.ServiceUnknown", "")
    assert isinstance(missing, errors.Failed)
    assert "not running" in missing.message
    assert isinstance(
        error_from_reply("org.freedesktop.DBus.Error.UnknownObject", ""), errors.NotFound
    )
    gone = error_from_reply("org.freedesktop.DBus.Error.UnknownMethod", "x", missing="no snap")
    assert isinstance(gone, errors.NotFound) and gone.message == "no snap"
    own = error_from_reply("org.snapdvss.Vss1.Error.NotFound", "the service's words", missing="m")
    assert own.message == "the service's words"


def test_unwrap_and_paths() -> None:
    from dbus_fast import Variant

    value = {"a": Variant("as", ["x"]), "b": [Variant("v", Variant("t", 5))]}
    assert unwrap(value) == {"a": ["x"], "b": [5]}
    assert snapshot_path("1b2c-3d") == "/org/snapdvss/Vss1/snapshots/1b2c_3d"
    assert snapshot_path("/org/snapdvss/Vss1/snapshots/x") == "/org/snapdvss/Vss1/snapshots/x"


def test_command_status() -> None:
    assert command_status(0) == 0
    assert command_status(3) == 3
    assert command_status(-15) == 143


# -- output --


def _writer(name: str, error: str = "", message: str = "") -> WriterInfo:
    return WriterInfo(
        path="/org/snapdvss/Vss1/writers/1",
        writer_id="11111111-2222-3333-4444-555555555555",
        instance_id="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        instance_name="main",
        name=name,
        usage="USER_DATA",
        source="TRANSACTED_DB",
        state="FAILED_AT_FREEZE" if error else "STABLE",
        last_error=error,
        last_error_message=message,
        owner=":1.5",
        uid=0,
    )


def test_plain_table_is_aligned() -> None:
    listing = output.writers_listing(
        [_writer("Example DB"), _writer("Mail", "TIMEOUT", "did not freeze in 60 s")]
    )
    text = output.plain_table(listing.columns, listing.rows)
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("NAME".ljust(len("Example DB")) + "  WRITER ID")
    state_column = lines[0].index("STATE")
    assert lines[1][state_column:].startswith("STABLE")
    assert lines[2][state_column:].startswith("FAILED_AT_FREEZE")
    assert lines[2].endswith("TIMEOUT: did not freeze in 60 s")
    assert all(line == line.rstrip() for line in lines)


def test_listing_to_a_pipe_is_plain() -> None:
    out = io.StringIO()
    output.print_listing(output.providers_listing([]), out)
    assert out.getvalue() == "NAME  TYPE  VERSION  AVAILABLE  REASON\n"


def test_json_of_records() -> None:
    out = io.StringIO()
    output.print_json([_writer("Example DB")], out)
    (record,) = json.loads(out.getvalue())
    assert record["name"] == "Example DB"
    assert record["last_error"] == ""
    assert record["uid"] == 0


def test_snapshot_time_column() -> None:
    snap = _snapshot("s1", "/srv", 1_700_000_000_000_000, True)
    (row,) = output.snapshots_listing([snap]).rows
    assert row[4].startswith("2023-11-1")
    assert row[5] == "yes"


# -- choices --


def _snapshot(
    sid: str, volume: str, created: int, persistent: bool, state: str = "CREATED"
) -> SnapshotInfo:
    return SnapshotInfo(
        path=snapshot_path(sid),
        id=sid,
        snapshot_set_id="set",
        volume=volume,
        provider="btrfs",
        device_path="",
        exposed_path="",
        creation_time=created,
        persistent=persistent,
        state=state,
        state_reason="",
    )


def test_delete_all_and_oldest_pick_persistent_snapshots() -> None:
    snaps = [
        _snapshot("new-srv", "/srv", 300, True),
        _snapshot("old-srv", "/srv", 100, True),
        _snapshot("session", "/srv", 50, False),
        _snapshot("gone", "/srv", 10, True, "DELETED"),
        _snapshot("var", "/var", 20, True),
        _snapshot("nested", "/srv/db", 5, True),
    ]
    ids = lambda chosen: [s.id for s in chosen]  # noqa: E731
    assert ids(snapshots_to_delete(snaps, True, False, None)) == [
        "new-srv",
        "old-srv",
        "var",
        "nested",
    ]
    assert ids(snapshots_to_delete(snaps, False, True, None)) == ["nested"]
    assert ids(snapshots_to_delete(snaps, False, True, "/srv")) == ["old-srv"]
    assert ids(snapshots_to_delete(snaps, False, True, "/srv/db/sub")) == ["nested"]
    assert ids(snapshots_to_delete(snaps, True, False, "/home")) == []


def test_contexts() -> None:
    assert choose_context(True, True) is Context.APP_ROLLBACK
    assert choose_context(True, False) is Context.NAS_ROLLBACK
    assert choose_context(False, True) is Context.BACKUP
    assert choose_context(False, False) is Context.FILE_SHARE_BACKUP


def test_volumes_made_absolute_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert unique_volumes([str(tmp_path / "a"), str(tmp_path / "link"), str(tmp_path)]) == [
        str(tmp_path / "a"),
        str(tmp_path),
    ]


def test_path_in_snapshot() -> None:
    assert path_in_snapshot("/srv", "/srv", "/run/s/1") == "/run/s/1"
    assert path_in_snapshot("/srv/db/main", "/srv", "/run/s/1") == "/run/s/1/db/main"
    assert path_in_snapshot("/elsewhere", "/srv", "/run/s/1") == "/run/s/1"
    assert path_in_snapshot("/srv", "/srv", "") == ""


def test_snapshot_environment() -> None:
    first = SnapshotSummary("id-0", "/srv/db", "/srv", "btrfs", "/srv/.snap", False)
    first.set_exposed("/run/snapd-vss/snapshots/id-0")
    second = SnapshotSummary("id-1", "/var", "/var", "btrfs", "", False)
    second.set_exposed("/mnt/x")
    env = snapshot_environment("set-1", [first, second])
    assert env == {
        "VSS_SNAPSHOT_SET_ID": "set-1",
        "VSS_SNAPSHOT_COUNT": "2",
        "VSS_SNAPSHOT_0": "/run/snapd-vss/snapshots/id-0/db",
        "VSS_SNAPSHOT_ROOT_0": "/run/snapd-vss/snapshots/id-0",
        "VSS_SNAPSHOT_ID_0": "id-0",
        "VSS_VOLUME_0": "/srv/db",
        "VSS_SNAPSHOT_1": "/mnt/x",
        "VSS_SNAPSHOT_ROOT_1": "/mnt/x",
        "VSS_SNAPSHOT_ID_1": "id-1",
        "VSS_VOLUME_1": "/var",
        "VSS_SNAPSHOT_PATHS": "/run/snapd-vss/snapshots/id-0/db:/mnt/x",
    }


def _component(
    logical_path: str, name: str, path: str | None, selectable: bool = True
) -> Component:
    files = [FileSpec(path=path)] if path else []
    return Component(
        ComponentType.FILEGROUP, logical_path, name, selectable=selectable, files=files
    )


def test_components_on_the_volumes_are_selected() -> None:
    db = WriterMetadata(
        writer_id="w1",
        name="DB",
        components=[
            _component("", "main", "/srv/db/main"),
            _component("", "other", "/var/lib/other"),
            # only selectable through "clusters": select the ancestor
            _component("", "clusters", None),
            _component("clusters", "c1", "/srv/db/c1", selectable=False),
            # a mandatory (non-selectable, top-level) component is added itself
            _component("", "config", "/srv/etc", selectable=False),
            # a child of a selected component is not added again
            _component("main", "logs", "/srv/db/main/logs"),
        ],
    )
    mail = WriterMetadata(
        writer_id="w2", name="Mail", components=[_component("", "box", "/home/m")]
    )
    chosen = select_components({"i1": db, "i2": mail}, ["/srv"])
    assert [(c.instance_id, c.logical_path, c.name) for c in chosen] == [
        ("i1", "", "clusters"),
        ("i1", "", "config"),
        ("i1", "", "main"),
    ]
    assert chosen[0].label == "DB: clusters"
    assert select_components({"i1": db, "i2": mail}, ["/home"])[0].label == "Mail: box"
    assert select_components({"i1": db}, ["/srv-other"]) == []


# -- the program --


def test_module_runs_and_reports_an_unreachable_bus(tmp_path: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "snapd_vss.cli", "--bus", f"unix:path={tmp_path}/none", "list", "writers"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        "vssctl: cannot reach the snapshot service: cannot connect to unix:path="
    )
    assert line.endswith("(org.snapdvss.Vss1.Error.Failed)")
