"""Numba scan kernels: two automata (exact and case-folded) advanced together, in several lanes.

Both automata live in one int32 blob described by ``meta`` (automaton.py; the exact automaton's
table starts the blob). Two things make the scan fast on large pattern sets, where a third of the
bytes may end a match and the tables do not fit in cache:

* The common step has no data-dependent branch: a dense target that reports at most one id per
  automaton is handled with min/max (the id sits in the target row's last column, the count in the
  entry's high bits). Sparse states and states reporting two or more ids go to a slow path.
* Independent lanes run interleaved, so that their table loads overlap instead of waiting one after
  the other. A single buffer is cut into segments (each lane first replays up to the longest
  pattern's length of bytes before its segment, without reporting, to reach the true state); a batch
  of chunks is spread over lanes with every chunk of one stream in the same lane, in order.

Each lane writes its matches into its own region of the output arrays. The kernel never writes past
a region: before each block of bytes it bounds the block by the room left (``max_emit`` slots per
byte) and returns OVERFLOW, with every lane's position saved, when a region is full; the caller grows
the regions and calls again. Chunk offsets, lengths and stream ids are checked once, in ``plan_lanes``.

Measured, and the reason for the shape of the code:

* The hot loops index with unsigned integers: a signed index makes Numba add negative-index
  wraparound code to every table load.
* The per-lane step is written out once per lane (keep the copies identical) instead of calling a
  helper: a helper that takes arrays, inlined by Numba or not, costs NRT reference counting or a
  long call on every byte. Helpers are only called on the slow path, with few arrays.
* In the scan loop every lane's live values must fit the CPU's registers (state pair, write index,
  input pointer): a block stores the byte index k as the match end, and the lane's offset is added
  after the block, which saves a register per lane. Two scan lanes beat one and four; four count
  lanes beat two.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u64

from .automaton import (
    CHILD_COUNT,
    CHILD_FIRST,
    CLASS_OFF,
    COUNT_SATURATED,
    COUNT_SHIFT,
    FAIL,
    LABEL,
    N_CLASSES,
    N_DENSE,
    NODE_FIELDS,
    NODE_OFF,
    OUT_COUNT,
    OUT_LINK,
    OUT_PATTERN,
    ROW_BASE,
    ROW_MASK,
    STRIDE,
)

DONE = 0
OVERFLOW = 1
BAD_CHUNK = 2
BAD_STREAM = 3

SCAN_LANES = 2  # lanes written out in scan_kernel's interleaved block
COUNT_LANES = 4  # lanes written out in count_kernel
LANE_MIN_BYTES = 16 * 1024  # a buffer shorter than this is scanned in one lane

# Columns of the lane state array: chunk cursor in the lane's list, byte position (-1: chunk not
# started), exact state, folded state, next write index in the flat output arrays.
LANE_CURSOR, LANE_POS, LANE_SE, LANE_SF, LANE_NOUT = range(5)
LANE_FIELDS = 5

_FAST_SCAN = 2 << COUNT_SHIFT  # OR of two entries below this: both dense, each reporting <= 1 id
_FAST_COUNT = COUNT_SATURATED << COUNT_SHIFT  # below this: both dense, counts not saturated


@njit(cache=True)
def _entry(blob, meta, a, state, byte):
    """Automaton a's entry for one byte from an encoded state; a sparse state tries its children,
    then its failure chain down to a dense row."""
    cls = blob[meta[a, CLASS_OFF] + byte]
    if state >= 0:
        return blob[meta[a, ROW_BASE] + state + cls]
    t = -state - 1
    node_off = meta[a, NODE_OFF]
    while t >= meta[a, N_DENSE]:
        node = node_off + t * NODE_FIELDS
        k = blob[node + CHILD_FIRST]
        end = k + blob[node + CHILD_COUNT]
        while k < end:
            label = blob[node_off + k * NODE_FIELDS + LABEL]
            if label == cls:
                return -(k + 1)  # a child of a sparse state is deeper, hence sparse
            if label > cls:
                break
            k += 1
        t = blob[node + FAIL]
    return blob[meta[a, ROW_BASE] + t * meta[a, STRIDE] + cls]


@njit(cache=True, inline="always")
def _next_state(entry):
    return entry & ROW_MASK if entry >= 0 else entry


@njit(cache=True)
def _reported(blob, meta, a, entry):
    """(state id, number of pattern ids) automaton a reports on taking an entry; (-1, 0) if none."""
    if entry >= 0:
        k = entry >> COUNT_SHIFT
        if k == 0:
            return -1, 0
        t = blob[meta[a, ROW_BASE] + (entry & ROW_MASK) + meta[a, N_CLASSES]]
        if k == COUNT_SATURATED:
            k = blob[meta[a, NODE_OFF] + t * NODE_FIELDS + OUT_COUNT]
        return t, k
    t = -entry - 1
    return t, blob[meta[a, NODE_OFF] + t * NODE_FIELDS + OUT_COUNT]


@njit(cache=True)
def _emit(blob, meta, a, t, end, ids_ptr, ids, out_pattern, out_end, n):
    """Write every pattern id that state t of automaton a reports (its own, then along output links)."""
    node_off = meta[a, NODE_OFF]
    if blob[node_off + t * NODE_FIELDS + OUT_PATTERN] < 0:
        t = blob[node_off + t * NODE_FIELDS + OUT_LINK]
    while t >= 0:
        u = blob[node_off + t * NODE_FIELDS + OUT_PATTERN]
        for j in range(ids_ptr[u], ids_ptr[u + 1]):
            out_pattern[n] = ids[j]
            out_end[n] = end
            n += 1
        t = blob[node_off + t * NODE_FIELDS + OUT_LINK]
    return n


@njit(cache=True)
def _scan_slow(b, se, sf, end, blob, meta, ids_ptr, ids, out_pattern, out_end, n):
    """A byte the fast path declined (a sparse state, or two or more ids): return (se, sf, n)."""
    ee = _entry(blob, meta, 0, se, b)
    ef = _entry(blob, meta, 1, sf, b)
    te, ke = _reported(blob, meta, 0, ee)
    tf, kf = _reported(blob, meta, 1, ef)
    run = n
    if ke > 0:
        n = _emit(blob, meta, 0, te, end, ids_ptr, ids, out_pattern, out_end, n)
    if kf > 0:
        n = _emit(blob, meta, 1, tf, end, ids_ptr, ids, out_pattern, out_end, n)
    for i in range(run + 1, n):  # insertion sort: the ids of one position ascend
        v = out_pattern[i]
        j = i - 1
        while j >= run and out_pattern[j] > v:
            out_pattern[j + 1] = out_pattern[j]
            j -= 1
        out_pattern[j + 1] = v
    return _next_state(ee), _next_state(ef), n


@njit(cache=True)
def _count_slow(b, se, sf, blob, meta):
    """A byte the fast path declined: return (se, sf, ids reported)."""
    ee = _entry(blob, meta, 0, se, b)
    ef = _entry(blob, meta, 1, sf, b)
    k = _reported(blob, meta, 0, ee)[1] + _reported(blob, meta, 1, ef)[1]
    return _next_state(ee), _next_state(ef), k


@njit(cache=True)
def _replay(buf, start, stop, se, sf, blob, meta):
    """States after buf[start:stop], reporting nothing."""
    for i in range(start, stop):
        se = _next_state(_entry(blob, meta, 0, se, buf[i]))
        sf = _next_state(_entry(blob, meta, 1, sf, buf[i]))
    return se, sf


@njit(cache=True)
def count_kernel(data, blob, meta, replay):
    """Number of (pattern id, end) occurrences in data; ``replay`` is the longest pattern's length."""
    ce = u64(meta[0, CLASS_OFF])
    cf = ce + u64(256)
    rf = u64(meta[1, ROW_BASE])  # the exact table starts the blob, the folded one follows
    n = data.shape[0]
    total = 0
    seg = n // COUNT_LANES if n >= LANE_MIN_BYTES else 0  # 0: the last lane alone does it all
    e0 = 0
    f0 = 0
    p1 = 1 * seg
    e1, f1 = _replay(data, max(0, p1 - replay), p1, 0, 0, blob, meta)
    p2 = 2 * seg
    e2, f2 = _replay(data, max(0, p2 - replay), p2, 0, 0, blob, meta)
    p3 = 3 * seg
    e3, f3 = _replay(data, max(0, p3 - replay), p3, 0, 0, blob, meta)
    for i in range(seg):
        b = data[u64(i)]
        slow = True
        if (e0 | f0) >= 0:
            ee = blob[u64(e0) + u64(blob[ce + b])]
            ef = blob[rf + u64(f0) + u64(blob[cf + b])]
            both = ee | ef
            if both >= 0 and both < _FAST_COUNT:
                e0 = ee & ROW_MASK
                f0 = ef & ROW_MASK
                total += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                slow = False
        if slow:
            e0, f0, k = _count_slow(b, e0, f0, blob, meta)
            total += k
        b = data[u64(p1 + i)]
        slow = True
        if (e1 | f1) >= 0:
            ee = blob[u64(e1) + u64(blob[ce + b])]
            ef = blob[rf + u64(f1) + u64(blob[cf + b])]
            both = ee | ef
            if both >= 0 and both < _FAST_COUNT:
                e1 = ee & ROW_MASK
                f1 = ef & ROW_MASK
                total += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                slow = False
        if slow:
            e1, f1, k = _count_slow(b, e1, f1, blob, meta)
            total += k
        b = data[u64(p2 + i)]
        slow = True
        if (e2 | f2) >= 0:
            ee = blob[u64(e2) + u64(blob[ce + b])]
            ef = blob[rf + u64(f2) + u64(blob[cf + b])]
            both = ee | ef
            if both >= 0 and both < _FAST_COUNT:
                e2 = ee & ROW_MASK
                f2 = ef & ROW_MASK
                total += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                slow = False
        if slow:
            e2, f2, k = _count_slow(b, e2, f2, blob, meta)
            total += k
        b = data[u64(p3 + i)]
        slow = True
        if (e3 | f3) >= 0:
            ee = blob[u64(e3) + u64(blob[ce + b])]
            ef = blob[rf + u64(f3) + u64(blob[cf + b])]
            both = ee | ef
            if both >= 0 and both < _FAST_COUNT:
                e3 = ee & ROW_MASK
                f3 = ef & ROW_MASK
                total += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                slow = False
        if slow:
            e3, f3, k = _count_slow(b, e3, f3, blob, meta)
            total += k
    for i in range(COUNT_LANES * seg, n):  # the last lane's tail, or the whole buffer
        b = data[u64(i)]
        slow = True
        if (e3 | f3) >= 0:
            ee = blob[u64(e3) + u64(blob[ce + b])]
            ef = blob[rf + u64(f3) + u64(blob[cf + b])]
            both = ee | ef
            if both >= 0 and both < _FAST_COUNT:
                e3 = ee & ROW_MASK
                f3 = ef & ROW_MASK
                total += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                slow = False
        if slow:
            e3, f3, k = _count_slow(b, e3, f3, blob, meta)
            total += k
    return total


