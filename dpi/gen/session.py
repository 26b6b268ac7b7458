"""TCP conversations as frame columns: handshake, messages cut into MSS-sized segments each
acknowledged by the other side, and the closing FIN exchange, for many flows at once.

The input is a message table in conversation order (per flow: who sends which bytes); the output is
one row per TCP segment, in capture order, ready for ``dpi.gen.frames``. Everything is NumPy over
whole columns: sequence numbers are running sums of the bytes each side has sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpi.gen.frames import ACK, FIN, PSH, SYN, TCP, UDP, Frames, build_datagrams

TO_SERVER, TO_CLIENT = 0, 1
MSS = 1460


@dataclass
class FlowSpec:
    """One row per flow."""

    ip_version: np.ndarray  # 4 or 6
    client_hi: np.ndarray  # uint64 pairs, as the decoder's columns
    client_lo: np.ndarray
    server_hi: np.ndarray
    server_lo: np.ndarray
    client_port: np.ndarray
    server_port: np.ndarray
    start_ns: np.ndarray  # when the SYN is sent
    isn_client: np.ndarray
    isn_server: np.ndarray
    vlan: np.ndarray | int = -1
    gap_ns: np.ndarray | int = 50_000  # between one segment of a flow and the next
    mss: np.ndarray | int = MSS  # the most payload bytes a segment of the flow carries
    window: np.ndarray | int = 65535  # the window both sides advertise


@dataclass
class Messages:
    """One row per message, grouped by flow and in conversation order within a flow."""

    flow: np.ndarray
    direction: np.ndarray  # TO_SERVER or TO_CLIENT
    data: np.ndarray  # uint8, every message's bytes
    offset: np.ndarray
    length: np.ndarray
    encrypted: np.ndarray | None = None  # per message: its bytes are ciphertext (TLS records)


@dataclass
class Segments:
    flow: np.ndarray
    direction: np.ndarray
    ts_ns: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray
    payload_off: np.ndarray  # into Messages.data
    payload_len: np.ndarray
    window: np.ndarray | None = None  # advertised window; None: the flows' own


def _sum_before(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For each row, the sum of ``values`` (>= 0) over the earlier rows of the same group."""
    order = np.argsort(groups, kind="stable")
    v = values[order]
    before = np.cumsum(v) - v  # over the group-sorted rows: non-decreasing
    g = groups[order]
    first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, np.bool_)
    base = np.maximum.accumulate(np.where(first, before, 0)) if len(g) else before
    out = np.empty_like(before)
    out[order] = before - base
    return out


