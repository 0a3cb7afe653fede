"""The control socket between the provider (asyncio, in the daemon) and a volume's server.

One JSON object per line. Requests ``{"op": NAME, ...}``; replies ``{"ok": true, ...}``
or ``{"ok": false, "code": ERROR_CODE, "message": TEXT}`` where the code is a
:mod:`snapd_vss.errors` code. Ops: ``ping``, ``status``, ``create_snapshot`` (id,
created_us), ``delete_snapshot`` (id), ``resize`` (max_bytes), ``stop``, and
``subscribe``: the connection then receives ``{"event": "snapshot_dropped", "id": ...,
"reason": ...}`` lines until it closes.

Why a socket and not a pipe to a child: the server outlives the daemon (a daemon restart
must not take the volume away), so the daemon reconnects to it by path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from snapd_vss.errors import ProviderFailure, VssError, from_code

SOCKET_NAME = "control.sock"
MAX_LINE = 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, sort_keys=True).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode())
    if not isinstance(value, dict):
        raise ValueError("a control message must be a JSON object")
    return value


def error_reply(exc: VssError) -> dict[str, Any]:
    return {"ok": False, "code": exc.code, "message": exc.message}


async def call(socket_path: str, op: str, timeout: float = 30.0, **args: Any) -> dict[str, Any]:
    """Send one request to a server and return its reply; raise its error as a domain error."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_unix_connection(socket_path, limit=MAX_LINE)
            try:
                writer.write(encode({"op": op, **args}))
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError) as exc:
        raise ProviderFailure(
            f"the diff-area server at {socket_path} did not answer {op!r} ({exc}); "
            "check that its volume is attached"
        ) from exc
    if not line:
        raise ProviderFailure(f"the diff-area server at {socket_path} closed the connection")
    reply = decode(line)
    if not reply.get("ok"):
        raise from_code(str(reply.get("code", "Failed")), str(reply.get("message", "")))
    return reply


async def events(socket_path: str) -> AsyncIterator[dict[str, Any]]:
    """Yield the server's events until it goes away."""
    reader, writer = await asyncio.open_unix_connection(socket_path, limit=MAX_LINE)
    try:
        writer.write(encode({"op": "subscribe"}))
        await writer.drain()
        while line := await reader.readline():
            message = decode(line)
            if "event" in message:
                yield message
    finally:
        writer.close()
