"""TCP reassembly throughput: 10k concurrent flows, in order and with 5% of the segments
out of order, in Gbps of captured bytes; and `dpi streams` (read -> files) beside tcpflow
on the same capture, both writing one file per direction.

The reassembly stage is timed alone (decode and flow tracking done beforehand, outside the
timer); JIT warm-up is a separate first run on a tiny capture, reported in extra_info.
Under ``--benchmark-disable`` (CI) the captures shrink to a few hundred flows.
"""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.flow.tracking import FlowTracker
from dpi.gen.tcp import synthetic_tcp_pcap
from dpi.output.streams import write_streams
from dpi.stream import TcpReassembler

FLOWS, SEGMENTS, SEGMENT_LEN = 10_000, 20, 1000


@pytest.fixture(scope="module")
def sizes(request):
    if request.config.getoption("benchmark_disable", False):
        return 200, 4
    return FLOWS, SEGMENTS


def _prepared(path):
    """Batches decoded and flow-tracked ahead of time, so only reassembly is timed."""
    tracker = FlowTracker()
    prepared = []
    for batch in open_capture(str(path)).batches():
        dec = tracker.decode(batch)
        eligible, flow, direction, _ = tracker.track(batch, dec)
        prepared.append((batch, dec, eligible, flow, direction))
    return prepared, tracker.table.capacity


def _reassemble(prepared, capacity):
    r = TcpReassembler()
    r.reserve(capacity)
    delivered = 0
    for batch, dec, eligible, flow, direction in prepared:
        delivered += int(
            r.process(batch.buffer, eligible, dec, batch.ts_ns, batch.number, flow, direction).length.sum()
        )
    return delivered, r.stats()


@pytest.mark.parametrize("ooo", [0.0, 0.05], ids=["in-order", "5%-out-of-order"])
@pytest.mark.benchmark(group="reassembly")
def test_reassembly(benchmark, tmp_path, sizes, ooo):
    flows, segments = sizes
    tiny = synthetic_tcp_pcap(tmp_path / "tiny.pcap", flows=10, segments=3, segment_len=100, ooo=0.5)
    t0 = time.perf_counter()
    _reassemble(*_prepared(tiny.path))  # JIT warm-up
    warmup = time.perf_counter() - t0
    cap = synthetic_tcp_pcap(
        tmp_path / "s.pcap", flows=flows, segments=segments, segment_len=SEGMENT_LEN, ooo=ooo
    )
    prepared, capacity = _prepared(cap.path)
    delivered, stats = benchmark.pedantic(_reassemble, args=(prepared, capacity), rounds=3, iterations=1)
    assert delivered == cap.payload_bytes
    best = getattr(getattr(benchmark, "stats", None), "stats", None)
    benchmark.extra_info.update(
        flows=flows,
        packets=cap.packets,
        captured_bytes=cap.bytes,
        ooo_held=stats["ooo_held"],
        jit_warmup_s=round(warmup, 3),
    )
    if best is not None:
        benchmark.extra_info["gbps"] = round(cap.bytes * 8 / best.min / 1e9, 3)
        benchmark.extra_info["mpps"] = round(cap.packets / best.min / 1e6, 3)


@pytest.fixture(scope="module")
def stream_capture(tmp_path_factory, sizes):
    flows, segments = sizes
    path = tmp_path_factory.mktemp("streams") / "s.pcap"
    return synthetic_tcp_pcap(path, flows=flows, segments=segments, segment_len=SEGMENT_LEN, ooo=0.05)


@pytest.mark.benchmark(group="streams to files")
def test_dpi_streams_to_files(benchmark, tmp_path, stream_capture):
    write_streams([str(stream_capture.path)], str(tmp_path / "warm"))  # JIT warm-up
    out = tmp_path / "out"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        return write_streams([str(stream_capture.path)], str(out))

    writer, errors = benchmark.pedantic(run, rounds=2, iterations=1)
    assert not errors and sum(sf.bytes for sf in writer.files.values()) == stream_capture.payload_bytes


@pytest.mark.benchmark(group="streams to files")
def test_tcpflow_to_files(benchmark, tmp_path, stream_capture):
    if shutil.which("tcpflow") is None:
        pytest.skip("tcpflow not installed: the peer for this benchmark")
    out = tmp_path / "out"

    def run():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        subprocess.run(
            ["tcpflow", "-r", str(stream_capture.path), "-o", str(out)], check=True, capture_output=True
        )

    benchmark.pedantic(run, rounds=2, iterations=1)
    sizes = np.array([p.stat().st_size for p in out.iterdir() if "-" in p.name])
    assert sizes.sum() == stream_capture.payload_bytes
