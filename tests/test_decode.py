"""The decoder on hand-built frames: every status code, every truncation point, every link type."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pytest
from scapy.contrib.mpls import MPLS
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Jumbo,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

from dpi.capture import PacketBatch, open_capture
from dpi.decode import (
    CATEGORIES,
    STATUS_NAMES,
    DecodedBatch,
    Status,
    category,
    count_by_category,
    count_by_status,
    decode_batch,
    is_error,
)
from tests.conftest import SHARED_DATA

S = Status
DATA = SHARED_DATA
PCAPS = DATA / "pcaps"

ETHERNET, RAW, NULL, LOOP, SLL, SLL2, IPV4_ONLY, IPV6_ONLY = 1, 101, 0, 108, 113, 276, 228, 229
SRC4, DST4 = "192.0.2.1", "198.51.100.7"
SRC6, DST6 = "2001:db8::1", "2001:db8:ffff::abcd"


def make_batch(frames, linktype=ETHERNET, caplens=None, wirelens=None, offsets=None, buffer=None):
    """A PacketBatch over ``frames`` laid end to end, or over an explicit buffer/offsets."""
    frames = [bytes(f) for f in frames]
    if buffer is None:
        buffer = b"".join(frames)
        offsets = np.cumsum([0] + [len(f) for f in frames[:-1]])
    n = len(offsets)
    caplens = np.array(caplens if caplens is not None else [len(f) for f in frames], dtype=np.int64)
    wirelens = np.array(wirelens if wirelens is not None else caplens, dtype=np.int64)
    linktypes = np.broadcast_to(np.asarray(linktype, dtype=np.int64), (n,)).copy()
    return PacketBatch(
        buffer=np.frombuffer(bytes(buffer), dtype=np.uint8),
        offset=np.asarray(offsets, dtype=np.int64),
        caplen=caplens,
        wirelen=wirelens,
        ts_ns=np.zeros(n, dtype=np.int64),
        linktype=linktypes,
        number=np.arange(1, n + 1, dtype=np.int64),
    )


def decode(frame, linktype=ETHERNET, caplen=None, wirelen=None) -> DecodedBatch:
    """One frame; with ``caplen`` short of the frame, the rest of it still lies in the
    buffer, so any read past caplen would find plausible bytes and show up in the result."""
    frame = bytes(frame)
    caplen = len(frame) if caplen is None else caplen
    return decode_batch(
        make_batch([frame], linktype, [caplen], [len(frame) if wirelen is None else wirelen], [0], frame)
    )


def row(decoded: DecodedBatch, i: int = 0) -> dict:
    return {name: decoded.__dict__[name][i].item() for name in decoded.__dict__}


def within_frame(decoded: DecodedBatch, batch: PacketBatch, column: str) -> list[int]:
    """An offset column relative to each frame's start (-1 stays -1)."""
    values = getattr(decoded, column)
    return np.where(values < 0, -1, values - batch.offset).tolist()


