"""The shipped bus policy (dbus/org.snapdvss.Vss1.conf), proved on a real private system bus.

Root's side runs in this process; non-root sides run as real other users (setpriv) with
the venv's Python and a tiny dbus-fast peer program written to a world-readable file.
"""

import asyncio
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Message, MessageType, RequestNameReply
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from snapd_vss.testing.bus import (
    BUS_NAME,
    REPO_ROOT,
    VENV_PYTHON,
    LocalUser,
    PrivateBus,
    as_user_argv,
    remove_stale_buses,
    run_as,
)

ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
WRITER_IFACE = "org.snapdvss.Vss1.Writer"
PRIVATE_IFACE = "org.snapdvss.Test.Private"

PEER = '''\
"""A tiny D-Bus peer run as a non-root user: own NAME | call ... | serve."""
import asyncio, json, os, sys
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from dbus_fast.service import ServiceInterface, method


class Writer(ServiceInterface):
    def __init__(self):
        super().__init__("org.snapdvss.Vss1.Writer")

    @method()
    def OnIdentify(self) -> "s":
        return f"writer uid {os.getuid()}"


class Private(ServiceInterface):
    def __init__(self):
        super().__init__("org.snapdvss.Test.Private")

    @method()
    def Hello(self) -> "s":
        return f"hello uid {os.getuid()}"


async def main(command, *args):
    bus = await MessageBus(bus_address=os.environ["DBUS_SYSTEM_BUS_ADDRESS"]).connect()
    if command == "own":
        try:
            reply = await bus.request_name(args[0])
            result = {"ok": True, "reply": int(reply)}
        except DBusError as exc:
            result = {"ok": False, "error": exc.type}
    elif command == "call":
        dest, path, iface, member, signature, body = args
        reply = await bus.call(Message(destination=dest, path=path, interface=iface,
                                       member=member, signature=signature,
                                       body=json.loads(body)))
        if reply.message_type == MessageType.ERROR:
            result = {"ok": False, "error": reply.error_name}
        else:
            result = {"ok": True, "body": reply.body}
    else:
        bus.export("/peer", Writer())
        bus.export("/peer", Private())
        print(bus.unique_name, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        return
    print(json.dumps(result, default=repr))


asyncio.run(main(*sys.argv[1:]))
'''


class Manager(ServiceInterface):
    """A stand-in for the real Manager, owned by root on the private bus."""

    def __init__(self) -> None:
        super().__init__("org.snapdvss.Vss1.Manager")

    @method()
    def Ping(self) -> "s":  # noqa: F821
        return "pong"

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":  # noqa: F821
        return "test"


@pytest.fixture(scope="module")
def peer_script() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="snapd-vss-peer-"))
    directory.chmod(0o755)
    script = directory / "peer.py"
    script.write_text(PEER)
    script.chmod(0o644)
    yield script
    shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def root_connection(bus: PrivateBus) -> AsyncIterator[MessageBus]:
    connection = await MessageBus(bus_address=bus.address).connect()
    try:
        yield connection
    finally:
        connection.disconnect()
        await connection.wait_for_disconnect()


