"""The verify stage: candidates (rule, packet, stream bytes) that the matcher stage found are
checked for what occurrences cannot tell: header keywords on the packet, dsize, and the
payload program on the bytes (pcre, byte_*, isdataat, endswith, byte_extract variables).

A candidate may be inspected two ways, as Suricata does: on the reassembled stream chunk
(its bytes, offsets counted from the chunk's start) and on the delivering packet's own
payload. A rule's mode bits say which it allows (flow only_stream / no_stream, dsize).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from dpi.detect.compile import MODE_PACKET, MODE_STREAM
from dpi.detect.packet_checks import dsize_ok, packet_checks_ok
from dpi.detect.payload import ABORTED, MATCH, run_program
from dpi.detect.program import MAX_VARIABLES

PAYLOAD_BUDGET = 200_000  # steps per (rule, buffer): regex steps, compared positions, ops


@nb.njit(cache=True)
def verify_candidates(
    c_rule,
    c_packet,
    c_stream_src,  # -1: no stream bytes; 0: the packet buffer; 1: the side buffer
    c_stream_off,
    c_stream_len,
    c_own,  # 1: the stream bytes are one packet's whole payload
    pkt_buf,
    side_buf,
    # packet columns (index c_packet)
    ip_version,
    l3_offset,
    l4_offset,
    proto,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    tcp_seq,
    tcp_ack,
    tcp_flags,
    icmp_type,
    icmp_code,
    ttl,
    frag_offset,
    frag_more,
    frag_id,
    is_fragment,
    payload_offset,
    payload_len,
    # rules
    r_mode,
    r_bytes,
    chk_start,
    chk_kind,
    chk_op,
    chk_a,
    chk_b,
    chk_mask,
    dsz_start,
    dsz_kind,
    dsz_op,
    dsz_a,
    dsz_b,
    dsz_mask,
    r_prog,
    kind,
    flags,
    param,
    var,
    patterns,
    rx,
    keep,
    counters,
):
    """keep[i] = candidate i passes. counters: [programs run, program steps, aborted]."""
    values = np.zeros(MAX_VARIABLES, np.int64)
    for i in range(c_rule.shape[0]):
        r = c_rule[i]
        p = c_packet[i]
        keep[i] = False
        has_checks = chk_start[r + 1] > chk_start[r]
        has_dsize = dsz_start[r + 1] > dsz_start[r]
        if (has_checks or has_dsize) and p < 0:
            continue  # data flushed at the end of a flow has no packet to check
        if has_checks and not packet_checks_ok(
            r, chk_start, chk_kind, chk_op, chk_a, chk_b, chk_mask, p, pkt_buf, ip_version, l3_offset,
            l4_offset, proto, src_hi, src_lo, dst_hi, dst_lo, tcp_seq, tcp_ack, tcp_flags, icmp_type,
            icmp_code, ttl, frag_offset, frag_more, frag_id, is_fragment, payload_offset,
        ):  # fmt: skip
            continue
        if has_dsize and not dsize_ok(r, dsz_start, dsz_kind, dsz_op, dsz_a, dsz_b, dsz_mask, payload_len[p]):
            continue
        if not r_bytes[r]:
            keep[i] = True
            continue
        ps, pe = r_prog[r, 0], r_prog[r, 1]
        for mode in range(2):
            if mode == 0:  # the stream chunk (for the packet mode too when it is one packet's payload)
                if c_stream_src[i] < 0:
                    continue
                if not r_mode[r] & MODE_STREAM and not (c_own[i] and r_mode[r] & MODE_PACKET):
                    continue
                buf = pkt_buf if c_stream_src[i] == 0 else side_buf
                start = c_stream_off[i]
                end = start + c_stream_len[i]
            else:  # the packet's own payload (datagrams, and packets checked alone)
                if p < 0 or not r_mode[r] & MODE_PACKET:
                    continue
                buf = pkt_buf
                start = payload_offset[p]
                end = start + payload_len[p]
            if end > buf.shape[0] or start < 0:
                continue
            result, steps = run_program(
                ps, pe, kind, flags, param, var, patterns, rx, buf, start, end, PAYLOAD_BUDGET, values
            )
            counters[0] += 1
            counters[1] += steps
            if result == ABORTED:
                counters[2] += 1
            elif result == MATCH:
                keep[i] = True
                break
