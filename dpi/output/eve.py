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
        client_is_a = flows.client_is_a[f] == 1
        src_is_a = np.where(alerts.direction == 0, client_is_a, ~client_is_a)
        cols = {
            "s_hi": np.where(src_is_a, flows.a_hi[f], flows.b_hi[f]).tolist(),
            "s_lo": np.where(src_is_a, flows.a_lo[f], flows.b_lo[f]).tolist(),
            "sp": np.where(src_is_a, flows.a_port[f], flows.b_port[f]).tolist(),
            "d_hi": np.where(src_is_a, flows.b_hi[f], flows.a_hi[f]).tolist(),
            "d_lo": np.where(src_is_a, flows.b_lo[f], flows.a_lo[f]).tolist(),
            "dp": np.where(src_is_a, flows.b_port[f], flows.a_port[f]).tolist(),
            "ver": flows.ip_version[f].tolist(),
            "proto": flows.proto[f].tolist(),
            "flow_id": flows.flow_id[f].tolist(),
        }
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
            proto = cols["proto"][i]
            event = {
                "timestamp": format_timestamp(ts),
                "flow_id": cols["flow_id"][i],
                "pcap_cnt": num,
                "event_type": "alert",
                "src_ip": format_address(cols["s_hi"][i], cols["s_lo"][i], cols["ver"][i]),
            }
            if proto in (6, 17, 132):
                event["src_port"] = cols["sp"][i]
            event["dest_ip"] = format_address(cols["d_hi"][i], cols["d_lo"][i], cols["ver"][i])
            if proto in (6, 17, 132):
                event["dest_port"] = cols["dp"][i]
            event["proto"] = proto_name(proto)
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
    events = []
    client_is_a = flows.client_is_a[:n].tolist()
    for f in range(n):
        a = (flows.a_hi[f], flows.a_lo[f], int(flows.a_port[f]))
        b = (flows.b_hi[f], flows.b_lo[f], int(flows.b_port[f]))
        src, dst = (a, b) if client_is_a[f] else (b, a)
        ver, proto = int(flows.ip_version[f]), int(flows.proto[f])
        start, end = int(flows.first_ts[f]), int(flows.last_ts[f])
        event = {
            "timestamp": format_timestamp(end),
            "flow_id": int(flows.flow_id[f]),
            "event_type": "flow",
            "src_ip": format_address(src[0], src[1], ver),
        }
        if proto in (6, 17, 132):
            event["src_port"] = src[2]
        event["dest_ip"] = format_address(dst[0], dst[1], ver)
        if proto in (6, 17, 132):
            event["dest_port"] = dst[2]
        event["proto"] = proto_name(proto)
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
