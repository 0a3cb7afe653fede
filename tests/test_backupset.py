"""Backup sets in-process: selection, writing, verification, tampering, chains.

A plain directory tree stands in for the exposed snapshot (the daemon tests use real
btrfs snapshots); the set is checked with the reader and with GNU tar.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from snapd_vss.backupset import (
    BackupSet,
    BackupSetWriter,
    BaseRef,
    ChecksumMismatch,
    ComponentRecord,
    Compression,
    EntryType,
    InvalidBackupSet,
    Manifest,
    ManifestInvalid,
    SnapshotMount,
    SpecKind,
    SpecRecord,
    UnexpectedMember,
    UnsafeLink,
    UnsafePath,
    index_by_path,
    select,
)
from snapd_vss.backupset.archive import zstd_available
from snapd_vss.documents import BackupComponents
from snapd_vss.documents.backup_components import utc_timestamp
from snapd_vss.errors import InvalidDocument
from snapd_vss.vocabulary import BackupType


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A 'volume' with an application directory in it."""
    volume = tmp_path / "vol"
    app = volume / "app"
    (app / "sub").mkdir(parents=True)
    (app / "main.db").write_bytes(b"database" * 1000)
    (app / "main.db-wal").write_bytes(b"wal")
    (app / "main.lock").write_text("lock")
    (app / "sub" / "notes.txt").write_text("notes")
    (app / "sub" / "skip.tmp").write_text("tmp")
    (volume / "outside.txt").write_text("secret outside the component")
    os.symlink("../outside.txt", app / "out-link")
    os.symlink("sub/notes.txt", app / "in-link")
    os.chmod(app / "main.db", 0o640)
    os.setxattr(app / "main.db", "user.origin", b"\x00\xffbinary")
    return volume


def _snapshot(tree: Path, tmp_path: Path, name: str = "snap") -> SnapshotMount:
    """A copy of the volume, as a snapshot would show it."""
    root = tmp_path / name
    shutil.copytree(tree, root, symlinks=True)
    for path in [root, *root.rglob("*")]:
        source = tree / path.relative_to(root)
        if not path.is_symlink():
            st = os.lstat(source)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    return SnapshotMount(str(tree), str(root), "snap-1")


APP_SPECS = [
    SpecRecord(SpecKind.DATABASE, "", "main.db", False),
    SpecRecord(SpecKind.LOG, "", "main.db-wal", False),
    SpecRecord(SpecKind.FILES, "", "*", True),
]


def _specs(tree: Path) -> list[SpecRecord]:
    return [SpecRecord(s.kind, str(tree / "app"), s.filespec, s.recursive) for s in APP_SPECS]


def _excludes(tree: Path) -> list[SpecRecord]:
    return [
        SpecRecord(SpecKind.FILES, str(tree / "app"), "*.lock", False),
        SpecRecord(SpecKind.FILES, str(tree / "app"), "*.tmp", True),
    ]


def _record(name: str = "main") -> ComponentRecord:
    return ComponentRecord(
        instance_id="inst-1",
        writer_id="wid-1",
        writer_name="Test writer",
        logical_path="db",
        name=name,
        type="DATABASE",
        volume="",
        snapshot_id="snap-1",
        original_root="",
        snapshot_root="",
        archive="",
    )


def make_set(
    destination: Path,
    tree: Path,
    mount: SnapshotMount,
    backup_type: BackupType = BackupType.FULL,
    base: BackupSet | None = None,
    compression: Compression = Compression.NONE,
) -> BackupSet:
    manifest = Manifest(
        set_id=str(uuid.uuid4()),
        created_at=utc_timestamp(),
        backup_type=backup_type,
        compression=compression,
    )
    base_files = None
    if base is not None:
        manifest.base = BaseRef(
            base.id,
            base.backup_type,
            base.path,
            os.path.relpath(base.path, destination),
        )
        base_files = index_by_path(base.components)
    writer = BackupSetWriter(str(destination), manifest)
    selection = select(_specs(tree), _excludes(tree), [mount])
    record = _record()
    record.file_specs, record.excludes = _specs(tree), _excludes(tree)
    writer.add_component(record, selection, base_files)
    writer.set_backup_components(BackupComponents(backup_type=backup_type).to_xml())
    return BackupSet.open(writer.commit())


