"""The defragmentation kernels: fragment parsing, the datagram table, the byte arena.

A datagram being reassembled (a *tracker*) is found in an open-addressing index keyed as
Suricata keys it: IP version, source, destination, identification, VLAN ids, and for
IPv4 the protocol. Its data is held as *pieces*: disjoint runs of datagram offsets, kept
sorted, whose bytes live in one arena shared by all trackers (bounded by the memcap; the
piece pool is bounded by max_fragments). Each piece remembers the extent of the fragment
that owns its bytes, because the overlap policies decide by comparing offsets.

Overlap resolution, per byte, when a new fragment covers bytes an older one owns (the
target-based policies of Novak 2005 under Suricata's names; they reproduce the expected
results of Suricata's Sturges/Novak tests):

- first: the older fragment keeps its bytes; last: the new one takes them;
- bsd: the new one wins if it starts before the owner (lower offset wins, ties: older);
- linux: the new one wins if it starts at or before the owner (ties: newer);
- bsd-right: the new one wins if it starts at or after the owner (higher offset wins);
- windows: the new one wins only if it starts before and ends after the owner;
- solaris: the new one wins only if it starts before and ends at or after the owner.

The first fragment to end without MF fixes the datagram's length; the datagram is
complete when its pieces cover it. The header written out is the one of the fragment that
owns data byte 0 (IPv4 header with options; IPv6 header and the extension headers before
the fragment header, the last one's next-header patched).

Every length is checked against the frame before a byte is read: fragments arrive from
the network and the decoder's columns are not trusted for bounds.
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from dpi.decode.wire import be16, be32
from dpi.defrag.config import (
    POLICY_BSD_RIGHT,
    POLICY_FIRST,
    POLICY_LAST,
    POLICY_LINUX,
    POLICY_SOLARIS,
    POLICY_WINDOWS,
)

IPV4_HEADER_MIN = 20
IPV6_HEADER = 40
IP_MAX_LENGTH = 65535
IPV6_FRAGMENT = 44
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_DEST_OPTIONS = 60
IPV6_AUTH = 51
MAX_EXT_HEADERS = 8

# counters (index into Defragmenter.counters); names as Suricata's defrag stats where it has one
CNT_V4_FRAGMENTS = 0
CNT_V4_REASSEMBLED = 1
CNT_V6_FRAGMENTS = 2
CNT_V6_REASSEMBLED = 3
CNT_V4_OVERLAP = 4  # fragments that overlapped data already held
CNT_V6_OVERLAP = 5
CNT_V4_OVERLAP_DIFF = 6  # ... and disagreed with it (an evasion attempt, or corruption)
CNT_V6_OVERLAP_DIFF = 7
CNT_TIMEOUT = 8  # datagrams dropped incomplete after the timeout
CNT_FLUSHED = 9  # datagrams dropped incomplete at the end of the capture
CNT_MEMCAP = 10  # fragments dropped: the memcap was reached
CNT_MAX_FRAGS = 11  # fragments dropped: max_fragments pieces held
CNT_MAX_TRACKERS = 12  # fragments dropped: max_trackers datagrams in progress
CNT_FRAGS_REASSEMBLED = 13  # fragments that went into a completed datagram
CNT_FRAGS_TIMED_OUT = 14  # fragments of datagrams dropped by the timeout
CNT_FRAGS_FLUSHED = 15  # fragments of datagrams dropped at the end of the capture
CNT_FRAGS_TOO_LARGE = 16  # fragments of datagrams dropped as longer than 65535 bytes
CNT_TAIL_CUT = 17  # fragments (or held pieces) cut at the datagram's end: not a drop
# invalid fragments, dropped, by reason
CNT_INV_BAD_HEADER = 18  # no parsable IP/fragment header at l3_offset
CNT_INV_NOT_FRAGMENT = 19  # offset 0 without MF: a whole packet, not a fragment
CNT_INV_TRUNCATED = 20  # the IP length runs past the captured bytes (snap length, damage)
CNT_INV_ZERO_LENGTH = 21
CNT_INV_NOT_MULTIPLE_OF_8 = 22  # an IPv6 fragment with M set whose length is not a multiple of 8
CNT_INV_TOO_LARGE = 23  # the fragment ends past the 65535-byte limit
CNT_INV_CONFLICTING_END = 24  # a second last fragment with another end
CNT_INV_PAST_END = 25  # starts at or after the datagram's end
CNT_INV_REASSEMBLED_TOO_LARGE = 26  # a completed datagram longer than its length field allows
N_COUNTERS = 27

COUNTER_NAMES = (
    "ipv4.fragments",
    "ipv4.reassembled",
    "ipv6.fragments",
    "ipv6.reassembled",
    "ipv4.frag_overlap",
    "ipv6.frag_overlap",
    "ipv4.frag_overlap_different_data",
    "ipv6.frag_overlap_different_data",
    "tracker_timeout",
    "tracker_flushed",
    "memcap_dropped",
    "max_frags_reached",
    "max_trackers_reached",
    "fragments_reassembled",
    "fragments_timed_out",
    "fragments_flushed",
    "fragments_too_large",
    "fragments_cut_at_end",
    "invalid.bad_header",
    "invalid.not_fragment",
    "invalid.truncated",
    "invalid.zero_length",
    "invalid.not_multiple_of_8",
    "invalid.too_large",
    "invalid.conflicting_end",
    "invalid.past_end",
    "invalid.reassembled_too_large",
)
assert len(COUNTER_NAMES) == N_COUNTERS

# Per-datagram state, one row per tracker slot; ``next_free`` threads the free list.
Trackers = namedtuple(
    "Trackers",
    "live version src_hi src_lo dst_hi dst_lo ident proto vlan hash last_ts policy "
    "total_len held head tail frags hdr_off hdr_len next_free",
)
# Held data: disjoint runs [start, end) of datagram offsets, sorted per tracker through
# ``next`` (``tail`` is the last, so fragments arriving in order are appended at once);
# owner_start/owner_end are the extent of the fragment the bytes came from.
Pieces = namedtuple("Pieces", "next start end arena_off owner_start owner_end live")
# Completed datagrams of one call: bytes in ``data``, one row each.
Output = namedtuple("Output", "data offset length ts_ns number row")

# Scalars the kernels advance, in one small int64 array.
CUR_FREE_TRACKER = 0
CUR_FREE_PIECE = 1
CUR_ARENA_TOP = 2  # first free arena byte
CUR_ARENA_LIVE = 3  # bytes of live pieces and headers
CUR_PIECES = 4  # live pieces
CUR_TRACKERS = 5  # live trackers
CUR_OUT_N = 6
CUR_OUT_BYTES = 7
CUR_NEXT_DEADLINE = 8  # no tracker expires before this capture time (ns)
N_CURSOR = 9

# Settings the kernels read.
LIM_TIMEOUT_NS = 0
LIM_DEFAULT_POLICY = 1
N_LIMITS = 2

NO_DEADLINE = np.int64(2**62)

# results of _parse_fragment beyond the reason: see there
PARSE_OK = -1


@nb.njit(cache=True, inline="always")
def _parse_failure(reason):
    z = np.int64(0)
    return np.int64(reason), z, z, z, z, z, z, z, z, z


@nb.njit(cache=True)
def _parse_fragment(buf, frame_start, frame_end, l3, version):
    """``(reason, data_pos, data_len, frag_start, more, ident, proto, hdr_len, nh_rel,
    nh_value)``: reason PARSE_OK or the invalid counter to bump. ``hdr_len`` is the header
    a reassembled datagram reuses (IPv4 header; IPv6 header plus the extension headers
    before the fragment header), ``nh_rel`` the position in it of the next-header byte to
    set to ``nh_value`` (IPv6; -1 for IPv4)."""
    if l3 < frame_start or l3 >= frame_end:
        return _parse_failure(CNT_INV_BAD_HEADER)
    if version == 4:
        if frame_end - l3 < IPV4_HEADER_MIN or buf[l3] >> 4 != 4:
            return _parse_failure(CNT_INV_BAD_HEADER)
        ihl = np.int64(buf[l3] & 0x0F) * 4
        total = be16(buf, l3 + 2)
        if ihl < IPV4_HEADER_MIN or frame_end - l3 < ihl or total < ihl:
            return _parse_failure(CNT_INV_BAD_HEADER)  # total 0 (TSO) included: no fragment length
        field = be16(buf, l3 + 6)
        more = (field >> 13) & 1
        frag_start = (field & 0x1FFF) * 8
        if frag_start == 0 and more == 0:
            return _parse_failure(CNT_INV_NOT_FRAGMENT)
        if total > frame_end - l3:
            return _parse_failure(CNT_INV_TRUNCATED)
        data_len = total - ihl
        if data_len == 0:
            return _parse_failure(CNT_INV_ZERO_LENGTH)
        # as Suricata: even a minimal header would make the datagram too long
        if IPV4_HEADER_MIN + frag_start + data_len > IP_MAX_LENGTH:
            return _parse_failure(CNT_INV_TOO_LARGE)
        return (
            np.int64(PARSE_OK),
            l3 + ihl,
            data_len,
            frag_start,
            more,
            be16(buf, l3 + 4),
            np.int64(buf[l3 + 9]),
            ihl,
            np.int64(-1),
            np.int64(0),
        )
    if version != 6:
        return _parse_failure(CNT_INV_BAD_HEADER)
    if frame_end - l3 < IPV6_HEADER or buf[l3] >> 4 != 6:
        return _parse_failure(CNT_INV_BAD_HEADER)
    payload_len = be16(buf, l3 + 4)
    if payload_len == 0:
        return _parse_failure(CNT_INV_BAD_HEADER)  # a jumbogram cannot be fragmented (RFC 2675)
    ip_end = l3 + IPV6_HEADER + payload_len
    limit = min(ip_end, frame_end)
    nh_pos = l3 + 6
    next_header = np.int64(buf[nh_pos])
    cur = l3 + IPV6_HEADER
    headers = 0
    while next_header != IPV6_FRAGMENT:
        if not (
            next_header == IPV6_HOP_BY_HOP
            or next_header == IPV6_ROUTING
            or next_header == IPV6_DEST_OPTIONS
            or next_header == IPV6_AUTH
        ):
            return _parse_failure(CNT_INV_NOT_FRAGMENT)  # the upper layer came first
        headers += 1
        if headers > MAX_EXT_HEADERS or limit - cur < 8:
            return _parse_failure(CNT_INV_BAD_HEADER)
        if next_header == IPV6_AUTH:
            ext_len = (np.int64(buf[cur + 1]) + 2) * 4
        else:
            ext_len = (np.int64(buf[cur + 1]) + 1) * 8
        if limit - cur < ext_len:
            return _parse_failure(CNT_INV_BAD_HEADER)
        nh_pos = cur
        next_header = np.int64(buf[cur])
        cur += ext_len
    if limit - cur < 8:
        return _parse_failure(CNT_INV_BAD_HEADER)
    field = be16(buf, cur + 2)
    frag_start = field & 0xFFF8
    more = field & 1
    if frag_start == 0 and more == 0:
        return _parse_failure(CNT_INV_NOT_FRAGMENT)  # an atomic fragment (RFC 6946)
    if ip_end > frame_end:
        return _parse_failure(CNT_INV_TRUNCATED)
    data_pos = cur + 8
    data_len = ip_end - data_pos
    if data_len == 0:
        return _parse_failure(CNT_INV_ZERO_LENGTH)
    if more and data_len % 8 != 0:
        return _parse_failure(CNT_INV_NOT_MULTIPLE_OF_8)
    if frag_start + data_len > IP_MAX_LENGTH:
        return _parse_failure(CNT_INV_TOO_LARGE)
    return (
        np.int64(PARSE_OK),
        data_pos,
        data_len,
        frag_start,
        more,
        be32(buf, cur + 4),
        np.int64(buf[cur]),
        cur - l3,
        nh_pos - l3,
        np.int64(buf[cur]),
    )


@nb.njit(cache=True, inline="always")
def _beats(policy, new_start, new_end, old_start, old_end):
    """True when a new fragment's bytes replace those of an older one where they overlap."""
    if policy == POLICY_FIRST:
        return False
    if policy == POLICY_LAST:
        return True
    if policy == POLICY_LINUX:
        return new_start <= old_start
    if policy == POLICY_BSD_RIGHT:
        return new_start >= old_start
    if policy == POLICY_WINDOWS:
        return new_start < old_start and new_end > old_end
    if policy == POLICY_SOLARIS:
        return new_start < old_start and new_end >= old_end
    return new_start < old_start  # bsd


