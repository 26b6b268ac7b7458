"""Numba kernels of the prefilter layout (see prefilter.py): filter a block, then verify its candidates.

The filter pass over a block has no data-dependent branch: each byte extends a 64-bit window of
folded bytes, probes the ``pair`` table and the two hashed bit filters with independent loads, and
appends its position to the candidate list with a branch-free store (the write index grows only when
a probe passed). The verify pass then walks the few candidates. Splitting the two keeps the branch
predictor out of the byte loop.

Chunks are scanned in order. A streaming chunk reads the bytes before it from its stream's history:
``states[s, :2]`` is the history length (little-endian), ``states[s, 2:]`` the history, right-aligned.
The kernel never writes past its output arrays: before each candidate it checks for room for the most
ids one candidate can report, and when there is none returns OVERFLOW, dropping what the current block
wrote, with the block's start in ``resume``; the caller grows the outputs and calls again. A long key
is found up to three positions after its probe, so each chunk's matches get a final insertion sort.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u64

from .prefilter import (
    C_LONG,
    C_MID,
    C_THREE,
    C_TWO,
    CLASS_WINDOWS,
    E_KEY_SHIFT,
    E_PRE,
    E_PRE_MASK,
    E_WINDOW,
    FLAG_LONG,
    FLAG_MID,
    HASH_MULTIPLIER,
    LONG_STEP,
    P_BUCKET_BITS,
    P_BUCKET_OFF,
    P_FILTER_BITS,
    P_FILTER_OFF,
    P_MASK,
    P_WIDE_BITS,
    P_WIDE_OFF,
    PAIR_ONE,
    PAIR_THREE,
    PAIR_TWO,
    PRE_MULTIPLIER,
)
from .scan import DONE, OVERFLOW

BLOCK = 4096  # bytes filtered before their candidates are verified
HISTORY_HEADER = 2  # bytes of a stream state before its history

_MULT = np.uint64(HASH_MULTIPLIER)
_PRE_MULT = np.uint64(PRE_MULTIPLIER)
# Window bytes of each class (the kernel's bucket walks take them as constants)
W_2, W_3, W_MID, W_LONG = CLASS_WINDOWS


@njit(cache=True)
def _window_before(buf, start, pos, history_len, states, stream, history_end, fold):
    """The 64-bit folded window of the 8 bytes before chunk position pos (missing bytes as 0)."""
    w = u64(0)
    for j in range(pos - 8, pos):
        w <<= u64(8)
        if j >= -history_len:
            w |= u64(fold[buf[start + j] if j >= 0 else states[stream, history_end + j]])
    return w


@njit(cache=True)
def _sort_matches(out_pattern, out_end, first, n):
    """Insertion sort of out_*[first:n] by (end, pattern): nearly sorted, a long key's match at most
    LONG_STEP - 1 positions late."""
    for a in range(first + 1, n):
        e = out_end[a]
        p = out_pattern[a]
        b = a - 1
        while b >= first and (out_end[b] > e or (out_end[b] == e and out_pattern[b] > p)):
            out_end[b + 1] = out_end[b]
            out_pattern[b + 1] = out_pattern[b]
            b -= 1
        out_end[b + 1] = e
        out_pattern[b + 1] = p


@njit(cache=True)
def scan_kernel(
    buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states,
    fold, pair, one_ptr, one_keys, filters, params, bucket_ptr, entries,
    key_bytes, key_ptr, key_nocase, ids_ptr, ids, max_co,
    out_pattern, out_end, chunk_count, resume, count_only,
):  # fmt: skip
    """Scan chunks from chunk resume[0], position resume[1]; DONE or OVERFLOW (resume says where).

    Match ends are exclusive and chunk-relative, and each chunk's matches are sorted by (end, pattern).
    ``resume[2]`` is the next write index into out_*, ``resume[3]`` where the current chunk's matches
    start. With count_only nothing is written and chunk_count still counts. On OVERFLOW the block
    being verified is dropped, to be done again after the caller grows the outputs.
    """
    history_end = states.shape[1]
    capacity = out_pattern.shape[0]
    cand_pos = np.empty(BLOCK, dtype=np.int64)
    cand_flag = np.empty(BLOCK, dtype=np.uint8)
    cand_window = np.empty(BLOCK, dtype=np.uint64)
    mid_off = u64(params[C_MID, P_FILTER_OFF])
    mid_shift = u64(64 - params[C_MID, P_FILTER_BITS])
    mid_mask = u64(params[C_MID, P_MASK])
    long_off = u64(params[C_LONG, P_FILTER_OFF])
    long_shift = u64(64 - params[C_LONG, P_FILTER_BITS])
    seven = u64(7)
    three = u64(3)
    one = u64(1)
    four = u64(4)
    eight = u64(8)
    pair_mask = u64(0xFFFF)
    two_mask = u64(params[C_TWO, P_MASK])
    two_off = params[C_TWO, P_BUCKET_OFF]
    two_shift = u64(64 - params[C_TWO, P_BUCKET_BITS])
    three_mask = u64(params[C_THREE, P_MASK])
    three_off = params[C_THREE, P_BUCKET_OFF]
    three_shift = u64(64 - params[C_THREE, P_BUCKET_BITS])
    midn_off = params[C_MID, P_BUCKET_OFF]
    midn_shift = u64(64 - params[C_MID, P_BUCKET_BITS])
    midw_bits = params[C_MID, P_WIDE_BITS]
    midw_off = params[C_MID, P_WIDE_OFF]
    midw_shift = u64(64 - midw_bits)
    longn_off = params[C_LONG, P_BUCKET_OFF]
    longn_shift = u64(64 - params[C_LONG, P_BUCKET_BITS])
    longw_bits = params[C_LONG, P_WIDE_BITS]
    longw_off = params[C_LONG, P_WIDE_OFF]
    longw_shift = u64(64 - longw_bits)
    step_mask = LONG_STEP - 1
    n = resume[2]
    for c in range(resume[0], chunk_src.shape[0]):
        buf = buf_a if chunk_src[c] == 0 else buf_b
        start = chunk_offset[c]
        length = chunk_len[c]
        stream = chunk_stream[c]
        history_len = 0
        if stream >= 0 and history_end > HISTORY_HEADER:
            history_len = np.int64(states[stream, 0]) | (np.int64(states[stream, 1]) << 8)
        pos = 0
        if c == resume[0]:
            pos = resume[1]
        else:
            resume[3] = n
        chunk_first = resume[3]
        w = _window_before(buf, start, pos, history_len, states, stream, history_end, fold)
        while pos < length:
            stop = min(length, pos + BLOCK)
            block_first = n
            # Filter: independent probes, a branch-free append of the positions that pass.
            n_cand = u64(0)
            for i in range(pos, stop):
                w = (w << eight) | u64(fold[buf[u64(start + i)]])
                m = pair[w & pair_mask]
                h = ((w & mid_mask) * _MULT) >> mid_shift
                m |= ((filters[mid_off + (h >> three)] >> (h & seven)) & one) << three
                if (i & step_mask) == step_mask or i < step_mask:
                    h = (w * _MULT) >> long_shift
                    m |= ((filters[long_off + (h >> three)] >> (h & seven)) & one) << four
                cand_pos[n_cand] = i
                cand_flag[n_cand] = m
                cand_window[n_cand] = w
                n_cand += u64(m != 0)
            # Verify. The bucket walks are inlined (a helper taking arrays costs NRT reference
            # counting on every call); each class's parameters are hoisted out of the loop. The
            # narrow-then-wide pair of walks is written out for both classes that have one: moved
            # into a second inlined helper it made the whole scan 30-45% slower (measured).
            for k in range(n_cand):
                i = cand_pos[k]
                m = cand_flag[k]
                v = cand_window[k]
                if not count_only and capacity - n < LONG_STEP * max_co:
                    resume[0] = c
                    resume[1] = pos
                    resume[2] = block_first
                    return OVERFLOW
                if m & PAIR_ONE:
                    b = buf[start + i]
                    for e in range(one_ptr[b], one_ptr[b + 1]):
                        u = one_keys[e]
                        for j in range(ids_ptr[u], ids_ptr[u + 1]):
                            if not count_only:
                                out_pattern[n] = ids[j]
                                out_end[n] = i + 1
                            n += 1
                    if m == PAIR_ONE:
                        continue  # the common case on binary data: only a 1-byte key ends here
                if m & PAIR_TWO:
                    value = v & two_mask
                    at = two_off + _slot(value, two_shift)
                    n = _walk(
                        value, u64(0), at, False, i, W_2, buf, start, length, history_len, states, stream,
                        history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr, ids,
                        out_pattern, out_end, n, count_only,
                    )  # fmt: skip
                if m & PAIR_THREE:
                    value = v & three_mask
                    at = three_off + _slot(value, three_shift)
                    n = _walk(
                        value, u64(0), at, False, i, W_3, buf, start, length, history_len, states, stream,
                        history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr, ids,
                        out_pattern, out_end, n, count_only,
                    )  # fmt: skip
                if m & FLAG_MID:
                    value = v & mid_mask
                    pre = v >> u64(8 * W_MID)  # the folded bytes before the window
                    at = midn_off + _slot(value, midn_shift)
                    n = _walk(
                        value, pre, at, False, i, W_MID, buf, start, length, history_len, states, stream,
                        history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr, ids,
                        out_pattern, out_end, n, count_only,
                    )  # fmt: skip
                    if midw_bits:
                        at = midw_off + _slot(value ^ (pre * _PRE_MULT), midw_shift)
                        n = _walk(
                            value, pre, at, False, i, W_MID, buf, start, length, history_len, states, stream,
                            history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr,
                            ids, out_pattern, out_end, n, count_only,
                        )  # fmt: skip
                if m & FLAG_LONG:
                    shift_any = (i & step_mask) == step_mask
                    # The 8 folded bytes before the window (missing ones as 0)
                    pre = u64(0)
                    if i >= 15:
                        for j in range(start + i - 15, start + i - 7):
                            pre = (pre << eight) | u64(fold[buf[j]])
                    else:
                        for j in range(i - 15, i - 7):
                            pre <<= eight
                            if j >= -history_len:
                                byte = buf[start + j] if j >= 0 else states[stream, history_end + j]
                                pre |= u64(fold[byte])
                    at = longn_off + _slot(v, longn_shift)
                    n = _walk(
                        v, pre, at, shift_any, i, W_LONG, buf, start, length, history_len, states, stream,
                        history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr, ids,
                        out_pattern, out_end, n, count_only,
                    )  # fmt: skip
                    if longw_bits:
                        at = longw_off + _slot(v ^ (pre * _PRE_MULT), longw_shift)
                        n = _walk(
                            v, pre, at, shift_any, i, W_LONG, buf, start, length, history_len, states, stream,
                            history_end, fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr,
                            ids, out_pattern, out_end, n, count_only,
                        )  # fmt: skip
            pos = stop
        if not count_only:
            _sort_matches(out_pattern, out_end, chunk_first, n)
        chunk_count[c] = n - chunk_first
        if stream >= 0 and history_end > HISTORY_HEADER:
            _keep_history(states, stream, buf, start, length, history_len, history_end)
        resume[1] = 0
    resume[0] = chunk_src.shape[0]
    resume[2] = n
    return DONE


@njit(cache=True, inline="always")
def _slot(hashed, shift):
    """The bucket of a hashed window in a table of 2**(64 - shift) buckets."""
    return np.int64((hashed * _MULT) >> shift)


@njit(cache=True, inline="always")
def _walk(
    value, pre, at, shift_any, i, window, buf, start, length, history_len, states, stream, history_end,
    fold, bucket_ptr, entries, key_bytes, key_ptr, key_nocase, ids_ptr, ids, out_pattern, out_end, n,
    count_only,
):  # fmt: skip
    """Check the entries of bucket ``at`` against a candidate window ending at chunk position i (its
    folded value, and the folded bytes before it); write each key that matches; the new write index."""
    for e in range(bucket_ptr[at], bucket_ptr[at + 1]):
        if entries[e, E_WINDOW] != value or (pre ^ entries[e, E_PRE]) & entries[e, E_PRE_MASK]:
            continue
        r = np.int64(entries[e, E_KEY_SHIFT] >> u64(32))
        if r and not shift_any:
            continue
        end = i + r
        if end >= length:
            continue  # ends in the next chunk: found there
        u = np.int64(entries[e, E_KEY_SHIFT] & u64(0xFFFFFFFF))
        first = key_ptr[u]
        size = key_ptr[u + 1] - first
        s = end - size + 1
        if s < -history_len:
            continue
        nocase = key_nocase[u]
        # A nocase key's window already matched (folded); an exact key's only folded.
        q = size - 1 - window if nocase and r == 0 else size - 1
        while q >= 0:
            j = s + q
            byte = buf[start + j] if j >= 0 else states[stream, history_end + j]
            if nocase:
                byte = fold[byte]
            if byte != key_bytes[first + q]:
                break
            q -= 1
        if q >= 0:
            continue
        for j in range(ids_ptr[u], ids_ptr[u + 1]):
            if not count_only:
                out_pattern[n] = ids[j]
                out_end[n] = end + 1
            n += 1
    return n


@njit(cache=True)
def _keep_history(states, stream, buf, start, length, history_len, history_end):
    """The stream's history becomes the last (row width - 2) bytes of history + chunk."""
    width = history_end - 2
    keep = min(width, history_len + length)
    if length >= keep:
        for k in range(keep):
            states[stream, history_end - keep + k] = buf[start + length - keep + k]
    else:
        old = keep - length  # history bytes that stay, moved left by length
        for k in range(old):
            states[stream, history_end - keep + k] = states[stream, history_end - old + k]
        for k in range(length):
            states[stream, history_end - length + k] = buf[start + k]
    states[stream, 0] = keep & 0xFF
    states[stream, 1] = keep >> 8
