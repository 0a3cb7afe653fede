"""The guest harness's kernel choice and its ELF fix-up (host side; the guests themselves
boot in `./run test`: tests/guest/run and tests/guest/run --kernel 6.12)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from snapd_vss.testing.guest import GuestError, parse_args
from snapd_vss.testing.guest_kernels import (
    KernelError,
    select,
    version_need_flags,
    weaken_version_need,
)

TRUE = Path(shutil.which("true") or "/bin/true")
NEEDED = "GLIBC_2.2.5"  # every x86-64 glibc program needs this one
WEAK = 0x2


def test_weakening_a_version_need_keeps_the_program_working(tmp_path: Path) -> None:
    data = TRUE.read_bytes()
    before = version_need_flags(data, NEEDED)
    assert before and not any(flags & WEAK for flags in before)
    weakened = weaken_version_need(data, NEEDED)
    assert all(flags & WEAK for flags in version_need_flags(weakened, NEEDED))
    assert len(weakened) == len(data)
    assert sum(a != b for a, b in zip(data, weakened, strict=True)) == len(before)
    program = tmp_path / "true"
    program.write_bytes(weakened)
    program.chmod(0o755)
    assert subprocess.run([str(program)], check=False).returncode == 0


def test_a_version_not_needed_is_an_error() -> None:
    with pytest.raises(KernelError, match=r"does not need symbol version GLIBC_99\.0"):
        weaken_version_need(TRUE.read_bytes(), "GLIBC_99.0")


def test_not_an_elf_file_is_an_error() -> None:
    with pytest.raises(KernelError, match="not a 64-bit little-endian ELF"):
        weaken_version_need(b"#!/bin/sh\necho hi\n" + bytes(64), NEEDED)


def test_kernel_option() -> None:
    assert parse_args(["--kernel", "6.12", "-k", "xfs"]) == (
        "6.12",
        ["python", "-m", "pytest", "-p", "no:cacheprovider", "tests/guest", "-k", "xfs"],
    )
    assert parse_args(["--exec", "true"]) == (None, ["true"])
    with pytest.raises(GuestError, match=r"--kernel needs one of debian12, 6\.12"):
        parse_args(["--kernel", "5.10"])


def test_unknown_kernel_name(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="unknown guest kernel 'hurd'"):
        select("hurd", tmp_path, lambda source, flags: source, tmp_path / "shim.c")
