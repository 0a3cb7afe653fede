"""Boot a User-Mode-Linux guest and run a command (pytest over tests/guest/) inside it.

The host kernel here has no device-mapper, so the LVM thin provider is tested in a UML
guest: the host's ``/`` is the guest's read-only root (hostfs), a sparse file is its
scratch disk (``/dev/ubda``), and ``tests/guest/init.sh`` is its PID 1. The guest writes
its command's exit code to the run directory, which this module reads back.

Usage (normally through ``tests/guest/run``)::

    python -m snapd_vss.testing.guest [pytest args...]          # default: tests/guest -q
    python -m snapd_vss.testing.guest --exec CMD [ARGS...]      # any command, e.g. a benchmark
    python -m snapd_vss.testing.guest --kernel 6.12 [...]         # Debian 13's Linux 6.12

Kernels (:mod:`snapd_vss.testing.guest_kernels`): ``debian12`` (Linux 6.1, the default)
and ``6.12``; ``--kernel`` or ``SNAPD_VSS_GUEST_KERNEL`` chooses.

Environment: ``SNAPD_VSS_VENV`` (default /opt/snapd-vss/venv), ``SNAPD_VSS_GUEST_TIMEOUT``
(seconds, default 600), ``SNAPD_VSS_GUEST_MEM`` (default 1024M),
``SNAPD_VSS_GUEST_DISK_SIZE`` (bytes, default 8 GiB, sparse), ``SNAPD_VSS_GUEST_KEEP=1``
keeps the run directory, ``SNAPD_VSS_UML_SHIM=0`` disables the xstate ptrace shim.

This module uses only the standard library so it runs before the venv exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from snapd_vss.testing import guest_kernels
from snapd_vss.testing.guest_kernels import GuestKernel, KernelError, which

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO / "tests" / "guest"
INIT = GUEST_DIR / "init.sh"
SHIM_SOURCE = GUEST_DIR / "xstate_shim.c"
SHIM_CHECK_SOURCE = GUEST_DIR / "xstate_shim_check.c"
GLIBC_SHIM_SOURCE = GUEST_DIR / "glibc238_shim.c"

# program -> Debian package providing it
REQUIRED_TOOLS = {
    "linux": "user-mode-linux",
    "lvm": "lvm2",
    "thin_check": "thin-provisioning-tools",
    "mkfs.xfs": "xfsprogs",
    "mkfs.ext4": "e2fsprogs",
    "gcc": "gcc",
}


class GuestError(Exception):
    """The guest could not be set up or booted (not a test failure)."""


@dataclass
class GuestConfig:
    command: list[str]
    venv: Path = field(
        default_factory=lambda: Path(os.environ.get("SNAPD_VSS_VENV", "/opt/snapd-vss/venv"))
    )
    timeout_s: float = field(
        default_factory=lambda: float(os.environ.get("SNAPD_VSS_GUEST_TIMEOUT", "600"))
    )
    mem: str = field(default_factory=lambda: os.environ.get("SNAPD_VSS_GUEST_MEM", "1024M"))
    disk_size: int = field(
        default_factory=lambda: int(os.environ.get("SNAPD_VSS_GUEST_DISK_SIZE", str(8 << 30)))
    )
    keep: bool = field(default_factory=lambda: os.environ.get("SNAPD_VSS_GUEST_KEEP") == "1")
    use_shim: bool = field(default_factory=lambda: os.environ.get("SNAPD_VSS_UML_SHIM") != "0")
    kernel: str = field(
        default_factory=lambda: os.environ.get("SNAPD_VSS_GUEST_KERNEL", "debian12")
    )


@dataclass
class GuestResult:
    exit_code: int  # the command's exit code; 124 = timeout, 125 = guest gave none
    run_dir: Path
    console: str
    output: str
    seconds: float


def log(msg: str) -> None:
    print(f"[guest] {msg}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    """Install the Debian packages the guest needs if they are missing (root only)."""
    missing = sorted({pkg for prog, pkg in REQUIRED_TOOLS.items() if which(prog) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise GuestError(f"missing Debian packages {' '.join(missing)}; install them as root")
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, check=False).returncode != 0:
        raise GuestError(f"`{shlex.join(cmd)}` failed; install the packages by hand")


def guest_kernel(name: str) -> GuestKernel:
    try:
        return guest_kernels.select(name, cache_dir(), _compile_preload, GLIBC_SHIM_SOURCE)
    except KernelError as e:
        raise GuestError(str(e)) from e


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "snapd-vss"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _compile(source: Path, shared: bool, version_script: Path | None = None) -> Path:
    """Compile ``source`` (linked with ``version_script`` if given) once per content hash;
    return the cached binary."""
    flags = ["-shared", "-fPIC"] if shared else []
    digest = hashlib.sha256(source.read_bytes() + repr(flags).encode())
    if version_script is not None:
        flags.append(f"-Wl,--version-script={version_script}")
        digest.update(version_script.read_bytes())
    suffix = ".so" if shared else ""
    out = cache_dir() / f"{source.stem}-{digest.hexdigest()[:16]}{suffix}"
    if out.exists():
        return out
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    cmd = ["gcc", "-O2", "-Wall", *flags, "-o", str(tmp), str(source), "-ldl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestError(f"`{shlex.join(cmd)}` failed:\n{proc.stderr}")
    tmp.replace(out)
    return out


def _compile_preload(source: Path, version_script: Path) -> Path:
    return _compile(source, shared=True, version_script=version_script)


def xstate_shim() -> Path:
    """The LD_PRELOAD shim that lets UML restore FPU state on hosts with a large XSAVE area."""
    return _compile(SHIM_SOURCE, shared=True)


def check_shim(shim: Path) -> str:
    """Run the shim's self-check; return its one-line verdict (raises if the shim is broken)."""
    check = _compile(SHIM_CHECK_SOURCE, shared=False)
    env = dict(os.environ, LD_PRELOAD=str(shim))
    proc = subprocess.run([str(check)], env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise GuestError(f"the xstate ptrace shim does not work here: {proc.stdout.strip()}")
    return proc.stdout.strip()


def _shell_assign(name: str, value: str) -> str:
    return f"{name}={shlex.quote(value)}\n"


def _check_no_space(*paths: Path) -> None:
    for path in paths:
        if any(c.isspace() for c in str(path)):
            raise GuestError(f"{path}: the guest harness needs paths without white space")


def prepare_run_dir(cfg: GuestConfig, modules: Path) -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix="snapd-vss-guest-"))
    disk = run_dir / "disk0.img"
    with open(disk, "wb") as f:
        f.truncate(cfg.disk_size)
    env = (
        _shell_assign("RUN_DIR", str(run_dir))
        + _shell_assign("REPO", str(REPO))
        + _shell_assign("VENV", str(cfg.venv))
        + _shell_assign("MODULES_DIR", str(modules))
        + _shell_assign("DISKS", "/dev/ubda")
        + "COMMAND=(" + " ".join(shlex.quote(a) for a in cfg.command) + ")\n"
    )
    (run_dir / "guest.env").write_text(env)
    return run_dir


