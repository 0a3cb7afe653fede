"""Restores staged for the next boot (RESTORE_AT_REBOOT[_IF_CANNOT_REPLACE]).

Staging copies the component's files (checked against their sha256, the set read once
in its order) into ``<pending dir>/<ID>/data/`` with a ``plan.json`` naming each
destination; the plan appears under its final name only when complete (written in
``.<ID>.partial``, the filesystem flushed once, renamed).
``snapd-vss-restore-at-boot.service`` runs ``vssctl restore --apply-pending`` before
the services start: each plan is put in place with the same atomic, no-symlink,
writer-credential checks as an immediate restore, then removed. A plan that fails
stays, with ``result.json`` saying why; ``vssctl restore --pending`` lists plans and
``--cancel ID`` removes one.

The directory is ``$SNAPD_VSS_PENDING_DIR``, else ``/var/lib/snapd-vss/pending-restore``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from snapd_vss.backupset.errors import ChecksumMismatch
from snapd_vss.backupset.manifest import EntryType
from snapd_vss.documents.backup_components import utc_timestamp
from snapd_vss.errors import Failed, InvalidArgs, NotFound, VssError
from snapd_vss.restore import files
from snapd_vss.restore.placement import Placed, Placement
from snapd_vss.restore.placer import Content, Contents, check_placement, place
from snapd_vss.restore.report import ComponentOutcome
from snapd_vss.restore.safety import Credentials
from snapd_vss.restore.source import SourceEntry

DEFAULT_DIR = "/var/lib/snapd-vss/pending-restore"
PLAN = "plan.json"
RESULT = "result.json"
DATA = "data"
CHUNK = 1 << 20


def pending_dir(override: str | None = None) -> str:
    return override or os.environ.get("SNAPD_VSS_PENDING_DIR") or DEFAULT_DIR


@dataclass
class PendingItem:
    destination: str
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    sha256: str = ""
    xattrs: dict[str, str] = field(default_factory=dict)
    link_target: str = ""
    staged: str = ""  # data/NNNNNN for files

    def entry(self) -> SourceEntry:
        return SourceEntry(
            path=os.path.basename(self.destination),
            type=EntryType(self.type),
            mode=self.mode,
            uid=self.uid,
            gid=self.gid,
            mtime_ns=self.mtime_ns,
            size=self.size,
            sha256=self.sha256,
            xattrs={k: base64.b64decode(v) for k, v in self.xattrs.items()},
            link_target=self.link_target,
        )


@dataclass
class PendingPlan:
    id: str
    created_at: str
    set_path: str
    set_id: str
    label: str
    instance_id: str
    logical_path: str
    name: str
    method: str
    uid: int
    gid: int
    groups: list[int]
    items: list[PendingItem] = field(default_factory=list)
    state: str = "PENDING"  # PENDING, FAILED (see result.json)
    message: str = ""

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.uid, self.gid, tuple(self.groups))

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "component": self.label,
            "method": self.method,
            "set_path": self.set_path,
            "files": sum(1 for i in self.items if i.type == EntryType.FILE.value),
            "bytes": sum(i.size for i in self.items),
            "state": self.state,
            "message": self.message,
        }


def _write_json(path: str, value: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.flush()
        os.fsync(f.fileno())


def _read_plan(directory: str) -> PendingPlan:
    with open(os.path.join(directory, PLAN), encoding="utf-8") as f:
        value = json.load(f)
    items = [PendingItem(**i) for i in value.pop("items")]
    plan = PendingPlan(**value, items=items)
    result = os.path.join(directory, RESULT)
    if os.path.exists(result):
        with open(result, encoding="utf-8") as f:
            outcome = json.load(f)
        plan.state, plan.message = "FAILED", outcome.get("message", "")
    return plan


def stage(
    placement: Placement,
    contents: Contents,
    outcome: ComponentOutcome,
    credentials: Credentials,
    set_path: str,
    set_id: str,
    root: str | None = None,
) -> str:
    """Copy ``placement``'s files into a new plan; returns its id. Checks credentials first."""
    check_placement(placement, credentials, outcome.label)
    base = pending_dir(root)
    os.makedirs(base, mode=0o700, exist_ok=True)
    plan_id = uuid.uuid4().hex[:12]
    work = os.path.join(base, f".{plan_id}.partial")
    os.makedirs(os.path.join(work, DATA), mode=0o700)
    plan = PendingPlan(
        id=plan_id,
        created_at=utc_timestamp(),
        set_path=set_path,
        set_id=set_id,
        label=outcome.label,
        instance_id=outcome.instance_id,
        logical_path=outcome.logical_path,
        name=outcome.name,
        method=outcome.method,
        uid=credentials.uid,
        gid=credentials.gid,
        groups=list(credentials.groups),
    )
    try:
        staged = _stage_files(work, placement, contents)
        plan.items = [
            _pending_item(item, staged.get(item.destination, "")) for item in placement.items
        ]
        files_dir = os.open(os.path.join(work, DATA), os.O_RDONLY | os.O_DIRECTORY)
        try:
            files.syncfs(files_dir)  # every staged file at once
            files.fsync_directory(files_dir)
        finally:
            os.close(files_dir)
        _write_json(os.path.join(work, PLAN), asdict(plan))
        os.rename(work, os.path.join(base, plan_id))
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
        try:
            files.fsync_directory(fd)
        finally:
            os.close(fd)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    outcome.staged = plan_id
    outcome.placement = "pending"
    return plan_id


