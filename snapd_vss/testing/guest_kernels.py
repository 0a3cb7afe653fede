"""The guest kernels tests/guest runs on: Debian 12's Linux 6.1 and Debian 13's Linux 6.12.

Why two: whether the service can hold a set's LVM thin filesystems frozen while LVM
snapshots them depends on the kernel (see snapd_vss/providers/lvm/freezing.py). Linux
6.1 is what a Debian 12 machine runs; Linux 6.12 is what Debian 12's bookworm-backports
and Debian 13 run, and it nests the freezes. The freeze code that decides this is in
the kernel's generic fs and block layers, the same for UML as for amd64.

``debian12`` (the default)
    The ``user-mode-linux`` package of Debian 12, installed with apt-get.
``6.12``
    The ``user-mode-linux`` package of Debian 13 (trixie), downloaded with apt-get into
    the cache (a private apt state: nothing is installed, and the host's apt sources are
    not touched) and unpacked with dpkg-deb. Its binary asks for three glibc 2.38
    symbols (``__isoc23_strtol``, ``__isoc23_strtoul``, ``__isoc23_sscanf``) that Debian
    12's glibc 2.36 lacks: the harness marks that version need weak in a copy of the
    binary (one flag in ``.gnu.version_r``) and preloads ``tests/guest/glibc238_shim.c``,
    which defines the three as the older functions (they differ only in "0b" prefixes).

This module uses only the standard library so it runs before the venv exists.
"""

from __future__ import annotations

