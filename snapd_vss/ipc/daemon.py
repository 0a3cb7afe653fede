"""snapd-vssd: the snapshot service on the system bus (or $DBUS_SYSTEM_BUS_ADDRESS)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from dbus_fast import Message, MessageType
from dbus_fast.constants import NameFlag, RequestNameReply

from snapd_vss import BUS_NAME, __version__
from snapd_vss.config import DEFAULT_CONFIG_PATH, KNOWN_PROVIDERS, Config, Paths, load_config
from snapd_vss.coordinator.service import Service
from snapd_vss.coordinator.settings import Settings
from snapd_vss.errors import VssError
from snapd_vss.freeze import thaw_leftovers
from snapd_vss.ipc.bus import connect
from snapd_vss.ipc.caller import remember_sender
from snapd_vss.ipc.exporter import Exporter
from snapd_vss.logs import setup_logging
from snapd_vss.notify import Notifier
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.registry import ProviderRegistry, default_providers
from snapd_vss.store import SnapshotStore

log = logging.getLogger("snapd-vssd")

NAME_OWNER_MATCH = (
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='NameOwnerChanged'"
)


def settings_from(config: Config, paths: Paths) -> Settings:
    t = config.timeouts
    return Settings(
        freeze_window_s=t.freeze_window_s,
        commit_window_s=t.commit_window_s,
        writer_call_s=t.writer_call_s,
        identify_s=t.identify_s,
        max_writer_calls_in_flight=config.limits.max_writer_calls_in_flight,
        backup_group=config.access.backup_group,
        state_dir=str(paths.state_dir),
        runtime_dir=str(paths.runtime_dir),
    )


def build_service(config: Config, paths: Paths) -> Service:
    settings = settings_from(config, paths)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    os.makedirs(settings.runtime_dir, mode=0o755, exist_ok=True)
    context = ProviderContext(settings.state_dir, settings.runtime_dir)
    enabled = list(config.providers.enabled)
    providers = default_providers(
        context,
        None if tuple(enabled) == KNOWN_PROVIDERS else enabled,
        config.provider_options(),
    )
    store = SnapshotStore(os.path.join(settings.state_dir, "snapshots.db"))
    return Service(settings, ProviderRegistry(providers), store)


class Daemon:
    def __init__(self, service: Service, bus_address: str | None) -> None:
        self.service = service
        self.bus_address = bus_address
        self.notifier = Notifier()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()

    def _on_message(self, msg: Message) -> None:
        remember_sender(msg)
        if msg.message_type is MessageType.SIGNAL:
            gone = self.exporter.name_owner_changed(msg)
            if gone:
                task = asyncio.get_running_loop().create_task(self.service.connection_closed(gone))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def run(self) -> int:
        self.notifier.status("Starting: connecting to the bus")
        bus = await connect(self.bus_address)
        self.exporter = Exporter(bus, self.service)
        self.service.set_listener(self.exporter)
        bus.add_message_handler(self._on_message)
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[NAME_OWNER_MATCH],
            )
        )
        self.notifier.status("Starting: recovering snapshots")
        await self.service.start()
        self.exporter.export_all()
        reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            log.error(
                "could not own %s on the bus (%s): another snapd-vssd runs, or the bus policy "
                "does not allow this user to own it (install dbus/org.snapdvss.Vss1.conf)",
                BUS_NAME,
                reply.name,
            )
            await self.service.stop()
            bus.disconnect()
            return 1
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        providers = [p.name for p in self.service.providers.all() if p.availability().available]
        status = (
            f"Ready: {len(self.service.snapshots.all())} snapshots, "
            f"providers: {', '.join(providers) or 'none'}"
        )
        log.info("snapd-vssd %s owns %s. %s", __version__, BUS_NAME, status)
        self.notifier.ready(status)
        disconnected = asyncio.ensure_future(bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait([disconnected, stop], return_when=asyncio.FIRST_COMPLETED)
        self.notifier.stopping()
        log.info("stopping: aborting %d open sessions", len(self.service.sessions))
        await self.service.stop()
        self.service.store.close()
        if not disconnected.done():
            bus.disconnect()
            disconnected.cancel()
        stop.cancel()
        return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snapd-vssd", description=__doc__)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG_PATH), help="TOML config file")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument(
        "--thaw-leftovers",
        action="store_true",
        help="thaw filesystems a dead snapd-vssd left frozen, then exit (for ExecStopPost=)",
    )
    parser.add_argument("--version", action="version", version=f"snapd-vssd {__version__}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging("snapd-vssd", args.log_level.upper())
    paths = Paths.from_environment()
    if args.thaw_leftovers:
        for mount in thaw_leftovers(str(paths.runtime_dir)):
            log.warning("thawed %s, left frozen by a previous run", mount)
        return 0
    try:
        from pathlib import Path

        config = load_config(Path(args.config))
        service = build_service(config, paths)
    except VssError as exc:
        print(f"snapd-vssd: {exc.message}", file=sys.stderr)
        return 2
    return asyncio.run(Daemon(service, paths.bus_address).run())


if __name__ == "__main__":
    sys.exit(main())
