"""Path rules of a backup set: what may appear in it, and where a link leads."""

from __future__ import annotations

from collections.abc import Mapping

from snapd_vss.backupset.errors import UnsafePath

MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


def check_relative(path: str, what: str) -> str:
    """``path`` if it is clean and relative (no '..', '.' or empty parts); else UnsafePath."""
    if not path or path.startswith("/") or "\0" in path or "\\" in path:
        raise UnsafePath(f"{what}: {path!r} is not a relative path inside its component")
    for part in path.split("/"):
        if part in ("", ".", ".."):
            raise UnsafePath(
                f"{what}: {path!r} has an empty, '.' or '..' part; it could escape its component"
            )
    return path


def check_member_name(name: str, what: str) -> str:
    """A name inside the set's directory (``data/x.tar``, ``writers/y.xml``)."""
    return check_relative(name, what)


def link_escapes(link_path: str, target: str, root: str, links: Mapping[str, str]) -> bool:
    """Whether the symlink at ``link_path`` (relative to the component root) leads outside it.

    ``root`` is the component's original absolute directory (an absolute target inside it
    stays inside); ``links`` maps every symlink of the component (relative path → target),
    so chains of links are followed the way the kernel would, part by part.
    """
    stack = link_path.split("/")[:-1]
    pending = _target_parts(target, root)
    if pending is None:
        return True
    if target.startswith("/"):
        stack = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        current = "/".join(stack)
        if current in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                return True
            stack.pop()
            more = _target_parts(links[current], root)
            if more is None:
                return True
            if links[current].startswith("/"):
                stack = []
            pending = more + pending
    return False


def _target_parts(target: str, root: str) -> list[str] | None:
    """The parts of ``target`` to walk (from the root if absolute); None if it is outside."""
    if not target.startswith("/"):
        return target.split("/")
    prefix = root.rstrip("/") + "/"
    if target.rstrip("/") == root.rstrip("/"):
        return []
    if not target.startswith(prefix):
        return None
    return target[len(prefix) :].split("/")