def test_selection_takes_specs_honours_excludes_keeps_links(tree: Path, tmp_path: Path) -> None:
    mount = _snapshot(tree, tmp_path)
    selection = select(_specs(tree), _excludes(tree), [mount])
    kinds = {f.relative: f.type for f in selection.files}
    assert kinds == {
        "main.db": EntryType.FILE,
        "main.db-wal": EntryType.FILE,
        "sub": EntryType.DIR,
        "sub/notes.txt": EntryType.FILE,
        "out-link": EntryType.SYMLINK,
        "in-link": EntryType.SYMLINK,
    }
    assert all(f.source.startswith(mount.root) for f in selection.files)
    assert selection.original_root == str(tree / "app")
    assert any("main.lock" in s and "excluded" in s for s in selection.skipped)


def test_a_spec_directory_behind_a_link_in_the_snapshot_is_not_followed(
    tree: Path, tmp_path: Path
) -> None:
    (tree / "app" / "conf").mkdir()
    mount = _snapshot(tree, tmp_path)
    # In the snapshot the directory is a link out of it (e.g. replaced before the snapshot).
    os.rmdir(Path(mount.root, "app", "conf"))
    os.symlink("/etc", Path(mount.root, "app", "conf"))
    spec = SpecRecord(SpecKind.FILES, str(tree / "app" / "conf"), "*", True)
    selection = select([spec], [], [mount])
    assert selection.files == []
    assert "symbolic link" in selection.skipped[0]


def test_full_set_verifies_and_plain_tar_reads_it(tree: Path, tmp_path: Path) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    report = backup.verify(allow_outside_links=True)
    assert report.files == 3
    assert report.outside_links == ["Test writer: db/main: out-link -> ../outside.txt"]
    (component,) = backup.components
    main = next(e for e in component.entries if e.path == "main.db")
    assert main.mode == 0o640 and main.size == 8000
    with backup.open_entry(component, main) as data:
        assert data.read() == b"database" * 1000
    # Ordinary tools: GNU tar lists and extracts it, xattrs included.
    archive = backup.archive_path(component)
    listing = subprocess.run(["tar", "-tf", archive], capture_output=True, text=True, check=True)
    assert "main.db" in listing.stdout.split()
    out = tmp_path / "extracted"
    out.mkdir()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "-xpf", archive, "-C", str(out)], check=True
    )
    assert (out / "main.db").read_bytes() == b"database" * 1000
    assert os.getxattr(out / "main.db", "user.origin") == b"\x00\xffbinary"
    assert os.readlink(out / "out-link") == "../outside.txt"
    assert (out / "main.db").stat().st_mtime_ns == (tree / "app" / "main.db").stat().st_mtime_ns
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["format"] == "snapd-vss-backup-set" and manifest["version"] == 1


def test_a_link_out_of_the_component_is_kept_as_a_link_and_refused_by_default(
    tree: Path, tmp_path: Path
) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    (component,) = backup.components
    link = next(e for e in component.entries if e.path == "out-link")
    assert link.type is EntryType.SYMLINK and link.link_target == "../outside.txt"
    with tarfile.open(backup.archive_path(component)) as tar:
        assert tar.getmember("out-link").issym()
        names = tar.getnames()
    assert "outside.txt" not in names and not any("secret" in n for n in names)
    with pytest.raises(UnsafeLink):
        backup.verify()
    with pytest.raises(InvalidDocument):  # the named error class vssctl maps
        backup.verify()


def _tamper_archive(backup: BackupSet, change: bytes, at: int) -> None:
    path = backup.archive_path(backup.components[0])
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(change)


