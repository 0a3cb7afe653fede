"""How vssctl prints: aligned tables for people, JSON for programs.

On a terminal tables are drawn with rich; otherwise (a pipe, a file) they are plain
text columns separated by two spaces, one row per line, header first — easy for
``awk`` and ``column``. ``--json`` prints one JSON document instead.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from snapd_vss.ipc.client import ProviderInfo, SnapshotInfo, WriterInfo

Row = Sequence[str]


@dataclasses.dataclass(frozen=True)
class Listing:
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]]
    empty: str  # what to say when there are no rows


def plain_table(columns: Row, rows: Sequence[Row]) -> str:
    """Columns aligned with two spaces; no trailing blanks."""
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = []
    for row in [columns, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def print_listing(listing: Listing, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    if not stream.isatty():
        stream.write(plain_table(listing.columns, listing.rows))
        return
    console = Console(file=stream)
    if not listing.rows:
        console.print(f"[dim]{listing.empty}[/dim]")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in listing.columns:
        table.add_column(column, overflow="fold")
    for row in listing.rows:
        table.add_row(*row)
    console.print(table)


def print_json(value: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    json.dump(to_jsonable(value), stream, indent=2, sort_keys=False)
    stream.write("\n")


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def format_time_us(us: int) -> str:
    """µs since the epoch → local time, to the second (``""`` for 0)."""
    if not us:
        return ""
    return datetime.fromtimestamp(us / 1_000_000).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def writer_error(writer: WriterInfo) -> str:
    if writer.last_error and writer.last_error_message:
        return f"{writer.last_error}: {writer.last_error_message}"
    return writer.last_error or writer.last_error_message


def writers_listing(writers: Sequence[WriterInfo]) -> Listing:
    return Listing(
        ("NAME", "WRITER ID", "INSTANCE", "INSTANCE ID", "STATE", "LAST ERROR"),
        [
            (w.name, w.writer_id, w.instance_name, w.instance_id, w.state, writer_error(w))
            for w in writers
        ],
        "no writers are registered",
    )


def snapshots_listing(snapshots: Sequence[SnapshotInfo]) -> Listing:
    return Listing(
        ("ID", "SET", "VOLUME", "PROVIDER", "CREATED", "PERSISTENT", "STATE", "EXPOSED AT"),
        [
            (
                s.id,
                s.snapshot_set_id,
                s.volume,
                s.provider,
                format_time_us(s.creation_time),
                yes_no(s.persistent),
                s.state + (f" ({s.state_reason})" if s.state_reason else ""),
                s.exposed_path,
            )
            for s in snapshots
        ],
        "no snapshots",
    )


def providers_listing(providers: Sequence[ProviderInfo]) -> Listing:
    return Listing(
        ("NAME", "TYPE", "VERSION", "AVAILABLE", "REASON"),
        [(p.name, p.type, p.version, yes_no(p.available), p.unavailable_reason) for p in providers],
        "no providers",
    )