@nb.njit(cache=True, inline="always")
def _mix(h, v):
    h ^= v
    h *= np.uint64(0x9E3779B97F4A7C15)
    h ^= h >> np.uint64(29)
    return h


@nb.njit(cache=True, inline="always")
def _key_hash(version, src_hi, src_lo, dst_hi, dst_lo, ident, proto, vlan):
    h = np.uint64(version)
    h = _mix(h, src_hi)
    h = _mix(h, src_lo)
    h = _mix(h, dst_hi)
    h = _mix(h, dst_lo)
    h = _mix(h, np.uint64(ident) | (np.uint64(proto) << np.uint64(32)))
    h = _mix(h, np.uint64(vlan))
    return np.int64(h >> np.uint64(1))


@nb.njit(cache=True)
def _find(index, tr, h, version, src_hi, src_lo, dst_hi, dst_lo, ident, proto, vlan):
    """(slot, tracker): the tracker with this key, or -1 and the empty slot to put it in."""
    mask = index.shape[0] - 1
    slot = h & mask
    while True:
        t = index[slot]
        if t < 0:
            return slot, np.int64(-1)
        if (
            tr.hash[t] == h
            and tr.version[t] == version
            and tr.ident[t] == ident
            and tr.src_lo[t] == src_lo
            and tr.dst_lo[t] == dst_lo
            and tr.src_hi[t] == src_hi
            and tr.dst_hi[t] == dst_hi
            and tr.proto[t] == proto
            and tr.vlan[t] == vlan
        ):
            return slot, t
        slot = (slot + 1) & mask


