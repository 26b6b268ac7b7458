"""flowbits (set, unset, toggle, isset, isnotset, noalert) across the packets of a flow, in
Suricata's order within a packet (rules that set before rules that read)."""

from __future__ import annotations

import pytest

from dpi.rules import parse_rules
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _udp(payloads, sport=4000, src="10.0.0.1"):
    """One UDP flow: each payload a packet, 1 s apart."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = []
    for k, data in enumerate(payloads):
        p = Ether() / IP(src=src, dst="10.0.0.2") / UDP(sport=sport, dport=9999) / data
        p.time = T0 + k
        pkts.append(p)
    return pkts


def _alerts(tmp_path, packets, rules):
    _, events = run_scan(tmp_path, packets, rules)
    return [(a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts_of(events)]


SETTER = (
    'alert udp any any -> any any (msg:"login"; content:"LOGIN"; flowbits:set,logged; '
    "flowbits:noalert; sid:1;)\n"
)
READER = (
    'alert udp any any -> any any (msg:"data after login"; content:"DATA"; flowbits:isset,logged; sid:2;)\n'
)


def test_isset_needs_the_bit_from_an_earlier_packet(tmp_path):
    assert _alerts(tmp_path, _udp([b"DATA", b"LOGIN", b"DATA"]), SETTER + READER) == [(3, 2)]


def test_noalert_rule_does_not_alert_but_sets(tmp_path):
    assert _alerts(tmp_path, _udp([b"LOGIN"]), SETTER) == []


def test_bits_belong_to_one_flow(tmp_path):
    packets = _udp([b"LOGIN"], sport=4000) + _udp([b"DATA"], sport=4001)
    packets[1].time = T0 + 5
    assert _alerts(tmp_path, packets, SETTER + READER) == []


def test_isnotset(tmp_path):
    rules = SETTER + (
        'alert udp any any -> any any (msg:"data before login"; content:"DATA"; '
        "flowbits:isnotset,logged; sid:3;)\n"
    )
    assert _alerts(tmp_path, _udp([b"DATA", b"LOGIN", b"DATA"]), rules) == [(1, 3)]


def test_unset_and_toggle(tmp_path):
    rules = (
        SETTER
        + READER
        + 'alert udp any any -> any any (content:"LOGOUT"; flowbits:unset,logged; flowbits:noalert; sid:4;)\n'
        + 'alert udp any any -> any any (content:"FLIP"; flowbits:toggle,logged; flowbits:noalert; sid:5;)\n'
    )
    packets = _udp([b"LOGIN", b"DATA", b"LOGOUT", b"DATA", b"FLIP", b"DATA", b"FLIP", b"DATA"])
    assert _alerts(tmp_path, packets, rules) == [(2, 2), (6, 2)]


def test_or_of_names(tmp_path):
    rules = (
        'alert udp any any -> any any (content:"A"; flowbits:set,a; flowbits:noalert; sid:1;)\n'
        'alert udp any any -> any any (content:"B"; flowbits:set,b; flowbits:noalert; sid:2;)\n'
        'alert udp any any -> any any (content:"X"; flowbits:isset,a|b; sid:3;)\n'
        'alert udp any any -> any any (content:"X"; flowbits:isset,a&b; sid:4;)\n'
    )
    assert _alerts(tmp_path, _udp([b"X", b"B", b"X", b"A", b"X"]), rules) == [(3, 3), (5, 3), (5, 4)]


def test_setter_runs_before_reader_in_the_same_packet(tmp_path):
    """The reader has the lower sid and a higher priority, yet Suricata orders rules that
    set flowbits before rules that read them: the bit set by this packet counts."""
    rules = (
        'alert udp any any -> any any (content:"DATA"; flowbits:isset,logged; priority:1; sid:1;)\n'
        'alert udp any any -> any any (content:"LOGIN"; flowbits:set,logged; priority:3; sid:2;)\n'
    )
    assert _alerts(tmp_path, _udp([b"LOGIN DATA"]), rules) == [(1, 2), (1, 1)]


def test_flowbits_on_a_tcp_stream(tmp_path):
    from tests.conftest import tcp_session

    packets = tcp_session([b"USER bob\r\n", b"PASS secret\r\n"], replies=[b"230 ok\r\n"])
    rules = (
        'alert tcp any any -> any any (flow:established,to_server; content:"USER "; '
        "flowbits:set,ftp.user; flowbits:noalert; sid:1;)\n"
        'alert tcp any any -> any any (flow:established,to_server; content:"PASS "; '
        "flowbits:isset,ftp.user; sid:2;)\n"
    )
    got = _alerts(tmp_path, packets, rules)
    assert [sid for _, sid in got] == [2]


@pytest.mark.parametrize(
    "option",
    ["flowbits:set;", "flowbits:bogus,x;", "flowbits:set,a|b;", "flowbits:noalert,x;", "flowbits:isset,a b;"],
)
def test_malformed_flowbits_are_errors(option):
    rs = parse_rules(f'alert udp any any -> any any (content:"x"; {option} sid:1;)')
    assert not rs.rules and len(rs.errors) == 1
    assert ":1:" in str(rs.errors[0])


def test_bits_end_with_their_flow(tmp_path):
    """A flow that timed out takes its bits along: the same 5-tuple later is a new flow."""
    packets = _udp([b"LOGIN", b"DATA", b"DATA"])
    packets[2].time = T0 + 1000  # long past the UDP timeout
    assert _alerts(tmp_path, packets, SETTER + READER) == [(2, 2)]
