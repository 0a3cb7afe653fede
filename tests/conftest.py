"""Shared fixtures live in plugin modules under snapd_vss/testing/ so tools and tests share them."""

pytest_plugins = [
    "snapd_vss.testing.bus_fixtures",
    "snapd_vss.testing.fs_fixtures",
    "snapd_vss.testing.daemon_fixtures",
]