@nb.njit(cache=True)
def _index_remove(index, tr, t):
    """Take tracker t out of the linear-probing index, shifting its followers back (no
    tombstones, so lookups never slow down)."""
    mask = index.shape[0] - 1
    i = tr.hash[t] & mask
    while index[i] != t:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        u = index[j]
        if u < 0:
            break
        home = tr.hash[u] & mask
        # u may move back to i unless its home lies cyclically in (i, j]
        if i <= j:
            stays = home > i and home <= j
        else:
            stays = home > i or home <= j
        if not stays:
            index[i] = u
            i = j
    index[i] = -1


@nb.njit(cache=True)
def _free_tracker(index, tr, pc, cur, t):
    q = tr.head[t]
    while q >= 0:
        nxt = pc.next[q]
        cur[CUR_ARENA_LIVE] -= pc.end[q] - pc.start[q]
        pc.live[q] = 0
        pc.next[q] = cur[CUR_FREE_PIECE]
        cur[CUR_FREE_PIECE] = q
        cur[CUR_PIECES] -= 1
        q = nxt
    cur[CUR_ARENA_LIVE] -= tr.hdr_len[t]
    _index_remove(index, tr, t)
    tr.live[t] = 0
    tr.head[t] = -1
    tr.tail[t] = -1
    tr.hdr_len[t] = 0
    tr.held[t] = 0
    tr.frags[t] = 0
    tr.next_free[t] = cur[CUR_FREE_TRACKER]
    cur[CUR_FREE_TRACKER] = t
    cur[CUR_TRACKERS] -= 1