def test_one_changed_byte_is_refused(tree: Path, tmp_path: Path) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    main = next(e for e in backup.components[0].entries if e.path == "main.db")
    _tamper_archive(backup, b"X", main.offset + 100)
    with pytest.raises(ChecksumMismatch):
        backup.verify(allow_outside_links=True)
    with pytest.raises(ChecksumMismatch), backup.open_entry(backup.components[0], main) as data:
        data.read()


def test_an_extra_file_is_refused(tree: Path, tmp_path: Path) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    (tmp_path / "set" / "data" / "evil.tar").write_bytes(b"x")
    with pytest.raises(UnexpectedMember):
        backup.verify(allow_outside_links=True)


def test_an_extra_member_in_the_archive_is_refused(tree: Path, tmp_path: Path) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    component = backup.components[0]
    archive = backup.archive_path(component)
    rebuilt = tmp_path / "rebuilt.tar"
    with tarfile.open(archive) as src, tarfile.open(rebuilt, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            dst.addfile(member, src.extractfile(member) if member.isreg() else None)
        extra = tarfile.TarInfo("planted.sh")
        extra.size = 3
        dst.addfile(extra, fileobj=__import__("io").BytesIO(b"bad"))
    os.replace(rebuilt, archive)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    manifest["components"][0]["archive_size"] = os.path.getsize(archive)
    (tmp_path / "set" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UnexpectedMember, match=r"planted\.sh"):
        BackupSet.open(str(tmp_path / "set")).verify(allow_outside_links=True)


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "/etc/passwd", "sub/../../x", "./main.db", "a//b"],
)
def test_a_crafted_manifest_with_an_escaping_path_is_refused(
    tree: Path, tmp_path: Path, path: str
) -> None:
    make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    manifest_path = tmp_path / "set" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["components"][0]["entries"][0]["path"] = path
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UnsafePath):
        BackupSet.open(str(tmp_path / "set")).verify(allow_outside_links=True)


def test_an_entry_under_a_link_is_refused(tree: Path, tmp_path: Path) -> None:
    make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    manifest_path = tmp_path / "set" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entries = manifest["components"][0]["entries"]
    file_entry = next(e for e in entries if e["path"] == "sub/notes.txt")
    entries.append({**file_entry, "path": "out-link/notes.txt"})
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UnsafePath, match="out-link"):
        BackupSet.open(str(tmp_path / "set")).verify(allow_outside_links=True)


def test_the_manifest_schema_is_strict(tree: Path, tmp_path: Path) -> None:
    make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    manifest_path = tmp_path / "set" / "manifest.json"
    original = manifest_path.read_text()
    for change in (
        lambda m: m.update(version=2),
        lambda m: m.update(surprise=1),
        lambda m: m["components"][0]["entries"][0].update(mode="0644"),
        lambda m: m["components"][0]["entries"][0].update(type="fifo"),
    ):
        manifest = json.loads(original)
        change(manifest)
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(ManifestInvalid):
            BackupSet.open(str(tmp_path / "set"))
    manifest_path.write_text("{not json")
    with pytest.raises(ManifestInvalid):
        BackupSet.open(str(tmp_path / "set"))


def test_writer_uid_is_optional_and_old_manifests_still_read(tree: Path, tmp_path: Path) -> None:
    backup = make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    manifest_path = tmp_path / "set" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    writer = {
        "instance_id": "i-1",
        "writer_id": "w-1",
        "name": "n",
        "instance_name": "main",
        "document": "writers/i-1.xml",
    }
    manifest["writers"] = [writer]  # as sets made before the uid was recorded
    manifest_path.write_text(json.dumps(manifest))
    assert BackupSet.open(backup.path).manifest.writers[0].uid is None
    manifest["writers"] = [writer | {"uid": 1234}]
    manifest_path.write_text(json.dumps(manifest))
    read = BackupSet.open(backup.path).manifest
    assert read.writers[0].uid == 1234
    assert json.loads(read.to_json())["writers"][0]["uid"] == 1234
    read.writers[0].uid = None
    assert "uid" not in json.loads(read.to_json())["writers"][0]  # absent, not null
    for bad in ("1234", -1, True):
        manifest["writers"] = [writer | {"uid": bad}]
        manifest_path.write_text(json.dumps(manifest))
        with pytest.raises(ManifestInvalid, match="uid"):
            BackupSet.open(backup.path)


