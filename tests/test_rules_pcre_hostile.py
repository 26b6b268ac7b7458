"""A hostile pcre cannot stall the scan: the regex engine is an NFA simulation (no
exponential backtracking), and every verification has a step budget; what the budget
stops is counted in the stats (detect.payload_aborted), never silently dropped."""

from __future__ import annotations

from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _packets(n: int, payload: bytes):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = []
    for k in range(n):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=9999) / payload
        p.time = T0 + k * 0.001
        pkts.append(p)
    return pkts


def test_catastrophic_backtracking_patterns_finish(tmp_path):
    """(a+)+$ and (a|aa)*b take exponential time in a backtracking engine on 'aaaa...X';
    here each is linear in the data. The scan finishes and the verdicts are right."""
    payload = b"a" * 1400 + b"X"
    rules = (
        'alert udp any any -> any any (msg:"nested"; content:"aaaa"; pcre:"/(a+)+$/"; sid:1;)\n'
        'alert udp any any -> any any (msg:"alternation"; content:"aaaa"; pcre:"/(a|aa)*b/"; sid:2;)\n'
        'alert udp any any -> any any (msg:"ends in X"; content:"aaaa"; pcre:"/(a+)+X$/"; sid:3;)\n'
    )
    result, events = run_scan(tmp_path, _packets(50, payload), rules)
    assert [a["alert"]["signature_id"] for a in alerts_of(events)] == [3] * 50
    assert result.detect["payload_programs_run"] == 150


def test_a_pattern_past_the_step_budget_is_aborted_and_counted(tmp_path):
    """A large counted repetition makes the NFA big: with 1400-byte payloads the work per
    packet passes the budget, so the verification stops and is counted as aborted."""
    payload = b"a" * 1400
    rules = 'alert udp any any -> any any (msg:"big"; content:"aaaa"; pcre:"/(?:a|aa){1,400}b/"; sid:1;)\n'
    result, events = run_scan(tmp_path, _packets(20, payload), rules)
    assert alerts_of(events) == []
    assert result.detect["payload_aborted"] == 20
