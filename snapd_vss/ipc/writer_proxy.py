"""Calls from the daemon to a writer object on the writer's own connection."""

from __future__ import annotations

from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from snapd_vss.errors import WriterLost
from snapd_vss.ipc import WRITER_IFACE
from snapd_vss.ipc.errors import writer_error_from_dbus


class DBusWriterConnection:
    """Implements ``snapd_vss.coordinator.writers.WriterConnection`` over the bus."""

    def __init__(self, bus: MessageBus, owner: str, path: str) -> None:
        self.bus = bus
        self.owner = owner
        self.path = path

    def _who(self) -> str:
        return f"writer {self.path} on {self.owner}"

    async def _call(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        msg = Message(
            destination=self.owner,
            path=self.path,
            interface=WRITER_IFACE,
            member=member,
            signature=signature,
            body=body or [],
        )
        try:
            reply = await self.bus.call(msg)
        except (EOFError, ConnectionError) as exc:
            raise WriterLost(
                f"the daemon's bus connection failed calling {self._who()}: {exc}"
            ) from exc
        if reply is None:
            raise WriterLost(f"no reply from {self._who()}")
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise writer_error_from_dbus(reply.error_name or "", text, self._who())
        return reply.body[0] if reply.body else None

    async def _call_str(self, member: str, signature: str, body: list[Any]) -> str:
        value = await self._call(member, signature, body)
        if not isinstance(value, str):
            raise WriterLost(f"{self._who()} answered {member} with a non-string reply")
        return value

    async def identify(self) -> str:
        return await self._call_str("OnIdentify", "", [])

    async def prepare_backup(self, backup_components: str) -> str:
        return await self._call_str("OnPrepareBackup", "s", [backup_components])

    async def prepare_for_freeze(self, snapshot_set_id: str, volumes: list[str]) -> None:
        await self._call("OnPrepareForFreeze", "sas", [snapshot_set_id, volumes])

    async def freeze(self, snapshot_set_id: str) -> None:
        await self._call("OnFreeze", "s", [snapshot_set_id])

    async def thaw(self, snapshot_set_id: str) -> None:
        await self._call("OnThaw", "s", [snapshot_set_id])

    async def post_snapshot(self, snapshot_set_id: str, mapping: dict[str, str]) -> None:
        await self._call("OnPostSnapshot", "sa{ss}", [snapshot_set_id, mapping])

    async def abort(self, snapshot_set_id: str) -> None:
        await self._call("OnAbort", "s", [snapshot_set_id])

    async def backup_complete(self, backup_components: str) -> None:
        await self._call("OnBackupComplete", "s", [backup_components])

    async def backup_shutdown(self, snapshot_set_id: str) -> None:
        await self._call("OnBackupShutdown", "s", [snapshot_set_id])

    async def pre_restore(self, backup_components: str) -> str:
        return await self._call_str("OnPreRestore", "s", [backup_components])

    async def post_restore(self, backup_components: str) -> str:
        return await self._call_str("OnPostRestore", "s", [backup_components])
