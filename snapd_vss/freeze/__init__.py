"""Filesystem freeze that cannot outlive the daemon: a guard process holds the freeze.

Public API: :class:`FreezeGuard`, :class:`FrozenFilesystems`, :class:`SpareGuard`,
:func:`thaw_leftovers`.
"""

from __future__ import annotations

from snapd_vss.freeze.guard_client import FreezeGuard, FrozenFilesystems, SpareGuard
from snapd_vss.freeze.markers import thaw_leftovers

__all__ = ["FreezeGuard", "FrozenFilesystems", "SpareGuard", "thaw_leftovers"]
