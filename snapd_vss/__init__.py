"""snapd-vss: coordinated, application-consistent snapshots for Linux (the VSS design on D-Bus)."""

__version__ = "0.1.0"
BUS_NAME = "org.snapdvss.Vss1"
ROOT_PATH = "/org/snapdvss/Vss1"
