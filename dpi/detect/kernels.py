"""Numba kernels of the detection engine: header checks and content verification on
match records (pattern occurrences in stream coordinates)."""

from __future__ import annotations

import numba as nb
import numpy as np

from dpi.detect.compile import (
    DATAGRAM_KEY_BASE,
    FLOW_ESTABLISHED,
    FLOW_NOT_ESTABLISHED,
    FLOW_TO_CLIENT,
    FLOW_TO_SERVER,
    MODE_PACKET,
    MODE_STREAM,
    NONE,
    PROTO_ANY_IP,
    PROTO_ICMP_ANY,
)
from dpi.detect.packet_checks import dsize_ok

MAX_VERIFY_STEPS = 20000  # bound on backtracking per (rule, chunk), as Suricata bounds recursion


@nb.njit(cache=True, inline="always")
def _le128(x_hi, x_lo, y_hi, y_lo):
    return x_hi < y_hi or (x_hi == y_hi and x_lo <= y_lo)


@nb.njit(cache=True)
def _addr_in(lo_hi, lo_lo, hi_hi, hi_lo, start, end, a_hi, a_lo):
    """Is the address in the rule's intervals [start, end)? They are sorted and disjoint
    (dpi.rules.intervals), so a binary search finds the one interval that could hold it:
    reputation lists of hundreds of addresses cost a few comparisons, not hundreds."""
    lo, hi = start, end
    while lo < hi:  # the first interval whose lower bound is above the address
        mid = (lo + hi) // 2
        if _le128(lo_hi[mid], lo_lo[mid], a_hi, a_lo):
            lo = mid + 1
        else:
            hi = mid
    k = lo - 1
    return k >= start and _le128(a_hi, a_lo, hi_hi[k], hi_lo[k])


@nb.njit(cache=True)
def _port_in(p_lo, p_hi, start, end, port):
    for k in range(start, end):
        if p_lo[k] <= port <= p_hi[k]:
            return True
    return False


@nb.njit(cache=True)
def header_ok(
    r,
    proto,
    s_hi,
    s_lo,
    sp,
    d_hi,
    d_lo,
    dp,
    direction,
    established,
    r_proto,
    r_bidir,
    r_flow,
    r_src,
    r_dst,
    r_sport,
    r_dport,
    a_lo_hi,
    a_lo_lo,
    a_hi_hi,
    a_hi_lo,
    p_lo,
    p_hi,
):
    rp = r_proto[r]
    if rp == PROTO_ICMP_ANY:
        if proto != 1 and proto != 58:
            return False
    elif rp != PROTO_ANY_IP and rp != proto:
        return False
    fl = r_flow[r]
    if (fl & FLOW_TO_SERVER) and direction != 0:
        return False
    if (fl & FLOW_TO_CLIENT) and direction != 1:
        return False
    if (fl & FLOW_ESTABLISHED) and not established:
        return False
    if (fl & FLOW_NOT_ESTABLISHED) and established:
        return False
    # ports only exist for TCP and UDP: other protocols match a port field of "any" only
    # (ports first: fewer intervals, and they rule out most rules)
    if (
        _port_in(p_lo, p_hi, r_dport[r, 0], r_dport[r, 1], dp)
        and _port_in(p_lo, p_hi, r_sport[r, 0], r_sport[r, 1], sp)
        and _addr_in(a_lo_hi, a_lo_lo, a_hi_hi, a_hi_lo, r_dst[r, 0], r_dst[r, 1], d_hi, d_lo)
        and _addr_in(a_lo_hi, a_lo_lo, a_hi_hi, a_hi_lo, r_src[r, 0], r_src[r, 1], s_hi, s_lo)
    ):
        return True
    if r_bidir[r]:
        return (
            _port_in(p_lo, p_hi, r_sport[r, 0], r_sport[r, 1], dp)
            and _port_in(p_lo, p_hi, r_dport[r, 0], r_dport[r, 1], sp)
            and _addr_in(a_lo_hi, a_lo_lo, a_hi_hi, a_hi_lo, r_src[r, 0], r_src[r, 1], d_hi, d_lo)
            and _addr_in(a_lo_hi, a_lo_lo, a_hi_hi, a_hi_lo, r_dst[r, 0], r_dst[r, 1], s_hi, s_lo)
        )
    return False


