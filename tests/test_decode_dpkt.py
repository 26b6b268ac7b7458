"""The decoder against dpkt, and tshark where dpkt differs, on every packet of every shared capture.

For each packet that dpkt takes down to an IP/IPv6 object we compare the IP version,
addresses, protocol, ports, TCP seq/ack/flags, ICMP type/code and the payload bytes.
Three narrow tables say where we and dpkt part ways, each entry with its reason:

- ``DPKT_DIFFERS``: a field of specific packets that dpkt decodes differently; that field
  is checked against tshark instead (``test_dpkt_differences_agree_with_tshark``).
- ``EXPECTED_ERRORS``: packets dpkt accepts but we flag as broken; each is confirmed from
  tshark's own fields (``test_expected_errors_confirmed_by_tshark``).
- ``NOT_DECODED``: encapsulations dpkt follows to IP and this decoder does not (yet).

Rows of tunnelled packets describe the packet inside the tunnel, which dpkt mostly does not
reach (VXLAN, Teredo); they are checked against tshark in ``test_decode_tunnels``.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from collections import Counter
from functools import cache

import dpkt
import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.capture.reference import ScapyReader
from dpi.decode import Status, decode_batch, is_error, status_name
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
PCAPS = DATA / "pcaps"
ALL_CAPTURES = (
    sorted(str(p.relative_to(PCAPS)) for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    if PCAPS.is_dir()
    else []
)


READERS = ["dpkt", "native"]

ALL = None  # every packet of the file

# (file, field) -> (packets, reason). The field is then checked against tshark.
DPKT_DIFFERS: dict[tuple[str, str], tuple[frozenset[int] | None, str]] = {
    **{
        ("zeek/ipv4-fragmented-syn.pcap", field): (
            frozenset({1}),
            "first fragment whose 24 bytes end inside the TCP options (data offset 10 = 40 bytes): "
            "we leave the L4 header to reassembly and report the fragment's bytes as payload; "
            "dpkt builds a TCP header with truncated options and an empty payload",
        )
        for field in ("ports", "tcp", "payload")
    },
}

_LENGTH_LIES = (
    "the IP length claims more bytes than the frame had on the wire "
    "(tshark: total length exceeds packet length)"
)

# (file, status name) -> (packets, reason): dpkt parses these, we call them broken.
EXPECTED_ERRORS: dict[tuple[str, str], tuple[frozenset[int], str]] = {
    ("ndpi/reasm-crash-anon.pcapng", "ipv4_length_exceeds_frame"): (
        frozenset({15, 17, 45, 68, 81, 108, 130, 190}),
        _LENGTH_LIES + "; anonymised fuzz regression trace",
    ),
    ("ndpi/reasm-crash-anon.pcapng", "tcp_bad_offset"): (frozenset({95}), "TCP data offset 0"),
    ("ndpi/reasm-crash-anon.pcapng", "tcp_options_truncated"): (
        frozenset({87}),
        "TCP data offset 8 (32 bytes) but only 24 TCP bytes in the frame",
    ),
    ("ndpi/telnet.pcap", "ipv4_length_exceeds_frame"): (frozenset({18, 32, 52, 70, 78}), _LENGTH_LIES),
    ("tcpreplay/test.pcap", "ipv4_length_exceeds_frame"): (frozenset({11}), _LENGTH_LIES),
    ("zeek/tcp-reassembly.pcap", "ipv4_length_exceeds_frame"): (frozenset({7, 26, 35, 39, 85}), _LENGTH_LIES),
    ("zeek/tcp-truncated-header.pcap", "tcp_options_truncated"): (
        frozenset({1}),
        "snap length cut the SYN inside its TCP options",
    ),
    ("tcpdump/bad-ipv4-version.pcap", "ipv4_bad_version"): (
        frozenset({1}),
        "EtherType IPv4 but version nibble 0; dpkt does not check the version",
    ),
    ("zeek/trunc-ipv4-broken-header.pcap", "ipv4_bad_total_length"): (
        frozenset({1}),
        "total length 20 below the 24-byte header; dpkt does not check it",
    ),
}

# (file, dpkt's path to IP) -> reason: encapsulations this decoder leaves undecoded.
NOT_DECODED: dict[tuple[str, str], str] = {
    ("tcpreplay/test.pcap", "Ethernet>Ethernet"): (
        "MPLS pseudowire carrying Ethernet: dpkt guesses it from the control word, we stop at "
        "MPLS_UNKNOWN_PAYLOAD (tunnels are not decoded in this stage)"
    ),
}


def dpkt_ip(linktype: int, frame: bytes):
    """(IP or IP6 object, path of dpkt classes above it) or (None, path) when dpkt does
    not get to IP."""
    lt = linktype & 0x03FFFFFF
    try:
        if lt == 1:
            top = dpkt.ethernet.Ethernet(frame)
        elif lt == 113:
            top = dpkt.sll.SLL(frame)
        elif lt == 276:
            top = dpkt.sll2.SLL2(frame)
        elif lt in (0, 108):
            top = dpkt.loopback.Loopback(frame)
        elif lt in (12, 14, 101, 228, 229):
            version = frame[0] >> 4 if frame else 0
            ip_class = {4: dpkt.ip.IP, 6: dpkt.ip6.IP6}.get(version)
            return (ip_class(frame), "") if ip_class else (None, "")
        else:
            return None, ""
    except (dpkt.UnpackError, IndexError, struct.error):
        return None, ""
    path = [type(top).__name__]
    node = top.data
    while isinstance(node, dpkt.Packet) and not isinstance(node, (dpkt.ip.IP, dpkt.ip6.IP6)):
        path.append(type(node).__name__)
        node = node.data
    return (node if isinstance(node, (dpkt.ip.IP, dpkt.ip6.IP6)) else None), ">".join(path)


def _address(hi: int, lo: int, version: int) -> str:
    value = (int(hi) << 64) | int(lo)
    if version == 4:
        assert value >> 32 == 0xFFFF, "IPv4 must be stored as ::ffff:a.b.c.d"
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def ours(decoded, batch, i: int) -> dict:
    """Our decode of packet i as the compared fields; a field is absent when not decoded."""
    version = int(decoded.ip_version[i])
    if version == 0:
        return {}
    fields = {
        "version": version,
        "src": _address(decoded.src_hi[i], decoded.src_lo[i], version),
        "dst": _address(decoded.dst_hi[i], decoded.dst_lo[i], version),
        "proto": int(decoded.proto[i]),
        "ttl": int(decoded.ttl[i]),
        "frag": (int(decoded.frag_id[i]), int(decoded.frag_offset[i]), int(decoded.frag_more[i])),
    }
    if is_error(decoded.status[i]) and decoded.status[i] not in (
        Status.IPV4_LENGTH_EXCEEDS_FRAME,
        Status.IPV6_LENGTH_EXCEEDS_FRAME,
    ):
        return fields
    proto = fields["proto"]
    # a transport header was decoded when its payload starts after it
    l4_decoded = decoded.payload_offset[i] > decoded.l4_offset[i] >= 0
    if proto in (6, 17) and l4_decoded:
        fields["ports"] = (int(decoded.sport[i]), int(decoded.dport[i]))
    if proto == 6 and l4_decoded:
        fields["tcp"] = (int(decoded.tcp_seq[i]), int(decoded.tcp_ack[i]), int(decoded.tcp_flags[i]))
    if proto in (1, 58) and l4_decoded:
        fields["icmp"] = (int(decoded.icmp_type[i]), int(decoded.icmp_code[i]))
    start = int(decoded.payload_offset[i])
    fields["payload"] = bytes(batch.buffer[start : start + int(decoded.payload_len[i])])
    return fields


def _dpkt_icmp_payload(icmp) -> bytes:
    """ICMP/ICMPv6 bytes after the 8-byte header, from dpkt's objects."""
    body = icmp.data
    if isinstance(body, bytes):  # a type dpkt does not model: its rest-of-header comes first
        return body[4:]
    inner = body.data
    return inner if isinstance(inner, bytes) else bytes(inner)