def addr(decoded, which, i=0) -> str:
    hi, lo = int(getattr(decoded, f"{which}_hi")[i]), int(getattr(decoded, f"{which}_lo")[i])
    value = (hi << 64) | lo
    if value >> 32 == 0xFFFF:
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def tcp4_frame():
    """Ethernet / IPv4 with 4 option bytes / TCP with 12 option bytes / 10 payload bytes."""
    return bytes(
        Ether()
        / IP(src=SRC4, dst=DST4, ttl=57, id=0x1234, options=IPOption(b"\x01\x01\x01\x00"))
        / TCP(
            sport=40000,
            dport=80,
            seq=0xDEADBEEF,
            ack=7,
            flags="PA",
            options=[("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b"")],
        )
        / b"0123456789"
    )


# ---------------------------------------------------------------------------------------
# status module


def test_status_names_are_unique_snake_case_and_categorised():
    assert len(set(STATUS_NAMES.values())) == len(STATUS_NAMES) == len(Status)
    for code, name in STATUS_NAMES.items():
        assert 0 <= code <= 255
        assert name == name.lower() and " " not in name
        assert category(code) in CATEGORIES
    assert category(S.OK) == "ok"
    assert {category(c) for c in (S.FRAGMENT, S.CAPTURE_TRUNCATED, S.IPV4_TSO_ZERO_LENGTH)} == {"info"}
    assert {category(c) for c in (S.NOT_IP, S.UNSUPPORTED_LINKTYPE, S.MPLS_UNKNOWN_PAYLOAD)} == {"skipped"}
    assert category(S.TCP_TRUNCATED) == "error"


def test_is_error_scalar_and_vectorised():
    assert not is_error(S.OK) and not is_error(S.FRAGMENT) and not is_error(S.NOT_IP)
    assert not is_error(S.CAPTURE_TRUNCATED)
    assert is_error(S.IPV4_BAD_IHL) and is_error(S.UDP_BAD_LENGTH)
    assert is_error(200)  # a code nobody defined is never silently fine
    column = np.array([S.OK, S.TCP_TRUNCATED, S.FRAGMENT, S.ETH_TRUNCATED], dtype=np.uint8)
    assert is_error(column).tolist() == [False, True, False, True]


def test_count_by_status_covers_every_packet():
    column = np.array([S.OK, S.OK, S.NOT_IP, S.TCP_TRUNCATED, 250], dtype=np.uint8)
    counts = count_by_status(column)
    assert set(STATUS_NAMES.values()) <= set(counts)
    assert counts["ok"] == 2 and counts["not_ip"] == 1 and counts["tcp_truncated"] == 1
    assert counts["status_250"] == 1
    assert sum(counts.values()) == column.size
    assert count_by_category(column) == {"ok": 2, "info": 0, "skipped": 1, "error": 2}


# ---------------------------------------------------------------------------------------
# a good packet, field by field


def test_tcp_ipv4_ethernet_fields():
    frame = tcp4_frame()
    d = decode(frame)
    r = row(d)
    assert r["status"] == S.OK
    assert r["ip_version"] == 4 and r["proto"] == 6 and r["ttl"] == 57
    assert r["src_hi"] == 0 and r["src_lo"] == 0x0000FFFF00000000 | int(ipaddress.IPv4Address(SRC4))
    assert addr(d, "dst") == DST4
    assert (r["sport"], r["dport"], r["tcp_seq"], r["tcp_ack"]) == (40000, 80, 0xDEADBEEF, 7)
    assert r["tcp_flags"] == 0x18
    assert (r["l3_offset"], r["l4_offset"]) == (14, 38)
    assert (r["payload_offset"], r["payload_len"], r["ip_payload_len"]) == (70, 10, 42)
    assert frame[r["payload_offset"] : r["payload_offset"] + r["payload_len"]] == b"0123456789"
    assert (r["frag_id"], r["frag_offset"], r["frag_more"], r["is_fragment"]) == (0x1234, 0, 0, 0)
    assert (r["vlan"], r["vlan_outer"]) == (0, 0)


def test_empty_batch():
    d = decode_batch(PacketBatch.empty())
    assert len(d) == 0


def test_many_packets_in_one_batch_keep_their_order():
    frames = [
        Ether() / IP(src=SRC4, dst=DST4) / UDP(sport=1000 + k, dport=53) / (b"x" * k) for k in range(50)
    ]
    d = decode_batch(make_batch(frames))
    assert d.status.tolist() == [S.OK] * 50
    assert d.sport.tolist() == list(range(1000, 1050))
    assert d.payload_len.tolist() == list(range(50))


# ---------------------------------------------------------------------------------------
# truncation at every byte: the right status, and nothing read past caplen


def cut_statuses(frame: bytes, linktype=ETHERNET, snapped=True) -> tuple[list[int], DecodedBatch]:
    """Decode ``frame`` cut to every length 0..len in one batch. Every row starts at offset 0
    of the whole frame, so a read past caplen would see valid bytes and decode 'too well'."""
    n = len(frame) + 1
    caplens = list(range(n))
    wirelens = [len(frame)] * n if snapped else caplens
    d = decode_batch(make_batch([frame], linktype, caplens, wirelens, [0] * n, frame))
    return d.status.tolist(), d


def expected_cuts(length: int, boundaries: list[tuple[int, int]], complete=S.OK) -> list[int]:
    """boundaries: (end, status) meaning caplen < end gives status; at full length, ``complete``."""
    expected = []
    for caplen in range(length + 1):
        status = next((s for end, s in boundaries if caplen < end), complete)
        expected.append(int(status))
    return expected


def test_tcp_ipv4_cut_at_every_byte():
    frame = tcp4_frame()
    statuses, d = cut_statuses(frame)
    boundaries = [
        (14, S.ETH_TRUNCATED),
        (34, S.IPV4_TRUNCATED),
        (38, S.IPV4_OPTIONS_TRUNCATED),
        (58, S.TCP_TRUNCATED),
        (70, S.TCP_OPTIONS_TRUNCATED),
        (80, S.CAPTURE_TRUNCATED),
    ]
    assert statuses == expected_cuts(len(frame), boundaries)
    for caplen in range(70, 81):
        assert d.payload_len[caplen] == caplen - 70  # what was captured, never more
        assert d.ip_payload_len[caplen] == 42  # what IP claims
    for caplen in range(58, 81):
        assert d.sport[caplen] == 40000
    assert (d.ip_version[:34] == 0).all()


def test_cut_frame_that_was_not_snapped_is_a_bad_ip_length():
    """The same cuts with wire length = captured length: the frame really ended there, so
    an IP length beyond it is a lie, not a snap-length cut."""
    frame = tcp4_frame()
    statuses, _ = cut_statuses(frame, snapped=False)
    assert statuses[75] == S.IPV4_LENGTH_EXCEEDS_FRAME
    assert statuses[60] == S.TCP_OPTIONS_TRUNCATED
    assert statuses[50] == S.TCP_TRUNCATED


def test_qinq_udp_cut_at_every_byte():
    frame = bytes(Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP() / UDP() / b"abcd")
    statuses, d = cut_statuses(frame)
    boundaries = [
        (14, S.ETH_TRUNCATED),
        (22, S.VLAN_TRUNCATED),
        (42, S.IPV4_TRUNCATED),
        (50, S.UDP_TRUNCATED),
        (54, S.CAPTURE_TRUNCATED),
    ]
    assert statuses == expected_cuts(len(frame), boundaries)
    assert d.vlan[-1] == 20 and d.vlan_outer[-1] == 10


def test_mpls_ipv6_icmpv6_cut_at_every_byte():
    frame = bytes(
        Ether()
        / MPLS(label=100, s=0)
        / MPLS(label=200, s=1)
        / IPv6(src=SRC6, dst=DST6)
        / ICMPv6EchoRequest(id=1, seq=2, data=b"ping")
    )
    statuses, d = cut_statuses(frame)
    boundaries = [
        (14, S.ETH_TRUNCATED),
        (23, S.MPLS_TRUNCATED),
        (62, S.IPV6_TRUNCATED),
        (70, S.ICMPV6_TRUNCATED),
        (74, S.CAPTURE_TRUNCATED),
    ]
    assert statuses == expected_cuts(len(frame), boundaries)
    assert d.icmp_type[-1] == 128 and d.payload_len[-1] == 4 and addr(d, "src", -1) == SRC6


def test_ipv6_extension_chain_cut_at_every_byte():
    frame = bytes(
        Ether()
        / IPv6(src=SRC6, dst=DST6)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / TCP(sport=1, dport=2)
        / b"data"
    )
    statuses, d = cut_statuses(frame)
    boundaries = [
        (14, S.ETH_TRUNCATED),
        (54, S.IPV6_TRUNCATED),
        (78, S.IPV6_EXT_TRUNCATED),
        (98, S.TCP_TRUNCATED),
        (102, S.CAPTURE_TRUNCATED),
    ]
    assert statuses == expected_cuts(len(frame), boundaries)
    assert (d.proto[-1], d.l4_offset[-1], d.payload_offset[-1]) == (6, 78, 98)


@pytest.mark.parametrize(
    "frame, linktype, header, truncated",
    [
        (CookedLinux() / IP() / ICMP(), SLL, 16, S.SLL_TRUNCATED),
        (CookedLinuxV2(proto=0x0800) / IP() / ICMP(), SLL2, 20, S.SLL2_TRUNCATED),
        (struct.pack("<I", 2) + bytes(IP() / ICMP()), NULL, 4, S.LOOPBACK_TRUNCATED),
        (struct.pack(">I", 2) + bytes(IP() / ICMP()), LOOP, 4, S.LOOPBACK_TRUNCATED),
    ],
)
def test_other_link_layers_cut_at_every_byte(frame, linktype, header, truncated):
    frame = bytes(frame)
    statuses, _ = cut_statuses(frame, linktype)
    boundaries = [(header, truncated), (header + 20, S.IPV4_TRUNCATED), (header + 28, S.ICMP_TRUNCATED)]
    assert statuses == expected_cuts(len(frame), boundaries)


def test_raw_ip_cut_at_every_byte():
    frame = bytes(IP() / UDP() / b"xy")
    statuses, _ = cut_statuses(frame, RAW)
    boundaries = [
        (1, S.IP_TRUNCATED),
        (20, S.IPV4_TRUNCATED),
        (28, S.UDP_TRUNCATED),
        (30, S.CAPTURE_TRUNCATED),
    ]
    assert statuses == expected_cuts(len(frame), boundaries)


# ---------------------------------------------------------------------------------------
# link layers


@pytest.mark.parametrize("linktype", [RAW, 12, 14])
def test_raw_ip_by_version_nibble(linktype):
    d = decode_batch(
        make_batch([IP(src=SRC4) / TCP(), IPv6(src=SRC6) / UDP(), b"\x50" + bytes(19)], linktype)
    )
    assert d.status.tolist() == [S.OK, S.OK, S.IP_BAD_VERSION]
    assert d.ip_version.tolist() == [4, 6, 0]
    assert addr(d, "src", 0) == SRC4 and addr(d, "src", 1) == SRC6
    assert d.l3_offset.tolist() == [0, len(bytes(IP() / TCP())), -1]


def test_ipv4_and_ipv6_only_link_types_check_the_version():
    assert decode(IP() / TCP(), IPV4_ONLY).status[0] == S.OK
    assert decode(IPv6() / TCP(), IPV4_ONLY).status[0] == S.IPV4_BAD_VERSION
    assert decode(IPv6() / TCP(), IPV6_ONLY).status[0] == S.OK
    assert decode(IP() / TCP(), IPV6_ONLY).status[0] == S.IPV6_BAD_VERSION


@pytest.mark.parametrize("family, version", [(2, 4), (24, 6), (28, 6), (30, 6), (17, 0)])
@pytest.mark.parametrize("order", ["<I", ">I"])
@pytest.mark.parametrize("linktype", [NULL, LOOP])
def test_loopback_families_in_either_byte_order(family, version, order, linktype):
    inner = IP() / UDP() if version != 6 else IPv6() / UDP()
    d = decode(struct.pack(order, family) + bytes(inner), linktype)
    assert d.ip_version[0] == version
    assert d.status[0] == (S.OK if version else S.NOT_IP)


def test_linux_cooked_captures():
    v1 = decode(CookedLinux(proto=0x86DD) / IPv6(src=SRC6) / TCP(sport=5), SLL)
    v2 = decode(CookedLinuxV2(proto=0x0800) / IP(src=SRC4) / TCP(sport=6), SLL2)
    arp = decode(CookedLinux(proto=0x0806) / ARP(), SLL)
    assert (v1.status[0], v1.l3_offset[0], v1.sport[0], addr(v1, "src")) == (S.OK, 16, 5, SRC6)
    assert (v2.status[0], v2.l3_offset[0], v2.sport[0], addr(v2, "src")) == (S.OK, 20, 6, SRC4)
    assert arp.status[0] == S.NOT_IP


def test_fcs_bits_in_the_link_type_are_masked():
    assert decode(Ether() / IP() / TCP(), 0x30000001).status[0] == S.OK


@pytest.mark.parametrize("linktype", [105, 127, 239, 147])
def test_unsupported_link_types(linktype):
    d = decode(Ether() / IP() / TCP(), linktype)
    assert (d.status[0], d.ip_version[0], d.l3_offset[0]) == (S.UNSUPPORTED_LINKTYPE, 0, -1)


@pytest.mark.parametrize(
    "frame",
    [
        Ether() / ARP(),
        Ether(type=0x88CC) / (b"\x02\x07" + bytes(20)),
        Ether(type=0x8864) / bytes(30),
        Ether(type=60) / bytes(60),
    ],
    ids=["arp", "lldp", "pppoe", "802.3-length"],
)
def test_ethernet_that_is_not_ip(frame):
    d = decode(frame)
    assert (d.status[0], d.ip_version[0]) == (S.NOT_IP, 0)
    assert not is_error(d.status[0])


def test_single_vlan_and_qinq_ids():
    frames = [
        Ether() / Dot1Q(vlan=100) / IP() / TCP(),
        Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP() / TCP(),
        Ether(type=0x9100) / Dot1Q(vlan=11, type=0x8100) / Dot1Q(vlan=22) / IPv6() / TCP(),
        Ether() / Dot1AD(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4095) / IP() / TCP(),
    ]
    batch = make_batch(frames)
    d = decode_batch(batch)
    assert d.status.tolist() == [S.OK] * 4
    assert d.vlan.tolist() == [100, 20, 22, 4095]
    assert d.vlan_outer.tolist() == [0, 10, 11, 1]
    assert within_frame(d, batch, "l3_offset") == [18, 22, 22, 30]


def test_too_many_vlan_tags():
    frame = Ether() / Dot1Q(vlan=1) / Dot1Q(vlan=2) / Dot1Q(vlan=3) / Dot1Q(vlan=4) / Dot1Q(vlan=5) / IP()
    assert decode(frame).status[0] == S.VLAN_TOO_MANY_TAGS


def test_mpls_label_stacks():
    ok4 = Ether() / MPLS(label=1, s=1) / IP(src=SRC4, options=IPOption(b"\x01" * 4)) / UDP()
    in_vlan = Ether() / Dot1Q(vlan=7) / MPLS(label=1, s=0) / MPLS(label=2, s=1) / IPv6() / UDP()
    multicast = Ether(type=0x8848) / MPLS(label=1, s=1) / IP() / UDP()
    too_many = (
        Ether()
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=0)
        / MPLS(s=1)
        / IP()
    )
    pseudowire = Ether() / MPLS(label=1, s=1) / b"\x00\x00\x00\x00" / Ether() / IP()
    batch = make_batch([ok4, in_vlan, multicast, too_many, pseudowire])
    d = decode_batch(batch)
    assert d.status.tolist() == [S.OK, S.OK, S.OK, S.MPLS_TOO_MANY_LABELS, S.MPLS_UNKNOWN_PAYLOAD]
    assert d.ip_version.tolist() == [4, 6, 4, 0, 0]
    assert within_frame(d, batch, "l3_offset") == [18, 26, 18, -1, -1]
    assert d.vlan[1] == 7
    assert addr(d, "src", 0) == SRC4  # IPv4 with options found by the nibble, not by 0x45


# ---------------------------------------------------------------------------------------
# IPv4


def test_ipv4_header_errors():
    good = bytearray(bytes(Ether() / IP() / TCP()))
    bad_version = bytearray(good)
    bad_version[14] = 0x55
    bad_ihl = bytearray(good)
    bad_ihl[14] = 0x44
    bad_total = bytearray(good)
    bad_total[16:18] = struct.pack(">H", 19)
    options_cut = bytes(Ether() / IP(ihl=15, len=80) / TCP())  # a 60-byte header; 40 bytes in all
    d = decode_batch(
        make_batch([bytes(good), bytes(bad_version), bytes(bad_ihl), bytes(bad_total), options_cut])
    )
    assert d.status.tolist() == [
        S.OK,
        S.IPV4_BAD_VERSION,
        S.IPV4_BAD_IHL,
        S.IPV4_BAD_TOTAL_LENGTH,
        S.IPV4_OPTIONS_TRUNCATED,
    ]
    assert d.ip_version.tolist() == [4, 0, 0, 0, 0]


def test_ethernet_padding_is_not_payload():
    frame = bytes(Ether() / IP() / UDP() / b"hi")
    padded = frame + b"\x00" * (60 - len(frame))
    d = decode(padded)
    assert (d.status[0], d.payload_len[0], d.ip_payload_len[0]) == (S.OK, 2, 10)
    tcp_frame = bytes(Ether() / IP() / TCP()) + b"\xaa" * 6
    assert decode(tcp_frame).payload_len[0] == 0


def test_ipv4_length_beyond_the_wire_frame():
    frame = bytearray(bytes(Ether() / IP() / TCP() / b"abc"))
    frame[16:18] = struct.pack(">H", 1000)
    d = decode(bytes(frame))
    assert d.status[0] == S.IPV4_LENGTH_EXCEEDS_FRAME
    assert (d.sport[0], d.payload_len[0], d.ip_payload_len[0]) == (20, 3, 980)
    snapped = decode(bytes(frame), wirelen=1014)
    assert snapped.status[0] == S.CAPTURE_TRUNCATED


def test_tso_total_length_zero_takes_the_frame_length():
    frame = bytearray(bytes(Ether() / IP() / TCP() / (b"z" * 3000)))
    frame[16:18] = b"\x00\x00"
    d = decode(bytes(frame))
    assert d.status[0] == S.IPV4_TSO_ZERO_LENGTH and not is_error(d.status[0])
    assert (d.payload_len[0], d.ip_payload_len[0]) == (3000, 3020)


def test_ipv4_fragments():
    first = Ether() / IP(id=99, flags="MF", proto=17) / UDP(sport=53, dport=5353, len=2000) / (b"a" * 32)
    later = Ether() / IP(id=99, frag=5, proto=17) / (b"b" * 24)
    tiny_first = Ether() / IP(id=7, flags="MF", proto=6) / (b"c" * 16)  # TCP header split
    last = Ether() / IP(id=99, frag=185, proto=17) / (b"d" * 8)
    batch = make_batch([first, later, tiny_first, last])
    d = decode_batch(batch)
    assert d.status.tolist() == [S.FRAGMENT] * 4
    assert not is_error(d.status).any()
    assert d.is_fragment.tolist() == [1, 1, 1, 1]
    assert d.frag_more.tolist() == [1, 0, 1, 0]
    assert d.frag_offset.tolist() == [0, 40, 0, 1480]
    assert d.frag_id.tolist() == [99, 99, 7, 99]
    # first fragment: L4 decoded; its UDP length covers the whole datagram, not this part
    l4, payload = within_frame(d, batch, "l4_offset"), within_frame(d, batch, "payload_offset")
    assert (d.sport[0], d.dport[0], l4[0], payload[0], d.payload_len[0]) == (53, 5353, 34, 42, 32)
    # later fragments: no L4, the fragment's bytes are the payload
    assert (d.sport[1], d.dport[1], l4[1], payload[1], d.payload_len[1]) == (0, 0, -1, 34, 24)
    # a first fragment too short for its TCP header: all fragment data, from the L4 offset
    assert (d.sport[2], l4[2], payload[2], d.payload_len[2]) == (0, 34, 34, 16)
    assert d.proto.tolist() == [17, 17, 6, 17]


def test_dont_fragment_is_not_a_fragment():
    d = decode(Ether() / IP(flags="DF") / TCP())
    assert (d.status[0], d.is_fragment[0]) == (S.OK, 0)


# ---------------------------------------------------------------------------------------
# IPv6


def test_ipv6_extension_headers_to_the_transport():
    ah = AH(nh=6, payloadlen=4, spi=1, seq=1, icv=b"\x00" * 12)  # (payloadlen + 2) * 4 = 24 bytes
    frames = [
        Ether() / IPv6(src=SRC6, dst=DST6, hlim=9) / TCP(sport=1, dport=2) / b"x",
        Ether()
        / IPv6()
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=3)
        / b"y",
        Ether() / IPv6(nh=51) / ah / TCP(sport=4) / b"z",
        Ether()
        / IPv6()
        / IPv6ExtHdrDestOpt(options=[])
        / IPv6ExtHdrFragment(m=0, offset=0, id=5)
        / UDP(sport=6),
        Ether() / IPv6(nh=50) / bytes(24),
        Ether() / IPv6(nh=59),
    ]
    batch = make_batch(frames)
    d = decode_batch(batch)
    assert d.status.tolist() == [S.OK] * 6
    assert d.proto.tolist() == [6, 17, 6, 17, 50, 59]
    assert d.sport.tolist() == [1, 3, 4, 6, 0, 0]
    assert within_frame(d, batch, "l4_offset") == [54, 78, 78, 70, 54, 54]
    assert d.payload_len.tolist() == [1, 1, 1, 0, 24, 0]
    assert (addr(d, "src"), addr(d, "dst"), d.ttl[0]) == (SRC6, DST6, 9)
    # an atomic fragment (offset 0, M=0) is a whole packet
    assert (d.is_fragment[3], d.frag_id[3]) == (0, 5)


