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

from collections import namedtuple
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
CNT_DEPTH_REACHED = 11  # stream directions that reached the reassembly depth
CNT_DEPTH_BYTES = 12  # bytes past the depth: tracked, not delivered
N_COUNTERS = 13

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
    "reassembly_depth_reached",
    "bytes_past_reassembly_depth",
)


# Target-based overlap policies, under Suricata's names (stream-tcp-list.c semantics).
STREAM_POLICIES = (
    "first",
    "last",
    "linux",
    "old-linux",
    "bsd",
    "bsd-right",
    "windows",
    "vista",
    "solaris",
    "macos",
    "hpux10",
    "hpux11",
    "irix",
    "windows2k3",
)


@dataclass
class StreamConfig:
    policy: str = "bsd"  # overlap policy where the host-os-policy map names none (Suricata's default)
    midstream: bool = False  # pick up sessions without their handshake (Suricata's stream.midstream)
    arena_bytes: int = 64 << 20  # global cap on out-of-order bytes held
    max_segments: int = 1 << 18  # global cap on held segments
    max_held_per_stream: int = 1 << 20  # bytes held for one direction before the hole is skipped
    # bytes of each direction that are reassembled and inspected as a stream (Suricata's
    # stream.reassembly.depth, default 1 MiB; packets past it are still inspected one by
    # one); 0 = no limit
    depth: int = 1 << 20


# Per flow-direction state, each array of shape (flows, 2).
StreamState = namedtuple("StreamState", "inited isn next_seq stream_off held head slot")
# The held-segment pool (a free list threaded through ``next``) and the arena its bytes live in.
SegmentPool = namedtuple("SegmentPool", "next seq length arena_off live ts number arena scratch")
# The chunk columns being filled (see ChunkTable), ``side`` being the side buffer.
ChunkColumns = namedtuple(
    "ChunkColumns", "src offset length stream stream_pos flow direction packet ts_ns number side"
)

# Scalars the kernels advance, kept in one small int64 array so helpers can update them.
CUR_CHUNKS = 0  # chunks written
CUR_SIDE = 1  # side-buffer bytes written
CUR_NEXT_SLOT = 2  # next free matcher-state slot
CUR_FREE = 3  # head of the segment free list
CUR_ARENA_TOP = 4  # first free arena byte
CUR_ARENA_LIVE = 5  # bytes of live held segments in the arena
N_CURSOR = 6

# Settings the kernels read, as one small int64 array.
LIM_MAX_HELD = 0
LIM_DEPTH = 1


@nb.njit(cache=True, inline="always")
def _seq_diff(a, b):
    """a - b in sequence space, as a signed 32-bit distance (handles wrap-around)."""
    d = (np.int64(a) - np.int64(b)) & np.int64(0xFFFFFFFF)
    if d >= np.int64(0x80000000):
        d -= np.int64(0x100000000)
    return d


@nb.njit(cache=True, inline="always")
def _emit(out, cur, src, off, length, stream, pos, f, d, pkt, ts, num):
    k = cur[CUR_CHUNKS]
    out.src[k] = src
    out.offset[k] = off
    out.length[k] = length
    out.stream[k] = stream
    out.stream_pos[k] = pos
    out.flow[k] = f
    out.direction[k] = d
    out.packet[k] = pkt
    out.ts_ns[k] = ts
    out.number[k] = num
    cur[CUR_CHUNKS] = k + 1


@nb.njit(cache=True, inline="always")
def _advance(st, limits, f, d, take, counters):
    """Move (f, d) forward by ``take`` bytes; returns how many of them lie within the
    reassembly depth (the rest is tracked, counted, and not delivered)."""
    pos = st.stream_off[f, d]
    depth = limits[LIM_DEPTH]
    keep = take
    if depth > 0:
        keep = min(take, max(depth - pos, 0))
        if keep < take:
            counters[CNT_DEPTH_BYTES] += take - keep
            if pos <= depth:  # the first delivery that does not fit
                counters[CNT_DEPTH_REACHED] += 1
    st.stream_off[f, d] = pos + take
    st.next_seq[f, d] = (st.next_seq[f, d] + take) & np.int64(0xFFFFFFFF)
    return keep


@nb.njit(cache=True)
def _compact(pool):
    """Move every live held segment to the front of the arena; returns the new top."""
    top = 0
    for s in range(pool.live.shape[0]):
        if pool.live[s]:
            ln = pool.length[s]
            pool.scratch[top : top + ln] = pool.arena[pool.arena_off[s] : pool.arena_off[s] + ln]
            pool.arena_off[s] = top
            top += ln
    pool.arena[:top] = pool.scratch[:top]
    return top


