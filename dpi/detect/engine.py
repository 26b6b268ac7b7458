"""The detection stage: chunks -> matcher -> candidate rules -> verified alerts.

Python runs once per batch here; the per-chunk and per-match work is in the matcher's
and :mod:`dpi.detect.kernels`' Numba loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpi.decode.columns import DecodedBatch
from dpi.detect.compile import DATAGRAM_KEY_BASE, PROTO_ANY_IP, PROTO_ICMP_ANY, DetectionDatabase
from dpi.detect.ip_only import build_address_index
from dpi.detect.kernels import (
    counting_order,
    detect_headers,
    detect_streams,
    join_records,
    last_per_group,
    stream_records,
)
from dpi.detect.stateful import apply_flow_state, forget_flow_state, new_bit_table
from dpi.detect.verify import verify_candidates
from dpi.flow.table import FlowTable, endpoints, established
from dpi.stream.chunks import ChunkTable

HISTORY_PER_STREAM = 512  # match records a stream keeps across batches (for distance/within)
HISTORY_MAX_RECORDS = 1 << 21  # and all streams together (about 48 MiB)
MAX_ALERTS_PER_PACKET = 15  # Suricata's default packet_alert_max


_ALERT_COLUMNS = ("rule", "ts_ns", "number", "flow", "direction", "stream")


@dataclass
class AlertBatch:
    rule: np.ndarray  # int64 index into DetectionDatabase.rules
    ts_ns: np.ndarray
    number: np.ndarray
    flow: np.ndarray
    direction: np.ndarray
    # 1: matched on reassembled TCP stream data (a pass then passes the whole flow)
    stream: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.stream is None:
            self.stream = np.zeros(len(self.rule), np.uint8)

    def __len__(self) -> int:
        return int(self.rule.shape[0])

    def take(self, index: np.ndarray) -> AlertBatch:
        """The alerts selected by a mask or an index array, in that order."""
        return AlertBatch(*(getattr(self, name)[index] for name in _ALERT_COLUMNS))

    @staticmethod
    def empty() -> AlertBatch:
        z = np.zeros(0, np.int64)
        return AlertBatch(z, z.copy(), z.copy(), z.copy(), np.zeros(0, np.uint8), np.zeros(0, np.uint8))

    @staticmethod
    def concat(parts: list[AlertBatch]) -> AlertBatch:
        return AlertBatch(*(np.concatenate([getattr(p, name) for p in parts]) for name in _ALERT_COLUMNS))


def pass_bounds(lengths: np.ndarray, budget: int) -> np.ndarray:
    """Chunk indexes [0, ..., n] cutting the chunks into runs of at most ``budget`` bytes each (a
    chunk longer than the budget is a run of its own)."""
    n = lengths.shape[0]
    if n == 0 or int(lengths.sum()) <= budget:
        return np.array([0, n], dtype=np.int64)
    cuts = [0]
    ends = np.cumsum(lengths)
    while cuts[-1] < n:
        start_bytes = ends[cuts[-1] - 1] if cuts[-1] else 0
        nxt = int(np.searchsorted(ends, start_bytes + budget, side="right"))
        cuts.append(max(nxt, cuts[-1] + 1))
    return np.array(cuts, dtype=np.int64)


class Detector:
    #: chunk bytes matched and verified in one pass (bounds the match records held at once)
    chunk_bytes_per_pass = 8 << 20

    def __init__(self, db: DetectionDatabase):
        self.db = db
        self.states = db.matcher.new_states(1024) if db.matcher is not None else None
        self.h_key = np.zeros(0, np.int64)
        self.h_pattern = np.zeros(0, np.int64)
        self.h_pos = np.zeros(0, np.int64)
        self.chunk_base = 0
        self.counters = np.zeros(3, np.int64)  # candidate checks, verify steps, verify limit hits
        self.payload_counters = np.zeros(3, np.int64)  # programs run, their steps, aborted
        self.state_counters = np.zeros(4, np.int64)  # see dpi.detect.stateful.apply_flow_state
        self.flowbits = new_bit_table()
        self.flowbits_per_flow = new_bit_table()
        self.passed_flows = new_bit_table()
        self.ip_only_done = np.zeros(0, np.uint8)  # per flow direction: IP-only rules checked
        self.alerts_capped = 0
        self.history_dropped = 0  # records lost to HISTORY_MAX_RECORDS
        # rules by fast pattern (CSR), for candidate selection
        has_fast = db.r_fast >= 0
        rules = np.nonzero(has_fast)[0]
        fast = db.r_fast[rules]
        order = np.argsort(fast, kind="stable")
        self.fast_rule = rules[order].astype(np.int64)
        counts = (
            np.bincount(fast, minlength=db.n_patterns) if len(fast) else np.zeros(db.n_patterns, np.int64)
        )
        self.fast_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # IP-only rules keyed by an address set are looked up, not tried one by one
        ip_only = [r for r in db.header_rules.tolist() if db.r_ip_only[r]]
        self.ip_only_index, linear_ip_only = build_address_index(db, ip_only)
        self.header_group_start, self.header_group_rules, self.header_port_start, self.header_port_rules = (
            _header_groups(db, set(linear_ip_only))
        )

    def _grow_states(self, n_slots: int) -> None:
        if self.states is None or n_slots <= self.states.shape[0]:
            return
        grown = self.db.matcher.new_states(max(n_slots, 2 * self.states.shape[0]))
        grown[: self.states.shape[0]] = self.states
        self.states = grown

    def scan(self, buf: np.ndarray, chunks: ChunkTable, n_slots: int):
        """Run the matcher over the chunks; returns (chunk, pattern, end within the chunk) of
        every occurrence, in chunk order."""
        if self.db.matcher is None or len(chunks) == 0:
            z = np.zeros(0, np.int64)
            return z, z.copy(), z.copy()
        self._grow_states(n_slots)
        m_pat, m_chunk, m_end = self.db.matcher.scan_chunks(
            buf, chunks.side, chunks.src, chunks.offset, chunks.length, chunks.stream, self.states
        )
        return m_chunk, m_pat.astype(np.int64, copy=False), m_end

    def detect_chunks(
        self, buf, chunks: ChunkTable, n_slots: int, flows: FlowTable, established_at, decoded=None
    ):
        """Alerts from the content rules for this batch's chunks (``decoded``: the batch's
        packet columns, for the verify stage; None for data flushed at the end of flows).

        The chunks go through in passes of at most ``chunk_bytes_per_pass`` bytes (a chunk is
        never split): match records cost tens of bytes each, and text dense in short patterns
        gives more than one a byte, so a whole batch at once could need gigabytes. Streams
        carry their matcher state and match history from pass to pass as from batch to batch."""
        bounds = pass_bounds(chunks.length, self.chunk_bytes_per_pass)
        if len(bounds) <= 2:
            return self._detect_pass(buf, chunks, n_slots, flows, established_at, decoded)
        parts = [
            self._detect_pass(buf, chunks.rows(a, b), n_slots, flows, established_at, decoded)
            for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
        ]
        return AlertBatch.concat(parts)

    def _detect_pass(self, buf, chunks: ChunkTable, n_slots: int, flows: FlowTable, established_at, decoded):
        db = self.db
        m_chunk, m_pattern, m_end = self.scan(buf, chunks, n_slots)
        n_ch = len(chunks)
        chunk_ids = np.arange(n_ch, dtype=np.int64)
        ch_key = np.where(chunks.stream >= 0, chunks.stream, DATAGRAM_KEY_BASE + self.chunk_base + chunk_ids)
        self.chunk_base += n_ch
        # Records are grouped by stream key, with dense group numbers in key order. The
        # matcher reports in chunk order and a stream's chunks come in stream order, so a
        # stable counting sort by group yields (key, pos) order without a comparison sort.
        group_keys = np.unique(np.concatenate([ch_key, self.h_key]))
        n_groups = len(group_keys)
        ch_group = np.searchsorted(group_keys, ch_key)
        # the carried history first, then this pass's matches (stream position of each end)
        group, pattern, pos = join_records(
            np.searchsorted(group_keys, self.h_key), self.h_pattern, self.h_pos,
            m_chunk, m_pattern, m_end, ch_group, chunks.stream_pos,
        )  # fmt: skip
        self._keep_history(group_keys, group, pattern, pos, n_groups, ch_key)
        # only streams where some rule's fast pattern occurs can alert, and there only through
        # the contents of those rules: the other records go before sorting
        r_key, r_pattern, r_pos, o_key, o_pattern, o_pos = stream_records(
            group, n_groups, group_keys, pattern, db.n_patterns, pos,
            self.fast_start, self.fast_rule, db.r_contents, db.c_pattern,
        )  # fmt: skip
        if len(r_key) == 0 or n_ch == 0:
            return AlertBatch.empty()
        corder = np.argsort(ch_key, kind="stable")
        s_hi, s_lo, sp, d_hi, d_lo, dp = endpoints(flows, chunks.flow, chunks.direction)
        proto = flows.proto[np.maximum(chunks.flow, 0)].astype(np.int64)
        # a chunk released at the end of the capture has no packet: use the flow's final state
        est = established(flows, chunks.flow)
        if len(established_at):
            pkt = chunks.packet
            est = np.where(pkt >= 0, established_at[np.clip(pkt, 0, len(established_at) - 1)], est)
        est = est.astype(np.uint8)
        cap = max(1024, 4 * n_ch)
        while True:
            out_rule = np.empty(cap, np.int64)
            out_chunk = np.empty(cap, np.int64)
            n = detect_streams(
                r_key,
                r_pattern,
                r_pos,
                o_key,
                o_pattern,
                o_pos,
                ch_key[corder],
                chunks.stream_pos[corder],
                (chunks.stream_pos + chunks.length)[corder],
                corder,
                proto[corder],
                s_hi[corder],
                s_lo[corder],
                sp[corder],
                d_hi[corder],
                d_lo[corder],
                dp[corder],
                chunks.direction[corder],
                est[corder],
                chunks.packet_base[corder],
                db.r_proto,
                db.r_bidir,
                db.r_flow,
                db.r_fast,
                db.r_src,
                db.r_dst,
                db.r_sport,
                db.r_dport,
                db.r_contents,
                db.a_lo_hi,
                db.a_lo_lo,
                db.a_hi_hi,
                db.a_hi_lo,
                db.p_lo,
                db.p_hi,
                db.c_pattern,
                db.c_len,
                db.c_negated,
                db.c_relative,
                db.c_offset,
                db.c_depth,
                db.c_distance,
                db.c_within,
                db.pr_start,
                db.pr_rule,
                db.r_mode,
                db.r_bytes,
                self.fast_start,
                self.fast_rule,
                out_rule,
                out_chunk,
                self.counters,
            )
            if n <= cap:
                break
            cap = n
        rule, chunk = out_rule[:n], out_chunk[:n]
        from_stream = (chunks.stream[chunk] >= 0).astype(np.uint8)
        if db.r_verify[rule].any():
            # a datagram's chunk is its packet: it has no stream bytes of its own
            src = np.where(from_stream == 1, chunks.src[chunk].astype(np.int64), -1)
            # A stream chunk's delivering packet is the one whose ACK released it, often in
            # the other direction: its columns are not the data's. Where the chunk is one
            # packet's whole payload (packet_base >= 0) its bytes are that packet's, and
            # serve the packet mode too. A datagram's chunk is its own packet.
            own = chunks.packet_base[chunk] >= 0
            keep = self.verify(
                rule,
                np.where(from_stream == 0, chunks.packet[chunk], -1),
                src,
                chunks.offset[chunk],
                chunks.length[chunk],
                buf,
                chunks.side,
                decoded,
                own.astype(np.uint8),
            )
            rule, chunk, from_stream = rule[keep], chunk[keep], from_stream[keep]
        return AlertBatch(
            rule,
            chunks.ts_ns[chunk],
            chunks.number[chunk],
            chunks.flow[chunk],
            chunks.direction[chunk],
            from_stream,
        )

    def verify(self, rule, packet, stream_src, stream_off, stream_len, buf, side, decoded, own=None):
        """Mask of the candidates that pass the verify stage (or that do not need it).
        ``own``: the stream bytes are one packet's whole payload (they serve the packet
        mode as well)."""
        db = self.db
        keep = np.ones(len(rule), np.bool_)
        sel = np.nonzero(db.r_verify[rule])[0]
        if len(sel) == 0:
            return keep
        if decoded is None:  # end-of-flow flush: no packets, only stream bytes
            decoded = _NO_PACKETS
            packet = np.full(len(rule), -1, np.int64)
        ok = np.zeros(len(sel), np.bool_)
        pr, ck, dz = db.programs, db.checks, db.dsize_checks
        d = decoded
        verify_candidates(
            rule[sel], packet[sel], stream_src[sel], stream_off[sel], stream_len[sel],
            np.zeros(len(sel), np.uint8) if own is None else own[sel],
            buf if len(buf) else _ONE_BYTE, side if len(side) else _ONE_BYTE,
            d.ip_version, d.l3_offset, d.l4_offset, d.proto, d.src_hi, d.src_lo, d.dst_hi, d.dst_lo,
            d.tcp_seq, d.tcp_ack, d.tcp_flags, d.icmp_type, d.icmp_code, d.ttl, d.frag_offset,
            d.frag_more, d.frag_id, d.is_fragment, d.payload_offset, d.payload_len,
            db.r_mode, db.r_bytes,
            ck.start, ck.kind, ck.op, ck.a, ck.b, ck.mask,
            dz.start, dz.kind, dz.op, dz.a, dz.b, dz.mask,
            pr.r_prog, pr.kind, pr.flags, pr.param, pr.var, pr.patterns, pr.regexes.arrays,
            ok, self.payload_counters,
        )  # fmt: skip
        keep[sel] = ok
        return keep

    def forget_streams(self, slots: np.ndarray) -> None:
        """These stream slots ended (their last chunks inspected): reset their matcher
        states and drop their match history, so a new stream may reuse the slots."""
        slots = np.asarray(slots, dtype=np.int64)
        if len(slots) == 0:
            return
        if self.states is not None:
            self.db.matcher.reset_states(self.states, slots[slots < self.states.shape[0]])
        if len(self.h_key):
            keep = ~np.isin(self.h_key, slots)
            self.h_key, self.h_pattern, self.h_pos = self.h_key[keep], self.h_pattern[keep], self.h_pos[keep]

    def _keep_history(self, group_keys, group, pattern, pos, n_groups, active_keys):
        """Carry the last HISTORY_PER_STREAM records of every TCP stream to the next batch
        (records in stream order within each group); past HISTORY_MAX_RECORDS in all, the
        streams with data in this batch keep theirs first."""
        kept = last_per_group(group, n_groups, HISTORY_PER_STREAM, group_keys, DATAGRAM_KEY_BASE)
        if len(kept) > HISTORY_MAX_RECORDS:
            active = np.isin(group_keys, active_keys)[group[kept]]
            self.history_dropped += len(kept) - HISTORY_MAX_RECORDS
            kept = np.concatenate([kept[active], kept[~active]])[:HISTORY_MAX_RECORDS]
        order = counting_order(group, n_groups, kept)
        self.h_key, self.h_pattern, self.h_pos = group_keys[group[order]], pattern[order], pos[order]

    def detect_headers(self, eligible, flow, direction, established, decoded, flows: FlowTable, buf):
        """(rule, packet index) of the alerts of rules without positive content."""
        db = self.db
        if len(db.header_rules) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        s_hi, s_lo, sp, d_hi, d_lo, dp = endpoints(flows, flow, direction)
        proto = decoded.proto.astype(np.int64)
        ix, dz = self.ip_only_index, db.dsize_checks
        out_rule, out_packet, n = detect_headers(
            self.header_group_start,
            self.header_group_rules,
            self.header_port_start,
            self.header_port_rules,
            eligible,
            flow,
            proto,
            s_hi,
            s_lo,
            sp,
            d_hi,
            d_lo,
            dp,
            direction,
            established,
            db.r_proto,
            db.r_bidir,
            db.r_flow,
            db.r_src,
            db.r_dst,
            db.r_sport,
            db.r_dport,
            db.a_lo_hi,
            db.a_lo_lo,
            db.a_hi_hi,
            db.a_hi_lo,
            db.p_lo,
            db.p_hi,
            self._ip_only_done(flows.capacity),
            2 * len(flow),
            ix.b_hi,
            ix.b_lo,
            ix.bounds,
            ix.seg_start,
            ix.seg_rules,
            np.full(ix.n_rules, -1, np.int64),
            np.empty(max(len(ix.indexed), 1), np.int64),
            dz.start,
            dz.kind,
            dz.op,
            dz.a,
            dz.b,
            dz.mask,
            decoded.payload_len,
        )
        rule, pkt = out_rule[:n], out_packet[:n]
        if n and db.r_verify[rule].any():
            none = np.full(n, -1, np.int64)
            keep = self.verify(rule, pkt, none, none, none, buf, _ONE_BYTE, decoded)
            rule, pkt = rule[keep], pkt[keep]
        return rule, pkt

    def finish_batch(self, stream_alerts: AlertBatch, header: tuple | None, ts_ns, number, flow, direction):
        """Merge both alert kinds into one alert per (rule, packet), ordered by packet and then
        by the rules' internal order, and apply flowbits, pass and noalert."""
        parts = [stream_alerts]
        if header is not None and len(header[0]):
            rule, pkt = header
            parts.append(
                AlertBatch(rule, ts_ns[pkt], number[pkt], flow[pkt], direction[pkt].astype(np.uint8))
            )
        alerts = AlertBatch.concat(parts)
        if len(alerts) == 0:
            return alerts
        order = np.lexsort((self.db.flow_state.order[alerts.rule], alerts.number))
        alerts = alerts.take(order)
        num, rule = alerts.number, alerts.rule
        first = np.r_[True, (num[1:] != num[:-1]) | (rule[1:] != rule[:-1])]
        if not first.all():
            # a rule matched both stream and packet: keep one, the stream one if any
            stream_any = np.maximum.reduceat(alerts.stream, np.nonzero(first)[0])
            alerts = alerts.take(first)
            alerts.stream = stream_any.astype(np.uint8)
        fs = self.db.flow_state
        if not fs.needed:
            return alerts
        keep = np.zeros(len(alerts), np.bool_)
        apply_flow_state(
            alerts.rule, alerts.number, alerts.flow, alerts.stream,
            fs.fb_start, fs.fb_cmd, fs.fb_any, fs.fb_name_start, fs.fb_bit,
            fs.is_pass, fs.noalert, fs.flow_scope, max(len(fs.names), 1),
            self.flowbits, self.flowbits_per_flow, self.passed_flows, keep, self.state_counters,
        )  # fmt: skip
        return alerts.take(keep)

    def cap_per_packet(self, alerts: AlertBatch) -> AlertBatch:
        """At most MAX_ALERTS_PER_PACKET alerts per packet, the first in rule order (the
        rest counted), as Suricata's packet_alert_max."""
        if len(alerts) == 0:
            return alerts
        num = alerts.number
        new_pkt = np.r_[True, num[1:] != num[:-1]]
        starts = np.nonzero(new_pkt)[0]
        rank = np.arange(len(num)) - np.repeat(starts, np.diff(np.r_[starts, len(num)]))
        keep = rank < MAX_ALERTS_PER_PACKET
        if keep.all():
            return alerts
        self.alerts_capped += int((~keep).sum())
        return alerts.take(keep)

    def _ip_only_done(self, n_flows: int) -> np.ndarray:
        if len(self.ip_only_done) < 2 * n_flows:
            grown = np.zeros(2 * n_flows, np.uint8)
            grown[: len(self.ip_only_done)] = self.ip_only_done
            self.ip_only_done = grown
        return self.ip_only_done

    def forget_flows(self, slots: np.ndarray) -> None:
        """These flows ended: their flowbits, pass and IP-only state go with them."""
        slots = np.asarray(slots, np.int64)
        both = np.concatenate([2 * slots, 2 * slots + 1])
        self.ip_only_done[both[both < len(self.ip_only_done)]] = 0
        if len(self.flowbits_per_flow) or len(self.passed_flows):
            forget_flow_state(
                np.asarray(slots, np.int64),
                max(len(self.db.flow_state.names), 1),
                self.flowbits,
                self.flowbits_per_flow,
                self.passed_flows,
            )


