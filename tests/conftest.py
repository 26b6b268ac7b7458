"""Shared test helpers: where the shared data lives, and hand-made scapy sessions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_bounds_checked(tmp_path: Path, args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``python args...`` from the repository root with NUMBA_BOUNDSCHECK=1 and a Numba
    cache of its own (kernels compiled with bounds checks), the repository and tests/ on
    the path; the child's output comes back as text."""
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO), str(REPO / "tests"), os.environ.get("PYTHONPATH")])
    )
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (a clone without ../shared)")
    return SHARED_DATA


def tcp_session(
    segments,
    client=("10.0.0.1", 40000),
    server=("10.0.0.2", 80),
    order=None,
    ipv6=False,
    isn_client=1000,
    isn_server=5000,
    replies=(),
    t0=1_300_000_000.0,
):
    """A complete TCP session as a list of scapy packets.

    ``segments`` are the client's payload pieces in stream order; ``order`` optionally
    gives the order in which they are sent (indices), e.g. to send them out of order;
    ``replies`` are server payloads sent after the client's data."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    def ip(src, dst):
        return IPv6(src=src, dst=dst) if ipv6 else IP(src=src, dst=dst)

    (ca, cp), (sa, sp) = client, server
    pkts = []
    t = t0

    def add(p):
        nonlocal t
        p.time = t
        t += 0.001
        pkts.append(p)

    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    add(eth / ip(ca, sa) / TCP(sport=cp, dport=sp, flags="S", seq=isn_client))
    add(eth / ip(sa, ca) / TCP(sport=sp, dport=cp, flags="SA", seq=isn_server, ack=isn_client + 1))
    add(eth / ip(ca, sa) / TCP(sport=cp, dport=sp, flags="A", seq=isn_client + 1, ack=isn_server + 1))
    offsets = []
    pos = 0
    for seg in segments:
        offsets.append(pos)
        pos += len(seg)
    for i in order if order is not None else range(len(segments)):
        add(
            eth
            / ip(ca, sa)
            / TCP(
                sport=cp, dport=sp, flags="PA", seq=(isn_client + 1 + offsets[i]) % 2**32, ack=isn_server + 1
            )
            / segments[i]
        )
    cseq = (isn_client + 1 + pos) % 2**32
    sseq = isn_server + 1
    for r in replies:
        add(eth / ip(sa, ca) / TCP(sport=sp, dport=cp, flags="PA", seq=sseq, ack=cseq) / r)
        sseq += len(r)
    add(eth / ip(ca, sa) / TCP(sport=cp, dport=sp, flags="FA", seq=cseq, ack=sseq))
    return pkts


def write_pcap(path: Path, packets) -> Path:
    from scapy.utils import wrpcap

    wrpcap(str(path), packets)
    return path
