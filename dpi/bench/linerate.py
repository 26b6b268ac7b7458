"""Commodity Ethernet line rates, counted on the wire: what a measured throughput must reach.

A frame on the wire is the captured frame plus what a capture leaves out: the 4-byte FCS, padding
to the 64-byte minimum frame, the 8-byte preamble and start delimiter, and the 12-byte inter-frame
gap. So at a link rate L and a packet-size mix, the captured bytes arrive at
L * sum(captured) / sum(on the wire), and packets at L / (8 * mean bytes on the wire).
"""

from __future__ import annotations

import math

import numpy as np

LINK_GBPS = (1, 10, 25, 40, 100)
FCS = 4
MIN_FRAME = 64  # with FCS
PREAMBLE_AND_SFD = 8
INTER_FRAME_GAP = 12


def wire_bytes(wirelen: np.ndarray, fcs_captured: bool = False) -> np.ndarray:
    """Bytes each frame takes on the wire, overhead included, from its original length."""
    frame = np.asarray(wirelen, dtype=np.int64) + (0 if fcs_captured else FCS)
    return np.maximum(frame, MIN_FRAME) + PREAMBLE_AND_SFD + INTER_FRAME_GAP


def line_rates(wirelen: np.ndarray, measured_gbps: float, links=LINK_GBPS) -> list[dict]:
    """For each link: the packets/s and captured-byte Gbps a full link delivers at this packet mix,
    and how many cores of the measured (one-core) throughput it takes to keep up."""
    wirelen = np.asarray(wirelen, dtype=np.int64)
    on_wire = int(wire_bytes(wirelen).sum())
    captured = int(wirelen.sum())
    rows = []
    for link in links:
        if on_wire == 0:
            rows.append({"link_gbps": link, "line_mpps": 0.0, "line_gbps": 0.0, "cores_needed": 0})
            continue
        line_mpps = link * 1e9 / (8 * on_wire / len(wirelen)) / 1e6
        line_gbps = link * captured / on_wire
        cores = math.ceil(line_gbps / measured_gbps) if measured_gbps > 0 else None
        rows.append(
            {
                "link_gbps": link,
                "line_mpps": round(line_mpps, 6),
                "line_gbps": round(line_gbps, 4),
                "share_of_line": round(measured_gbps / line_gbps, 4) if line_gbps else None,
                "cores_needed": cores,
            }
        )
    return rows
