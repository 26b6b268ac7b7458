"""Tunnels (dpi.decode.tunnel): a tunnelled frame's row is the packet inside, checked against tshark.

Hand-built frames of every encapsulation are written to a pcap and tshark decodes the same
file; the shared captures' tunnels are checked the same way. tshark follows a few things that
Suricata by default does not (Teredo authentication, ERSPAN type I, Cisco metadata in GRE):
those frames keep their outer row, and each is listed with its reason.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess

import numpy as np
import pytest
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import GRE_PPTP, Dot1Q, Ether
from scapy.layers.ppp import PPP
from scapy.layers.vxlan import VXLAN
from scapy.utils import wrpcap

from dpi.capture import open_capture
from dpi.decode import Status, decode_batch
from dpi.decode.tunnel import MAX_TUNNEL_DEPTH, TUNNEL_NAMES
from dpi.info import summarize
from tests.conftest import SHARED_DATA
from tests.scanning import alerts_of, run_scan
from tests.test_decode import make_batch

S = Status
OUTER4 = IP(src="10.0.0.1", dst="10.0.0.2")
OUTER6 = IPv6(src="2001:db8::a", dst="2001:db8::b")
INNER_TCP = (
    IP(src="192.168.1.1", dst="192.168.1.2")
    / TCP(sport=1234, dport=80, seq=7, flags="PA")
    / b"GET / HTTP/1.1\r\n"
)
INNER_UDP6 = IPv6(src="2001:db8:1::1", dst="2001:db8:2::2") / UDP(sport=5353, dport=53) / b"query"
INNER_ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def _teredo(inner, prefix=b"", udp_extra=b""):
    return (
        Ether()
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / UDP(sport=3544, dport=40000)
        / (prefix + bytes(inner) + udp_extra)
    )


def _pptp(ppp_payload: bytes, ack: bool = False):
    # GRE v1 header by hand where scapy's layer would not set the A flag: flags K|S, version 1 (+A)
    header = struct.pack("!BBHHHI", 0x30, 0x81 if ack else 0x01, 0x880B, len(ppp_payload), 9, 1)
    if ack:
        header += struct.pack("!I", 5)
    return Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / (header + ppp_payload)


def _erspan(ethertype, header):
    """ERSPAN (type II or III by its EtherType) of an Ethernet frame carrying INNER_TCP."""
    return Ether() / OUTER4 / GRE(seqnum_present=1, proto=ethertype) / header / INNER_ETH / INNER_TCP


def _gre_source_routed(inner):
    sre = struct.pack("!HBB", 0x0800, 0, 8) + bytes(8)  # one route entry, then the empty one
    header = struct.pack("!BBHHH", 0x40, 0, 0x0800, 0, 0) + sre + struct.pack("!HBB", 0, 0, 0)
    return Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / (header + bytes(inner))


# name -> (frame, (depth, kind) expected, inner (src, dst, proto, sport, dport) or None for the outer row)
INNER_TCP_FIELDS = ("192.168.1.1", "192.168.1.2", 6, 1234, 80)
INNER_UDP6_FIELDS = ("2001:db8:1::1", "2001:db8:2::2", 17, 5353, 53)
CASES = {
    "ipv6-in-ipv4": (Ether() / OUTER4 / INNER_UDP6, (1, "ipv6_in_ip"), INNER_UDP6_FIELDS),
    "ipv4-in-ipv6": (Ether() / OUTER6 / INNER_TCP, (1, "ipv4_in_ip"), INNER_TCP_FIELDS),
    "ipv6-in-ipv6": (Ether() / OUTER6 / INNER_UDP6, (1, "ipv6_in_ip"), INNER_UDP6_FIELDS),
    "gre-ipv4": (Ether() / OUTER4 / GRE() / INNER_TCP, (1, "gre"), INNER_TCP_FIELDS),
    "gre-key-seq-checksum": (
        Ether()
        / OUTER4
        / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=77, sequence_number=3)
        / INNER_TCP,
        (1, "gre"),
        INNER_TCP_FIELDS,
    ),
    "gre-ipv6-over-ipv6": (Ether() / OUTER6 / GRE() / INNER_UDP6, (1, "gre"), INNER_UDP6_FIELDS),
    "gre-source-route": (_gre_source_routed(INNER_TCP), (1, "gre"), INNER_TCP_FIELDS),
    "gre-ethernet": (
        Ether() / OUTER4 / GRE(proto=0x6558) / INNER_ETH / INNER_TCP,
        (1, "gre"),
        INNER_TCP_FIELDS,
    ),
    "gre-ethernet-vlan": (
        Ether() / OUTER4 / GRE(proto=0x6558) / INNER_ETH / Dot1Q(vlan=5) / INNER_UDP6,
        (1, "gre"),
        INNER_UDP6_FIELDS,
    ),
    "erspan-ii": (_erspan(0x88BE, ERSPAN_II(session_id=3)), (1, "erspan"), INNER_TCP_FIELDS),
    "pptp-ipv4": (_pptp(b"\xff\x03\x00\x21" + bytes(INNER_TCP)), (1, "pptp"), INNER_TCP_FIELDS),
    "pptp-compressed-ppp-with-ack": (
        _pptp(b"\x21" + bytes(INNER_TCP), ack=True),
        (1, "pptp"),
        INNER_TCP_FIELDS,
    ),
    "pptp-scapy-ipv6": (
        Ether() / OUTER4 / GRE_PPTP(seqnum_present=1) / PPP(proto=0x57) / INNER_UDP6,
        (1, "pptp"),
        INNER_UDP6_FIELDS,
    ),
    "vxlan": (
        Ether() / OUTER4 / UDP(sport=49152, dport=4789) / VXLAN(vni=42, flags=0x08) / INNER_ETH / INNER_TCP,
        (1, "vxlan"),
        INNER_TCP_FIELDS,
    ),
    "geneve-ethernet": (
        Ether()
        / OUTER4
        / UDP(sport=49152, dport=6081)
        / GENEVE(vni=7, proto=0x6558, optionlen=2, options=bytes(8))
        / INNER_ETH
        / INNER_UDP6,
        (1, "geneve"),
        INNER_UDP6_FIELDS,
    ),
    "geneve-ipv4": (
        Ether() / OUTER6 / UDP(sport=49152, dport=6081) / GENEVE(vni=7, proto=0x0800) / INNER_TCP,
        (1, "geneve"),
        INNER_TCP_FIELDS,
    ),
    "teredo": (_teredo(INNER_UDP6), (1, "teredo"), INNER_UDP6_FIELDS),
    "teredo-origin-indication": (
        _teredo(INNER_UDP6, prefix=b"\x00\x00" + bytes(6)),
        (1, "teredo"),
        INNER_UDP6_FIELDS,
    ),
    "vxlan-in-gre": (
        Ether()
        / OUTER6
        / GRE()
        / IP(src="172.16.0.1", dst="172.16.0.2")
        / UDP(sport=1, dport=4789)
        / VXLAN(vni=1, flags=0x08)
        / INNER_ETH
        / INNER_TCP,
        (2, "gre"),
        INNER_TCP_FIELDS,
    ),
    "vxlan-from-port-4789": (
        Ether() / OUTER4 / UDP(sport=4789, dport=49152) / VXLAN(vni=42, flags=0x08) / INNER_ETH / INNER_TCP,
        (1, "vxlan"),
        INNER_TCP_FIELDS,
    ),
    # not tunnels, as in Suricata: the outer row stays
    "ipv4-in-ipv4": (Ether() / OUTER4 / INNER_TCP, (0, "none"), None),
    "erspan-iii": (_erspan(0x22EB, ERSPAN_III(session_id=3)), (0, "none"), None),
    "vxlan-without-i-flag": (
        Ether() / OUTER4 / UDP(sport=49152, dport=4789) / VXLAN(vni=42, flags=0x00) / INNER_ETH / INNER_TCP,
        (0, "none"),
        None,
    ),
    "gre-arp-over-ethernet": (
        Ether() / OUTER4 / GRE(proto=0x6558) / Ether(type=0x0806) / (b"\x00" * 28),
        (0, "none"),
        None,
    ),
    "gre-keepalive": (Ether() / OUTER4 / GRE(proto=0), (0, "none"), None),
    "teredo-bubble": (_teredo(IPv6(nh=0, plen=0)), (0, "none"), None),
    "teredo-length-mismatch": (_teredo(INNER_UDP6, udp_extra=b"xx"), (0, "none"), None),
    "pptp-lcp": (_pptp(b"\xff\x03\xc0\x21\x01\x01\x00\x04"), (0, "none"), None),
}

# tshark decodes these further than Suricata's defaults (and so this decoder) do
TSHARK_GOES_FURTHER = {
    "vxlan-without-i-flag": "tshark dissects UDP 4789 as VXLAN whatever its flags; Suricata wants the I flag",
    "ipv4-in-ipv4": "tshark decodes IPv4 in IPv4; Suricata 7 does not",
    "erspan-iii": "tshark decodes ERSPAN type III; Suricata 7 does not",
    "teredo-length-mismatch": "tshark does not require the IPv6 length to cover the UDP payload exactly",
    "teredo-bubble": "an empty IPv6 packet (a bubble): Suricata does not take it for a tunnel",
}


def _protocols(chain: str) -> list[str]:
    """tshark's frame.protocols up to the first ICMP (an ICMP error quotes a packet: not a tunnel)."""
    layers = chain.split(":")
    for k, layer in enumerate(layers):
        if layer in ("icmp", "icmpv6"):
            return layers[: k + 1]
    return layers


