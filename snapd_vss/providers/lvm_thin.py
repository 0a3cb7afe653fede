"""The LVM thin provider: one thin snapshot (``lvcreate -s``, no size) per volume.

A volume qualifies when it is mounted from an LVM thin LV. Snapshots are tagged
``snapd_vss``, ``snapd_vss_set_<short set id>`` and ``snapd_vss_id_<snapshot id>`` and
named ``<origin>_vss_<yyyymmddHHMMSS>_<short id>`` (UTC) so an admin sees in ``lvs``
what they belong to; ``provider_data`` keeps ``vg``, ``lv``, ``origin``, ``pool`` and
``fs_type`` (plus ``mount_point`` while exposed).

Freezing. ``lvcreate -s`` of a thin LV suspends the origin's device-mapper device with
"lockfs", which freezes the filesystem in the kernel for the instant of the snapshot, so
each snapshot is filesystem-consistent by itself. For a set over several LVs to be one
point in time, the coordinator holds every filesystem of the set frozen (FIFREEZE)
across all the ``lvcreate`` calls, which needs a kernel that nests LVM's freeze inside
the service's (Linux 6.8 or later; see :mod:`snapd_vss.providers.lvm.freezing` and the
setting ``coordinator_freeze``). A filesystem that holds the service's state or runtime
directory or LVM's configuration directory is never held frozen (the service and LVM
write there while the snapshots are made); LVM freezes it for the instant of its own
snapshot. :meth:`why_not_held` says why a volume is not held. Because each
``lvcreate`` freezes its own filesystem, :meth:`consistent_alone` is true: the
coordinator leaves one thin LV unheld when it holds every other volume of the set.

Start-up. The service reconciles its store after :meth:`startup`: it asks
:meth:`exists` about every persistent snapshot (gone = INVALID) and deletes the
half-made and non-persistent ones. A half-made record may not know its LV yet (the
daemon died between ``lvcreate`` and recording it), so :meth:`delete` finds such an LV by
its ``snapd_vss_id_<id>`` tag. :meth:`startup` itself lists every LV tagged ``snapd_vss``
that no record of the service's store knows (``unclaimed``), and logs each with the
command that removes it: it may belong to another snapd-vss instance (another state
directory), so it is reported, not removed.

Pool usage (:attr:`pools`) is refreshed by every full ``lvs`` the provider runs, from
the kernel's device-mapper status for the pool of each ``prepare`` and ``delete``, and
by an ``lvs`` every ``pool_refresh_s`` seconds while the daemon runs (held back while a
snapshot is between ``prepare`` and the end of its ``commit``, so it never competes with
an ``lvcreate`` for the VG lock); :attr:`pools_changed` is called when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from snapd_vss.errors import InsufficientStorage, ProviderFailure, VolumeNotSupported, VssError
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import Availability, Provider, ProviderContext
from snapd_vss.providers.lvm import dm, freezing, report, tools
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze, FreezeDecision
from snapd_vss.providers.lvm.report import LvInfo, PoolUsage
from snapd_vss.store import SnapshotStore
from snapd_vss.vocabulary import ProviderType
from snapd_vss.volumes import list_mounts

# Read-only mount options a snapshot needs: it has the origin's UUID and a journal
# that must not be replayed on a read-only device.
MOUNT_OPTIONS = {
    "xfs": "ro,nouuid,norecovery",
    "ext4": "ro,noload",
    "ext3": "ro,noload",
    "ext2": "ro",
}
DEVICE_WAIT_S = 10.0
NOT_FOUND = "failed to find logical volume"
POOL_REFRESH_S = 60.0
BUSY_S = 120.0  # a prepared snapshot not committed after this long no longer holds refreshes
BUSY_RETRY_S = 1.0
STORE_FILE = "snapshots.db"  # the service's snapshot store in the state directory

log = logging.getLogger(__name__)


def _no_listener(pools: list[PoolUsage]) -> None:
    return None


@dataclass(frozen=True)
class ReconcileReport:
    """What start-up found: stored snapshots whose LV is gone, tagged LVs nobody knows."""

    missing: list[SnapshotRecord]
    unknown: list[LvInfo]


class LvmThinProvider(Provider):
    name = "lvm_thin"
    type = ProviderType.SYSTEM
    version = "1"

    def __init__(
        self,
        context: ProviderContext,
        *,
        data_threshold: float = 80.0,
        metadata_threshold: float = 80.0,
        coordinator_freeze: CoordinatorFreeze | bool = CoordinatorFreeze.AUTO,
        kernel_release: str | None = None,
        udev_sync: bool = False,
        sysfs: str = "/sys",
        pool_refresh_s: float = POOL_REFRESH_S,
    ) -> None:
        super().__init__(context)
        self.data_threshold = data_threshold
        self.metadata_threshold = metadata_threshold
        mode = CoordinatorFreeze.parse(coordinator_freeze)
        if mode is None:
            raise ValueError(
                f"coordinator_freeze must be auto, always or never, not {coordinator_freeze!r}"
            )
        self.coordinator_freeze = mode
        self.freeze: FreezeDecision = freezing.decide(mode, kernel_release)
        """Whether the coordinator holds these filesystems frozen across a set, and why."""
        self.udev_sync = udev_sync
        self.sysfs = Path(sysfs)
        self.pool_refresh_s = pool_refresh_s
        self.pools: list[PoolUsage] = []
        """Usage of every thin pool, as of the last full ``lvs``."""
        self.pools_changed: Callable[[list[PoolUsage]], None] = _no_listener
        """Called with the new list when :attr:`pools` changes (the D-Bus layer sets it)."""
        self.unclaimed: list[LvInfo] = []
        """LVs tagged ``snapd_vss`` that no stored snapshot knows, found by :meth:`startup`."""
        self._refresher: asyncio.Task[None] | None = None
        self._in_progress: dict[str, float] = {}  # snapshot id -> when prepare() began

    # ----------------------------------------------------------------- availability
    def lvm_program(self) -> str | None:
        return tools.find_program("lvm")

    def availability(self) -> Availability:
        if self.lvm_program() is None:
            return Availability(False, "the LVM tools are not installed (Debian package lvm2)")
        if not _kernel_has_device_mapper():
            return Availability(
                False,
                "the kernel has no device-mapper (no 'device-mapper' in /proc/devices); "
                "load it with `modprobe dm_mod`",
            )
        return Availability(True)

    def supports(self, volume: Volume) -> None:
        if volume.fs_type not in MOUNT_OPTIONS:
            known = ", ".join(sorted(MOUNT_OPTIONS))
            raise VolumeNotSupported(
                f"{volume.mount_point} is {volume.fs_type}; the lvm_thin provider snapshots "
                f"only {known} filesystems"
            )
        reason = self._why_not_thin_lv(volume)
        if reason:
            raise VolumeNotSupported(f"{volume.mount_point} ({volume.source}) {reason}")

    def _why_not_thin_lv(self, volume: Volume) -> str:
        """Why the volume's block device is not an LVM thin LV ("" if it is), from sysfs."""
        dev = self.sysfs / "dev" / "block" / volume.major_minor
        if not (dev / "dm").is_dir():
            return f"is on device {volume.major_minor}, which is not a device-mapper device"
        uuid = _read(dev / "dm" / "uuid")
        if not uuid.startswith("LVM-"):
            return f"is a device-mapper device but not an LVM logical volume (uuid {uuid!r})"
        if "-" in uuid[4:]:
            return "is on an internal LVM device, not on a logical volume"
        slaves = (dev / "slaves").iterdir() if (dev / "slaves").is_dir() else iter(())
        if not any(_read(s / "dm" / "uuid").endswith("-tpool") for s in slaves):
            return (
                "is on a thick (not thin-provisioned) LVM logical volume; the lvm_thin "
                "provider needs a thin LV (lvcreate -V SIZE -T VG/POOL)"
            )
        return ""

    def needs_fs_freeze(self, volume: Volume) -> bool:
        return not self.why_not_held(volume)

    def consistent_alone(self, volume: Volume) -> bool:
        return True  # lvcreate freezes the origin's filesystem (lockfs) for its instant

    def why_not_held(self, volume: Volume) -> str:
        if not self.freeze.hold:
            return self.freeze.reason
        for what, path in self._paths_written_during_commit():
            try:
                device = freezing.device_of(path)
            except OSError:
                continue
            if device == volume.major_minor:
                return (
                    f"{volume.mount_point} holds {what} ({path}), which must stay writable "
                    "while the snapshots are made; LVM freezes it for the instant of its "
                    "own snapshot"
                )
        return ""

    def _paths_written_during_commit(self) -> list[tuple[str, str]]:
        return [
            ("LVM's configuration directory", os.environ.get("LVM_SYSTEM_DIR") or "/etc/lvm"),
            ("the service's state directory", self.context.state_dir),
            ("the service's runtime directory", self.context.runtime_dir),
        ]

    # ----------------------------------------------------------------- LVM commands
    def _lvm(self, *args: str) -> list[str]:
        return [self.lvm_program() or "lvm", *args]

    def _change_opts(self) -> list[str]:
        """Options for commands that change LVs: no prompts, and no waiting on udev."""
        return ["--yes"] if self.udev_sync else ["--yes", "--noudevsync"]

    async def report(self, *selection: str) -> list[LvInfo]:
        """``lvs`` over all VGs (or the named ``VG``, ``VG/LV``, ``@tag``)."""
        result = await tools.check(
            self._lvm("lvs", *report.LVS_OPTIONS, *selection), "listing LVM logical volumes"
        )
        lvs = report.parse_lvs_json(result.stdout)
        if not selection:
            self._note_pools(report.pool_usage(lvs))
        return lvs

    def _note_pools(self, pools: list[PoolUsage]) -> None:
        if pools != self.pools:
            self.pools = pools
            self.pools_changed(pools)

    async def pool_usage(self) -> list[PoolUsage]:
        """Data and metadata usage of every thin pool (for the provider's properties)."""
        return report.pool_usage(await self.report())

    async def tagged(self) -> list[LvInfo]:
        """Every LV this service created (tag ``snapd_vss``), in all VGs."""
        return await self.report("@" + report.TAG)

    async def locate(self, volume: Volume) -> tuple[LvInfo, PoolUsage]:
        """The thin LV the volume is mounted from, and its pool's usage."""
        lvs = await self.report()
        lv = next((x for x in lvs if x.major_minor == volume.major_minor), None)
        if lv is None or not lv.is_thin:
            what = "no active LV" if lv is None else f"{lv.full_name}, a {lv.segtype} LV"
            raise VolumeNotSupported(
                f"{volume.mount_point} ({volume.source}, {volume.major_minor}) is on {what}; "
                "the lvm_thin provider needs a thin LV"
            )
        pool = next((p for p in report.pool_usage(lvs) if (p.vg, p.pool) == (lv.vg, lv.pool)), None)
        if pool is None:
            raise ProviderFailure(
                f"LVM reports {lv.full_name} in thin pool {lv.pool!r}, but lists no such pool"
            )
        return lv, pool

    def check_pool(self, pool: PoolUsage, volume: Volume) -> None:
        for kind, used, limit in (
            ("data", pool.data_percent, self.data_threshold),
            ("metadata", pool.metadata_percent, self.metadata_threshold),
        ):
            if used > limit:
                raise InsufficientStorage(
                    f"Not snapshotting {volume.mount_point}: thin pool {pool.full_name} "
                    f"{kind} is {used:.1f}% used, above the {limit:g}% limit; a full thin pool "
                    "turns the filesystems on it read-only. Extend the pool "
                    f"(lvextend -L +SIZE {pool.full_name}"
                    + (" --poolmetadatasize +SIZE" if kind == "metadata" else "")
                    + "), delete old snapshots (lvs @snapd_vss), or raise the lvm_thin "
                    f"{kind}_threshold."
                )

    # ----------------------------------------------------------------- life cycle
    async def prepare(self, record: SnapshotRecord, volume: Volume) -> None:
        """Check the pool and record where the origin is.

        Fast path: the names from sysfs and the pool's usage from the kernel's
        device-mapper status (one ioctl: no process, no device scan, no LVM lock, so
        nothing that could wait behind another LVM command); anything unexpected falls
        back to ``lvs``.
        """
        self.supports(volume)
        self._in_progress[record.id] = time.monotonic()
        fast = await self._locate_from_kernel(volume)
        if fast is None:
            lv, pool = await self.locate(volume)
            vg, origin = lv.vg, lv.name
        else:
            vg, origin, pool = fast
        try:
            self.check_pool(pool, volume)
        except InsufficientStorage:
            self._in_progress.pop(record.id, None)
            await self._refresh_pools_quietly()  # show the admin the full pool at once
            raise
        record.provider_data.update(vg=vg, origin=origin, pool=pool.pool, fs_type=volume.fs_type)

    async def _locate_from_kernel(self, volume: Volume) -> tuple[str, str, PoolUsage] | None:
        """(vg, origin LV, pool usage) from sysfs and the pool's device-mapper status, or None."""
        dev = self.sysfs / "dev" / "block" / volume.major_minor
        origin = report.split_dm_name(_read(dev / "dm" / "name"))
        slaves = sorted((dev / "slaves").iterdir()) if (dev / "slaves").is_dir() else []
        uuids = [(s, _read(s / "dm" / "uuid")) for s in slaves]
        tpools = [(s, uuid) for s, uuid in uuids if uuid.endswith("-tpool")]
        if origin is None or len(tpools) != 1:
            return None
        tpool_name = _read(tpools[0][0] / "dm" / "name")
        pool = report.split_dm_name(tpool_name.removesuffix("-tpool"))
        if pool is None or pool[0] != origin[0] or not tpool_name.endswith("-tpool"):
            return None
        usage = await self._thin_pool_status(tpool_name, tpools[0][1])
        if usage is None:
            return None
        data_percent, metadata_percent = usage
        known = next((p for p in self.pools if (p.vg, p.pool) == pool), None)
        found = PoolUsage(
            pool[0], pool[1], data_percent, metadata_percent, known.size_bytes if known else 0
        )
        if known is not None:
            self._note_pools([found if p is known else p for p in self.pools])
        return origin[0], origin[1], found

    async def _thin_pool_status(self, name: str, uuid: str = "") -> tuple[float, float] | None:
        """(data %, metadata %) of a thin pool's ``-tpool`` device, without a metadata commit.

        The DM_TABLE_STATUS ioctl (no process); ``dmsetup status --noflush`` if the ioctl
        fails; None if neither says (the caller then asks ``lvs``).
        """
        try:
            targets = dm.table_status(uuid=uuid) if uuid else dm.table_status(name=name)
            if len(targets) == 1:
                return report.parse_thin_pool_status(targets[0].line)
            log.debug("thin pool %s has %d device-mapper targets", name, len(targets))
        except OSError as exc:
            log.debug("DM_TABLE_STATUS of %s failed (%s); asking dmsetup", name, exc)
        dmsetup = tools.find_program("dmsetup")
        if dmsetup is None:
            return None
        result = await tools.run([dmsetup, "status", "--noflush", name])
        return report.parse_thin_pool_status(result.stdout) if result.returncode == 0 else None

    async def commit(self, record: SnapshotRecord, volume: Volume) -> None:
        try:
            await self._commit(record, volume)
        finally:
            self._in_progress.pop(record.id, None)

    async def _commit(self, record: SnapshotRecord, volume: Volume) -> None:
        data = record.provider_data
        if "origin" not in data:
            await self.prepare(record, volume)
        vg, origin = data["vg"], data["origin"]
        name = report.snapshot_name(origin, datetime.now(UTC), record.id)
        tags = report.snapshot_tags(record.id, record.snapshot_set_id)
        args = ["lvcreate", "--snapshot", "--name", name, *self._change_opts()]
        for tag in tags:
            args += ["--addtag", tag]
        await tools.check(
            self._lvm(*args, f"{vg}/{origin}"),
            f"snapshot of {volume.mount_point} ({vg}/{origin})",
            _commit_hint(volume),
        )
        data["lv"] = name
        record.device_path = f"/dev/{vg}/{name}"

    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        vg, lv = _vg_lv(record)
        fs_type = record.provider_data.get("fs_type", "")
        options = MOUNT_OPTIONS.get(fs_type)
        if options is None:
            raise ProviderFailure(f"snapshot {vg}/{lv}: cannot mount a {fs_type!r} filesystem")
        mount_point = os.path.abspath(mount_point)
        if _mounted(mount_point):
            if record.provider_data.get("mount_point") == mount_point:
                return mount_point
            raise ProviderFailure(
                f"{mount_point} is already a mount point; choose an empty directory"
            )
        await tools.check(
            self._lvm(
                "lvchange",
                "--activate",
                "y",
                "--ignoreactivationskip",
                *self._change_opts(),
                f"{vg}/{lv}",
            ),
            f"activating snapshot {vg}/{lv}",
        )
        device = await _wait_for_device(vg, lv)
        created = not os.path.isdir(mount_point)
        try:
            os.makedirs(mount_point, exist_ok=True)
            await tools.check(
                ["mount", "-t", fs_type, "-o", options, device, mount_point],
                f"mounting snapshot {vg}/{lv} on {mount_point}",
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await self._deactivate(vg, lv)
            if created:
                with contextlib.suppress(OSError):
                    os.rmdir(mount_point)
            raise
        record.provider_data["mount_point"] = mount_point
        record.provider_data["created_mount_point"] = "1" if created else ""
        return mount_point

    async def unexpose(self, record: SnapshotRecord) -> None:
        if "lv" not in record.provider_data:
            return
        vg, lv = _vg_lv(record)
        mount_point = record.provider_data.get("mount_point") or record.exposed_path
        if mount_point and _mounted(mount_point):
            await tools.check(
                ["umount", mount_point],
                f"unmounting snapshot {vg}/{lv} from {mount_point}",
                f"Close the programs that use files below it (fuser -vm {mount_point}) and retry",
            )
        if mount_point and record.provider_data.get("created_mount_point") == "1":
            with contextlib.suppress(OSError):
                os.rmdir(mount_point)
        record.provider_data.pop("mount_point", None)
        record.provider_data.pop("created_mount_point", None)
        await self._deactivate(vg, lv)

    async def _deactivate(self, vg: str, lv: str) -> None:
        result = await tools.run(
            self._lvm("lvchange", "--activate", "n", *self._change_opts(), f"{vg}/{lv}")
        )
        if result.returncode != 0 and NOT_FOUND not in result.message.lower():
            raise tools.failure(result, f"deactivating snapshot {vg}/{lv}")

    async def delete(self, record: SnapshotRecord) -> None:
        self._in_progress.pop(record.id, None)
        if "lv" not in record.provider_data:
            # The commit did not record an LV: it failed, was cancelled while lvcreate
            # ran, or the daemon died before recording it. Find it by its id tag.
            await self._remove_by_id_tag(record)
            return
        vg, lv = _vg_lv(record)
        await self.unexpose(record)
        await self._remove(vg, lv)
        await self._refresh_pool_quietly(vg, record.provider_data.get("pool", ""))

    async def _remove(self, vg: str, lv: str) -> None:
        result = await tools.run(self._lvm("lvremove", *self._change_opts(), f"{vg}/{lv}"))
        if result.returncode != 0 and NOT_FOUND not in result.message.lower():
            raise tools.failure(result, f"removing snapshot {vg}/{lv}")

    async def _remove_by_id_tag(self, record: SnapshotRecord) -> None:
        if not self.availability().available:
            return  # no LVM here: nothing can have been made
        for found in await self.report("@" + report.id_tag(record.id)):
            log.info(
                "removing %s, left by snapshot %s's unfinished commit", found.full_name, record.id
            )
            await self._remove(found.vg, found.name)

    async def _refresh_pool_quietly(self, vg: str, pool: str) -> None:
        """Refresh one known pool from the kernel (no ``lvs``); every pool if that fails."""
        known = next((p for p in self.pools if (p.vg, p.pool) == (vg, pool)), None)
        usage = (
            await self._thin_pool_status(f"{_dm_name(vg)}-{_dm_name(pool)}-tpool")
            if known is not None
            else None
        )
        if known is None or usage is None:
            await self._refresh_pools_quietly()
            return
        found = PoolUsage(vg, pool, usage[0], usage[1], known.size_bytes)
        self._note_pools([found if p is known else p for p in self.pools])

    def snapshot_in_progress(self) -> bool:
        """Is a snapshot between prepare() and the end of its commit()? (``lvs`` would
        compete with its ``lvcreate`` for the VG lock, so refreshes wait.)"""
        now = time.monotonic()
        for snapshot_id, since in list(self._in_progress.items()):
            if now - since > BUSY_S:
                del self._in_progress[snapshot_id]  # prepared, then never committed
        return bool(self._in_progress)

    async def _refresh_pools_quietly(self) -> None:
        try:
            await self.pool_usage()
        except VssError as exc:
            log.debug("could not refresh thin pool usage: %s", exc.message)

    async def exists(self, record: SnapshotRecord) -> bool:
        if "lv" not in record.provider_data:
            return False
        vg, lv = _vg_lv(record)
        result = await tools.run(self._lvm("lvs", *report.LVS_OPTIONS, f"{vg}/{lv}"))
        if result.returncode == 0:
            return any(x.name == lv for x in report.parse_lvs_json(result.stdout))
        if NOT_FOUND in result.message.lower():
            return False
        raise tools.failure(result, f"looking up snapshot {vg}/{lv}")

    # ----------------------------------------------------------------- daemon life
    async def startup(self) -> None:
        """Report LVs tagged ``snapd_vss`` that the store does not know; watch pool usage."""
        try:
            tagged = await self.tagged()
            await self.pool_usage()
        except VssError as exc:
            log.warning("lvm_thin: cannot list LVM volumes at start-up: %s", exc.message)
            tagged = []
        known = self._stored_snapshot_ids()
        self.unclaimed = [lv for lv in tagged if lv.snapshot_id not in known]
        for lv in self.unclaimed:
            log.warning(
                "LVM snapshot %s is tagged %s but no snapshot of this service records it "
                "(left by a crash, a lost state directory or another snapd-vss instance); "
                "if nobody needs it, remove it: lvremove %s",
                lv.full_name,
                report.TAG,
                lv.full_name,
            )
        if self.pool_refresh_s > 0 and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_periodically())

    async def shutdown(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.pool_refresh_s)
            while self.snapshot_in_progress():
                await asyncio.sleep(BUSY_RETRY_S)
            await self._refresh_pools_quietly()

    def _stored_snapshot_ids(self) -> set[str]:
        """Ids of every snapshot in the service's store (any provider, any state)."""
        path = os.path.join(self.context.state_dir, STORE_FILE)
        if not os.path.exists(path):
            return set()
        try:
            with SnapshotStore(path) as store:
                return {r.id for r in store.all()}
        except VssError as exc:
            log.warning("lvm_thin: cannot read %s to reconcile: %s", path, exc.message)
            return set()

    async def reconcile(self, records: list[SnapshotRecord]) -> ReconcileReport:
        """Compare the store with LVM: records whose LV is gone, our LVs with no record."""
        ours = [r for r in records if r.provider == self.name]
        tagged = await self.tagged()
        present = {(x.vg, x.name) for x in tagged}
        known = set()
        missing = []
        for rec in ours:
            vg, lv = rec.provider_data.get("vg", ""), rec.provider_data.get("lv", "")
            known.add((vg, lv))
            if (vg, lv) not in present:
                missing.append(rec)
        unknown = [x for x in tagged if (x.vg, x.name) not in known]
        return ReconcileReport(missing=missing, unknown=unknown)


