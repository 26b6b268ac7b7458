"""Target-based overlap resolution: the bytes each policy delivers for crafted overlapping
segment sequences.

The sequences and the expected streams are Suricata's own unit-test vectors for its
policies (src/tests/stream-tcp-list.c, after Novak & Sturges, "Target-Based TCP Stream
Reassembly", 2007): (relative sequence number, payload) steps, and the stream the receiver
ends up with, where NUL marks bytes never sent. Policies Suricata treats alike share
vectors: first and bsd-right keep the old data as vista does; windows and macos resolve as
bsd does.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.flow.tracking import FlowTracker
from dpi.stream import StreamConfig, TcpReassembler
from dpi.stream.tcp import STREAM_POLICIES
from tests.conftest import write_pcap

Z = b"\0"

MAIN = [
    (2, b"AAA"), (6, b"BB"), (8, b"CCC"), (12, b"D"), (15, b"EE"), (17, b"FFF"), (20, b"GG"),
    (22, b"HH"), (24, b"I"), (3, b"JJJJ"), (8, b"KKK"), (11, b"LLL"), (14, b"MMM"), (18, b"N"),
    (21, b"O"), (22, b"P"), (24, b"QQ"), (1, b"0"),
]  # fmt: skip
BEFORE = [(3, b"B"), (9, b"D"), (12, b"EE"), (2, b"AA"), (1, b"JJJJ"), (8, b"LLL"), (11, b"MMM")]
SAME = [(1, b"CCC"), (15, b"HH"), (17, b"II"), (1, b"KKK"), (1, b"LLLL"), (15, b"P"), (15, b"QQ")]
AFTER = [(1, b"AA"), (16, b"FFF"), (19, b"GG"), (2, b"JJ"), (20, b"O"), (17, b"N")]

EXPECTED = {
    "bsd": {
        "main": b"0AAAJJBCCCLLLMMMFFFGGHHIQ",
        "before": b"JJJJ" + Z * 3 + b"LLLMMM",
        "same": b"CCCL" + Z * 10 + b"HHII",
        "after": b"AAJ" + Z * 12 + b"FFFGG",
    },
    "vista": {
        "main": b"0AAAJBBCCCLDLMEEFFFGGHHIQ",
        "before": b"JABJ" + Z * 3 + b"LDLMEE",
        "same": b"CCCL" + Z * 10 + b"HHII",
        "after": b"AAJ" + Z * 12 + b"FFFGG",
    },
    "linux": {
        "main": b"0AAAJJBCCCLLLMMMFFFGGHHQQ",
        "before": b"JJJJ" + Z * 3 + b"LLLMMM",
        "same": b"LLLL" + Z * 10 + b"HHII",
        "after": b"AAJ" + Z * 12 + b"FFFGG",
    },
    "old-linux": {
        "main": b"0AAAJJBKKKLLLMMMFFFGGHHQQ",
        "before": b"JJJJ" + Z * 3 + b"LLLMMM",
        "same": b"LLLL" + Z * 10 + b"QQII",
        "after": b"AAJ" + Z * 12 + b"FFFGG",
    },
    "solaris": {
        "main": b"0AJJJBBKKKLLLMMMFFFGGHHQQ",
        "before": b"JJJJ" + Z * 3 + b"LLLMMM",
        "same": b"LLLL" + Z * 10 + b"QQII",
        "after": b"AJJ" + Z * 12 + b"FFFGG",
    },
    "last": {
        "main": b"0AJJJJBKKKLLLMMMFNFGOPHQQ",
        "before": b"JJJJ" + Z * 3 + b"LLLMMM",
        "same": b"LLLL" + Z * 10 + b"QQII",
        "after": b"AJJ" + Z * 12 + b"FNFGO",
    },
}
for alias, same_as in (("first", "vista"), ("bsd-right", "vista"), ("windows", "bsd"), ("macos", "bsd")):
    EXPECTED[alias] = EXPECTED[same_as]
SEQUENCES = {"main": MAIN, "before": BEFORE, "same": SAME, "after": AFTER}
# ISNs that put the data across the 32-bit sequence wrap-around, as Suricata's tests do
ISNS = (0, 1, 2**32 - 1, 2**32 - 11)


def _session(steps, isn, ack_at_end=False, t0=1_300_000_000.0):
    """Handshake, then the client's segments in the given order; optionally the server's
    cumulative ACK of everything at the end."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    isn_s = 7000

    def seg(src, dst, sp, dp, **kw):
        return eth / IP(src=src, dst=dst) / TCP(sport=sp, dport=dp, **kw)

    pkts = [
        seg(c[0], s[0], c[1], s[1], flags="S", seq=isn),
        seg(s[0], c[0], s[1], c[1], flags="SA", seq=isn_s, ack=(isn + 1) % 2**32),
        seg(c[0], s[0], c[1], s[1], flags="A", seq=(isn + 1) % 2**32, ack=isn_s + 1),
    ]
    end = 0
    for rseq, data in steps:
        pkts.append(seg(c[0], s[0], c[1], s[1], flags="PA", seq=(isn + rseq) % 2**32, ack=isn_s + 1) / data)
        end = max(end, rseq + len(data))
    if ack_at_end:
        pkts.append(seg(s[0], c[0], s[1], c[1], flags="A", seq=isn_s + 1, ack=(isn + end) % 2**32))
    for i, p in enumerate(pkts):
        p.time = t0 + i * 0.001
    return pkts


