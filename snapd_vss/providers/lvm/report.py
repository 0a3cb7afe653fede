"""What ``lvs --reportformat json`` says, as typed records; snapshot names and tags."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from snapd_vss.errors import ProviderFailure

# The columns every ``lvs`` call of the provider asks for (sizes in bytes, no suffix).
LVS_FIELDS = (
    "lv_name,vg_name,lv_attr,segtype,pool_lv,origin,lv_dm_path,lv_path,"
    "lv_kernel_major,lv_kernel_minor,lv_tags,data_percent,metadata_percent,lv_size,lv_active"
)
LVS_OPTIONS = ("--reportformat", "json", "--units", "b", "--nosuffix", "-o", LVS_FIELDS)

TAG = "snapd_vss"  # every LV the service creates carries it
SET_TAG_PREFIX = "snapd_vss_set_"  # + short snapshot set id
ID_TAG_PREFIX = "snapd_vss_id_"  # + full snapshot id
NAME_MARK = "_vss_"  # <origin>_vss_<yyyymmddHHMMSS>_<short id>
MAX_LV_NAME = 127


@dataclass(frozen=True)
class LvInfo:
    """One row of the report."""

    name: str
    vg: str
    attr: str
    segtype: str
    pool: str
    origin: str
    dm_path: str
    path: str
    major_minor: str  # "" when not active
    tags: tuple[str, ...]
    data_percent: float | None
    metadata_percent: float | None
    size_bytes: int
    active: bool

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.name}"

    @property
    def is_thin(self) -> bool:
        return self.segtype == "thin"

    @property
    def is_thin_pool(self) -> bool:
        return self.segtype == "thin-pool"

    @property
    def is_ours(self) -> bool:
        return TAG in self.tags

    @property
    def snapshot_id(self) -> str:
        """The snapshot id from our id tag ("" if none)."""
        for tag in self.tags:
            if tag.startswith(ID_TAG_PREFIX):
                return tag[len(ID_TAG_PREFIX) :]
        return ""


@dataclass(frozen=True)
class PoolUsage:
    """How full a thin pool is, for the threshold check and the provider's properties."""

    vg: str
    pool: str
    data_percent: float
    metadata_percent: float
    size_bytes: int

    @property
    def full_name(self) -> str:
        return f"{self.vg}/{self.pool}"


def _percent(value: str) -> float | None:
    value = value.strip()
    return float(value) if value else None


def _int(value: str, default: int = 0) -> int:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else default


def parse_lv(row: dict[str, str]) -> LvInfo:
    major = _int(row.get("lv_kernel_major", ""), -1)
    minor = _int(row.get("lv_kernel_minor", ""), -1)
    tags = tuple(t for t in row.get("lv_tags", "").split(",") if t)
    return LvInfo(
        name=row["lv_name"],
        vg=row["vg_name"],
        attr=row.get("lv_attr", ""),
        segtype=row.get("segtype", ""),
        pool=row.get("pool_lv", ""),
        origin=row.get("origin", ""),
        dm_path=row.get("lv_dm_path", ""),
        path=row.get("lv_path", ""),
        major_minor=f"{major}:{minor}" if major >= 0 and minor >= 0 else "",
        tags=tags,
        data_percent=_percent(row.get("data_percent", "")),
        metadata_percent=_percent(row.get("metadata_percent", "")),
        size_bytes=_int(row.get("lv_size", "")),
        active=row.get("lv_active", "") == "active",
    )


def parse_lvs_json(text: str) -> list[LvInfo]:
    """Parse ``lvs --reportformat json`` output (several reports are concatenated)."""
    try:
        doc = json.loads(text) if text.strip() else {"report": []}
        reports = doc["report"]
        rows = [row for report in reports for row in report.get("lv", [])]
        return [parse_lv(row) for row in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ProviderFailure(
            f"could not read the output of lvs ({e}); is this LVM 2.03 or newer? "
            f"Output was: {text[:500]!r}"
        ) from None


def pool_usage(lvs: list[LvInfo]) -> list[PoolUsage]:
    return [
        PoolUsage(
            vg=lv.vg,
            pool=lv.name,
            data_percent=lv.data_percent or 0.0,
            metadata_percent=lv.metadata_percent or 0.0,
            size_bytes=lv.size_bytes,
        )
        for lv in lvs
        if lv.is_thin_pool
    ]


def split_dm_name(name: str) -> tuple[str, str] | None:
    """``"my--vg-lv"`` → ``("my-vg", "lv")``: a device-mapper name LVM made (dashes
    doubled, one dash between VG and LV); None when it is not one or is ambiguous."""
    parts = re.split(r"(?<!-)-(?!-)", name)
    if len(parts) != 2 or not all(parts) or "---" in name:
        return None
    vg, lv = (part.replace("--", "-") for part in parts)
    return vg, lv


def parse_thin_pool_status(text: str) -> tuple[float, float] | None:
    """(data %, metadata %) from ``dmsetup status`` of a thin pool; None if not readable.

    The line is ``START LENGTH thin-pool TRANSACTION USED/TOTAL(meta) USED/TOTAL(data) ...``
    (a failed pool says ``Fail``).
    """
    fields = text.split()
    if len(fields) < 6 or fields[2] != "thin-pool":
        return None
    try:
        meta_used, meta_total = (int(x) for x in fields[4].split("/"))
        data_used, data_total = (int(x) for x in fields[5].split("/"))
    except ValueError:
        return None
    if meta_total <= 0 or data_total <= 0:
        return None
    return data_used * 100.0 / data_total, meta_used * 100.0 / meta_total


def short_id(ident: str) -> str:
    """The first 8 letters/digits of an id (a UUID): enough for an admin to match it."""
    return re.sub(r"[^A-Za-z0-9]", "", ident)[:8] or "0"


def snapshot_name(origin: str, when: datetime, snapshot_id: str) -> str:
    """``<origin>_vss_<yyyymmddHHMMSS>_<short id>``, shortened to LVM's name limit."""
    tail = f"{NAME_MARK}{when:%Y%m%d%H%M%S}_{short_id(snapshot_id)}"
    return origin[: MAX_LV_NAME - len(tail)] + tail


def id_tag(snapshot_id: str) -> str:
    """The tag that names one snapshot: ``snapd_vss_id_<snapshot id>``."""
    return ID_TAG_PREFIX + _tag_safe(snapshot_id)


def snapshot_tags(snapshot_id: str, snapshot_set_id: str) -> list[str]:
    return [TAG, SET_TAG_PREFIX + short_id(snapshot_set_id), id_tag(snapshot_id)]


def _tag_safe(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_+.\-/=!:&#]", "_", value)
