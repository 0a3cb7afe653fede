"""Settings of one attached volume, persisted as JSON in its volume directory."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any

from snapd_vss.errors import InvalidArgs
from snapd_vss.vocabulary import WireEnum

# Measured with benchmarks/diff_area_bench.py (2-core VM, shared disk, noisy): with one
# fdatasync per preserve (format 2) first sequential writes ran ~180-230 MiB/s at 16 and
# 32 KiB and ~145-180 at 64 KiB, within the run-to-run noise of the plain loop; random
# 4 KiB first writes 9-14 MiB/s at every size. Nothing measured justifies a change: 64 KiB
# keeps the index 4x smaller than 16 KiB and the per-request copies fewer; scattered 4 KiB
# first writes cost more diff-area space with it (one chunk each). Re-measure on real
# hardware before changing.
DEFAULT_CHUNK_SIZE = 64 * 1024
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
CONFIG_FILE = "volume.json"


class FullPolicy(WireEnum):
    """What happens when a preserve would exceed the diff area's maximum size."""

    DROP_OLDEST_SNAPSHOT = "DROP_OLDEST_SNAPSHOT"  # VSS: protect the live volume
    FAIL_WRITES = "FAIL_WRITES"  # keep the snapshots; the write fails with ENOSPC


def check_chunk_size(chunk_size: int) -> int:
    power_of_two = chunk_size > 0 and chunk_size & (chunk_size - 1) == 0
    if not power_of_two or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidArgs(
            f"chunk size {chunk_size} is not a power of two between "
            f"{MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE} bytes; pick e.g. {DEFAULT_CHUNK_SIZE}"
        )
    return chunk_size


@dataclass(frozen=True)
class VolumeConfig:
    name: str  # short id of the attachment, used in paths
    image: str  # absolute path of the image file
    diff_area_dir: str  # absolute path of this volume's diff area directory
    max_bytes: int
    policy: FullPolicy = FullPolicy.DROP_OLDEST_SNAPSHOT
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["policy"] = self.policy.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VolumeConfig:
        return cls(
            name=str(data["name"]),
            image=str(data["image"]),
            diff_area_dir=str(data["diff_area_dir"]),
            max_bytes=int(data["max_bytes"]),
            policy=FullPolicy(str(data["policy"])),
            chunk_size=check_chunk_size(int(data["chunk_size"])),
        )

    def save(self, volume_dir: str) -> None:
        os.makedirs(volume_dir, mode=0o700, exist_ok=True)
        path = os.path.join(volume_dir, CONFIG_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, volume_dir: str) -> VolumeConfig:
        with open(os.path.join(volume_dir, CONFIG_FILE)) as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise InvalidArgs(f"{volume_dir}/{CONFIG_FILE} is not a JSON object")
        return cls.from_json(data)
