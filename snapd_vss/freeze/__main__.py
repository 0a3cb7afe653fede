"""``python -m snapd_vss.freeze thaw-leftovers RUNTIME_DIR`` (for ExecStartPre/ExecStopPost)."""

from __future__ import annotations

import argparse
import logging
import sys

from snapd_vss.freeze.markers import thaw_leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snapd_vss.freeze")
    sub = parser.add_subparsers(dest="command", required=True)
    leftovers = sub.add_parser("thaw-leftovers", help="thaw what a dead daemon left frozen")
    leftovers.add_argument("runtime_dir", nargs="?", default="/run/snapd-vss")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    thawed = thaw_leftovers(args.runtime_dir)
    for mount in thawed:
        print(f"thawed {mount}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
