"""An in-memory disk that can crash: the test double for :mod:`.storage`.

Every file keeps its *durable* bytes and the list of writes made since its last
``sync()``. :meth:`MemDisk.crash` models a power cut or a killed process followed by the
kernel's arbitrary writeback: each unsynced write independently survives whole, survives
torn (a prefix of it), or is lost. Files named in ``scatter`` tear harder, as a disk
may: a torn write keeps a random subset of its 512-byte sectors. A crash can also be
*scheduled* after N operations: from then on every operation raises
:class:`SimulatedCrash`, which derives from ``BaseException`` so no ``except Exception``
in the engine can swallow it.

This is what lets the property tests check the engine's durability ordering ("a
preserved chunk's record is durable before the original chunk is overwritten") without a
real disk.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


class SimulatedCrash(BaseException):
    """The simulated machine lost power in the middle of an operation."""


@dataclass
class _Pending:
    offset: int
    data: bytes | None  # None = a truncate to ``offset``


@dataclass
class _FileState:
    durable: bytearray = field(default_factory=bytearray)
    current: bytearray = field(default_factory=bytearray)
    pending: list[_Pending] = field(default_factory=list)


SECTOR = 512


class MemDisk:
    def __init__(self, scatter: frozenset[str] = frozenset()) -> None:
        self.files: dict[str, _FileState] = {}
        self.ops_left: int | None = None  # None = never crash
        self.scatter = scatter  # files whose torn writes keep random sectors, not a prefix

    def schedule_crash(self, after_ops: int | None) -> None:
        self.ops_left = after_ops

    def tick(self) -> None:
        if self.ops_left is None:
            return
        if self.ops_left <= 0:
            raise SimulatedCrash()
        self.ops_left -= 1

    def file(self, name: str) -> MemFile:
        self.files.setdefault(name, _FileState())
        return MemFile(self, name)

    def crash(self, rng: random.Random) -> None:
        """Lose, keep or tear every unsynced write, then forget the volatile state."""
        for name, state in self.files.items():
            image = bytearray(state.durable)
            for op in state.pending:
                fate = rng.randrange(3)
                if fate == 0:
                    continue
                if op.data is None:
                    del image[op.offset :]
                elif fate == 1:
                    _put(image, op.offset, op.data)
                elif name in self.scatter:
                    for start in range(0, len(op.data), SECTOR):
                        if rng.randrange(2):
                            _put(image, op.offset + start, op.data[start : start + SECTOR])
                else:
                    _put(image, op.offset, op.data[: rng.randrange(len(op.data) + 1)])
            state.durable = image
            state.current = bytearray(image)
            state.pending.clear()
        self.ops_left = None


def _put(buf: bytearray, offset: int, data: bytes) -> None:
    if len(buf) < offset:
        buf.extend(bytes(offset - len(buf)))
    buf[offset : offset + len(data)] = data


class MemFile:
    def __init__(self, disk: MemDisk, name: str) -> None:
        self.disk = disk
        self.name = name

    @property
    def _state(self) -> _FileState:
        return self.disk.files[self.name]

    def pread(self, length: int, offset: int) -> bytes:
        data = bytes(self._state.current[offset : offset + length])
        return data + bytes(length - len(data))

    def pwrite(self, data: bytes | memoryview, offset: int) -> None:
        self.disk.tick()
        raw = bytes(data)
        _put(self._state.current, offset, raw)
        self._state.pending.append(_Pending(offset, raw))

    def sync(self) -> None:
        self.disk.tick()
        state = self._state
        state.durable = bytearray(state.current)
        state.pending.clear()

    def size(self) -> int:
        return len(self._state.current)

    def truncate(self, length: int) -> None:
        self.disk.tick()
        cur = self._state.current
        if length < len(cur):
            del cur[length:]
        else:
            cur.extend(bytes(length - len(cur)))
        self._state.pending.append(_Pending(length, None))

    def close(self) -> None:
        pass


class MemDiffStore:
    """A diff area on a :class:`MemDisk`; ``replace`` is atomic and durable, like rename+fsync."""

    def __init__(self, disk: MemDisk, prefix: str = "diff/") -> None:
        self.disk = disk
        self.prefix = prefix

    def open(self, name: str) -> MemFile:
        return self.disk.file(self.prefix + name)

    def exists(self, name: str) -> bool:
        return self.prefix + name in self.disk.files

    def replace(self, src: str, dst: str) -> None:
        self.disk.tick()
        state = self.disk.files.pop(self.prefix + src)
        # rename + fsync(dir) makes the name durable, not unsynced data in the file
        self.disk.files[self.prefix + dst] = state

    def remove(self, name: str) -> None:
        self.disk.files.pop(self.prefix + name, None)