@nb.njit(cache=True, inline="always")
def _free_segment(pool, cur, s):
    cur[CUR_ARENA_LIVE] -= pool.length[s]
    pool.live[s] = 0
    pool.next[s] = cur[CUR_FREE]
    cur[CUR_FREE] = s


@nb.njit(cache=True)
def _release(st, pool, out, cur, limits, f, d, pkt, ts, num, counters):
    """Deliver the held segments of (f, d) that are now contiguous with its next_seq."""
    s = st.head[f, d]
    while s >= 0:
        rel = _seq_diff(pool.seq[s], st.next_seq[f, d])
        if rel > 0:
            break
        ln = pool.length[s]
        nxt = pool.next[s]
        if rel + ln > 0:
            skip = -rel
            take = ln - skip
            a0 = pool.arena_off[s] + skip
            pos = st.stream_off[f, d]
            keep = _advance(st, limits, f, d, take, counters)
            if keep > 0:
                side_top = cur[CUR_SIDE]
                out.side[side_top : side_top + keep] = pool.arena[a0 : a0 + keep]
                _emit(out, cur, SRC_SIDE, side_top, keep, st.slot[f, d], pos, f, d, pkt, ts, num)
                cur[CUR_SIDE] = side_top + keep
            counters[CNT_RETRANS_BYTES] += skip
        else:
            counters[CNT_RETRANS_BYTES] += ln
        st.held[f, d] -= ln
        _free_segment(pool, cur, s)
        s = nxt
    st.head[f, d] = s


@nb.njit(cache=True)
def _skip_hole_and_release(st, pool, out, cur, limits, f, d, pkt, ts, num, counters):
    """Give up on the hole before the first held segment of (f, d): count the gap, move
    next_seq past it into a fresh matcher slot (nothing matches across a hole), deliver."""
    s = st.head[f, d]
    gap = _seq_diff(pool.seq[s], st.next_seq[f, d])
    if gap > 0:
        counters[CNT_GAPS] += 1
        counters[CNT_GAP_BYTES] += gap
        st.stream_off[f, d] += gap
        st.next_seq[f, d] = pool.seq[s]
        st.slot[f, d] = cur[CUR_NEXT_SLOT]
        cur[CUR_NEXT_SLOT] += 1
    _release(st, pool, out, cur, limits, f, d, pkt, ts, num, counters)


@nb.njit(cache=True)
def _drop_held(st, pool, cur, f, d):
    """Free every segment (f, d) holds."""
    s = st.head[f, d]
    while s >= 0:
        nxt = pool.next[s]
        _free_segment(pool, cur, s)
        s = nxt
    st.head[f, d] = -1
    st.held[f, d] = 0