def _live(tree: Path) -> SnapshotMount:
    """The tree read in place: unlike a copy, it keeps ctimes (as a btrfs snapshot does)."""
    return SnapshotMount(str(tree), str(tree), "live")


def test_incremental_stores_only_changes_and_restores_through_the_chain(
    tree: Path, tmp_path: Path
) -> None:
    full = make_set(tmp_path / "full", tree, _live(tree))
    (tree / "app" / "sub" / "notes.txt").write_text("notes, changed")
    (tree / "app" / "sub" / "new.txt").write_text("new")
    os.unlink(tree / "app" / "main.db-wal")
    incremental = make_set(
        tmp_path / "inc",
        tree,
        _live(tree),
        BackupType.INCREMENTAL,
        base=full,
    )
    assert [s.id for s in incremental.chain()] == [full.id, incremental.id]
    (component,) = incremental.components
    stored = {e.path for e in component.entries if e.data_set_id == incremental.id}
    assert stored == {"sub/notes.txt", "sub/new.txt"}
    files = {e.path for e in component.entries if e.type is EntryType.FILE}
    assert files == {"main.db", "sub/notes.txt", "sub/new.txt"}  # the WAL is gone
    with tarfile.open(incremental.archive_path(component)) as tar:
        assert {m.name for m in tar if m.isreg()} == stored
    main = next(e for e in component.entries if e.path == "main.db")
    assert main.data_set_id == full.id
    with incremental.open_entry(component, main) as data:
        assert data.read() == b"database" * 1000
    report = incremental.verify(allow_outside_links=True)
    assert report.sets == [full.id, incremental.id]
    # Moving the whole tree keeps the chain (the base is found by its relative path).
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(tmp_path / "full"), moved / "full")
    shutil.move(str(tmp_path / "inc"), moved / "inc")
    assert BackupSet.open(str(moved / "inc")).verify(allow_outside_links=True).sets[0] == full.id


def test_a_missing_base_breaks_the_chain(tree: Path, tmp_path: Path) -> None:
    full = make_set(tmp_path / "full", tree, _live(tree))
    (tree / "app" / "main.db").write_bytes(b"changed")
    incremental = make_set(tmp_path / "inc", tree, _live(tree), BackupType.INCREMENTAL, full)
    shutil.rmtree(tmp_path / "full")
    with pytest.raises(InvalidBackupSet, match="neither"):
        BackupSet.open(incremental.path).verify(allow_outside_links=True)


@pytest.mark.skipif(bool(zstd_available()), reason="zstd is not available")
def test_zstd_compressed_set(tree: Path, tmp_path: Path) -> None:
    backup = make_set(
        tmp_path / "set", tree, _snapshot(tree, tmp_path), compression=Compression.ZSTD
    )
    (component,) = backup.components
    assert component.archive.endswith(".tar.zst")
    assert backup.verify(allow_outside_links=True).files == 3
    main = next(e for e in component.entries if e.path == "main.db")
    with backup.open_entry(component, main) as data:
        assert data.read() == b"database" * 1000
    listing = subprocess.run(
        f"zstd -dc {backup.archive_path(component)} | tar -tf -",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "main.db" in listing.stdout.split()


def test_an_existing_destination_is_refused(tree: Path, tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "file").write_text("x")
    with pytest.raises(InvalidDocument.__mro__[1]):  # VssError
        make_set(tmp_path / "set", tree, _snapshot(tree, tmp_path))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".set.partial-")]
