"""TCP reassembly: the chunks of each direction rebuild exactly the bytes sent."""

from __future__ import annotations

import random

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.decode import decode_batch
from dpi.flow import FlowTable, track_flows
from dpi.flow.table import TRACKABLE
from dpi.flow.tracking import FlowTracker
from dpi.stream import SRC_CAPTURE, StreamConfig, TcpReassembler
from tests.conftest import tcp_session, write_pcap


def reassemble(path, config=None, batch_size=65536):
    """{(flow, direction): bytes} and the reassembler, through the real stages."""
    tracker = FlowTracker()
    flows = tracker.table
    streams = TcpReassembler(config)
    out: dict[tuple[int, int], bytearray] = {}
    positions: dict[tuple[int, int], int] = {}

    def collect(buf, chunks):
        for i in range(len(chunks)):
            src = buf if chunks.src[i] == SRC_CAPTURE else chunks.side
            data = bytes(src[chunks.offset[i] : chunks.offset[i] + chunks.length[i]])
            key = (int(chunks.flow[i]), int(chunks.direction[i]))
            if chunks.stream[i] < 0 and flows.proto[chunks.flow[i]] == 6:
                continue  # a TCP packet inspected alone (past the depth): not stream data
            if chunks.stream[i] >= 0:
                # stream positions are contiguous unless a hole was skipped
                expect = positions.get(key, int(chunks.stream_pos[i]))
                assert chunks.stream_pos[i] >= expect
                positions[key] = int(chunks.stream_pos[i] + chunks.length[i])
            out.setdefault(key, bytearray()).extend(data)

    cap = open_capture(str(path), batch_size=batch_size)
    for batch in cap.batches():
        dec = tracker.decode(batch)
        eligible, flow, direction, _ = tracker.track(batch, dec)
        streams.reserve(flows.capacity)
        collect(
            batch.buffer,
            streams.process(batch.buffer, eligible, dec, batch.ts_ns, batch.number, flow, direction),
        )
    collect(np.zeros(0, np.uint8), streams.flush(flows.n_flows))
    return {k: bytes(v) for k, v in out.items()}, streams, flows


DATA = bytes(range(256)) * 8 + b"the end"


def _pieces(data, size):
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_in_order(tmp_path):
    segs = _pieces(DATA, 100)
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, replies=[b"reply!"])))
    assert streams[(0, 0)] == DATA
    assert streams[(0, 1)] == b"reply!"
    assert r.stats()["in_order"] == len(segs) + 1
    assert r.stats()["ooo_held"] == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_with_duplicates(tmp_path, seed):
    segs = _pieces(DATA, 37)
    rng = random.Random(seed)
    order = list(range(len(segs)))
    rng.shuffle(order)
    order += rng.sample(range(len(segs)), 10)
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order)))
    assert streams[(0, 0)] == DATA
    assert r.stats()["retransmitted_bytes"] >= sum(len(segs[i]) for i in order[len(segs) :]) - 37
    assert r.held_bytes == 0


def test_batches_do_not_matter(tmp_path):
    segs = _pieces(DATA, 50)
    order = list(range(len(segs)))
    random.Random(5).shuffle(order)
    path = write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order))
    whole, _, _ = reassemble(path)
    small, _, _ = reassemble(path, batch_size=3)
    assert whole == small


def test_overlapping_retransmission_first_copy_wins(tmp_path):
    from scapy.layers.inet import TCP

    segs = [b"AAAAAAAAAA", b"BBBBBBBBBB", b"CCCCCCCCCC"]
    pkts = tcp_session(segs)
    # a retransmission that straddles delivered and new data, with different bytes
    extra = pkts[4].copy()
    extra[TCP].seq = pkts[4][TCP].seq + 5
    extra[TCP].remove_payload()
    extra = extra / b"xxxxxxxxxxyyyyy"
    pkts.insert(5, extra)
    streams, _, _ = reassemble(write_pcap(tmp_path / "a.pcap", pkts))
    # stream bytes 15..29 arrive as x*10 y*5 after A and B: 15..19 were delivered (B wins),
    # 20..29 are new (x*5 y*5), and the C segment for 20..29 is then a retransmission
    assert streams[(0, 0)] == b"A" * 10 + b"B" * 10 + b"xxxxxyyyyy"


def test_wraparound(tmp_path):
    segs = _pieces(DATA, 64)
    streams, _, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, isn_client=2**32 - 300)))
    assert streams[(0, 0)] == DATA


def test_hole_skipped_at_end_and_counted(tmp_path):
    segs = _pieces(DATA, 100)
    order = [i for i in range(len(segs)) if i != 3]
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order)))
    assert streams[(0, 0)] == b"".join(segs[:3] + segs[4:])
    assert r.stats()["gaps"] == 1
    assert r.stats()["gap_bytes"] == len(segs[3])


def test_per_stream_bound_skips_the_hole(tmp_path):
    segs = _pieces(DATA, 100)
    order = [i for i in range(len(segs)) if i != 1]
    cfg = StreamConfig(max_held_per_stream=300)
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order)), config=cfg)
    assert streams[(0, 0)] == b"".join(segs[:1] + segs[2:])
    assert r.stats()["gaps"] == 1