def tshark_innermost(path) -> list[dict]:
    """Per frame: tshark's tunnel depth and innermost addresses, protocol and ports."""
    fields = ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst"]
    fields += ["tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport"]
    command = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]
    for field in fields:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        values = dict(zip(fields, line.split("\t"), strict=True))
        layers = _protocols(values["frame.protocols"])
        ip_layers = [layer for layer in layers if layer in ("ip", "ipv6")]
        if not ip_layers:
            rows.append({"depth": 0, "inner": None})
            continue
        version = ip_layers[-1]
        nth = sum(1 for layer in ip_layers if layer == version) - 1

        upper = layers[len(layers) - layers[::-1].index(version) :]  # the layers after the innermost IP
        proto, sport, dport = None, 0, 0
        if upper and upper[0] in ("tcp", "udp"):
            proto = {"tcp": 6, "udp": 17}[upper[0]]
            index = sum(1 for layer in layers if layer == upper[0]) - 1
            sport = int(nth_value(values, f"{upper[0]}.srcport", index))
            dport = int(nth_value(values, f"{upper[0]}.dstport", index))
        elif upper and upper[0] in ("icmp", "icmpv6"):
            proto = {"icmp": 1, "icmpv6": 58}[upper[0]]
        src = nth_value(values, f"{version}.src", nth)
        inner = (src, nth_value(values, f"{version}.dst", nth), proto, sport, dport)
        rows.append({"depth": len(ip_layers) - 1, "inner": inner})
    return rows