@njit(cache=True)
def plan_lanes(len_a, len_b, chunk_src, chunk_offset, chunk_len, chunk_stream, chunk_warm, n_states, n_lanes):
    """Check every chunk and give it a lane: by stream id, or the least loaded lane for stream -1.

    Returns (status, bad chunk, lane_ptr, lane_chunks): lane j's chunks, in batch order, are
    lane_chunks[lane_ptr[j]:lane_ptr[j + 1]].
    """
    n = chunk_src.shape[0]
    lane_of = np.empty(n, dtype=np.int64)
    load = np.zeros(n_lanes, dtype=np.int64)
    lane_ptr = np.zeros(n_lanes + 1, dtype=np.int64)
    for c in range(n):
        size = len_a if chunk_src[c] == 0 else len_b
        start = chunk_offset[c]
        length = chunk_len[c]
        if start < 0 or length < 0 or start > size or length > size - start:
            return BAD_CHUNK, c, lane_ptr, lane_of
        if chunk_warm[c] < 0 or chunk_warm[c] > length:
            return BAD_CHUNK, c, lane_ptr, lane_of
        stream = chunk_stream[c]
        if stream < -1 or stream >= n_states:
            return BAD_STREAM, c, lane_ptr, lane_of
        if stream >= 0:
            lane = stream % n_lanes
        else:
            lane = 0
            for j in range(1, n_lanes):
                if load[j] < load[lane]:
                    lane = j
        lane_of[c] = lane
        load[lane] += length
        lane_ptr[lane + 1] += 1
    for j in range(n_lanes):
        lane_ptr[j + 1] += lane_ptr[j]
    lane_chunks = np.empty(n, dtype=np.int64)
    fill = lane_ptr[:-1].copy()
    for c in range(n):
        lane_chunks[fill[lane_of[c]]] = c
        fill[lane_of[c]] += 1
    return DONE, -1, lane_ptr, lane_chunks