def kernel_cmdline(cfg: GuestConfig, run_dir: Path) -> list[str]:
    return [
        f"mem={cfg.mem}",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        f"init={INIT}",
        f"ubd0={run_dir / 'disk0.img'}",
        "con0=fd:0,fd:1",
        "con=null",
        f"umid=snapd-vss-{os.getpid()}",
        f"uml_dir={run_dir}",
        "quiet",
        f"SNAPD_VSS_GUEST_RUN_DIR={run_dir}",
    ]


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """UML forks a host process per guest address space: kill the whole group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def boot(cfg: GuestConfig) -> GuestResult:
    _check_no_space(REPO, cfg.venv)
    ensure_tools()
    if not (cfg.venv / "bin" / "python").exists():
        raise GuestError(f"no virtualenv at {cfg.venv}; run scripts/setup.sh or set SNAPD_VSS_VENV")
    kernel = guest_kernel(cfg.kernel)
    modules = kernel.modules
    env = dict(os.environ)
    preload = [str(p) for p in kernel.preload]
    if cfg.use_shim:
        shim = xstate_shim()
        log(f"xstate shim {shim.name}: {check_shim(shim)}")
        preload.append(str(shim))
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    run_dir = prepare_run_dir(cfg, modules)
    _check_no_space(run_dir)
    # UML keeps the guest's memory in a file under TMPDIR: tmpfs is faster than disk.
    shm = Path("/dev/shm")
    env["TMPDIR"] = str(shm if shm.is_dir() and os.access(shm, os.W_OK) else run_dir)
    console_path = run_dir / "console.log"
    cmd = [str(kernel.binary), *kernel_cmdline(cfg, run_dir)]
    log(f"booting {kernel.binary} (Linux {modules.name}), run dir {run_dir}")
    start = time.monotonic()
    exit_code: int | None = None
    with open(console_path, "wb") as console, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            cmd, stdin=devnull, stdout=console, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=cfg.timeout_s)
        except subprocess.TimeoutExpired:
            log(f"guest still running after {cfg.timeout_s:.0f} s: killed")
            exit_code = 124
        finally:
            _kill_group(proc)
            proc.wait()
    seconds = time.monotonic() - start
    code_file = run_dir / "exit_code"
    if exit_code is None:
        text = code_file.read_text().strip() if code_file.exists() else ""
        exit_code = int(text) if text.lstrip("-").isdigit() else 125
    console_text = console_path.read_text(errors="replace")
    output_path = run_dir / "output.log"
    output = output_path.read_text(errors="replace") if output_path.exists() else ""
    return GuestResult(exit_code, run_dir, console_text, output, seconds)


def parse_args(argv: list[str]) -> tuple[str | None, list[str]]:
    """(kernel named by ``--kernel``, or None; the command to run in the guest)."""
    kernel = None
    if argv and argv[0] == "--kernel":
        if len(argv) < 2 or argv[1] not in guest_kernels.KERNELS:
            raise GuestError(f"--kernel needs one of {', '.join(guest_kernels.KERNELS)}")
        kernel, argv = argv[1], argv[2:]
    return kernel, _command(argv)


def _command(argv: list[str]) -> list[str]:
    if argv and argv[0] == "--exec":
        if len(argv) < 2:
            raise GuestError("--exec needs a command")
        return argv[1:]
    args = argv or ["-q"]
    if not any(a.startswith(("tests/", "benchmarks/")) for a in args):
        args = ["tests/guest", *args]
    return ["python", "-m", "pytest", "-p", "no:cacheprovider", *args]


def main(argv: list[str] | None = None) -> int:
    try:
        kernel, command = parse_args(sys.argv[1:] if argv is None else argv)
        cfg = GuestConfig(command=command)
        if kernel is not None:
            cfg.kernel = kernel
        result = boot(cfg)
    except GuestError as e:
        log(f"error: {e}")
        return 2
    sys.stdout.write(result.output)
    sys.stdout.flush()
    if result.exit_code != 0:
        log(f"guest command failed (exit {result.exit_code}); guest console log follows")
        sys.stderr.write(result.console)
        sys.stderr.flush()
    log(f"guest exit {result.exit_code} after {result.seconds:.1f} s")
    if cfg.keep:
        log(f"kept {result.run_dir}")
    else:
        shutil.rmtree(result.run_dir, ignore_errors=True)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
