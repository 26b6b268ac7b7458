"""Matcher-state slots are recycled: the state the matcher keeps follows the streams alive
at once, not every stream seen, and a reused slot carries nothing of its old stream."""

from __future__ import annotations

import io
import json

from dpi.capture import open_capture
from dpi.output.eve import EveWriter
from dpi.pipeline import Scanner, build_detection, rules_summary
from tests.conftest import tcp_session, write_pcap

RULE = 'alert tcp any any -> any 80 (msg:"split"; flow:to_server; content:"SECRET"; sid:1;)\n'


def _sessions(n, gap_s=1000.0):
    """n TCP sessions on different tuples, one after another, each idle long enough for the
    one before to time out; both directions of session k end in "SEC" and session k+1's
    client starts with "RET"."""
    pkts = []
    for k in range(n):
        body = (b"RET" if k else b"") + b"x" * 40 + b"SEC"
        pkts += tcp_session(
            [body],
            client=("10.0.0.1", 20000 + k),
            replies=[b"y" * 20 + b"SEC"],
            t0=1_300_000_000.0 + k * gap_s,
        )
    return pkts


def _scan(tmp_path, pkts, batch_size):
    path = write_pcap(tmp_path / "a.pcap", pkts)
    rules = tmp_path / "r.rules"
    rules.write_text(RULE)
    ruleset, db = build_detection([str(rules)])
    out = io.StringIO()
    scanner = Scanner(db, rules_summary(ruleset, db), writer=EveWriter(out))
    for batch in open_capture(str(path), batch_size=batch_size).batches():
        scanner.process_batch(batch)
    scanner.flush()
    scanner.finish()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return scanner, events


def test_slots_are_reused_and_nothing_crosses_streams(tmp_path):
    scanner, events = _scan(tmp_path, _sessions(60), batch_size=8)
    assert not [e for e in events if e["event_type"] == "alert"]  # "SEC" + "RET" never joins
    assert len([e for e in events if e["event_type"] == "flow"]) == 60
    # 120 stream directions were opened; only a few batches' worth of slots were ever made
    assert scanner.streams.next_slot <= 40
    assert scanner.detector.states.shape[0] <= 1024


def test_a_whole_needle_still_alerts_in_a_reused_slot(tmp_path):
    pkts = _sessions(30)
    pkts += tcp_session([b"..SECRET.."], client=("10.0.0.1", 30000), t0=1_300_000_000.0 + 40 * 1000.0)
    scanner, events = _scan(tmp_path, pkts, batch_size=8)
    alerts = [e for e in events if e["event_type"] == "alert"]
    assert len(alerts) == 1 and alerts[0]["src_port"] == 30000
    assert scanner.streams.next_slot <= 40