@njit(cache=True)
def _settle(
    j, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, chunk_warm, states, blob, meta,
    lane_ptr, lane_chunks, lanes, chunk_first, chunk_count,
):  # fmt: skip
    """Finish lane j's spent chunks and start its next one; bytes left in it, or -1 when none."""
    while lanes[j, LANE_CURSOR] < lane_ptr[j + 1]:
        c = lane_chunks[lanes[j, LANE_CURSOR]]
        start = chunk_offset[c]
        stop = start + chunk_len[c]
        stream = chunk_stream[c]
        if lanes[j, LANE_POS] < 0:
            se = 0
            sf = 0
            if stream >= 0:
                se = states[stream, 0]
                sf = states[stream, 1]
            chunk_first[c] = lanes[j, LANE_NOUT]
            warm = start + chunk_warm[c]
            if chunk_src[c] == 0:
                se, sf = _replay(buf_a, start, warm, se, sf, blob, meta)
            else:
                se, sf = _replay(buf_b, start, warm, se, sf, blob, meta)
            lanes[j, LANE_POS] = warm
            lanes[j, LANE_SE] = se
            lanes[j, LANE_SF] = sf
        if lanes[j, LANE_POS] < stop:
            return stop - lanes[j, LANE_POS]
        if stream >= 0:
            states[stream, 0] = lanes[j, LANE_SE]
            states[stream, 1] = lanes[j, LANE_SF]
        chunk_count[c] = lanes[j, LANE_NOUT] - chunk_first[c]
        lanes[j, LANE_CURSOR] += 1
        lanes[j, LANE_POS] = -1
    return -1


