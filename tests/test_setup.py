"""The machine set-up, the entry points and the shipped service files."""

import configparser
import re
import subprocess
from pathlib import Path

from snapd_vss.testing.bus import REPO_ROOT, VENV_PYTHON, LocalUser, run_as


def packages() -> list[str]:
    lines = (REPO_ROOT / "scripts" / "debian-packages.txt").read_text().splitlines()
    return [word for line in lines if (word := line.split("#", 1)[0].strip())]


def run_setup() -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "setup.sh")],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_setup_is_quiet_and_idempotent_when_done() -> None:
    # A run right after a run has nothing to do, so it says nothing. (On a developer's
    # machine another checkout's set-up may re-point the shared venv in between: retry.)
    for _ in range(3):
        run_setup()
        again = run_setup()
        if again.stdout == "" and again.stderr == "":
            return
    assert again.stdout == "" and again.stderr == ""


def test_every_listed_debian_package_is_installed() -> None:
    names = packages()
    assert "dbus" in names and "python3-venv" in names
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package} ${Status}\n", *names],
        capture_output=True, text=True, check=False,
    )
    lines = done.stdout.splitlines()
    installed = {line.split()[0] for line in lines if line.endswith("install ok installed")}
    assert set(names) <= installed, set(names) - installed


PROBE = "import sys, dbus_fast, lxml, systemd.journal\nprint(sys.base_prefix)"


def test_non_root_users_can_run_the_venv(nonroot_user: LocalUser) -> None:
    done = run_as(
        nonroot_user,
        [str(VENV_PYTHON), "-c", PROBE],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "/usr", "the venv must be built on Debian's /usr/bin/python3"


def test_ci_runs_the_readme_test_command() -> None:
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert re.search(r"^exec \./run test$", script, re.MULTILINE)


def test_run_refuses_unknown_commands() -> None:
    done = subprocess.run(
        [str(REPO_ROOT / "run"), "no-such-command"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "./run test" in done.stderr


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (REPO_ROOT / "systemd" / "snapd-vssd.service").read_text()
    # verify checks that the commands exist; the package installs the real one.
    (tmp_path / "snapd-vssd.service").write_text(unit.replace("/usr/bin/snapd-vssd", "/bin/true"))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "snapd-vssd.service")],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "snapd-vssd.service" not in done.stderr, done.stderr


def test_unit_and_activation_file_agree() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(REPO_ROOT / "systemd" / "snapd-vssd.service")  # repeated keys: the last wins
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["BusName"] == "org.snapdvss.Vss1"
    assert service["ExecStopPost"] == "/usr/bin/snapd-vssd --thaw-leftovers"
    assert service["KillMode"] == "mixed"
    assert "CAP_SYS_ADMIN" in service["CapabilityBoundingSet"].split()
    for namespacing in ("PrivateTmp", "ProtectSystem", "ProtectHome", "PrivateDevices"):
        assert namespacing not in service, f"{namespacing} would hide exposed snapshots"

    activation = configparser.ConfigParser(interpolation=None)
    activation.optionxform = str  # type: ignore[assignment,method-assign]
    activation.read(REPO_ROOT / "dbus" / "org.snapdvss.Vss1.service")
    section = activation["D-BUS Service"]
    assert section["Name"] == service["BusName"]
    assert section["SystemdService"] == "snapd-vssd.service"
    assert section["Exec"] == service["ExecStart"]
    assert section["User"] == "root"


def test_debian_install_file_names_existing_files() -> None:
    install = REPO_ROOT / "packaging" / "debian" / "snapd-vss.install"
    for line in install.read_text().splitlines():
        source, _destination = line.split()
        assert list(REPO_ROOT.glob(source)), f"{source} in {install.name} matches no file"



def test_non_root_users_import_the_world_readable_copy(
    nonroot_user: LocalUser, nonroot_pythonpath: Path
) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(nonroot_pythonpath)}
    code = "import snapd_vss.config, snapd_vss.errors\nprint(snapd_vss.config.__file__)"
    done = run_as(nonroot_user, [str(VENV_PYTHON), "-c", code], env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(nonroot_pythonpath / "snapd_vss" / "config.py")
