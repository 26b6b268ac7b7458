"""TCP stream reassembly per flow direction, and the chunk table for every packet.

In-order data becomes a chunk that points into the capture buffer (zero copy). Data
ahead of the expected sequence number is copied into a bounded arena and released, in
order, when the hole fills; bytes already delivered (retransmissions, overlaps) are not
delivered twice — the first copy wins, which is the 'first' overlap policy. Other overlap
policies, reassembly depth and timeouts come later and slot into ``_deliver``/``_hold``.

A stream that cannot make progress skips the hole — when the peer acknowledges the missing
bytes (they reached it; our capture lost them), when its held data exceeds the per-stream
bound, or when the capture ends. The gap is counted, and the stream continues in a fresh
matcher-state slot, so no pattern is ever reported across missing bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from dpi.stream.chunks import SRC_CAPTURE, SRC_SIDE, ChunkTable

TCP = 6
TH_SYN = 0x02
TH_ACK = 0x10

# counters (index into TcpReassembler.counters)
CNT_SEGMENTS = 0  # TCP segments with payload seen
CNT_IN_ORDER = 1  # delivered straight from the capture buffer
CNT_OOO_HELD = 2  # segments held in the arena
CNT_RETRANS_BYTES = 3  # payload bytes already delivered (retransmission / overlap)
CNT_GAPS = 4  # holes skipped
CNT_GAP_BYTES = 5  # sequence space skipped over holes
CNT_ARENA_DROPPED = 6  # segments dropped because the arena or segment pool was full
CNT_ARENA_DROPPED_BYTES = 7
CNT_COMPACTIONS = 8
CNT_REUSE = 9  # a SYN started a new connection on a tuple already in use
CNT_REUSE_DISCARDED_BYTES = 10  # bytes the old connection still held behind a hole
N_COUNTERS = 11

COUNTER_NAMES = (
    "segments",
    "in_order",
    "ooo_held",
    "retransmitted_bytes",
    "gaps",
    "gap_bytes",
    "memcap_dropped_segments",
    "memcap_dropped_bytes",
    "arena_compactions",
    "port_reuse",
    "port_reuse_discarded_bytes",
)


@dataclass
class StreamConfig:
    arena_bytes: int = 64 << 20  # global cap on out-of-order bytes held
    max_segments: int = 1 << 18  # global cap on held segments
    max_held_per_stream: int = 1 << 20  # bytes held for one direction before the hole is skipped


@nb.njit(cache=True, inline="always")
def _seq_diff(a, b):
    """a - b in sequence space, as a signed 32-bit distance (handles wrap-around)."""
    d = (np.int64(a) - np.int64(b)) & np.int64(0xFFFFFFFF)
    if d >= np.int64(0x80000000):
        d -= np.int64(0x100000000)
    return d


@nb.njit(cache=True)
def _emit(
    c_src,
    c_off,
    c_len,
    c_stream,
    c_pos,
    c_flow,
    c_dir,
    c_pkt,
    c_ts,
    c_num,
    nc,
    src,
    off,
    length,
    stream,
    pos,
    f,
    d,
    pkt,
    ts,
    num,
):
    c_src[nc] = src
    c_off[nc] = off
    c_len[nc] = length
    c_stream[nc] = stream
    c_pos[nc] = pos
    c_flow[nc] = f
    c_dir[nc] = d
    c_pkt[nc] = pkt
    c_ts[nc] = ts
    c_num[nc] = num
    return nc + 1


@nb.njit(cache=True)
def _compact(arena, seg_arena, seg_len, seg_live, n_seg_slots, scratch):
    """Move every live held segment to the front of the arena; returns the new top."""
    top = 0
    for s in range(n_seg_slots):
        if seg_live[s]:
            ln = seg_len[s]
            scratch[top : top + ln] = arena[seg_arena[s] : seg_arena[s] + ln]
            seg_arena[s] = top
            top += ln
    arena[:top] = scratch[:top]
    return top


@nb.njit(cache=True)
def _release(
    f,
    d,
    head,
    next_seq,
    stream_off,
    held,
    seg_next,
    seg_seq,
    seg_len,
    seg_arena,
    seg_live,
    free_head,
    arena,
    side,
    side_top,
    slot,
    c_src,
    c_off,
    c_len,
    c_stream,
    c_pos,
    c_flow,
    c_dir,
    c_pkt,
    c_ts,
    c_num,
    nc,
    pkt,
    ts,
    num,
    counters,
):
    """Deliver held segments that are now contiguous with next_seq[f, d].
    Returns (nc, side_top, free_head)."""
    s = head[f, d]
    while s >= 0:
        rel = _seq_diff(seg_seq[s], next_seq[f, d])
        if rel > 0:
            break
        ln = seg_len[s]
        nxt = seg_next[s]
        if rel + ln > 0:
            skip = -rel
            take = ln - skip
            a0 = seg_arena[s] + skip
            side[side_top : side_top + take] = arena[a0 : a0 + take]
            nc = _emit(
                c_src,
                c_off,
                c_len,
                c_stream,
                c_pos,
                c_flow,
                c_dir,
                c_pkt,
                c_ts,
                c_num,
                nc,
                SRC_SIDE,
                side_top,
                take,
                slot[f, d],
                stream_off[f, d],
                f,
                d,
                pkt,
                ts,
                num,
            )
            side_top += take
            stream_off[f, d] += take
            next_seq[f, d] = (np.int64(next_seq[f, d]) + take) & np.int64(0xFFFFFFFF)
            counters[CNT_RETRANS_BYTES] += skip
        else:
            counters[CNT_RETRANS_BYTES] += ln
        held[f, d] -= ln
        seg_live[s] = 0
        seg_next[s] = free_head
        free_head = s
        s = nxt
    head[f, d] = s
    return nc, side_top, free_head


@nb.njit(cache=True)
def _skip_hole(f, d, head, next_seq, stream_off, seg_seq, slot, next_slot, counters):
    """Jump next_seq over the hole before the first held segment; new matcher slot."""
    s = head[f, d]
    gap = _seq_diff(seg_seq[s], next_seq[f, d])
    counters[CNT_GAPS] += 1
    counters[CNT_GAP_BYTES] += gap
    stream_off[f, d] += gap
    next_seq[f, d] = seg_seq[s]
    slot[f, d] = next_slot
    return next_slot + 1


@nb.njit(cache=True)
def _drop_held(f, d, head, held, seg_next, seg_live, free_head):
    """Free every segment (f, d) holds; returns the new free-list head."""
    s = head[f, d]
    while s >= 0:
        nxt = seg_next[s]
        seg_live[s] = 0
        seg_next[s] = free_head
        free_head = s
        s = nxt
    head[f, d] = -1
    held[f, d] = 0
    return free_head


@nb.njit(cache=True)
def build_chunks(
    buf,
    eligible,
    proto,
    tcp_flags,
    tcp_seq,
    tcp_ack,
    payload_offset,
    payload_len,
    ts_ns,
    number,
    flow,
    direction,
    # per flow-direction state, shape (flows, 2)
    inited,
    isn,
    next_seq,
    stream_off,
    held,
    head,
    slot,
    next_slot,
    # held-segment pool and arena
    seg_next,
    seg_seq,
    seg_len,
    seg_arena,
    seg_live,
    seg_ts,
    seg_num,
    free_head,
    arena,
    arena_top,
    scratch,
    max_held_per_stream,
    counters,
    # outputs
    c_src,
    c_off,
    c_len,
    c_stream,
    c_pos,
    c_flow,
    c_dir,
    c_pkt,
    c_ts,
    c_num,
    side,
):
    """One pass over a batch: every eligible packet's payload becomes zero or more chunks.
    Returns (n_chunks, side_used, next_slot, free_head, arena_top)."""
    nc = 0
    side_top = 0
    n = eligible.shape[0]
    for i in range(n):
        if not eligible[i]:
            continue
        f = flow[i]
        if f < 0:
            continue
        plen = payload_len[i]
        if proto[i] != TCP:
            if plen > 0:
                nc = _emit(
                    c_src,
                    c_off,
                    c_len,
                    c_stream,
                    c_pos,
                    c_flow,
                    c_dir,
                    c_pkt,
                    c_ts,
                    c_num,
                    nc,
                    SRC_CAPTURE,
                    payload_offset[i],
                    plen,
                    -1,
                    0,
                    f,
                    direction[i],
                    i,
                    ts_ns[i],
                    number[i],
                )
            continue
        d = direction[i]
        flags = tcp_flags[i]
        seq = np.int64(tcp_seq[i])
        od = 1 - d
        if (
            (flags & TH_ACK)
            and head[f, od] >= 0
            and _seq_diff(np.int64(tcp_ack[i]), seg_seq[head[f, od]]) >= 0
        ):
            # the receiver acknowledged data we never saw: the hole will not fill, skip it
            next_slot = _skip_hole(f, od, head, next_seq, stream_off, seg_seq, slot, next_slot, counters)
            nc, side_top, free_head = _release(
                f,
                od,
                head,
                next_seq,
                stream_off,
                held,
                seg_next,
                seg_seq,
                seg_len,
                seg_arena,
                seg_live,
                free_head,
                arena,
                side,
                side_top,
                slot,
                c_src,
                c_off,
                c_len,
                c_stream,
                c_pos,
                c_flow,
                c_dir,
                c_pkt,
                c_ts,
                c_num,
                nc,
                i,
                ts_ns[i],
                number[i],
                counters,
            )
        data_seq = seq
        if flags & TH_SYN:
            data_seq = (seq + 1) & np.int64(0xFFFFFFFF)
        if (flags & TH_SYN) and inited[f, d]:
            known = isn[f, d] >= 0
            if (known and seq != isn[f, d]) or (not known and _seq_diff(data_seq, next_seq[f, d]) > 0):
                # a new connection on a tuple in use (port reuse): this direction starts afresh
                counters[CNT_REUSE] += 1
                counters[CNT_REUSE_DISCARDED_BYTES] += held[f, d]
                free_head = _drop_held(f, d, head, held, seg_next, seg_live, free_head)
                inited[f, d] = 0
        if not inited[f, d]:
            if (flags & TH_SYN) == 0 and plen == 0:
                continue  # a bare ACK says nothing certain about where the data starts
            inited[f, d] = 1
            isn[f, d] = seq if (flags & TH_SYN) else -1
            next_seq[f, d] = data_seq
            slot[f, d] = next_slot
            next_slot += 1
        if plen <= 0:
            continue
        counters[CNT_SEGMENTS] += 1
        # a retransmitted SYN or a SYN after midstream pickup carries nothing new
        rel = _seq_diff(data_seq, next_seq[f, d])
        if rel + plen <= 0:
            counters[CNT_RETRANS_BYTES] += plen
            continue
        while rel > 0 and held[f, d] + plen > max_held_per_stream and head[f, d] >= 0:
            # too much waiting on one hole: give up on it
            next_slot = _skip_hole(f, d, head, next_seq, stream_off, seg_seq, slot, next_slot, counters)
            nc, side_top, free_head = _release(
                f,
                d,
                head,
                next_seq,
                stream_off,
                held,
                seg_next,
                seg_seq,
                seg_len,
                seg_arena,
                seg_live,
                free_head,
                arena,
                side,
                side_top,
                slot,
                c_src,
                c_off,
                c_len,
                c_stream,
                c_pos,
                c_flow,
                c_dir,
                c_pkt,
                c_ts,
                c_num,
                nc,
                i,
                ts_ns[i],
                number[i],
                counters,
            )
            rel = _seq_diff(data_seq, next_seq[f, d])
        if rel + plen <= 0:
            counters[CNT_RETRANS_BYTES] += plen
            continue
        if rel <= 0:
            skip = -rel
            take = plen - skip
            counters[CNT_RETRANS_BYTES] += skip
            counters[CNT_IN_ORDER] += 1
            nc = _emit(
                c_src,
                c_off,
                c_len,
                c_stream,
                c_pos,
                c_flow,
                c_dir,
                c_pkt,
                c_ts,
                c_num,
                nc,
                SRC_CAPTURE,
                payload_offset[i] + skip,
                take,
                slot[f, d],
                stream_off[f, d],
                f,
                d,
                i,
                ts_ns[i],
                number[i],
            )
            stream_off[f, d] += take
            next_seq[f, d] = (next_seq[f, d] + take) & np.int64(0xFFFFFFFF)
            if head[f, d] >= 0:
                nc, side_top, free_head = _release(
                    f,
                    d,
                    head,
                    next_seq,
                    stream_off,
                    held,
                    seg_next,
                    seg_seq,
                    seg_len,
                    seg_arena,
                    seg_live,
                    free_head,
                    arena,
                    side,
                    side_top,
                    slot,
                    c_src,
                    c_off,
                    c_len,
                    c_stream,
                    c_pos,
                    c_flow,
                    c_dir,
                    c_pkt,
                    c_ts,
                    c_num,
                    nc,
                    i,
                    ts_ns[i],
                    number[i],
                    counters,
                )
            continue
        # ahead of a hole: hold a copy in the arena, ordered by sequence number
        if free_head < 0 or plen > arena.shape[0]:
            counters[CNT_ARENA_DROPPED] += 1
            counters[CNT_ARENA_DROPPED_BYTES] += plen
            continue
        if arena_top + plen > arena.shape[0]:
            arena_top = _compact(arena, seg_arena, seg_len, seg_live, seg_live.shape[0], scratch)
            counters[CNT_COMPACTIONS] += 1
            if arena_top + plen > arena.shape[0]:
                counters[CNT_ARENA_DROPPED] += 1
                counters[CNT_ARENA_DROPPED_BYTES] += plen
                continue
        s = free_head
        free_head = seg_next[s]
        po = payload_offset[i]
        arena[arena_top : arena_top + plen] = buf[po : po + plen]
        seg_arena[s] = arena_top
        arena_top += plen
        seg_seq[s] = data_seq
        seg_len[s] = plen
        seg_live[s] = 1
        seg_ts[s] = ts_ns[i]
        seg_num[s] = number[i]
        held[f, d] += plen
        counters[CNT_OOO_HELD] += 1
        # insert sorted by sequence number (a stream rarely holds many segments)
        prev = -1
        cur = head[f, d]
        while cur >= 0 and _seq_diff(seg_seq[cur], data_seq) <= 0:
            prev = cur
            cur = seg_next[cur]
        seg_next[s] = cur
        if prev < 0:
            head[f, d] = s
        else:
            seg_next[prev] = s
    return nc, side_top, next_slot, free_head, arena_top


@nb.njit(cache=True)
def flush_held(
    n_flows,
    next_seq,
    stream_off,
    held,
    head,
    slot,
    next_slot,
    seg_next,
    seg_seq,
    seg_len,
    seg_arena,
    seg_live,
    seg_ts,
    seg_num,
    free_head,
    arena,
    counters,
    c_src,
    c_off,
    c_len,
    c_stream,
    c_pos,
    c_flow,
    c_dir,
    c_pkt,
    c_ts,
    c_num,
    side,
):
    """End of capture: deliver everything still held, skipping the holes before it."""
    nc = 0
    side_top = 0
    for f in range(n_flows):
        for d in range(2):
            while head[f, d] >= 0:
                s = head[f, d]
                if _seq_diff(seg_seq[s], next_seq[f, d]) > 0:
                    next_slot = _skip_hole(
                        f, d, head, next_seq, stream_off, seg_seq, slot, next_slot, counters
                    )
                nc, side_top, free_head = _release(
                    f,
                    d,
                    head,
                    next_seq,
                    stream_off,
                    held,
                    seg_next,
                    seg_seq,
                    seg_len,
                    seg_arena,
                    seg_live,
                    free_head,
                    arena,
                    side,
                    side_top,
                    slot,
                    c_src,
                    c_off,
                    c_len,
                    c_stream,
                    c_pos,
                    c_flow,
                    c_dir,
                    c_pkt,
                    c_ts,
                    c_num,
                    nc,
                    -1,
                    seg_ts[s],
                    seg_num[s],
                    counters,
                )
    return nc, side_top, next_slot, free_head


class TcpReassembler:
    """Owns the per-direction stream state, the held-segment pool and the arena."""

    def __init__(self, config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        cfg = self.config
        self.inited = np.zeros((0, 2), dtype=np.uint8)
        self.isn = np.full((0, 2), -1, dtype=np.int64)  # the SYN's sequence number; -1: picked up midstream
        self.next_seq = np.zeros((0, 2), dtype=np.int64)
        self.stream_off = np.zeros((0, 2), dtype=np.int64)
        self.held = np.zeros((0, 2), dtype=np.int64)
        self.head = np.full((0, 2), -1, dtype=np.int64)
        self.slot = np.full((0, 2), -1, dtype=np.int64)
        self.next_slot = 0
        n = cfg.max_segments
        self.seg_next = np.arange(1, n + 1, dtype=np.int64)
        self.seg_next[-1] = -1
        self.free_head = 0
        self.seg_seq = np.zeros(n, dtype=np.int64)
        self.seg_len = np.zeros(n, dtype=np.int64)
        self.seg_arena = np.zeros(n, dtype=np.int64)
        self.seg_live = np.zeros(n, dtype=np.uint8)
        self.seg_ts = np.zeros(n, dtype=np.int64)
        self.seg_num = np.zeros(n, dtype=np.int64)
        self._arena = None
        self._scratch = None
        self.arena_top = 0
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)

    def _arena_arrays(self):
        # allocated on first use: most captures never hold a segment
        if self._arena is None:
            self._arena = np.zeros(self.config.arena_bytes, dtype=np.uint8)
            self._scratch = np.zeros(self.config.arena_bytes, dtype=np.uint8)
        return self._arena, self._scratch

    def reserve(self, n_flows_capacity: int) -> None:
        have = self.inited.shape[0]
        if n_flows_capacity <= have:
            return
        new = max(n_flows_capacity, have * 2)

        def grow(a, fill):
            g = np.full((new, 2), fill, dtype=a.dtype)
            g[:have] = a
            return g

        self.inited = grow(self.inited, 0)
        self.isn = grow(self.isn, -1)
        self.next_seq = grow(self.next_seq, 0)
        self.stream_off = grow(self.stream_off, 0)
        self.held = grow(self.held, 0)
        self.head = grow(self.head, -1)
        self.slot = grow(self.slot, -1)

    @property
    def held_bytes(self) -> int:
        return int(self.held.sum())

    def process(self, buf, eligible, decoded, ts_ns, number, flow, direction) -> ChunkTable:
        n = len(eligible)
        payload = np.where(eligible, decoded.payload_len, 0)
        side_bound = self.held_bytes + int(payload.sum())
        # per packet at most one in-order chunk and one later release of its held copy,
        # plus one release per segment held before this batch
        out = ChunkTable.allocate(2 * n + int(self.seg_live.sum()) + 1, side_bound)
        arena, scratch = self._arena_arrays()
        nc, side_used, self.next_slot, self.free_head, self.arena_top = build_chunks(
            buf,
            eligible,
            decoded.proto,
            decoded.tcp_flags,
            decoded.tcp_seq,
            decoded.tcp_ack,
            decoded.payload_offset,
            decoded.payload_len,
            ts_ns,
            number,
            flow,
            direction,
            self.inited,
            self.isn,
            self.next_seq,
            self.stream_off,
            self.held,
            self.head,
            self.slot,
            self.next_slot,
            self.seg_next,
            self.seg_seq,
            self.seg_len,
            self.seg_arena,
            self.seg_live,
            self.seg_ts,
            self.seg_num,
            self.free_head,
            arena,
            self.arena_top,
            scratch,
            self.config.max_held_per_stream,
            self.counters,
            out.src,
            out.offset,
            out.length,
            out.stream,
            out.stream_pos,
            out.flow,
            out.direction,
            out.packet,
            out.ts_ns,
            out.number,
            out.side,
        )
        chunks = out.head(nc, side_used)
        own = chunks.src == SRC_CAPTURE
        skip = chunks.offset - decoded.payload_offset[np.where(own, chunks.packet, 0)]
        chunks.packet_base = np.where(own, chunks.stream_pos - skip, -1)
        return chunks

    def flush(self, n_flows: int) -> ChunkTable:
        live = int(self.seg_live.sum())
        out = ChunkTable.allocate(live + 1, self.held_bytes)
        if live == 0:
            return out.head(0, 0)
        arena, _ = self._arena_arrays()
        nc, side_used, self.next_slot, self.free_head = flush_held(
            n_flows,
            self.next_seq,
            self.stream_off,
            self.held,
            self.head,
            self.slot,
            self.next_slot,
            self.seg_next,
            self.seg_seq,
            self.seg_len,
            self.seg_arena,
            self.seg_live,
            self.seg_ts,
            self.seg_num,
            self.free_head,
            arena,
            self.counters,
            out.src,
            out.offset,
            out.length,
            out.stream,
            out.stream_pos,
            out.flow,
            out.direction,
            out.packet,
            out.ts_ns,
            out.number,
            out.side,
        )
        self.arena_top = 0
        return out.head(nc, side_used)

    def stats(self) -> dict[str, int]:
        return {name: int(v) for name, v in zip(COUNTER_NAMES, self.counters, strict=True)}
