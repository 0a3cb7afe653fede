"""The D-Bus interface definitions, shipped with the package.

The canonical files are ``dbus/org.snapdvss.Vss1.<Name>.xml`` in the source tree (they
are installed to /usr/share/dbus-1/interfaces/); this package holds byte-identical
copies as package data so that an installed client or service can build proxies
and check its own introspection without the source tree. ``tests/test_interface_xml.py``
fails when the two drift apart: edit ``dbus/`` and copy the file here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from dbus_fast.introspection import Interface, Node

PREFIX = "org.snapdvss.Vss1."

#: The short names of the interfaces, one XML file each.
INTERFACE_NAMES: tuple[str, ...] = (
    "Manager",
    "Writer",
    "RegisteredWriter",
    "BackupSession",
    "RestoreSession",
    "Snapshot",
    "Provider",
    "DiffArea",
    "LvmThin",
)


def full_name(name: str) -> str:
    """``"Manager"`` → ``"org.snapdvss.Vss1.Manager"`` (a full name is returned as is)."""
    return name if name.startswith(PREFIX) else PREFIX + name


def interface_xml(name: str) -> str:
    """The XML text of one interface file, by short or full interface name."""
    short = full_name(name).removeprefix(PREFIX)
    if short not in INTERFACE_NAMES:
        raise KeyError(f"no interface file for {name!r}; known: {', '.join(INTERFACE_NAMES)}")
    return resources.files(__package__).joinpath(f"{PREFIX}{short}.xml").read_text("utf-8")


@cache
def load_node(name: str) -> Node:
    """The parsed ``<node>`` of one interface file (holding that one interface)."""
    return Node.parse(interface_xml(name))


def load_interface(name: str) -> Interface:
    """The parsed interface, e.g. ``load_interface("BackupSession")``."""
    wanted = full_name(name)
    for interface in load_node(name).interfaces:
        if interface.name == wanted:
            return interface
    raise KeyError(f"interface file for {name!r} does not define {wanted}")
