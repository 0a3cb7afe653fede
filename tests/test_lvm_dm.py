"""The DM_TABLE_STATUS ioctl's buffer layout (the real ioctl runs in the guest tests)."""

from __future__ import annotations

import struct

import pytest

from snapd_vss.providers.lvm import dm

HEADER = struct.Struct("=3I I I I i I I I Q 128s 129s 7s")
SPEC = struct.Struct("=Q Q i I 16s")


def kernel_answer(targets: list[tuple[int, int, str, str]], size: int = 4096) -> bytearray:
    """What Linux's retrieve_status() writes: specs at data_start, ``next`` 8-aligned."""
    buf = bytearray(size)
    data_start = HEADER.size
    offset = data_start
    for start, length, kind, text in targets:
        raw = text.encode() + b"\0"
        after = offset + SPEC.size + len(raw)
        aligned = (after + 7) & ~7
        SPEC.pack_into(buf, offset, start, length, 0, aligned - data_start, kind.encode())
        buf[offset + SPEC.size : after] = raw
        used = after
        offset = aligned
    HEADER.pack_into(buf, 0, 4, 47, 0, used if targets else data_start, data_start,
                     len(targets), 1, 0, 0, 0, 0, b"vg-pool-tpool", b"", b"")
    return buf


def test_ioctl_number_is_linuxs() -> None:
    # DM_TABLE_STATUS as libdevmapper and strace know it
    assert dm.TABLE_STATUS == 0xC138FD0C


def test_request_names_the_device_by_uuid_without_flush() -> None:
    buf = dm.request(uuid="LVM-abc-tpool")
    fields = HEADER.unpack_from(buf, 0)
    assert fields[:3] == (4, 0, 0)
    assert fields[3] == len(buf)  # data_size: the whole buffer the kernel may fill
    assert fields[7] == dm.NOFLUSH_FLAG
    assert fields[11] == b"\0" * 128  # no name: the kernel refuses both
    assert fields[12].rstrip(b"\0") == b"LVM-abc-tpool"
    assert HEADER.unpack_from(dm.request(name="vg-pool-tpool", noflush=False), 0)[7] == 0


@pytest.mark.parametrize("kwargs", [{}, {"name": "a", "uuid": "b"}, {"name": "x" * 128}])
def test_request_needs_exactly_one_short_name(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        dm.request(**kwargs)


def test_parses_one_thin_pool_target() -> None:
    text = "3 171/4096 4096/16384 - rw discard_passdown queue_if_no_space - 1"
    (target,) = dm.parse(kernel_answer([(0, 2097152, "thin-pool", text)]))
    assert target == dm.Target(0, 2097152, "thin-pool", text)
    assert target.line == f"0 2097152 thin-pool {text}"


def test_parses_several_targets_following_next() -> None:
    answer = kernel_answer([(0, 100, "linear", ""), (100, 28, "striped", "2 8 254:1 0 A")])
    assert dm.parse(answer) == [
        dm.Target(0, 100, "linear", ""),
        dm.Target(100, 28, "striped", "2 8 254:1 0 A"),
    ]
    assert dm.parse(kernel_answer([])) == []


def test_a_broken_answer_is_an_error() -> None:
    answer = kernel_answer([(0, 8, "linear", "")])
    with pytest.raises(ValueError):
        dm.parse(answer[:100])
    answer[12:16] = struct.pack("=I", 10**6)  # data_size beyond the buffer
    with pytest.raises(ValueError):
        dm.parse(answer)
    unterminated = kernel_answer([(0, 8, "linear", "abc")])
    used = HEADER.size + SPEC.size + 3
    unterminated[12:16] = struct.pack("=I", used)
    with pytest.raises(ValueError):
        dm.parse(unterminated)


def kernel_has_device_mapper() -> bool:
    with open("/proc/devices") as f:
        return "device-mapper" in f.read().split()


@pytest.mark.skipif(kernel_has_device_mapper(), reason="this kernel has device-mapper")
def test_no_device_mapper_is_an_os_error() -> None:
    with pytest.raises(OSError):
        dm.table_status(name="vg-pool-tpool")
