"""Settings of the flow table, with Suricata's defaults (suricata.yaml ``flow:`` and
``flow-timeouts:``), in seconds of capture time."""

from __future__ import annotations

from dataclasses import dataclass, field

# What one flow costs later stages, counted against flow.memcap beside the flow table's
# own bytes (which dpi.flow.table measures from its columns). An estimate: stream
# reassembly keeps two directions of seven int64 and three uint8 columns (118 bytes) and
# the matcher an int32 pair per direction (16 bytes); rounded up for what they add.
STREAM_BYTES_PER_FLOW_ESTIMATE = 160


@dataclass
class FlowTimeouts:
    new: int
    established: int
    closed: int
    emergency_new: int
    emergency_established: int
    emergency_closed: int


def _default_timeouts() -> dict[str, FlowTimeouts]:
    return {
        "default": FlowTimeouts(30, 300, 0, 10, 100, 0),
        "tcp": FlowTimeouts(60, 600, 60, 5, 100, 10),
        "udp": FlowTimeouts(30, 300, 0, 10, 100, 0),
        "icmp": FlowTimeouts(30, 300, 0, 10, 100, 0),
    }


@dataclass
class FlowConfig:
    # bytes of flow state; when a batch would pass it, flows idle past the emergency
    # timeouts end, then the least recently active ones are evicted
    memcap: int = 128 << 20
    timeouts: dict[str, FlowTimeouts] = field(default_factory=_default_timeouts)
