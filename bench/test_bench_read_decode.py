"""Capture read, decode and flow tracking: the native readers and kernels beside dpkt, scapy and
pyshark, measured in the same run.

Input: a synthetic capture written from a fixed seed (``dpi.bench.run.write_input``: concurrent
HTTP-like TCP flows, 512-byte segments), 1 M packets. The slow peers get a prefix of it (scapy
50,000 packets, pyshark 3,000), so compare them by packets/s (``mpps`` in extra_info), which the
summary at the end does. Each peer does what it must to hand over the same information:
- read: every record's bytes and header (native: the mmap'd index; dpkt ``pcap.Reader``;
  scapy ``RawPcapReader``);
- read+decode: Ethernet, IP and TCP headers parsed (native: ``decode_batch`` columns; dpkt:
  ``Ethernet(buf)``, which parses every layer; scapy: ``PcapReader`` objects; pyshark: tshark's
  dissection, as pyshark users get it);
- flow: the flow table updated for every packet (decoding done beforehand, outside the timer).
The JIT warm-up (a first pass on a tiny capture) is reported apart as ``jit_warmup_s``. Under
``--benchmark-disable`` (CI) the capture shrinks to 3,000 packets and pyshark to 200.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path

import pytest

from bench.conftest import write_summary
from dpi.bench.run import write_input
from dpi.capture import open_capture
from dpi.decode import decode_batch
from dpi.flow.tracking import FlowTracker

PACKETS = {"native": 1_000_000, "dpkt": 1_000_000, "scapy": 50_000, "pyshark": 3_000}
SMOKE = {"native": 3_000, "dpkt": 3_000, "scapy": 3_000, "pyshark": 200}

_results: dict[tuple[str, str], float] = {}  # (group, reader) -> Mpps


@pytest.fixture(scope="module")
def captures(request, tmp_path_factory) -> dict[str, tuple[Path, int, int]]:
    """reader -> (path, packets, captured bytes): one seeded capture, cut to each reader's size."""
    sizes = SMOKE if request.config.getoption("benchmark_disable", False) else PACKETS
    folder = tmp_path_factory.mktemp("bench")
    made: dict[int, tuple[Path, int, int]] = {}
    for n in sorted(set(sizes.values()), reverse=True):
        info = write_input(folder / f"{n}.pcap", n, 512, 1000 if n >= 60_000 else max(1, n // 60), seed=7)
        made[n] = (Path(info["path"]), info["packets"], info["captured_bytes"])
    return {reader: made[n] for reader, n in sizes.items()}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = []
    for group in ("read", "read+decode", "flow"):
        row = {reader: mpps for (g, reader), mpps in _results.items() if g == group}
        if not row:
            continue
        parts = [f"{reader} {mpps:.3f} Mpps" for reader, mpps in row.items()]
        if "native" in row:
            parts += [
                f"native/{peer} {row['native'] / mpps:.1f}x" for peer, mpps in row.items() if peer != "native"
            ]
        lines.append(f"{group}: " + ", ".join(parts))
    write_summary(request, lines)


def _report(benchmark, group: str, reader: str, n_packets: int, captured: int, warmup_s=None) -> None:
    benchmark.extra_info.update(packets=n_packets, captured_bytes=captured)
    if warmup_s is not None:
        benchmark.extra_info["jit_warmup_s"] = round(warmup_s, 3)
    stats = getattr(benchmark, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return
    best = stats.stats.min
    mpps = n_packets / best / 1e6
    benchmark.extra_info.update(mpps=round(mpps, 4), gbps=round(captured * 8 / best / 1e9, 4))
    _results[(group, reader)] = mpps


def native_read(path: Path) -> int:
    return sum(len(batch) for batch in open_capture(str(path)).batches())


def native_read_decode(path: Path) -> int:
    return sum(len(decode_batch(batch)) for batch in open_capture(str(path)).batches())


def dpkt_read(path: Path) -> int:
    import dpkt

    with open(path, "rb") as fh:
        return sum(1 for _ts, _buf in dpkt.pcap.Reader(fh))


def dpkt_read_decode(path: Path) -> int:
    import dpkt

    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            dpkt.ethernet.Ethernet(buf)  # dpkt decodes every layer in the constructor
            n += 1
    return n


def scapy_read(path: Path) -> int:
    from scapy.utils import RawPcapReader

    with RawPcapReader(str(path)) as reader:
        return sum(1 for _ in reader)


def scapy_read_decode(path: Path) -> int:
    from scapy.layers.l2 import Ether  # noqa: F401  (registers Ethernet as link type 1)
    from scapy.utils import PcapReader

    with PcapReader(str(path)) as reader:
        return sum(1 for _ in reader)


def pyshark_read_decode(path: Path) -> int:
    import pyshark

    capture = pyshark.FileCapture(str(path), keep_packets=False)
    try:
        return sum(1 for _ in capture)
    finally:
        capture.close()


READ = {"native": native_read, "dpkt": dpkt_read, "scapy": scapy_read}
READ_DECODE = {
    "native": native_read_decode,
    "dpkt": dpkt_read_decode,
    "scapy": scapy_read_decode,
    "pyshark": pyshark_read_decode,
}
TINY = Path(__file__).resolve().parents[1] / "pcaps" / "wikipedia.pcap"


def _warm(fn) -> float | None:
    start = time.perf_counter()
    fn(TINY)
    return time.perf_counter() - start


def _measure(benchmark, captures, group: str, functions: dict, reader: str) -> None:
    path, n, captured = captures[reader]
    warmup = _warm(functions[reader]) if reader == "native" else None
    benchmark.group = group
    rounds = 5 if reader == "native" else 1  # the peers are slow: one round each
    assert benchmark.pedantic(functions[reader], args=(path,), rounds=rounds, iterations=1) == n
    _report(benchmark, group, reader, n, captured, warmup)


@pytest.mark.parametrize("reader", list(READ))
def test_read(benchmark, captures, reader):
    _measure(benchmark, captures, "read", READ, reader)


@pytest.mark.parametrize("reader", list(READ_DECODE))
def test_read_decode(benchmark, captures, reader):
    if reader == "pyshark" and (
        importlib.util.find_spec("pyshark") is None or shutil.which("tshark") is None
    ):
        pytest.skip("pyshark needs tshark, which is not installed")
    _measure(benchmark, captures, "read+decode", READ_DECODE, reader)


def test_flow_tracking(benchmark, captures):
    """The flow stage alone: decoded batches in, every packet's flow and direction out."""
    path, n, captured = captures["native"]
    batches = list(open_capture(str(path)).batches())
    decoded = [decode_batch(b) for b in batches]

    def track() -> int:
        tracker = FlowTracker()
        for batch, dec in zip(batches, decoded, strict=True):
            tracker.track(batch, dec)
        return int(tracker.table.n_live)

    start = time.perf_counter()
    track()  # JIT warm-up (or cache load) on the same input
    warmup = time.perf_counter() - start
    benchmark.group = "flow"
    flows = benchmark.pedantic(track, rounds=3, iterations=1)
    assert flows == (1000 if n >= 60_000 else max(1, n // 60))
    _report(benchmark, "flow", "native", n, captured, warmup)
