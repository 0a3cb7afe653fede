"""The running service's introspection matches the shipped interface XML, and busctl works."""

from __future__ import annotations

import shutil
import subprocess

from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Interface, Node

from snapd_vss.ipc.client import VssClient
from snapd_vss.ipc.interfaces import load_interface
from snapd_vss.testing.bus import PrivateBus
from snapd_vss.testing.daemon import VssDaemon
from snapd_vss.testing.loopdev import LoopFs


def shape(interface: Interface) -> dict[str, object]:
    return {
        "methods": {
            m.name: (
                [(a.name, a.signature) for a in m.in_args],
                [a.signature for a in m.out_args],
            )
            for m in interface.methods
        },
        "properties": {p.name: (p.signature, p.access.value) for p in interface.properties},
        "signals": {s.name: [a.signature for a in s.args] for s in interface.signals},
    }


async def introspect(address: str, path: str) -> Node:
    bus = await MessageBus(bus_address=address).connect()
    try:
        return await bus.introspect("org.snapdvss.Vss1", path)
    finally:
        bus.disconnect()


def exported(node: Node, name: str) -> Interface:
    for interface in node.interfaces:
        if interface.name == f"org.snapdvss.Vss1.{name}":
            return interface
    raise AssertionError(f"{name} is not exported; got {[i.name for i in node.interfaces]}")


async def test_every_exported_interface_matches_its_xml(
    private_bus: PrivateBus, client: VssClient, btrfs_volume: LoopFs
) -> None:
    session = await client.manager.create_backup_session("NAS_ROLLBACK")
    await session.gather_writer_metadata()
    await session.start_snapshot_set()
    snap_id = await session.add_to_snapshot_set(btrfs_volume.mount_point, "")
    await session.prepare_for_backup()
    await session.do_snapshot_set()
    restore = await client.manager.create_restore_session(await session.save_as_xml())
    paths = {
        "Manager": "/org/snapdvss/Vss1",
        "BackupSession": session.path,
        "RestoreSession": restore.path,
        "Snapshot": "/org/snapdvss/Vss1/snapshots/" + snap_id.replace("-", "_"),
        "Provider": "/org/snapdvss/Vss1/providers/btrfs",
    }
    for name, path in paths.items():
        running = exported(await introspect(private_bus.address, path), name)
        assert shape(running) == shape(load_interface(name)), name
    root = await introspect(private_bus.address, "/org/snapdvss/Vss1")
    assert "org.freedesktop.DBus.ObjectManager" in {i.name for i in root.interfaces}
    await client.snapshot(snap_id).delete()
    await session.close()
    await restore.close()


async def test_registered_writer_interface_matches_its_xml(
    private_bus: PrivateBus, client: VssClient, scripted_writers: object, btrfs_volume: LoopFs
) -> None:
    from snapd_vss.testing.daemon_fixtures import wait_for_writers

    assert callable(scripted_writers)
    scripted_writers("w", btrfs_volume.mount_point)
    await wait_for_writers(client, 1)
    running = exported(
        await introspect(private_bus.address, "/org/snapdvss/Vss1/writers/1"), "RegisteredWriter"
    )
    assert shape(running) == shape(load_interface("RegisteredWriter"))


def test_busctl_tree_introspect_and_call(private_bus: PrivateBus, vss_daemon: VssDaemon) -> None:
    busctl = shutil.which("busctl")
    assert busctl, "busctl (systemd) is needed"
    base = [busctl, f"--address={private_bus.address}"]
    tree = subprocess.run([*base, "tree", "org.snapdvss.Vss1"], capture_output=True, text=True)
    assert tree.returncode == 0, tree.stderr
    assert "/org/snapdvss/Vss1/providers/btrfs" in tree.stdout
    intro = subprocess.run(
        [*base, "introspect", "org.snapdvss.Vss1", "/org/snapdvss/Vss1"],
        capture_output=True,
        text=True,
    )
    assert ".CreateBackupSession" in intro.stdout
    call = subprocess.run(
        [
            *base,
            "call",
            "org.snapdvss.Vss1",
            "/org/snapdvss/Vss1",
            "org.snapdvss.Vss1.Manager",
            "CreateBackupSession",
            "a{sv}",
            "1",
            "bogus",
            "s",
            "x",
        ],
        capture_output=True,
        text=True,
    )
    assert call.returncode != 0
    assert "unknown option 'bogus'" in call.stderr
    get = subprocess.run(
        [
            *base,
            "get-property",
            "org.snapdvss.Vss1",
            "/org/snapdvss/Vss1",
            "org.snapdvss.Vss1.Manager",
            "Version",
        ],
        capture_output=True,
        text=True,
    )
    assert get.stdout.startswith('s "')