@nb.njit(cache=True, inline="always")
def _bounds(k, prev_end, c_len, c_relative, c_offset, c_depth, c_distance, c_within, base, min_start, we):
    """The allowed range (min_end, max_end) of content k's end, in stream coordinates.

    The rule's own offsets count from ``base`` (the stream start, or the packet's first
    payload byte when the rule is checked against one packet); ``prev_end`` is the previous
    match's end in those same coordinates; no occurrence may start before ``min_start``."""
    ln = c_len[k]
    bounded = False
    hi_end = 0
    if c_relative[k]:
        dist = c_distance[k] if c_distance[k] != NONE else 0
        lo_start = max(prev_end + dist, 0)
        if c_within[k] != NONE:
            hi_end = prev_end + dist + c_within[k]
            bounded = True
    else:
        lo_start = c_offset[k] if c_offset[k] != NONE else 0
        if c_depth[k] != NONE:
            hi_end = lo_start + c_depth[k]
            bounded = True
    min_end = max(lo_start + base, min_start) + ln
    max_end = min(we, hi_end + base) if bounded else we
    return min_end, max_end


@nb.njit(cache=True)
def verify_contents(
    cs,
    ce,
    ws,
    we,
    occ_lo,
    occ_hi,
    o_pos,
    c_len,
    c_negated,
    c_relative,
    c_offset,
    c_depth,
    c_distance,
    c_within,
    lvl_cur,
    lvl_prev,
    lvl_max,
    base,
    min_start,
):
    """Is there an assignment of occurrences to the rule's contents [cs, ce) that meets
    every constraint, uses only data up to ``we``, and ends inside (ws, we]?
    (``base``/``min_start``: see _bounds; (0, 0) checks the stream, (packet start, ws)
    the delivering packet alone.)

    ``occ_lo[k]..occ_hi[k]`` index ``o_pos`` (end offsets, sorted) for content k's pattern.
    Iterative backtracking; returns (matched, steps)."""
    n = ce - cs
    steps = 0
    k = 0
    lvl_prev[0] = 0
    lvl_max[0] = -1
    lvl_cur[0] = -1
    while k >= 0:
        steps += 1
        if steps > MAX_VERIFY_STEPS:
            return False, steps
        if k == n:
            if lvl_max[n] > ws:
                return True, steps
            k -= 1
            continue
        c = cs + k
        min_end, max_end = _bounds(
            c, lvl_prev[k], c_len, c_relative, c_offset, c_depth, c_distance, c_within, base, min_start, we
        )
        if c_negated[c]:
            if lvl_cur[k] >= 0:  # coming back: nothing left to try here
                k -= 1
                continue
            found = False
            for j in range(occ_lo[k], occ_hi[k]):
                e = o_pos[j]
                if e >= min_end and e <= max_end:
                    found = True
                    break
            if found:
                k -= 1
                continue
            lvl_cur[k] = 0
            lvl_prev[k + 1] = lvl_prev[k]
            lvl_max[k + 1] = lvl_max[k]
            lvl_cur[k + 1] = -1
            k += 1
            continue
        j = lvl_cur[k] + 1 if lvl_cur[k] >= 0 else occ_lo[k]
        # occurrences are sorted by end: skip to the first that can fit
        while j < occ_hi[k] and o_pos[j] < min_end:
            j += 1
        if j >= occ_hi[k] or o_pos[j] > max_end:
            lvl_cur[k] = -1
            k -= 1
            continue
        lvl_cur[k] = j
        e = o_pos[j]
        lvl_prev[k + 1] = e - base
        lvl_max[k + 1] = max(lvl_max[k], e)
        lvl_cur[k + 1] = -1
        k += 1
    return False, steps


