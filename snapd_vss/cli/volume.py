"""vssctl volume: the diff-area provider's volumes (org.snapdvss.Vss1.DiffArea).

    vssctl volume attach IMAGE --diff-area DIR [--max-size SIZE] [--policy P] [--chunk-size SIZE]
    vssctl volume detach IMAGE|NAME|LOOPDEV [--delete-snapshots]
    vssctl volume resize IMAGE|NAME|LOOPDEV --max-size SIZE
    vssctl volume list [--json]

SIZE is a number of bytes with an optional binary suffix: K, M, G, T (also KiB, MiB...),
e.g. ``1G`` = 1073741824. ``attach`` prints the loop device to make a filesystem on.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from typing import Any

from snapd_vss.cli import output
from snapd_vss.cli.backup import doing
from snapd_vss.errors import InvalidArgs
from snapd_vss.ipc.client import OptionValue, VssClient, options, provider_path

INTERFACE = "DiffArea"
PATH = provider_path("diff_area")
POLICIES = ("DROP_OLDEST_SNAPSHOT", "FAIL_WRITES")
_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"1G"`` → 1073741824; plain numbers are bytes. Raises ``ArgumentTypeError``."""
    match = _SIZE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size; write bytes or a number with K, M, G or T (e.g. 1G)"
        )
    number, unit = int(match.group(1)), _UNITS[match.group(2).upper()]
    return number << (10 * unit)


