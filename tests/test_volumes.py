"""resolve_volume / list_mounts against the real mount table."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from snapd_vss.errors import InvalidArgs, NotFound
from snapd_vss.testing.loopdev import LoopFs, loop_filesystem, unmount_all
from snapd_vss.volumes import (
    is_mount_point,
    list_mounts,
    parse_mountinfo_line,
    resolve_volume,
    unescape,
)


def test_parse_line_with_optional_fields_and_escapes() -> None:
    line = (
        "36 35 98:0 /sub\\040vol /mnt/my\\040disk rw,noatime master:1 shared:7 "
        "- btrfs /dev/loop\\0403 rw,space_cache=v2\n"
    )
    volume = parse_mountinfo_line(line)
    assert volume.mount_point == "/mnt/my disk"
    assert volume.root == "/sub vol"
    assert volume.fs_type == "btrfs"
    assert volume.source == "/dev/loop 3"
    assert volume.major_minor == "98:0"
    assert volume.options == "rw,noatime"
    assert unescape("a\\011b\\012c\\134d") == "a\tb\nc\\d"


def test_parse_line_without_optional_fields() -> None:
    volume = parse_mountinfo_line("22 27 0:21 / /proc rw,relatime - proc proc rw")
    assert (volume.mount_point, volume.fs_type, volume.source) == ("/proc", "proc", "proc")


def test_list_mounts_has_root() -> None:
    assert "/" in [v.mount_point for v in list_mounts()]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgs, match="No volume given"):
        resolve_volume("")
    with pytest.raises(InvalidArgs, match="not an absolute path"):
        resolve_volume("relative/path")
    with pytest.raises(NotFound, match="does not exist"):
        resolve_volume("/no/such/path/anywhere")


@pytest.fixture
def nested(ext4_volume: LoopFs) -> Iterator[tuple[LoopFs, str]]:
    """A tmpfs mounted at '<ext4>/a dir/with space' inside the ext4 volume."""
    inner = os.path.join(ext4_volume.mount_point, "a dir", "with space")
    os.makedirs(inner)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "snapd-vss test", inner], check=True)
    try:
        yield ext4_volume, inner
    finally:
        unmount_all(inner)


@pytest.mark.root
def test_nested_mounts_and_spaces(nested: tuple[LoopFs, str]) -> None:
    outer, inner = nested
    volume = resolve_volume(os.path.join(outer.mount_point, "a dir"))
    assert volume.mount_point == outer.mount_point
    assert volume.fs_type == "ext4"
    assert volume.source == outer.device
    os.mkdir(os.path.join(inner, "deeper"))
    for path in (inner, os.path.join(inner, "deeper"), inner + "/deeper/../"):
        volume = resolve_volume(path)
        assert volume.mount_point == inner
        assert volume.fs_type == "tmpfs"
        assert volume.source == "snapd-vss test"
    assert is_mount_point(inner)
    assert not is_mount_point(os.path.join(inner, "deeper"))


@pytest.mark.root
def test_symlinks_are_resolved(nested: tuple[LoopFs, str]) -> None:
    outer, inner = nested
    link = os.path.join(outer.mount_point, "link")
    os.symlink(inner, link)
    assert resolve_volume(link).mount_point == inner


@pytest.mark.root
def test_overmounted_point_resolves_to_the_top_mount(nested: tuple[LoopFs, str]) -> None:
    _outer, inner = nested
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "on-top", inner], check=True)
    assert resolve_volume(inner).source == "on-top"


@pytest.mark.root
def test_loop_filesystem_cleans_up_after_a_failure(tmp_path: object) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        loop_filesystem("ext4", 64, str(tmp_path)) as fs,
    ):
        nested = os.path.join(fs.mount_point, "inner")
        os.mkdir(nested)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "x", nested], check=True)
        open(os.path.join(fs.mount_point, "busy"), "w").close()
        raise RuntimeError("boom")
    assert not os.path.exists(fs.workdir)
    assert not any(v.mount_point.startswith(fs.workdir) for v in list_mounts())
    listed = subprocess.run(["losetup", "-j", fs.image], capture_output=True, text=True)
    assert listed.stdout == ""
