"""``vssctl backup`` as a subprocess against the real snapd-vssd on a private bus, on btrfs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from snapd_vss.backupset import (
    BackupSet,
    ChecksumMismatch,
    ComponentRecord,
    EntryType,
    UnsafeLink,
)
from snapd_vss.demo import WriterProcess as SqliteWriterProcess
from snapd_vss.examples.ledger import verify_copy
from snapd_vss.examples.sqlite_writer import LOGICAL_PATH
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.loopdev import LoopFs

REPO = Path(__file__).resolve().parent.parent

FILES_WRITER = """
import sys
from snapd_vss.writer import FileSpec, Writer, serve

class FilesWriter(Writer):
    writer_id = "0b6c1d2e-3f40-4a51-9b62-7c8d9e0f1a2b"
    name = "Files writer"

    def __init__(self, data: str) -> None:
        super().__init__(instance_name="files")
        self.add_file_group("files", "data", files=[FileSpec(data, "*", True)])
        self.add_exclude(FileSpec(data, "*.lock", True))

serve(FilesWriter(sys.argv[1]))
"""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, object]:
        value = json.loads(self.stdout)
        assert isinstance(value, dict)
        return value


@dataclass
class Vssctl:
    bus: PrivateBus

    def __call__(self, *args: str, check: bool = True) -> Result:
        env = dict(os.environ, PYTHONPATH=str(REPO))
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
        result = Result(done.returncode, done.stdout, done.stderr)
        if check:
            assert done.returncode == 0, f"vssctl {' '.join(args)} failed: {result}"
        return result

    def wait_for_writer(self, name: str, alive: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            writers = json.loads(self("list", "writers", "--json").stdout)
            if any(w["name"] == name for w in writers):
                return
            assert alive is None or alive.poll() is None, f"writer {name} exited"
            time.sleep(0.1)
        raise AssertionError(f"writer {name} never registered")


@pytest.fixture
def vssctl(private_bus: PrivateBus, vss_daemon: VssDaemon) -> Vssctl:
    return Vssctl(private_bus)


@pytest.fixture
def files_writer(private_bus: PrivateBus, btrfs_volume: LoopFs, tmp_path: Path) -> Iterator[Path]:
    """A writer owning <volume>/data (excludes *.lock), with a link out of its directory."""
    volume = Path(btrfs_volume.mount_point)
    data = volume / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("a" * 5000)
    (data / "b.txt").write_text("b")
    (data / "sub" / "c.txt").write_text("c")
    (data / "app.lock").write_text("lock")
    (volume / "outside.txt").write_text("not part of the component")
    os.symlink("../outside.txt", data / "link-out")
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=private_bus.address, PYTHONPATH=str(REPO))
    with open(tmp_path / "files-writer.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", FILES_WRITER, str(data)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield data
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _extract(backup: BackupSet, component: ComponentRecord, path: str, target: Path) -> None:
    entry = next(e for e in component.entries if e.path == path)
    with backup.open_entry(component, entry) as data, open(target, "wb") as out:
        while chunk := data.read(1 << 20):
            out.write(chunk)


def _stored(backup: BackupSet, component: ComponentRecord) -> set[str]:
    return {
        e.path for e in component.entries if e.type is EntryType.FILE and e.data_set_id == backup.id
    }


def test_full_backup_of_the_sqlite_writer_under_load(
    vssctl: Vssctl, sqlite_writer: SqliteWriterProcess, tmp_path: Path
) -> None:
    vssctl.wait_for_writer("Example SQLite ledger")
    deadline = time.monotonic() + 30
    while not sqlite_writer.db_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some load
    dest = tmp_path / "sets" / "full"
    result = vssctl(
        "backup",
        "--to",
        str(dest),
        "--component",
        f"Example SQLite ledger:{LOGICAL_PATH}",
        "--json",
    ).json()
    assert result["backup_type"] == "FULL"
    (report,) = result["components"]  # type: ignore[misc]
    assert report["succeeded"] is True and report["files_stored"] >= 1

    backup = BackupSet.open(str(dest))
    backup.verify()  # the ledger directory has no links: the strict check passes
    (component,) = backup.components
    assert component.writer_name == "Example SQLite ledger"
    assert component.original_root == str(sqlite_writer.db_path.parent)
    assert component.snapshot_root.endswith("/ledger")
    assert {s.kind.value for s in component.file_specs} == {"database", "log"}

    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    names = {e.path for e in component.entries if e.type is EntryType.FILE}
    assert "ledger.db" in names
    for name in names:
        _extract(backup, component, name, copy_dir / name)
    checked = verify_copy(copy_dir / "ledger.db")
    assert checked.consistent, checked
    frozen_at = sqlite_writer.frozen_at()
    assert frozen_at is not None and checked.last_ledger_id == frozen_at

    document = backup.backup_components()
    (writer,) = document.writers
    (entry,) = writer.components
    assert entry.backup_succeeded is True
    recorded = int(entry.backup_metadata.removeprefix("last_ledger_id="))
    assert recorded <= checked.last_ledger_id
    assert writer.instance_id in backup.writer_metadata()
    (recorded_writer,) = backup.manifest.writers  # its Uid at backup time, for the restore
    assert recorded_writer.instance_id == writer.instance_id
    assert recorded_writer.uid == os.getuid()  # the writer process runs as this test does
    listing = subprocess.run(
        ["tar", "-tf", backup.archive_path(component)], capture_output=True, text=True, check=True
    )
    assert "ledger.db" in listing.stdout.split()

    # One changed byte in the stored database: refused before anything is restored.
    db = next(e for e in component.entries if e.path == "ledger.db")
    with open(backup.archive_path(component), "r+b") as f:
        f.seek(db.offset + 5000)
        byte = f.read(1)
        f.seek(db.offset + 5000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatch):
        BackupSet.open(str(dest)).verify()


def test_excludes_links_and_an_incremental_chain(
    vssctl: Vssctl, files_writer: Path, tmp_path: Path
) -> None:
    vssctl.wait_for_writer("Files writer")
    sets = tmp_path / "sets"
    full_result = vssctl(
        "backup", "--to", str(sets / "full"), "--component", "Files writer:files/data", "--json"
    ).json()
    assert full_result["components"][0]["succeeded"] is True  # type: ignore[index]
    full = BackupSet.open(str(sets / "full"))
    (component,) = full.components
    kinds = {e.path: e.type for e in component.entries}
    assert kinds == {
        "a.txt": EntryType.FILE,
        "b.txt": EntryType.FILE,
        "sub": EntryType.DIR,
        "sub/c.txt": EntryType.FILE,
        "link-out": EntryType.SYMLINK,
    }  # app.lock is excluded; the link is a link
    link = next(e for e in component.entries if e.path == "link-out")
    assert link.link_target == "../outside.txt"
    archive = subprocess.run(
        ["tar", "-tvf", full.archive_path(component)], capture_output=True, text=True, check=True
    ).stdout
    assert "link-out -> ../outside.txt" in archive
    assert not [line for line in archive.splitlines() if line.endswith(" outside.txt")]
    with pytest.raises(UnsafeLink):
        full.verify()
    assert full.verify(allow_outside_links=True).files == 3

    (files_writer / "b.txt").write_text("b, changed")
    (files_writer / "d.txt").write_text("new")
    incremental_result = vssctl(
        "backup",
        "--to",
        str(sets / "inc1"),
        "--component",
        "Files writer:files",
        "--type",
        "incremental",
        "--base",
        str(sets / "full"),
        "--json",
    ).json()
    assert incremental_result["base_set_id"] == full.id
    incremental = BackupSet.open(str(sets / "inc1"))
    assert incremental.manifest.base is not None
    assert incremental.manifest.base.path == str(sets / "full")
    (inc_component,) = incremental.components
    assert _stored(incremental, inc_component) == {"b.txt", "d.txt"}
    assert incremental.backup_components().backup_type.value == "INCREMENTAL"
    report = incremental.verify(allow_outside_links=True)
    assert report.sets == [full.id, incremental.id]
    _extract(incremental, inc_component, "a.txt", tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == "a" * 5000

    (files_writer / "sub" / "c.txt").write_text("c, changed")
    vssctl(
        "backup",
        "--to",
        str(sets / "inc2"),
        "--component",
        "files:files/data",
        "--type",
        "incremental",
        "--base",
        str(sets / "inc1"),
    )
    inc2 = BackupSet.open(str(sets / "inc2"))
    assert _stored(inc2, inc2.components[0]) == {"sub/c.txt"}
    assert [s.id for s in inc2.chain()] == [full.id, incremental.id, inc2.id]

    differential_result = vssctl(
        "backup",
        "--to",
        str(sets / "diff"),
        "--component",
        "Files writer:files/data",
        "--type",
        "differential",
        "--base",
        str(sets / "inc2"),
        "--json",
    ).json()
    assert differential_result["base_set_id"] == full.id  # against the last FULL
    differential = BackupSet.open(str(sets / "diff"))
    assert _stored(differential, differential.components[0]) == {"b.txt", "d.txt", "sub/c.txt"}
    differential.verify(allow_outside_links=True)


def test_whole_volume_backup_honours_excludes(
    vssctl: Vssctl, files_writer: Path, btrfs_volume: LoopFs, tmp_path: Path
) -> None:
    vssctl.wait_for_writer("Files writer")
    dest = tmp_path / "vol-set"
    vssctl("backup", "--to", str(dest), "--volume", btrfs_volume.mount_point, "--type", "copy")
    backup = BackupSet.open(str(dest))
    by_type = {c.type: c for c in backup.components}
    assert set(by_type) == {"FILEGROUP", "VOLUME"}
    volume_files = {e.path for e in by_type["VOLUME"].entries}
    assert "outside.txt" in volume_files
    assert not any(p.startswith(".snapd-vss") for p in volume_files)
    assert not any(p.endswith(".lock") for p in volume_files)
    assert not any(p.startswith("data/") and p != "data" for p in volume_files)  # the writer's
    backup.verify(allow_outside_links=True)


def test_incremental_without_a_base_is_a_usage_error(vssctl: Vssctl, tmp_path: Path) -> None:
    result = vssctl(
        "backup",
        "--to",
        str(tmp_path / "x"),
        "--volume",
        "/",
        "--type",
        "incremental",
        check=False,
    )
    assert result.returncode == 3, result
    assert "--base" in result.stderr
    assert not (tmp_path / "x").exists()
