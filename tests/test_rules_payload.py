"""Payload keywords verified on the bytes: pcre (flags, relative, negated), isdataat, endswith,
byte_test, byte_jump, byte_extract (variables in later keywords), dsize and rawbytes, each
with packets that should alert and packets that should not, through the whole pipeline."""

from __future__ import annotations

import pytest

from dpi.rules import parse_rules
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _udp(payloads):
    """One UDP packet per payload, each its own flow (so nothing carries over)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = []
    for k, data in enumerate(payloads):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=4000 + k, dport=9999) / data
        p.time = T0 + k
        pkts.append(p)
    return pkts


def _which(tmp_path, options: str, payloads) -> list[int]:
    """Numbers (1-based) of the packets the rule alerts on."""
    rules = f'alert udp any any -> any any (msg:"t"; {options} sid:1;)\n'
    result, events = run_scan(tmp_path, _udp(payloads), rules)
    assert result.rules["rules_loaded"] == 1, result.rules
    return [a["pcap_cnt"] for a in alerts_of(events)]


CASES = [
    # pcre
    (
        'content:"GET"; pcre:"/^GET \\/[a-z]+\\.php/";',
        [b"GET /index.php", b"GET /INDEX.php", b"POST /a.php"],
        [1],
    ),
    ('content:"GET"; pcre:"/^get \\/[a-z]+\\.php/i";', [b"GET /INDEX.php", b"GET /1.php"], [1]),
    ('pcre:"/a.b/s";', [b"a\nb", b"axb", b"ab"], [1, 2]),
    ('pcre:"/a.b/";', [b"a\nb", b"axb"], [2]),
    ('pcre:"/^b/m";', [b"a\nb", b"ab"], [1]),
    ('pcre:"/^b/";', [b"a\nb", b"b"], [2]),
    ('content:"user="; pcre:"/^[a-z]{3}\\d/R";', [b"user=abc1", b"user=ab1", b"xx abc1 user="], [1]),
    ('content:"user="; pcre:!"/^admin/R";', [b"user=admin", b"user=bob"], [2]),
    ('content:"k="; pcre:"/\\d+/R"; content:"!"; distance:0; within:1;', [b"k=123!", b"k=123 !"], [1]),
    ('pcre:"/^\\x00\\x01[\\x02-\\x05]/";', [b"\x00\x01\x03", b"\x00\x01\x07"], [1]),
    # isdataat
    ('content:"AB"; isdataat:2,relative;', [b"ABcde", b"ABcd", b"ABc", b"AB"], [1, 2]),
    ('content:"AB"; isdataat:!1,relative;', [b"xAB", b"ABc"], [1]),
    ('content:"AB"; isdataat:10;', [b"AB" + b"x" * 9, b"AB" + b"x" * 8], [1]),
    # endswith
    ('content:"END"; endswith;', [b"xxEND", b"ENDxx", b"END"], [1, 3]),
    ('content:"ab"; nocase; endswith;', [b"zzAB", b"zzABz"], [1]),
    # byte_test
    ('content:"|00|"; byte_test:2,>,15,0;', [b"\x00\x10rest", b"\x00\x0frest"], [1]),
    ('content:"|00|"; byte_test:2,=,16,0;', [b"\x00\x10", b"\x00\x11"], [1]),
    ('content:"|00|"; byte_test:2,!=,16,0;', [b"\x00\x10", b"\x00\x11"], [2]),
    ('content:"|10 00|"; byte_test:2,=,16,0,little;', [b"\x10\x00", b"\x00\x10"], [1]),
    ('content:"LEN "; byte_test:3,>,100,0,relative,string,dec;', [b"LEN 123 ", b"LEN 099 "], [1]),
    ('content:"|FF|"; byte_test:1,&,0x80,0;', [b"\xff", b"\x7f\xff"], [1]),
    # byte_jump: 2-byte length, skip that many bytes, then XYZ right there
    (
        'content:"|00|"; byte_jump:2,0; content:"XYZ"; distance:0; within:3;',
        [b"\x00\x03abcXYZ", b"\x00\x02abcXYZ"],
        [1],
    ),
    (
        'content:"|00|"; byte_jump:2,0,relative,post_offset 1; content:"Z"; distance:0; within:1;',
        [b"\x00\x00\x01abZ", b"\x00\x00\x01aZb"],
        [1],
    ),
    # byte_extract: a length field used by a later content's distance/within
    (
        'byte_extract:1,0,skip; content:"MARK"; distance:skip; within:4;',
        [b"\x04....MARK", b"\x02....MARK"],
        [1],
    ),
    ('byte_extract:1,0,len; content:"|FF|"; byte_test:1,=,len,1;', [b"\x07\x07\xff", b"\x07\x08\xff"], [1]),
    # dsize
    ("dsize:>10;", [b"x" * 11, b"x" * 10], [1]),
    ("dsize:5<>10;", [b"x" * 5, b"x" * 6, b"x" * 9, b"x" * 10], [2, 3]),
    ('content:"x"; dsize:3;', [b"xxx", b"xxxx"], [1]),
    # rawbytes is accepted (our buffers are raw already)
    ('content:"raw"; rawbytes;', [b"raw", b"cooked"], [1]),
    # a relative content retried at the next occurrence of the one before it
    ('content:"user="; content:"root"; within:4; isdataat:!1,relative;', [b"user=x admin user=root"], [1]),
]


@pytest.mark.parametrize(("options", "payloads", "expected"), CASES, ids=[c[0] for c in CASES])
def test_payload_keyword(tmp_path, options, payloads, expected):
    assert _which(tmp_path, options, payloads) == expected


@pytest.mark.parametrize(
    "options",
    [
        'pcre:"/abc";',
        'pcre:"abc/";',
        'pcre:"/a(/";',
        'pcre:"/a/q";',
        "byte_test:2,>,1;",
        "byte_jump:9,0;",
        "isdataat:;",
        'content:"a"; distance:nosuchvar;',
        "dsize:>;",
    ],
)
def test_malformed_payload_keywords_are_errors(options):
    rs = parse_rules(f'alert udp any any -> any any (msg:"t"; {options} sid:1;)')
    assert not rs.rules and len(rs.errors) == 1, (rs.skipped, rs.errors)
    assert str(rs.errors[0]).startswith("<string>:1:")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ('pcre:"/(a)\\1/";', "pcre: backreference"),
        ('content:"a"; pcre:"/a/U";', "app-layer keyword"),
        ('http.uri; content:"a";', "app-layer keyword"),
        ('content:"a"; http_uri;', "app-layer keyword"),
        ('file_data; content:"a";', "app-layer keyword"),
        ('dns.query; content:"a";', "app-layer keyword"),
    ],
)
def test_unsupported_pcre_and_app_layer_are_skipped_with_a_reason(options, reason):
    rs = parse_rules(f'alert tcp any any -> any any (msg:"t"; {options} sid:1;)')
    assert [s.reason for s in rs.skipped] == [reason]


def _mixed():
    """1: TCP SYN ttl 64; 2: UDP ttl 3 'abc'; 3: ICMP echo id 7 seq 9; 4: TCP PA 'abc' ttl 64
    from a host to itself; 5: an IPv4 packet with the DF bit and the RR option."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
    from scapy.layers.l2 import Ether

    e = Ether()
    pkts = [
        e / IP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / TCP(sport=1000, dport=80, flags="S", window=8192),
        e / IP(src="10.0.0.1", dst="10.0.0.2", ttl=3) / UDP(sport=53, dport=5353) / b"abc",
        e / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0, id=7, seq=9),
        e / IP(src="10.0.0.9", dst="10.0.0.9", ttl=64) / TCP(sport=1001, dport=81, flags="PA") / b"abc",
        e / IP(src="10.0.0.1", dst="10.0.0.3", flags="DF", options=[IPOption_RR()]) / UDP(sport=1, dport=2),
    ]
    for k, p in enumerate(pkts):
        p.time = T0 + k
    return pkts


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("alert ip any any -> any any (ttl:<10; sid:1;)", [2]),
        ("alert tcp any any -> any any (flags:S; window:8192; sid:1;)", [1]),
        ('alert tcp any any -> any any (flags:PA; content:"abc"; sid:1;)', [4]),
        ('alert tcp any any -> any any (flags:S; content:"abc"; sid:1;)', []),
        ("alert icmp any any -> any any (itype:8; icode:0; icmp_id:7; icmp_seq:9; sid:1;)", [3]),
        ("alert icmp any any -> any any (icmp_seq:10; sid:1;)", []),
        ("alert ip any any -> any any (sameip; sid:1;)", [4]),
        ("alert ip any any -> any any (ip_proto:17; sid:1;)", [2, 5]),
        ("alert ip any any -> any any (fragbits:D; ipopts:rr; sid:1;)", [5]),
        ('alert udp any any -> any any (content:"abc"; ttl:3; dsize:3; sid:1;)', [2]),
    ],
)
def test_header_keywords_in_a_scan(tmp_path, rule, expected):
    _, events = run_scan(tmp_path, _mixed(), rule + "\n")
    assert [a["pcap_cnt"] for a in alerts_of(events)] == expected