def test_ipv6_fragments():
    first = (
        Ether()
        / IPv6()
        / IPv6ExtHdrFragment(nh=17, m=1, offset=0, id=0xCAFEBABE)
        / UDP(sport=9, len=3000)
        / bytes(16)
    )
    later = (
        Ether() / IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(nh=6, m=0, offset=3, id=1) / bytes(20)
    )
    batch = make_batch([first, later])
    d = decode_batch(batch)
    assert d.status.tolist() == [S.FRAGMENT, S.FRAGMENT]
    assert d.frag_id.tolist() == [0xCAFEBABE, 1]
    assert d.frag_offset.tolist() == [0, 24] and d.frag_more.tolist() == [1, 0]
    assert (d.sport[0], d.payload_len[0]) == (9, 16)
    l4, payload = within_frame(d, batch, "l4_offset"), within_frame(d, batch, "payload_offset")
    assert (d.proto[1], d.sport[1], l4[1], payload[1], d.payload_len[1]) == (6, 0, -1, 70, 20)


def test_ipv6_extension_errors():
    too_many = (
        Ether()
        / IPv6()
        / (
            IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrDestOpt()
        )
        / UDP()
    )
    beyond_payload = bytearray(bytes(Ether() / IPv6() / IPv6ExtHdrRouting() / UDP()))
    beyond_payload[54 + 1] = 5  # routing header now says 48 bytes; only 16 follow
    bad_version = bytearray(bytes(Ether() / IPv6() / UDP()))
    bad_version[14] = 0x40
    d = decode_batch(make_batch([too_many, bytes(beyond_payload), bytes(bad_version)]))
    assert d.status.tolist() == [S.IPV6_TOO_MANY_EXT, S.IPV6_EXT_TRUNCATED, S.IPV6_BAD_VERSION]


