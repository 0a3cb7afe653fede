"""The demo, run as a user runs it, and the smallest configuration of the backup benchmark.

Both need root (loop devices, btrfs, a private bus). No timing is asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from benchmarks.backup_bench import markdown, run_backup_bench
from snapd_vss.volumes import list_mounts

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (loop devices, mounts)")


def _demo_leftovers() -> list[str]:
    """Temporary directories and mounts a demo run would leave behind."""
    tmp = Path(tempfile.gettempdir())
    mounts = [v.mount_point for v in list_mounts() if "/snapd-vss-demo-" in v.mount_point]
    return [str(p) for p in tmp.glob("snapd-vss-demo-*")] + mounts


@pytest.mark.timeout(240)
def test_demo_backs_up_a_live_database_and_says_so() -> None:
    before = set(_demo_leftovers())
    done = subprocess.run(
        [sys.executable, "-m", "snapd_vss.demo"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=200,
        check=False,
    )
    story = done.stdout
    assert done.returncode == 0, story + done.stderr
    for line in (
        "gather     1 writer(s) found: Example SQLite ledger",
        "select     component sqlite/ledger (DATABASE)",
        "freeze window",
        "commit window",
        "check      PASS integrity: PRAGMA integrity_check says ok",
        "check      PASS invariant",
        "check      PASS no gaps",
        "check      PASS frozen state",
        "check      PASS metadata",
        "result     OK",
    ):
        assert line in story, story
    assert "FAIL" not in story
    assert set(_demo_leftovers()) <= before


def test_demo_refuses_politely_without_root() -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            sys.executable,
            "-c",
            "import sys; from snapd_vss.demo import main; sys.exit(main())",
        ],
        cwd="/",
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "Permission denied" in done.stderr or "No module named" in done.stderr:
        pytest.skip("nobody cannot read this checkout or the venv")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run it as root" in done.stdout


@pytest.mark.timeout(300)
def test_backup_bench_smallest_configuration_gives_figures() -> None:
    report = run_backup_bench(writers=(1,), process_writers=(), repeats=1, daemon_starts=1)
    (run,) = report.runs
    assert run.writers == 1
    for values in (run.freeze_ms, run.commit_ms, run.do_snapshot_set_ms, run.bare_snapshot_ms):
        assert len(values) == 1
        assert values[0] > 0
    assert report.event.gather_one_writer_ms > 0
    assert report.event.bus_round_trip_ms > 0
    assert len(report.daemon.ready_s) == 1 and report.daemon.ready_s[0] > 0
    assert report.daemon.idle_rss_mb[0] > 0
    table = markdown(report)
    assert "| 1 | 1 process, 1 connection each |" in table
    assert "daemon idle RSS" in table
