"""Run the whole pipeline on hand-made packets and rule text; returns the EVE events."""

from __future__ import annotations

import io
import json
from pathlib import Path

from dpi.pipeline import scan


def run_scan(tmp_path: Path, packets, rules_text: str, **kwargs):
    from scapy.utils import wrpcap

    pcap = tmp_path / "input.pcap"
    wrpcap(str(pcap), packets)
    rules = tmp_path / "test.rules"
    rules.write_text(rules_text)
    out = io.StringIO()
    result = scan([str(pcap)], [str(rules)], out, **kwargs)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return result, events


def alerts_of(events):
    return [e for e in events if e["event_type"] == "alert"]