def nth_value(values: dict, field: str, index: int) -> str | None:
    """The index-th occurrence of a field tshark aggregated with ';'."""
    parts = values[field].split(";")
    return parts[index] if index < len(parts) and parts[index] else None


def _address(hi, lo, version) -> str:
    value = (int(hi) << 64) | int(lo)
    if version == 4:
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def row(decoded, i) -> tuple:
    v = int(decoded.ip_version[i])
    return (
        _address(decoded.src_hi[i], decoded.src_lo[i], v),
        _address(decoded.dst_hi[i], decoded.dst_lo[i], v),
        int(decoded.proto[i]),
        int(decoded.sport[i]),
        int(decoded.dport[i]),
    )


def same_packet(theirs: tuple, ours: tuple) -> bool:
    """tshark's innermost (src, dst, proto, sport, dport) against a row; a protocol tshark
    does not name here (GRE, ESP, ...) leaves only the addresses to compare."""
    return theirs == ours if theirs[2] is not None else theirs[:2] == ours[:2]


def decode_cases():
    frames = [frame for frame, _, _ in CASES.values()]
    batch = make_batch(frames)
    return batch, decode_batch(batch)


def test_each_encapsulation_gives_the_inner_packet():
    batch, d = decode_cases()
    for i, (name, (_, (depth, kind), inner)) in enumerate(CASES.items()):
        got = (int(d.tunnel_depth[i]), TUNNEL_NAMES[d.tunnel_kind[i]], d.status[i])
        assert got == (depth, kind, S.OK), name
        if inner is not None:
            assert row(d, i) == inner, name
            payload = bytes(batch.buffer[d.payload_offset[i] : d.payload_offset[i] + d.payload_len[i]])
            assert payload == (b"GET / HTTP/1.1\r\n" if inner[2] == 6 else b"query"), name
            assert d.l3_offset[i] - batch.offset[i] >= 14 + 20, name  # behind the outer IP header at least


