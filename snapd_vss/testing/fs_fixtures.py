"""Pytest fixtures: real filesystems on loop devices (function scope, sparse images).

``btrfs_volume``, ``ext4_volume``, ``xfs_volume`` yield a :class:`LoopFs` whose
``mount_point`` is a fresh mounted filesystem; ``loop_fs_factory`` makes more.
Tests using them are skipped when not run as root.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from snapd_vss.testing.loopdev import LoopFs, loop_filesystem

WORKDIR = "/var/tmp"


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices and mounts")


@pytest.fixture
def btrfs_volume() -> Iterator[LoopFs]:
    _need_root()
    with loop_filesystem("btrfs", 256, WORKDIR) as fs:
        yield fs


@pytest.fixture
def ext4_volume() -> Iterator[LoopFs]:
    _need_root()
    with loop_filesystem("ext4", 256, WORKDIR) as fs:
        yield fs


@pytest.fixture
def xfs_volume() -> Iterator[LoopFs]:
    _need_root()
    with loop_filesystem("xfs", 512, WORKDIR) as fs:
        yield fs


@pytest.fixture
def loop_fs_factory() -> Iterator[Callable[..., LoopFs]]:
    """``make(fs_type, size_mb=256, **kw) -> LoopFs``; all torn down after the test."""
    _need_root()
    with contextlib.ExitStack() as stack:

        def make(fs_type: str, size_mb: int = 256, **kwargs: Any) -> LoopFs:
            return stack.enter_context(loop_filesystem(fs_type, size_mb, WORKDIR, **kwargs))

        yield make
