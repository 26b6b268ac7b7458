"""Planting a rule's content: which rules can be planted, the payload that satisfies one, and
endpoints its header accepts.

A rule is plantable when its payload is contents alone (no pcre, byte_* or isdataat, whose
satisfying bytes would need a solver), it alerts, and nothing outside the payload decides it:
no flowbits, thresholds, dsize or header keywords, no ``no_stream`` (an evasion that cuts the
payload would then hide it for a reason that is not the evasion's). The payload places each
content where its offset, depth, distance and within allow, in rule order, on filler bytes that no
content of the rule uses; a negated content must then be absent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dpi.rules.addresses import IPV4_BASE, AddressSet, ip_to_int
from dpi.rules.model import Content, Rule
from dpi.rules.ports import PortSet

FILLERS = b"xqzjkvwy._-~"
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Endpoints:
    ip_version: int
    client: int  # 128-bit, IPv4 mapped (as AddressSet)
    server: int
    client_port: int
    server_port: int

    def halves(self) -> tuple[int, int, int, int]:
        return self.client >> 64, self.client & _MASK64, self.server >> 64, self.server & _MASK64


def unplantable_reason(rule: Rule) -> str | None:
    """Why the rule cannot be planted, or None."""
    if rule.action != "alert" or rule.noalert:
        return "not an alerting rule"
    if rule.proto not in ("tcp", "udp"):
        return f"protocol {rule.proto}"
    if not rule.contents or any(not isinstance(item, Content) for item in rule.payload):
        return "payload keywords other than content"
    if rule.flowbits or rule.threshold is not None or rule.dsize is not None or rule.header_checks:
        return "conditions outside the payload"
    if rule.flow.no_stream or rule.flow.not_established:
        return "packet-only or not-established rule"
    for c in rule.contents:
        if c.uses_variables or c.endswith:
            return "content bound to a variable or to the buffer's end"
        if c.distance is not None and c.distance < 0:
            return "negative distance"
    if all(c.negated for c in rule.contents):
        return "negated contents only"
    return None


def filler_byte(rule: Rule) -> int:
    """A byte no content of the rule uses, in either case."""
    used = set()
    for c in rule.contents:
        for b in c.pattern:
            used.update((b, ord(chr(b).lower()) if b < 128 else b, ord(chr(b).upper()) if b < 128 else b))
    for b in FILLERS:
        if b not in used:
            return b
    for b in range(0x80, 0x100):
        if b not in used:
            return b
    raise ValueError("no filler byte")  # a rule using all 256 bytes cannot be planted


def _contains(haystack: bytes, needle: bytes, nocase: bool) -> bool:
    return needle.lower() in haystack.lower() if nocase else needle in haystack


def construct_payload(rule: Rule, r: random.Random, trailer: int = 48) -> bytes | None:
    """Bytes on which the rule's contents match, or None when this simple placement cannot
    satisfy them. Relative contents follow the previous one by their distance (plus a little
    slack where within allows); absolute ones start at their offset or after what is placed."""
    fill = filler_byte(rule)
    buf = bytearray()
    prev_end = 0
    for c in rule.contents:
        if c.negated:
            continue
        n = len(c.pattern)
        if c.relative:
            start = prev_end + (c.distance or 0)
            if c.within is not None:
                slack = c.within - n  # within counts from prev_end + distance (Suricata)
                if slack < 0:
                    return None
                start += r.randint(0, min(slack, 3))
            elif c.distance is not None:
                start += r.randint(0, 3)
        else:
            offset = 0 if c.startswith else (c.offset or 0)
            start = max(offset, len(buf))
            depth = n if c.startswith else c.depth
            if depth is not None and start + n > offset + depth:
                return None
        if start < len(buf):
            return None  # would overwrite placed bytes
        buf.extend(bytes([fill]) * (start - len(buf)))
        buf.extend(c.pattern)
        prev_end = start + n
    buf.extend(bytes([fill]) * trailer)
    payload = bytes(buf)
    for c in rule.contents:
        if c.negated and _contains(payload, c.pattern, c.nocase):
            return None
    return payload


def _pick_address(allowed: AddressSet, candidates: list[int], ip_version: int) -> int | None:
    for a in candidates:
        if allowed.contains(a):
            return a
    # a concrete address of the set, in the wanted family
    v4 = (IPV4_BASE, IPV4_BASE | 0xFFFF_FFFF)
    for lo, hi in allowed.intervals:
        if ip_version == 4:
            lo, hi = max(lo, v4[0]), min(hi, v4[1])
        elif lo <= v4[1] and hi >= v4[0]:  # skip the IPv4-mapped block for IPv6
            lo = v4[1] + 1 if lo >= v4[0] else lo
            hi = v4[0] - 1 if hi <= v4[1] else hi
        if lo <= hi and not (ip_version == 4 and lo > v4[1]):
            return lo + 1 if hi - lo >= 2 else lo
    return None


def _pick_port(allowed: PortSet, preferred: int, r: random.Random, ephemeral: bool) -> int | None:
    if allowed.contains(preferred):
        return preferred
    if allowed.is_any:
        return r.randint(1024, 65535) if ephemeral else preferred
    choices = [lo if lo > 0 else 1 for lo, hi in allowed.intervals if hi >= 1]
    return r.choice(choices) if choices else None


def endpoints_for(
    rule: Rule, direction_to_server: bool, ip_version: int, index: int, r: random.Random
) -> Endpoints | None:
    """Client and server addresses and ports that put a packet of the planted direction inside
    the rule's header (for a bidirectional rule, either way round)."""
    home = [
        IPV4_BASE | ((10 << 24 | 100 << 16) + 1 + index % 6_000_000),
        IPV4_BASE | ((192 << 24 | 168 << 16) + 1 + index % 65534),
    ]
    external = [
        IPV4_BASE | ((198 << 24 | 51 << 16 | 100 << 8) + 1 + index % 254),
        IPV4_BASE | ((203 << 24 | 113 << 8) + 1 + index % 254),
    ]
    if ip_version == 6:
        home = [ip_to_int(f"2001:db8:c:{index // 65536:x}::{index % 65536:x}")]
        external = [ip_to_int(f"2001:db8:5::{1 + index % 65535:x}")]
    client_pref = r.randint(1024, 65535)
    # a service port where the rule names none: HTTP's for TCP; for UDP a port no dissector claims
    server_pref = 80 if rule.proto == "tcp" else 40000 + index % 20000
    for src, sports, dst, dports in ((rule.src, rule.src_ports, rule.dst, rule.dst_ports),) + (
        ((rule.dst, rule.dst_ports, rule.src, rule.src_ports),) if rule.bidirectional else ()
    ):
        # the planted packet goes src -> dst: the client is src when it is sent to the server
        client_set, server_set = (src, dst) if direction_to_server else (dst, src)
        client_ports, server_ports = (sports, dports) if direction_to_server else (dports, sports)
        client = _pick_address(client_set, home + external, ip_version)
        server = _pick_address(server_set, external + home, ip_version)
        if client is None or server is None or client == server:
            continue
        server_port = _pick_port(server_ports, server_pref, r, ephemeral=False)
        client_port = _pick_port(client_ports, client_pref, r, ephemeral=True)
        if server_port is None or client_port is None or (server_port == client_port and client == server):
            continue
        return Endpoints(ip_version, client, server, client_port, server_port)
    return None


def planted_direction(rule: Rule) -> bool:
    """True: the content goes client to server (flow:to_client is the only way round it does not)."""
    return not rule.flow.to_client


__all__ = ["Endpoints", "construct_payload", "endpoints_for", "planted_direction", "unplantable_reason"]
