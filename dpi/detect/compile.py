"""Compile a RuleSet into the arrays the detection kernels read, and the matcher database.

Every content of every rule (positive or negated) becomes a matcher pattern, deduplicated
by (bytes, nocase). The matcher then reports every occurrence in stream coordinates, and a
rule is verified from those occurrences alone: its fast pattern makes it a candidate, and
offset/depth/distance/within are checked on the occurrence positions. Rules without any
content go through the header path, checked on every packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpi.detect.packet_checks import PacketChecks, pack_checks
from dpi.detect.program import PayloadPrograms, compile_programs
from dpi.detect.stateful import FlowState, compile_flow_state, is_ip_only
from dpi.match import compile_patterns

PROTO_ANY_IP = 0
PROTO_ICMP_ANY = 1  # Suricata's "icmp" matches ICMPv4 and ICMPv6
PROTO_CODES = {"ip": PROTO_ANY_IP, "tcp": 6, "udp": 17, "icmp": PROTO_ICMP_ANY}

FLOW_TO_SERVER = 1
FLOW_TO_CLIENT = 2
FLOW_ESTABLISHED = 4
FLOW_NOT_ESTABLISHED = 8

NONE = -(1 << 40)  # "unset" for offset/depth/distance/within

# where a rule may match: the reassembled stream, the packet alone (flow only_stream /
# no_stream; dsize makes a rule packet-only, as in Suricata)
MODE_STREAM = 1
MODE_PACKET = 2

# a datagram's match records are grouped under a key of their own, above every stream slot
DATAGRAM_KEY_BASE = 1 << 62


@dataclass
class CompileReport:
    compiled: int = 0
    header_only: int = 0
    skipped: list[tuple[object, str]] = field(default_factory=list)  # (rule, reason)


@dataclass
class DetectionDatabase:
    rules: list  # compiled Rule objects, index = rule id in the kernels
    matcher: object | None
    n_patterns: int
    # per rule
    r_proto: np.ndarray
    r_bidir: np.ndarray
    r_flow: np.ndarray
    r_fast: np.ndarray  # pattern id of the fast pattern, -1 for header-only rules
    r_src: np.ndarray  # (n, 2) start/end into the address interval arrays
    r_dst: np.ndarray
    r_sport: np.ndarray  # (n, 2) start/end into the port range arrays
    r_dport: np.ndarray
    r_contents: np.ndarray  # (n, 2) start/end into the content arrays
    # address intervals, 128-bit bounds split in (hi, lo)
    a_lo_hi: np.ndarray
    a_lo_lo: np.ndarray
    a_hi_hi: np.ndarray
    a_hi_lo: np.ndarray
    # port ranges
    p_lo: np.ndarray
    p_hi: np.ndarray
    # contents
    c_pattern: np.ndarray
    c_len: np.ndarray
    c_negated: np.ndarray
    c_relative: np.ndarray
    c_offset: np.ndarray
    c_depth: np.ndarray
    c_distance: np.ndarray
    c_within: np.ndarray
    # pattern -> rules whose contents include it (CSR)
    pr_start: np.ndarray
    pr_rule: np.ndarray
    header_rules: np.ndarray  # ids of rules without positive content
    report: CompileReport
    sids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    r_mode: np.ndarray | None = None  # MODE_* bits per rule
    r_bytes: np.ndarray | None = None  # 1: verified by the payload program on the bytes
    r_verify: np.ndarray | None = None  # 1: needs the verify stage (bytes, header checks, dsize)
    programs: PayloadPrograms | None = None
    checks: PacketChecks | None = None
    dsize_checks: PacketChecks | None = None
    flow_state: FlowState | None = None
    r_ip_only: np.ndarray | None = None  # 1: checked on the first packet of each flow direction


def _packet_only(rule) -> bool:
    """Packet keywords (header fields, dsize) tie a rule to one packet and its own payload."""
    return bool(rule.header_checks) or rule.dsize is not None


def _flow_bits(flow) -> int:
    bits = 0
    if flow is None:
        return 0
    if getattr(flow, "to_server", False) or getattr(flow, "from_client", False):
        bits |= FLOW_TO_SERVER
    if getattr(flow, "to_client", False) or getattr(flow, "from_server", False):
        bits |= FLOW_TO_CLIENT
    if getattr(flow, "established", False):
        bits |= FLOW_ESTABLISHED
    if getattr(flow, "not_established", False):
        bits |= FLOW_NOT_ESTABLISHED
    return bits


def compile_rules(rules, engine: str = "numba") -> DetectionDatabase:
    report = CompileReport()
    kept = []
    for rule in rules:
        kept.append(rule)

    pattern_ids: dict[tuple[bytes, bool], int] = {}
    addr: list[tuple[int, int, int, int]] = []
    ports: list[tuple[int, int]] = []
    n = len(kept)
    r_proto = np.zeros(n, np.int64)
    r_bidir = np.zeros(n, np.uint8)
    r_flow = np.zeros(n, np.int64)
    r_fast = np.full(n, -1, np.int64)
    r_src = np.zeros((n, 2), np.int64)
    r_dst = np.zeros((n, 2), np.int64)
    r_sport = np.zeros((n, 2), np.int64)
    r_dport = np.zeros((n, 2), np.int64)
    r_contents = np.zeros((n, 2), np.int64)
    cols: dict[str, list[int]] = {
        k: [] for k in ("pattern", "len", "negated", "relative", "offset", "depth", "distance", "within")
    }
    header_rules = []

    def add_addresses(aset):
        start = len(addr)
        lo_hi, lo_lo, hi_hi, hi_lo = aset.arrays()
        addr.extend(zip(lo_hi.tolist(), lo_lo.tolist(), hi_hi.tolist(), hi_lo.tolist(), strict=True))
        return start, len(addr)

    def add_ports(pset):
        start = len(ports)
        lo, hi = pset.arrays()
        ports.extend(zip(lo.tolist(), hi.tolist(), strict=True))
        return start, len(ports)

    for i, rule in enumerate(kept):
        r_proto[i] = PROTO_CODES[rule.proto]
        r_bidir[i] = 1 if rule.bidirectional else 0
        r_flow[i] = _flow_bits(rule.flow)
        r_src[i] = add_addresses(rule.src)
        r_dst[i] = add_addresses(rule.dst)
        r_sport[i] = add_ports(rule.src_ports)
        r_dport[i] = add_ports(rule.dst_ports)
        start = len(cols["pattern"])
        for c in rule.contents:
            key = (bytes(c.pattern), bool(c.nocase))
            pid = pattern_ids.setdefault(key, len(pattern_ids))
            cols["pattern"].append(pid)
            cols["len"].append(len(c.pattern))
            cols["negated"].append(1 if c.negated else 0)
            cols["relative"].append(1 if c.relative else 0)
            cols["offset"].append(NONE if c.offset is None else int(c.offset))
            cols["depth"].append(NONE if c.depth is None else int(c.depth))
            cols["distance"].append(NONE if c.distance is None else int(c.distance))
            cols["within"].append(NONE if c.within is None else int(c.within))
        r_contents[i] = (start, len(cols["pattern"]))
        if any(not c.negated for c in rule.contents) and not _packet_only(rule):
            fp = rule.fast_pattern_index
            if fp is None:
                fp = next(k for k, c in enumerate(rule.contents) if not c.negated)
            r_fast[i] = cols["pattern"][start + fp]
        else:
            # no positive content (header, negated contents, pcre...), or packet keywords
            # (ttl, flags, dsize...) that Suricata checks on each packet with its own
            # payload: checked on every packet
            header_rules.append(i)
        report.compiled += 1
    report.header_only = len(header_rules)

    n_patterns = len(pattern_ids)
    c_pattern = np.asarray(cols["pattern"], np.int64)
    # pattern -> rules, from the (pattern, rule) pairs of every content
    owner = (
        np.repeat(np.arange(n, dtype=np.int64), r_contents[:, 1] - r_contents[:, 0])
        if n
        else np.zeros(0, np.int64)
    )
    pairs = (
        np.unique(np.stack([c_pattern, owner], axis=1), axis=0)
        if len(c_pattern)
        else np.zeros((0, 2), np.int64)
    )
    pr_start = np.zeros(n_patterns + 1, np.int64)
    if len(pairs):
        np.add.at(pr_start, pairs[:, 0] + 1, 1)
    pr_start = np.cumsum(pr_start)
    pr_rule = pairs[:, 1].copy() if len(pairs) else np.zeros(0, np.int64)

    matcher = None
    if n_patterns:
        pats = [k[0] for k in pattern_ids]
        nocase = [k[1] for k in pattern_ids]
        matcher = compile_patterns(pats, nocase, engine=engine)

    r_mode = np.zeros(n, np.int64)
    for i, rule in enumerate(kept):
        mode = MODE_STREAM | MODE_PACKET
        if rule.flow.only_stream:
            mode = MODE_STREAM
        if rule.flow.no_stream or _packet_only(rule):
            mode = MODE_PACKET
        r_mode[i] = mode
    r_bytes = np.asarray(
        [rule.needs_bytes or rule.fast_pattern is None or _packet_only(rule) for rule in kept], np.uint8
    )
    r_bytes &= np.asarray([bool(rule.payload) for rule in kept], np.uint8)
    r_verify = r_bytes | np.asarray(
        [bool(rule.header_checks) or rule.dsize is not None for rule in kept], np.uint8
    )

    a = np.asarray(addr, dtype=np.uint64).reshape(-1, 4)
    p = np.asarray(ports, dtype=np.int64).reshape(-1, 2)
    return DetectionDatabase(
        rules=kept,
        matcher=matcher,
        n_patterns=n_patterns,
        r_proto=r_proto,
        r_bidir=r_bidir,
        r_flow=r_flow,
        r_fast=r_fast,
        r_src=r_src,
        r_dst=r_dst,
        r_sport=r_sport,
        r_dport=r_dport,
        r_contents=r_contents,
        a_lo_hi=a[:, 0].copy(),
        a_lo_lo=a[:, 1].copy(),
        a_hi_hi=a[:, 2].copy(),
        a_hi_lo=a[:, 3].copy(),
        p_lo=p[:, 0].copy(),
        p_hi=p[:, 1].copy(),
        c_pattern=c_pattern,
        c_len=np.asarray(cols["len"], np.int64),
        c_negated=np.asarray(cols["negated"], np.uint8),
        c_relative=np.asarray(cols["relative"], np.uint8),
        c_offset=np.asarray(cols["offset"], np.int64),
        c_depth=np.asarray(cols["depth"], np.int64),
        c_distance=np.asarray(cols["distance"], np.int64),
        c_within=np.asarray(cols["within"], np.int64),
        pr_start=pr_start,
        pr_rule=pr_rule,
        header_rules=np.asarray(header_rules, np.int64),
        report=report,
        sids=np.asarray([r.sid for r in kept], np.int64),
        r_mode=r_mode,
        r_bytes=r_bytes,
        r_verify=r_verify,
        programs=compile_programs([r if b else _no_bytes for r, b in zip(kept, r_bytes, strict=True)]),
        checks=pack_checks([r.header_checks for r in kept]),
        dsize_checks=pack_checks([[r.dsize] if r.dsize is not None else [] for r in kept]),
        flow_state=compile_flow_state(kept),
        r_ip_only=np.asarray([is_ip_only(r) for r in kept], np.uint8),
    )


class _NoBytes:
    """Stands in for a rule the payload program does not serve (matcher-verified)."""

    needs_bytes = False
    payload = ()
    sid = 0


_no_bytes = _NoBytes()