def tcp_segments(flows: FlowSpec, messages: Messages, mss: int | None = None) -> Segments:
    """Every segment of every flow, in capture order (by timestamp, then flow). ``mss``
    overrides the flows' own."""
    n_flows = len(flows.start_ns)
    msg_flow = np.asarray(messages.flow, dtype=np.int64)
    msg_dir = np.asarray(messages.direction, dtype=np.int64)
    msg_len = np.asarray(messages.length, dtype=np.int64)
    msg_off = np.asarray(messages.offset, dtype=np.int64)
    if np.any(np.diff(msg_flow) < 0):
        raise ValueError("messages must be grouped by flow, in conversation order")

    per_flow_mss = np.broadcast_to(np.asarray(flows.mss if mss is None else mss, dtype=np.int64), (n_flows,))
    mss = per_flow_mss[msg_flow]  # per message
    if np.any(mss < 1):
        raise ValueError("a segment carries at least one byte (mss >= 1)")
    # data segments: each message cut into ceil(len / mss) pieces (an empty message sends nothing)
    pieces = (msg_len + mss - 1) // mss
    msg_of = np.repeat(np.arange(len(msg_len)), pieces)
    first_piece = np.repeat(np.cumsum(pieces) - pieces, pieces)
    k = np.arange(len(msg_of)) - first_piece
    d_mss = mss[msg_of]
    d_off = msg_off[msg_of] + k * d_mss
    d_len = np.minimum(d_mss, msg_len[msg_of] - k * d_mss)
    d_flow = msg_flow[msg_of]
    d_dir = msg_dir[msg_of]
    # bytes each side sent before the segment, in conversation order
    from_client = np.where(d_dir == TO_SERVER, d_len, 0)
    client_before = _sum_before(from_client, d_flow)
    server_before = _sum_before(d_len - from_client, d_flow)
    sent_before = np.where(d_dir == TO_SERVER, client_before, server_before)
    other_before = np.where(d_dir == TO_SERVER, server_before, client_before)

    isn_c = np.asarray(flows.isn_client, dtype=np.int64)
    isn_s = np.asarray(flows.isn_server, dtype=np.int64)
    own_isn = np.where(d_dir == TO_SERVER, isn_c[d_flow], isn_s[d_flow])
    peer_isn = np.where(d_dir == TO_SERVER, isn_s[d_flow], isn_c[d_flow])
    data_seq = own_isn + 1 + sent_before
    data_ack = peer_isn + 1 + other_before
    # the other side acknowledges each data segment
    ack_seq, ack_ack = data_ack, data_seq + d_len

    # per flow totals, for the closing exchange
    per_flow_data = np.bincount(d_flow, minlength=n_flows)
    c_total = np.bincount(d_flow, weights=from_client, minlength=n_flows).astype(np.int64)
    s_total = np.bincount(d_flow, weights=d_len - from_client, minlength=n_flows).astype(np.int64)
    f = np.arange(n_flows)
    c_next, s_next = isn_c + 1 + c_total, isn_s + 1 + s_total

    # rows: kind order inside a flow: SYN, SYN/ACK, ACK, (data, ack)*, FIN, FIN/ACK, ACK
    n_data = len(d_flow)
    flow_col = np.concatenate([f, f, f, d_flow, d_flow, f, f, f])
    dir_col = np.concatenate([
        np.full(n_flows, TO_SERVER), np.full(n_flows, TO_CLIENT), np.full(n_flows, TO_SERVER),
        d_dir, 1 - d_dir,
        np.full(n_flows, TO_SERVER), np.full(n_flows, TO_CLIENT), np.full(n_flows, TO_SERVER),
    ])  # fmt: skip
    seq_col = np.concatenate([isn_c, isn_s, isn_c + 1, data_seq, ack_seq, c_next, s_next, c_next + 1])
    ack_col = np.concatenate([np.zeros(n_flows, np.int64), isn_c + 1, isn_s + 1, data_ack, ack_ack,
                              s_next, c_next + 1, s_next + 1])  # fmt: skip
    flag_col = np.concatenate([
        np.full(n_flows, SYN), np.full(n_flows, SYN | ACK), np.full(n_flows, ACK),
        np.full(n_data, PSH | ACK), np.full(n_data, ACK),
        np.full(n_flows, FIN | ACK), np.full(n_flows, FIN | ACK), np.full(n_flows, ACK),
    ]).astype(np.uint8)  # fmt: skip
    off_col = np.concatenate(
        [np.zeros(3 * n_flows, np.int64), d_off, np.zeros(n_data + 3 * n_flows, np.int64)]
    )
    len_col = np.concatenate(
        [np.zeros(3 * n_flows, np.int64), d_len, np.zeros(n_data + 3 * n_flows, np.int64)]
    )
    # step of each row within its flow: handshake 0..2, data segment i at 3 + 2i, its ACK after it
    index_in_flow = np.arange(n_data) - np.searchsorted(d_flow, d_flow, side="left")
    data_step = 3 + 2 * index_in_flow
    end_step = 3 + 2 * per_flow_data
    step = np.concatenate([np.zeros(n_flows), np.ones(n_flows), np.full(n_flows, 2), data_step, data_step + 1,
                           end_step, end_step + 1, end_step + 2]).astype(np.int64)  # fmt: skip
    gap = np.broadcast_to(np.asarray(flows.gap_ns, dtype=np.int64), (n_flows,))
    ts = np.asarray(flows.start_ns, dtype=np.int64)[flow_col] + step * gap[flow_col]
    order = np.lexsort((step, flow_col, ts))
    return Segments(
        flow=flow_col[order], direction=dir_col[order], ts_ns=ts[order], seq=seq_col[order] % 2**32,
        ack=ack_col[order] % 2**32, flags=flag_col[order], payload_off=off_col[order],
        payload_len=len_col[order],
        window=np.broadcast_to(np.asarray(flows.window, dtype=np.int64), (n_flows,))[flow_col[order]],
    )  # fmt: skip