def test_ipv6_jumbogram():
    body = bytes(UDP(sport=1, dport=2, len=0)) + b"j" * 70000
    hbh = IPv6ExtHdrHopByHop(nh=17, options=[Jumbo(jumboplen=8 + len(body))])
    frame = bytes(Ether() / IPv6(plen=0, nh=0) / hbh) + body
    d = decode(frame)
    assert d.status[0] == S.OK
    assert (d.proto[0], d.sport[0], d.payload_len[0], d.ip_payload_len[0]) == (17, 1, 70000, 70008)
    no_option = bytes(Ether() / IPv6(plen=0, nh=0) / IPv6ExtHdrHopByHop(nh=17)) + body
    assert decode(no_option).status[0] == S.IPV6_EXT_TRUNCATED


# ---------------------------------------------------------------------------------------
# transport


def test_tcp_offset_errors():
    low = bytearray(bytes(Ether() / IP() / TCP() / b"data"))
    low[14 + 20 + 12] = 0x40  # data offset 4
    high = bytearray(bytes(Ether() / IP() / TCP() / b"data"))
    high[14 + 20 + 12] = 0xF0  # 60-byte header in a 24-byte segment
    d = decode_batch(make_batch([bytes(low), bytes(high)]))
    assert d.status.tolist() == [S.TCP_BAD_OFFSET, S.TCP_BAD_OFFSET]


