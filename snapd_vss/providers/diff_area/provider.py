"""The diff-area provider: userspace copy-on-write snapshots of attached volume images.

An admin attaches an image (:meth:`DiffAreaProvider.attach`); the provider starts the
volume's server process (:mod:`.server`), which serves the image through FUSE as one
device file, and sets up a loop device on that file. The admin makes a filesystem on the
loop device and mounts it. Snapshots of that mount go through the normal coordinator
path: the coordinator freezes the filesystem (from its own guard process), calls
:meth:`commit` — which only sends ``create_snapshot`` to the server over its control
socket; the server serves the loop device *below* the frozen filesystem, so it never
blocks on it — and thaws.

Attachments are persisted under ``STATE_DIR/diff_area/volumes/<name>/volume.json`` and
brought back by :meth:`startup`. Servers run in their own session and outlive a daemon
restart: :meth:`startup` reconnects to a live one and restarts a dead one (with a fresh
loop device; a filesystem still mounted on the old one must be remounted by the admin).

Snapshots the server drops because the diff area is full are reported to the callables
in :attr:`DiffAreaProvider.listeners` as ``(snapshot_id, reason)``; the daemon turns that
into the snapshot's INVALID state, a D-Bus signal and a journal entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from snapd_vss.errors import (
    InvalidArgs,
    InvalidState,
    NotFound,
    ProviderFailure,
    VolumeNotSupported,
)
from snapd_vss.model import SnapshotRecord, Volume
from snapd_vss.providers.base import Availability, Provider, ProviderContext
from snapd_vss.providers.diff_area import control, process
from snapd_vss.providers.diff_area.config import (
    CONFIG_FILE,
    DEFAULT_CHUNK_SIZE,
    FullPolicy,
    VolumeConfig,
    check_chunk_size,
)
from snapd_vss.providers.diff_area.server import snapshot_file_name

log = logging.getLogger(__name__)

Listener = Callable[[str, str], None]  # (snapshot id, reason it became invalid)

MOUNT_OPTIONS = {
    "ext4": "ro,noload",
    "ext3": "ro,noload",
    "xfs": "ro,norecovery,nouuid",
}


@dataclass(frozen=True)
class AttachedVolume:
    name: str
    image: str
    diff_area_dir: str
    max_bytes: int
    policy: FullPolicy
    chunk_size: int
    device_file: str  # the FUSE file serving the live volume
    loop_device: str  # where the admin makes and mounts the filesystem
    used_bytes: int = 0
    size: int = 0


@dataclass(frozen=True)
class SnapshotStatus:
    id: str
    valid: bool
    reason: str
    created_us: int


class DiffAreaProvider(Provider):
    name: ClassVar[str] = "diff_area"
    version: ClassVar[str] = "1"

    def __init__(self, context: ProviderContext) -> None:
        super().__init__(context)
        self.volumes_dir = os.path.join(context.state_dir, "diff_area", "volumes")
        self.run_root = os.path.join(context.runtime_dir, "diff_area")
        self.listeners: list[Listener] = []
        self._watchers: dict[str, asyncio.Task[None]] = {}

    # ---------------------------------------------------------------- paths

    def _volume_dir(self, name: str) -> str:
        return os.path.join(self.volumes_dir, name)

    def _run_dir(self, name: str) -> str:
        return os.path.join(self.run_root, name)

    def _names(self) -> list[str]:
        if not os.path.isdir(self.volumes_dir):
            return []
        return sorted(
            n for n in os.listdir(self.volumes_dir)
            if os.path.exists(os.path.join(self.volumes_dir, n, CONFIG_FILE))
        )

    # ---------------------------------------------------------------- Provider

    def availability(self) -> Availability:
        if not os.path.exists("/dev/fuse"):
            return Availability(False, "/dev/fuse is missing; load the fuse module")
        if shutil.which("losetup") is None:
            return Availability(False, "losetup is missing; install util-linux")
        try:
            import pyfuse3  # noqa: F401
        except ImportError:
            return Availability(False, "pyfuse3 is not installed; install snapd-vss[fuse]")
        return Availability(True)

    def supports(self, volume: Volume) -> None:
        self._name_for(volume)

    def needs_fs_freeze(self, volume: Volume) -> bool:
        return True

    async def prepare(self, record: SnapshotRecord, volume: Volume) -> None:
        name = self._name_for(volume)
        await control.call(process.socket_path(self._run_dir(name)), "ping", timeout=10.0)

    async def commit(self, record: SnapshotRecord, volume: Volume) -> None:
        name = self._name_for(volume)
        run_dir = self._run_dir(name)
        await control.call(
            process.socket_path(run_dir), "create_snapshot", timeout=10.0,
            id=record.id, created_us=record.creation_time_us,
        )
        mnt = process.mountpoint(run_dir)
        record.device_path = os.path.join(mnt, snapshot_file_name(record.id))
        record.provider_data.update({"volume": name, "fs_type": volume.fs_type})

    async def delete(self, record: SnapshotRecord) -> None:
        await self.unexpose(record)
        name = record.provider_data.get("volume", "")
        if name not in self._names():
            return
        with contextlib.suppress(NotFound):
            await control.call(process.socket_path(self._run_dir(name)), "delete_snapshot",
                               id=record.id)

    async def expose(self, record: SnapshotRecord, mount_point: str) -> str:
        status = await self.snapshot_status(record)
        if not status.valid:
            raise ProviderFailure(f"snapshot {record.id} cannot be exposed: {status.reason}")
        if not mount_point:
            mount_point = os.path.join(self.run_root, "snapshots", record.id)
        fs_type = record.provider_data.get("fs_type", "")
        options = MOUNT_OPTIONS.get(fs_type, "ro")
        await asyncio.to_thread(self._expose, record, mount_point, options)
        return mount_point

    def _expose(self, record: SnapshotRecord, mount_point: str, options: str) -> None:
        os.makedirs(mount_point, mode=0o700, exist_ok=True)
        loop = process.loop_attach(record.device_path, read_only=True)
        result = subprocess.run(["mount", "-o", options, loop, mount_point],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            process.loop_detach(loop)
            raise ProviderFailure(
                f"mounting snapshot {record.id} at {mount_point} failed: {result.stderr.strip()}"
            )
        record.provider_data.update({"loop": loop, "mount_point": mount_point})
        record.exposed_path = mount_point

    async def unexpose(self, record: SnapshotRecord) -> None:
        await asyncio.to_thread(self._unexpose, record)

    def _unexpose(self, record: SnapshotRecord) -> None:
        mount_point = record.provider_data.pop("mount_point", "")
        loop = record.provider_data.pop("loop", "")
        if mount_point and process.is_mounted(mount_point):
            result = subprocess.run(["umount", mount_point], capture_output=True, text=True,
                                    check=False)
            if result.returncode != 0:
                record.provider_data.update({"mount_point": mount_point, "loop": loop})
                raise ProviderFailure(
                    f"cannot unmount snapshot {record.id} at {mount_point}: "
                    f"{result.stderr.strip()}; close the files open there and retry"
                )
            with contextlib.suppress(OSError):
                os.rmdir(mount_point)
        if loop:
            process.loop_detach(loop)
        record.exposed_path = ""

    async def exists(self, record: SnapshotRecord) -> bool:
        try:
            return (await self.snapshot_status(record)).valid
        except NotFound:
            return False

    async def snapshot_status(self, record: SnapshotRecord) -> SnapshotStatus:
        """Whether the server still has a valid copy of this snapshot (and why not)."""
        name = record.provider_data.get("volume", "")
        if name not in self._names():
            raise NotFound(f"the volume of snapshot {record.id} is no longer attached")
        reply = await control.call(process.socket_path(self._run_dir(name)), "status")
        for snap in reply["snapshots"]:
            if snap["id"] == record.id:
                return SnapshotStatus(snap["id"], bool(snap["valid"]), str(snap["reason"]),
                                      int(snap["created_us"]))
        raise NotFound(f"the diff area of {name} has no snapshot {record.id}")

    async def startup(self) -> None:
        for name in self._names():
            try:
                await asyncio.to_thread(self._bring_up, name)
            except (ProviderFailure, OSError, InvalidArgs) as exc:
                log.error("diff-area volume %s could not be re-attached: %s", name, exc)
                continue
            self._watch(name)

    async def shutdown(self) -> None:
        """Stop listening; the servers keep serving their volumes."""
        for task in self._watchers.values():
            task.cancel()
        for task in self._watchers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watchers.clear()

    # ---------------------------------------------------------------- admin API

    async def attach(
        self,
        image: str,
        diff_area_dir: str,
        max_bytes: int,
        policy: FullPolicy = FullPolicy.DROP_OLDEST_SNAPSHOT,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> AttachedVolume:
        """Serve ``image`` through FUSE + a loop device; its diff area goes in ``diff_area_dir``.

        ``diff_area_dir`` must exist, ideally on another filesystem than the image.
        """
        image = os.path.realpath(image)
        check_chunk_size(chunk_size)
        if max_bytes < chunk_size:
            raise InvalidArgs(f"the diff area's maximum size must be at least {chunk_size} bytes")
        if not os.path.isfile(image):
            raise InvalidArgs(f"{image} is not a regular file; give the path of a volume image")
        if os.path.getsize(image) % 512:
            raise InvalidArgs(f"{image}'s size is not a multiple of 512 bytes")
        name = "vol-" + hashlib.sha256(image.encode()).hexdigest()[:12]
        if name in self._names():
            raise InvalidArgs(f"{image} is already attached as {name}")
        if not os.path.isdir(diff_area_dir):
            raise InvalidArgs(f"the diff area directory {diff_area_dir} does not exist; create it")
        diff_dir = os.path.join(os.path.realpath(diff_area_dir), "snapd-vss-" + name)
        config = VolumeConfig(name, image, diff_dir, max_bytes, policy, chunk_size)
        config.save(self._volume_dir(name))
        try:
            await asyncio.to_thread(self._bring_up, name)
        except BaseException:
            await asyncio.to_thread(self._tear_down, name)
            shutil.rmtree(self._volume_dir(name), ignore_errors=True)
            raise
        self._watch(name)
        return await self.get_attached(name)

    async def detach(self, name: str, *, delete_snapshots: bool = False) -> None:
        """Stop serving a volume; its loop device must not be mounted."""
        if name not in self._names():
            raise NotFound(f"no attached diff-area volume {name}")
        attached = await self.get_attached(name)
        for dev in process.loops_backed_by(attached.device_file):
            if _mounted_source(dev):
                raise InvalidState(f"{dev} ({attached.image}) is mounted; unmount it first")
        config = VolumeConfig.load(self._volume_dir(name))
        try:
            status = await control.call(process.socket_path(self._run_dir(name)), "status")
        except ProviderFailure:
            if not delete_snapshots:
                raise
            status = {"snapshots": []}
        if status["snapshots"] and not delete_snapshots:
            raise InvalidState(
                f"{attached.image} still has snapshots; delete them or detach with delete_snapshots"
            )
        task = self._watchers.pop(name, None)
        if task is not None:
            task.cancel()
        await asyncio.to_thread(self._tear_down, name)
        shutil.rmtree(config.diff_area_dir, ignore_errors=True)
        shutil.rmtree(self._volume_dir(name), ignore_errors=True)

    async def list_attached(self) -> list[AttachedVolume]:
        return [await self.get_attached(name) for name in self._names()]

    async def get_attached(self, name: str) -> AttachedVolume:
        if name not in self._names():
            raise NotFound(f"no attached diff-area volume {name}")
        config = VolumeConfig.load(self._volume_dir(name))
        run_dir = self._run_dir(name)
        device = process.device_file(run_dir)
        loops = process.loops_backed_by(device)
        status: dict[str, Any] = {}
        with contextlib.suppress(ProviderFailure):
            status = await control.call(process.socket_path(run_dir), "status", timeout=5.0)
        return AttachedVolume(
            name, config.image, config.diff_area_dir, config.max_bytes, config.policy,
            config.chunk_size, device, loops[0] if loops else "",
            int(status.get("used_bytes", 0)), int(status.get("size", 0)),
        )

    async def resize_diff_area(self, name: str, max_bytes: int) -> AttachedVolume:
        if name not in self._names():
            raise NotFound(f"no attached diff-area volume {name}")
        config = VolumeConfig.load(self._volume_dir(name))
        if max_bytes < config.chunk_size:
            raise InvalidArgs(f"the diff area's maximum size must be at least {config.chunk_size}")
        await control.call(process.socket_path(self._run_dir(name)), "resize", max_bytes=max_bytes)
        VolumeConfig(config.name, config.image, config.diff_area_dir, max_bytes, config.policy,
                     config.chunk_size).save(self._volume_dir(name))
        return await self.get_attached(name)

    # ---------------------------------------------------------------- internals

    def _name_for(self, volume: Volume) -> str:
        backing = process.loop_backing_file(volume.source)
        if not backing:
            raise VolumeNotSupported(
                f"{volume.mount_point} is on {volume.source}, not a loop device of an attached "
                "diff-area volume; attach its image with the diff_area provider first"
            )
        for name in self._names():
            if backing == process.device_file(self._run_dir(name)):
                return name
        raise VolumeNotSupported(
            f"{volume.mount_point} is on {volume.source} backed by {backing}, which is not "
            "an attached diff-area volume"
        )

    def _bring_up(self, name: str) -> None:
        """Make sure the server runs and a read-write loop device sits on its device file."""
        run_dir = self._run_dir(name)
        device = process.device_file(run_dir)
        if process.server_pid(run_dir) is None:
            for stale in process.loops_backed_by(device):
                process.loop_detach(stale)  # points at a dead server's file
            process.start_server(self._volume_dir(name), run_dir)
        if not process.loops_backed_by(device):
            process.loop_attach(device, read_only=False)

    def _tear_down(self, name: str) -> None:
        run_dir = self._run_dir(name)
        for dev in process.loops_backed_by(process.device_file(run_dir)):
            process.loop_detach(dev)
        process.stop_server(run_dir)

    def _watch(self, name: str) -> None:
        if name not in self._watchers:
            self._watchers[name] = asyncio.get_running_loop().create_task(self._listen(name))

    async def _listen(self, name: str) -> None:
        path = process.socket_path(self._run_dir(name))
        while True:
            try:
                async for event in control.events(path):
                    self._announce(str(event["id"]), str(event["reason"]))
            except (OSError, ValueError) as exc:
                log.debug("event stream of %s: %s", name, exc)
            await asyncio.sleep(1.0)  # the server restarts; listen again

    def _announce(self, snapshot_id: str, reason: str) -> None:
        self.invalidated(snapshot_id, reason)  # the service: INVALID with the reason, logged
        for listener in list(self.listeners):
            try:
                listener(snapshot_id, reason)
            except Exception:
                log.exception("diff-area listener failed for snapshot %s", snapshot_id)


def _mounted_source(device: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ", 1)
            if len(fields) == 2 and fields[1].split()[1] == device:
                return True
    return False
