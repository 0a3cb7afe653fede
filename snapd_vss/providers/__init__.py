"""Snapshot providers: one class per technology behind :class:`Provider`."""
