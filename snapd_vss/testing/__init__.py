"""Helpers for tests, demos and benchmarks: private buses, loop-backed filesystems."""