def _stage_files(work: str, placement: Placement, contents: Contents) -> dict[str, str]:
    """Copy the files' bytes (checked) into ``work/data``; destination → staged name."""
    regular = [p for p in placement.items if p.entry.type is EntryType.FILE]
    index = {p.destination: n for n, p in enumerate(placement.items)}
    staged: dict[str, str] = {}
    for content in contents(regular):
        item = content.item
        name = f"{DATA}/{index[item.destination]:06d}"
        digest = hashlib.sha256()
        size = 0
        with open(os.path.join(work, name), "xb") as f:
            for chunk in content.chunks:
                f.write(chunk)
                size += len(chunk)
                if not content.checked:
                    digest.update(chunk)
        bad_sha = not content.checked and digest.hexdigest() != item.entry.sha256
        if size != item.entry.size or bad_sha:
            raise ChecksumMismatch(f"{item.destination}: the content read does not match")
        staged[item.destination] = name
    missing = [p.destination for p in regular if p.destination not in staged]
    if missing:
        raise Failed(f"{missing[0]}: the backup set handed out no content for it")
    return staged


def _pending_item(item: Placed, staged: str) -> PendingItem:
    entry = item.entry
    return PendingItem(
        destination=item.destination,
        type=entry.type.value,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        size=entry.size,
        sha256=entry.sha256,
        xattrs={k: base64.b64encode(v).decode() for k, v in entry.xattrs.items()},
        link_target=entry.link_target,
        staged=staged,
    )


def list_pending(root: str | None = None) -> list[PendingPlan]:
    base = pending_dir(root)
    try:
        names = sorted(n for n in os.listdir(base) if not n.startswith("."))
    except FileNotFoundError:
        return []
    plans: list[PendingPlan] = []
    for name in names:
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            plans.append(_read_plan(os.path.join(base, name)))
    return sorted(plans, key=lambda p: (p.created_at, p.id))


def _plan_dir(plan_id: str, root: str | None) -> str:
    if not plan_id or "/" in plan_id or plan_id.startswith("."):
        raise InvalidArgs(f"{plan_id!r} is not a pending restore id; see vssctl restore --pending")
    directory = os.path.join(pending_dir(root), plan_id)
    if not os.path.isfile(os.path.join(directory, PLAN)):
        raise NotFound(f"no pending restore {plan_id}; see vssctl restore --pending")
    return directory


def cancel(plan_id: str, root: str | None = None) -> PendingPlan:
    directory = _plan_dir(plan_id, root)
    plan = _read_plan(directory)
    shutil.rmtree(directory)
    return plan


def _staged_contents(directory: str, by_destination: dict[str, str]) -> Contents:
    def contents(items: list[Placed]) -> Iterator[Content]:
        for item in items:
            path = os.path.join(directory, by_destination[item.destination])
            yield Content(item, _file_chunks(path), checked=False)  # write_temp checks

    return contents


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def apply_one(plan_id: str, root: str | None = None) -> ComponentOutcome:
    """Put one plan's files in place; removes the plan when every file is restored."""
    directory = _plan_dir(plan_id, root)
    plan = _read_plan(directory)
    outcome = ComponentOutcome(
        plan.instance_id,
        plan.logical_path,
        plan.name,
        plan.label,
        plan.method,
        placement="original",
        staged=plan.id,
    )
    items = [Placed(i.entry(), i.destination, i.destination) for i in plan.items]
    placement = Placement("original", items, [])
    by_destination = {i.destination: i.staged for i in plan.items if i.staged}
    try:
        check_placement(placement, plan.credentials, plan.label)
        place(placement, _staged_contents(directory, by_destination), plan.credentials, outcome)
    except VssError as exc:
        outcome.fail(exc.code, exc.message)
    if outcome.ok:
        shutil.rmtree(directory)
    else:
        message = outcome.message or "; ".join(outcome.failed[:3])
        _write_json(
            os.path.join(directory, RESULT), {"message": message, "outcome": outcome.to_json()}
        )
    return outcome


def apply_all(root: str | None = None) -> list[ComponentOutcome]:
    """Apply every pending plan, oldest first (what the boot-time unit runs)."""
    outcomes: list[ComponentOutcome] = []
    for plan in list_pending(root):
        try:
            outcomes.append(apply_one(plan.id, root))
        except (OSError, ValueError) as exc:
            raise Failed(f"pending restore {plan.id} cannot be read: {exc}") from exc
    return outcomes
