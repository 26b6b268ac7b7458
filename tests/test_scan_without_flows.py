"""Captures in which no packet opens a flow still scan to the end, with rules that check headers.

Header rules are matched against the flow table's endpoints; with an empty table (the batch's
packets are ARP, truncated or lone fragments) that lookup once indexed an empty array, and
16 of the shared captures stopped `dpi scan` with an IndexError.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pytest

from dpi.pipeline import scan

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RULES = REPO / "rules" / "dpi-sample.rules"
SHARED_PCAPS = REPO.parent / "shared" / "data" / "pcaps"


def _write_pcap(path: Path, frames: list[tuple[bytes, int]]) -> None:
    """Classic pcap, Ethernet; each frame is (captured bytes, original length)."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for k, (data, wirelen) in enumerate(frames):
            fh.write(struct.pack("<IIII", 1_700_000_000 + k, 0, len(data), wirelen))
            fh.write(data)


def _scan(pcap: Path):
    out = io.StringIO()
    result = scan([str(pcap)], [str(SAMPLE_RULES)], out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return result, events


def _arp() -> bytes:
    from scapy.layers.l2 import ARP, Ether

    return bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") / ARP(pdst="10.0.0.2"))


def _lone_first_fragment() -> bytes:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkt = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", id=7, flags="MF") / UDP(dport=5353) / (b"x" * 64)
    return bytes(pkt)


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(lambda: [(_arp()[:8], 42)], id="truncated-ethernet"),
        pytest.param(lambda: [(_arp(), len(_arp()))], id="arp"),
        pytest.param(lambda: [(_lone_first_fragment(), len(_lone_first_fragment()))], id="lone-fragment"),
    ],
)
def test_capture_that_opens_no_flow(tmp_path, frames):
    frames = frames()
    pcap = tmp_path / "noflow.pcap"
    _write_pcap(pcap, frames)
    result, events = _scan(pcap)
    assert result.packets == len(frames)
    assert result.flows == 0
    assert events[-1]["event_type"] == "stats"
    assert not [e for e in events if e["event_type"] == "alert"]


def test_header_rules_still_fire_after_a_batch_without_flows(tmp_path):
    """The empty-table case must not hide later packets: a batch of ARP, then an mDNS datagram
    (sid 9000006, a header rule) in the next batch."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    mdns = bytes(Ether() / IP(src="10.0.0.1", dst="224.0.0.251") / UDP(sport=5353, dport=5353) / b"q")
    pcap = tmp_path / "mixed.pcap"
    _write_pcap(pcap, [(_arp(), len(_arp()))] * 3 + [(mdns, len(mdns))])
    out = io.StringIO()
    result = scan([str(pcap)], [str(SAMPLE_RULES)], out, batch_size=3)
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    sids = [e["alert"]["signature_id"] for e in alerts if e["event_type"] == "alert"]
    assert result.packets == 4
    assert sids == [9000006]


def _shared_captures() -> list[Path]:
    if not SHARED_PCAPS.is_dir():
        return []
    return sorted(p for p in SHARED_PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.skipif(not _shared_captures(), reason=f"shared captures not found under {SHARED_PCAPS}")
def test_every_shared_capture_scans_to_its_stats_event():
    failures = []
    for pcap in _shared_captures():
        try:
            _, events = _scan(pcap)
        except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
            failures.append(f"{pcap.relative_to(SHARED_PCAPS)}: {type(exc).__name__}: {exc}")
            continue
        if not events or events[-1]["event_type"] != "stats":
            failures.append(f"{pcap.relative_to(SHARED_PCAPS)}: no closing stats event")
    assert not failures, "\n".join(failures)
