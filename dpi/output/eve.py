"""EVE JSON output, shaped as Suricata writes it so existing EVE tools read ours."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from typing import TextIO

import numpy as np

PROTO_NAMES = {
    1: "ICMP",
    2: "IGMP",
    6: "TCP",
    17: "UDP",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "IPv6-ICMP",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    132: "SCTP",
}


def format_timestamp(ts_ns: int) -> str:
    """Suricata's EVE timestamp: microseconds, numeric UTC offset (we always write UTC)."""
    sec, ns = divmod(int(ts_ns), 1_000_000_000)
    dt = datetime.fromtimestamp(sec, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}+0000"


def format_address(hi: int, lo: int, ip_version: int) -> str:
    value = (int(hi) << 64) | int(lo)
    if ip_version == 4:
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def proto_name(proto: int) -> str:
    return PROTO_NAMES.get(int(proto), str(int(proto)))


PORTED = (6, 17, 132)  # protocols whose EVE events carry ports


def endpoint_fields(flows, flow: np.ndarray, direction: np.ndarray) -> list[dict]:
    """src_ip, src_port, dest_ip, dest_port and proto, as EVE writes them, for packets sent
    in ``direction`` on ``flow`` (TO_SERVER: the client is the source)."""
    from dpi.flow.table import endpoints

    s_hi, s_lo, sp, d_hi, d_lo, dp = (c.tolist() for c in endpoints(flows, flow, direction))
    ver = flows.ip_version[flow].tolist()
    proto = flows.proto[flow].tolist()
    out = []
    for i in range(len(ver)):
        fields = {"src_ip": format_address(s_hi[i], s_lo[i], ver[i])}
        if proto[i] in PORTED:
            fields["src_port"] = sp[i]
        fields["dest_ip"] = format_address(d_hi[i], d_lo[i], ver[i])
        if proto[i] in PORTED:
            fields["dest_port"] = dp[i]
        fields["proto"] = proto_name(proto[i])
        out.append(fields)
    return out


class EveWriter:
    """Writes EVE events as JSON lines. Payload bytes are never written unless asked
    (data minimisation is the default)."""

    def __init__(self, fh: TextIO):
        self.fh = fh
        self.alerts = 0
        self.alerted_flows: set[int] = set()

    def write_event(self, event: dict) -> None:
        self.fh.write(json.dumps(event, separators=(",", ":")) + "\n")

    def write_flows(self, flows, states, alerted, reason: str = "shutdown") -> None:
        events = flow_events(flows, states, alerted, reason)
        if events:
            self.fh.write("\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n")

    def write_alerts(self, alerts, rules, flows) -> None:
        if len(alerts) == 0:
            return
        f = alerts.flow
        ends = endpoint_fields(flows, f, alerts.direction)
        flow_ids = flows.flow_id[f].tolist()
        lines = []
        for i, (r, ts, num, d) in enumerate(
            zip(
                alerts.rule.tolist(),
                alerts.ts_ns.tolist(),
                alerts.number.tolist(),
                alerts.direction.tolist(),
                strict=True,
            )
        ):
            rule = rules[r]
            event = {
                "timestamp": format_timestamp(ts),
                "flow_id": flow_ids[i],
                "pcap_cnt": num,
                "event_type": "alert",
                **ends[i],
            }
            event["direction"] = "to_server" if d == 0 else "to_client"
            event["alert"] = {
                "action": "allowed",
                "gid": rule.gid,
                "signature_id": rule.sid,
                "rev": rule.rev,
                "signature": rule.msg,
                "category": rule.category,
                "severity": rule.priority,
            }
            lines.append(json.dumps(event, separators=(",", ":")))
        self.fh.write("\n".join(lines) + "\n")
        self.alerts += len(lines)
        self.alerted_flows.update(f.tolist())


TCP_FLAG_NAMES = (
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "psh"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ecn"),
    (0x80, "cwr"),
)


def flow_events(flows, states, alerted, reason: str = "shutdown") -> list[dict]:
    """One EVE ``flow`` event per flow, with Suricata's fields; source is the client."""
    from dpi.flow.table import FLOW_STATES

    n = flows.n_flows
    ends = endpoint_fields(flows, np.arange(n), np.zeros(n, np.uint8))
    events = []
    for f in range(n):
        proto = int(flows.proto[f])
        start, end = int(flows.first_ts[f]), int(flows.last_ts[f])
        event = {
            "timestamp": format_timestamp(end),
            "flow_id": int(flows.flow_id[f]),
            "event_type": "flow",
            **ends[f],
        }
        event["flow"] = {
            "pkts_toserver": int(flows.pkts[f, 0]),
            "pkts_toclient": int(flows.pkts[f, 1]),
            "bytes_toserver": int(flows.bytes[f, 0]),
            "bytes_toclient": int(flows.bytes[f, 1]),
            "start": format_timestamp(start),
            "end": format_timestamp(end),
            "age": (end - start) // 1_000_000_000,
            "state": FLOW_STATES[int(states[f])],
            "reason": reason,
            "alerted": bool(alerted[f]),
        }
        if proto == 6:
            ts_flags, tc_flags = int(flows.tcp_flags[f, 0]), int(flows.tcp_flags[f, 1])
            both = ts_flags | tc_flags
            tcp = {
                "tcp_flags": f"{both:02x}",
                "tcp_flags_ts": f"{ts_flags:02x}",
                "tcp_flags_tc": f"{tc_flags:02x}",
            }
            tcp.update({name: True for bit, name in TCP_FLAG_NAMES if both & bit})
            event["tcp"] = tcp
        events.append(event)
    return events