def test_arena_cap_drops_are_counted(tmp_path):
    segs = _pieces(DATA, 100)
    order = [0] + list(range(2, len(segs)))  # segment 1 never comes
    cfg = StreamConfig(arena_bytes=250, max_held_per_stream=10**9)
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order)), config=cfg)
    st = r.stats()
    # the arena holds segments 2 and 3 (segment 0 is delivered early to make room for 3);
    # every later one is dropped and counted
    assert st["ooo_held"] == 1 and st["in_order"] == 2  # 3 came right after 2: in order
    assert st["released_before_ack"] == 1
    assert st["memcap_dropped_segments"] == len(segs) - 4
    assert st["memcap_dropped_bytes"] == sum(len(s) for s in segs[4:])
    assert streams[(0, 0)] == segs[0] + segs[2] + segs[3]
    assert st["gaps"] == 1


def test_midstream_pickup(tmp_path):
    segs = _pieces(DATA, 100)
    pkts = tcp_session(segs)[3:]  # no handshake
    path = write_pcap(tmp_path / "a.pcap", pkts)
    streams, _, flows = reassemble(path, config=StreamConfig(midstream=True))
    assert streams[(0, 0)] == DATA
    assert flows.n_flows == 1
    # Suricata's default: no handshake, no reassembly; each packet is still inspected alone
    streams, r, _ = reassemble(path)
    assert (0, 0) not in streams
    assert r.stats()["midstream_not_reassembled"] == len(segs)


def test_udp_packets_are_their_own_chunks(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53) / (b"q%d" % i)
        for i in range(3)
    ]
    streams, _, _ = reassemble(write_pcap(tmp_path / "a.pcap", pkts))
    assert streams[(0, 0)] == b"q0q1q2"


def test_port_reuse_starts_a_new_stream(tmp_path):
    """A second connection on the same tuple with a new ISN is reassembled on its own."""
    first = tcp_session([b"first connection"], isn_client=1000, isn_server=5000)
    second = tcp_session([b"second one"], isn_client=900_000, isn_server=70_000, t0=1_300_000_100.0)
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", first + second))
    assert streams[(0, 0)] == b"first connection" + b"second one"
    assert r.stats()["port_reuse"] == 2  # the new SYN and the new SYN/ACK
    assert r.stats()["gaps"] == 0


def test_retransmitted_syn_is_not_reuse(tmp_path):
    pkts = tcp_session([b"hello"])
    pkts.insert(1, pkts[0].copy())
    streams, r, _ = reassemble(write_pcap(tmp_path / "a.pcap", pkts))
    assert streams[(0, 0)] == b"hello"
    assert r.stats()["port_reuse"] == 0


def test_acknowledged_hole_is_skipped_at_the_ack(tmp_path):
    """When the receiver ACKs past a hole, the capture lost those bytes: skip it then,
    not at the end of the capture."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    segs = [b"A" * 10, b"B" * 10, b"C" * 10]
    pkts = tcp_session(segs, order=[0, 2])
    ack = (
        Ether()
        / IP(src="10.0.0.2", dst="10.0.0.1")
        / TCP(sport=80, dport=40000, flags="A", seq=5001, ack=1031)
    )
    ack.time = pkts[-1].time - 0.0005
    pkts.insert(len(pkts) - 1, ack)  # before the client's FIN
    path = write_pcap(tmp_path / "a.pcap", pkts)
    flows = FlowTable()
    r = TcpReassembler()
    batch = next(open_capture(str(path)).batches())
    dec = decode_batch(batch)
    eligible = TRACKABLE[dec.status] & (dec.is_fragment == 0)
    flow, direction, _ = track_flows(flows, eligible, batch, dec)
    r.reserve(flows.capacity)
    chunks = r.process(batch.buffer, eligible, dec, batch.ts_ns, batch.number, flow, direction)
    released = [i for i in range(len(chunks)) if chunks.packet[i] == len(pkts) - 2]
    # A, then (past the skipped hole) C, both released by the ACK
    assert [int(chunks.length[i]) for i in released] == [10, 10]
    assert all(chunks.direction[i] == 0 for i in released)
    assert chunks.stream_pos[released[1]] == 20 and chunks.stream[released[0]] != chunks.stream[released[1]]
    assert r.stats()["gaps"] == 1 and r.stats()["gap_bytes"] == 10
    assert r.held_bytes == 0


@pytest.mark.parametrize("depth", [1, 100, 1000, 2055, 5000])
def test_reassembly_depth(tmp_path, depth):
    """Only the first `depth` bytes of a direction are delivered, in order or not; the
    rest is counted (Suricata's stream.reassembly.depth)."""
    segs = _pieces(DATA, 64)
    order = list(range(len(segs)))
    order[3], order[4] = order[4], order[3]
    order[20], order[25] = order[25], order[20]
    streams, r, _ = reassemble(
        write_pcap(tmp_path / "a.pcap", tcp_session(segs, order=order)), config=StreamConfig(depth=depth)
    )
    assert streams.get((0, 0), b"") == DATA[:depth]
    st = r.stats()
    assert st["bytes_past_reassembly_depth"] == max(len(DATA) - depth, 0)
    assert st["reassembly_depth_reached"] == (1 if depth < len(DATA) else 0)
    assert r.held_bytes == 0


def test_depth_zero_means_unlimited(tmp_path):
    big = DATA * 600  # 1.2 MB, past the default 1 MiB depth
    segs = _pieces(big, 1400)
    path = write_pcap(tmp_path / "a.pcap", tcp_session(segs))
    default, r, _ = reassemble(path)
    assert default[(0, 0)] == big[: 1 << 20]
    assert r.stats()["reassembly_depth_reached"] == 1
    unlimited, _, _ = reassemble(path, config=StreamConfig(depth=0))
    assert unlimited[(0, 0)] == big
