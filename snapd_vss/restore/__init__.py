"""The restore half: put a backup set's files back per each component's restore method.

- :mod:`.source` — what is restored: components, their entries and content (read from a
  backup set and verified before anything is touched);
- :mod:`.safety` — path rules, the non-root writer's credentials, no symlink followed;
- :mod:`.files` — entries written safely (temporary names, one syncfs, renames);
- :mod:`.openfiles` — which files are open by any process (``/proc/*/fd``, ``/proc/*/maps``);
- :mod:`.placement` — where each entry goes (original place, alternate mappings);
- :mod:`.placer` — a whole placement: conflicts first, the archive read once, then the renames;
- :mod:`.engine` — the restore methods, and the report of what was and was not restored;
- :mod:`.pending` — restores staged for the next boot.

No D-Bus here: systemd units are stopped and started through the :class:`.engine.UnitControl`
protocol, implemented over D-Bus in :mod:`snapd_vss.ipc.systemd_units`.
"""