def test_udp_lengths():
    short_claim = Ether() / IP() / UDP(len=12) / b"12345678"  # UDP says 4 payload bytes of 8
    too_small = Ether() / IP() / UDP(len=7) / b"x"
    too_long = Ether() / IP() / UDP(len=100) / b"x"
    d = decode_batch(make_batch([short_claim, too_small, too_long]))
    assert d.status.tolist() == [S.OK, S.UDP_BAD_LENGTH, S.UDP_BAD_LENGTH]
    assert (d.payload_len[0], d.ip_payload_len[0]) == (4, 16)


def test_icmp_and_icmpv6():
    frames = [
        Ether() / IP() / ICMP(type=8, code=0, id=1, seq=2) / b"echo",
        Ether() / IP() / ICMP(type=3, code=1) / IP(src=SRC4) / UDP(),
        Ether() / IPv6() / ICMPv6EchoRequest(data=b"v6"),
        Ether() / IP(proto=1) / b"\x08\x00\x00",
        Ether() / IPv6(nh=58) / b"\x80\x00\x00\x00\x00",
    ]
    d = decode_batch(make_batch(frames))
    assert d.status.tolist() == [S.OK, S.OK, S.OK, S.ICMP_TRUNCATED, S.ICMPV6_TRUNCATED]
    assert d.icmp_type.tolist()[:3] == [8, 3, 128] and d.icmp_code[1] == 1
    assert d.sport.tolist()[:3] == [0, 0, 0]
    assert d.payload_len.tolist()[:3] == [4, 28, 2]


