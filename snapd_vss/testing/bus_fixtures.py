"""Pytest fixtures for tests that need a real bus or a non-root user (a pytest plugin).

- ``private_bus``: a fresh :class:`~snapd_vss.testing.bus.PrivateBus` per test, with our
  shipped policy; nothing global is changed, use ``private_bus.address`` or
  ``private_bus.env()`` (``DBUS_SYSTEM_BUS_ADDRESS``).
- ``nonroot_user`` / ``other_nonroot_user``: two plain accounts (``vsstest``, ``vsstest2``);
  ``backup_operator``: ``vssoperator``, a member of the group ``vssbackup``.
  scripts/setup.sh creates them; these fixtures create them when missing.
- ``nonroot_pythonpath``: a world-readable copy of ``snapd_vss`` for processes run as a
  non-root user (with :data:`~snapd_vss.testing.bus.VENV_PYTHON`), once per session.

Run things as a user with :func:`~snapd_vss.testing.bus.run_as`,
:func:`~snapd_vss.testing.bus.popen_as` or :func:`~snapd_vss.testing.bus.as_user_argv`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapd_vss.testing.bus import (
    BACKUP_GROUP,
    OPERATOR_USER,
    OTHER_TEST_USER,
    TEST_USER,
    LocalUser,
    PrivateBus,
    local_user,
    world_readable_copy,
)


def _require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test runs processes as other users, so it needs root: run ./run test")


@pytest.fixture
def private_bus() -> Iterator[PrivateBus]:
    with PrivateBus() as bus:
        yield bus


@pytest.fixture(scope="session")
def nonroot_user() -> LocalUser:
    _require_root()
    return local_user(TEST_USER)


@pytest.fixture(scope="session")
def other_nonroot_user() -> LocalUser:
    _require_root()
    return local_user(OTHER_TEST_USER)


@pytest.fixture(scope="session")
def backup_operator() -> LocalUser:
    _require_root()
    return local_user(OPERATOR_USER, supplementary_groups=(BACKUP_GROUP,))


@pytest.fixture(scope="session")
def nonroot_pythonpath() -> Iterator[Path]:
    path = world_readable_copy()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