@nb.njit(cache=True)
def _expire(now, index, tr, pc, cur, limits, counters, everything):
    """Drop the trackers older than the timeout at ``now`` (all of them when
    ``everything``: the end of the capture); returns how many."""
    timeout = limits[LIM_TIMEOUT_NS]
    dropped = 0
    deadline = NO_DEADLINE
    for t in range(tr.live.shape[0]):
        if not tr.live[t]:
            continue
        if everything or now - tr.last_ts[t] > timeout:
            if everything:
                counters[CNT_FLUSHED] += 1
                counters[CNT_FRAGS_FLUSHED] += tr.frags[t]
            else:
                counters[CNT_TIMEOUT] += 1
                counters[CNT_FRAGS_TIMED_OUT] += tr.frags[t]
            _free_tracker(index, tr, pc, cur, t)
            dropped += 1
        else:
            deadline = min(deadline, tr.last_ts[t] + timeout)
    cur[CUR_NEXT_DEADLINE] = deadline
    return dropped


@nb.njit(cache=True)
def _compact(tr, pc, arena, scratch, cur):
    """Move every live piece and header to the front of the arena."""
    top = 0
    for q in range(pc.live.shape[0]):
        if pc.live[q]:
            n = pc.end[q] - pc.start[q]
            a = pc.arena_off[q]
            scratch[top : top + n] = arena[a : a + n]
            pc.arena_off[q] = top
            top += n
    for t in range(tr.live.shape[0]):
        if tr.live[t] and tr.hdr_len[t] > 0:
            n = tr.hdr_len[t]
            a = tr.hdr_off[t]
            scratch[top : top + n] = arena[a : a + n]
            tr.hdr_off[t] = top
            top += n
    arena[:top] = scratch[:top]
    cur[CUR_ARENA_TOP] = top


