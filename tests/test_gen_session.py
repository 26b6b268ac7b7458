"""TCP conversations written by dpi.gen.session, read back with dpkt and scanned by our pipeline."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections import defaultdict

import dpkt
import numpy as np
import pytest

from dpi.gen.frames import pcap_bytes
from dpi.gen.session import TO_CLIENT, TO_SERVER, FlowSpec, Messages, segment_frames, tcp_segments
from dpi.pipeline import scan

V6_HI = 0x20010DB800000000


def conversation():
    """Three flows (IPv4, IPv6, IPv4 in VLAN 7), each a request, a long response and a second request."""
    rng = np.random.default_rng(3)
    texts, flow, direction = [], [], []
    for f in range(3):
        for d, size in ((TO_SERVER, 2000), (TO_CLIENT, 4000), (TO_SERVER, 10), (TO_CLIENT, 0)):
            body = bytes(rng.integers(97, 123, size, dtype=np.uint8))
            if d == TO_SERVER and size == 2000:
                body = body[:1450] + b"SPLIT-ACROSS-SEGMENTS" + body[1471:]  # crosses the first MSS cut
            texts.append(body)
            flow.append(f)
            direction.append(d)
    lengths = np.array([len(t) for t in texts])
    messages = Messages(
        flow=np.array(flow), direction=np.array(direction), data=np.frombuffer(b"".join(texts), np.uint8),
        offset=np.r_[0, np.cumsum(lengths)[:-1]], length=lengths,
    )  # fmt: skip
    v4, v6 = np.uint64(0), np.uint64(V6_HI)
    flows = FlowSpec(
        ip_version=np.array([4, 6, 4]),
        client_hi=np.array([v4, v6, v4]),
        client_lo=np.array([0x0A000001, 1, 0x0A000003], np.uint64),
        server_hi=np.array([v4, v6, v4]),
        server_lo=np.array([0x0A0000FE, 2, 0x0A0000FE], np.uint64),
        client_port=np.array([40000, 40001, 40002]),
        server_port=np.array([80, 80, 80]),
        start_ns=np.array([0, 10_000, 20_000]) + 1_700_000_000 * 10**9,
        isn_client=np.array([1, 2**32 - 100, 5_000]),  # one wraps round during the request
        isn_server=np.array([2**32 - 1, 7, 9]),
        vlan=np.array([-1, -1, 7]),
    )
    return flows, messages, texts


def test_conversations_read_back_in_order(tmp_path):
    flows, messages, texts = conversation()
    segments = tcp_segments(flows, messages)
    assert np.all(np.diff(segments.ts_ns) >= 0)
    assert segments.payload_len.max() == 1460
    path = tmp_path / "s.pcap"
    pcap_bytes(segment_frames(flows, messages, segments)).tofile(path)
    data: dict[tuple[int, int], list[tuple[int, bytes]]] = defaultdict(list)
    isn: dict[tuple[int, int], int] = {}
    flags_seen: dict[int, list[int]] = defaultdict(list)
    with open(path, "rb") as fh:
        for _, frame in dpkt.pcap.Reader(fh):
            eth = dpkt.ethernet.Ethernet(frame)
            tcp = eth.data.data
            client = tcp.sport if tcp.dport == 80 else tcp.dport
            key = (client, tcp.dport == 80)
            flags_seen[client].append(tcp.flags)
            if tcp.flags & dpkt.tcp.TH_SYN:
                isn[key] = tcp.seq
            if tcp.data:
                data[key].append((tcp.seq, bytes(tcp.data)))
    for f in range(3):
        port = 40000 + f
        SYN, ACK, FIN = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN
        assert flags_seen[port][:3] == [SYN, SYN | ACK, ACK]
        assert flags_seen[port][-3:] == [FIN | ACK, FIN | ACK, ACK]
        for to_server, direction in ((True, TO_SERVER), (False, TO_CLIENT)):
            parts = sorted(data[(port, to_server)], key=lambda p: (p[0] - isn[(port, to_server)]) % 2**32)
            assert parts[0][0] == (isn[(port, to_server)] + 1) % 2**32  # data starts right after the SYN
            sent = b"".join(t for t, m_f, m_d in zip(texts, messages.flow, messages.direction, strict=True)
                            if m_f == f and m_d == direction)  # fmt: skip
            assert b"".join(p for _, p in parts) == sent


def test_our_pipeline_reassembles_and_alerts_across_the_cut(tmp_path):
    flows, messages, _ = conversation()
    path = tmp_path / "s.pcap"
    pcap_bytes(segment_frames(flows, messages, tcp_segments(flows, messages))).tofile(path)
    rules = tmp_path / "r.rules"
    rules.write_text(
        'alert tcp any any -> any 80 (msg:"split"; flow:to_server,established; '
        'content:"SPLIT-ACROSS-SEGMENTS"; sid:1;)\n'
    )
    result = scan([str(path)], [str(rules)], io.StringIO())
    assert result.flows == 3 and result.alerts == 3  # one per flow, found only by reassembly


def test_tshark_sees_no_lost_resent_or_reordered_segment(tmp_path):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    flows, messages, _ = conversation()
    path = tmp_path / "s.pcap"
    pcap_bytes(segment_frames(flows, messages, tcp_segments(flows, messages))).tofile(path)
    suspicious = (
        "tcp.analysis.retransmission || tcp.analysis.out_of_order || tcp.analysis.lost_segment"
        " || tcp.analysis.ack_lost_segment || tcp.checksum.status == 0 || ip.checksum.status == 0"
    )
    checks = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    flagged = subprocess.run(
        ["tshark", "-r", str(path), *checks, "-Y", suspicious], capture_output=True, text=True, check=True
    ).stdout
    assert flagged == ""
    frames = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, check=True).stdout
    assert len(frames.splitlines()) == len(tcp_segments(flows, messages).flow) == 54
