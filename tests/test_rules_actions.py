"""Actions and the order of alerts: pass, drop, reject and alert with Suricata's action
order (pass first), flowbits use and priority; pass removes the packet's lower-ordered
alerts, and passes the whole flow when it matched the stream or is an IP-only rule."""

from __future__ import annotations

from dpi.detect.stateful import rule_order
from dpi.rules import parse_rules
from tests.conftest import tcp_session
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _udp(payloads, sport=4000):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = []
    for k, data in enumerate(payloads):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=sport, dport=9999) / data
        p.time = T0 + k
        pkts.append(p)
    return pkts


def _alerts(tmp_path, packets, rules):
    result, events = run_scan(tmp_path, packets, rules)
    return [(a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts_of(events)], result


def test_suricata_signature_order():
    """Suricata's own ordering vector (detect-engine-sigorder.c SCSigOrderingTest02, less
    its flowvar/pktvar rules): action, then flowbits use, then priority, then sid."""
    text = "\n".join(
        [
            'alert tcp any any -> any any (content:"220"; sid:1;)',
            'drop tcp any any -> any any (content:"220"; sid:2;)',
            'drop tcp any any -> any any (content:"220"; offset:10; sid:3;)',
            'alert tcp any any -> any any (content:"220"; priority:1; sid:5;)',
            'pass tcp any any -> any any (content:"220"; priority:3; sid:7;)',
            'pass tcp any any -> any any (content:"220"; priority:2; sid:8;)',
            'drop tcp any any -> any any (content:"220"; priority:3; flowbits:set,TEST.one; '
            "flowbits:noalert; sid:9;)",
            'pass tcp any any -> any any (content:"220"; priority:3; sid:10;)',
            'alert tcp any any -> any any (content:"220"; sid:11;)',
            'alert tcp any any -> any any (content:"220"; sid:12;)',
            'drop tcp any any -> any any (content:"220"; priority:2; flowbits:isnotset,TEST.two; sid:13;)',
            'alert tcp any any -> any any (content:"220"; priority:2; flowbits:set,TEST.two; sid:14;)',
        ]
    )
    rules = parse_rules(text).rules
    rank = rule_order(rules)
    ordered = [r.sid for _, r in sorted(zip(rank, rules, strict=True), key=lambda x: x[0])]
    assert ordered == [8, 7, 10, 9, 13, 2, 3, 14, 5, 1, 11, 12]


def test_alerts_of_a_packet_follow_the_rule_order(tmp_path):
    rules = (
        'alert udp any any -> any any (content:"X"; priority:3; sid:1;)\n'
        'alert udp any any -> any any (content:"X"; priority:1; sid:2;)\n'
        'drop udp any any -> any any (content:"X"; priority:3; sid:3;)\n'
        'reject udp any any -> any any (content:"X"; priority:3; sid:4;)\n'
    )
    got, _ = _alerts(tmp_path, _udp([b"X"]), rules)
    assert got == [(1, 3), (1, 4), (1, 2), (1, 1)]


def test_pass_removes_the_alerts_of_its_packet_only(tmp_path):
    rules = (
        'alert udp any any -> any any (content:"X"; priority:1; sid:1;)\n'
        'pass udp any any -> any any (content:"OK"; priority:3; sid:2;)\n'
    )
    got, result = _alerts(tmp_path, _udp([b"X OK", b"X"]), rules)
    assert got == [(2, 1)]
    assert result.detect["alerts_after_pass"] == 1


def test_ip_only_pass_passes_the_flow(tmp_path):
    rules = 'alert udp any any -> any any (content:"X"; sid:1;)\npass udp 10.0.0.1 any -> any any (sid:2;)\n'
    got, result = _alerts(tmp_path, _udp([b"X", b"X", b"X"]), rules)
    assert got == []
    assert result.detect["passed_flow_matches"] > 0


def test_stream_pass_passes_the_rest_of_the_flow(tmp_path):
    packets = tcp_session([b"HELLO trusted\r\n"], replies=[b"EVIL\r\n", b"EVIL again\r\n"])
    rules = (
        'pass tcp any any -> any any (flow:established,to_server; content:"trusted"; sid:1;)\n'
        'alert tcp any any -> any any (content:"EVIL"; sid:2;)\n'
    )
    got, _ = _alerts(tmp_path, packets, rules)
    assert got == []
    # without the pass rule the replies alert
    got, _ = _alerts(tmp_path, packets, 'alert tcp any any -> any any (content:"EVIL"; sid:2;)\n')
    assert got and {sid for _, sid in got} == {2}


def test_drop_and_reject_alert_in_ids_mode(tmp_path):
    rules = (
        'drop udp any any -> any any (content:"X"; sid:1;)\n'
        'rejectboth udp any any -> any any (content:"X"; sid:2;)\n'
    )
    _, events = run_scan(tmp_path, _udp([b"X"]), rules)
    alerts = alerts_of(events)
    assert [a["alert"]["signature_id"] for a in alerts] == [1, 2]
    assert {a["alert"]["action"] for a in alerts} == {"allowed"}


def test_unknown_action_is_an_error_and_snort_actions_are_skipped():
    rs = parse_rules("allow udp any any -> any any (sid:1;)\nsdrop udp any any -> any any (sid:2;)\n")
    assert len(rs.errors) == 1 and "unknown action" in str(rs.errors[0])
    assert [s.reason for s in rs.skipped] == ["unsupported action 'sdrop'"]