def _ipv4_payload_in_frame(ip, frame: bytes) -> bytes:
    """The raw IPv4 payload, found by locating dpkt's (faithfully packed) header in the
    frame: dpkt re-packs protocols it parsed further (OSPF, GRE, ...) and may recompute
    their checksums on the way, so their bytes() are not what was on the wire."""
    header = ip.pack_hdr() + bytes(ip.opts)
    start = frame.find(header)
    assert start >= 0
    end = start + ip.len if ip.len else len(frame)
    return frame[start + len(header) : end]


def _dpkt_fragment_fields(ip, version: int) -> tuple[int, int, int]:
    """(identification, offset in bytes, more fragments) as our columns hold them."""
    if version == 4:
        return ip.id, ip.offset * 8, ip.mf  # dpkt keeps the offset in 8-byte units
    header = ip.extension_hdrs.get(44)
    return (header.id, header.frag_off * 8, header.m_flag) if header is not None else (0, 0, 0)


def theirs(ip, frame: bytes) -> dict:
    """dpkt's view of the compared fields."""
    version = 4 if isinstance(ip, dpkt.ip.IP) else 6
    fields = {
        "version": version,
        "src": str(ipaddress.ip_address(ip.src)),
        "dst": str(ipaddress.ip_address(ip.dst)),
        "proto": int(ip.p),
        "ttl": ip.ttl if version == 4 else ip.hlim,
        "frag": _dpkt_fragment_fields(ip, version),
    }
    data = ip.data
    if isinstance(data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
        fields["ports"] = (data.sport, data.dport)
        if isinstance(data, dpkt.tcp.TCP):
            fields["tcp"] = (data.seq, data.ack, data.flags & 0xFF)
        fields["payload"] = bytes(data.data)
    elif isinstance(data, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
        fields["icmp"] = (data.type, data.code)
        fields["payload"] = _dpkt_icmp_payload(data)
    elif isinstance(data, bytes):
        fields["payload"] = data
    elif version == 4:
        fields["payload"] = _ipv4_payload_in_frame(ip, frame)
    else:  # a protocol dpkt parsed further behind IPv6 (extension) headers
        fields["payload"] = bytes(data)
    return fields


@cache
def _scapy_wire_lengths(path: str) -> np.ndarray:
    with ScapyReader(str(PCAPS / path)) as reader:
        return np.concatenate([b.wirelen for b in reader.batches()] or [np.zeros(0, np.int64)])


def decoded_batches(path: str, reader: str):
    """(batch, decoded) pairs. dpkt's pcapng reader hides each record's wire length and
    DpktReader puts the captured length in its place; the decoder needs the wire length to
    tell a snap-length cut (CAPTURE_TRUNCATED) from a lying IP length, so take it from
    scapy's reader."""
    with open_capture(str(PCAPS / path), reader=reader) as capture:
        for batch in capture.batches():
            if reader == "dpkt":
                batch.wirelen = _scapy_wire_lengths(path)[batch.number - 1]
            yield batch, decode_batch(batch)


def compare_with_dpkt(path: str, reader: str) -> dict:
    found = {
        "mismatch": [],
        "exempt": Counter(),
        "errors": {},
        "not_decoded": Counter(),
        "compared": 0,
        "tunnelled": 0,
    }
    for batch, decoded in decoded_batches(path, reader):
        for i in range(len(batch)):
            number = int(batch.number[i])
            status = status_name(decoded.status[i])
            frame = batch.frame(i)
            ip, via = dpkt_ip(int(batch.linktype[i]), frame)
            if decoded.tunnel_depth[i]:
                found["tunnelled"] += 1  # the inner packet: test_decode_tunnels checks it with tshark
                continue
            mine = ours(decoded, batch, i)
            if ip is None:
                if mine and not is_error(decoded.status[i]):
                    found["mismatch"].append((number, "dpkt has no IP", mine.get("src"), None, status))
                continue
            if ">" in via and not mine:
                # dpkt reached IP through an encapsulation we stop at (listed in NOT_DECODED)
                found["not_decoded"][(via, status)] += 1
                continue
            found["compared"] += 1
            if is_error(decoded.status[i]):
                found["errors"].setdefault(status, set()).add(number)
            other = theirs(ip, frame)
            for field in sorted(set(mine) | set(other)):
                if mine.get(field) == other.get(field):
                    continue
                if field not in mine and is_error(decoded.status[i]):
                    continue  # stopped at an error (listed in EXPECTED_ERRORS) before this layer
                rule = DPKT_DIFFERS.get((path, field))
                if rule is not None and (rule[0] is ALL or number in rule[0]):
                    found["exempt"][field] += 1
                    continue
                found["mismatch"].append((number, field, mine.get(field), other.get(field), status))
    return found


def _short(value):
    if isinstance(value, bytes) and len(value) > 24:
        return f"<{len(value)} bytes {value[:12].hex()}..>"
    return value


def _need_captures():
    if not PCAPS.is_dir():
        pytest.skip(f"shared captures not found at {PCAPS}")


@pytest.mark.needs_shared
@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("path", ALL_CAPTURES)
def test_agrees_with_dpkt(path, reader):
    _need_captures()
    found = compare_with_dpkt(path, reader)
    report = "\n".join(
        f"  packet {n} {field}: ours={_short(a)!r} dpkt={_short(b)!r} (status {st})"
        for n, field, a, b, st in found["mismatch"][:20]
    )
    assert not found["mismatch"], f"{path}: {len(found['mismatch'])} differences from dpkt:\n{report}"

    expected = {status: packets for (file, status), (packets, _) in EXPECTED_ERRORS.items() if file == path}
    assert found["errors"] == expected, f"{path}: error statuses on packets dpkt accepts"

    for (via, status), count in found["not_decoded"].items():
        assert (path, via) in NOT_DECODED, f"{path}: {count} packets reach IP in dpkt via {via}, not here"
        assert status in ("not_ip", "mpls_unknown_payload"), (path, via, status)
    seen_paths = {via for via, _ in found["not_decoded"]}
    stale = {via for (file, via) in NOT_DECODED if file == path} - seen_paths
    assert not stale, f"{path}: NOT_DECODED entries that no longer apply: {stale}"

    exempt_fields = {field for (file, field) in DPKT_DIFFERS if file == path}
    assert set(found["exempt"]) == exempt_fields, f"{path}: DPKT_DIFFERS entries that no longer apply"


# ---------------------------------------------------------------------------------------
# tshark: the referee where dpkt differs


TSHARK_FIELDS = (
    "frame.number frame.len frame.cap_len ip.version ip.hdr_len ip.len ipv6.plen "
    "tcp.srcport tcp.dstport tcp.seq_raw tcp.ack_raw tcp.flags tcp.hdr_len tcp.len "
    "udp.srcport udp.dstport udp.length"
).split()


@cache
def tshark_rows(path: str) -> dict[int, dict[str, str]]:
    """tshark's first occurrence of each field, by frame number (reassembly left on, as a
    user would see it)."""
    command = ["tshark", "-n", "-r", str(PCAPS / path), "-T", "fields", "-E", "occurrence=f"]
    for field in TSHARK_FIELDS:
        command += ["-e", field]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120).stdout
    rows = {}
    for line in out.splitlines():
        values = dict(zip(TSHARK_FIELDS, line.split("\t"), strict=False))
        rows[int(values["frame.number"])] = values
    return rows


def _num(row: dict, field: str) -> int | None:
    value = row.get(field, "")
    return int(value, 0) if value else None


def _need_tshark():
    _need_captures()
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")


def _decoded_row(path: str, number: int):
    for batch, decoded in decoded_batches(path, "dpkt"):
        hits = np.flatnonzero(batch.number == number)
        if hits.size:
            return batch, decoded, int(hits[0])
    raise AssertionError(f"{path} has no packet {number}")


@pytest.mark.needs_shared
@pytest.mark.parametrize("file, field", sorted(DPKT_DIFFERS))
def test_dpkt_differences_agree_with_tshark(file, field):
    _need_tshark()
    packets, _reason = DPKT_DIFFERS[(file, field)]
    rows = tshark_rows(file)
    for number in packets if packets is not ALL else rows:
        row = rows[number]
        batch, decoded, i = _decoded_row(file, number)
        mine = ours(decoded, batch, i)
        if field == "ports":
            shark = (_num(row, "tcp.srcport"), _num(row, "tcp.dstport"))
            if shark == (None, None):
                shark = (_num(row, "udp.srcport"), _num(row, "udp.dstport"))
            assert mine.get("ports") == (None if shark == (None, None) else shark), (file, number)
        elif field == "tcp":
            seq = _num(row, "tcp.seq_raw")
            shark = None if seq is None else (seq, _num(row, "tcp.ack_raw"), _num(row, "tcp.flags") & 0xFF)
            assert mine.get("tcp") == shark, (file, number)
        elif field == "payload":
            if _num(row, "tcp.len") is not None:
                expected = _num(row, "tcp.len")
            elif _num(row, "udp.length") is not None:
                expected = _num(row, "udp.length") - 8
            else:  # tshark did not dissect L4: the IP payload is all payload
                expected = _num(row, "ip.len") - _num(row, "ip.hdr_len")
            assert len(mine["payload"]) == expected, (file, number)
        else:
            raise AssertionError(f"no tshark check written for field {field}")


def _tshark_explains(status: str, row: dict, l3: int) -> bool:
    """Does tshark's own decode of the packet show the fault our status names?"""
    wire, captured = _num(row, "frame.len"), _num(row, "frame.cap_len")
    ip_len, ip_hdr, tcp_hdr = _num(row, "ip.len"), _num(row, "ip.hdr_len"), _num(row, "tcp.hdr_len")
    if status == "ipv4_length_exceeds_frame":
        return l3 + ip_len > wire
    if status == "ipv6_length_exceeds_frame":
        return l3 + 40 + _num(row, "ipv6.plen") > wire
    if status == "ipv4_bad_version":
        return _num(row, "ip.version") != 4
    if status == "ipv4_bad_total_length":
        return ip_len < ip_hdr
    if status == "tcp_bad_offset":
        return tcp_hdr < 20 or ip_hdr + tcp_hdr > ip_len
    if status == "tcp_options_truncated":
        return l3 + ip_hdr + tcp_hdr > min(captured, l3 + ip_len)
    raise AssertionError(f"no tshark check written for {status}")


@pytest.mark.needs_shared
@pytest.mark.parametrize("file, status", sorted(EXPECTED_ERRORS))
def test_expected_errors_confirmed_by_tshark(file, status):
    _need_tshark()
    packets, _reason = EXPECTED_ERRORS[(file, status)]
    rows = tshark_rows(file)
    for number in sorted(packets):
        batch, decoded, i = _decoded_row(file, number)
        assert status_name(decoded.status[i]) == status
        l3 = int(decoded.l3_offset[i] - batch.offset[i])
        assert _tshark_explains(status, rows[number], l3), (file, number, rows[number])
