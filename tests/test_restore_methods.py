"""The restore engine on real filesystems: one test per restore method, and the safety rules."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss import errors
from snapd_vss.backupset import ChecksumMismatch, Compression, InvalidBackupSet
from snapd_vss.documents import AlternateLocationMapping
from snapd_vss.restore import pending
from snapd_vss.restore.engine import ComponentJob, RestoreEngine
from snapd_vss.restore.files import TEMP_PREFIX
from snapd_vss.restore.report import ComponentOutcome
from snapd_vss.restore.safety import ROOT, Credentials, writer_credentials
from snapd_vss.restore.source import open_backup_set
from snapd_vss.restore.testsets import SetSpec, make_set
from snapd_vss.testing.bus import LocalUser
from snapd_vss.testing.loopdev import LoopFs
from snapd_vss.vocabulary import RestoreMethod, RestoreTarget

M = RestoreMethod


@pytest.fixture
def sets_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="snapd-vss-sets-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pending_root(sets_dir: Path) -> str:
    return str(sets_dir / "pending")


def populate(data: Path) -> None:
    (data / "sub").mkdir(parents=True, exist_ok=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "b.bin").write_bytes(os.urandom(300_000))
    (data / "sub" / "c.txt").write_text("gamma\n")
    os.chmod(data / "sub" / "c.txt", 0o640)
    os.symlink("sub/c.txt", data / "link")


def snapshot_of(data: Path) -> dict[str, bytes | str]:
    """Every file's bytes (and link's target) below ``data``, by relative path."""
    found: dict[str, bytes | str] = {}
    for directory, _dirs, names in os.walk(data):
        for name in names:
            path = Path(directory) / name
            key = str(path.relative_to(data))
            found[key] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    return found


def backed_up(volume: LoopFs, sets_dir: Path, **spec_args: object) -> tuple[Path, str, SetSpec]:
    data = Path(volume.mount_point) / "data"
    populate(data)
    spec = SetSpec(str(data), **spec_args)  # type: ignore[arg-type]
    path = str(sets_dir / "full")
    make_set(path, spec)
    return data, path, spec


async def run(
    set_path: str,
    method: RestoreMethod,
    credentials: Credentials = ROOT,
    pending_root: str | None = None,
    **job_args: object,
) -> ComponentOutcome:
    source = open_backup_set(set_path)
    source.verify()
    (component,) = source.components
    engine = RestoreEngine(source, pending_root=pending_root)
    job = ComponentJob(component, method, credentials, **job_args)  # type: ignore[arg-type]
    return await engine.restore(job)


class Holder:
    """A real process that keeps a file open (``fd``) or only mapped (``map``)."""

    def __init__(self, path: Path, how: str) -> None:
        code = (
            "import mmap,sys,time\n"
            "f=open(sys.argv[1],'rb')\n"
            "m=mmap.mmap(f.fileno(),0,access=mmap.ACCESS_READ) if sys.argv[2]=='map' else None\n"
            "f.close() if m else None\n"
            "print('ready',flush=True)\n"
            "time.sleep(600)\n"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(path), how], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


# ----- one test per restore method -------------------------------------------------------


async def test_restore_if_not_there_skips_the_component_when_a_file_exists(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").unlink()
    (data / "sub" / "c.txt").write_text("changed\n")
    outcome = await run(path, M.RESTORE_IF_NOT_THERE)
    assert outcome.ok and outcome.status.value == "NONE" and outcome.restored == []
    assert str(data / "sub" / "c.txt") in outcome.message  # names what exists
    assert str(data / "b.bin") in outcome.message
    assert not (data / "a.txt").exists()  # not even the missing file: all alike
    assert (data / "sub" / "c.txt").read_text() == "changed\n"
    assert len(outcome.skipped) == 4  # a.txt, b.bin, sub/c.txt, link


async def test_restore_if_not_there_restores_when_no_file_exists(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    before = snapshot_of(data)
    shutil.rmtree(data / "sub")
    for name in ("a.txt", "b.bin", "link"):
        (data / name).unlink()
    (data / "unrelated.txt").write_text("not in the set\n")
    outcome = await run(path, M.RESTORE_IF_NOT_THERE)
    assert outcome.ok and outcome.status.value == "ALL", outcome
    assert snapshot_of(data) == before | {"unrelated.txt": b"not in the set\n"}  # no prune


async def test_restore_if_can_replace_in_place(btrfs_volume: LoopFs, sets_dir: Path) -> None:
    data, path, _ = backed_up(btrfs_volume, sets_dir)
    before = snapshot_of(data)
    (data / "b.bin").write_bytes(b"damaged")
    (data / "new.txt").write_text("created after the backup\n")
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
    assert outcome.ok, outcome
    assert snapshot_of(data) == before  # new.txt matched the component's spec: removed
    assert outcome.removed == [str(data / "new.txt")]
    assert oct((data / "sub" / "c.txt").stat().st_mode & 0o777) == oct(0o640)


@pytest.mark.parametrize("how", ["fd", "map"])
async def test_restore_if_can_replace_refuses_files_in_use(
    ext4_volume: LoopFs, sets_dir: Path, how: str
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("newer\n")
    with Holder(data / "b.bin", how) as holder:
        outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
        assert not outcome.ok
        assert outcome.status.value == "NONE"
        assert f"pid {holder.process.pid}" in outcome.message
    assert (data / "a.txt").read_text() == "newer\n"  # all files of a component alike


async def test_restore_if_can_replace_goes_to_the_alternate_location_when_in_use(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    alternate = Path(ext4_volume.mount_point) / "restored"
    data, path, _ = backed_up(ext4_volume, sets_dir)
    mapping = AlternateLocationMapping(str(data), "*", True, str(alternate))
    before = snapshot_of(data)
    with Holder(data / "a.txt", "fd"):
        outcome = await run(path, M.RESTORE_IF_CAN_REPLACE, mappings=[mapping])
    assert outcome.ok and outcome.placement == "alternate"
    assert outcome.mappings_used == [mapping]
    assert snapshot_of(alternate) == before


async def test_restore_to_alternate_location(xfs_volume: LoopFs, sets_dir: Path) -> None:
    data, path, _ = backed_up(xfs_volume, sets_dir)
    before = snapshot_of(data)
    alternate = Path(xfs_volume.mount_point) / "elsewhere"
    mapping = AlternateLocationMapping(str(data), "*", True, str(alternate))
    (data / "a.txt").write_text("untouched\n")
    outcome = await run(path, M.RESTORE_TO_ALTERNATE_LOCATION, mappings=[mapping])
    assert outcome.ok
    assert snapshot_of(alternate) == before
    assert (data / "a.txt").read_text() == "untouched\n"
    # a mapping that does not cover every file fails the component, nothing written
    partial = AlternateLocationMapping(str(data), "*.txt", False, str(alternate) + "2")
    outcome = await run(path, M.RESTORE_TO_ALTERNATE_LOCATION, mappings=[partial])
    assert not outcome.ok and not os.path.exists(str(alternate) + "2")


async def test_writer_restore_target_alternate(ext4_volume: LoopFs, sets_dir: Path) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    alternate = Path(ext4_volume.mount_point) / "alt"
    mapping = AlternateLocationMapping(str(data), "*", True, str(alternate))
    outcome = await run(
        path, M.RESTORE_IF_CAN_REPLACE, mappings=[mapping], target=RestoreTarget.ALTERNATE
    )
    assert outcome.ok and outcome.placement == "alternate"
    assert (alternate / "a.txt").read_text() == "alpha\n"


async def test_restore_at_reboot_stages_and_applies(
    ext4_volume: LoopFs, sets_dir: Path, pending_root: str
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    before = snapshot_of(data)
    (data / "a.txt").write_text("until the reboot\n")
    outcome = await run(path, M.RESTORE_AT_REBOOT, pending_root=pending_root)
    assert outcome.ok and outcome.placement == "pending" and outcome.staged
    assert (data / "a.txt").read_text() == "until the reboot\n"
    (plan,) = pending.list_pending(pending_root)
    assert plan.id == outcome.staged and plan.summary()["files"] == 3
    (applied,) = pending.apply_all(pending_root)
    assert applied.ok, applied
    assert snapshot_of(data) == before
    assert pending.list_pending(pending_root) == []


async def test_pending_restore_can_be_cancelled(
    ext4_volume: LoopFs, sets_dir: Path, pending_root: str
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("kept\n")
    outcome = await run(path, M.RESTORE_AT_REBOOT, pending_root=pending_root)
    pending.cancel(outcome.staged, pending_root)
    assert pending.apply_all(pending_root) == []
    assert (data / "a.txt").read_text() == "kept\n"
    with pytest.raises(errors.NotFound):
        pending.cancel(outcome.staged, pending_root)


async def test_restore_at_reboot_if_cannot_replace(
    ext4_volume: LoopFs, sets_dir: Path, pending_root: str
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("x\n")
    outcome = await run(path, M.RESTORE_AT_REBOOT_IF_CANNOT_REPLACE, pending_root=pending_root)
    assert outcome.ok and outcome.placement == "original"  # nothing in use: now
    assert (data / "a.txt").read_text() == "alpha\n"
    (data / "a.txt").write_text("y\n")
    with Holder(data / "b.bin", "fd"):
        outcome = await run(path, M.RESTORE_AT_REBOOT_IF_CANNOT_REPLACE, pending_root=pending_root)
    assert outcome.ok and outcome.placement == "pending"
    assert (data / "a.txt").read_text() == "y\n"
    (applied,) = pending.apply_all(pending_root)
    assert applied.ok and (data / "a.txt").read_text() == "alpha\n"


async def test_custom_places_nothing(ext4_volume: LoopFs, sets_dir: Path) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("the writer's business\n")
    outcome = await run(path, M.CUSTOM)
    assert outcome.ok and outcome.placement == "none" and outcome.status.value == "NONE"
    assert (data / "a.txt").read_text() == "the writer's business\n"


# ----- safety ----------------------------------------------------------------------------


async def test_tampered_set_is_refused_before_any_file_is_touched(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("current\n")
    archive = next((Path(path) / "data").iterdir())
    raw = bytearray(archive.read_bytes())
    at = raw.index(b"alpha")
    raw[at] ^= 0x20
    archive.write_bytes(bytes(raw))
    source = open_backup_set(path)
    with pytest.raises(ChecksumMismatch):
        source.verify()
    with pytest.raises(errors.InvalidState):
        list(source.chunks(source.components[0], source.components[0].entries[0]))
    assert (data / "a.txt").read_text() == "current\n"


async def test_symlink_out_of_the_component_is_refused(ext4_volume: LoopFs, sets_dir: Path) -> None:
    data = Path(ext4_volume.mount_point) / "data"
    populate(data)
    os.symlink("/etc/passwd", data / "escape")
    path = str(sets_dir / "full")
    make_set(path, SetSpec(str(data)))
    with pytest.raises(InvalidBackupSet, match="outside"):
        open_backup_set(path).verify()


async def test_destination_directory_that_is_a_symlink_is_refused(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    elsewhere = Path(ext4_volume.mount_point) / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(data / "sub")
    os.symlink(elsewhere, data / "sub")
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
    assert not outcome.ok and outcome.error_code == "AccessDenied"
    assert "symbolic link" in outcome.message
    assert list(elsewhere.iterdir()) == []
    assert outcome.restored == []


async def test_nonroot_writer_cannot_direct_files_where_it_cannot_write(
    ext4_volume: LoopFs, sets_dir: Path, nonroot_user: LocalUser
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("current\n")
    user = Credentials.of_uid(nonroot_user.uid)
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE, credentials=user)
    assert not outcome.ok and outcome.error_code == "AccessDenied"
    assert str(data) in outcome.message and nonroot_user.name in outcome.message
    assert (data / "a.txt").read_text() == "current\n"
    # a mapping into a root-only directory is refused the same way
    target = Path(ext4_volume.mount_point) / "rootonly"
    target.mkdir(mode=0o755)
    mapping = AlternateLocationMapping(str(data), "*", True, str(target / "x"))
    outcome = await run(path, M.RESTORE_TO_ALTERNATE_LOCATION, credentials=user, mappings=[mapping])
    assert outcome.error_code == "AccessDenied" and str(target) in outcome.message
    assert not (target / "x").exists()
    # where the user may write (and reach: the volume's private workdir is 0700), it works
    os.chmod(ext4_volume.workdir, 0o755)
    os.chmod(ext4_volume.mount_point, 0o755)
    os.chown(target, nonroot_user.uid, nonroot_user.gid)
    outcome = await run(path, M.RESTORE_TO_ALTERNATE_LOCATION, credentials=user, mappings=[mapping])
    assert outcome.ok, outcome
    assert (target / "x" / "a.txt").read_text() == "alpha\n"


async def test_a_writer_not_registered_is_judged_by_the_uid_the_set_recorded(
    ext4_volume: LoopFs, sets_dir: Path, nonroot_user: LocalUser
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir, uid=nonroot_user.uid)
    (data / "a.txt").write_text("current\n")
    source = open_backup_set(path)
    (component,) = source.components
    recorded = source.writer_uid(component.instance_id)
    assert recorded == nonroot_user.uid
    # registered now: its live Uid decides (a change since the backup is noted)
    credentials, note = writer_credentials(0, recorded, component.original_root)
    assert credentials == ROOT and f"uid {nonroot_user.uid} at backup time" in note
    # not registered: the recorded uid, not the owner of the (root-owned) directory
    credentials, note = writer_credentials(None, recorded, component.original_root)
    assert credentials.uid == nonroot_user.uid and "recorded" in note
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE, credentials=credentials, note=note)
    assert outcome.error_code == "AccessDenied" and nonroot_user.name in outcome.message
    assert outcome.notes == [note]
    assert (data / "a.txt").read_text() == "current\n"
    # an old set (no uid recorded): the directory owner is the last, announced, guess
    os.chown(data, nonroot_user.uid, nonroot_user.gid)
    credentials, note = writer_credentials(None, None, component.original_root)
    assert credentials.uid == nonroot_user.uid and "GUESSED" in note and str(data) in note


def temporaries(root: Path) -> list[str]:
    return [n for _d, _s, names in os.walk(root) for n in names if n.startswith(TEMP_PREFIX)]


async def test_a_conflict_is_found_before_anything_is_written(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    (data / "a.txt").write_text("old\n")
    (data / "b.bin").unlink()
    (data / "b.bin").mkdir()  # a directory where the set has a file
    (data / "b.bin" / "keep").write_text("k")
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
    assert outcome.status.value == "NONE" and outcome.restored == []
    assert outcome.failed == [f"{data / 'b.bin'}: is a directory now; move it away first"]
    assert str(data / "a.txt") in outcome.not_restored
    assert (data / "a.txt").read_text() == "old\n"


async def test_half_way_failure_says_what_was_and_was_not_restored(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    before = snapshot_of(data)
    for name in ("a.txt", "b.bin", "sub/c.txt"):
        (data / name).write_text("old\n")
    # an immutable file cannot be replaced: its rename fails after others were renamed
    subprocess.run(["chattr", "+i", str(data / "b.bin")], check=True)
    try:
        outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
    finally:
        subprocess.run(["chattr", "-i", str(data / "b.bin")], check=True)
    assert outcome.status.value == "FAILED"
    assert outcome.failed and outcome.failed[0].startswith(str(data / "b.bin"))
    restored = set(outcome.restored)
    not_restored = set(outcome.not_restored)
    assert restored and restored.isdisjoint(not_restored)
    assert restored | not_restored | {str(data / "b.bin")} == {
        str(data / n) for n in ("a.txt", "b.bin", "sub/c.txt", "link")
    }
    for written in restored:
        relative = os.path.relpath(written, data)
        got = os.readlink(written) if os.path.islink(written) else Path(written).read_bytes()
        assert got == before[relative]
    for untouched in not_restored | {str(data / "b.bin")}:
        assert Path(untouched).read_text() == "old\n"
    assert temporaries(data) == []


async def test_content_changed_after_verify_leaves_nothing_under_a_real_name(
    ext4_volume: LoopFs, sets_dir: Path
) -> None:
    data, path, _ = backed_up(ext4_volume, sets_dir)
    for name in ("a.txt", "b.bin", "sub/c.txt"):
        (data / name).write_text("old\n")
    source = open_backup_set(path)
    source.verify()
    archive = next((Path(path) / "data").iterdir())
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"gamma")] ^= 0x20  # sub/c.txt, changed after the set was verified
    archive.write_bytes(bytes(raw))
    (component,) = source.components
    job = ComponentJob(component, M.RESTORE_IF_CAN_REPLACE, ROOT)
    outcome = await RestoreEngine(source).restore(job)
    assert outcome.status.value == "NONE" and outcome.restored == []
    assert "sha256" in outcome.failed[0] and outcome.failed[0].startswith(str(data / "sub"))
    for name in ("a.txt", "b.bin", "sub/c.txt"):  # every file written before it: undone
        assert (data / name).read_text() == "old\n"
    assert temporaries(data) == []


@pytest.mark.parametrize("compression", [Compression.NONE, Compression.ZSTD])
async def test_large_files_are_read_back_and_checked_before_the_rename(
    ext4_volume: LoopFs, compression: Compression
) -> None:
    """Files over one MiB are copied (in the kernel, from a plain archive) and checked by
    reading the temporary back; one damaged after verify fails them all, none renamed."""
    data = Path(ext4_volume.mount_point) / "data"
    populate(data)
    big = {f"big-{i}.bin": os.urandom((3 << 20) + 17 * i) for i in range(3)}
    for name, content in big.items():
        (data / name).write_bytes(content)
    path = str(Path(ext4_volume.mount_point) / "set")  # same filesystem: a kernel copy
    make_set(path, SetSpec(str(data)), compression=compression)
    before = snapshot_of(data)
    for name in [*big, "a.txt"]:
        (data / name).write_text("old\n")
    outcome = await run(path, M.RESTORE_IF_CAN_REPLACE)
    assert outcome.ok, outcome
    assert snapshot_of(data) == before and temporaries(data) == []
    for name in [*big, "a.txt"]:
        (data / name).write_text("old\n")
    source = open_backup_set(path)
    source.verify()
    if compression is Compression.NONE:  # damage big-1.bin's bytes after the verify
        archive = next((Path(path) / "data").iterdir())
        with open(archive, "r+b") as f:
            raw = f.read()
            f.seek(raw.index(big["big-1.bin"][:64]) + (2 << 20))
            f.write(b"\0" * 8)
    else:  # the set's manifest says otherwise about big-1.bin
        (component,) = source.components
        entry = next(e for e in component.entries if e.path == "big-1.bin")
        index = component.entries.index(entry)
        component.entries[index] = dataclasses.replace(entry, sha256="0" * 64)
    (component,) = source.components
    outcome = await RestoreEngine(source).restore(
        ComponentJob(component, M.RESTORE_IF_CAN_REPLACE, ROOT)
    )
    assert outcome.status.value == "NONE" and outcome.restored == []
    assert outcome.failed[0].startswith(f"{data / 'big-1.bin'}: ") and "sha256" in outcome.failed[0]
    for name in [*big, "a.txt"]:
        assert (data / name).read_text() == "old\n"
    assert temporaries(data) == []


@pytest.mark.parametrize(
    ("fs", "compression"), [("ext4", Compression.NONE), ("btrfs", Compression.ZSTD)]
)
async def test_chain_restores_the_chosen_point(
    loop_fs_factory: object, sets_dir: Path, fs: str, compression: Compression
) -> None:
    volume: LoopFs = loop_fs_factory(fs)  # type: ignore[operator]
    data = Path(volume.mount_point) / "data"
    populate(data)
    spec = SetSpec(str(data))
    full = str(sets_dir / "full")
    make_set(full, spec, compression=compression)
    at_full = snapshot_of(data)
    time.sleep(0.01)
    (data / "a.txt").write_text("alpha, changed\n")
    (data / "sub" / "c.txt").unlink()
    (data / "d.txt").write_text("added\n")
    incremental = str(sets_dir / "incr")
    make_set(incremental, spec, base=full, compression=compression)
    at_incremental = snapshot_of(data)
    (data / "a.txt").write_text("damage\n")
    (data / "e.txt").write_text("after\n")
    (data / "b.bin").write_bytes(b"")
    outcome = await run(incremental, M.RESTORE_IF_CAN_REPLACE)
    assert outcome.ok, outcome
    assert snapshot_of(data) == at_incremental  # c.txt not resurrected, e.txt removed
    outcome = await run(full, M.RESTORE_IF_CAN_REPLACE)
    assert outcome.ok and snapshot_of(data) == at_full
