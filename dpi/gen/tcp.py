"""Many concurrent TCP connections written straight into a pcap with NumPy: no per-packet
Python, so a million packets take a second, not scapy's minutes.

Each flow: SYN, SYN/ACK, ACK, ``segments`` data segments client -> server, each followed
by the server's cumulative ACK (unless ``server_acks`` is off), FIN. Flows are interleaved
round-robin (all are concurrent). ``ooo`` is the fraction of data segments
swapped with their successor (sent out of order); ``drop_first`` leaves out each flow's
first data segment, so everything after it waits behind a hole: adversarial input for the
reassembler's memory caps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ETH, IP, TCP_HDR = 14, 20, 20
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


@dataclass
class SyntheticCapture:
    path: Path
    packets: int
    flows: int
    payload_bytes: int  # data bytes present in the capture (client -> server)
    bytes: int  # captured bytes of all frames (pcap file and record headers not counted)


def _put(buf, pos, value, width):
    """Write big-endian integers ``value`` (array) at byte positions ``pos`` (array)."""
    v = np.asarray(value, dtype=np.uint64)
    for k in range(width):
        buf[pos + k] = ((v >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)).astype(np.uint8)


def synthetic_tcp_pcap(
    path,
    flows: int,
    segments: int = 4,
    segment_len: int = 100,
    ooo: float = 0.0,
    drop_first: bool = False,
    seed: int = 1,
    server_acks: bool = True,
    payload: np.ndarray | None = None,
) -> SyntheticCapture:
    """Write the capture to ``path``. Segment bytes say which flow and segment they are, unless
    ``payload`` (uint8) is given: then each flow's client stream is that corpus read from a
    seeded starting point, wrapping round, so rules and matchers see realistic text."""
    rng = np.random.default_rng(seed)
    f = np.arange(flows, dtype=np.int64)
    client_ip = (10 << 24) + 1 + (f // 60000)
    client_port = 1024 + (f % 60000)
    server_ip = np.full(flows, (10 << 24) + (200 << 16) + 1, dtype=np.int64)
    isn_c = rng.integers(0, 2**32, flows, dtype=np.int64)
    isn_s = rng.integers(0, 2**32, flows, dtype=np.int64)

    # the order of data segments per flow, with adjacent swaps for out-of-order delivery
    order = np.tile(np.arange(segments), (flows, 1))
    if ooo > 0 and segments > 1:
        swap = rng.random((flows, segments - 1)) < ooo
        for k in range(segments - 1):  # a loop over segment positions, not packets
            s = swap[:, k]
            order[s, k], order[s, k + 1] = order[s, k + 1].copy(), order[s, k].copy()
    sent = order
    if drop_first:  # every row holds segment 0 once: removing it keeps the rows' order
        sent = order[order != 0].reshape(flows, segments - 1)

    # the server's cumulative ACK after each data segment: the segments received in order
    n_sent = sent.shape[1]
    rows = np.arange(flows)
    got = np.zeros((flows, segments + 1), dtype=bool)
    in_order = np.zeros(flows, dtype=np.int64)
    acked = np.zeros((flows, n_sent), dtype=np.int64)
    for k in range(n_sent):  # a loop over segment positions, not packets
        got[rows, sent[:, k]] = True
        while True:
            more = got[rows, in_order] & (in_order < segments)
            if not more.any():
                break
            in_order += more
        acked[:, k] = in_order

    # packet table: kind 0 SYN, 1 SYN/ACK, 2 ACK, 3 data (segment index), 4 FIN, 5 server
    # ACK (segments acknowledged); round-robin
    data_kind = np.full((flows, n_sent), 3)
    data_seg = sent
    if server_acks:
        data_kind = np.stack([data_kind, np.full((flows, n_sent), 5)], axis=2).reshape(flows, 2 * n_sent)
        data_seg = np.stack([sent, acked], axis=2).reshape(flows, 2 * n_sent)
    per_flow = 3 + data_kind.shape[1] + 1
    kind = np.concatenate(
        [
            np.zeros((flows, 1)),
            np.ones((flows, 1)),
            np.full((flows, 1), 2),
            data_kind,
            np.full((flows, 1), 4),
        ],
        axis=1,
    ).astype(np.int64)
    seg = np.concatenate([np.full((flows, 3), -1), data_seg, np.full((flows, 1), -1)], axis=1).astype(
        np.int64
    )
    kind, seg = kind.T.reshape(-1), seg.T.reshape(-1)  # step by step, every flow in turn
    flow = np.tile(f, per_flow)
    n = len(kind)
    plen = np.where(kind == 3, segment_len, 0)
    rec_len = 16 + ETH + IP + TCP_HDR + plen
    start = 24 + np.concatenate([[0], np.cumsum(rec_len)[:-1]])
    buf = np.zeros(24 + int(rec_len.sum()), dtype=np.uint8)
    buf[:24] = np.frombuffer(
        np.array([0xA1B2C3D4, 0x00040002, 0, 0, 262144, 1], dtype="<u4").tobytes()[:24], dtype=np.uint8
    )
    hdr = np.zeros((n, 4), dtype="<u4")
    t_us = np.arange(n, dtype=np.int64)  # one microsecond apart
    hdr[:, 0] = 1_600_000_000 + t_us // 1_000_000
    hdr[:, 1] = t_us % 1_000_000
    hdr[:, 2] = rec_len - 16
    hdr[:, 3] = rec_len - 16
    hb = hdr.view(np.uint8).reshape(n, 16)
    for k in range(16):
        buf[start + k] = hb[:, k]
    e = start + 16
    buf[e + 12] = 0x08  # EtherType IPv4
    ip = e + ETH
    to_server = (kind != 1) & (kind != 5)
    _put(buf, ip, np.full(n, 0x4500), 2)
    _put(buf, ip + 2, IP + TCP_HDR + plen, 2)
    _put(buf, ip + 6, np.full(n, 0x4000), 2)
    buf[ip + 8] = 64
    buf[ip + 9] = 6
    _put(buf, ip + 12, np.where(to_server, client_ip[flow], server_ip[flow]), 4)
    _put(buf, ip + 16, np.where(to_server, server_ip[flow], client_ip[flow]), 4)
    tcp = ip + IP
    _put(buf, tcp, np.where(to_server, client_port[flow], 80), 2)
    _put(buf, tcp + 2, np.where(to_server, 80, client_port[flow]), 2)
    cseq = isn_c[flow] + 1 + np.maximum(seg, 0) * segment_len
    cseq = np.where(
        kind == 0, isn_c[flow], np.where(kind == 4, isn_c[flow] + 1 + segments * segment_len, cseq)
    )
    seq = np.select([kind == 1, kind == 5], [isn_s[flow], isn_s[flow] + 1], cseq) % 2**32
    ack = (
        np.select(
            [kind == 0, kind == 1, kind == 5],
            [0, isn_c[flow] + 1, isn_c[flow] + 1 + np.maximum(seg, 0) * segment_len],
            isn_s[flow] + 1,
        )
        % 2**32
    )
    _put(buf, tcp + 4, seq, 4)
    _put(buf, tcp + 8, ack, 4)
    buf[tcp + 12] = 0x50
    flags = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 5],
        [SYN, SYN | ACK, ACK, PSH | ACK, ACK],
        FIN | ACK,
    )
    buf[tcp + 13] = flags
    _put(buf, tcp + 14, np.full(n, 65535), 2)
    # payload: each segment's bytes say which flow and segment they are
    data_rows = np.nonzero(kind == 3)[0]
    if len(data_rows) and segment_len:
        corpus = None
        if payload is not None and len(payload):
            corpus = np.asarray(payload, dtype=np.uint8)
            flow_start = rng.integers(0, len(corpus), flows, dtype=np.int64)
        step = np.arange(segment_len)[None, :]
        # a block of rows at a time: the index arrays are rows x segment_len int64s
        block = max(1, (1 << 22) // segment_len)
        for first in range(0, len(data_rows), block):  # a loop over blocks of packets, not packets
            rows = data_rows[first : first + block]
            pos = (tcp[rows] + TCP_HDR)[:, None] + step
            if corpus is not None:
                at = flow_start[flow[rows], None] + seg[rows, None] * segment_len
                buf[pos] = corpus[(at + step) % len(corpus)]
            else:
                buf[pos] = ((step + flow[rows, None] * 7 + seg[rows, None] * 13) % 251).astype(np.uint8)
    Path(path).write_bytes(buf.tobytes())
    return SyntheticCapture(Path(path), n, flows, int(plen.sum()), int((rec_len - 16).sum()))


def expected_client_stream(flow: int, segments: int, segment_len: int, drop_first: bool = False) -> bytes:
    """The bytes the client of ``flow`` sent, in stream order (a dropped segment left out)."""
    parts = []
    for s in range(segments):
        if drop_first and s == 0:
            continue
        parts.append(((np.arange(segment_len) + flow * 7 + s * 13) % 251).astype(np.uint8).tobytes())
    return b"".join(parts)
