"""Header keywords (ttl, tos, ipopts, fragbits, fragoffset, id, flags, seq, ack, window, itype,
icode, icmp_id, icmp_seq, ip_proto, sameip, dsize): parsing of their values, and the packet
check kernel on real packets built with scapy and decoded by dpi.decode."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import (
    ICMP,
    IP,
    TCP,
    UDP,
    IPOption_EOL,
    IPOption_LSRR,
    IPOption_NOP,
    IPOption_RR,
    IPOption_Security,
    IPOption_SSRR,
    IPOption_Stream_Id,
    IPOption_Timestamp,
)
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import Ether

from dpi.capture import PacketBatch
from dpi.decode import decode_batch
from dpi.detect.packet_checks import dsize_ok, pack_checks, packet_checks_ok
from dpi.rules import parse_rules
from dpi.rules.header_keywords import (
    FRAG_DF,
    FRAG_MF,
    HEADER_KEYWORDS,
    IPOPT_ANY,
    IPOPT_LSRR,
    KIND_FLAGS,
    KIND_TTL,
    OP_BITS_ALL,
    OP_BITS_ANY,
    OP_BITS_EXACT,
    OP_BITS_NOT,
    OP_EQ,
    OP_GE,
    OP_GT,
    OP_LE,
    OP_LT,
    OP_NE,
    OP_NOT_RANGE,
    OP_RANGE,
    TCP_ACK,
    TCP_CWR,
    TCP_ECE,
    TCP_SYN,
    HeaderCheck,
    HeaderKeywordError,
    parse_header_keyword,
)

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
SRC4, DST4 = "192.0.2.1", "198.51.100.7"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def decode(frame, caplen=None):
    """(buffer, DecodedBatch) of one Ethernet frame; with ``caplen`` short of the frame, the
    rest still lies in the buffer, so a read past the capture would find plausible bytes."""
    data = bytes(frame)
    caplen = len(data) if caplen is None else caplen
    batch = PacketBatch(
        buffer=np.frombuffer(data, dtype=np.uint8),
        offset=np.zeros(1, dtype=np.int64),
        caplen=np.array([caplen], dtype=np.int64),
        wirelen=np.array([len(data)], dtype=np.int64),
        ts_ns=np.zeros(1, dtype=np.int64),
        linktype=np.ones(1, dtype=np.int64),
        number=np.ones(1, dtype=np.int64),
    )
    return batch.buffer, decode_batch(batch)


# the DecodedBatch columns packet_checks_ok takes after the buffer, in its order
KERNEL_COLUMNS = (
    "ip_version", "l3_offset", "l4_offset", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "tcp_seq",
    "tcp_ack", "tcp_flags", "icmp_type", "icmp_code", "ttl", "frag_offset", "frag_more", "frag_id",
    "is_fragment", "payload_offset",
)  # fmt: skip


def run_rule(packed, r: int, buf, decoded, i: int = 0) -> bool:
    columns = [getattr(decoded, name) for name in KERNEL_COLUMNS]
    k = packed
    return bool(packet_checks_ok(r, k.start, k.kind, k.op, k.a, k.b, k.mask, i, buf, *columns))


def run_checks(checks: list[HeaderCheck], frame, caplen=None) -> bool:
    buf, d = decode(frame, caplen)
    return run_rule(pack_checks([checks]), 0, buf, d)


def matches(options: str, frame, caplen=None) -> bool:
    """Does the packet pass every 'name:value' (or bare 'name') of ``options`` (';'-separated)?"""
    checks = []
    for option in filter(None, (o.strip() for o in options.split(";"))):
        name, colon, value = option.partition(":")
        checks.append(parse_header_keyword(name.strip(), value if colon else None))
    return run_checks(checks, frame, caplen)


# -- packets ---------------------------------------------------------------------------------------


def tcp4(flags="SA", ttl=64, tos=0x10, ip_id=4321, ip_flags="DF", options=(), **tcp):
    tcp = {"sport": 40000, "dport": 80, "seq": 1000, "ack": 2000, "window": 8192, **tcp}
    ip = IP(src=SRC4, dst=DST4, ttl=ttl, tos=tos, id=ip_id, flags=ip_flags, options=list(options))
    return ETH / ip / TCP(flags=flags, **tcp) / b"data"


def tcp6(flags="SA", hlim=33):
    return (
        ETH / IPv6(src=SRC6, dst=DST6, hlim=hlim, tc=0x10) / TCP(flags=flags, seq=1000, ack=2000, window=8192)
    )


def udp4(**ip):
    return ETH / IP(**{"src": SRC4, "dst": DST4, **ip}) / UDP(sport=53, dport=53) / b"x"


def icmp4(icmp_type=8, code=0, icmp_id=0x1234, seq=7):
    return ETH / IP(src=SRC4, dst=DST4) / ICMP(type=icmp_type, code=code, id=icmp_id, seq=seq) / b"ping"


def icmp6_echo(request=True, icmp_id=0x1234, seq=7):
    layer = ICMPv6EchoRequest if request else ICMPv6EchoReply
    return ETH / IPv6(src=SRC6, dst=DST6) / layer(id=icmp_id, seq=seq) / b"ping"


def icmp6_unreach():
    return ETH / IPv6(src=SRC6, dst=DST6) / ICMPv6DestUnreach(code=3) / IPv6(src=DST6, dst=SRC6) / UDP()


# -- parsing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "op", "a", "b"),
    [
        ("ttl", "10", OP_EQ, 10, 0),
        ("ttl", "=10", OP_EQ, 10, 0),
        ("ttl", " < 10 ", OP_LT, 10, 0),
        ("ttl", ">10", OP_GT, 10, 0),
        ("ttl", "<=10", OP_LE, 10, 0),
        ("ttl", ">=10", OP_GE, 10, 0),
        ("ttl", "!10", OP_NE, 10, 0),
        ("ttl", "!=10", OP_NE, 10, 0),
        ("ttl", "10-20", OP_RANGE, 10, 20),
        ("ttl", "10<>20", OP_RANGE, 10, 20),
        ("ttl", "10 - 20", OP_RANGE, 10, 20),
        ("ttl", "!10-20", OP_NOT_RANGE, 10, 20),
        ("ttl", "0x40", OP_EQ, 64, 0),
        ("itype", "8", OP_EQ, 8, 0),
        ("icode", "5<>10", OP_RANGE, 5, 10),
        ("dsize", ">1000", OP_GT, 1000, 0),
        ("dsize", "300<>400", OP_RANGE, 300, 400),
        ("tos", "8", OP_EQ, 8, 0),
        ("tos", "!8", OP_NE, 8, 0),
        ("tos", "! 8", OP_NE, 8, 0),
        ("tos", "x1A", OP_EQ, 0x1A, 0),
        ("tos", "X1a", OP_EQ, 0x1A, 0),
        ("tos", "0x10", OP_EQ, 0x10, 0),
        ("window", "55808", OP_EQ, 55808, 0),
        ("window", "!1024", OP_NE, 1024, 0),
        ("id", "1", OP_EQ, 1, 0),
        ("id", '"65535"', OP_EQ, 65535, 0),
        ("seq", "0", OP_EQ, 0, 0),
        ("ack", "4294967295", OP_EQ, 4294967295, 0),
        ("icmp_id", '  "  300 " ', OP_EQ, 300, 0),
        ("icmp_seq", "0", OP_EQ, 0, 0),
        ("fragoffset", "0", OP_EQ, 0, 0),
        ("fragoffset", ">0", OP_GT, 0, 0),
        ("fragoffset", "<100", OP_LT, 100, 0),
        ("fragoffset", "!100", OP_NE, 100, 0),
        ("ip_proto", "6", OP_EQ, 6, 0),
        ("ip_proto", "TCP", OP_EQ, 6, 0),
        ("ip_proto", "ipv6-icmp", OP_EQ, 58, 0),
        ("ip_proto", "PIM", OP_EQ, 103, 0),
        ("ip_proto", "!udp", OP_NE, 17, 0),
        ("ip_proto", "<10", OP_LT, 10, 0),
        ("ip_proto", "> 50", OP_GT, 50, 0),
    ],
)
def test_numeric_values_parse(name, value, op, a, b):
    check = parse_header_keyword(name, value)
    assert (check.keyword, check.op, check.a, check.b) == (name, op, a, b)


@pytest.mark.parametrize(
    ("value", "op", "flags", "ignored"),
    [
        ("S", OP_BITS_EXACT, TCP_SYN, 0),
        ("SA", OP_BITS_EXACT, TCP_SYN | TCP_ACK, 0),
        ("S,12", OP_BITS_EXACT, TCP_SYN, TCP_CWR | TCP_ECE),
        ("S,CE", OP_BITS_EXACT, TCP_SYN, TCP_CWR | TCP_ECE),
        ("+A", OP_BITS_ALL, TCP_ACK, 0),
        ("A+", OP_BITS_ALL, TCP_ACK, 0),
        ("*SA", OP_BITS_ANY, TCP_SYN | TCP_ACK, 0),
        ("!S", OP_BITS_NOT, TCP_SYN, 0),
        (" ! S , A ", OP_BITS_NOT, TCP_SYN, TCP_ACK),
        ("0", OP_BITS_EXACT, 0, 0),
        ("FSRPAUCE", OP_BITS_EXACT, 0xFF, 0),
        ("12", OP_BITS_EXACT, TCP_CWR | TCP_ECE, 0),
    ],
)
def test_flags_parse(value, op, flags, ignored):
    for name in ("flags", "tcp.flags"):
        check = parse_header_keyword(name, value)
        assert (check.kind, check.op, check.a, check.mask) == (KIND_FLAGS, op, flags, ignored)


def test_fragbits_ipopts_sameip_parse():
    assert parse_header_keyword("fragbits", "M").a == FRAG_MF
    check = parse_header_keyword("fragbits", "+DM")
    assert (check.op, check.a) == (OP_BITS_ALL, FRAG_MF | FRAG_DF)
    assert parse_header_keyword("fragbits", "*MD").op == OP_BITS_ANY
    assert parse_header_keyword("fragbits", "!D").op == OP_BITS_NOT
    assert parse_header_keyword("ipopts", " lsrr").a == IPOPT_LSRR
    assert parse_header_keyword("ipopts", "any").a == IPOPT_ANY
    assert parse_header_keyword("sameip", None).keyword == "sameip"
    assert {"ttl", "flags", "tcp.flags", "sameip", "dsize", "icmp_seq"} <= HEADER_KEYWORDS


@pytest.mark.parametrize(
    ("name", "value", "message", "index"),
    [
        ("ttl", "256", "out of range", 0),
        ("ttl", "abc", "expected", 0),
        ("ttl", "<0", "can never match", 0),
        ("ttl", ">255", "can never match", 0),
        ("ttl", ">=0", "always matches", 0),
        ("ttl", "<=255", "always matches", 0),
        ("ttl", "10-10", "empty", 0),
        ("ttl", "10-11", "empty", 0),
        ("ttl", "20-10", "empty", 0),
        ("ttl", "1-300", "out of range", 2),
        ("ttl", "", "needs a value", 0),
        ("ttl", None, "needs a value", 0),
        ("itype", ">", "expected", 0),
        ("icode", "5 6", "expected", 0),
        ("dsize", "70000", "out of range", 0),
        ("dsize", ">", "expected", 0),
        ("tos", "256", "out of range", 0),
        ("tos", "x123", "expected", 0),
        ("tos", "<8", "expected", 0),
        ("window", "65536", "out of range", 0),
        ("window", ">5", "expected", 0),
        ("id", "65536", "out of range", 0),
        ("id", '"12', "expected", 0),
        ("id", "-1", "expected", 0),
        ("seq", "4294967296", "out of range", 0),
        ("ack", "1,2", "expected", 0),
        ("icmp_id", "70000", "out of range", 0),
        ("icmp_seq", '5"', "expected", 0),
        ("fragoffset", "x", "expected", 0),
        ("fragoffset", "70000", "out of range", 0),
        ("ip_proto", "nosuchproto", "unknown protocol", 0),
        ("ip_proto", "256", "out of range", 0),
        ("ip_proto", "<0", "can never match", 0),
        ("ip_proto", ">255", "can never match", 0),
        ("flags", "SX", "unknown TCP flag 'X'", 1),
        ("flags", "s", "unknown TCP flag 's'", 0),
        ("flags", "+*S", "only one modifier", 1),
        ("flags", "+S!", "only one modifier", 2),
        ("flags", "+", "no flags", 1),
        ("flags", "S,", "no flags to ignore", 1),
        ("flags", "S,Q", "unknown TCP flag 'Q' in the ignore mask", 2),
        ("flags", "S,A,F", "expected", 0),
        ("fragbits", "MX", "unknown fragment bit 'X'", 1),
        ("fragbits", "+", "expected", 0),
        ("fragbits", "M D", "expected", 0),
        ("ipopts", "bogus", "unknown IP option 'bogus'", 0),
        ("ipopts", "rr,ts", "unknown IP option", 0),
        ("sameip", "yes", "takes no value", 0),
        ("content", "x", "not a header keyword", 0),
    ],
)
def test_parse_errors(name, value, message, index):
    with pytest.raises(HeaderKeywordError) as info:
        parse_header_keyword(name, value)
    assert message in info.value.message
    if name in HEADER_KEYWORDS:
        assert info.value.message.startswith(name)
    assert info.value.index == index


def test_rule_parser_uses_header_keywords():
    text = 'alert tcp any any -> any any (msg:"t"; ttl:<5; flags:S,12; window:!0; sid:1;)\n'
    rs = parse_rules(text)
    assert not rs.errors, rs.errors
    assert [(c.keyword, c.kind) for c in rs.rules[0].header_checks][:1] == [("ttl", KIND_TTL)]
    assert len(rs.rules[0].header_checks) == 3
    bad = 'alert tcp any any -> any any (msg:"t"; flags:SZ; sid:1;)\n'
    rs = parse_rules(bad)
    assert not rs.rules and len(rs.errors) == 1
    # the (1-based) column points at the unknown letter Z
    assert str(rs.errors[0]).startswith(f"<string>:1:{bad.index('SZ') + 2}: flags: unknown TCP flag 'Z'")


# -- IP keywords ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "frame", "expected"),
    [
        ("ttl:64", tcp4(ttl=64), True),
        ("ttl:64", tcp4(ttl=63), False),
        ("ttl:<64", tcp4(ttl=63), True),
        ("ttl:<64", tcp4(ttl=64), False),
        ("ttl:<=64", tcp4(ttl=64), True),
        ("ttl:<=64", tcp4(ttl=65), False),
        ("ttl:>64", tcp4(ttl=65), True),
        ("ttl:>64", tcp4(ttl=64), False),
        ("ttl:>=64", tcp4(ttl=64), True),
        ("ttl:>=64", tcp4(ttl=63), False),
        ("ttl:!64", tcp4(ttl=1), True),
        ("ttl:!64", tcp4(ttl=64), False),
        ("ttl:10-20", tcp4(ttl=11), True),
        ("ttl:10-20", tcp4(ttl=19), True),
        ("ttl:10-20", tcp4(ttl=10), False),  # range bounds are exclusive
        ("ttl:10<>20", tcp4(ttl=20), False),
        ("ttl:!10-20", tcp4(ttl=10), True),
        ("ttl:!10-20", tcp4(ttl=15), False),
        ("ttl:33", tcp6(hlim=33), True),  # the hop limit on IPv6
        ("ttl:34", tcp6(hlim=33), False),
        ("tos:16", tcp4(tos=16), True),
        ("tos:x10", tcp4(tos=16), True),
        ("tos:16", tcp4(tos=8), False),
        ("tos:!16", tcp4(tos=8), True),
        ("tos:!16", tcp4(tos=16), False),
        ("tos:16", tcp6(), False),  # IPv4 only (the IPv6 traffic class is not 'tos')
        ("tos:!16", tcp6(), False),
        ("id:4321", tcp4(ip_id=4321), True),
        ("id:4321", tcp4(ip_id=4322), False),
        ("id:0", tcp6(), False),
        ("sameip", ETH / IP(src=SRC4, dst=SRC4) / UDP(), True),
        ("sameip", udp4(), False),
        ("sameip", ETH / IPv6(src=SRC6, dst=SRC6) / UDP(), True),
        ("sameip", ETH / IPv6(src=SRC6, dst=DST6) / UDP(), False),
        ("ip_proto:6", tcp4(), True),
        ("ip_proto:tcp", tcp6(), True),
        ("ip_proto:udp", tcp4(), False),
        ("ip_proto:!udp", tcp4(), True),
        ("ip_proto:!tcp", tcp4(), False),
        ("ip_proto:<7", tcp4(), True),
        ("ip_proto:<6", tcp4(), False),
        ("ip_proto:>16", udp4(), True),
        ("ip_proto:>17", udp4(), False),
        ("ip_proto:ipv6-icmp", icmp6_echo(), True),
        ("ip_proto:icmp", icmp4(), True),
        ("ip_proto:gre", ETH / IP(src=SRC4, dst=DST4, proto=47) / b"\x00\x00\x08\x00", True),
    ],
)
def test_ip_keywords(options, frame, expected):
    assert matches(options, frame) is expected


@pytest.mark.parametrize(
    ("options", "frame", "expected"),
    [
        ("fragbits:D", tcp4(ip_flags="DF"), True),
        ("fragbits:D", tcp4(ip_flags=0), False),
        ("fragbits:M", udp4(flags="MF"), True),
        ("fragbits:M", udp4(flags="MF+DF"), False),  # exact by default
        ("fragbits:MD", udp4(flags="MF+DF"), True),
        ("fragbits:R", udp4(flags="evil"), True),  # the reserved bit
        ("fragbits:*MD", udp4(flags="MF"), True),
        ("fragbits:*MD", udp4(flags="DF"), True),
        ("fragbits:*MD", udp4(flags=0), False),
        ("fragbits:+D", udp4(flags="MF+DF"), True),
        ("fragbits:+D", udp4(flags="DF"), False),  # Suricata's '+': at least one more bit
        ("fragbits:+MD", udp4(flags="MF"), False),
        ("fragbits:!D", udp4(flags="MF"), True),
        ("fragbits:!D", udp4(flags="DF"), False),
        ("fragbits:!MD", udp4(flags="DF"), True),  # not all of them
        ("fragbits:D", tcp6(), False),  # IPv4 only
        ("fragbits:!D", tcp6(), False),
    ],
)
def test_fragbits(options, frame, expected):
    assert matches(options, frame) is expected


def _frag4(offset_units, more):
    return (
        ETH
        / IP(src=SRC4, dst=DST4, proto=17, id=99, frag=offset_units, flags="MF" if more else 0)
        / (b"x" * 16)
    )


def _frag6(offset_units, more, ident=77):
    frag = IPv6ExtHdrFragment(nh=17, offset=offset_units, m=int(more), id=ident)
    return ETH / IPv6(src=SRC6, dst=DST6) / frag / (b"y" * 16)


@pytest.mark.parametrize(
    ("options", "frame", "expected"),
    [
        ("fragoffset:0", udp4(), True),
        ("fragoffset:0", _frag4(0, True), True),
        ("fragoffset:0; fragbits:M", _frag4(0, True), True),  # a first fragment
        ("fragoffset:185", _frag4(185, False), True),  # 8-byte units on IPv4
        ("fragoffset:1480", _frag4(185, False), False),
        ("fragoffset:>0", _frag4(185, False), True),
        ("fragoffset:>0", _frag4(0, True), False),
        ("fragoffset:<185", _frag4(184, True), True),
        ("fragoffset:<185", _frag4(185, True), False),
        ("fragoffset:!185", _frag4(1, True), True),
        ("fragoffset:!185", _frag4(185, True), False),
        ("id:99", _frag4(185, False), True),
        ("fragoffset:800", _frag6(100, True), True),  # bytes on IPv6, as Suricata compares it
        ("fragoffset:100", _frag6(100, True), False),
        ("fragoffset:0", _frag6(0, True), True),
        ("fragoffset:>0", _frag6(1, False), True),
        ("fragoffset:0", tcp6(), False),  # no fragment header
        ("fragoffset:!5", tcp6(), False),
    ],
)
def test_fragoffset(options, frame, expected):
    assert matches(options, frame) is expected


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        ("rr", [IPOption_RR()], True),
        ("rr", [IPOption_NOP(), IPOption_RR()], True),
        ("rr", [IPOption_Timestamp()], False),
        ("ts", [IPOption_Timestamp()], True),
        ("nop", [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()], True),
        ("nop", [IPOption_RR()], False),
        ("eol", [IPOption_NOP(), IPOption_EOL()], True),
        ("lsrr", [IPOption_LSRR(routers=["10.0.0.1"])], True),
        ("lsrr", [IPOption_SSRR(routers=["10.0.0.1"])], False),
        ("ssrr", [IPOption_SSRR(routers=["10.0.0.1"])], True),
        ("sec", [IPOption_Security()], True),
        ("satid", [IPOption_Stream_Id(security=1)], True),
        ("esec", [IPOption_Security()], False),
        ("any", [IPOption_RR()], True),
        ("any", [], False),
        ("rr", [], False),
    ],
)
def test_ipopts(value, options, expected):
    assert matches(f"ipopts:{value}", tcp4(options=options)) is expected


def test_ipopts_only_on_ipv4_and_well_formed_options():
    assert not matches("ipopts:any", tcp6())
    # an option whose length runs past the header: Suricata drops the packet as invalid
    frame = bytearray(bytes(tcp4(options=[IPOption_RR()])))
    l3 = 14
    assert frame[l3 + 20] == 7  # the RR type byte
    frame[l3 + 21] = 200
    assert not matches("ipopts:any", bytes(frame))
    assert not matches("ipopts:rr", bytes(frame))
    frame[l3 + 21] = 1  # a length below 2 is as bad
    assert not matches("ipopts:rr", bytes(frame))
    # the header's other fields are still read
    assert matches("tos:16", bytes(frame))


# -- TCP keywords --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "frame", "expected"),
    [
        ("flags:S", tcp4(flags="S"), True),
        ("flags:S", tcp4(flags="SA"), False),
        ("flags:SA", tcp4(flags="SA"), True),
        ("flags:AS", tcp4(flags="SA"), True),
        ("flags:S,12", tcp4(flags="SEC"), True),  # CWR and ECE ignored
        ("flags:S,CE", tcp4(flags="SE"), True),
        ("flags:S", tcp4(flags="SE"), False),
        ("flags:SE", tcp4(flags="SE"), True),
        ("flags:S2", tcp4(flags="SE"), True),
        ("flags:SC", tcp4(flags="SC"), True),
        ("flags:+A", tcp4(flags="PA"), True),
        ("flags:+A", tcp4(flags="A"), True),
        ("flags:+SA", tcp4(flags="A"), False),
        ("flags:*SF", tcp4(flags="FA"), True),
        ("flags:*SF", tcp4(flags="PA"), False),
        ("flags:!S", tcp4(flags="A"), True),
        ("flags:!S", tcp4(flags="SA"), False),
        ("flags:!SF", tcp4(flags="S"), True),  # not all of them
        ("flags:0", tcp4(flags=0), True),
        ("flags:0", tcp4(flags="A"), False),
        ("flags:!0", tcp4(flags="A"), True),
        ("flags:!0", tcp4(flags=0), False),
        ("flags:FSRPAU", tcp4(flags="FSRPAU"), True),
        ("tcp.flags:PA", tcp4(flags="PA"), True),
        ("flags:S", tcp6(flags="S"), True),
        ("flags:!S", udp4(), False),  # TCP only
        ("seq:1000", tcp4(), True),
        ("seq:1001", tcp4(), False),
        ("seq:1000", tcp6(), True),
        ("ack:2000", tcp4(), True),
        ("ack:0", tcp4(), False),
        ("window:8192", tcp4(), True),
        ("window:8192", tcp4(window=8193), False),
        ("window:!8192", tcp4(window=8193), True),
        ("window:!8192", tcp4(), False),
        ("window:8192", tcp6(), True),
        ("window:!0", udp4(), False),
        ("seq:0", icmp4(), False),
    ],
)
def test_tcp_keywords(options, frame, expected):
    assert matches(options, frame) is expected


def test_tcp_keywords_need_the_whole_tcp_header():
    frame = tcp4(window=8192)
    l4 = 14 + 20
    assert matches("window:8192", frame)
    # captured up to 16 bytes of TCP header: the window bytes lie in the buffer but past the capture
    for caplen in (l4 + 15, l4 + 16, l4 + 19):
        assert not matches("window:8192", frame, caplen)
        assert not matches("flags:SA", frame, caplen)
        assert not matches("seq:1000", frame, caplen)
        assert not matches("window:!1", frame, caplen)
    # a first fragment carries the TCP header, but it is inspected after reassembly
    first = ETH / IP(src=SRC4, dst=DST4, flags="MF") / TCP(flags="S", window=8192) / (b"z" * 16)
    assert matches("fragbits:M", first)
    assert not matches("flags:S", first)
    assert not matches("window:8192", first)
    # a later fragment has no TCP header at all
    later = ETH / IP(src=SRC4, dst=DST4, proto=6, frag=3) / (b"\x00\x50\x00\x50" + b"z" * 20)
    assert not matches("flags:!S", later)
    assert not matches("seq:0", later)


# -- ICMP keywords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "frame", "expected"),
    [
        ("itype:8", icmp4(icmp_type=8), True),
        ("itype:8", icmp4(icmp_type=0), False),
        ("itype:>10", icmp4(icmp_type=11), True),
        ("itype:>10", icmp4(icmp_type=10), False),
        ("itype:<1", icmp4(icmp_type=0), True),
        ("itype:2<>5", icmp4(icmp_type=3, code=1), True),
        ("itype:3<>5", icmp4(icmp_type=3, code=1), False),
        ("itype:128", icmp6_echo(), True),  # ICMPv6 types too
        ("itype:129", icmp6_echo(request=False), True),
        ("itype:!8", tcp4(), False),
        ("icode:1", icmp4(icmp_type=3, code=1), True),
        ("icode:>1", icmp4(icmp_type=3, code=1), False),
        ("icode:>=1", icmp4(icmp_type=3, code=1), True),
        ("icode:<=0", icmp4(icmp_type=3, code=1), False),
        ("icode:3", icmp6_unreach(), True),
        ("icode:0", udp4(), False),
        ("icmp_id:4660", icmp4(icmp_id=0x1234), True),
        ("icmp_id:4661", icmp4(icmp_id=0x1234), False),
        ("icmp_id:4660", icmp4(icmp_type=0, icmp_id=0x1234), True),  # echo reply
        ("icmp_id:4660", icmp4(icmp_type=13, icmp_id=0x1234), True),  # timestamp
        ("icmp_id:0", icmp4(icmp_type=3, icmp_id=0), False),  # unreachable: no id field
        ("icmp_seq:7", icmp4(seq=7), True),
        ("icmp_seq:8", icmp4(seq=7), False),
        ("icmp_seq:0", icmp4(icmp_type=11, seq=0), False),  # time exceeded: no sequence
        ("icmp_id:4660", icmp6_echo(icmp_id=0x1234), True),
        ("icmp_id:4660", icmp6_echo(request=False, icmp_id=0x1234), True),
        ("icmp_seq:7", icmp6_echo(seq=7), True),
        ("icmp_seq:8", icmp6_echo(seq=7), False),
        ("icmp_id:0", icmp6_unreach(), False),
        ("icmp_id:0", tcp4(), False),
        ("itype:8; icmp_id:4660; icmp_seq:7", icmp4(), True),
        ("itype:8; icmp_id:4660; icmp_seq:8", icmp4(), False),
    ],
)
def test_icmp_keywords(options, frame, expected):
    assert matches(options, frame) is expected


def test_icmp_keywords_need_the_icmp_header():
    frame = icmp4(icmp_type=8, icmp_id=0x1234, seq=7)
    l4 = 14 + 20
    assert matches("icmp_seq:7", frame)
    for caplen in (l4 + 4, l4 + 7):
        assert not matches("icmp_seq:7", frame, caplen)
        assert not matches("icmp_id:4660", frame, caplen)
        assert not matches("itype:8", frame, caplen)
    # ICMPv6 carried over IPv4 is not ICMP to Suricata
    odd = ETH / IP(src=SRC4, dst=DST4, proto=58) / bytes(ICMPv6EchoRequest(id=1, seq=1))
    assert not matches("itype:128", odd)


# -- several checks, several rules, truncated IP headers ---------------------------------------------


def test_rule_needs_every_check_and_no_checks_pass():
    frame = tcp4(flags="S", ttl=5)
    assert matches("ttl:5; flags:S; tos:16; id:4321; fragbits:D; sameip", frame) is False
    assert matches("ttl:5; flags:S; tos:16; id:4321; fragbits:D", frame) is True
    assert run_checks([], frame) is True
    buf, d = decode(frame)
    packed = pack_checks([[], [parse_header_keyword("ttl", "5")], [], [parse_header_keyword("ttl", "6")]])
    assert packed.start.tolist() == [0, 0, 1, 1, 2]
    results = [run_rule(packed, r, buf, d) for r in range(4)]
    assert results == [True, True, True, False]


def test_truncated_ip_header_matches_nothing():
    frame = tcp4(options=[IPOption_RR(routers=["10.0.0.1", "10.0.0.2"])])  # a 32-byte IPv4 header
    assert matches("ttl:64; ipopts:rr", frame)
    for caplen in (14 + 10, 14 + 20, 14 + 28):  # inside the fixed header, inside the options
        for options in ("ttl:64", "tos:16", "ipopts:rr", "fragbits:D", "id:4321", "ip_proto:6", "ttl:!1"):
            assert not matches(options, frame, caplen), (caplen, options)
    not_ip = Ether(type=0x0806) / (b"\x00" * 28)
    assert not matches("ttl:!1", not_ip)
    assert not matches("sameip", not_ip)


def test_dsize_kernel():
    packed = pack_checks(
        [[], [parse_header_keyword("dsize", "5<>10")], [parse_header_keyword("dsize", ">=3")]]
    )
    got = [[bool(dsize_ok(r, packed.start, packed.kind, packed.op, packed.a, packed.b, packed.mask, n))
            for n in (3, 5, 6, 9, 10)] for r in range(3)]  # fmt: skip
    assert got == [[True] * 5, [False, False, True, True, False], [True] * 5]


def test_later_fragment_ip_fields():
    later = _frag4(185, False)
    # the IPv4 header of a later fragment is read (its header end is the payload offset)
    assert matches("ttl:64; id:99; fragoffset:185; ip_proto:udp; fragbits:!M; tos:0", later)
    assert not matches("ipopts:any", later)
