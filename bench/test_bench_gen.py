"""The labelled generator's speed in packets per second, beside the peers that would otherwise
write such captures: dpkt (packet objects serialised one by one) and scapy (likewise, through
wrpcap), measured in the same run on packets of the same kind.

``dpi gen`` is timed end to end: protocol mix, planting, ground truth from the reference matcher
(with the bundled rules; and with no rules, for the writing alone), segments, frames, the pcap
bytes. JIT warm-up is a separate first run on a tiny capture, reported in extra_info. Under
``--benchmark-disable`` (CI) the captures shrink to a few hundred flows.
"""

from __future__ import annotations

import io
import time

import pytest

from bench.conftest import write_summary
from dpi.gen.generator import GenConfig, generate
from tests.conftest import REPO

SAMPLE_RULES = str(REPO / "rules" / "dpi-sample.rules")
FLOWS = 20_000
PEER_PACKETS = {"dpkt": 100_000, "scapy": 5_000}
RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def flows(request):
    return 300 if request.config.getoption("benchmark_disable", False) else FLOWS


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = []
    for name in ("gen (bundled rules)", "gen (no rules)"):
        if name in RESULTS:
            peers = ", ".join(
                f"{RESULTS[name] / RESULTS[p]:.1f}x {p}" for p in ("dpkt", "scapy") if RESULTS.get(p)
            )
            lines.append(f"{name}: {RESULTS[name]:,.0f} packets/s ({peers})")
    write_summary(request, lines)


def _packets_per_s(benchmark, packets: int) -> float | None:
    best = getattr(getattr(benchmark, "stats", None), "stats", None)
    return packets / best.min if best is not None else None


@pytest.mark.parametrize("rules", [[SAMPLE_RULES], []], ids=["bundled-rules", "no-rules"])
@pytest.mark.benchmark(group="generator")
def test_gen(benchmark, flows, rules):
    t0 = time.perf_counter()
    generate(GenConfig(flows=20, seed=1, rules=rules, evasions=("tcp-seg", "ip-frag")))  # JIT warm-up
    warmup = time.perf_counter() - t0
    config = GenConfig(flows=flows, seed=2, rules=rules)
    result = benchmark.pedantic(generate, args=(config,), rounds=3, iterations=1)
    assert result.flows == flows and result.packets > 10 * flows
    rate = _packets_per_s(benchmark, result.packets)
    benchmark.extra_info.update(flows=flows, packets=result.packets, jit_warmup_s=round(warmup, 3))
    if rate:
        benchmark.extra_info["packets_per_s"] = round(rate)
        RESULTS["gen (bundled rules)" if rules else "gen (no rules)"] = rate


def _dpkt_capture(n: int) -> bytes:
    """n TCP data segments of one conversation, as dpkt objects serialised into a pcap."""
    import dpkt

    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, nano=True)
    payload = b"x" * 200
    for i in range(n):
        tcp = dpkt.tcp.TCP(sport=40000, dport=80, seq=1 + 200 * i, ack=1, flags=0x18, data=payload)
        ip = dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\xc6\x33\x64\x01", p=6, data=tcp)
        ip.len = len(ip)  # checksums are computed when serialised
        eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)
        writer.writepkt(bytes(eth), ts=1.0 + i * 1e-5)
    return out.getvalue()


def _scapy_capture(n: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter

    out = io.BytesIO()
    writer = PcapWriter(out, sync=True)
    for i in range(n):
        pkt = Ether() / IP(src="10.0.0.1", dst="198.51.100.1") / TCP(sport=40000, dport=80, seq=1 + 200 * i)
        writer.write(pkt / (b"x" * 200))
    return out.getvalue()


@pytest.mark.parametrize("peer", ["dpkt", "scapy"])
@pytest.mark.benchmark(group="generator")
def test_peer_writer(benchmark, request, peer):
    n = PEER_PACKETS[peer] // (50 if request.config.getoption("benchmark_disable", False) else 1)
    build = _dpkt_capture if peer == "dpkt" else _scapy_capture
    data = benchmark.pedantic(build, args=(n,), rounds=2, iterations=1)
    assert len(data) > n * 200
    rate = _packets_per_s(benchmark, n)
    benchmark.extra_info.update(packets=n)
    if rate:
        benchmark.extra_info["packets_per_s"] = round(rate)
        RESULTS[peer] = rate
