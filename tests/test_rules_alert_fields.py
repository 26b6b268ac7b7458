"""What a rule carries into its EVE alert (classtype's category, priority as severity,
metadata, references, target) and the packet/stream variants of the tcp protocol."""

from __future__ import annotations

from dpi.rules import parse_rules
from tests.conftest import tcp_session
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _udp(payload: bytes):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000, dport=9999) / payload
    p.time = T0
    return [p]


def test_alert_carries_classtype_priority_metadata_references_and_target(tmp_path):
    rule = (
        'alert udp any any -> any any (msg:"m"; content:"X"; classtype:trojan-activity; '
        "reference:url,example.org/a; reference:cve,2020-0001; "
        "metadata:affected_product Any, created_at 2020_01_01, tag one, tag two; "
        "target:dest_ip; sid:7; rev:3;)\n"
    )
    _, events = run_scan(tmp_path, _udp(b"X"), rule)
    (alert,) = alerts_of(events)
    a = alert["alert"]
    assert (a["signature_id"], a["rev"], a["signature"]) == (7, 3, "m")
    assert a["category"] == "A Network Trojan was detected" and a["severity"] == 1
    assert a["metadata"] == {"affected_product": ["Any"], "created_at": ["2020_01_01"], "tag": ["one", "two"]}
    assert a["references"] == ["url,example.org/a", "cve,2020-0001"]
    assert a["source"] == {"ip": "10.0.0.1", "port": 4000}
    assert a["target"] == {"ip": "10.0.0.2", "port": 9999}


def test_priority_keyword_overrides_the_classtype(tmp_path):
    rule = (
        'alert udp any any -> any any (msg:"m"; content:"X"; classtype:trojan-activity; priority:4; sid:1;)\n'
    )
    _, events = run_scan(tmp_path, _udp(b"X"), rule)
    assert alerts_of(events)[0]["alert"]["severity"] == 4


def test_tcp_pkt_and_tcp_stream_protocols():
    rs = parse_rules(
        'alert tcp-pkt any any -> any any (content:"a"; sid:1;)\n'
        'alert tcp-stream any any -> any any (content:"a"; sid:2;)\n'
        'alert tcp-pkt any any -> any any (content:"a"; flow:only_stream; sid:3;)\n'
    )
    one, two = rs.rules
    assert one.proto == two.proto == "tcp"
    assert one.flow.no_stream and two.flow.only_stream
    assert len(rs.errors) == 1 and "contradicts" in rs.errors[0].message


def test_only_stream_matches_across_segments_no_stream_does_not(tmp_path):
    """A pattern split over two segments exists only in the reassembled stream."""
    packets = tcp_session([b"GET /ad", b"min HTTP/1.0\r\n"], replies=[b"HTTP/1.0 200 OK\r\n"])
    rules = (
        'alert tcp any any -> any any (content:"/admin"; flow:only_stream; sid:1;)\n'
        'alert tcp any any -> any any (content:"/admin"; flow:no_stream; sid:2;)\n'
        'alert tcp any any -> any any (content:"/ad"; flow:no_stream; sid:3;)\n'
    )
    _, events = run_scan(tmp_path, packets, rules)
    assert sorted({a["alert"]["signature_id"] for a in alerts_of(events)}) == [1, 3]


def test_icmp_alerts_carry_type_and_code(tmp_path):
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Ether

    packets = [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0) / b"ping-me",
        Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3) / IP() / UDP() / b"ping-me",
        Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(data=b"ping-me"),
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"ping-me",
    ]
    rules = 'alert ip any any -> any any (msg:"content"; content:"ping-me"; sid:1; rev:1;)\n'
    _, events = run_scan(tmp_path, packets, rules)
    fields = [(a["pcap_cnt"], a.get("icmp_type"), a.get("icmp_code")) for a in alerts_of(events)]
    assert fields == [(1, 8, 0), (2, 3, 3), (3, 128, 0), (4, None, None)]
    assert list(alerts_of(events)[0])[:8] == [
        "timestamp", "flow_id", "pcap_cnt", "event_type", "src_ip", "dest_ip", "proto", "icmp_type",
    ]  # fmt: skip