@nb.njit(cache=True)
def detect_streams(
    # match records sorted by (key, pos) and by (key, pattern, pos)
    r_key,
    r_pattern,
    r_pos,
    o_key,
    o_pattern,
    o_pos,
    # new chunks sorted by (key, stream order): their group key, window and packet view
    ch_key,
    ch_ws,
    ch_we,
    ch_id,
    ch_proto,
    ch_s_hi,
    ch_s_lo,
    ch_sp,
    ch_d_hi,
    ch_d_lo,
    ch_dp,
    ch_dir,
    ch_est,
    ch_pbase,
    # rules
    r_proto,
    r_bidir,
    r_flow,
    r_fast,
    r_src,
    r_dst,
    r_sport,
    r_dport,
    r_contents,
    a_lo_hi,
    a_lo_lo,
    a_hi_hi,
    a_hi_lo,
    p_lo,
    p_hi,
    c_pattern,
    c_len,
    c_negated,
    c_relative,
    c_offset,
    c_depth,
    c_distance,
    c_within,
    pr_start,
    pr_rule,
    r_mode,
    r_bytes,
    fast_start,
    fast_rule,
    out_rule,
    out_chunk,
    counters,
):
    """Alerts (rule, chunk id) for every chunk in which a rule's match completes.
    Rules verified on the bytes (``r_bytes``) are only made candidates here: one record per
    chunk where one of their patterns ends, for the payload program to decide.
    Returns the number of alerts (may exceed the output size: then call again, larger)."""
    n_rules = r_proto.shape[0]
    cand = np.full(n_rules, -1, np.int64)
    checked = np.full(n_rules, -1, np.int64)
    max_contents = 1
    for r in range(n_rules):
        max_contents = max(max_contents, r_contents[r, 1] - r_contents[r, 0])
    occ_lo = np.zeros(max_contents + 1, np.int64)
    occ_hi = np.zeros(max_contents + 1, np.int64)
    lvl_cur = np.zeros(max_contents + 1, np.int64)
    lvl_prev = np.zeros(max_contents + 1, np.int64)
    lvl_max = np.zeros(max_contents + 1, np.int64)
    n_alerts = 0
    n_ch = ch_key.shape[0]
    g = 0
    while g < n_ch:
        key = ch_key[g]
        g_end = g
        while g_end < n_ch and ch_key[g_end] == key:
            g_end += 1
        r0 = np.searchsorted(r_key, key, side="left")
        r1 = np.searchsorted(r_key, key, side="right")
        if r1 > r0:
            o0 = np.searchsorted(o_key, key, side="left")
            o1 = np.searchsorted(o_key, key, side="right")
            # candidates: rules whose fast pattern occurs in this stream
            any_cand = False
            j = o0
            while j < o1:
                p = o_pattern[j]
                for q in range(fast_start[p], fast_start[p + 1]):
                    cand[fast_rule[q]] = key
                    any_cand = True
                while j < o1 and o_pattern[j] == p:
                    j += 1
            if any_cand:
                for ci in range(g, g_end):
                    ws = ch_ws[ci]
                    we = ch_we[ci]
                    a = r0 + np.searchsorted(r_pos[r0:r1], ws, side="right")
                    b = r0 + np.searchsorted(r_pos[r0:r1], we, side="right")
                    for m in range(a, b):
                        p = r_pattern[m]
                        for q in range(pr_start[p], pr_start[p + 1]):
                            r = pr_rule[q]
                            if cand[r] != key or checked[r] == ci:
                                continue
                            checked[r] = ci
                            counters[0] += 1
                            if not header_ok(
                                r,
                                ch_proto[ci],
                                ch_s_hi[ci],
                                ch_s_lo[ci],
                                ch_sp[ci],
                                ch_d_hi[ci],
                                ch_d_lo[ci],
                                ch_dp[ci],
                                ch_dir[ci],
                                ch_est[ci],
                                r_proto,
                                r_bidir,
                                r_flow,
                                r_src,
                                r_dst,
                                r_sport,
                                r_dport,
                                a_lo_hi,
                                a_lo_lo,
                                a_hi_hi,
                                a_hi_lo,
                                p_lo,
                                p_hi,
                            ):
                                continue
                            datagram = key >= DATAGRAM_KEY_BASE
                            if r_bytes[r]:
                                if not datagram or r_mode[r] & MODE_PACKET:
                                    if n_alerts < out_rule.shape[0]:
                                        out_rule[n_alerts] = r
                                        out_chunk[n_alerts] = ch_id[ci]
                                    n_alerts += 1
                                continue
                            cs = r_contents[r, 0]
                            ce = r_contents[r, 1]
                            for k in range(ce - cs):
                                pat = c_pattern[cs + k]
                                lo = o0 + np.searchsorted(o_pattern[o0:o1], pat, side="left")
                                hi = o0 + np.searchsorted(o_pattern[o0:o1], pat, side="right")
                                occ_lo[k] = lo
                                occ_hi[k] = hi
                            # the stream first; then the delivering packet alone, as
                            # Suricata inspects both (offset/depth then count from the
                            # packet's payload start)
                            # (a datagram's one chunk is its packet: the packet mode)
                            ok = False
                            for mode in range(2):
                                if mode == 0:
                                    if not r_mode[r] & (MODE_PACKET if datagram else MODE_STREAM):
                                        continue
                                    base, min_start = 0, 0
                                else:
                                    if datagram or not r_mode[r] & MODE_PACKET:
                                        break
                                    if (
                                        ch_pbase[ci] < 0
                                        or ch_pbase[ci] == 0
                                        and ws == 0
                                        and r_mode[r] & MODE_STREAM
                                    ):
                                        break
                                    base, min_start = ch_pbase[ci], ws
                                ok, steps = verify_contents(
                                    cs,
                                    ce,
                                    ws,
                                    we,
                                    occ_lo,
                                    occ_hi,
                                    o_pos,
                                    c_len,
                                    c_negated,
                                    c_relative,
                                    c_offset,
                                    c_depth,
                                    c_distance,
                                    c_within,
                                    lvl_cur,
                                    lvl_prev,
                                    lvl_max,
                                    base,
                                    min_start,
                                )
                                counters[1] += steps
                                if steps > MAX_VERIFY_STEPS:
                                    counters[2] += 1
                                if ok:
                                    break
                            if ok:
                                if n_alerts < out_rule.shape[0]:
                                    out_rule[n_alerts] = r
                                    out_chunk[n_alerts] = ch_id[ci]
                                n_alerts += 1
        g = g_end
    return n_alerts


