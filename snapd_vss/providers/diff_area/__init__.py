"""The userspace copy-on-write diff-area provider.

Modules: :mod:`.engine` (the copy-on-write engine and its durable index, pure Python),
:mod:`.journal` (the index's on-disk format), :mod:`.storage` / :mod:`.memstore` (real and
crash-simulating byte stores), :mod:`.config` (per-volume settings), :mod:`.server` (the
FUSE server process, one per volume), :mod:`.control` (its control socket protocol and
asyncio client), :mod:`.provider` (the :class:`~snapd_vss.providers.base.Provider`).
"""