def test_outer_row_when_not_a_tunnel():
    batch, d = decode_cases()
    for i, (name, (frame, _, inner)) in enumerate(CASES.items()):
        if inner is None:
            outer = frame[IP] if IP in frame else frame[IPv6]
            assert row(d, i)[:2] == (outer.src, outer.dst), name
            assert d.l3_offset[i] - batch.offset[i] == 14, name


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_hand_built_tunnels_agree_with_tshark(tmp_path):
    path = tmp_path / "tunnels.pcap"
    wrpcap(str(path), [frame for frame, _, _ in CASES.values()])
    theirs = tshark_innermost(path)
    _, d = decode_cases()
    for i, name in enumerate(CASES):
        if name in TSHARK_GOES_FURTHER:
            assert theirs[i]["depth"] > d.tunnel_depth[i], (name, theirs[i])
            continue
        assert theirs[i]["depth"] == d.tunnel_depth[i], (name, theirs[i])
        assert same_packet(theirs[i]["inner"], row(d, i)), (name, theirs[i], row(d, i))


# (capture, frame numbers) -> why our row is the outer packet where tshark decodes further
SHARED_DIFFERENCES = {
    (
        "zeek/tunnel-teredo.pcap",
        frozenset({6, 7}),
    ): "Teredo with an authentication indicator (Suricata skips it)",
    (
        "zeek/tunnel-teredo.pcap",
        frozenset({31}),
    ): "Teredo with hop limit 0 (Suricata's test against false Teredo)",
    (
        "tcpdump/various-gre.pcap",
        None,
    ): "GRE carrying Cisco metadata (EtherType 0x8909), not decoded by Suricata",
}

TUNNEL_CAPTURES = [
    "ndpi/syslog.pcap",
    "tcpdump/various-gre.pcap",
    "zeek/tunnel-6in4.pcap",
    "zeek/tunnel-gre-sample.pcap",
    "zeek/tunnel-teredo.pcap",
    "zeek/tunnel-vxlan-http.pcap",
]


@pytest.mark.needs_shared
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("name", TUNNEL_CAPTURES)
def test_shared_tunnels_agree_with_tshark(name):
    path = SHARED_DATA / "pcaps" / name
    if not path.exists():
        pytest.skip(f"shared capture {path} not found")
    theirs = tshark_innermost(path)
    differences = {}
    for (capture, frames), reason in SHARED_DIFFERENCES.items():
        if capture == name:
            differences[frames] = reason
    tunnelled = explained = 0
    with open_capture(str(path)) as capture:
        for batch in capture.batches():
            d = decode_batch(batch)
            for i in range(len(batch)):
                number = int(batch.number[i])
                expected = theirs[number - 1]
                listed = any(frames is None or number in frames for frames in differences)
                if listed and expected["depth"] > d.tunnel_depth[i] == 0:
                    explained += 1
                    continue
                assert expected["depth"] == d.tunnel_depth[i], (name, number, expected)
                if d.tunnel_depth[i]:
                    tunnelled += 1
                    assert same_packet(expected["inner"], row(d, i)), (name, number, expected, row(d, i))
    assert tunnelled > 0 or explained > 0
    assert (explained > 0) == bool(differences), "a listed difference no longer applies"


def test_nesting_stops_at_the_depth_limit():
    frame = INNER_UDP6
    for k in range(MAX_TUNNEL_DEPTH + 2):
        frame = IPv6(src=f"2001:db8:9::{k + 1}", dst="2001:db8:9::ffff") / frame
    d = decode_batch(make_batch([Ether() / frame]))
    assert (d.status[0], d.tunnel_depth[0], TUNNEL_NAMES[d.tunnel_kind[0]]) == (
        S.OK,
        MAX_TUNNEL_DEPTH,
        "ipv6_in_ip",
    )
    assert row(d, 0)[0] == "2001:db8:9::2"  # the outermost is ::10, each level one less