@nb.njit(cache=True)
def _hold(st, pool, cur, buf, f, d, data_seq, po, plen, ts, num, counters):
    """Copy an out-of-order segment into the arena, in sequence order; False when full."""
    arena = pool.arena
    if cur[CUR_FREE] < 0 or cur[CUR_ARENA_LIVE] + plen > arena.shape[0]:
        return False  # the pool or the arena is full: compacting would not make room
    if cur[CUR_ARENA_TOP] + plen > arena.shape[0]:
        cur[CUR_ARENA_TOP] = _compact(pool)  # room exists, behind freed segments
        counters[CNT_COMPACTIONS] += 1
    s = cur[CUR_FREE]
    cur[CUR_FREE] = pool.next[s]
    top = cur[CUR_ARENA_TOP]
    arena[top : top + plen] = buf[po : po + plen]
    cur[CUR_ARENA_TOP] = top + plen
    cur[CUR_ARENA_LIVE] += plen
    pool.arena_off[s] = top
    pool.seq[s] = data_seq
    pool.length[s] = plen
    pool.live[s] = 1
    pool.ts[s] = ts
    pool.number[s] = num
    st.held[f, d] += plen
    # insert sorted by sequence number (a stream rarely holds many segments)
    prev = -1
    node = st.head[f, d]
    while node >= 0 and _seq_diff(pool.seq[node], data_seq) <= 0:
        prev = node
        node = pool.next[node]
    pool.next[s] = node
    if prev < 0:
        st.head[f, d] = s
    else:
        pool.next[prev] = s
    return True


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
    st,
    pool,
    out,
    cur,
    limits,
    counters,
):
    """One pass over a batch: every eligible packet's payload becomes zero or more chunks."""
    for i in range(eligible.shape[0]):
        f = flow[i]
        if not eligible[i] or f < 0:
            continue
        plen = payload_len[i]
        ts = ts_ns[i]
        num = number[i]
        if proto[i] != TCP:
            if plen > 0:  # a datagram is its own stream, scanned from a fresh state
                _emit(out, cur, SRC_CAPTURE, payload_offset[i], plen, -1, 0, f, direction[i], i, ts, num)
            continue
        d = direction[i]
        flags = tcp_flags[i]
        seq = np.int64(tcp_seq[i])
        od = 1 - d
        if (flags & TH_ACK) and st.head[f, od] >= 0 and _seq_diff(tcp_ack[i], pool.seq[st.head[f, od]]) >= 0:
            # the receiver acknowledged data we never saw: the hole will not fill, skip it
            _skip_hole_and_release(st, pool, out, cur, limits, f, od, i, ts, num, counters)
        data_seq = (seq + 1) & np.int64(0xFFFFFFFF) if flags & TH_SYN else seq
        if (flags & TH_SYN) and st.inited[f, d]:
            known = st.isn[f, d] >= 0
            if (known and seq != st.isn[f, d]) or (not known and _seq_diff(data_seq, st.next_seq[f, d]) > 0):
                # a new connection on a tuple in use (port reuse): this direction starts afresh
                counters[CNT_REUSE] += 1
                counters[CNT_REUSE_DISCARDED_BYTES] += st.held[f, d]
                _drop_held(st, pool, cur, f, d)
                st.inited[f, d] = 0
        if not st.inited[f, d]:
            if (flags & TH_SYN) == 0 and plen == 0:
                continue  # a bare ACK says nothing certain about where the data starts
            st.inited[f, d] = 1
            st.isn[f, d] = seq if (flags & TH_SYN) else -1
            st.next_seq[f, d] = data_seq
            st.slot[f, d] = cur[CUR_NEXT_SLOT]
            cur[CUR_NEXT_SLOT] += 1
        if plen <= 0:
            continue
        counters[CNT_SEGMENTS] += 1
        rel = _seq_diff(data_seq, st.next_seq[f, d])
        while rel > 0 and st.held[f, d] + plen > limits[LIM_MAX_HELD] and st.head[f, d] >= 0:
            # too much waiting on one hole: give up on it
            _skip_hole_and_release(st, pool, out, cur, limits, f, d, i, ts, num, counters)
            rel = _seq_diff(data_seq, st.next_seq[f, d])
        if rel + plen <= 0:
            # everything already delivered: a retransmission (or a SYN after midstream pickup)
            counters[CNT_RETRANS_BYTES] += plen
            continue
        if rel <= 0:
            skip = -rel
            take = plen - skip
            counters[CNT_RETRANS_BYTES] += skip
            counters[CNT_IN_ORDER] += 1
            pos = st.stream_off[f, d]
            keep = _advance(st, limits, f, d, take, counters)
            if keep > 0:
                _emit(
                    out,
                    cur,
                    SRC_CAPTURE,
                    payload_offset[i] + skip,
                    keep,
                    st.slot[f, d],
                    pos,
                    f,
                    d,
                    i,
                    ts,
                    num,
                )
            if keep < take:
                # past the depth the stream is no longer inspected, the packet still is
                _emit(out, cur, SRC_CAPTURE, payload_offset[i], plen, -1, 0, f, d, i, ts, num)
            if st.head[f, d] >= 0:
                _release(st, pool, out, cur, limits, f, d, i, ts, num, counters)
            continue
        # ahead of a hole: hold a copy in the arena, unless it lies wholly past the depth
        if limits[LIM_DEPTH] > 0 and st.stream_off[f, d] + rel >= limits[LIM_DEPTH]:
            counters[CNT_DEPTH_BYTES] += plen
            _emit(out, cur, SRC_CAPTURE, payload_offset[i], plen, -1, 0, f, d, i, ts, num)
            continue
        if _hold(st, pool, cur, buf, f, d, data_seq, payload_offset[i], plen, ts, num, counters):
            counters[CNT_OOO_HELD] += 1
        else:
            counters[CNT_ARENA_DROPPED] += 1
            counters[CNT_ARENA_DROPPED_BYTES] += plen


@nb.njit(cache=True)
def flush_held(flows, st, pool, out, cur, limits, counters):
    """End of these flows (timeout, eviction, end of capture): deliver everything still
    held, skipping the holes before it, and forget their stream state."""
    for f in flows:
        for d in range(2):
            while st.head[f, d] >= 0:
                s = st.head[f, d]
                _skip_hole_and_release(
                    st, pool, out, cur, limits, f, d, -1, pool.ts[s], pool.number[s], counters
                )
            st.inited[f, d] = 0
            st.isn[f, d] = -1
            st.next_seq[f, d] = 0
            st.stream_off[f, d] = 0
            st.slot[f, d] = -1