@njit(cache=True)
def _shift_ends(out_end, start, stop, by):
    """Turn the block-relative ends (byte index k) of out_end[start:stop] into chunk-relative ones."""
    for i in range(start, stop):
        out_end[i] += by


@njit(cache=True)
def scan_kernel(
    buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, chunk_warm, states,
    blob, meta, ids_ptr, ids, max_emit, lane_ptr, lane_chunks, lanes, region,
    out_pattern, out_end, chunk_first, chunk_count,
):  # fmt: skip
    """Scan the planned chunks lane by lane (see the module docstring); returns DONE or OVERFLOW.

    A chunk's first ``chunk_warm`` bytes only set up the state (no matches are reported in them);
    match ends are relative to the chunk's offset. Lane j writes out_*[j * region : (j + 1) * region];
    chunk c's matches are ``out_*[chunk_first[c] : chunk_first[c] + chunk_count[c]]``.
    ``lanes`` (int64[n_lanes, LANE_FIELDS]; LANE_POS -1 and LANE_NOUT j * region at first) carries a resume.
    """
    ce = u64(meta[0, CLASS_OFF])
    cf = ce + u64(256)
    rf = u64(meta[1, ROW_BASE])  # the exact table starts the blob, the folded one follows
    id_col_e = u64(meta[0, N_CLASSES] + 1)
    id_col_f = u64(meta[1, N_CLASSES] + 1)
    one = u64(1)
    n_lanes = lanes.shape[0]
    left = np.zeros(n_lanes, dtype=np.int64)
    while True:
        active = 0
        steps = np.int64(1) << 62
        for j in range(n_lanes):
            left[j] = _settle(
                j, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, chunk_warm, states,
                blob, meta, lane_ptr, lane_chunks, lanes, chunk_first, chunk_count,
            )  # fmt: skip
            if left[j] < 0:
                continue
            room = ((j + 1) * region - lanes[j, LANE_NOUT]) // max_emit
            if room <= 0:
                return OVERFLOW
            left[j] = min(left[j], room)
            steps = min(steps, left[j])
            active += 1
        if active == 0:
            return DONE
        if active == SCAN_LANES and n_lanes == SCAN_LANES:  # the interleaved block below has 2 lanes
            c0 = lane_chunks[lanes[0, LANE_CURSOR]]
            b0 = buf_a if chunk_src[c0] == 0 else buf_b
            p0 = lanes[0, LANE_POS]
            e0, f0, n0 = lanes[0, LANE_SE], lanes[0, LANE_SF], lanes[0, LANE_NOUT]
            c1 = lane_chunks[lanes[1, LANE_CURSOR]]
            b1 = buf_a if chunk_src[c1] == 0 else buf_b
            p1 = lanes[1, LANE_POS]
            e1, f1, n1 = lanes[1, LANE_SE], lanes[1, LANE_SF], lanes[1, LANE_NOUT]
            for k in range(steps):
                b = b0[u64(p0 + k)]
                slow = True
                if (e0 | f0) >= 0:
                    ee = blob[u64(e0) + u64(blob[ce + b])]
                    ef = blob[rf + u64(f0) + u64(blob[cf + b])]
                    both = ee | ef
                    if both >= 0 and both < _FAST_SCAN:
                        e0 = ee & ROW_MASK
                        f0 = ef & ROW_MASK
                        id_e = blob[u64(e0) + id_col_e]
                        id_f = blob[rf + u64(f0) + id_col_f]
                        at = u64(n0)
                        out_pattern[at] = min(id_e, id_f)
                        out_pattern[at + one] = max(id_e, id_f)
                        out_end[at] = k
                        out_end[at + one] = k
                        n0 += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                        slow = False
                if slow:
                    e0, f0, n0 = _scan_slow(b, e0, f0, k, blob, meta, ids_ptr, ids, out_pattern, out_end, n0)
                b = b1[u64(p1 + k)]
                slow = True
                if (e1 | f1) >= 0:
                    ee = blob[u64(e1) + u64(blob[ce + b])]
                    ef = blob[rf + u64(f1) + u64(blob[cf + b])]
                    both = ee | ef
                    if both >= 0 and both < _FAST_SCAN:
                        e1 = ee & ROW_MASK
                        f1 = ef & ROW_MASK
                        id_e = blob[u64(e1) + id_col_e]
                        id_f = blob[rf + u64(f1) + id_col_f]
                        at = u64(n1)
                        out_pattern[at] = min(id_e, id_f)
                        out_pattern[at + one] = max(id_e, id_f)
                        out_end[at] = k
                        out_end[at + one] = k
                        n1 += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                        slow = False
                if slow:
                    e1, f1, n1 = _scan_slow(b, e1, f1, k, blob, meta, ids_ptr, ids, out_pattern, out_end, n1)
            _shift_ends(out_end, lanes[0, LANE_NOUT], n0, p0 + 1 - chunk_offset[c0])
            lanes[0, LANE_POS], lanes[0, LANE_SE], lanes[0, LANE_SF], lanes[0, LANE_NOUT] = (
                p0 + steps,
                e0,
                f0,
                n0,
            )
            _shift_ends(out_end, lanes[1, LANE_NOUT], n1, p1 + 1 - chunk_offset[c1])
            lanes[1, LANE_POS], lanes[1, LANE_SE], lanes[1, LANE_SF], lanes[1, LANE_NOUT] = (
                p1 + steps,
                e1,
                f1,
                n1,
            )
            continue
        # Fewer lanes busy: each runs alone to the end of its chunk (or of its room).
        for j in range(n_lanes):
            if left[j] < 0:
                continue
            c = lane_chunks[lanes[j, LANE_CURSOR]]
            buf = buf_a if chunk_src[c] == 0 else buf_b
            p = lanes[j, LANE_POS]
            e, f, n = lanes[j, LANE_SE], lanes[j, LANE_SF], lanes[j, LANE_NOUT]
            for k in range(left[j]):
                b = buf[u64(p + k)]
                slow = True
                if (e | f) >= 0:
                    ee = blob[u64(e) + u64(blob[ce + b])]
                    ef = blob[rf + u64(f) + u64(blob[cf + b])]
                    both = ee | ef
                    if both >= 0 and both < _FAST_SCAN:
                        e = ee & ROW_MASK
                        f = ef & ROW_MASK
                        id_e = blob[u64(e) + id_col_e]
                        id_f = blob[rf + u64(f) + id_col_f]
                        at = u64(n)
                        out_pattern[at] = min(id_e, id_f)
                        out_pattern[at + one] = max(id_e, id_f)
                        out_end[at] = k
                        out_end[at + one] = k
                        n += (ee >> COUNT_SHIFT) + (ef >> COUNT_SHIFT)
                        slow = False
                if slow:
                    e, f, n = _scan_slow(b, e, f, k, blob, meta, ids_ptr, ids, out_pattern, out_end, n)
            _shift_ends(out_end, lanes[j, LANE_NOUT], n, p + 1 - chunk_offset[c])
            lanes[j, LANE_POS], lanes[j, LANE_SE], lanes[j, LANE_SF], lanes[j, LANE_NOUT] = (
                p + left[j],
                e,
                f,
                n,
            )


@njit(cache=True)
def gather(chunk_first, chunk_count, out_pattern, out_end):
    """The lanes' matches in chunk order, as (pattern ids, ends)."""
    n_chunks = chunk_count.shape[0]
    total = 0
    for c in range(n_chunks):
        total += chunk_count[c]
    pattern = np.empty(total, dtype=np.int64)
    end = np.empty(total, dtype=np.int64)
    at = 0
    for c in range(n_chunks):
        first = chunk_first[c]
        for k in range(chunk_count[c]):
            pattern[at + k] = out_pattern[first + k]
            end[at + k] = out_end[first + k]
        at += chunk_count[c]
    return pattern, end