@nb.njit(cache=True, inline="always")
def _take_bytes(arena, cur, n):
    """n arena bytes at the top (room was made beforehand)."""
    a = cur[CUR_ARENA_TOP]
    cur[CUR_ARENA_TOP] = a + n
    cur[CUR_ARENA_LIVE] += n
    return a


@nb.njit(cache=True, inline="always")
def _take_piece(tr, pc, cur, t, prev, start, end, arena_off, owner_start, owner_end):
    """A piece from the free list, linked into tracker t's list after ``prev`` (-1: first)."""
    q = cur[CUR_FREE_PIECE]
    cur[CUR_FREE_PIECE] = pc.next[q]
    cur[CUR_PIECES] += 1
    pc.start[q] = start
    pc.end[q] = end
    pc.arena_off[q] = arena_off
    pc.owner_start[q] = owner_start
    pc.owner_end[q] = owner_end
    pc.live[q] = 1
    if prev < 0:
        pc.next[q] = tr.head[t]
        tr.head[t] = q
    else:
        pc.next[q] = pc.next[prev]
        pc.next[prev] = q
    if pc.next[q] < 0:
        tr.tail[t] = q
    return q


@nb.njit(cache=True)
def _plan(tr, pc, t, policy, s, e):
    """What inserting [s, e) into tracker t needs: (new pieces, new bytes, takes byte 0)."""
    tail = tr.tail[t]
    if tail >= 0 and s >= pc.end[tail]:
        return 1, e - s, False  # after everything held (s > 0)
    pieces = 0
    nbytes = 0
    takes_zero = s == 0
    cursor = s
    q = tr.head[t]
    while q >= 0 and pc.start[q] < e:
        if pc.end[q] > s:
            if cursor < pc.start[q]:
                pieces += 1
                nbytes += pc.start[q] - cursor
            a = max(pc.start[q], s)
            b = min(pc.end[q], e)
            if _beats(policy, s, e, pc.owner_start[q], pc.owner_end[q]):
                pieces += (a > pc.start[q]) + (b < pc.end[q])
            elif a == 0:
                takes_zero = False  # byte 0 stays with its owner, and so does the header
            cursor = b
        q = pc.next[q]
    if cursor < e:
        pieces += 1
        nbytes += e - cursor
    return pieces, nbytes, takes_zero


@nb.njit(cache=True)
def _cut_at_end(tr, pc, cur, t, end):
    """Free what tracker t holds at or past ``end``; True if anything was there."""
    cut = False
    prev = -1
    q = tr.head[t]
    while q >= 0:
        nxt = pc.next[q]
        if pc.start[q] >= end:
            n = pc.end[q] - pc.start[q]
            cur[CUR_ARENA_LIVE] -= n
            tr.held[t] -= n
            pc.live[q] = 0
            pc.next[q] = cur[CUR_FREE_PIECE]
            cur[CUR_FREE_PIECE] = q
            cur[CUR_PIECES] -= 1
            if prev < 0:
                tr.head[t] = nxt
            else:
                pc.next[prev] = nxt
            cut = True
        else:
            if pc.end[q] > end:
                n = pc.end[q] - end
                cur[CUR_ARENA_LIVE] -= n
                tr.held[t] -= n
                pc.end[q] = end
                cut = True
            prev = q
        q = nxt
    tr.tail[t] = prev
    return cut


