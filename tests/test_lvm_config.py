"""The [lvm_thin] settings reach the LvmThinProvider the service builds (host, no LVM needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from snapd_vss.config import parse_config
from snapd_vss.errors import InvalidArgs
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.lvm.freezing import CoordinatorFreeze
from snapd_vss.providers.lvm_thin import LvmThinProvider
from snapd_vss.providers.registry import default_providers


@pytest.fixture
def context(tmp_path: Path) -> ProviderContext:
    return ProviderContext(state_dir=str(tmp_path), runtime_dir=str(tmp_path))


def test_config_options_reach_the_provider(context: ProviderContext) -> None:
    config = parse_config(
        "[lvm_thin]\ndata_threshold_percent = 55\nmetadata_threshold_percent = 70.5\n"
        "coordinator_freeze = true\n"
    )
    providers = default_providers(context, ["lvm_thin", "btrfs"], config.provider_options())
    lvm = providers[0]
    assert isinstance(lvm, LvmThinProvider)
    assert (lvm.data_threshold, lvm.metadata_threshold, lvm.coordinator_freeze) == (
        55.0,
        70.5,
        CoordinatorFreeze.ALWAYS,
    )
    assert [p.name for p in providers] == ["lvm_thin", "btrfs"]


def test_defaults_reach_the_provider(context: ProviderContext) -> None:
    options = parse_config("").provider_options()
    (lvm,) = default_providers(context, ["lvm_thin"], options)
    assert isinstance(lvm, LvmThinProvider)
    assert (lvm.data_threshold, lvm.metadata_threshold, lvm.coordinator_freeze) == (
        80.0,
        80.0,
        CoordinatorFreeze.AUTO,
    )


def test_options_a_provider_does_not_take_are_an_error(context: ProviderContext) -> None:
    with pytest.raises(InvalidArgs, match="'btrfs' does not take the options colour"):
        default_providers(context, ["btrfs"], {"btrfs": {"colour": "red"}})