def test_broken_tunnels_keep_the_outer_row_and_say_why():
    frames = [
        Ether()
        / OUTER4
        / GRE(proto=0x0800)
        / bytes(INNER_TCP)[:12],  # the inner IPv4 header cut after 12 bytes
        Ether() / OUTER4 / GRE() / IP(version=5) / TCP(),  # inner version nibble wrong
        Ether() / OUTER4 / GRE(proto=0x0800) / IP(len=400) / TCP(),  # inner length beyond the GRE payload
        Ether() / OUTER4 / IPv6(version=5) / UDP(),  # IPv6 in IPv4 with a wrong version nibble
        Ether() / OUTER4 / UDP(sport=1, dport=4789) / VXLAN(flags=0x08) / b"\x02\x00\x00",  # Ethernet cut
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / b"\x00\x02\x08\x00",  # GRE version 2
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2", proto=47) / b"\x80\x00",  # GRE header cut
    ]
    batch = make_batch(frames)
    d = decode_batch(batch)
    assert d.status.tolist() == [S.TUNNEL_INVALID] * len(frames)
    assert d.tunnel_depth.tolist() == [0] * len(frames)
    assert (d.l3_offset - batch.offset).tolist() == [14] * len(frames)
    assert [row(d, i)[:2] for i in range(len(frames))] == [("10.0.0.1", "10.0.0.2")] * len(frames)


def test_inner_packet_ends_with_its_carrier():
    # Ethernet padding after a short IP-in-IP packet is not the inner packet's payload
    frame = bytes(
        Ether() / OUTER4 / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=1, dport=2) / b"x"
    )
    padded = frame + b"\xee" * 20
    d = decode_batch(make_batch([padded]))
    assert (d.status[0], d.tunnel_depth[0], d.payload_len[0]) == (S.OK, 1, 1)


def test_snap_length_cut_inside_the_inner_packet():
    frame = bytes(Ether() / OUTER4 / GRE() / INNER_TCP)
    cut = len(frame) - 5  # the inner payload loses 5 bytes to the snap length
    d = decode_batch(make_batch([frame], caplens=[cut], wirelens=[len(frame)]))
    assert (d.status[0], d.tunnel_depth[0], d.payload_len[0]) == (S.CAPTURE_TRUNCATED, 1, 16 - 5)
    assert d.ip_payload_len[0] == 20 + 16


def test_fragmented_carrier_is_not_followed_before_reassembly():
    frame = Ether() / IP(src="10.0.0.1", dst="10.0.0.2", flags="MF", proto=47) / GRE() / INNER_TCP
    d = decode_batch(make_batch([frame]))
    assert (d.status[0], d.tunnel_depth[0], d.proto[0]) == (S.FRAGMENT, 0, 47)


def test_untunnelled_rows_say_so():
    d = decode_batch(make_batch([Ether() / INNER_TCP, Ether() / INNER_UDP6]))
    assert d.tunnel_depth.tolist() == [0, 0] and d.tunnel_kind.tolist() == [0, 0]
    assert np.array_equal(d.l3_offset, np.array([14, 14 + len(Ether() / INNER_TCP)]))


def _tcp_session_through(carry):
    """A TCP handshake and a request from 192.168.1.1 to 192.168.1.2:80, each packet wrapped by
    ``carry`` (inner packet -> frame); the request's content is split over two segments."""
    client = IP(src="192.168.1.1", dst="192.168.1.2")
    server = IP(src="192.168.1.2", dst="192.168.1.1")
    packets = [
        client / TCP(sport=1234, dport=80, flags="S", seq=100),
        server / TCP(sport=80, dport=1234, flags="SA", seq=500, ack=101),
        client / TCP(sport=1234, dport=80, flags="A", seq=101, ack=501),
        client / TCP(sport=1234, dport=80, flags="PA", seq=101, ack=501) / b"GET /tunnel",
        client / TCP(sport=1234, dport=80, flags="PA", seq=112, ack=501) / b"led-secret HTTP/1.1\r\n\r\n",
    ]
    return [carry(p) for p in packets]


CARRIERS = {
    "gre": lambda p: Ether() / OUTER4 / GRE() / p,
    "vxlan": lambda p: (
        Ether() / OUTER4 / UDP(sport=49152, dport=4789) / VXLAN(vni=9, flags=0x08) / INNER_ETH / p
    ),
    "ipv4-in-ipv6": lambda p: Ether() / OUTER6 / p,
}


