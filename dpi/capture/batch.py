"""The columns that cross the capture -> decode boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PacketBatch:
    """A batch of captured frames as columns (structure of arrays).

    ``buffer`` is a read-only uint8 view of the bytes the frames live in: for the native
    reader it is the memory-mapped capture file itself, so nothing is copied; ``offset``
    is each frame's byte offset inside it. All columns have one row per packet.
    """

    buffer: np.ndarray  # uint8, the whole capture (or a reference reader's copy)
    offset: np.ndarray  # int64, byte offset of the frame's first byte in ``buffer``
    caplen: np.ndarray  # int64, captured length (bytes present in ``buffer``)
    wirelen: np.ndarray  # int64, original length on the wire
    ts_ns: np.ndarray  # int64, nanoseconds since the Unix epoch
    linktype: np.ndarray  # int64, LINKTYPE_* of the frame's interface
    number: np.ndarray  # int64, 1-based packet number in the capture (as tshark's frame.number)

    def __len__(self) -> int:
        return int(self.offset.shape[0])

    @property
    def captured_bytes(self) -> int:
        return int(self.caplen.sum())

    def frame(self, i: int) -> bytes:
        """One frame's bytes (for tests and debugging, never in a hot path)."""
        start = int(self.offset[i])
        return bytes(self.buffer[start : start + int(self.caplen[i])])

    @staticmethod
    def empty(buffer: np.ndarray | None = None) -> PacketBatch:
        z = np.zeros(0, dtype=np.int64)
        buf = buffer if buffer is not None else np.zeros(0, dtype=np.uint8)
        return PacketBatch(buf, z, z.copy(), z.copy(), z.copy(), z.copy(), z.copy())