class TcpReassembler:
    """Owns the per-direction stream state, the held-segment pool and the arena."""

    def __init__(self, config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        self.state = StreamState(
            inited=np.zeros((0, 2), np.uint8),
            isn=np.full((0, 2), -1, np.int64),  # the SYN's sequence number; -1: picked up midstream
            next_seq=np.zeros((0, 2), np.int64),
            stream_off=np.zeros((0, 2), np.int64),
            held=np.zeros((0, 2), np.int64),
            head=np.full((0, 2), -1, np.int64),
            slot=np.full((0, 2), -1, np.int64),
        )
        n = self.config.max_segments
        free_list = np.arange(1, n + 1, dtype=np.int64)
        free_list[-1] = -1
        # the arena is allocated lazily by the OS (zero pages): most captures hold nothing
        self.pool = SegmentPool(
            next=free_list,
            seq=np.zeros(n, np.int64),
            length=np.zeros(n, np.int64),
            arena_off=np.zeros(n, np.int64),
            live=np.zeros(n, np.uint8),
            ts=np.zeros(n, np.int64),
            number=np.zeros(n, np.int64),
            arena=np.zeros(self.config.arena_bytes, np.uint8),
            scratch=np.zeros(self.config.arena_bytes, np.uint8),
        )
        self.limits = np.array([self.config.max_held_per_stream, self.config.depth], np.int64)
        self.cursor = np.zeros(N_CURSOR, np.int64)  # chunk/side counts are reset per call
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)

    @property
    def next_slot(self) -> int:
        return int(self.cursor[CUR_NEXT_SLOT])

    @property
    def held_bytes(self) -> int:
        return int(self.state.held.sum())

    def reserve(self, n_flows_capacity: int) -> None:
        have = self.state.inited.shape[0]
        if n_flows_capacity <= have:
            return
        new = max(n_flows_capacity, have * 2)
        fills = {"inited": 0, "isn": -1, "next_seq": 0, "stream_off": 0, "held": 0, "head": -1, "slot": -1}
        grown = {}
        for name, fill in fills.items():
            old = getattr(self.state, name)
            g = np.full((new, 2), fill, dtype=old.dtype)
            g[:have] = old
            grown[name] = g
        self.state = StreamState(**grown)

    def _output(self, n_chunks: int, side_bytes: int) -> tuple[ChunkTable, ChunkColumns]:
        table = ChunkTable.allocate(n_chunks, side_bytes)
        out = ChunkColumns(
            table.src,
            table.offset,
            table.length,
            table.stream,
            table.stream_pos,
            table.flow,
            table.direction,
            table.packet,
            table.ts_ns,
            table.number,
            table.side,
        )
        self.cursor[CUR_CHUNKS] = 0
        self.cursor[CUR_SIDE] = 0
        return table, out

    def _written(self, table: ChunkTable) -> ChunkTable:
        return table.head(int(self.cursor[CUR_CHUNKS]), int(self.cursor[CUR_SIDE]))

    def process(self, buf, eligible, decoded, ts_ns, number, flow, direction) -> ChunkTable:
        n = len(eligible)
        payload = np.where(eligible, decoded.payload_len, 0)
        # per packet at most two chunks when it arrives (its in-depth part and, past the
        # depth, the packet alone) and one later release of its held copy, plus one release
        # per segment held before this batch
        table, out = self._output(3 * n + int(self.pool.live.sum()) + 1, self.held_bytes + int(payload.sum()))
        build_chunks(
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
            self.state,
            self.pool,
            out,
            self.cursor,
            self.limits,
            self.counters,
        )
        chunks = self._written(table)
        own = chunks.src == SRC_CAPTURE
        skip = chunks.offset - decoded.payload_offset[np.where(own, chunks.packet, 0)]
        chunks.packet_base = np.where(own, chunks.stream_pos - skip, -1)
        return chunks

    def flush(self, n_flows: int) -> ChunkTable:
        """End of capture: every flow's held data, as chunks; the stream state is reset."""
        chunks = self.flush_flows(np.arange(min(n_flows, self.state.inited.shape[0]), dtype=np.int64))
        self.cursor[CUR_ARENA_TOP] = 0
        return chunks

    def flush_flows(self, flows: np.ndarray) -> ChunkTable:
        """These flows ended (timeout, eviction): their held data as chunks, and their
        stream state reset so that the flow slots can be reused."""
        flows = np.asarray(flows, dtype=np.int64)
        flows = flows[flows < self.state.inited.shape[0]]
        held = int(self.state.held[flows].sum())
        n_held = int(np.count_nonzero(self.pool.live)) if held else 0
        table, out = self._output(n_held + 1, held)
        flush_held(flows, self.state, self.pool, out, self.cursor, self.limits, self.counters)
        return self._written(table)

    def stats(self) -> dict[str, int]:
        return {name: int(v) for name, v in zip(COUNTER_NAMES, self.counters, strict=True)}