@nb.njit(cache=True)
def _insert(buf, data_pos, tr, pc, arena, cur, t, policy, s, e):
    """Put the fragment bytes [s, e) (at buf[data_pos:]) into tracker t by the policy;
    room was reserved by the caller. Returns (overlapped, overlapped with other bytes)."""
    tail = tr.tail[t]
    if tail >= 0 and s >= pc.end[tail]:
        n = e - s
        a0 = _take_bytes(arena, cur, n)
        arena[a0 : a0 + n] = buf[data_pos : data_pos + n]
        _take_piece(tr, pc, cur, t, tail, s, e, a0, s, e)
        tr.held[t] += n
        return False, False
    overlap = False
    differ = False
    prev = -1
    cursor = s
    q = tr.head[t]
    while q >= 0 and pc.start[q] < e:
        nxt = pc.next[q]
        q_start = pc.start[q]
        q_end = pc.end[q]
        if q_end <= s:
            prev = q
            q = nxt
            continue
        if cursor < q_start:
            n = q_start - cursor
            a0 = _take_bytes(arena, cur, n)
            src = data_pos + (cursor - s)
            arena[a0 : a0 + n] = buf[src : src + n]
            prev = _take_piece(tr, pc, cur, t, prev, cursor, q_start, a0, s, e)
            tr.held[t] += n
        a = max(q_start, s)
        b = min(q_end, e)
        overlap = True
        held_at = pc.arena_off[q] + (a - q_start)
        src = data_pos + (a - s)
        if not differ:
            for k in range(b - a):
                if arena[held_at + k] != buf[src + k]:
                    differ = True
                    break
        if _beats(policy, s, e, pc.owner_start[q], pc.owner_end[q]):
            arena[held_at : held_at + (b - a)] = buf[src : src + (b - a)]
            q_arena = pc.arena_off[q]
            q_owner_start = pc.owner_start[q]
            q_owner_end = pc.owner_end[q]
            if a > q_start:
                # q keeps its head; the overlap becomes a piece of the new fragment
                pc.end[q] = a
                mid = _take_piece(tr, pc, cur, t, q, a, b, held_at, s, e)
            else:
                pc.end[q] = b
                pc.owner_start[q] = s
                pc.owner_end[q] = e
                mid = q
            prev = mid
            if b < q_end:
                prev = _take_piece(
                    tr, pc, cur, t, mid, b, q_end, q_arena + (b - q_start), q_owner_start, q_owner_end
                )
        else:
            prev = q
        cursor = b
        q = nxt
    if cursor < e:
        n = e - cursor
        a0 = _take_bytes(arena, cur, n)
        src = data_pos + (cursor - s)
        arena[a0 : a0 + n] = buf[src : src + n]
        _take_piece(tr, pc, cur, t, prev, cursor, e, a0, s, e)
        tr.held[t] += n
    return overlap, differ


@nb.njit(cache=True)
def _emit(tr, pc, arena, out, cur, t, ts, number, row, counters):
    """Write tracker t's datagram to the output (header fixed up) and free the tracker's
    data; False if the datagram is too long for its length field."""
    hl = tr.hdr_len[t]
    total = tr.total_len[t]
    version = tr.version[t]
    length = hl + total
    if (version == 4 and length > IP_MAX_LENGTH) or (version == 6 and length - IPV6_HEADER > IP_MAX_LENGTH):
        counters[CNT_INV_REASSEMBLED_TOO_LARGE] += 1
        counters[CNT_FRAGS_TOO_LARGE] += tr.frags[t]
        return False
    pos = cur[CUR_OUT_BYTES]
    data = out.data
    data[pos : pos + hl] = arena[tr.hdr_off[t] : tr.hdr_off[t] + hl]
    q = tr.head[t]
    while q >= 0:
        n = pc.end[q] - pc.start[q]
        d = pos + hl + pc.start[q]
        data[d : d + n] = arena[pc.arena_off[q] : pc.arena_off[q] + n]
        q = pc.next[q]
    if version == 4:
        data[pos + 2] = (length >> 8) & 0xFF
        data[pos + 3] = length & 0xFF
        data[pos + 6] &= 0xC0  # keep the reserved and DF bits; clear MF and the offset
        data[pos + 7] = 0
        data[pos + 10] = 0
        data[pos + 11] = 0
        acc = np.int64(0)
        for k in range(0, hl, 2):
            acc += (np.int64(data[pos + k]) << 8) | np.int64(data[pos + k + 1])
        while acc >> 16:
            acc = (acc & 0xFFFF) + (acc >> 16)
        acc = ~acc & 0xFFFF
        data[pos + 10] = acc >> 8
        data[pos + 11] = acc & 0xFF
        counters[CNT_V4_REASSEMBLED] += 1
    else:
        plen = length - IPV6_HEADER
        data[pos + 4] = (plen >> 8) & 0xFF
        data[pos + 5] = plen & 0xFF
        counters[CNT_V6_REASSEMBLED] += 1
    counters[CNT_FRAGS_REASSEMBLED] += tr.frags[t]
    k = cur[CUR_OUT_N]
    out.offset[k] = pos
    out.length[k] = length
    out.ts_ns[k] = ts
    out.number[k] = number
    out.row[k] = row
    cur[CUR_OUT_N] = k + 1
    cur[CUR_OUT_BYTES] = pos + length
    return True


