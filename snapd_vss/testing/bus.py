"""A real, private system-like D-Bus daemon for tests, demos and benchmarks.

:class:`PrivateBus` starts ``dbus-daemon`` with ``<type>system</type>``, the default-deny
policy of Debian's ``/usr/share/dbus-1/system.conf`` and our shipped policy
``dbus/org.snapdvss.Vss1.conf`` included verbatim, listening on a unix socket that
non-root users can reach. Nothing global is changed: point programs at it with
``DBUS_SYSTEM_BUS_ADDRESS`` (see :meth:`PrivateBus.env`).

Non-root users: :func:`local_user` finds (and, as root, creates) the test accounts made
by ``scripts/setup.sh``; :func:`run_as`, :func:`popen_as` and :func:`as_user_argv` run a
program as one of them. A non-root process cannot read a checkout under ``/root`` (mode
700), so run the venv's Python (:data:`VENV_PYTHON`, built on Debian's
``/usr/bin/python3``) and put :func:`world_readable_copy` on its ``PYTHONPATH`` when it
needs project code.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape, quoteattr

from snapd_vss.errors import Failed

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_POLICY = REPO_ROOT / "dbus" / "org.snapdvss.Vss1.conf"
VENV = Path(os.environ.get("SNAPD_VSS_VENV", "/opt/snapd-vss/venv"))
VENV_PYTHON = VENV / "bin" / "python"
BUS_NAME = "org.snapdvss.Vss1"
BUS_DIR_PREFIX = "snapd-vss-bus-"

# The test accounts scripts/setup.sh creates: two plain users and one backup operator.
TEST_USER = "vsstest"
OTHER_TEST_USER = "vsstest2"
OPERATOR_USER = "vssoperator"
BACKUP_GROUP = "vssbackup"

_DOCTYPE = (
    '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
    ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n'
)

# The essentials of Debian's system.conf: everyone may connect, nobody may own a name or
# send a method call unless a policy file punches a hole; signals and requested replies
# pass; everyone may talk to the bus driver except for its privileged parts.
_SYSTEM_POLICY = """\
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
"""

# Limits raised above the system bus defaults so that benchmarks can connect many writers.
DEFAULT_LIMITS: Mapping[str, int] = {
    "max_connections_per_user": 4096,
    "max_completed_connections": 8192,
    "max_replies_per_connection": 4096,
}


def bus_config(
    socket_path: Path,
    policy_files: Sequence[Path],
    extra_policy: str = "",
    limits: Mapping[str, int] = DEFAULT_LIMITS,
) -> str:
    """The text of a system-bus-like dbus-daemon configuration file."""
    includes = "".join(f"  <include>{escape(str(path))}</include>\n" for path in policy_files)
    limit_lines = "".join(
        f"  <limit name={quoteattr(name)}>{value}</limit>\n" for name, value in limits.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + _DOCTYPE
        + "<busconfig>\n"
        + "  <type>system</type>\n"
        + "  <auth>EXTERNAL</auth>\n"
        + f"  <listen>unix:path={escape(str(socket_path))}</listen>\n"
        + _SYSTEM_POLICY
        + limit_lines
        + includes
        + extra_policy
        + "</busconfig>\n"
    )


class PrivateBus:
    """A private ``dbus-daemon`` with system bus semantics; a context manager.

    ``policy_files`` are included verbatim after the default policy (by default our
    shipped ``org.snapdvss.Vss1.conf``); ``extra_policy`` is raw ``<policy>`` XML
    appended after them, for tests that need more holes.
    """

    def __init__(
        self,
        *,
        policy_files: Sequence[Path] = (SHIPPED_POLICY,),
        extra_policy: str = "",
        limits: Mapping[str, int] = DEFAULT_LIMITS,
    ) -> None:
        self.policy_files = tuple(policy_files)
        self.extra_policy = extra_policy
        self.limits = dict(limits)
        self.directory: Path | None = None
        self.address = ""
        self.pid = 0

    @property
    def socket_path(self) -> Path:
        if self.directory is None:
            raise Failed("the private bus is not running; call start() first")
        return self.directory / "system_bus_socket"

    @property
    def config_path(self) -> Path:
        if self.directory is None:
            raise Failed("the private bus is not running; call start() first")
        return self.directory / "bus.conf"

    def start(self) -> PrivateBus:
        if self.pid:
            raise Failed("this private bus is already running")
        dbus_daemon = shutil.which("dbus-daemon")
        if dbus_daemon is None:
            raise Failed("dbus-daemon is not installed; run scripts/setup.sh (Debian package dbus)")
        for path in self.policy_files:
            if not path.is_file():
                raise Failed(f"bus policy file {path} does not exist")
        remove_stale_buses()
        self.directory = Path(tempfile.mkdtemp(prefix=BUS_DIR_PREFIX))
        # As /run/dbus: anyone may reach the socket (the daemon makes it 0777).
        self.directory.chmod(0o755)
        (self.directory / "creator.pid").write_text(f"{os.getpid()}\n")
        self.config_path.write_text(
            bus_config(self.socket_path, self.policy_files, self.extra_policy, self.limits)
        )
        try:
            done = subprocess.run(
                [
                    dbus_daemon,
                    f"--config-file={self.config_path}",
                    "--fork",
                    "--nosyslog",
                    "--print-address=1",
                    "--print-pid=1",
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._remove_directory()
            raise Failed("dbus-daemon did not start within 30 s") from exc
        lines = done.stdout.split()
        if done.returncode != 0 or len(lines) != 2:
            self._remove_directory()
            raise Failed(
                f"dbus-daemon failed to start (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        self.address, self.pid = lines[0], int(lines[1])
        (self.directory / "daemon.pid").write_text(f"{self.pid}\n")
        return self

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) pointed at this bus."""
        env = dict(os.environ if base is None else base)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.address
        return env

    def stop(self) -> None:
        """Kill the daemon and remove its files; safe to call more than once."""
        if self.pid and self._is_ours(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not _wait_gone(self.pid, timeout=5.0):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                _wait_gone(self.pid, timeout=5.0)
        self.pid = 0
        self.address = ""
        self._remove_directory()

    def _is_ours(self, pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return str(self.config_path).encode() in cmdline

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> PrivateBus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def remove_stale_buses(parent: Path | None = None) -> list[Path]:
    """Stop the private buses whose creator process is gone (a test run that was killed
    before it could clean up) and remove their directories; returns what was removed."""
    parent = Path(tempfile.gettempdir()) if parent is None else parent
    removed = []
    for directory in parent.glob(BUS_DIR_PREFIX + "*"):
        creator = _read_pid(directory / "creator.pid")
        if creator is None or _alive(creator):
            continue
        stale = PrivateBus()
        stale.directory = directory
        stale.pid = _read_pid(directory / "daemon.pid") or 0
        stale.stop()
        removed.append(directory)
    return removed


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _wait_gone(pid, timeout=0)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (a zombie counts as exited); True if it did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@dataclass(frozen=True)
class LocalUser:
    """A local account: what a test needs to run something as it."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def local_user(name: str = TEST_USER, *, supplementary_groups: Sequence[str] = ()) -> LocalUser:
    """The account ``name``; created (as scripts/setup.sh does) when missing and we are root."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_user(name, supplementary_groups)
        entry = pwd.getpwnam(name)
    groups = tuple(sorted(os.getgrouplist(name, entry.pw_gid)))
    return LocalUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups)


def _create_user(name: str, supplementary_groups: Sequence[str]) -> None:
    if os.geteuid() != 0:
        raise Failed(f"test user {name} does not exist; run scripts/setup.sh as root")
    for group in supplementary_groups:
        try:
            grp.getgrnam(group)
        except KeyError:
            _run_checked(["groupadd", group])
    argv = ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"]
    argv += ["-K", "UID_MIN=1000", "--user-group"]
    if supplementary_groups:
        argv += ["--groups", ",".join(supplementary_groups)]
    _run_checked([*argv, name])


def _run_checked(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    # useradd/groupadd exit 9 when a concurrent run created the same name first.
    if done.returncode not in (0, 9):
        raise Failed(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip()}")


def as_user_argv(user: LocalUser, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs as ``user`` (real and effective ids, its groups)."""
    return [
        "setpriv",
        f"--reuid={user.uid}",
        f"--regid={user.gid}",
        "--init-groups",
        "--",
        *argv,
    ]


def run_as(
    user: LocalUser,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | Path = "/",
    timeout: float = 120.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``user`` to completion, capturing text output; never raises on exit code.

    ``cwd`` defaults to ``/`` because the caller's directory may be unreadable to ``user``.
    """
    return subprocess.run(
        as_user_argv(user, argv),
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def popen_as(
    user: LocalUser,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | Path = "/",
) -> subprocess.Popen[str]:
    """Start ``argv`` as ``user`` with text pipes on stdin, stdout and stderr."""
    return subprocess.Popen(
        as_user_argv(user, argv),
        env=dict(os.environ if env is None else env),
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def world_readable_copy(parent: Path | None = None) -> Path:
    """Copy the ``snapd_vss`` package into a new directory that every user can read.

    Returns the directory to put on a non-root process's ``PYTHONPATH``; the caller
    removes it (``shutil.rmtree``) when done.
    """
    target = Path(tempfile.mkdtemp(prefix="snapd-vss-code-", dir=parent))
    shutil.copytree(
        REPO_ROOT / "snapd_vss",
        target / "snapd_vss",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for directory, _dirnames, filenames in os.walk(target):
        os.chmod(directory, 0o755)
        for filename in filenames:
            os.chmod(os.path.join(directory, filename), 0o644)
    return target
