"""Settings of the flow table, with Suricata's defaults (suricata.yaml ``flow:`` and
``flow-timeouts:``), in seconds of capture time."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    memcap: int = 128 << 20  # bytes of flow state; at the cap the oldest flows are evicted
    timeouts: dict[str, FlowTimeouts] = field(default_factory=_default_timeouts)