@nb.njit(cache=True, inline="always")
def _segment(b_hi, b_lo, side, m, a_hi, a_lo):
    """The segment of the address on one side of the IP-only index (dpi.detect.ip_only): the
    number of boundaries at or below it, less one; valid when in [0, m - 1)."""
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) // 2
        if _le128(b_hi[side, mid], b_lo[side, mid], a_hi, a_lo):
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@nb.njit(cache=True)
def ip_only_candidates(b_hi, b_lo, bounds, seg_start, seg_rules, s_hi, s_lo, d_hi, d_lo, i, stamp, cand):
    """The indexed IP-only rules that packet i's addresses may meet, each once (``stamp``), into
    ``cand``; returns how many. Each side is looked up with both addresses, for bidirectional
    rules; the full header check decides."""
    n = 0
    for q in range(4):
        side = q % 2
        use_src = q == 0 or q == 3
        a_hi = s_hi if use_src else d_hi
        a_lo = s_lo if use_src else d_lo
        m = bounds[side]
        if m < 2:
            continue
        j = _segment(b_hi, b_lo, side, m, a_hi, a_lo)
        if j < 0 or j >= m - 1:
            continue
        for t in range(seg_start[side, j], seg_start[side, j + 1]):
            r = seg_rules[side, t]
            if stamp[r] != i:
                stamp[r] = i
                cand[n] = r
                n += 1
    return n


@nb.njit(cache=True, inline="always")
def proto_group(proto):
    """Header rules are grouped by the packet protocol they can match: 0 TCP, 1 UDP,
    2 ICMP (v4 and v6), 3 anything else (rules for "ip" are in every group)."""
    if proto == 6:
        return 0
    if proto == 17:
        return 1
    if proto == 1 or proto == 58:
        return 2
    return 3


