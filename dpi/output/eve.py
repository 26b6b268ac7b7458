"""EVE JSON output, shaped as Suricata writes it so existing EVE tools read ours."""

from __future__ import annotations

import base64
import ipaddress
import json
from datetime import UTC, datetime
from typing import TextIO

import numpy as np

PROTO_NAMES = {
    1: "ICMP",
    2: "IGMP",
    4: "IPv4",
    6: "TCP",
    17: "UDP",
    41: "IPv6",
    47: "GRE",
    50: "ESP",
    51: "AH",
    58: "IPv6-ICMP",
    89: "OSPF",
    103: "PIM",
    112: "VRRP",
    132: "SCTP",
}


def printable(data: bytes) -> str:
    """Suricata's payload_printable: printable ASCII and whitespace kept, every other byte a dot."""
    return "".join(chr(b) if 32 <= b < 127 or b in (9, 10, 13) else "." for b in data)


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


def tunnel_objects(outer, depth: np.ndarray, pcap_cnt: np.ndarray) -> list[dict]:
    """Suricata's alert ``tunnel`` object for packets that came out of tunnels: the outermost
    packet's own source and destination (``outer``, a DecodedBatch of those packets), its
    ports (0 when it has none), protocol, and how deep the alerting packet was."""
    objects = []
    for k in range(len(outer)):
        version = int(outer.ip_version[k])
        objects.append(
            {
                "src_ip": format_address(outer.src_hi[k], outer.src_lo[k], version),
                "src_port": int(outer.sport[k]),
                "dest_ip": format_address(outer.dst_hi[k], outer.dst_lo[k], version),
                "dest_port": int(outer.dport[k]),
                "proto": proto_name(outer.proto[k]),
                "depth": int(depth[k]),
                "pcap_cnt": int(pcap_cnt[k]),
                "pkt_src": "wire/pcap",
            }
        )
    return objects


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


def _metadata(items: list[str]) -> dict[str, list[str]]:
    """Rule metadata as Suricata's EVE writes it: each 'key value' item under its key."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, _, value = item.partition(" ")
        out.setdefault(key, []).append(value.strip())
    return out


def _source_and_target(ends: dict, target: str) -> dict:
    """alert.source and alert.target for rules with ``target:src_ip|dest_ip``."""
    src = {"ip": ends["src_ip"], "port": ends.get("src_port", 0)}
    dst = {"ip": ends["dest_ip"], "port": ends.get("dest_port", 0)}
    return {"source": dst, "target": src} if target == "src_ip" else {"source": src, "target": dst}


class EveWriter:
    """Writes EVE events as JSON lines. Payload bytes are never written unless asked
    (data minimisation is the default)."""

    def __init__(self, fh: TextIO, log_payload: bool = False):
        self.fh = fh
        # Suricata's eve-log alert options payload and payload-printable: the bytes of the
        # packet that completed the match, base64 and as printable text
        self.log_payload = log_payload
        self.alerts = 0
        self.payload_bytes = 0  # payload bytes written into alerts
        self.alerted_flows: set[int] = set()

    def write_event(self, event: dict) -> None:
        self.fh.write(json.dumps(event, separators=(",", ":")) + "\n")

    def write_flows(self, flows, index, states, reasons) -> None:
        """One flow event per ended flow in ``index`` (slots of ``flows``), ``alerted``
        from the alerts this writer wrote for them."""
        alerted = np.fromiter((f in self.alerted_flows for f in index.tolist()), dtype=bool, count=len(index))
        events = flow_events(flows, index, states, alerted, reasons)
        if events:
            self.fh.write("\n".join(json.dumps(e, separators=(",", ":")) for e in events) + "\n")

    def forget_flows(self, index) -> None:
        """These flows ended: their slots will hold other flows."""
        self.alerted_flows.difference_update(np.asarray(index).tolist())

    def write_alerts(
        self,
        alerts,
        rules,
        flows,
        payloads: list[bytes | None] | None = None,
        icmp: list | None = None,
        tunnels: list | None = None,
    ) -> None:
        """``payloads``: per alert, its packet's payload (None where no packet completed the
        match, as for data flushed at the end of a flow); written only with ``log_payload``.
        ``icmp``: per alert, its ICMP packet's (type, code), or None. ``tunnels``: per alert,
        the ``tunnel`` object of a packet that came out of a tunnel (tunnel_objects), or None."""
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
            if icmp is not None and icmp[i] is not None:
                event["icmp_type"], event["icmp_code"] = icmp[i]
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
            alert = event["alert"]
            if rule.target is not None:
                alert.update(_source_and_target(ends[i], rule.target))
            if rule.metadata:
                alert["metadata"] = _metadata(rule.metadata)
            if rule.references:
                alert["references"] = [f"{kind},{ident}" for kind, ident in rule.references]
            if tunnels is not None and tunnels[i] is not None:
                event["tunnel"] = tunnels[i]
            if self.log_payload and payloads is not None and payloads[i] is not None:
                data = payloads[i]
                event["payload"] = base64.b64encode(data).decode("ascii")
                event["payload_printable"] = printable(data)
                event["stream"] = int(alerts.stream[i])
                self.payload_bytes += len(data)
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


def flow_events(flows, index, states, alerted, reasons) -> list[dict]:
    """One EVE ``flow`` event per flow slot in ``index``, with Suricata's fields; source is
    the client. ``states``, ``alerted`` and ``reasons`` (END_* codes) are per entry."""
    from dpi.flow.table import END_EMERGENCY, END_REASON_MASK, END_REASONS, FLOW_STATES

    index = np.asarray(index, dtype=np.int64)
    n = len(index)
    ends = endpoint_fields(flows, index, np.zeros(n, np.uint8))
    cols = {
        name: getattr(flows, name)[index].tolist()
        for name in ("proto", "first_ts", "last_ts", "flow_id", "pkts", "bytes", "tcp_flags")
    }
    events = []
    for k in range(n):
        start, end = cols["first_ts"][k], cols["last_ts"][k]
        pkts, byts = cols["pkts"][k], cols["bytes"][k]
        reason = int(reasons[k])
        event = {
            "timestamp": format_timestamp(end),
            "flow_id": cols["flow_id"][k],
            "event_type": "flow",
            **ends[k],
        }
        flow = {
            "pkts_toserver": pkts[0],
            "pkts_toclient": pkts[1],
            "bytes_toserver": byts[0],
            "bytes_toclient": byts[1],
            "start": format_timestamp(start),
            "end": format_timestamp(end),
            "age": end // 1_000_000_000 - start // 1_000_000_000,
        }
        if reason & END_EMERGENCY:
            flow["emergency"] = True
        flow["state"] = FLOW_STATES[int(states[k])]
        flow["reason"] = END_REASONS[reason & END_REASON_MASK]
        flow["alerted"] = bool(alerted[k])
        event["flow"] = flow
        if cols["proto"][k] == 6:
            ts_flags, tc_flags = cols["tcp_flags"][k]
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
