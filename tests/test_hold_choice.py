"""Which volumes of a set the coordinator holds frozen across the commits (choose_held)."""

from __future__ import annotations

from snapd_vss.coordinator.snapshot_set import HoldCandidate, choose_held


def lvm(volume: str) -> HoldCandidate:  # held where the kernel nests; consistent alone
    return HoldCandidate(volume, why_not_held="", consistent_alone=True)


def diff_area(volume: str) -> HoldCandidate:  # needs the freeze for a consistent snapshot
    return HoldCandidate(volume, why_not_held="", consistent_alone=False)


def btrfs(volume: str) -> HoldCandidate:  # never held: atomic by itself
    return HoldCandidate(volume, why_not_held="a btrfs snapshot is atomic by itself")


def test_a_set_of_one_lv_needs_no_freeze_of_its_own() -> None:
    assert choose_held([lvm("/srv")]) == []


def test_several_lvs_all_but_one_are_held() -> None:
    assert choose_held([lvm("/srv/b"), lvm("/srv/a"), lvm("/srv/c")]) == ["/srv/b", "/srv/c"]


def test_an_lv_beside_diff_area_volumes_is_the_one_left_to_lvm() -> None:
    assert choose_held([diff_area("/a"), lvm("/z"), diff_area("/b")]) == ["/a", "/b"]


def test_diff_area_volumes_are_always_held() -> None:
    assert choose_held([diff_area("/a")]) == ["/a"]
    assert choose_held([diff_area("/b"), diff_area("/a")]) == ["/a", "/b"]


def test_with_a_volume_that_cannot_be_held_every_other_one_is_held() -> None:
    # btrfs is already the one volume snapshotted at its own instant
    assert choose_held([btrfs("/home"), lvm("/srv")]) == ["/srv"]
    assert choose_held([btrfs("/home"), diff_area("/a")]) == ["/a"]
    assert choose_held([btrfs("/home"), btrfs("/var")]) == []
