"""Object paths of the service's objects (API.md, "Names")."""

from snapd_vss import ROOT_PATH


def writer_path(number: int) -> str:
    return f"{ROOT_PATH}/writers/{number}"


def session_path(number: int) -> str:
    return f"{ROOT_PATH}/sessions/{number}"


def snapshot_path(snapshot_id: str) -> str:
    return f"{ROOT_PATH}/snapshots/{snapshot_id.replace('-', '_')}"


def provider_path(name: str) -> str:
    return f"{ROOT_PATH}/providers/{name}"


def number_from(path: str, kind: str) -> int:
    """The trailing number of ``/org/snapdvss/Vss1/<kind>/<n>``, or -1."""
    prefix = f"{ROOT_PATH}/{kind}/"
    tail = path[len(prefix) :] if path.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else -1
