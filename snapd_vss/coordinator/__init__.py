"""The coordinator: writer registry, backup sessions, the snapshot-set sequence (no D-Bus here)."""