@nb.njit(cache=True)
def detect_headers(
    group_start,
    group_rules,
    port_start,
    port_rules,
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
    r_proto,
    r_bidir,
    r_flow,
    r_src,
    r_dst,
    r_sport,
    r_dport,
    a_lo_hi,
    a_lo_lo,
    a_hi_hi,
    a_hi_lo,
    p_lo,
    p_hi,
    ip_only_done,
    capacity,
    ix_b_hi,
    ix_b_lo,
    ix_bounds,
    ix_seg_start,
    ix_seg_rules,
    ix_stamp,
    ix_cand,
    dsz_start,
    dsz_kind,
    dsz_op,
    dsz_a,
    dsz_b,
    dsz_mask,
    payload_len,
):
    """Alerts (rule, packet) for rules without positive content, as (rules, packets, n):
    the outputs grow as needed. ``group_rules[group_start[g] : group_start[g + 1]]`` lists
    the rules of protocol group g (see proto_group) checked on every packet; group g + 4
    the IP-only rules, which Suricata checks once per flow direction, on its first packet:
    ``ip_only_done[2 * flow + direction]`` remembers it. TCP and UDP rules for a few
    destination ports are indexed by port instead (``port_start[g * 65537 + port]``), as
    Suricata's signature groups by port do. IP-only rules keyed by an address set are found
    through the ``ix_*`` address index (dpi.detect.ip_only) instead of group g + 4. A rule's
    dsize (``dsz_*``, the packet's ``payload_len``) is checked first: the cheapest test, and
    the one that rules out most packets for the dsize rules that fill these groups."""
    out_rule = np.empty(max(capacity, 16), np.int64)
    out_packet = np.empty(max(capacity, 16), np.int64)
    n_alerts = 0
    for i in range(eligible.shape[0]):
        if not eligible[i] or flow[i] < 0:
            continue
        slot = 2 * flow[i] + direction[i]
        g = proto_group(proto[i])
        for pass_ in range(4):
            if pass_ == 0:  # the group's rules that are not indexed by port
                rules, lo, hi = group_rules, group_start[g], group_start[g + 1]
            elif pass_ == 1:  # TCP and UDP rules for a few destination ports: by that port
                if g > 1:
                    continue
                at = g * 65537 + dp[i]
                rules, lo, hi = port_rules, port_start[at], port_start[at + 1]
            elif pass_ == 2:  # IP-only rules, on the first packet of the flow direction
                if ip_only_done[slot]:
                    break
                ip_only_done[slot] = 1
                rules, lo, hi = group_rules, group_start[g + 4], group_start[g + 5]
            else:  # the IP-only rules the address index proposes
                n_cand = ip_only_candidates(
                    ix_b_hi, ix_b_lo, ix_bounds, ix_seg_start, ix_seg_rules,
                    s_hi[i], s_lo[i], d_hi[i], d_lo[i], i, ix_stamp, ix_cand,
                )  # fmt: skip
                rules, lo, hi = ix_cand, 0, n_cand
            for k in range(lo, hi):
                r = rules[k]
                if dsz_start[r + 1] > dsz_start[r] and not dsize_ok(
                    r, dsz_start, dsz_kind, dsz_op, dsz_a, dsz_b, dsz_mask, payload_len[i]
                ):
                    continue
                if header_ok(
                    r,
                    proto[i],
                    s_hi[i],
                    s_lo[i],
                    sp[i],
                    d_hi[i],
                    d_lo[i],
                    dp[i],
                    direction[i],
                    established[i],
                    r_proto,
                    r_bidir,
                    r_flow,
                    r_src,
                    r_dst,
                    r_sport,
                    r_dport,
                    a_lo_hi,
                    a_lo_lo,
                    a_hi_hi,
                    a_hi_lo,
                    p_lo,
                    p_hi,
                ):
                    if n_alerts == out_rule.shape[0]:
                        grown_rule = np.empty(2 * n_alerts, np.int64)
                        grown_packet = np.empty(2 * n_alerts, np.int64)
                        grown_rule[:n_alerts] = out_rule
                        grown_packet[:n_alerts] = out_packet
                        out_rule, out_packet = grown_rule, grown_packet
                    out_rule[n_alerts] = r
                    out_packet[n_alerts] = i
                    n_alerts += 1
    return out_rule, out_packet, n_alerts


@nb.njit(cache=True)
def counting_order(values, n_values, order):
    """``order`` stably re-sorted by ``values[order]`` (values in [0, n_values)): one
    counting-sort pass, O(n), where a comparison sort of millions of records is not."""
    counts = np.zeros(n_values + 1, np.int64)
    for i in order:
        counts[values[i] + 1] += 1
    for v in range(n_values):
        counts[v + 1] += counts[v]
    out = np.empty_like(order)
    for i in order:
        v = values[i]
        out[counts[v]] = i
        counts[v] += 1
    return out


@nb.njit(cache=True)
def join_records(h_group, h_pattern, h_pos, m_chunk, m_pattern, m_end, ch_group, ch_stream_pos):
    """(group, pattern, stream position) of the carried history records, then of this pass's
    matches (a match's group and position come from its chunk), in one pass over each."""
    n_h = h_group.shape[0]
    n = n_h + m_chunk.shape[0]
    group = np.empty(n, np.int64)
    pattern = np.empty(n, np.int64)
    pos = np.empty(n, np.int64)
    for k in range(n_h):
        group[k] = h_group[k]
        pattern[k] = h_pattern[k]
        pos[k] = h_pos[k]
    for k in range(m_chunk.shape[0]):
        c = m_chunk[k]
        group[n_h + k] = ch_group[c]
        pattern[n_h + k] = m_pattern[k]
        pos[n_h + k] = ch_stream_pos[c] + m_end[k]
    return group, pattern, pos


