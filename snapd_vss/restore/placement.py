"""Where each entry of a component goes: its original place, or an alternate location.

Alternate location mappings (``path``, ``filespec``, ``recursive`` → ``destination``)
come from the writer (its metadata, and the document) and from the requestor
(``--to-alternate PATH`` maps the component's root to ``PATH/<root>``). A file is
covered by a mapping when its directory is ``path`` (or below it, if recursive) and its
name matches ``filespec``; a directory when it is ``path`` or below it. All files of a
component move alike: a file no mapping covers makes the whole placement fail.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

from snapd_vss.backupset.manifest import EntryType
from snapd_vss.documents.writer_metadata import AlternateLocationMapping
from snapd_vss.errors import InvalidArgs
from snapd_vss.restore.safety import clean_absolute
from snapd_vss.restore.source import SourceComponent, SourceEntry


def is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


@dataclass(frozen=True)
class Placed:
    entry: SourceEntry
    original: str  # absolute path at backup time
    destination: str  # absolute path to write


@dataclass
class Placement:
    kind: str  # "original", "alternate", "to-alternate"
    items: list[Placed]
    mappings_used: list[AlternateLocationMapping]

    @property
    def directories(self) -> set[str]:
        """Every directory an entry is written into."""
        return {os.path.dirname(p.destination) for p in self.items}


def original_path(component: SourceComponent, entry: SourceEntry) -> str:
    return os.path.join(component.original_root, entry.path)


def at_original(component: SourceComponent) -> Placement:
    items = [
        Placed(e, original_path(component, e), original_path(component, e))
        for e in component.entries
    ]
    return Placement("original", items, [])


@dataclass(frozen=True)
class _Mapping:
    """A mapping with its paths normalised once (a component may have many entries)."""

    mapping: AlternateLocationMapping
    root: str
    destination: str

    @classmethod
    def of(cls, mapping: AlternateLocationMapping) -> _Mapping:
        destination = clean_absolute(mapping.destination, "alternate location destination")
        return cls(mapping, os.path.normpath(mapping.path), destination)

    def covers(self, path: str, is_dir: bool) -> bool:
        root, m = self.root, self.mapping
        if is_dir:
            return is_under(path, root) and (
                m.recursive or os.path.dirname(path) == root or path == root
            )
        parent, name = os.path.split(path)
        in_place = parent == root or (m.recursive and is_under(parent, root))
        return in_place and fnmatch.fnmatchcase(name, m.filespec)

    def mapped(self, path: str) -> str:
        """``path`` (normalised, under ``root``) moved below the destination."""
        if path == self.root:
            return self.destination
        rest = path[len(self.root.rstrip("/")) + 1 :]
        return os.path.join(self.destination, rest)


def at_alternate(component: SourceComponent, mappings: list[AlternateLocationMapping]) -> Placement:
    """Every entry through the first mapping that covers it; InvalidArgs if one is not."""
    if not mappings:
        raise InvalidArgs(
            f"{component.label} has no alternate location mapping; the writer declares "
            "none — restore with --to-alternate PATH"
        )
    prepared = [_Mapping.of(m) for m in mappings]
    items: list[Placed] = []
    used: list[AlternateLocationMapping] = []
    for entry in component.entries:
        original = original_path(component, entry)
        is_dir = entry.type is EntryType.DIR
        found = next((m for m in prepared if m.covers(original, is_dir)), None)
        if found is None:
            if is_dir:  # a directory between mapped files: created as needed
                continue
            raise InvalidArgs(
                f"no alternate location mapping of {component.label} covers {original}; "
                "all files of a component go to the alternate location or none does"
            )
        if found.mapping not in used:
            used.append(found.mapping)
        items.append(Placed(entry, original, found.mapped(original)))
    return Placement("alternate", items, used)


def to_alternate(component: SourceComponent, base: str) -> Placement:
    """The component below ``base`` (``base/<original root>``), as one recorded mapping."""
    base = clean_absolute(base, "--to-alternate")
    root = component.original_root
    mapping = AlternateLocationMapping(
        path=root, filespec="*", recursive=True, destination=os.path.join(base, root.lstrip("/"))
    )
    placement = at_alternate(component, [mapping])
    placement.kind = "to-alternate"
    return placement