def stream_image(path, policy, **config):
    """The client's stream as the receiver sees it: bytes at their stream offsets, NUL
    where nothing was delivered (the holes), and the reassembler."""
    tracker = FlowTracker()
    r = TcpReassembler(StreamConfig(policy=policy, depth=0, **config))
    image = bytearray()
    released_by_ack = 0

    def place(buf, chunks):
        for i in range(len(chunks)):
            if chunks.stream[i] < 0 or chunks.direction[i] != 0:
                continue
            src = buf if chunks.src[i] == 0 else chunks.side
            data = bytes(src[chunks.offset[i] : chunks.offset[i] + chunks.length[i]])
            pos = int(chunks.stream_pos[i])
            if len(image) < pos + len(data):
                image.extend(Z * (pos + len(data) - len(image)))
            image[pos : pos + len(data)] = data

    for batch in open_capture(str(path)).batches():
        dec = tracker.decode(batch)
        eligible, flow, direction, _ = tracker.track(batch, dec)
        r.reserve(tracker.table.capacity)
        chunks = r.process(batch.buffer, eligible, dec, batch.ts_ns, batch.number, flow, direction)
        released_by_ack += int((chunks.stream >= 0).sum())
        place(batch.buffer, chunks)
    place(np.zeros(0, np.uint8), r.flush(tracker.table.n_flows))
    return bytes(image), r, released_by_ack


@pytest.mark.parametrize("policy", sorted(EXPECTED))
@pytest.mark.parametrize("name", sorted(SEQUENCES))
def test_policy_vectors(tmp_path, policy, name):
    for isn in ISNS:
        path = write_pcap(tmp_path / f"{isn}.pcap", _session(SEQUENCES[name], isn))
        image, r, _ = stream_image(path, policy)
        assert image == EXPECTED[policy][name], (policy, name, isn)
        assert r.held_bytes == 0


def test_every_policy_has_vectors():
    covered = set(EXPECTED) | {"hpux10", "hpux11", "irix", "windows2k3"}
    assert covered == set(STREAM_POLICIES)


def test_the_acknowledgement_delivers_the_resolved_stream(tmp_path):
    """With the receiver's ACK the resolved bytes go out at the ACK, not at the end."""
    path = write_pcap(tmp_path / "a.pcap", _session(MAIN, 1000, ack_at_end=True))
    image, r, released = stream_image(path, "linux")
    assert image == EXPECTED["linux"]["main"]
    assert released > 0  # delivered while processing the capture, before the flush


def test_overlaps_are_counted(tmp_path):
    path = write_pcap(tmp_path / "a.pcap", _session(SAME, 1000))
    _, r, _ = stream_image(path, "bsd")
    st = r.stats()
    # KKK, LLLL, P and QQ overlap held data, all with different bytes
    assert st["reassembly_overlap"] == 4
    assert st["reassembly_overlap_different_data"] == 4
    ev = r.events
    # events belong to the batch that saw them (one batch here, but flush() clears nothing)
    assert len(ev) == 4 and ev.different.all()
    # the same bytes again are an overlap, not a conflict
    path = write_pcap(tmp_path / "b.pcap", _session([(1, b"abc"), (5, b"e"), (1, b"abc")], 1000))
    _, r, _ = stream_image(path, "bsd")
    assert r.stats()["reassembly_overlap"] == 1 and r.stats()["reassembly_overlap_different_data"] == 0


def test_retransmission_after_the_ack_cannot_rewrite(tmp_path):
    """Data the receiver acknowledged has been delivered: a later conflicting copy does not
    change it, under any policy."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    pkts = _session([(1, b"GOOD")], 1000, ack_at_end=True)
    eth = pkts[0][Ether].copy()
    evil = (
        Ether(src=eth.src, dst=eth.dst)
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=7001)
        / b"EVIL"
    )
    evil.time = pkts[-1].time + 0.001
    path = write_pcap(tmp_path / "a.pcap", pkts + [evil])
    image, r, _ = stream_image(path, "last")
    assert image == b"GOOD"
    assert r.stats()["retransmitted_bytes"] == 4
