"""One restore session: the VSS restore sequence, enforced in order.

CreateRestoreSession(saved document) -> GatherWriterMetadata -> SetSelectedForRestore /
SetRestoreOptions / AddAlternativeLocationMapping -> PreRestore -> (the requestor puts
files back) -> SetFileRestoreStatus -> PostRestore -> Close.

As in VSS, a writer's veto in PreRestore or PostRestore does not end the session: it is
recorded (writer state, and a ``<Failure>`` on each of its components), and the
requestor must not restore that writer's components.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

from snapd_vss.coordinator.session_base import SessionCore
from snapd_vss.coordinator.writers import RegisteredWriter
from snapd_vss.documents.backup_components import ComponentEntry
from snapd_vss.documents.writer_metadata import AlternateLocationMapping
from snapd_vss.errors import InvalidArgs, InvalidState
from snapd_vss.vocabulary import (
    FileRestoreStatus,
    RestoreSessionState,
    WriterEvent,
    WriterState,
)

R = RestoreSessionState


def _clean_absolute(path: str, what: str) -> str:
    """``path`` if it is absolute and has no ``..`` or empty parts; else InvalidArgs."""
    parts = path.split("/")
    if not path.startswith("/") or ".." in parts or "." in parts or "\0" in path:
        raise InvalidArgs(f"{what} {path!r} must be an absolute path without '.' or '..' parts")
    return os.path.normpath(path)


@dataclass
class RestoreSession(SessionCore):
    state: RestoreSessionState = RestoreSessionState.CREATED

    kind: ClassVar[str] = "restore session"

    def _involved(self) -> list[RegisteredWriter]:
        """Gathered writers with at least one component selected for restore."""
        selected = {
            w.instance_id
            for w in self.document.writers
            if any(c.selected_for_restore for c in w.components)
        }
        return [g.writer for g in self.gathered.values() if g.writer.instance_id in selected]

    async def gather_writer_metadata(self) -> dict[str, str]:
        return await self._run(self._gather)

    async def _gather(self) -> dict[str, str]:
        self._require("GatherWriterMetadata", R.CREATED, R.METADATA_GATHERED)
        answer = await self._identify_all()
        self._set_state(R.METADATA_GATHERED)
        return answer

    def _restorable(self, instance_id: str, logical_path: str, name: str) -> ComponentEntry:
        """A component the saved document holds. As in VSS, a component that was explicitly
        part of the backup may be selected for restore whatever its selectableForRestore
        (that flag is about components only included through a parent)."""
        return self._component(instance_id, logical_path, name)

    async def set_selected_for_restore(
        self, instance_id: str, logical_path: str, name: str, selected: bool
    ) -> None:
        self._require("SetSelectedForRestore", R.METADATA_GATHERED)
        component = self._restorable(instance_id, logical_path, name)
        if selected and not component.backup_succeeded:
            raise InvalidArgs(
                f"component {logical_path}/{name} was not backed up successfully "
                "(backupSucceeded is false in the document); it cannot be restored"
            )
        component.selected_for_restore = selected

    async def set_restore_options(
        self, instance_id: str, logical_path: str, name: str, options: str
    ) -> None:
        self._require("SetRestoreOptions", R.METADATA_GATHERED)
        self._restorable(instance_id, logical_path, name).restore_options = options

    async def add_alternative_location_mapping(
        self,
        instance_id: str,
        logical_path: str,
        name: str,
        path: str,
        filespec: str,
        recursive: bool,
        destination: str,
    ) -> None:
        self._require("AddAlternativeLocationMapping", R.METADATA_GATHERED, R.PRE_RESTORED)
        component = self._component(instance_id, logical_path, name)
        if not filespec or "/" in filespec:
            raise InvalidArgs(f"filespec {filespec!r} must be a file name pattern without '/'")
        mapping = AlternateLocationMapping(
            path=_clean_absolute(path, "path"),
            filespec=filespec,
            recursive=recursive,
            destination=_clean_absolute(destination, "destination"),
        )
        if mapping not in component.alternate_location_mappings:
            component.alternate_location_mappings.append(mapping)

    async def pre_restore(self) -> None:
        await self._run(self._pre_restore)

    async def _pre_restore(self) -> None:
        self._require("PreRestore", R.METADATA_GATHERED)
        if not any(c.selected_for_restore for w in self.document.writers for c in w.components):
            raise InvalidState("no component is selected; call SetSelectedForRestore first")
        await self._tell_writers(WriterEvent.PRE_RESTORE)
        self._set_state(R.PRE_RESTORED)

    async def set_file_restore_status(
        self, instance_id: str, logical_path: str, name: str, status: str
    ) -> None:
        self._require("SetFileRestoreStatus", R.PRE_RESTORED)
        component = self._component(instance_id, logical_path, name)
        if not component.selected_for_restore:
            raise InvalidState(f"component {logical_path}/{name} is not selected for restore")
        parsed = FileRestoreStatus(FileRestoreStatus.parse(status))
        if parsed is FileRestoreStatus.UNDEFINED:
            raise InvalidArgs("the file restore status must be ALL, NONE or FAILED")
        component.file_restore_status = parsed

    async def post_restore(self) -> None:
        await self._run(self._post_restore)

    async def _post_restore(self) -> None:
        self._require("PostRestore", R.PRE_RESTORED)
        await self._tell_writers(WriterEvent.POST_RESTORE)
        self._set_state(R.POST_RESTORED)

    async def _tell_writers(self, event: WriterEvent) -> None:
        writers = [w for w in self._involved() if not w.state.failed]
        if event is WriterEvent.PRE_RESTORE:
            results = await self._exchange(writers, event, lambda c, doc: c.pre_restore(doc))
        else:
            results = await self._exchange(writers, event, lambda c, doc: c.post_restore(doc))
        for result in results:
            if result.ok:
                result.writer.set_state(WriterState.STABLE)
            self.service.listener.writer_changed(result.writer)

    async def abort(self) -> None:
        """Nothing to undo in the service: restoring files is the requestor's work."""

    async def close(self) -> None:
        if self.state is not R.CLOSED:
            self._set_state(R.CLOSED)