def test_other_protocols_have_no_ports_and_the_ip_payload():
    # ESP here: GRE, which this test used to take, is a tunnel now (test_decode_tunnels)
    d = decode(Ether() / IP(src=SRC4, proto=50) / (b"\x00" * 44))
    assert (d.status[0], d.proto[0], d.sport[0], d.dport[0]) == (S.OK, 50, 0, 0)
    assert (d.l4_offset[0], d.payload_offset[0], d.payload_len[0]) == (34, 34, 44)


# ---------------------------------------------------------------------------------------
# the batch itself


def test_frames_outside_the_buffer():
    frame = bytes(Ether() / IP() / TCP())
    batch = make_batch(
        [frame] * 3, caplens=[len(frame), -1, 10], offsets=[0, 0, len(frame) - 5], buffer=frame
    )
    d = decode_batch(batch)
    assert d.status.tolist() == [S.OK, S.FRAME_OUT_OF_BUFFER, S.FRAME_OUT_OF_BUFFER]


def test_not_every_row_needs_its_own_bytes():
    """Rows may share or skip bytes of the buffer (a reader's choice): only offset/caplen count."""
    frame = bytes(Ether() / IP() / UDP(sport=7) / b"abc")
    buffer = b"\xee" * 9 + frame + b"\xee" * 9
    d = decode_batch(make_batch([frame] * 2, offsets=[9, 9], buffer=buffer))
    assert d.status.tolist() == [S.OK, S.OK] and d.sport.tolist() == [7, 7]


