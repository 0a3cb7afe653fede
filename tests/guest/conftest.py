"""Tests that run inside the UML guest (tests/guest/run); the host's pytest ignores them."""
import os

IN_GUEST = os.environ.get("SNAPD_VSS_IN_GUEST") == "1"

if not IN_GUEST:
    # Not collected at all on the host: a skip would look like a pass.
    collect_ignore_glob = ["*.py"]