import os
import shlex
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UML_MODULES = Path("/usr/lib/uml/modules")
DEBIAN_MIRROR = os.environ.get("SNAPD_VSS_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
TRIXIE_PACKAGE = "user-mode-linux"
MISSING_GLIBC_VERSION = "GLIBC_2.38"
KERNELS = ("debian12", "6.12")
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_SHT_GNU_VERNEED = 0x6FFFFFFE
_VER_FLG_WEAK = 0x2


class KernelError(Exception):
    """A guest kernel could not be found, fetched or prepared."""


@dataclass(frozen=True)
class GuestKernel:
    name: str
    binary: Path
    modules: Path  # /usr/lib/uml/modules/<version>
    preload: tuple[Path, ...] = ()  # shared objects for LD_PRELOAD besides the xstate shim


Compiler = Callable[[Path, Path], Path]  # (C source, linker version script) -> .so


def which(prog: str) -> str | None:
    """``prog`` on PATH or in the system's sbin/bin directories (root's tools)."""
    return shutil.which(prog, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def newest_modules(root: Path) -> Path:
    versions = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise KernelError(f"no UML kernel modules under {root}")
    return versions[-1]


def debian12() -> GuestKernel:
    """Debian 12's User-Mode-Linux (the installed package user-mode-linux)."""
    for name in ("linux.uml", "linux"):
        path = which(name)
        if path is not None:
            return GuestKernel("debian12", Path(path), newest_modules(UML_MODULES))
    raise KernelError("no User-Mode-Linux kernel (Debian package user-mode-linux)")


def _apt(state: Path, *args: str, cwd: Path | None = None) -> None:
    options = [
        "-o", "Dir::Etc::SourceList=/dev/null",
        "-o", f"Dir::Etc::SourceParts={state / 'sources'}",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "APT::Sandbox::User=root",  # the files are root's; /tmp need not be 1777
        "-q",
    ]  # fmt: skip
    cmd = ["apt-get", *options, *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise KernelError(f"`{shlex.join(cmd)}` failed:\n{proc.stdout}{proc.stderr}")


def download_trixie_uml(cache: Path) -> Path:
    """Download Debian 13's user-mode-linux .deb into ``cache``; return the file."""
    state = cache / "apt"
    for sub in ("sources", "lists/partial", "cache/archives/partial"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "sources" / "trixie.sources").write_text(
        f"Types: deb\nURIs: {DEBIAN_MIRROR}\nSuites: trixie\nComponents: main\n"
        f"Signed-By: {KEYRING}\n"
    )
    _apt(state, "update")
    for old in cache.glob(f"{TRIXIE_PACKAGE}_*.deb"):
        old.unlink()
    _apt(state, "download", TRIXIE_PACKAGE, cwd=cache)
    debs = sorted(cache.glob(f"{TRIXIE_PACKAGE}_*.deb"))
    if not debs:
        raise KernelError(f"apt-get download {TRIXIE_PACKAGE} gave no .deb in {cache}")
    return debs[-1]


def _version_need_entries(data: bytes | bytearray, version: str) -> list[int]:
    """Offsets of the ``Elf64_Vernaux`` entries that need symbol ``version``."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise KernelError("not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    found = []
    for _name, sh_type, _f, _a, offset, _size, link, info, _al, _es in sections:
        if sh_type != _SHT_GNU_VERNEED:
            continue
        strings = sections[link][4]
        need = offset
        for _ in range(info):  # sh_info: the number of Elf64_Verneed entries
            _ver, count, _file, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(count):
                _hash, _flags, _other, name, next_aux = struct.unpack_from("<IHHII", data, entry)
                start = strings + name
                if bytes(data[start : data.index(0, start)]).decode() == version:
                    found.append(entry)
                entry += next_aux
            need += next_need
    return found


def version_need_flags(data: bytes, version: str) -> list[int]:
    """The flags of every need for symbol ``version`` (2 = weak); [] if none."""
    return [struct.unpack_from("<H", data, e + 4)[0] for e in _version_need_entries(data, version)]


def weaken_version_need(data: bytes, version: str) -> bytes:
    """An ELF64 little-endian file with its need for symbol ``version`` marked weak.

    A weak version need that the library lacks is only a warning for the dynamic
    loader; the symbols of that version must then come from a preloaded library.
    Raises KernelError if the file does not need ``version``.
    """
    out = bytearray(data)
    entries = _version_need_entries(out, version)
    if not entries:
        raise KernelError(f"the file does not need symbol version {version}")
    for entry in entries:
        (flags,) = struct.unpack_from("<H", out, entry + 4)
        struct.pack_into("<H", out, entry + 4, flags | _VER_FLG_WEAK)
    return bytes(out)


def trixie(cache: Path, compile_shim: Compiler, shim_source: Path) -> GuestKernel:
    """Debian 13's User-Mode-Linux (Linux 6.12), fetched and made runnable on Debian 12."""
    root = cache / "uml-trixie"
    ready = root / "ready"
    if not ready.exists():
        root.mkdir(parents=True, exist_ok=True)
        deb = download_trixie_uml(root)
        unpacked = root / "unpacked"
        shutil.rmtree(unpacked, ignore_errors=True)
        proc = subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(unpacked)], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise KernelError(f"dpkg-deb -x {deb} failed: {proc.stderr.strip()}")
        original = unpacked / "usr" / "bin" / "linux.uml"
        binary = root / "linux.uml"
        data = original.read_bytes()
        if version_need_flags(data, MISSING_GLIBC_VERSION):
            data = weaken_version_need(data, MISSING_GLIBC_VERSION)
        binary.write_bytes(data)
        binary.chmod(0o755)
        ready.write_text(deb.name + "\n")
    modules = newest_modules(root / "unpacked" / "usr" / "lib" / "uml" / "modules")
    shim = compile_shim(shim_source, shim_source.with_suffix(".map"))
    return GuestKernel("6.12", root / "linux.uml", modules, (shim,))


def select(name: str, cache: Path, compile_shim: Compiler, shim_source: Path) -> GuestKernel:
    if name == "debian12":
        return debian12()
    if name == "6.12":
        return trixie(cache, compile_shim, shim_source)
    raise KernelError(f"unknown guest kernel {name!r}; choose one of {', '.join(KERNELS)}")
