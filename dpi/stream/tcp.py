"""TCP stream reassembly per flow direction, and the chunk table for every packet.

Segments wait in a bounded arena until the receiver acknowledges them, and are then
delivered in order, as Suricata inspects a stream in IDS mode: until then a segment that
overlaps them is resolved by the receiving host's target-based policy (first, last, bsd,
linux, windows, solaris, ...; the rules of Suricata's stream-tcp-list.c), and overlaps with
different data are counted and reported as events. Bytes already delivered are not
delivered again.

A stream that cannot make progress skips the hole — when the peer acknowledges the missing
bytes (they reached it; our capture lost them), when its held data exceeds the per-stream
bound, or when the flow ends. The gap is counted, and the stream continues in a fresh
matcher-state slot, so no pattern is ever reported across missing bytes. Data nobody
acknowledges (a one-sided capture) is delivered when the per-stream bound is reached or the
flow ends.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numba as nb
import numpy as np

from dpi.stream.chunks import SRC_CAPTURE, SRC_SIDE, ChunkTable

TCP = 6
TH_SYN = 0x02
TH_RST = 0x04
TH_ACK = 0x10

# counters (index into TcpReassembler.counters)
CNT_SEGMENTS = 0  # TCP segments with payload seen
CNT_IN_ORDER = 1  # arrived right after the data received before it in its direction
CNT_OOO_HELD = 2  # arrived with a hole before it
CNT_RETRANS_BYTES = 3  # payload bytes already delivered (retransmission / overlap)
CNT_GAPS = 4  # holes skipped
CNT_GAP_BYTES = 5  # sequence space skipped over holes
CNT_ARENA_DROPPED = 6  # segments dropped because the arena or segment pool was full
CNT_ARENA_DROPPED_BYTES = 7
CNT_COMPACTIONS = 8
CNT_REUSE = 9  # a SYN started a new connection on a tuple already in use
CNT_REUSE_FLUSHED_BYTES = 10  # bytes the old connection still held, delivered when it ended
CNT_DEPTH_REACHED = 11  # stream directions that reached the reassembly depth
CNT_DEPTH_BYTES = 12  # bytes past the depth: tracked, not delivered
CNT_OVERLAPS = 13  # segments that overlapped held data
CNT_OVERLAP_DIFF = 14  # ... with different bytes (stream.reassembly_overlap_different_data)
CNT_OVERLAP_NEW_WON = 15  # overlapping regions where the policy took the new bytes
CNT_UNACKED_RELEASED = 16  # segments delivered before their ACK (per-stream bound, memcap)
CNT_MIDSTREAM_SEGMENTS = 17  # payload of sessions picked up midstream with midstream off
N_COUNTERS = 18

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
    "port_reuse_flushed_bytes",
    "reassembly_depth_reached",
    "bytes_past_reassembly_depth",
    "reassembly_overlap",
    "reassembly_overlap_different_data",
    "overlap_new_data_used",
    "released_before_ack",
    "midstream_not_reassembled",
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
(
    P_FIRST,
    P_LAST,
    P_LINUX,
    P_OLD_LINUX,
    P_BSD,
    P_BSD_RIGHT,
    P_WINDOWS,
    P_VISTA,
    P_SOLARIS,
    P_MACOS,
    P_HPUX10,
    P_HPUX11,
    P_IRIX,
    P_WINDOWS2K3,
) = range(len(STREAM_POLICIES))


@dataclass
class StreamConfig:
    policy: str = "bsd"  # overlap policy where the host-os-policy map names none (Suricata's default)
    # pick up sessions without their handshake (Suricata's stream.midstream); None: the
    # command's default (off for scan, as Suricata; on for streams, as tcpflow)
    midstream: bool | None = None
    # bytes held (waiting for their ACK or behind a hole), all streams together: Suricata's
    # stream.reassembly.memcap. The arena is reserved lazily: only what is used is resident.
    arena_bytes: int = 256 << 20
    max_segments: int = 1 << 18  # global cap on held segments (stream.memcap / 256 bytes)
    # bytes held for one direction before it is delivered unacknowledged / its hole skipped
    max_held_per_stream: int = 1 << 20
    # bytes of each direction that are reassembled and inspected as a stream (Suricata's
    # stream.reassembly.depth, default 1 MiB; packets past it are still inspected one by
    # one); 0 = no limit
    depth: int = 1 << 20


# Per flow-direction state, each array of shape (flows, 2). ``next_seq``/``stream_off``
# are where delivery stands; ``head``/``tail`` the held segments, in sequence order.
StreamState = namedtuple("StreamState", "inited isn next_seq stream_off held head tail slot policy depth_hit")
# The held-segment pool (a free list threaded through ``next``) and the arena. A segment's
# bytes stay in the capture buffer while it lies after everything held (no overlap can have
# changed it: zero copy) and move to the arena when an overlap may change them or the
# buffer goes away (``in_capture``; ``store_off`` is the offset in the one or the other).
# ``own`` = the bytes are still exactly the packet's payload, so the packet can also be
# inspected alone; ``owner`` = 2 * flow + direction.
# ``slot_free`` is a stack of matcher-state slots ready for reuse, ``retired`` receives the
# slots of streams that ended or skipped a hole during a call (recycled by the caller once
# their last chunks have been inspected).
SegmentPool = namedtuple(
    "SegmentPool",
    "next seq length store_off in_capture live own owner ts number arena scratch slot_free retired",
)
# The chunk columns being filled (see ChunkTable), ``side`` being the side buffer.
ChunkColumns = namedtuple(
    "ChunkColumns",
    "src offset length stream stream_pos flow direction packet ts_ns number packet_base side",
)
# Overlap events: (flow, direction, stream offset, overlapping bytes, different, packet number, ts)
EventColumns = namedtuple("EventColumns", "flow direction stream_pos length different number ts_ns")

# Scalars the kernels advance, kept in one small int64 array so helpers can update them.
CUR_CHUNKS = 0  # chunks written
CUR_SIDE = 1  # side-buffer bytes written
CUR_NEXT_SLOT = 2  # next free matcher-state slot
CUR_FREE = 3  # head of the segment free list
CUR_ARENA_TOP = 4  # first free arena byte
CUR_ARENA_LIVE = 5  # bytes of live held segments in the arena
CUR_EVENTS = 6  # overlap events written
CUR_HELD = 7  # bytes of every live held segment, in the arena or still in the capture buffer
CUR_FREE_SLOTS = 8  # slots on the slot_free stack
CUR_RETIRED = 9  # slots written to ``retired`` by this call
N_CURSOR = 10

# Settings the kernels read, as one small int64 array.
LIM_MAX_HELD = 0
LIM_DEPTH = 1
LIM_MIDSTREAM = 2


@nb.njit(cache=True, inline="always")
def _seq_diff(a, b):
    """a - b in sequence space, as a signed 32-bit distance (handles wrap-around)."""
    d = (np.int64(a) - np.int64(b)) & np.int64(0xFFFFFFFF)
    if d >= np.int64(0x80000000):
        d -= np.int64(0x100000000)
    return d


@nb.njit(cache=True, inline="always")
def _emit(out, cur, src, off, length, stream, pos, f, d, pkt, ts, num, pbase):
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
    out.packet_base[k] = pbase
    cur[CUR_CHUNKS] = k + 1


@nb.njit(cache=True)
def new_data_wins(policy, n_seq, n_end, l_seq, l_end):
    """Whether the receiving host keeps the new segment's bytes where it overlaps a held
    one (Suricata's stream-tcp-list.c rules; Novak & Sturges, 2007)."""
    if policy == P_LAST:
        return True
    start = _seq_diff(n_seq, l_seq)
    end = _seq_diff(n_end, l_end)
    if start == 0:
        if end > 0 and policy == P_LINUX:
            return True
        if end >= 0 and (policy == P_OLD_LINUX or policy == P_SOLARIS or policy == P_HPUX11):
            return True
        return False
    if start < 0:
        if end >= 0 and (policy == P_SOLARIS or policy == P_HPUX11):
            return True
        return (
            policy == P_BSD
            or policy == P_HPUX10
            or policy == P_IRIX
            or policy == P_WINDOWS
            or policy == P_WINDOWS2K3
            or policy == P_OLD_LINUX
            or policy == P_LINUX
            or policy == P_MACOS
        )
    return end > 0 and (policy == P_SOLARIS or policy == P_HPUX11)


@nb.njit(cache=True)
def _mark_depth(st, f, d, counters):
    if not st.depth_hit[f, d]:
        st.depth_hit[f, d] = 1
        counters[CNT_DEPTH_REACHED] += 1


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
            _mark_depth(st, f, d, counters)
    st.stream_off[f, d] = pos + take
    st.next_seq[f, d] = (st.next_seq[f, d] + take) & np.int64(0xFFFFFFFF)
    return keep


@nb.njit(cache=True)
def _compact(pool):
    """Move every live held segment to the front of the arena; returns the new top."""
    top = 0
    for s in range(pool.live.shape[0]):
        if pool.live[s] and not pool.in_capture[s]:
            ln = pool.length[s]
            pool.scratch[top : top + ln] = pool.arena[pool.store_off[s] : pool.store_off[s] + ln]
            pool.store_off[s] = top
            top += ln
    pool.arena[:top] = pool.scratch[:top]
    return top


@nb.njit(cache=True, inline="always")
def _free_segment(pool, cur, s):
    cur[CUR_HELD] -= pool.length[s]
    if not pool.in_capture[s]:
        cur[CUR_ARENA_LIVE] -= pool.length[s]
    pool.live[s] = 0
    pool.next[s] = cur[CUR_FREE]
    cur[CUR_FREE] = s


@nb.njit(cache=True)
def _alloc_arena(pool, cur, n, counters):
    """Offset of ``n`` free arena bytes (compacting if the room is behind freed segments),
    or -1 when the arena is full."""
    arena = pool.arena
    if cur[CUR_ARENA_LIVE] + n > arena.shape[0]:
        return -1
    if cur[CUR_ARENA_TOP] + n > arena.shape[0]:
        cur[CUR_ARENA_TOP] = _compact(pool)
        counters[CNT_COMPACTIONS] += 1
    top = cur[CUR_ARENA_TOP]
    cur[CUR_ARENA_TOP] = top + n
    cur[CUR_ARENA_LIVE] += n
    return top


@nb.njit(cache=True)
def _to_arena(pool, cur, buf, s, counters):
    """Copy a segment still in the capture buffer into the arena; False when full."""
    if not pool.in_capture[s]:
        return True
    ln = pool.length[s]
    off = _alloc_arena(pool, cur, ln, counters)
    if off < 0:
        return False
    src = pool.store_off[s]
    pool.arena[off : off + ln] = buf[src : src + ln]
    pool.store_off[s] = off
    pool.in_capture[s] = 0
    return True


@nb.njit(cache=True, inline="always")
def _deliver_head(st, pool, out, cur, limits, f, d, pkt, counters, buf, zero_copy):
    """Deliver the first held segment of (f, d), which starts at or before next_seq; a
    segment in the capture buffer becomes a zero-copy chunk when ``zero_copy`` (``buf`` is
    the buffer it lives in), else a copy in the side buffer."""
    s = st.head[f, d]
    rel = _seq_diff(pool.seq[s], st.next_seq[f, d])
    ln = pool.length[s]
    ts = pool.ts[s]
    num = pool.number[s]
    if rel + ln > 0:
        skip = -rel
        take = ln - skip
        pos = st.stream_off[f, d]
        keep = _advance(st, limits, f, d, take, counters)
        cap = pool.in_capture[s]
        base = pool.store_off[s]
        # the packet alone can be inspected too when the chunk is its whole payload
        pbase = pos if (skip == 0 and pool.own[s]) else -1
        if keep > 0:
            if cap and zero_copy:
                _emit(out, cur, SRC_CAPTURE, base + skip, keep, st.slot[f, d], pos, f, d, pkt, ts, num, pbase)
            else:
                side_top = cur[CUR_SIDE]
                if cap:
                    out.side[side_top : side_top + keep] = buf[base + skip : base + skip + keep]
                else:
                    out.side[side_top : side_top + keep] = pool.arena[base + skip : base + skip + keep]
                _emit(out, cur, SRC_SIDE, side_top, keep, st.slot[f, d], pos, f, d, pkt, ts, num, pbase)
                cur[CUR_SIDE] = side_top + keep
        if keep < take:
            # past the depth the stream is no longer inspected, the packet still is
            if cap and zero_copy:
                _emit(out, cur, SRC_CAPTURE, base, ln, -1, 0, f, d, pkt, ts, num, 0)
            else:
                side_top = cur[CUR_SIDE]
                if cap:
                    out.side[side_top : side_top + ln] = buf[base : base + ln]
                else:
                    out.side[side_top : side_top + ln] = pool.arena[base : base + ln]
                _emit(out, cur, SRC_SIDE, side_top, ln, -1, 0, f, d, pkt, ts, num, 0)
                cur[CUR_SIDE] = side_top + ln
        counters[CNT_RETRANS_BYTES] += skip
    else:
        counters[CNT_RETRANS_BYTES] += ln
    st.held[f, d] -= ln
    nxt = pool.next[s]
    _free_segment(pool, cur, s)
    st.head[f, d] = nxt
    if nxt < 0:
        st.tail[f, d] = -1


@nb.njit(cache=True, inline="always")
def _new_slot(pool, cur):
    """A matcher-state slot for a new stream: a recycled one, else the next never used."""
    if cur[CUR_FREE_SLOTS] > 0:
        cur[CUR_FREE_SLOTS] -= 1
        return pool.slot_free[cur[CUR_FREE_SLOTS]]
    s = cur[CUR_NEXT_SLOT]
    cur[CUR_NEXT_SLOT] = s + 1
    return s


@nb.njit(cache=True, inline="always")
def _retire_slot(pool, cur, slot):
    if slot >= 0:
        pool.retired[cur[CUR_RETIRED]] = slot
        cur[CUR_RETIRED] += 1


@nb.njit(cache=True)
def _skip_hole(st, pool, cur, f, d, counters):
    """Give up on the hole before the first held segment of (f, d): count the gap and move
    next_seq past it into a fresh matcher slot (nothing matches across a hole)."""
    s = st.head[f, d]
    gap = _seq_diff(pool.seq[s], st.next_seq[f, d])
    if gap > 0:
        counters[CNT_GAPS] += 1
        counters[CNT_GAP_BYTES] += gap
        st.stream_off[f, d] += gap
        st.next_seq[f, d] = pool.seq[s]
        _retire_slot(pool, cur, st.slot[f, d])
        st.slot[f, d] = _new_slot(pool, cur)


@nb.njit(cache=True)
def _release(st, pool, out, cur, limits, f, d, ack, mode, pkt, counters, buf, zero_copy):
    """Deliver held segments of (f, d) in order. mode 0: those the peer acknowledged (up to
    ``ack``; an acknowledged hole is skipped); 1: every contiguous one, acknowledged or
    not; 2: everything, skipping holes (the flow or the connection ended)."""
    while st.head[f, d] >= 0:
        s = st.head[f, d]
        rel = _seq_diff(pool.seq[s], st.next_seq[f, d])
        if rel > 0:
            if mode == 2 or (mode == 0 and _seq_diff(ack, pool.seq[s]) >= 0):
                _skip_hole(st, pool, cur, f, d, counters)
            else:
                return
        if mode == 0:
            if _seq_diff(ack, (pool.seq[s] + pool.length[s]) & np.int64(0xFFFFFFFF)) < 0:
                return
        else:
            counters[CNT_UNACKED_RELEASED] += mode == 1
        _deliver_head(st, pool, out, cur, limits, f, d, pkt, counters, buf, zero_copy)


@nb.njit(cache=True, inline="always")
def _overlap_span(pool, s, node):
    """(first overlapping sequence number, overlapping bytes) of held segments s and node."""
    n_seq = pool.seq[s]
    n_end = (n_seq + pool.length[s]) & np.int64(0xFFFFFFFF)
    l_seq = pool.seq[node]
    l_end = (l_seq + pool.length[node]) & np.int64(0xFFFFFFFF)
    lo = n_seq if _seq_diff(n_seq, l_seq) > 0 else l_seq
    hi = n_end if _seq_diff(n_end, l_end) < 0 else l_end
    return lo, _seq_diff(hi, lo)


@nb.njit(cache=True)
def _inspect_alone(pool, out, cur, s, f, d, pkt):
    """Emit held segment ``s``'s bytes, still the packet's own, as a chunk to inspect on
    its own (Suricata inspects a packet's payload besides the stream): before an overlap
    rewrites them, the stream will not show them as the packet carried them."""
    ln = pool.length[s]
    a = pool.store_off[s]
    side_top = cur[CUR_SIDE]
    out.side[side_top : side_top + ln] = pool.arena[a : a + ln]
    _emit(out, cur, SRC_SIDE, side_top, ln, -1, 0, f, d, pkt, pool.ts[s], pool.number[s], 0)
    cur[CUR_SIDE] = side_top + ln
    pool.own[s] = 0


@nb.njit(cache=True)
def _resolve_overlaps(st, pool, out, cur, f, d, s, pkt, counters):
    """Make the new segment ``s`` and every held segment it overlaps agree byte for byte.
    As Suricata does: start from the new bytes, take a held segment's bytes back wherever
    the receiving host's policy keeps the old data, then let the result stand for the
    whole range. Returns (segments overlapped, overlapping bytes, whether any differed,
    stream offset of the first overlap, an exact duplicate or -1)."""
    arena = pool.arena
    n_seq = pool.seq[s]
    n_len = pool.length[s]
    n_end = (n_seq + n_len) & np.int64(0xFFFFFFFF)
    n_off = pool.store_off[s]
    policy = st.policy[f, d]
    hits = 0
    nbytes = 0
    differed = False
    first_rel = np.int64(-1)
    dup = -1
    node = st.head[f, d]
    while node >= 0 and _seq_diff(pool.seq[node], n_end) < 0:
        lo, span = _overlap_span(pool, s, node)
        if span > 0:
            hits += 1
            nbytes += span
            if first_rel < 0:
                first_rel = max(_seq_diff(lo, st.next_seq[f, d]), 0)
            l_seq = pool.seq[node]
            na = n_off + _seq_diff(lo, n_seq)
            la = pool.store_off[node] + _seq_diff(lo, l_seq)
            diff = False
            for k in range(span):
                if arena[na + k] != arena[la + k]:
                    diff = True
                    break
            if diff:
                differed = True
                l_end = (l_seq + pool.length[node]) & np.int64(0xFFFFFFFF)
                if new_data_wins(policy, n_seq, n_end, l_seq, l_end):
                    counters[CNT_OVERLAP_NEW_WON] += 1
                else:
                    if pool.own[s]:
                        _inspect_alone(pool, out, cur, s, f, d, pkt)
                    arena[na : na + span] = arena[la : la + span]
            if l_seq == n_seq and pool.length[node] == n_len:
                dup = node
        node = pool.next[node]
    if differed:
        # the resolved bytes stand for the whole range, in every held copy
        node = st.head[f, d]
        while node >= 0 and _seq_diff(pool.seq[node], n_end) < 0:
            lo, span = _overlap_span(pool, s, node)
            if span > 0:
                na = n_off + _seq_diff(lo, n_seq)
                la = pool.store_off[node] + _seq_diff(lo, pool.seq[node])
                for k in range(span):
                    if arena[la + k] != arena[na + k]:
                        if pool.own[node]:
                            _inspect_alone(pool, out, cur, node, f, d, pkt)
                        arena[la + k] = arena[na + k]
            node = pool.next[node]
    return hits, nbytes, differed, first_rel, dup


@nb.njit(cache=True)
def _unlink(st, pool, cur, f, d, s):
    """Take segment ``s`` out of (f, d)'s held list and free it."""
    prev = -1
    node = st.head[f, d]
    while node >= 0 and node != s:
        prev = node
        node = pool.next[node]
    if node < 0:
        return
    if prev < 0:
        st.head[f, d] = pool.next[s]
    else:
        pool.next[prev] = pool.next[s]
    if st.tail[f, d] == s:
        st.tail[f, d] = prev
    st.held[f, d] -= pool.length[s]
    _free_segment(pool, cur, s)


@nb.njit(cache=True)
def _hold(st, pool, out, cur, buf, f, d, data_seq, po, plen, ts, num, own, pkt, counters, ev):
    """Hold a segment, in sequence order, resolving its overlaps with held data; False when
    the pool or the arena is full."""
    if cur[CUR_FREE] < 0 or cur[CUR_HELD] + plen > pool.arena.shape[0]:
        return False  # the memcap counts held bytes wherever they are
    tail = st.tail[f, d]
    # the common case: after everything held, no overlap possible: keep it where it is
    append = tail < 0 or _seq_diff(data_seq, (pool.seq[tail] + pool.length[tail]) & np.int64(0xFFFFFFFF)) >= 0
    if append:
        store = po
    else:
        store = _alloc_arena(pool, cur, plen, counters)
        if store < 0:
            return False
        pool.arena[store : store + plen] = buf[po : po + plen]
    s = cur[CUR_FREE]
    cur[CUR_FREE] = pool.next[s]
    cur[CUR_HELD] += plen
    pool.store_off[s] = store
    pool.in_capture[s] = append
    pool.seq[s] = data_seq
    pool.length[s] = plen
    pool.live[s] = 1
    pool.own[s] = own
    pool.owner[s] = 2 * f + d
    pool.ts[s] = ts
    pool.number[s] = num
    if append:
        pool.next[s] = -1
        if tail >= 0:
            pool.next[tail] = s
        else:
            st.head[f, d] = s
        st.tail[f, d] = s
        st.held[f, d] += plen
        return True
    # bytes an overlap may rewrite must be in the arena
    n_end = (data_seq + plen) & np.int64(0xFFFFFFFF)
    node = st.head[f, d]
    while node >= 0 and _seq_diff(pool.seq[node], n_end) < 0:
        if pool.in_capture[node] and not _to_arena(pool, cur, buf, node, counters):
            _free_segment(pool, cur, s)
            return False
        node = pool.next[node]
    hits, nbytes, differed, first_rel, dup = _resolve_overlaps(st, pool, out, cur, f, d, s, pkt, counters)
    if hits > 0:
        counters[CNT_OVERLAPS] += 1
        k = cur[CUR_EVENTS]
        ev.flow[k] = f
        ev.direction[k] = d
        ev.stream_pos[k] = st.stream_off[f, d] + first_rel
        ev.length[k] = nbytes
        ev.different[k] = differed
        ev.number[k] = num
        ev.ts_ns[k] = ts
        cur[CUR_EVENTS] = k + 1
        if differed:
            counters[CNT_OVERLAP_DIFF] += 1
    if dup >= 0:
        # an exact retransmission: the held copy (now resolved) stands for both
        counters[CNT_RETRANS_BYTES] += plen
        _free_segment(pool, cur, s)
        return True
    st.held[f, d] += plen
    # insert sorted by sequence number, after held segments that start at the same place
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
    if node < 0:
        st.tail[f, d] = s
    return True


@nb.njit(cache=True)
def migrate_to_arena(st, pool, cur, buf, counters):
    """The capture buffer is about to change: copy the held segments still in it into the
    arena. What does not fit is dropped and counted (a hole the stream will skip)."""
    for s in range(pool.live.shape[0]):
        if pool.live[s] and pool.in_capture[s]:
            if not _to_arena(pool, cur, buf, s, counters):
                counters[CNT_ARENA_DROPPED] += 1
                counters[CNT_ARENA_DROPPED_BYTES] += pool.length[s]
                _unlink(st, pool, cur, pool.owner[s] // 2, pool.owner[s] % 2, s)


@nb.njit(cache=True)
def _start_direction(st, pool, cur, f, d, flags, seq, data_seq, policy):
    st.inited[f, d] = 1
    st.isn[f, d] = seq if (flags & TH_SYN) else -1
    st.next_seq[f, d] = data_seq
    _retire_slot(pool, cur, st.slot[f, d])  # a reused tuple's old stream
    st.slot[f, d] = _new_slot(pool, cur)
    st.policy[f, d] = policy


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
    policy,
    st,
    pool,
    out,
    ev,
    cur,
    limits,
    counters,
):
    """One pass over a batch: every eligible packet's payload is held, resolved and, once
    acknowledged, delivered as chunks."""
    for i in range(eligible.shape[0]):
        f = flow[i]
        if not eligible[i] or f < 0:
            continue
        plen = payload_len[i]
        ts = ts_ns[i]
        num = number[i]
        po = payload_offset[i]
        if proto[i] != TCP:
            if plen > 0:  # a datagram is its own stream, scanned from a fresh state
                _emit(out, cur, SRC_CAPTURE, po, plen, -1, 0, f, direction[i], i, ts, num, 0)
            continue
        d = direction[i]
        od = 1 - d
        flags = tcp_flags[i]
        seq = np.int64(tcp_seq[i])
        if (flags & TH_ACK) and st.head[f, od] >= 0:
            _release(st, pool, out, cur, limits, f, od, np.int64(tcp_ack[i]), 0, i, counters, buf, True)
        data_seq = (seq + 1) & np.int64(0xFFFFFFFF) if flags & TH_SYN else seq
        if (flags & TH_SYN) and st.inited[f, d]:
            known = st.isn[f, d] >= 0
            if (known and seq != st.isn[f, d]) or (not known and _seq_diff(data_seq, st.next_seq[f, d]) > 0):
                # a new connection on a tuple in use (port reuse): this direction starts afresh
                counters[CNT_REUSE] += 1
                counters[CNT_REUSE_FLUSHED_BYTES] += st.held[f, d]
                _release(st, pool, out, cur, limits, f, d, 0, 2, i, counters, buf, True)
                st.inited[f, d] = 0
        if not st.inited[f, d]:
            if (flags & TH_SYN) == 0:
                if plen == 0:
                    continue  # a bare ACK says nothing certain about where the data starts
                if limits[LIM_MIDSTREAM] == 0:
                    # no handshake seen and midstream pick-up off: inspect the packet alone
                    counters[CNT_MIDSTREAM_SEGMENTS] += 1
                    _emit(out, cur, SRC_CAPTURE, po, plen, -1, 0, f, d, i, ts, num, 0)
                    continue
            _start_direction(st, pool, cur, f, d, flags, seq, data_seq, policy[i])
        if plen > 0:
            counters[CNT_SEGMENTS] += 1
            rel = _seq_diff(data_seq, st.next_seq[f, d])
            if rel + plen <= 0:
                # everything already delivered: a retransmission (or a SYN after midstream pickup)
                counters[CNT_RETRANS_BYTES] += plen
            elif limits[LIM_DEPTH] > 0 and st.stream_off[f, d] + max(rel, 0) >= limits[LIM_DEPTH]:
                # wholly past the depth: not reassembled, the packet alone is still inspected
                counters[CNT_DEPTH_BYTES] += plen
                _mark_depth(st, f, d, counters)
                _emit(out, cur, SRC_CAPTURE, po, plen, -1, 0, f, d, i, ts, num, 0)
            else:
                skip = max(-rel, 0)  # the part before next_seq was delivered already
                counters[CNT_RETRANS_BYTES] += skip
                tail = st.tail[f, d]
                arrived = rel
                if tail >= 0:  # in order: contiguous with the data received before it
                    arrived = _seq_diff(data_seq, (pool.seq[tail] + pool.length[tail]) & np.int64(0xFFFFFFFF))
                while st.held[f, d] + plen > limits[LIM_MAX_HELD] and st.head[f, d] >= 0:
                    # too much waiting in one direction: deliver without the ACK, then skip holes
                    _release(st, pool, out, cur, limits, f, d, 0, 1, i, counters, buf, True)
                    if st.head[f, d] >= 0 and st.held[f, d] + plen > limits[LIM_MAX_HELD]:
                        _skip_hole(st, pool, cur, f, d, counters)
                seg_seq = (data_seq + skip) & np.int64(0xFFFFFFFF)
                own = skip == 0
                held = False
                for attempt in range(2):
                    if attempt:  # no room: make some by delivering this direction's data early
                        _release(st, pool, out, cur, limits, f, d, 0, 1, i, counters, buf, True)
                    held = _hold(
                        st,
                        pool,
                        out,
                        cur,
                        buf,
                        f,
                        d,
                        seg_seq,
                        po + skip,
                        plen - skip,
                        ts,
                        num,
                        own,
                        i,
                        counters,
                        ev,
                    )
                    if held:
                        break
                if held:
                    counters[CNT_IN_ORDER if arrived <= 0 else CNT_OOO_HELD] += 1
                else:
                    counters[CNT_ARENA_DROPPED] += 1
                    counters[CNT_ARENA_DROPPED_BYTES] += plen - skip
        if flags & TH_RST:
            # the connection is over: nothing more will be acknowledged
            _release(st, pool, out, cur, limits, f, d, 0, 2, i, counters, buf, True)
            _release(st, pool, out, cur, limits, f, od, 0, 2, i, counters, buf, True)


@nb.njit(cache=True)
def flush_held(flows, st, pool, out, cur, limits, counters, buf):
    """End of these flows (timeout, eviction, end of capture): deliver everything still
    held, skipping the holes before it, and forget their stream state."""
    for f in flows:
        for d in range(2):
            _release(st, pool, out, cur, limits, f, d, 0, 2, -1, counters, buf, False)
            st.inited[f, d] = 0
            st.isn[f, d] = -1
            st.next_seq[f, d] = 0
            st.stream_off[f, d] = 0
            _retire_slot(pool, cur, st.slot[f, d])
            st.slot[f, d] = -1
            st.depth_hit[f, d] = 0


_STATE_FILLS = {
    "inited": (np.uint8, 0),
    "isn": (np.int64, -1),  # the SYN's sequence number; -1: picked up midstream
    "next_seq": (np.int64, 0),
    "stream_off": (np.int64, 0),
    "held": (np.int64, 0),
    "head": (np.int64, -1),
    "tail": (np.int64, -1),
    "slot": (np.int64, -1),
    "policy": (np.uint8, 0),
    "depth_hit": (np.uint8, 0),
}


@dataclass
class OverlapEvents:
    """Overlaps seen in one batch, one row per overlapping segment."""

    flow: np.ndarray
    direction: np.ndarray
    stream_pos: np.ndarray
    length: np.ndarray
    different: np.ndarray
    number: np.ndarray
    ts_ns: np.ndarray

    def __len__(self) -> int:
        return int(self.flow.shape[0])


def policy_code(name: str) -> int:
    if name not in STREAM_POLICIES:
        raise ValueError(f"unknown stream policy {name!r}; known: {', '.join(STREAM_POLICIES)}")
    return STREAM_POLICIES.index(name)


class TcpReassembler:
    """Owns the per-direction stream state, the held-segment pool and the arena."""

    def __init__(self, config: StreamConfig | None = None):
        self.config = config or StreamConfig()
        self.default_policy = policy_code(self.config.policy)
        self.state = StreamState(
            **{name: np.full((0, 2), fill, dt) for name, (dt, fill) in _STATE_FILLS.items()}
        )
        n = self.config.max_segments
        free_list = np.arange(1, n + 1, dtype=np.int64)
        free_list[-1] = -1
        # the arena is allocated lazily by the OS (zero pages): most captures hold little
        self.pool = SegmentPool(
            next=free_list,
            seq=np.zeros(n, np.int64),
            length=np.zeros(n, np.int64),
            store_off=np.zeros(n, np.int64),
            in_capture=np.zeros(n, np.uint8),
            live=np.zeros(n, np.uint8),
            own=np.zeros(n, np.uint8),
            owner=np.zeros(n, np.int64),
            ts=np.zeros(n, np.int64),
            number=np.zeros(n, np.int64),
            arena=np.zeros(self.config.arena_bytes, np.uint8),
            scratch=np.zeros(self.config.arena_bytes, np.uint8),
            slot_free=np.zeros(1024, np.int64),
            retired=np.zeros(1, np.int64),
        )
        # slots retired by the last process()/flush_flows() call: once their chunks have
        # been inspected, the caller hands them back with recycle()
        self.retired = np.zeros(0, np.int64)
        self.limits = np.array(
            [self.config.max_held_per_stream, self.config.depth, int(bool(self.config.midstream))], np.int64
        )
        self.cursor = np.zeros(N_CURSOR, np.int64)  # chunk/side/event counts are reset per call
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)
        self.events = _empty_events(0)  # the overlaps of the last process() call
        self._buffer = None  # the capture buffer held segments may still point into

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
        grown = {}
        for name, (dt, fill) in _STATE_FILLS.items():
            g = np.full((new, 2), fill, dtype=dt)
            g[:have] = getattr(self.state, name)
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
            table.packet_base,
            table.side,
        )
        self.cursor[CUR_CHUNKS] = 0
        self.cursor[CUR_SIDE] = 0
        self.cursor[CUR_EVENTS] = 0
        self.cursor[CUR_RETIRED] = 0
        return table, out

    def _room_to_retire(self, n: int) -> None:
        if self.pool.retired.shape[0] < n:
            self.pool = self.pool._replace(retired=np.zeros(max(n, 2 * self.pool.retired.shape[0]), np.int64))

    def _take_retired(self) -> None:
        self.retired = self.pool.retired[: int(self.cursor[CUR_RETIRED])].copy()

    def recycle(self, slots: np.ndarray) -> None:
        """Hand back retired matcher-state slots (their streams' last chunks have been
        inspected and their matcher states reset): new streams reuse them, so the state the
        matcher keeps grows with the streams alive at once, not with every stream seen."""
        slots = np.asarray(slots, dtype=np.int64)
        n = int(self.cursor[CUR_FREE_SLOTS])
        if n + len(slots) > self.pool.slot_free.shape[0]:
            grown = np.zeros(max(n + len(slots), 2 * self.pool.slot_free.shape[0]), np.int64)
            grown[:n] = self.pool.slot_free[:n]
            self.pool = self.pool._replace(slot_free=grown)
        self.pool.slot_free[n : n + len(slots)] = slots
        self.cursor[CUR_FREE_SLOTS] = n + len(slots)

    def _written(self, table: ChunkTable) -> ChunkTable:
        return table.head(int(self.cursor[CUR_CHUNKS]), int(self.cursor[CUR_SIDE]))

    def process(self, buf, eligible, decoded, ts_ns, number, flow, direction, policy=None) -> ChunkTable:
        """This batch's chunks. ``policy``: per packet, the overlap policy (index into
        STREAM_POLICIES) of the host the packet is sent to; default config.policy."""
        n = len(eligible)
        if self._buffer is not None and buf is not self._buffer:
            migrate_to_arena(self.state, self.pool, self.cursor, self._buffer, self.counters)
        self._buffer = buf
        if policy is None:
            policy = np.full(n, self.default_policy, np.uint8)
        payload = np.where(eligible, decoded.payload_len, 0)
        live = int(np.count_nonzero(self.pool.live))
        # a held segment is released at most once, as up to two chunks (its in-depth part
        # and, past the depth, the packet alone); a packet not held becomes at most one
        # a held segment is also inspected alone at most once, when an overlap rewrites it
        table, out = self._output(3 * (live + n) + n + 1, 3 * (self.held_bytes + int(payload.sum())) + 1)
        self._room_to_retire(2 * (live + n) + 2)
        ev = _empty_events(n + 1)
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
            np.ascontiguousarray(policy, dtype=np.uint8),
            self.state,
            self.pool,
            out,
            ev,
            self.cursor,
            self.limits,
            self.counters,
        )
        k = int(self.cursor[CUR_EVENTS])
        self.events = OverlapEvents(*(getattr(ev, name)[:k] for name in EventColumns._fields))
        self._take_retired()
        return self._written(table)

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
        table, out = self._output(2 * n_held + 1, 2 * held + 1)
        self._room_to_retire(2 * len(flows) + int(np.count_nonzero(self.pool.live)) + 2)
        buf = self._buffer if self._buffer is not None else np.zeros(0, np.uint8)
        flush_held(flows, self.state, self.pool, out, self.cursor, self.limits, self.counters, buf)
        self._take_retired()
        return self._written(table)

    def stats(self) -> dict[str, int]:
        return {name: int(v) for name, v in zip(COUNTER_NAMES, self.counters, strict=True)}


def _empty_events(n: int) -> EventColumns:
    return EventColumns(
        np.zeros(n, np.int64),
        np.zeros(n, np.uint8),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
        np.zeros(n, np.uint8),
        np.zeros(n, np.int64),
        np.zeros(n, np.int64),
    )