@nb.njit(cache=True)
def _new_tracker(
    index, tr, cur, limits, slot, h, version, src_hi, src_lo, dst_hi, dst_lo, ident, proto, vlan, ts, policy
):
    t = cur[CUR_FREE_TRACKER]
    cur[CUR_FREE_TRACKER] = tr.next_free[t]
    cur[CUR_TRACKERS] += 1
    index[slot] = t
    tr.live[t] = 1
    tr.version[t] = version
    tr.src_hi[t] = src_hi
    tr.src_lo[t] = src_lo
    tr.dst_hi[t] = dst_hi
    tr.dst_lo[t] = dst_lo
    tr.ident[t] = ident
    tr.proto[t] = proto
    tr.vlan[t] = vlan
    tr.hash[t] = h
    tr.last_ts[t] = ts
    tr.policy[t] = policy
    tr.total_len[t] = -1
    tr.held[t] = 0
    tr.head[t] = -1
    tr.tail[t] = -1
    tr.frags[t] = 0
    tr.hdr_len[t] = 0
    cur[CUR_NEXT_DEADLINE] = min(cur[CUR_NEXT_DEADLINE], ts + limits[LIM_TIMEOUT_NS])
    return t


@nb.njit(cache=True)
def defrag_batch(
    buf,
    frame_offset,
    caplen,
    fragments,
    l3_offset,
    ip_version,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    vlan,
    vlan_outer,
    policies,
    ts_ns,
    number,
    index,
    tr,
    pc,
    arena,
    scratch,
    out,
    cur,
    limits,
    counters,
):
    """One pass over a batch: each fragment goes into its datagram; datagrams that become
    complete are written to ``out`` in the order they complete."""
    buffer_len = buf.shape[0]
    timeout = limits[LIM_TIMEOUT_NS]
    default_policy = limits[LIM_DEFAULT_POLICY]
    max_pieces = pc.live.shape[0]
    for i in range(fragments.shape[0]):
        if not fragments[i]:
            continue
        version = np.int64(ip_version[i])
        if version == 4:
            counters[CNT_V4_FRAGMENTS] += 1
        elif version == 6:
            counters[CNT_V6_FRAGMENTS] += 1
        start = frame_offset[i]
        captured = caplen[i]
        if start < 0 or captured < 0 or start > buffer_len or captured > buffer_len - start:
            counters[CNT_INV_BAD_HEADER] += 1
            continue
        reason, data_pos, data_len, s, more, ident, proto, hdr_len, nh_rel, nh_value = _parse_fragment(
            buf, start, start + captured, l3_offset[i], version
        )
        if reason != PARSE_OK:
            counters[reason] += 1
            continue
        ts = ts_ns[i]
        key_proto = proto if version == 4 else np.int64(0)
        key_vlan = np.int64(vlan[i]) | (np.int64(vlan_outer[i]) << 16)
        h = _key_hash(version, src_hi[i], src_lo[i], dst_hi[i], dst_lo[i], ident, key_proto, key_vlan)
        slot, t = _find(
            index, tr, h, version, src_hi[i], src_lo[i], dst_hi[i], dst_lo[i], ident, key_proto, key_vlan
        )
        if t >= 0 and ts - tr.last_ts[t] > timeout:
            counters[CNT_TIMEOUT] += 1
            counters[CNT_FRAGS_TIMED_OUT] += tr.frags[t]
            _free_tracker(index, tr, pc, cur, t)
            t = -1
            slot, _ = _find(
                index, tr, h, version, src_hi[i], src_lo[i], dst_hi[i], dst_lo[i], ident, key_proto, key_vlan
            )
        if t < 0:
            if cur[CUR_FREE_TRACKER] < 0 and ts > cur[CUR_NEXT_DEADLINE]:
                _expire(ts, index, tr, pc, cur, limits, counters, False)
                slot, _ = _find(
                    index,
                    tr,
                    h,
                    version,
                    src_hi[i],
                    src_lo[i],
                    dst_hi[i],
                    dst_lo[i],
                    ident,
                    key_proto,
                    key_vlan,
                )
            if cur[CUR_FREE_TRACKER] < 0:
                counters[CNT_MAX_TRACKERS] += 1
                continue
            policy = np.int64(policies[i]) if policies.shape[0] > 0 else default_policy
            if policy < 0 or policy > POLICY_SOLARIS:
                policy = default_policy
            t = _new_tracker(
                index,
                tr,
                cur,
                limits,
                slot,
                h,
                version,
                src_hi[i],
                src_lo[i],
                dst_hi[i],
                dst_lo[i],
                ident,
                key_proto,
                key_vlan,
                ts,
                policy,
            )
        # the timeout runs from a datagram's latest fragment, as Suricata refreshes it
        tr.last_ts[t] = max(tr.last_ts[t], ts)

        e = s + data_len
        total = tr.total_len[t]
        if more == 0 and total >= 0 and total != e:
            counters[CNT_INV_CONFLICTING_END] += 1
            if tr.held[t] == 0 and tr.hdr_len[t] == 0:
                _free_tracker(index, tr, pc, cur, t)
            continue
        if total >= 0 and e > total:
            if s >= total:
                counters[CNT_INV_PAST_END] += 1
                continue
            counters[CNT_TAIL_CUT] += 1
            e = total

        policy = tr.policy[t]
        need_pieces, need_bytes, takes_zero = _plan(tr, pc, t, policy, s, e)
        if takes_zero:
            need_bytes += hdr_len
        room = (
            cur[CUR_ARENA_LIVE] + need_bytes <= arena.shape[0] and cur[CUR_PIECES] + need_pieces <= max_pieces
        )
        if not room and ts > cur[CUR_NEXT_DEADLINE]:
            _expire(ts, index, tr, pc, cur, limits, counters, False)  # never t: it is younger
            room = (
                cur[CUR_ARENA_LIVE] + need_bytes <= arena.shape[0]
                and cur[CUR_PIECES] + need_pieces <= max_pieces
            )
        if not room:
            if cur[CUR_ARENA_LIVE] + need_bytes > arena.shape[0]:
                counters[CNT_MEMCAP] += 1
            else:
                counters[CNT_MAX_FRAGS] += 1
            if tr.held[t] == 0 and tr.hdr_len[t] == 0:
                _free_tracker(index, tr, pc, cur, t)  # created for this fragment alone
            continue
        if cur[CUR_ARENA_TOP] + need_bytes > arena.shape[0]:
            _compact(tr, pc, arena, scratch, cur)

        tr.frags[t] += 1
        if more == 0 and total < 0:
            tr.total_len[t] = e
            if _cut_at_end(tr, pc, cur, t, e):
                counters[CNT_TAIL_CUT] += 1
        if takes_zero:
            cur[CUR_ARENA_LIVE] -= tr.hdr_len[t]
            a0 = _take_bytes(arena, cur, hdr_len)
            l3 = l3_offset[i]
            arena[a0 : a0 + hdr_len] = buf[l3 : l3 + hdr_len]
            if nh_rel >= 0:
                arena[a0 + nh_rel] = nh_value
            tr.hdr_off[t] = a0
            tr.hdr_len[t] = hdr_len
        overlap, differ = _insert(buf, data_pos, tr, pc, arena, cur, t, policy, s, e)
        if overlap:
            counters[CNT_V4_OVERLAP if version == 4 else CNT_V6_OVERLAP] += 1
        if differ:
            counters[CNT_V4_OVERLAP_DIFF if version == 4 else CNT_V6_OVERLAP_DIFF] += 1

        if tr.total_len[t] >= 0 and tr.held[t] == tr.total_len[t] and tr.hdr_len[t] > 0:
            _emit(tr, pc, arena, out, cur, t, ts, number[i], i, counters)
            _free_tracker(index, tr, pc, cur, t)


@nb.njit(cache=True)
def expire_trackers(now, index, tr, pc, cur, limits, counters, everything):
    return _expire(now, index, tr, pc, cur, limits, counters, everything)
