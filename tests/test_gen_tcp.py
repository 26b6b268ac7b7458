"""The synthetic TCP capture writer (dpi.gen.tcp), read back with dpkt."""

from __future__ import annotations

from collections import defaultdict

import dpkt

from dpi.gen.tcp import expected_client_stream, synthetic_tcp_pcap
from dpi.match.corpus import http_like_corpus


def client_streams(path) -> dict[int, bytes]:
    """Each client port's data segments joined in sequence order (from its SYN's ISN), by dpkt."""
    segments: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    isn: dict[int, int] = {}
    with open(path, "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            if tcp.dport != 80:
                continue
            if tcp.flags & dpkt.tcp.TH_SYN:
                isn[tcp.sport] = tcp.seq
            elif tcp.data:
                segments[tcp.sport].append((tcp.seq, bytes(tcp.data)))
    return {
        port: b"".join(d for _, d in sorted(parts, key=lambda p: (p[0] - isn[port]) % 2**32))
        for port, parts in segments.items()
    }


def test_default_payload_names_flow_and_segment(tmp_path):
    cap = synthetic_tcp_pcap(tmp_path / "s.pcap", flows=5, segments=3, segment_len=40, ooo=0.5, seed=2)
    streams = client_streams(cap.path)
    assert cap.packets == 5 * (3 + 2 * 3 + 1) and cap.payload_bytes == 5 * 3 * 40
    with open(cap.path, "rb") as f:
        assert cap.bytes == sum(len(frame) for _, frame in dpkt.pcap.Reader(f))  # frames only
    for flow in range(5):
        assert streams[1024 + flow] == expected_client_stream(flow, 3, 40)


def test_corpus_payload_is_a_seeded_slice_of_the_corpus(tmp_path):
    corpus = http_like_corpus(20_000, seed=1)
    a = synthetic_tcp_pcap(tmp_path / "a.pcap", flows=30, segments=4, segment_len=300, seed=9, payload=corpus)
    b = synthetic_tcp_pcap(tmp_path / "b.pcap", flows=30, segments=4, segment_len=300, seed=9, payload=corpus)
    assert a.path.read_bytes() == b.path.read_bytes()  # deterministic for a seed
    wrapped = corpus.tobytes() * 2
    streams = client_streams(a.path)
    assert len(streams) == 30
    starts = set()
    for stream in streams.values():
        assert len(stream) == 4 * 300
        at = wrapped.find(stream)
        assert at >= 0  # the corpus, read from some point on, wrapping round
        starts.add(at)
    assert len(starts) > 20  # flows start at different places
    other = synthetic_tcp_pcap(
        tmp_path / "c.pcap", flows=30, segments=4, segment_len=300, seed=10, payload=corpus
    )
    assert other.path.read_bytes() != a.path.read_bytes()
