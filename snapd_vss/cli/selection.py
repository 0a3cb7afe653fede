"""Which writer components a backup of some volumes should select.

A component is wanted when any of its files (Files, DatabaseFiles, DatabaseLogFiles)
lies on one of the volumes. A component that can only be selected through a
selectable ancestor (VSS's component tree: the ancestor's logical path is a prefix of
this one's) is selected through its topmost selectable ancestor; a component whose
ancestor is selected is not added again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from snapd_vss.documents import Component, WriterMetadata


@dataclass(frozen=True, order=True)
class SelectedComponent:
    instance_id: str
    logical_path: str
    name: str
    writer_name: str = ""

    @property
    def label(self) -> str:
        path = f"{self.logical_path}/{self.name}" if self.logical_path else self.name
        return f"{self.writer_name or self.instance_id}: {path}"


def full_path(component: Component) -> str:
    """The component's place in its writer's tree: ``logicalPath/name``."""
    if component.logical_path:
        return f"{component.logical_path}/{component.name}"
    return component.name


def is_under(path: str, directory: str) -> bool:
    """Whether ``path`` is ``directory`` or inside it (both absolute, normalized)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def resolve(path: str) -> str:
    return os.path.realpath(path)


def on_volumes(component: Component, volumes: Sequence[str]) -> bool:
    return any(
        is_under(resolve(spec.path), volume)
        for spec in component.all_file_specs()
        for volume in volumes
    )


def _ancestors(component: Component, components: Iterable[Component]) -> list[Component]:
    """The component's ancestors in its writer's tree, topmost first."""
    found = [
        other
        for other in components
        if other is not component
        and is_under(component.logical_path, full_path(other))
        and component.logical_path
    ]
    return sorted(found, key=lambda c: len(full_path(c)))


def _select_for(metadata: WriterMetadata, volumes: Sequence[str]) -> list[Component]:
    chosen: dict[tuple[str, str], Component] = {}
    for component in metadata.components:
        if not on_volumes(component, volumes):
            continue
        selectable_ancestors = [
            a for a in _ancestors(component, metadata.components) if a.selectable
        ]
        target = selectable_ancestors[0] if selectable_ancestors else component
        chosen[target.key] = target
    # Drop any component whose ancestor is chosen too: the ancestor includes it.
    return [
        c
        for c in chosen.values()
        if not any(a.key in chosen for a in _ancestors(c, metadata.components))
    ]


def select_components(
    metadata: Mapping[str, WriterMetadata], volumes: Sequence[str]
) -> list[SelectedComponent]:
    """The components to add for a backup of ``volumes``; ``metadata`` by instance id."""
    resolved = [resolve(v) for v in volumes]
    selected = [
        SelectedComponent(instance_id, c.logical_path, c.name, writer.name)
        for instance_id, writer in metadata.items()
        for c in _select_for(writer, resolved)
    ]
    return sorted(selected, key=lambda s: (s.writer_name, s.instance_id, s.logical_path, s.name))