@nb.njit(cache=True)
def stream_records(
    group, n_groups, group_keys, pattern, n_patterns, pos, fast_start, fast_rule, r_contents, c_pattern
):  # fmt: skip
    """The match records that detect_streams can use, in the two orders it reads them.

    A record of pattern p in stream group g can matter only to a rule that is a candidate in g
    (its fast pattern occurs in g) and has a content on p; the others are dropped here, before
    they are sorted. (Short non-fast contents, such as a lone "i" of four log4j rules, give most
    of the records in text while their rules are rarely candidates.) The candidates are found
    from the same records detect_streams would find them from, so nothing it reads changes.

    Returns ``r_*``: by stream key, then stream position (the records' order within each group,
    kept by stable counting sorts), and ``o_*``: by stream key, then pattern, then position;
    each as (key, pattern, position)."""
    n = group.shape[0]
    group_start = np.zeros(n_groups + 1, np.int64)
    for i in range(n):
        group_start[group[i] + 1] += 1
    for g in range(n_groups):
        group_start[g + 1] += group_start[g]
    grouped = np.empty(n, np.int64)  # record indexes by group, in record order
    at = group_start[:n_groups].copy()
    for i in range(n):
        g = group[i]
        grouped[at[g]] = i
        at[g] += 1
    # Per group: its fast patterns -> candidate rules -> the patterns of their contents.
    fast_seen = np.full(n_patterns, -1, np.int64)
    needed = np.full(n_patterns, -1, np.int64)
    kept_start = np.zeros(n_groups + 1, np.int64)
    n_kept = 0
    for g in range(n_groups):
        for k in range(group_start[g], group_start[g + 1]):
            p = pattern[grouped[k]]
            if fast_seen[p] == g:
                continue
            fast_seen[p] = g
            for q in range(fast_start[p], fast_start[p + 1]):
                r = fast_rule[q]
                for c in range(r_contents[r, 0], r_contents[r, 1]):
                    needed[c_pattern[c]] = g
        for k in range(group_start[g], group_start[g + 1]):
            i = grouped[k]
            if needed[pattern[i]] == g:
                grouped[n_kept] = i  # n_kept <= k: compacts in place
                n_kept += 1
        kept_start[g + 1] = n_kept
    r_key = np.empty(n_kept, np.int64)
    r_pattern = np.empty(n_kept, np.int64)
    r_pos = np.empty(n_kept, np.int64)
    for g in range(n_groups):
        for k in range(kept_start[g], kept_start[g + 1]):
            i = grouped[k]
            r_key[k] = group_keys[g]
            r_pattern[k] = pattern[i]
            r_pos[k] = pos[i]
    # By pattern (stable, so positions stay in order), then by group (stable again).
    by_pattern = counting_order(r_pattern, n_patterns, np.arange(n_kept))
    group_of = np.empty(n_kept, np.int64)
    for g in range(n_groups):
        group_of[kept_start[g] : kept_start[g + 1]] = g
    o_key = np.empty(n_kept, np.int64)
    o_pattern = np.empty(n_kept, np.int64)
    o_pos = np.empty(n_kept, np.int64)
    at = kept_start[:n_groups].copy()
    for k in by_pattern:
        g = group_of[k]
        j = at[g]
        o_key[j] = r_key[k]
        o_pattern[j] = r_pattern[k]
        o_pos[j] = r_pos[k]
        at[g] = j + 1
    return r_key, r_pattern, r_pos, o_key, o_pattern, o_pos


@nb.njit(cache=True)
def last_per_group(group, n_groups, keep_last, group_keys, key_limit):
    """Indexes of the last ``keep_last`` records of each group whose key is below
    ``key_limit`` (records being in order within each group), in record order."""
    total = np.zeros(n_groups, np.int64)
    for g in group:
        total[g] += 1
    n_keep = 0
    for g in range(n_groups):
        if group_keys[g] < key_limit:
            n_keep += min(total[g], keep_last)
    kept = np.empty(n_keep, np.int64)
    seen = np.zeros(n_groups, np.int64)
    j = 0
    for i in range(group.shape[0]):
        g = group[i]
        if group_keys[g] < key_limit and seen[g] >= total[g] - keep_last:
            kept[j] = i
            j += 1
        seen[g] += 1
    return kept
