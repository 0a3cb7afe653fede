"""lvm_thin pieces that need no device-mapper: parsing lvs reports, names, tags, errors."""

from __future__ import annotations

from datetime import datetime

import pytest

from snapd_vss.errors import InsufficientStorage, ProviderFailure
from snapd_vss.providers.lvm import report, tools

# Captured from `lvs --reportformat json --units b --nosuffix -o <LVS_FIELDS>` in the guest,
# plus an inactive snapshot made by the provider.
SAMPLE = """  {
      "report": [
          {
              "lv": [
                  {"lv_name":"data", "vg_name":"vg", "lv_attr":"Vwi-aotz--", "segtype":"thin", "pool_lv":"pool", "origin":"", "lv_dm_path":"/dev/mapper/vg-data", "lv_path":"/dev/vg/data", "lv_kernel_major":"254", "lv_kernel_minor":"4", "lv_tags":"", "data_percent":"3.52", "metadata_percent":"", "lv_size":"268435456", "lv_active":"active"},
                  {"lv_name":"data_vss_20261122100000_1a2b3c4d", "vg_name":"vg", "lv_attr":"Vwi---tz-k", "segtype":"thin", "pool_lv":"pool", "origin":"data", "lv_dm_path":"/dev/mapper/vg-data_vss_20261122100000_1a2b3c4d", "lv_path":"/dev/vg/data_vss_20261122100000_1a2b3c4d", "lv_kernel_major":"-1", "lv_kernel_minor":"-1", "lv_tags":"snapd_vss,snapd_vss_id_1a2b3c4d-0000-4000-8000-000000000001,snapd_vss_set_5e7f00d1", "data_percent":"", "metadata_percent":"", "lv_size":"268435456", "lv_active":""},
                  {"lv_name":"pool", "vg_name":"vg", "lv_attr":"twi-aotz--", "segtype":"thin-pool", "pool_lv":"", "origin":"", "lv_dm_path":"/dev/mapper/vg-pool", "lv_path":"", "lv_kernel_major":"254", "lv_kernel_minor":"2", "lv_tags":"", "data_percent":"1.76", "metadata_percent":"10.94", "lv_size":"536870912", "lv_active":"active"}
              ]
          }
      ]
  }
"""  # noqa: E501


def test_parses_a_real_report() -> None:
    data, snap, pool = report.parse_lvs_json(SAMPLE)
    assert data.full_name == "vg/data"
    assert data.is_thin and not data.is_thin_pool and not data.is_ours
    assert data.major_minor == "254:4"
    assert data.data_percent == pytest.approx(3.52)
    assert data.metadata_percent is None
    assert data.size_bytes == 256 << 20
    assert data.active
    assert snap.origin == "data"
    assert snap.major_minor == ""  # not active
    assert not snap.active
    assert snap.is_ours
    assert snap.snapshot_id == "1a2b3c4d-0000-4000-8000-000000000001"
    assert pool.is_thin_pool


def test_pool_usage_lists_only_pools() -> None:
    (usage,) = report.pool_usage(report.parse_lvs_json(SAMPLE))
    assert usage.full_name == "vg/pool"
    assert usage.data_percent == pytest.approx(1.76)
    assert usage.metadata_percent == pytest.approx(10.94)
    assert usage.size_bytes == 512 << 20


def test_empty_output_is_no_lvs() -> None:
    assert report.parse_lvs_json("") == []
    assert report.parse_lvs_json('{"report": [{"lv": []}]}') == []


@pytest.mark.parametrize("text", ["not json", '{"reports": []}', '{"report": [{"lv": [{}]}]}'])
def test_unreadable_output_is_a_provider_failure(text: str) -> None:
    with pytest.raises(ProviderFailure, match="could not read the output of lvs"):
        report.parse_lvs_json(text)


def test_snapshot_name_shows_origin_time_and_id() -> None:
    when = datetime(2026, 11, 22, 10, 0, 5)
    name = report.snapshot_name("data", when, "1a2b3c4d-0000-4000-8000-000000000001")
    assert name == "data_vss_20261122100005_1a2b3c4d"


def test_snapshot_name_fits_lvms_limit() -> None:
    name = report.snapshot_name("x" * 200, datetime(2026, 1, 1), "abc")
    assert len(name) == report.MAX_LV_NAME
    assert name.endswith("_vss_20260101000000_abc")


def test_tags() -> None:
    tags = report.snapshot_tags("1a2b3c4d-0000-4000-8000-000000000001", "5e7f00d1-9999-4000")
    assert tags == [
        "snapd_vss",
        "snapd_vss_set_5e7f00d1",
        "snapd_vss_id_1a2b3c4d-0000-4000-8000-000000000001",
    ]


def _result(stderr: str, rc: int = 5) -> tools.CommandResult:
    return tools.CommandResult(("lvm", "lvcreate", "-s", "vg/data"), rc, "", stderr)


def test_failure_carries_command_and_lvms_words_without_noise() -> None:
    err = tools.failure(
        _result(
            '  Failed to find logical volume "vg/data"\n'
            "  WARNING: This metadata update is NOT backed up.\n"
        ),
        "snapshot of /srv",
    )
    assert isinstance(err, ProviderFailure)
    assert str(err) == (
        'snapshot of /srv: `lvm lvcreate -s vg/data` failed (exit 5): '
        'Failed to find logical volume "vg/data"'
    )


def test_pool_out_of_space_is_insufficient_storage() -> None:
    err = tools.failure(
        _result("  Cannot create new thin volume, free space in thin pool vg/pool reached "
                "threshold.\n"),
        "snapshot of /srv",
    )
    assert isinstance(err, InsufficientStorage)
    assert "reached threshold" in str(err) and "lvextend" in str(err)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vssvg-data", ("vssvg", "data")),
        ("my--vg-my--lv", ("my-vg", "my-lv")),
        ("vg-pool-tpool", None),  # a layer, not VG-LV
        ("novg", None),
        ("a---b", None),  # ambiguous
        ("", None),
    ],
)
def test_split_dm_name(name: str, expected: tuple[str, str] | None) -> None:
    assert report.split_dm_name(name) == expected


def test_parse_thin_pool_status() -> None:
    line = "0 2097152 thin-pool 3 171/4096 4096/16384 - rw discard_passdown queue_if_no_space - 1\n"
    data, meta = report.parse_thin_pool_status(line) or (0.0, 0.0)
    assert data == 25.0
    assert meta == pytest.approx(171 * 100 / 4096)
    assert report.parse_thin_pool_status("0 2097152 thin-pool Fail\n") is None
    assert report.parse_thin_pool_status("0 2097152 linear\n") is None
    assert report.parse_thin_pool_status("") is None
