"""Run every benchmark: ``python -m benchmarks`` (what ``./run bench`` runs).

The backup benchmark (:mod:`benchmarks.backup_bench`) always runs; the others
(``diff_area_bench``, ``lvm_bench``, ``restore_throughput``, ``backup_throughput``) run
when they exist and import cleanly, and are reported as ``skipped: <reason>`` otherwise.
Each writes its own table into ``benchmarks/results/`` (``restore_throughput.md``,
``backup_throughput.md``, ...); everything printed goes, as markdown, to
``benchmarks/results/latest.md`` too. Exit status: non-zero only when the backup
benchmark failed.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import backup_bench

OTHERS = ("diff_area_bench", "lvm_bench", "restore_throughput", "backup_throughput")
OUT = backup_bench.DEFAULT_OUT


def run_other(name: str) -> str:
    """Run ``benchmarks.<name>.main()`` with its defaults; its output, or why it was skipped."""
    try:
        module = importlib.import_module(f"benchmarks.{name}")
    except Exception as exc:  # a missing or broken module must not stop the others
        return f"skipped: cannot import benchmarks.{name}: {type(exc).__name__}: {exc}\n"
    entry = getattr(module, "main", None)
    if not callable(entry):
        return f"skipped: benchmarks.{name} has no main()\n"
    return _call(name, entry)


def _call(name: str, entry: Callable[[], object]) -> str:
    captured = io.StringIO()
    saved_argv = sys.argv
    sys.argv = [f"benchmarks/{name}.py"]  # its own defaults, not our arguments
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            code = entry()
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:
        tail = traceback.format_exc(limit=3)
        return f"{captured.getvalue()}skipped: {name} failed: {type(exc).__name__}: {exc}\n{tail}"
    finally:
        sys.argv = saved_argv
    output = captured.getvalue()
    if code not in (None, 0):
        last = output.strip().splitlines()[-1:] or ["no output"]
        return f"{output}skipped: {name} exited with {code}: {last[0]}\n"
    return output


def main() -> int:
    started = time.perf_counter()
    sections = ["# snapd-vss benchmarks\n"]
    try:
        report = backup_bench.run_backup_bench()
        backup_text = backup_bench.markdown(report)
        status = 0
    except Exception as exc:
        backup_text = f"backup benchmark FAILED: {type(exc).__name__}: {exc}\n"
        status = 1
    print(backup_text, flush=True)
    sections.append(backup_text)
    for name in OTHERS:
        print(f"### {name}\n", flush=True)
        text = run_other(name)
        print(text, flush=True)
        sections.append(f"### `benchmarks/{name}.py`\n\n```\n{text.rstrip()}\n```\n")
    sections.append(f"All benchmarks: {time.perf_counter() - started:.0f} s.\n")
    backup_bench.write_results("\n".join(sections), Path(OUT))
    print(f"(written to {OUT})")
    return status


if __name__ == "__main__":
    sys.exit(main())