async def peer(
    user: LocalUser, bus: PrivateBus, script: Path, *args: str
) -> dict[str, Any]:
    """Run the peer as ``user`` without blocking this event loop; its JSON result."""
    process = await asyncio.create_subprocess_exec(
        *as_user_argv(user, [str(VENV_PYTHON), str(script), *args]),
        env=bus.env(),
        cwd="/",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def peer_call(
    user: LocalUser, bus: PrivateBus, script: Path, dest: str, path: str, iface: str, member: str,
    signature: str = "", body: list[Any] | None = None,
) -> dict[str, Any]:
    return await peer(
        user, bus, script, "call", dest, path, iface, member, signature, json.dumps(body or [])
    )


@asynccontextmanager
async def serving_peer(user: LocalUser, bus: PrivateBus, script: Path) -> AsyncIterator[str]:
    """Run the peer's ``serve`` as ``user``; yields its unique bus name."""
    process = await asyncio.create_subprocess_exec(
        *as_user_argv(user, [str(VENV_PYTHON), str(script), "serve"]),
        env=bus.env(),
        cwd="/",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        unique_name = line.decode().strip()
        assert unique_name.startswith(":"), "the peer did not start; see its stderr"
        yield unique_name
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def call(connection: MessageBus, dest: str, iface: str, member: str) -> Message:
    reply = await connection.call(
        Message(destination=dest, path="/peer", interface=iface, member=member)
    )
    assert reply is not None
    return reply


def test_private_bus_is_reachable_by_everyone_and_cleans_up() -> None:
    bus = PrivateBus()
    with bus:
        directory, pid = bus.directory, bus.pid
        assert directory is not None
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755
        assert stat.S_IMODE(bus.socket_path.stat().st_mode) == 0o777
        assert bus.address.startswith(f"unix:path={bus.socket_path}")
        assert bus.env()["DBUS_SYSTEM_BUS_ADDRESS"] == bus.address
    assert not directory.exists()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    bus.stop()  # a second stop is harmless


def test_buses_left_by_a_killed_run_are_removed() -> None:
    # A process that starts a bus and dies without stopping it (as a SIGKILLed pytest).
    code = (
        "import os\nfrom snapd_vss.testing.bus import PrivateBus\n"
        "bus = PrivateBus().start()\nprint(bus.directory, bus.pid, flush=True)\nos._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    directory, pid = done.stdout.split()
    assert Path(directory).is_dir() and Path(f"/proc/{pid}").exists()
    assert Path(directory) in remove_stale_buses()
    assert not Path(directory).exists()
    stat_file = Path(f"/proc/{pid}/stat")
    assert not stat_file.exists() or stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_nonroot_user_cannot_own_the_service_name(
    private_bus: PrivateBus, nonroot_user: LocalUser, peer_script: Path
) -> None:
    done = run_as(
        nonroot_user, [str(VENV_PYTHON), str(peer_script), "own", BUS_NAME], private_bus.env()
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": False, "error": ACCESS_DENIED}


async def test_root_can_own_the_service_name_and_nothing_else(private_bus: PrivateBus) -> None:
    async with root_connection(private_bus) as connection:
        assert await connection.request_name(BUS_NAME) == RequestNameReply.PRIMARY_OWNER
        with pytest.raises(DBusError) as denied:
            await connection.request_name("org.snapdvss.NotOurs")
        assert denied.value.type == ACCESS_DENIED


async def test_nonroot_user_can_call_the_root_owned_service(
    private_bus: PrivateBus, nonroot_user: LocalUser, peer_script: Path
) -> None:
    async with root_connection(private_bus) as connection:
        connection.export("/org/snapdvss/Vss1", Manager())
        await connection.request_name(BUS_NAME)
        path = "/org/snapdvss/Vss1"

        ping = await peer_call(
            nonroot_user, private_bus, peer_script, BUS_NAME, path,
            "org.snapdvss.Vss1.Manager", "Ping",
        )
        assert ping == {"ok": True, "body": ["pong"]}

        introspect = await peer_call(
            nonroot_user, private_bus, peer_script, BUS_NAME, path,
            "org.freedesktop.DBus.Introspectable", "Introspect",
        )
        assert introspect["ok"] and "org.snapdvss.Vss1.Manager" in introspect["body"][0]

        version = await peer_call(
            nonroot_user, private_bus, peer_script, BUS_NAME, path,
            "org.freedesktop.DBus.Properties", "Get",
            "ss", ["org.snapdvss.Vss1.Manager", "Version"],
        )
        assert version["ok"] and "test" in version["body"][0]


async def test_root_can_call_only_the_writer_interface_on_a_users_connection(
    private_bus: PrivateBus, nonroot_user: LocalUser, peer_script: Path
) -> None:
    async with (
        serving_peer(nonroot_user, private_bus, peer_script) as writer,
        root_connection(private_bus) as connection,
    ):
        identified = await call(connection, writer, WRITER_IFACE, "OnIdentify")
        assert identified.message_type == MessageType.METHOD_RETURN, identified.body
        assert identified.body == [f"writer uid {nonroot_user.uid}"]

        other = await call(connection, writer, PRIVATE_IFACE, "Hello")
        assert other.message_type == MessageType.ERROR
        assert other.error_name == ACCESS_DENIED


async def test_nonroot_user_cannot_call_another_users_connection(
    private_bus: PrivateBus,
    nonroot_user: LocalUser,
    other_nonroot_user: LocalUser,
    peer_script: Path,
) -> None:
    assert nonroot_user.uid != other_nonroot_user.uid
    async with serving_peer(nonroot_user, private_bus, peer_script) as victim:
        for iface, member in ((PRIVATE_IFACE, "Hello"), (WRITER_IFACE, "OnIdentify")):
            result = await peer_call(
                other_nonroot_user, private_bus, peer_script, victim, "/peer", iface, member
            )
            assert result == {"ok": False, "error": ACCESS_DENIED}, (iface, member)

