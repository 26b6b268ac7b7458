"""Which rules a generated capture should fire, decided from the messages the generator wrote, not
from its packets: the generator's ground truth for every flow, planted or not (an "HTTP GET
request" rule rightly fires on every background GET).

This is a reference, kept apart from the detection engine on purpose: plain Python over whole
buffers, exhaustive backtracking over content placements, no prefilter, no chunking. The
multi-pattern matcher only proposes where a rule's fast pattern occurs; every verdict is this
module's. A rule fires on a flow when its header and flow options accept a direction and its
contents match one of the buffers a Suricata-like engine inspects there: the direction's whole
stream (TCP), each message, or each segment or datagram. Rules with conditions this module does
not evaluate (pcre, byte_*, isdataat, dsize, header keywords, flowbits, thresholds, pass) are
"undecided" on a flow where everything it can check matches; scoring leaves those pairs out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from numba import njit

from dpi.gen.session import TO_SERVER, FlowSpec, Messages, _sum_before
from dpi.rules.addresses import split_addresses
from dpi.rules.model import Content, Rule

FIRES, UNDECIDED = "fires", "undecided"
_MAX_TRIES = 4096  # placements tried per content level: bounds the backtracking


def _find_all(buf: bytes, folded: bytes, pattern: bytes, nocase: bool, lo: int, hi: int):
    """Start offsets of ``pattern`` wholly inside buf[lo:hi]."""
    hay, needle = (folded, pattern.lower()) if nocase else (buf, pattern)
    at = hay.find(needle, lo, hi)
    tries = 0
    while at >= 0 and tries < _MAX_TRIES:
        yield at
        tries += 1
        at = hay.find(needle, at + 1, hi)


def contents_match(contents: list[Content], buf: bytes) -> bool:
    """Do the contents match ``buf`` under the rule language (offset and depth from the start of the
    buffer; distance from the end of the previous match, within from there plus the distance, as
    Suricata's content inspection counts it; negated contents absent from their window), trying
    every placement of each content?"""
    folded = buf.lower()
    n_buf = len(buf)

    def window(c: Content, prev_end: int) -> tuple[int, int]:
        if c.startswith:
            return 0, min(len(c.pattern), n_buf)
        if c.relative:
            lo = prev_end + (c.distance or 0)
            # Suricata's window: within counts from where distance puts the start
            hi = lo + c.within if c.within is not None else n_buf
        else:
            lo = c.offset or 0
            hi = lo + c.depth if c.depth is not None else n_buf
        return max(lo, 0), min(hi, n_buf)

    def search(i: int, prev_end: int) -> bool:
        if i == len(contents):
            return True
        c = contents[i]
        lo, hi = window(c, prev_end)
        if c.negated:
            if lo < hi and next(_find_all(buf, folded, c.pattern, c.nocase, lo, hi), None) is not None:
                return False
            return search(i + 1, prev_end)
        if hi - lo < len(c.pattern):
            return False
        for start in _find_all(buf, folded, c.pattern, c.nocase, lo, hi):
            if c.endswith and start + len(c.pattern) != n_buf:
                continue
            if search(i + 1, start + len(c.pattern)):
                return True
        return False

    return search(0, 0)


def decidable(rule: Rule) -> bool:
    """Can this module say for sure whether the rule fires (given its header and contents match)?"""
    return (
        rule.action in ("alert", "drop", "reject")
        and not rule.noalert
        and all(isinstance(item, Content) and not item.uses_variables for item in rule.payload)
        and rule.dsize is None
        and not rule.header_checks
        and not rule.flowbits
        and rule.threshold is None
    )


def _fast_content(rule: Rule) -> Content | None:
    positive = [c for c in rule.contents if not c.negated]
    if not positive:
        return None
    fp = rule.fast_pattern
    return fp if fp is not None and not fp.negated else max(positive, key=lambda c: len(c.pattern))


@dataclass
class FlowView:
    """What the header part of a rule needs to know about one flow."""

    tcp: bool
    client: int
    server: int
    client_port: int
    server_port: int


def header_accepts(rule: Rule, flow: FlowView, to_server: bool) -> bool:
    """Do the rule's protocol, addresses, ports and direction options accept packets of this flow
    sent in this direction?"""
    if rule.proto not in ("ip", "tcp" if flow.tcp else "udp"):
        return False
    if (rule.flow.to_server and not to_server) or (rule.flow.to_client and to_server):
        return False
    sender, receiver = (flow.client, flow.server) if to_server else (flow.server, flow.client)
    sport, dport = (flow.client_port, flow.server_port) if to_server else (flow.server_port, flow.client_port)
    forward = (
        rule.src.contains(sender)
        and rule.dst.contains(receiver)
        and sport in rule.src_ports
        and (dport in rule.dst_ports)
    )
    if forward:
        return True
    return rule.bidirectional and (
        rule.src.contains(receiver)
        and rule.dst.contains(sender)
        and dport in rule.src_ports
        and sport in rule.dst_ports
    )


class RuleOracle:
    """The reference verdicts of a rule set over a generator's flows and messages."""

    def __init__(self, rules: list[Rule]):
        from dpi.match import compile_patterns

        self.rules = [r for r in rules if r.proto in ("ip", "tcp", "udp")]
        self.headers_only = [r for r in self.rules if _fast_content(r) is None]
        keys: dict[tuple[bytes, bool], int] = {}
        self.rules_of: list[list[Rule]] = []
        for rule in self.rules:
            c = _fast_content(rule)
            if c is None:
                continue
            key = (c.pattern.lower() if c.nocase else c.pattern, c.nocase)
            if key not in keys:
                keys[key] = len(keys)
                self.rules_of.append([])
            self.rules_of[keys[key]].append(rule)
        self.db = compile_patterns([k[0] for k in keys], [k[1] for k in keys]) if keys else None

    def verdicts(self, flows: FlowSpec, proto_tcp: np.ndarray, messages: Messages, client, server) -> dict:
        """{flow: {rule: FIRES or UNDECIDED}} for every flow on which some rule fires or may fire.
        ``client``/``server``: per flow, the 128-bit addresses (IPv4 mapped)."""
        n = len(flows.start_ns)
        mss = np.broadcast_to(np.asarray(flows.mss, dtype=np.int64), (n,))
        # each (flow, direction) stream: its messages' bytes end to end, in conversation order
        key = messages.flow * 2 + (messages.direction != TO_SERVER)
        order = np.argsort(key, kind="stable")
        lengths = messages.length[order]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        stream = np.empty(int(lengths.sum()), np.uint8)
        _gather(messages.data, messages.offset[order], lengths, starts, stream)
        keys_sorted = key[order]
        stream_keys, first = np.unique(keys_sorted, return_index=True)
        stream_start = starts[first]
        stream_end = np.r_[stream_start[1:], len(stream)]

        views: dict[int, FlowView] = {}

        def view(f: int) -> FlowView:
            if f not in views:
                views[f] = FlowView(
                    bool(proto_tcp[f]),
                    client[f],
                    server[f],
                    int(flows.client_port[f]),
                    int(flows.server_port[f]),
                )
            return views[f]

        # per message: has the other side spoken before it (UDP's "established")
        to_server_msg = (messages.direction == TO_SERVER).astype(np.int64)
        other_before = np.where(
            to_server_msg == 1,
            _sum_before(1 - to_server_msg, messages.flow),
            _sum_before(to_server_msg, messages.flow),
        )[order]
        # the messages of a stream, as (start, end, established) inside it
        msg_bounds: dict[int, list[tuple[int, int, bool]]] = defaultdict(list)
        msg_start = starts - stream_start[np.searchsorted(stream_keys, keys_sorted)]
        for k, s, ln, est in zip(
            keys_sorted.tolist(),
            msg_start.tolist(),
            lengths.tolist(),
            (other_before > 0).tolist(),
            strict=True,
        ):
            msg_bounds[k].append((s, s + ln, est))

        out: dict[int, dict] = defaultdict(dict)

        def judge(rule: Rule, k: int, stream_real: bool = True, mask_from: int | None = None) -> str | None:
            """The verdict of the rule on stream k as an engine sees it: with the stream it reassembles
            (``stream_real``: the real bytes; otherwise only packets carry them) and, where fragments
            were overlapped with decoys it kept, each packet's bytes from ``mask_from`` on not real."""
            f, to_server = k // 2, k % 2 == 0
            fv = view(f)
            if not header_accepts(rule, fv, to_server):
                return None
            i = int(np.searchsorted(stream_keys, k))
            data = stream[stream_start[i] : stream_end[i]].tobytes()
            bounds = msg_bounds[k]
            if not fv.tcp and rule.flow.established:
                bounds = [
                    b for b in bounds if b[2]
                ]  # a UDP flow is established once the other side has spoken
            if not fv.tcp and rule.flow.not_established:
                bounds = [b for b in bounds if not b[2]]
            if rule.flow.not_established and fv.tcp:
                return None  # every TCP payload here travels on an established connection
            if not bounds:
                return None
            step = int(mss[f])
            if mask_from is not None:
                masked = bytearray(data)
                fill = bytes([filler_byte(rule)])
                for s, e, _ in bounds:
                    for p in range(s, e, step if fv.tcp else max(1, e - s)):
                        end = min(p + step, e) if fv.tcp else e
                        if p + mask_from < end:
                            masked[p + mask_from : end] = fill * (end - p - mask_from)
                data = bytes(masked)

            def buffers():
                """Lazily, so the first buffer that matches ends the search."""
                if not (fv.tcp and rule.flow.only_stream):
                    for s, e, _ in bounds:
                        if stream_real or not fv.tcp or e - s <= step:
                            yield data[s:e]  # a datagram, or a message (its first packet's start)
                if fv.tcp and stream_real and not rule.flow.no_stream:
                    yield data
                if fv.tcp and not rule.flow.only_stream:
                    for s, e, _ in bounds:
                        if e - s > step:
                            yield from (data[p : min(p + step, e)] for p in range(s, e, step))

            if not any(contents_match(rule.contents, b) for b in buffers()):
                return None
            return FIRES if decidable(rule) else UNDECIDED

        self._judge = judge
        self._has_stream = lambda k: bool(np.any(stream_keys == k))

        if self.db is not None and len(stream):
            ids, ends = self.db.scan(stream)
            s_of = np.searchsorted(stream_end, ends - 1, side="right")  # the stream each match ends in
            n_patterns = len(self.rules_of)
            pairs = np.unique(s_of * n_patterns + ids)
            for s, pid in zip((pairs // n_patterns).tolist(), (pairs % n_patterns).tolist(), strict=True):
                k = int(stream_keys[s])
                for rule in self.rules_of[pid]:
                    verdict = judge(rule, k)
                    if verdict is not None and out[k // 2].get(rule.sid) != FIRES:
                        out[k // 2][rule.sid] = verdict
        if self.headers_only and len(stream_keys):
            f_of, to_server_of = stream_keys // 2, stream_keys % 2 == 0
            tcp = np.asarray(proto_tcp, np.bool_)[f_of]
            c_int = np.array([client[f] for f in f_of.tolist()], dtype=object)
            s_int = np.array([server[f] for f in f_of.tolist()], dtype=object)
            sender = split_addresses(np.where(to_server_of, c_int, s_int))
            receiver = split_addresses(np.where(to_server_of, s_int, c_int))
            cp, sp = np.asarray(flows.client_port)[f_of], np.asarray(flows.server_port)[f_of]
            sport, dport = np.where(to_server_of, cp, sp), np.where(to_server_of, sp, cp)
            for rule in self.headers_only:
                ok = _accepts_many(rule, tcp, to_server_of, sender, receiver, sport, dport)
                for k in stream_keys[ok].tolist():
                    if out[k // 2].get(rule.sid) != FIRES:
                        out[k // 2][rule.sid] = FIRES if decidable(rule) and not rule.payload else UNDECIDED
        # a pass rule that may act on a flow makes every other verdict there uncertain
        passing = {r.sid for r in self.rules if r.action == "pass"}
        for sids in out.values():
            if passing & set(sids):
                for sid in sids:
                    sids[sid] = UNDECIDED
        return {f: v for f, v in out.items() if v}

    def fires_in_view(self, rule: Rule, flow: int, stream_real: bool, mask_from: int | None) -> bool:
        """After ``verdicts``: does the rule fire on the flow as an engine with that view sees it?"""
        return any(
            self._judge(rule, 2 * flow + d, stream_real, mask_from) is not None
            for d in (0, 1)
            if self._has_stream(2 * flow + d)
        )


def filler_byte(rule: Rule) -> int:
    from dpi.gen.plant import filler_byte as plant_filler

    return plant_filler(rule)


def _in_addresses(addresses, values: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    v_hi, v_lo = values
    if addresses.is_any:
        return np.ones(len(v_hi), np.bool_)
    out = np.zeros(len(v_hi), np.bool_)
    for lo_hi, lo_lo, hi_hi, hi_lo in zip(*addresses.arrays(), strict=True):
        above = (v_hi > lo_hi) | ((v_hi == lo_hi) & (v_lo >= lo_lo))
        below = (v_hi < hi_hi) | ((v_hi == hi_hi) & (v_lo <= hi_lo))
        out |= above & below
    return out


@njit(cache=True)
def _gather(data, offset, length, at, out):
    """Copy each message's bytes to its place in the stream buffer."""
    for i in range(offset.shape[0]):
        out[at[i] : at[i] + length[i]] = data[offset[i] : offset[i] + length[i]]


def _in_ports(ports, values: np.ndarray) -> np.ndarray:
    out = np.zeros(len(values), np.bool_)
    for lo, hi in ports.intervals:
        out |= (values >= lo) & (values <= hi)
    return out


def _accepts_many(rule: Rule, tcp, to_server, sender, receiver, sport, dport) -> np.ndarray:
    """header_accepts over many streams at once (addresses as (high, low) uint64 columns)."""
    ok = np.ones(len(tcp), np.bool_) if rule.proto == "ip" else (tcp if rule.proto == "tcp" else ~tcp)
    if rule.flow.to_server:
        ok = ok & to_server
    if rule.flow.to_client:
        ok = ok & ~to_server
    if rule.flow.not_established:
        ok = ok & ~tcp
    forward = (
        _in_addresses(rule.src, sender)
        & _in_addresses(rule.dst, receiver)
        & _in_ports(rule.src_ports, sport)
        & _in_ports(rule.dst_ports, dport)
    )
    if rule.bidirectional:
        forward |= (
            _in_addresses(rule.src, receiver)
            & _in_addresses(rule.dst, sender)
            & _in_ports(rule.src_ports, dport)
            & _in_ports(rule.dst_ports, sport)
        )
    return ok & forward


__all__ = ["FIRES", "UNDECIDED", "RuleOracle", "contents_match", "decidable", "header_accepts"]
