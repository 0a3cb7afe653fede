"""The proof of issue 5: the SQLite writer under load, backed up (full, then incremental) with
``vssctl backup``, the database damaged, and ``vssctl restore`` bringing back a copy that
passes the integrity checks and holds exactly the state of the chosen backup point.
Everything real: dbus-daemon, snapd-vssd, btrfs on a loop device, the writer process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapd_vss.demo import WriterProcess as SqliteWriterProcess
from snapd_vss.documents import parse_backup_components
from snapd_vss.examples.ledger import verify_copy
from snapd_vss.examples.sqlite_writer import LOGICAL_PATH
from snapd_vss.testing.bus import LocalUser, PrivateBus, popen_as
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.loopdev import LoopFs

REPO = Path(__file__).resolve().parent.parent
WRITER = "Example SQLite ledger"


@dataclass
class Vssctl:
    bus: PrivateBus
    pending_dir: Path

    def __call__(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=str(REPO), SNAPD_VSS_PENDING_DIR=str(self.pending_dir))
        env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        done = subprocess.run(
            [sys.executable, "-m", "snapd_vss.cli", "--bus", self.bus.address, *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            cwd=REPO,
            check=False,
        )
        if ok:
            assert done.returncode == 0, f"vssctl {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def wait_for_writer(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(
                w["name"] == WRITER for w in json.loads(self("list", "writers", "--json").stdout)
            ):
                return
            time.sleep(0.1)
        raise AssertionError("the SQLite writer never registered")


@pytest.fixture
def vssctl(private_bus: PrivateBus, vss_daemon: VssDaemon, tmp_path: Path) -> Vssctl:
    return Vssctl(private_bus, tmp_path / "pending")


def damage(db: Path) -> None:
    with open(db, "r+b") as f:
        f.seek(4096 + 100)
        f.write(os.urandom(8192))
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def backup(vssctl: Vssctl, dest: Path, *extra: str) -> None:
    vssctl("backup", "--to", str(dest), "--component", f"{WRITER}:{LOGICAL_PATH}", *extra)


def intact(db: Path) -> bool:
    try:
        return verify_copy(db).consistent
    except sqlite3.DatabaseError:
        return False


def test_full_and_incremental_restore_of_the_sqlite_writer(
    vssctl: Vssctl, sqlite_writer: SqliteWriterProcess, tmp_path: Path
) -> None:
    vssctl.wait_for_writer()
    db = sqlite_writer.db_path
    time.sleep(0.5)  # some load
    full, incremental = tmp_path / "sets" / "full", tmp_path / "sets" / "incr"
    backup(vssctl, full)
    at_full = sqlite_writer.frozen_at()
    time.sleep(0.5)
    backup(vssctl, incremental, "--type", "incremental", "--base", str(full))
    at_incremental = sqlite_writer.frozen_at()
    assert at_full is not None and at_incremental is not None and at_incremental > at_full

    # While the writer runs, its files are open: RESTORE_IF_CAN_REPLACE refuses, touching nothing.
    refused = vssctl("restore", str(incremental), "--json", ok=False)
    assert refused.returncode != 0
    (outcome,) = json.loads(refused.stdout)["components"]
    assert outcome["status"] == "NONE" and "in use" in outcome["message"]
    assert outcome["restored"] == []

    # ... so an admin restores a copy beside it, and the writer learns where.
    alternate = tmp_path / "alternate"
    saved = tmp_path / "after-restore.xml"
    done = vssctl(
        "restore",
        str(incremental),
        "--to-alternate",
        str(alternate),
        "--save-components",
        str(saved),
        "--json",
    )
    (outcome,) = json.loads(done.stdout)["components"]
    assert outcome["status"] == "ALL" and outcome["placement"] == "to-alternate"
    copy = alternate / str(db).lstrip("/")
    checked = verify_copy(copy)
    assert checked.consistent, checked
    assert checked.last_ledger_id == at_incremental
    document = parse_backup_components(saved.read_text())
    (writer,) = document.writers
    (component,) = writer.components
    assert component.selected_for_restore and component.file_restore_status.value == "ALL"
    assert component.alternate_location_mappings[0].destination == str(
        alternate / str(db.parent).lstrip("/")
    )

    # The writer goes away, the database is damaged; a dry run writes nothing.
    sqlite_writer.stop()
    damage(db)
    dry = vssctl("restore", str(incremental), "--dry-run", "--json")
    assert json.loads(dry.stdout)["dry_run"] is True
    assert not intact(db)

    # In place, the incremental point: the chain (full + incremental) is followed.
    vssctl("restore", str(incremental))
    checked = verify_copy(db)
    assert checked.consistent and checked.last_ledger_id == at_incremental

    # And the full point, chosen explicitly by its set.
    vssctl("restore", str(full), "--component", f"{WRITER}:{LOGICAL_PATH}")
    checked = verify_copy(db)
    assert checked.consistent and checked.last_ledger_id == at_full


def test_tampered_set_is_refused_by_vssctl_with_no_file_touched(
    vssctl: Vssctl, sqlite_writer: SqliteWriterProcess, tmp_path: Path
) -> None:
    vssctl.wait_for_writer()
    dest = tmp_path / "full"
    backup(vssctl, dest)
    sqlite_writer.stop()
    before = sqlite_writer.db_path.read_bytes()
    archive = next((dest / "data").iterdir())
    with open(archive, "r+b") as f:
        f.seek(2048)
        byte = f.read(1)
        f.seek(2048)
        f.write(bytes([byte[0] ^ 0xFF]))
    done = vssctl("restore", str(dest), ok=False)
    assert done.returncode == 5, done.stderr  # InvalidDocument
    assert "InvalidDocument" in done.stderr
    assert sqlite_writer.db_path.read_bytes() == before


# ----- a real non-root writer, through the daemon ---------------------------------------

USER_WRITER = "user-writer"


@dataclass
class UserWriter:
    """The scripted writer run as ``user`` (its own process, registered with the daemon)."""

    user: LocalUser
    process: subprocess.Popen[str]
    events: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def lines(self) -> list[str]:
        return self.events.read_text().splitlines() if self.events.exists() else []


def registered(vssctl: Vssctl) -> list[dict[str, object]]:
    writers: list[dict[str, object]] = json.loads(vssctl("list", "writers", "--json").stdout)
    return [w for w in writers if w["name"] == USER_WRITER]


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout_s} s")
        time.sleep(0.1)


@pytest.fixture
def user_writer(
    private_bus: PrivateBus,
    vss_daemon: VssDaemon,
    btrfs_volume: LoopFs,
    nonroot_user: LocalUser,
    nonroot_pythonpath: Path,
) -> Iterator[UserWriter]:
    # the user must reach its own directory on the volume (its workdir is 0700)
    os.chmod(btrfs_volume.workdir, 0o755)
    os.chmod(btrfs_volume.mount_point, 0o755)
    home = Path(btrfs_volume.mount_point, "user")
    data = home / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.txt").write_text("beta\n")
    for path in (home, data, data / "sub", data / "a.txt", data / "sub" / "b.txt"):
        os.chown(path, nonroot_user.uid, nonroot_user.gid)
    events = home / "events"
    argv = [sys.executable, "-m", "snapd_vss.testing.scripted_writer", "--name", USER_WRITER]
    argv += ["--data", str(data), "--events", str(events)]
    process = popen_as(
        nonroot_user,
        argv,
        env={
            "PYTHONPATH": str(nonroot_pythonpath),
            "PATH": "/usr/bin:/bin",
            "DBUS_SYSTEM_BUS_ADDRESS": private_bus.address,
        },
    )
    writer = UserWriter(nonroot_user, process, events)
    try:
        yield writer
    finally:
        writer.stop()


def test_a_nonroot_writer_cannot_make_a_restore_write_where_its_user_cannot(
    vssctl: Vssctl, user_writer: UserWriter, tmp_path: Path
) -> None:
    """Backed up through the daemon as a real non-root writer; its directory then
    becomes root's: the restore it would direct there is refused, nothing written."""
    user = user_writer.user
    wait_until(lambda: registered(vssctl), "the non-root writer never registered")
    (listed,) = registered(vssctl)
    assert listed["uid"] == user.uid
    data = Path(str(user_writer.events)).parent / "data"
    full = tmp_path / "sets" / "full"
    vssctl("backup", "--to", str(full), "--component", f"{USER_WRITER}:files")
    manifest = json.loads((full / "manifest.json").read_text())
    assert [w["uid"] for w in manifest["writers"]] == [user.uid]  # recorded for the restore

    (data / "a.txt").write_text("damaged\n")
    os.chown(data, 0, 0)  # now only root may write in it
    os.chmod(data, 0o755)
    before = sorted(os.listdir(data))

    def refused(expect_note: str) -> dict[str, object]:
        done = vssctl("restore", str(full), "--json", ok=False)
        assert done.returncode != 0, done.stdout
        (outcome,) = json.loads(done.stdout)["components"]
        assert outcome["error_code"] == "AccessDenied", outcome
        assert outcome["status"] == "NONE" and outcome["restored"] == []
        assert user.name in str(outcome["message"]) and str(data) in str(outcome["message"])
        assert expect_note in " ".join(outcome["notes"])  # type: ignore[arg-type]
        assert (data / "a.txt").read_text() == "damaged\n"
        assert sorted(os.listdir(data)) == before  # not even a temporary
        return outcome

    # registered: judged by its live Uid; the writer hears the status NONE
    refused("")
    wait_until(lambda: "post_restore NONE" in user_writer.lines(), "no OnPostRestore(NONE)")

    # gone: judged by the uid the set recorded for it, not by who owns the directory now
    user_writer.stop()
    wait_until(lambda: not registered(vssctl), "the writer stayed registered")
    refused(f"uid {user.uid}, which the backup set recorded")

    # where the user may write, the same restore goes through
    os.chown(data, user.uid, user.gid)
    done = vssctl("restore", str(full), "--json")
    (outcome,) = json.loads(done.stdout)["components"]
    assert outcome["status"] == "ALL", outcome
    assert (data / "a.txt").read_text() == "alpha\n"
    assert (data / "a.txt").stat().st_uid == user.uid
