"""Whether the lvm_thin provider has the coordinator hold its filesystems frozen (host side).

What the kernels really do is tested in the guests (tests/guest/test_lvm_freeze.py runs
on Linux 6.1 and 6.12); here: the decision by kernel release and setting, and the
filesystems that are never held because the service or LVM write there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from snapd_vss.model import Volume
from snapd_vss.providers.base import ProviderContext
from snapd_vss.providers.lvm.freezing import (
    CoordinatorFreeze,
    decide,
    device_of,
    kernel_version,
)
from snapd_vss.providers.lvm_thin import LvmThinProvider


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("6.1.0-28-amd64", (6, 1)),
        ("6.12.101", (6, 12)),
        ("6.8.0-45-generic", (6, 8)),
        ("10.0-rc1", (10, 0)),
        ("weird", None),
    ],
)
def test_kernel_version(release: str, version: tuple[int, int] | None) -> None:
    assert kernel_version(release) == version


@pytest.mark.parametrize(
    ("release", "hold"),
    [
        ("6.1.0-28-amd64", False),
        ("6.7.12", False),
        ("6.8.0", True),
        ("6.12.101", True),
        ("7.1.0", True),
        ("unknown", False),
    ],
)
def test_auto_follows_the_kernel(release: str, hold: bool) -> None:
    decision = decide(CoordinatorFreeze.AUTO, release)
    assert decision.hold is hold
    assert release in decision.reason
    if not hold:
        assert "6.8 or later" in decision.reason


def test_the_setting_overrides_the_kernel() -> None:
    assert decide(CoordinatorFreeze.ALWAYS, "6.1.0").hold
    assert not decide(CoordinatorFreeze.NEVER, "6.12.0").hold
    assert "coordinator_freeze = false" in decide(CoordinatorFreeze.NEVER, "6.12.0").reason


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (True, CoordinatorFreeze.ALWAYS),
        (False, CoordinatorFreeze.NEVER),
        ("auto", CoordinatorFreeze.AUTO),
        ("never", CoordinatorFreeze.NEVER),
        ("yes", None),
        (1, None),
    ],
)
def test_parse(value: object, mode: CoordinatorFreeze | None) -> None:
    assert CoordinatorFreeze.parse(value) is mode


def test_device_of_a_path_not_yet_made(tmp_path: Path) -> None:
    st = os.stat(tmp_path)
    expected = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    assert device_of(str(tmp_path / "not" / "yet")) == expected


def _provider(tmp_path: Path, release: str, **kwargs: object) -> LvmThinProvider:
    state, runtime = tmp_path / "state", tmp_path / "runtime"
    state.mkdir()
    runtime.mkdir()
    context = ProviderContext(state_dir=str(state), runtime_dir=str(runtime))
    return LvmThinProvider(context, kernel_release=release, **kwargs)  # type: ignore[arg-type]


def _volume(major_minor: str) -> Volume:
    return Volume("/srv/data", "ext4", "/dev/mapper/vg-data", "/", major_minor)


def test_held_on_a_kernel_that_nests_freezes(tmp_path: Path) -> None:
    provider = _provider(tmp_path, "6.12.101")
    volume = _volume("254:77")  # no directory of the service is on it
    assert provider.why_not_held(volume) == ""
    assert provider.needs_fs_freeze(volume)


def test_not_held_on_linux_6_1(tmp_path: Path) -> None:
    provider = _provider(tmp_path, "6.1.0-28-amd64")
    volume = _volume("254:77")
    assert not provider.needs_fs_freeze(volume)
    assert "Linux 6.1.0-28-amd64 cannot let LVM snapshot" in provider.why_not_held(volume)


def test_always_holds_even_on_linux_6_1(tmp_path: Path) -> None:
    provider = _provider(tmp_path, "6.1.0", coordinator_freeze=True)
    assert provider.needs_fs_freeze(_volume("254:77"))


def test_the_filesystem_of_the_state_directory_is_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LVM_SYSTEM_DIR", "/proc/no-lvm-here")  # another filesystem
    provider = _provider(tmp_path, "6.12.101")
    volume = _volume(device_of(provider.context.state_dir))
    assert not provider.needs_fs_freeze(volume)
    why = provider.why_not_held(volume)
    assert "state directory" in why and provider.context.state_dir in why


def test_the_filesystem_of_lvms_configuration_is_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lvm_etc = tmp_path / "lvm-etc"
    lvm_etc.mkdir()
    monkeypatch.setenv("LVM_SYSTEM_DIR", str(lvm_etc))
    provider = _provider(tmp_path, "6.12.101")
    why = provider.why_not_held(_volume(device_of(str(lvm_etc))))
    assert "LVM's configuration directory" in why and str(lvm_etc) in why


def test_a_bad_setting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="auto, always or never"):
        _provider(tmp_path, "6.12.101", coordinator_freeze="sometimes")