@pytest.mark.parametrize("carrier", list(CARRIERS))
def test_scan_alerts_on_content_inside_a_tunnel(tmp_path, carrier):
    rules = (
        'alert tcp 192.168.1.1 any -> 192.168.1.2 80 (msg:"inside"; flow:established,to_server; '
        'content:"tunnelled-secret"; sid:1; rev:1;)\n'
        'alert udp any any -> any 4789 (msg:"outer UDP is not a row of its own"; sid:2; rev:1;)\n'
    )
    result, events = run_scan(tmp_path, _tcp_session_through(CARRIERS[carrier]), rules)
    alerts = alerts_of(events)
    assert [a["alert"]["signature_id"] for a in alerts] == [1]
    ends = (alerts[0]["src_ip"], alerts[0]["src_port"], alerts[0]["dest_ip"], alerts[0]["dest_port"])
    assert ends == ("192.168.1.1", 1234, "192.168.1.2", 80)
    flows = [e for e in events if e["event_type"] == "flow"]
    assert [(f["src_ip"], f["dest_ip"], f["proto"]) for f in flows] == [("192.168.1.1", "192.168.1.2", "TCP")]


def test_broken_tunnel_is_counted_in_the_stats(tmp_path):
    frames = [Ether() / OUTER4 / GRE(proto=0x0800) / bytes(INNER_TCP)[:12]]
    result, events = run_scan(tmp_path, frames, 'alert ip any any -> any any (msg:"x"; sid:1; rev:1;)\n')
    stats = [e for e in events if e["event_type"] == "stats"][-1]["stats"]
    assert stats["decoder"]["status"]["tunnel_invalid"] == 1


@pytest.mark.needs_shared
def test_info_counts_tunnels_and_their_inner_protocols():
    path = SHARED_DATA / "pcaps" / "zeek" / "tunnel-gre-sample.pcap"
    if not path.exists():
        pytest.skip(f"shared capture {path} not found")
    protocols = summarize(str(path), progress=False).protocols
    # tshark: 22 gre:ip:tcp, 8 gre:ip:udp, 10 gre:ip:icmp frames
    assert (protocols["tcp"], protocols["udp"], protocols["icmp"]) == (22, 8, 10)
    assert protocols["tunnelled"] == protocols["tunnelled_gre"] == 40


def test_alerts_inside_tunnels_carry_suricatas_tunnel_object(tmp_path):
    carriers = {
        "vxlan": CARRIERS["vxlan"],
        "gre": CARRIERS["gre"],
        "ipv4-in-ipv6": CARRIERS["ipv4-in-ipv6"],
        "gre-in-ipv4-in-ipv6": lambda p: (
            Ether() / OUTER6 / IP(src="172.16.0.1", dst="172.16.0.2") / GRE() / p
        ),
    }
    packets = [frame for carry in carriers.values() for frame in _tcp_session_through(carry)[3:4]]
    packets.append(Ether() / INNER_TCP)  # not tunnelled: no tunnel object
    rules = 'alert tcp any any -> any 80 (msg:"get"; content:"GET /"; sid:1; rev:1;)\n'
    _, events = run_scan(tmp_path, packets, rules)
    tunnels = [a.get("tunnel") for a in alerts_of(events)]
    outer4 = {"src_ip": "10.0.0.1", "dest_ip": "10.0.0.2"}
    outer6 = {"src_ip": "2001:db8::a", "dest_ip": "2001:db8::b"}
    expected = [
        {**outer4, "src_port": 49152, "dest_port": 4789, "proto": "UDP", "depth": 1},
        {**outer4, "src_port": 0, "dest_port": 0, "proto": "GRE", "depth": 1},
        {**outer6, "src_port": 0, "dest_port": 0, "proto": "IPv4", "depth": 1},
        {**outer6, "src_port": 0, "dest_port": 0, "proto": "IPv4", "depth": 2},
        None,
    ]
    for k, (got, want) in enumerate(zip(tunnels, expected, strict=True)):
        if want is None:
            assert got is None
            continue
        assert got == {**want, "pcap_cnt": k + 1, "pkt_src": "wire/pcap"}, k
    assert alerts_of(events)[0]["src_ip"] == "192.168.1.1"
