"""The D-Bus layer: the only package that imports dbus_fast. It translates, nothing more."""

from snapd_vss import BUS_NAME, ROOT_PATH

IFACE_PREFIX = BUS_NAME
MANAGER_IFACE = f"{BUS_NAME}.Manager"
WRITER_IFACE = f"{BUS_NAME}.Writer"
REGISTERED_WRITER_IFACE = f"{BUS_NAME}.RegisteredWriter"
BACKUP_SESSION_IFACE = f"{BUS_NAME}.BackupSession"
RESTORE_SESSION_IFACE = f"{BUS_NAME}.RestoreSession"
SNAPSHOT_IFACE = f"{BUS_NAME}.Snapshot"
PROVIDER_IFACE = f"{BUS_NAME}.Provider"

__all__ = [
    "BACKUP_SESSION_IFACE",
    "BUS_NAME",
    "MANAGER_IFACE",
    "PROVIDER_IFACE",
    "REGISTERED_WRITER_IFACE",
    "RESTORE_SESSION_IFACE",
    "ROOT_PATH",
    "SNAPSHOT_IFACE",
    "WRITER_IFACE",
]
