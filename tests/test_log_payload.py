"""--log-payload: alerts carry their packet's payload (Suricata's payload and payload_printable)
only when asked; by default no payload byte reaches the EVE file."""

from __future__ import annotations

import base64
import io
import json

from dpi.output.eve import printable
from dpi.pipeline import scan
from dpi.rules.parser import load_rules
from tests.conftest import REPO

PCAP = str(REPO / "pcaps" / "wikipedia.pcap")
RULES = str(REPO / "rules" / "dpi-sample.rules")


def _alerts(**kwargs):
    out = io.StringIO()
    scan([PCAP], [RULES], out, **kwargs)
    return [e for e in map(json.loads, out.getvalue().splitlines()) if e["event_type"] == "alert"]


def test_no_payload_by_default():
    assert all("payload" not in a and "payload_printable" not in a for a in _alerts())


def test_payloads_hold_the_matched_content():
    rules = {r.sid: r for r in load_rules(RULES)}
    alerts = _alerts(log_payload=True)
    with_payload = [a for a in alerts if "payload" in a]
    assert len(with_payload) >= len(alerts) - 2  # alerts from data flushed at a flow's end have no packet
    for a in with_payload:
        data = base64.b64decode(a["payload"])
        assert a["payload_printable"] == printable(data)
        rule = rules[a["alert"]["signature_id"]]
        positive = [c for c in rule.contents if not c.negated]
        if positive and not a["stream"]:
            c = max(positive, key=lambda c: len(c.pattern))
            assert (c.pattern.lower() in data.lower()) if c.nocase else (c.pattern in data)


def test_printable_keeps_text_and_dots_the_rest():
    assert printable(b"GET /\r\n\x00\xff") == "GET /\r\n.."