# ---------------------------------------------------------------------------------------
# real captures: statuses that tshark shows too


def _decode_file(name: str, reader: str) -> tuple[PacketBatch, DecodedBatch]:
    path = PCAPS / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} not found")
    with open_capture(str(path), reader=reader) as capture:
        batches = list(capture.batches())
    assert len(batches) == 1
    return batches[0], decode_batch(batches[0])


READERS = ["dpkt", "native"]


@pytest.mark.needs_shared
@pytest.mark.parametrize("reader", READERS)
def test_real_vlan_and_mpls_captures(reader):
    batch, qinq = _decode_file("zeek/http-qinq.pcap", reader)  # tshark: vlan.id 0,0
    assert (qinq.status == S.OK).all() and (qinq.l3_offset - batch.offset == 22).all()
    batch, triple = _decode_file("zeek/vlan-qinqinq.pcap", reader)
    assert (triple.status == S.OK).all() and (triple.l3_offset - batch.offset == 26).all()
    _, mixed = _decode_file("zeek/mixed-vlan-mpls.pcap", reader)
    assert (mixed.status == S.OK).all() and (mixed.ip_version == 4).all()
    _, arp_qinq = _decode_file("tcpdump/8021ad-qinq.pcap", reader)  # 802.1ad + 802.1Q + ARP
    assert (arp_qinq.status == S.NOT_IP).all()


