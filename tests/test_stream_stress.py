"""Adversarial reassembly load: 100k concurrent flows whose first data segment never comes,
so everything else waits behind a hole. The caps hold, every byte is accounted for, and
the peak resident memory is printed."""

from __future__ import annotations

import resource

import pytest

from dpi.gen.tcp import expected_client_stream, synthetic_tcp_pcap
from dpi.stream import StreamConfig
from tests.test_stream import reassemble


def test_synthetic_flows_reassemble_exactly(tmp_path):
    cap = synthetic_tcp_pcap(tmp_path / "s.pcap", flows=2000, segments=6, segment_len=90, ooo=0.2, seed=3)
    streams, r, flows = reassemble(cap.path, batch_size=5000)
    assert flows.n_flows == 2000
    assert r.stats()["ooo_held"] > 0
    for f in range(flows.n_flows):  # flows are created in generation order
        assert streams[(f, 0)] == expected_client_stream(f, 6, 90), f


def _run_stages(path, config):
    """Reader -> decode -> flows -> reassembly, tallying delivered bytes per flow direction
    with NumPy (no Python per chunk)."""
    import numpy as np

    from dpi.capture import open_capture
    from dpi.flow.tracking import FlowTracker
    from dpi.stream import TcpReassembler

    tracker = FlowTracker(max_flows=200_000)
    flows = tracker.table
    r = TcpReassembler(config)
    delivered = np.zeros(0, np.int64)

    def tally(chunks):
        nonlocal delivered
        stream = chunks.stream >= 0
        key = chunks.flow[stream] * 2 + chunks.direction[stream]
        counts = np.bincount(key, weights=chunks.length[stream], minlength=2 * flows.n_flows).astype(np.int64)
        if len(counts) > len(delivered):
            delivered = np.concatenate([delivered, np.zeros(len(counts) - len(delivered), np.int64)])
        delivered[: len(counts)] += counts

    for batch in open_capture(str(path)).batches():
        dec = tracker.decode(batch)
        eligible, flow, direction, _ = tracker.track(batch, dec)
        r.reserve(flows.capacity)
        tally(r.process(batch.buffer, eligible, dec, batch.ts_ns, batch.number, flow, direction))
    tally(r.flush(flows.n_flows))
    return r, flows, delivered


@pytest.mark.slow
def test_100k_flows_behind_holes_stay_inside_the_caps(tmp_path):
    flows_n, segments, seg_len = 100_000, 4, 100
    cap = synthetic_tcp_pcap(
        tmp_path / "s.pcap", flows=flows_n, segments=segments, segment_len=seg_len, drop_first=True, seed=5
    )
    config = StreamConfig(arena_bytes=16 << 20, max_segments=200_000)
    r, flows, delivered = _run_stages(cap.path, config)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    st = r.stats()
    print(f"\n100k-flow stress: peak RSS {peak_mib:.0f} MiB; {st}")
    assert flows.n_flows == flows_n
    # 300k segments wait behind holes: the pool (200k) or the 16 MiB memcap runs out first
    held = st["ooo_held"] + st["in_order"]  # the first behind each hole, and those after it
    assert held <= config.max_segments
    assert held * seg_len <= config.arena_bytes
    assert st["memcap_dropped_segments"] == 3 * flows_n - held
    # every byte in the capture is either delivered or counted as dropped
    assert int(delivered.sum()) + st["memcap_dropped_bytes"] == cap.payload_bytes
    # each flow that held anything skipped exactly its one hole
    assert st["gaps"] == int((delivered[0::2] > 0).sum())
    assert r.held_bytes == 0
    assert peak_mib < 4096