def _directed(flows: FlowSpec, f: np.ndarray, to_server: np.ndarray) -> dict:
    """Per row (of flow ``f``, sent by the client where ``to_server``): IP version, addresses and
    ports as sender and receiver, and VLAN."""

    def pick(client, server):
        return np.where(to_server, np.asarray(client)[f], np.asarray(server)[f])

    n_flows = len(flows.start_ns)
    return {
        "ip_version": np.asarray(flows.ip_version, dtype=np.uint8)[f],
        "src_hi": pick(flows.client_hi, flows.server_hi),
        "src_lo": pick(flows.client_lo, flows.server_lo),
        "dst_hi": pick(flows.server_hi, flows.client_hi),
        "dst_lo": pick(flows.server_lo, flows.client_lo),
        "sport": pick(flows.client_port, flows.server_port),
        "dport": pick(flows.server_port, flows.client_port),
        "vlan": np.broadcast_to(np.asarray(flows.vlan), (n_flows,))[f],
    }


_ADDRESSES = ("ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo")


def segment_frames(flows: FlowSpec, messages: Messages, segments: Segments) -> Frames:
    """The frames of the segments: addresses and ports from the flows, by direction."""
    f, to_server = segments.flow, segments.direction == TO_SERVER
    ends = _directed(flows, f, to_server)
    window = segments.window
    if window is None:
        window = np.broadcast_to(np.asarray(flows.window, dtype=np.int64), (len(flows.start_ns),))[f]
    buf, off, length = build_datagrams(
        proto=TCP, **{k: ends[k] for k in (*_ADDRESSES, "sport", "dport")}, payload_buf=messages.data,
        payload_off=segments.payload_off, payload_len=segments.payload_len, seq=segments.seq,
        ack=segments.ack, flags=segments.flags, window=window,
    )  # fmt: skip
    return Frames(
        ts_ns=segments.ts_ns, **{k: ends[k] for k in _ADDRESSES}, proto=TCP, data_buf=buf, data_off=off,
        data_len=length, to_server=to_server, vlan=ends["vlan"],
    )  # fmt: skip


def udp_datagrams(flows: FlowSpec, messages: Messages) -> tuple[Frames, np.ndarray]:
    """One datagram per message, in conversation order, ``gap_ns`` apart within a flow; with each
    frame's flow index."""
    f = np.asarray(messages.flow, dtype=np.int64)
    if np.any(np.diff(f) < 0):
        raise ValueError("messages must be grouped by flow, in conversation order")
    to_server = np.asarray(messages.direction) == TO_SERVER
    step = np.arange(len(f)) - np.searchsorted(f, f, side="left")
    gap = np.broadcast_to(np.asarray(flows.gap_ns, dtype=np.int64), (len(flows.start_ns),))
    ts = np.asarray(flows.start_ns, dtype=np.int64)[f] + step * gap[f]
    ends = _directed(flows, f, to_server)
    buf, off, length = build_datagrams(
        proto=UDP, **{k: ends[k] for k in (*_ADDRESSES, "sport", "dport")}, payload_buf=messages.data,
        payload_off=messages.offset, payload_len=messages.length,
    )  # fmt: skip
    frames = Frames(
        ts_ns=ts, **{k: ends[k] for k in _ADDRESSES}, proto=UDP, data_buf=buf, data_off=off, data_len=length,
        to_server=to_server, vlan=ends["vlan"],
    )  # fmt: skip
    return frames, f