@pytest.mark.needs_shared
@pytest.mark.parametrize("reader", READERS)
def test_real_jumbogram_and_tso(reader):
    batch, jumbo = _decode_file("tcpdump/ipv6-jumbogram.pcap", reader)
    # tshark: IPv6 payload length 0, jumbo option 65536, ICMPv6 after an 8-byte hop-by-hop header
    assert (jumbo.status[0], jumbo.proto[0], jumbo.ip_payload_len[0]) == (S.OK, 58, 65536 - 8)
    assert jumbo.payload_len[0] == 65536 - 16
    batch, tso = _decode_file("tcpdump/ipv4-tcp-http-xml-tso.pcap", reader)
    assert tso.status[0] == S.IPV4_TSO_ZERO_LENGTH
    assert tso.payload_offset[0] + tso.payload_len[0] == batch.offset[0] + batch.caplen[0]


@pytest.mark.needs_shared
def test_real_truncations_are_told_apart_with_wire_lengths():
    """The native reader knows each record's wire length: a snap-length cut is
    CAPTURE_TRUNCATED (tshark: frame.len > frame.cap_len), a header cut is an error."""
    expect = {
        "zeek/trunc-icmp-payload.pcap": [S.CAPTURE_TRUNCATED] * 4,
        "zeek/trunc-ip4.pcap": [S.IPV4_TRUNCATED],
        "zeek/trunc-ip6.pcap": [S.IPV6_TRUNCATED],
        "zeek/trunc-hdr.pcap": [S.ETH_TRUNCATED],
        "tcpdump/tcp-rst-data-trunc.pcap": [S.CAPTURE_TRUNCATED],
    }
    for name, statuses in expect.items():
        _, d = _decode_file(name, "native")
        assert d.status.tolist() == statuses, name


def test_pppoe_session_carries_ip():
    from scapy.layers.ppp import PPP, PPPoE

    frames = [
        Ether()
        / PPPoE(sessionid=7)
        / PPP(proto=0x0021)
        / IP(src="10.1.1.1", dst="10.2.2.2")
        / TCP(sport=1, dport=2),
        Ether() / PPPoE(sessionid=7) / PPP(proto=0x0057) / IPv6() / UDP(sport=3, dport=4) / b"x",
        Ether() / PPPoE(sessionid=7) / PPP(proto=0xC021) / bytes(10),  # LCP
    ]
    batch = make_batch(frames)
    d = decode_batch(batch)
    assert d.status.tolist() == [S.OK, S.OK, S.NOT_IP]
    assert d.ip_version.tolist() == [4, 6, 0]
    assert within_frame(d, batch, "l3_offset")[:2] == [22, 22]
    assert d.sport.tolist()[:2] == [1, 3]
    for cut in range(14, 22):
        short = decode(frames[0], caplen=cut)
        assert short.status[0] == S.PPPOE_TRUNCATED, cut