def _vg_lv(record: SnapshotRecord) -> tuple[str, str]:
    try:
        return record.provider_data["vg"], record.provider_data["lv"]
    except KeyError:
        raise ProviderFailure(
            f"snapshot {record.id} has no LVM volume recorded; it was never committed"
        ) from None


def _commit_hint(volume: Volume) -> str:
    return (
        f"If LVM could not suspend the device, check that {volume.mount_point} is not frozen "
        "(fsfreeze -u) and that no other LVM command is running"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _kernel_has_device_mapper() -> bool:
    try:
        with open("/proc/devices") as f:
            return any(line.split()[-1:] == ["device-mapper"] for line in f)
    except OSError:
        return False


def _mounted(path: str) -> bool:
    real = os.path.realpath(path)
    return any(v.mount_point == real for v in list_mounts())


async def _wait_for_device(vg: str, lv: str) -> str:
    """The snapshot's device node, once udev (or LVM itself) has made it."""
    candidates = [f"/dev/{vg}/{lv}", f"/dev/mapper/{_dm_name(vg)}-{_dm_name(lv)}"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEVICE_WAIT_S
    while True:
        for path in candidates:
            if os.path.exists(path):
                return path
        if loop.time() > deadline:
            raise ProviderFailure(
                f"snapshot {vg}/{lv} was activated but {candidates[0]} did not appear within "
                f"{DEVICE_WAIT_S:g} s; check that udev is running (or run `vgmknodes`)"
            )
        await asyncio.sleep(0.05)


def _dm_name(part: str) -> str:
    return part.replace("-", "--")
