"""Native read+decode against dpkt on a capture of at least 1 M packets.

Both are measured in the same run and in the same group, so pytest-benchmark's table
gives the ratio directly; packets/s and Gbps of captured bytes are in extra_info, and the
JIT compile time is measured apart (a first call on a tiny capture) and reported there.
Under ``--benchmark-disable`` (CI) the capture shrinks to a few thousand packets.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.decode import decode_batch

BENCH_PACKETS = 1_000_000
SMOKE_PACKETS = 3_000
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "pcaps"


def _source() -> Path:
    # a real capture with ordinary Ethernet/IPv4/TCP traffic; the bundled sample otherwise
    candidate = SHARED / "zeek" / "modbus-big.pcap"
    return candidate if candidate.exists() else REPO / "pcaps" / "wikipedia.pcap"


def _replicate(src: Path, dst: Path, n_packets: int) -> Path:
    """A pcap of n_packets made by repeating src's records (copied as they are)."""
    data = np.fromfile(src, dtype=np.uint8)
    batches = list(open_capture(str(src)).batches())
    starts = np.concatenate([b.offset - 16 for b in batches])
    ends = np.concatenate([b.offset + b.caplen for b in batches])
    records = np.concatenate([data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)])
    reps, rest = divmod(n_packets, len(starts))
    body = [np.tile(records, reps)]
    if rest:
        body.append(records[: int(ends[rest - 1] - starts[0])])
    with open(dst, "wb") as fh:
        fh.write(data[:24].tobytes())
        for part in body:
            part.tofile(fh)
    return dst


@pytest.fixture(scope="module")
def capture(request, tmp_path_factory) -> tuple[Path, int, int]:
    disabled = request.config.getoption("benchmark_disable", False)
    n = SMOKE_PACKETS if disabled else BENCH_PACKETS
    path = _replicate(_source(), tmp_path_factory.mktemp("bench") / "replicated.pcap", n)
    captured = sum(int(b.caplen.sum()) for b in open_capture(str(path)).batches())
    return path, n, captured


def native_read_decode(path: Path) -> int:
    n = 0
    for batch in open_capture(str(path)).batches():
        decoded = decode_batch(batch)
        n += len(decoded)
    return n


def dpkt_read_decode(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            dpkt.ethernet.Ethernet(buf)  # dpkt decodes every layer in the constructor
            n += 1
    return n


def _report(benchmark, n_packets: int, captured: int, compile_s: float | None = None) -> None:
    stats = getattr(benchmark, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return
    best = stats.stats.min
    benchmark.extra_info.update(
        packets=n_packets,
        captured_bytes=captured,
        mpps=round(n_packets / best / 1e6, 3),
        gbps=round(captured * 8 / best / 1e9, 3),
    )
    if compile_s is not None:
        benchmark.extra_info["jit_warmup_s"] = round(compile_s, 3)


@pytest.mark.benchmark(group="read+decode")
def test_native_read_decode(benchmark, capture):
    path, n, captured = capture
    t0 = time.perf_counter()
    native_read_decode(REPO / "pcaps" / "wikipedia.pcap")  # JIT warm-up, reported apart
    warmup = time.perf_counter() - t0
    result = benchmark.pedantic(native_read_decode, args=(path,), rounds=5, iterations=1, warmup_rounds=1)
    assert result == n
    _report(benchmark, n, captured, warmup)


@pytest.mark.benchmark(group="read+decode")
def test_dpkt_read_decode(benchmark, capture):
    path, n, captured = capture
    result = benchmark.pedantic(dpkt_read_decode, args=(path,), rounds=1, iterations=1)
    assert result == n
    _report(benchmark, n, captured)