PORT_INDEX_MAX = 1024  # rules for at most this many destination ports are indexed by port


def _header_groups(db: DetectionDatabase, linear_ip_only: set[int]):
    """The header rules by protocol group (kernels.proto_group), then the IP-only ones by
    group (groups 4-7), as CSR arrays; rules for any IP protocol are in every group. TCP
    and UDP rules (one direction) for at most PORT_INDEX_MAX destination ports go to a
    per-port index instead: (group_start, group_rules, port_start, port_rules)."""
    groups: list[list[int]] = [[] for _ in range(8)]
    by_port: list[tuple[int, int, int]] = []  # (group, port, rule)
    codes = {6: [0], 17: [1], PROTO_ICMP_ANY: [2], PROTO_ANY_IP: [0, 1, 2, 3]}
    for r in db.header_rules.tolist():
        if db.r_ip_only[r] and r not in linear_ip_only:
            continue  # found through the address index (dpi.detect.ip_only)
        offset = 4 if db.r_ip_only[r] else 0
        start, end = db.r_dport[r]
        lo, hi = db.p_lo[start:end], db.p_hi[start:end]
        narrow = not db.r_bidir[r] and int((hi - lo + 1).sum()) <= PORT_INDEX_MAX
        for g in codes.get(int(db.r_proto[r]), [3]):
            if offset == 0 and g < 2 and narrow:
                by_port.extend(
                    (g, port, r)
                    for a, b in zip(lo.tolist(), hi.tolist(), strict=True)
                    for port in range(a, b + 1)
                )
            else:
                groups[g + offset].append(r)
    start = np.zeros(9, np.int64)
    start[1:] = np.cumsum([len(g) for g in groups])
    rules = np.asarray([r for g in groups for r in g], np.int64)
    entries = np.asarray(sorted(by_port), np.int64).reshape(-1, 3)
    port_start = np.zeros(2 * 65537 + 1, np.int64)
    np.add.at(port_start, entries[:, 0] * 65537 + entries[:, 1] + 1, 1)
    return start, rules, np.cumsum(port_start), entries[:, 2].copy()


# stand-ins when there are no packets (end-of-flow flush) or no buffer
_ONE_BYTE = np.zeros(1, np.uint8)
_NO_PACKETS = DecodedBatch.allocate(0)
