"""What a restore did, per component: what was restored, skipped, failed, not attempted."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from snapd_vss.documents.writer_metadata import AlternateLocationMapping
from snapd_vss.vocabulary import FileRestoreStatus


@dataclass
class ComponentOutcome:
    instance_id: str
    logical_path: str
    name: str
    label: str
    method: str
    placement: str = ""  # original, alternate, to-alternate, pending, none
    restored: list[str] = field(default_factory=list)  # destination paths written
    skipped: list[str] = field(default_factory=list)  # "path: why"
    removed: list[str] = field(default_factory=list)  # files not in the set, taken away
    failed: list[str] = field(default_factory=list)  # "path: why"
    not_restored: list[str] = field(default_factory=list)  # never attempted after a failure
    staged: str = ""  # pending restore id (RESTORE_AT_REBOOT...)
    mappings_used: list[AlternateLocationMapping] = field(default_factory=list)
    bytes: int = 0
    message: str = ""
    error_code: str = ""
    notes: list[str] = field(default_factory=list)  # e.g. how the writer's uid was found

    @property
    def status(self) -> FileRestoreStatus:
        """ALL when nothing failed; NONE when the failure left every file untouched."""
        if not self.failed and not self.error_code:
            if self.placement == "none":
                return FileRestoreStatus.NONE
            return FileRestoreStatus.ALL
        if self.restored or self.removed:
            return FileRestoreStatus.FAILED
        return FileRestoreStatus.NONE

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error_code

    def fail(self, code: str, message: str) -> None:
        self.error_code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["status"] = self.status.value
        return value


@dataclass
class RestoreReport:
    set_path: str
    set_id: str
    dry_run: bool = False
    components: list[ComponentOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.components)

    def to_json(self) -> dict[str, Any]:
        return {
            "set_path": self.set_path,
            "set_id": self.set_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "components": [c.to_json() for c in self.components],
        }
