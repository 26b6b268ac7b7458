"""The chunk table: what crosses the stream -> match boundary.

A chunk is a run of in-order bytes of one stream. ``src`` says where its bytes are:
0 = the capture buffer (zero copy), 1 = the batch's side buffer (data released from the
out-of-order arena). ``stream`` is the matcher-state slot (-1: a datagram, scanned from a
fresh state); ``stream_pos`` the chunk's first byte as an offset from the stream start.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

SRC_CAPTURE = 0
SRC_SIDE = 1


@dataclass
class ChunkTable:
    src: np.ndarray  # int8
    offset: np.ndarray  # int64, in the buffer named by src
    length: np.ndarray  # int64
    stream: np.ndarray  # int64, matcher state slot, -1 for datagrams
    stream_pos: np.ndarray  # int64
    flow: np.ndarray  # int64, flow index
    direction: np.ndarray  # uint8, TO_SERVER / TO_CLIENT
    packet: np.ndarray  # int64, index of the packet in the batch that delivered it (-1: end-of-capture flush)
    ts_ns: np.ndarray  # int64, timestamp of that packet
    number: np.ndarray  # int64, capture packet number of that packet
    side: np.ndarray  # uint8, the side buffer (bytes released from the arena this batch)
    # stream position of the delivering packet's first payload byte, so rules can also be
    # checked against the packet alone (as Suricata inspects packet and stream); -1 when
    # the chunk is not that packet's own payload (data released from the arena)
    packet_base: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.src.shape[0])

    @staticmethod
    def allocate(n: int, side_bytes: int) -> ChunkTable:
        dtypes = {"src": np.int8, "direction": np.uint8, "side": np.uint8}
        cols = {}
        for f in fields(ChunkTable):
            if f.name == "side":
                cols[f.name] = np.zeros(side_bytes, dtype=np.uint8)
            elif f.name == "packet_base":
                cols[f.name] = np.full(n, -1, dtype=np.int64)
            else:
                cols[f.name] = np.zeros(n, dtype=dtypes.get(f.name, np.int64))
        return ChunkTable(**cols)

    def rows(self, start: int, stop: int) -> ChunkTable:
        """Chunks start..stop-1, as views; the side buffer is shared (offsets stay valid)."""
        cols = {f.name: getattr(self, f.name) for f in fields(ChunkTable)}
        for name, col in cols.items():
            if name != "side" and col is not None:
                cols[name] = col[start:stop]
        return ChunkTable(**cols)

    def head(self, n: int, side_used: int) -> ChunkTable:
        cols = {f.name: getattr(self, f.name)[:n] for f in fields(ChunkTable) if f.name != "side"}
        cols["packet_base"] = cols["packet_base"].copy()
        return ChunkTable(side=self.side[:side_used], **cols)