def format_size(size: int) -> str:
    """Bytes for people: ``1073741824`` → ``1.0G``."""
    value = float(size)
    for unit in ("", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{size}B" if not unit else f"{value:.1f}{unit}"
        value /= 1024
    return f"{size}B"  # pragma: no cover


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    image: str
    diff_area_dir: str
    loop_device: str
    device_file: str
    size: int
    max_bytes: int
    used_bytes: int
    policy: str
    chunk_size: int

    @classmethod
    def from_dbus(cls, props: dict[str, Any]) -> VolumeInfo:
        return cls(
            name=str(props.get("Name", "")),
            image=str(props.get("Image", "")),
            diff_area_dir=str(props.get("DiffAreaDir", "")),
            loop_device=str(props.get("LoopDevice", "")),
            device_file=str(props.get("DeviceFile", "")),
            size=int(props.get("Size", 0)),
            max_bytes=int(props.get("MaxBytes", 0)),
            used_bytes=int(props.get("UsedBytes", 0)),
            policy=str(props.get("Policy", "")),
            chunk_size=int(props.get("ChunkSize", 0)),
        )


def volumes_listing(volumes: list[VolumeInfo]) -> output.Listing:
    return output.Listing(
        ("NAME", "IMAGE", "DEVICE", "SIZE", "DIFF AREA", "USED", "MAX", "POLICY", "CHUNK"),
        [
            (
                v.name,
                v.image,
                v.loop_device or "(server down)",
                format_size(v.size),
                v.diff_area_dir,
                format_size(v.used_bytes),
                format_size(v.max_bytes),
                v.policy,
                format_size(v.chunk_size),
            )
            for v in volumes
        ],
        "no volumes are attached; vssctl volume attach IMAGE --diff-area DIR",
    )


def add_parser(commands: Any, json_too: argparse.ArgumentParser) -> None:
    """Add ``volume`` and its subcommands to vssctl's subparsers."""
    volume = commands.add_parser(
        "volume",
        parents=[json_too],
        help="attach, detach, resize and list diff-area volumes",
        description="Volumes of the diff-area provider: an image served through FUSE and a "
        "loop device; snapshots keep old chunks in the volume's diff area.",
    )
    actions = volume.add_subparsers(dest="volume_command", required=True, metavar="ACTION")

    attach = actions.add_parser(
        "attach", parents=[json_too], help="serve an image as a loop device (root only)"
    )
    attach.add_argument("image", metavar="IMAGE", help="the volume image (a regular file)")
    attach.add_argument(
        "--diff-area", required=True, metavar="DIR", help="existing directory for the diff area"
    )
    attach.add_argument(
        "--max-size", type=parse_size, metavar="SIZE",
        help="the diff area's maximum size (default: a tenth of the image)",
    )  # fmt: skip
    attach.add_argument(
        "--policy", choices=POLICIES,
        help="what happens when the diff area is full (default DROP_OLDEST_SNAPSHOT)",
    )  # fmt: skip
    attach.add_argument(
        "--chunk-size", type=parse_size, metavar="SIZE",
        help="copy-on-write unit, a power of two from 4K to 1M (default: the service's)",
    )  # fmt: skip

    detach = actions.add_parser("detach", parents=[json_too], help="stop serving a volume")
    detach.add_argument("volume", metavar="IMAGE|NAME|LOOPDEV")
    detach.add_argument(
        "--delete-snapshots", action="store_true", help="delete the volume's snapshots first"
    )

    resize = actions.add_parser("resize", parents=[json_too], help="change a diff area's maximum")
    resize.add_argument("volume", metavar="IMAGE|NAME|LOOPDEV")
    resize.add_argument("--max-size", type=parse_size, required=True, metavar="SIZE")

    actions.add_parser("list", parents=[json_too], help="the attached volumes")


def _volume_key(text: str) -> str:
    """A path (image or loop device) is made absolute; a name is passed as is."""
    if os.sep in text or os.path.exists(text):
        return os.path.abspath(text)
    return text


async def list_volumes(client: VssClient) -> list[VolumeInfo]:
    raw: list[dict[str, Any]] = await client.call(PATH, INTERFACE, "ListVolumes")
    return sorted((VolumeInfo.from_dbus(v) for v in raw), key=lambda v: v.name)


async def _find(client: VssClient, key: str) -> VolumeInfo | None:
    for volume in await list_volumes(client):
        if key in (volume.name, volume.image, volume.loop_device):
            return volume
    return None


async def cmd_attach(client: VssClient, args: argparse.Namespace) -> int:
    image = os.path.abspath(args.image)
    opts: dict[str, OptionValue] = {}
    if args.max_size is not None:
        opts["max_bytes"] = args.max_size
    if args.policy:
        opts["policy"] = args.policy
    if args.chunk_size is not None:
        opts["chunk_size"] = args.chunk_size
    with doing(f"cannot attach {image}"):
        device: str = await client.call(
            PATH, INTERFACE, "AttachVolume", image, os.path.abspath(args.diff_area), options(opts)
        )
    if args.json:
        with doing("attached, but cannot list the volumes"):
            info = await _find(client, device)
        output.print_json(info if info is not None else {"image": image, "loop_device": device})
    else:
        print(device)
    return 0


async def cmd_detach(client: VssClient, args: argparse.Namespace) -> int:
    key = _volume_key(args.volume)
    opts: dict[str, OptionValue] = {"delete_snapshots": True} if args.delete_snapshots else {}
    with doing(f"cannot detach {args.volume}"):
        await client.call(PATH, INTERFACE, "DetachVolume", key, options(opts))
    if args.json:
        output.print_json({"detached": key})
    else:
        print(f"detached {key}")
    return 0


async def cmd_resize(client: VssClient, args: argparse.Namespace) -> int:
    key = _volume_key(args.volume)
    with doing(f"cannot resize the diff area of {args.volume}"):
        await client.call(PATH, INTERFACE, "ResizeDiffArea", key, args.max_size, options())
        info = await _find(client, key)
    if args.json:
        output.print_json(info if info is not None else {"volume": key, "max_bytes": args.max_size})
    else:
        print(f"diff area of {key}: at most {format_size(args.max_size)}")
    return 0


async def cmd_list(client: VssClient, args: argparse.Namespace) -> int:
    with doing("cannot list the diff-area volumes"):
        volumes = await list_volumes(client)
    if args.json:
        output.print_json(volumes)
    else:
        output.print_listing(volumes_listing(volumes))
    return 0


async def run(client: VssClient, args: argparse.Namespace) -> int:
    """``vssctl volume ACTION``."""
    actions = {"attach": cmd_attach, "detach": cmd_detach, "resize": cmd_resize, "list": cmd_list}
    action = actions.get(args.volume_command)
    if action is None:
        raise InvalidArgs(f"unknown volume action {args.volume_command!r}")
    return await action(client, args)