@pytest.mark.parametrize(
    ("options", "payloads", "expected"),
    [
        # the first "id=" digits are followed by ";", the second by "!": the pcre is retried
        (
            'content:"id="; pcre:"/id=\\d+/"; content:"!"; distance:0; within:1;',
            [b"id=1; id=22!", b"id=1;"],
            [1],
        ),
        # ^ keeps meaning the subject start on a retry: "2" is not at the start...
        ('content:"k="; pcre:"/^\\d/R"; content:"!"; distance:0; within:1;', [b"k=12!"], []),
        # ...but the content before it is retried too, and the second "k=" makes a new subject
        ('content:"k="; pcre:"/^\\d/R"; content:"!"; distance:0; within:1;', [b"k=1; k=2!"], [1]),
    ],
)
def test_pcre_is_retried_at_its_next_match(tmp_path, options, payloads, expected):
    assert _which(tmp_path, options, payloads) == expected


def test_stream_data_is_verified_on_its_own_bytes_not_on_the_acking_packet(tmp_path):
    """Client data is released when the server's reply ACKs it: the reply's payload must
    not stand in for the client's bytes (it holds 'foo'; the request does not)."""
    from tests.conftest import tcp_session

    packets = tcp_session([b"GET /x HTTP/1.0\r\n\r\n"], replies=[b"HTTP/1.0 200 OK\r\n\r\nGET foo"])
    rules = (
        'alert tcp any any -> any any (flow:to_server; content:"GET"; pcre:"/foo/"; sid:1;)\n'
        'alert tcp any any -> any any (flow:to_server; content:"GET"; pcre:"/\\/x/"; sid:2;)\n'
        'alert tcp any any -> any any (flow:to_server,no_stream; content:"GET"; pcre:"/\\/x/"; sid:3;)\n'
    )
    _, events = run_scan(tmp_path, packets, rules)
    assert sorted(a["alert"]["signature_id"] for a in alerts_of(events)) == [2, 3]
    assert {a["direction"] for a in alerts_of(events)} == {"to_server"}
