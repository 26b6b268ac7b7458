"""Tunnels: the packet inside IP-in-IP, GRE, PPTP, ERSPAN II, VXLAN, Geneve and Teredo.

Suricata decodes these by default and inspects the inner packet; so does this decoder. A
tunnelled packet's row describes its innermost IP packet (addresses, ports, payload, flow),
with ``tunnel_depth`` (how many encapsulations were removed) and ``tunnel_kind`` (the
outermost one). Unlike Suricata, which also keeps the outer packet as a flow and inspects it,
there is one row per captured frame: rules on the outer headers (a UDP rule on port 4789, say)
do not see tunnelled frames.

The code here runs only for the few packets that may carry a tunnel (``may_carry_tunnel``), so
its functions are real calls rather than inlined copies: inlined, they made the first decode's
compile 81 s instead of 9 (measured on an empty Numba cache).

The recognisers follow Suricata 7's defaults, so that the same frames count as tunnels (each
case in tests/test_decode_tunnels.py was checked against Suricata 7.0.10):

- IPv6 (protocol 41) inside IPv4 or IPv6, and IPv4 (protocol 4) inside IPv6; IPv4 inside
  IPv4 is not decoded, as in Suricata (tshark does decode it);
- GRE version 0 (RFC 2784/2890: checksum, key and sequence fields; RFC 1701 source routes)
  carrying IPv4, IPv6, MPLS, VLAN-tagged frames or Ethernet (0x6558), and ERSPAN type II;
  type I (no header) is off in Suricata's default configuration, and type III is not
  decoded by Suricata 7;
- GRE version 1 (PPTP, RFC 2637) carrying PPP frames of IPv4 or IPv6;
- VXLAN on UDP port 4789 either way, with the I flag set and the last reserved byte 0;
- Geneve on UDP port 6081 either way, version 0;
- Teredo on UDP port 3544 either way: an IPv6 header (after an optional origin indication)
  whose payload length accounts for the UDP payload exactly, and neither a hop limit of 0 nor
  an empty hop-by-hop header (a bubble).

A frame that is not any of these, or a tunnel of something other than IP (ARP, CDP, PPP
control, a GRE keepalive), keeps its outer row. A recognised tunnel whose header or inner IP
header is broken keeps its outer row too, with status TUNNEL_INVALID when the outer packet was
otherwise OK: nothing is dropped, and the reason is counted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dpi.decode.ip import FRAGMENT as IPV6_FRAGMENT_HEADER
from dpi.decode.ip import NOT_FRAGMENT, decode_ipv4, decode_ipv6
from dpi.decode.link import ETH_HEADER_LEN, PPP_IPV4, PPP_IPV6, decode_ethertype
from dpi.decode.status import FIRST_ERROR_CODE, Status
from dpi.decode.wire import be16, frame_wire_end

# tunnel_kind values (the outermost encapsulation of a row); 0: not tunnelled
TUNNEL_NONE = 0
TUNNEL_IPV4_IN_IP = 1
TUNNEL_IPV6_IN_IP = 2
TUNNEL_GRE = 3
TUNNEL_PPTP = 4
TUNNEL_ERSPAN = 5
TUNNEL_VXLAN = 6
TUNNEL_GENEVE = 7
TUNNEL_TEREDO = 8
TUNNEL_NAMES = ("none", "ipv4_in_ip", "ipv6_in_ip", "gre", "pptp", "erspan", "vxlan", "geneve", "teredo")

MAX_TUNNEL_DEPTH = 8  # encapsulations removed at most; a deeper packet keeps its 8th inner row

PROTO_IPV4 = 4
PROTO_UDP = 17
PROTO_IPV6 = 41
PROTO_GRE = 47

VXLAN_PORT = 4789
GENEVE_PORT = 6081
TEREDO_PORT = 3544
UDP_HEADER = 8
VXLAN_HEADER = 8
GENEVE_HEADER = 8
TEREDO_ORIGIN_INDICATION = 8
IPV6_HEADER = 40

GRE_CHECKSUM = 0x80
GRE_ROUTING = 0x40
GRE_KEY = 0x20
GRE_SEQUENCE = 0x10
GRE_STRICT_ROUTE = 0x08
GRE_RECURSION = 0x07
GRE_ACK = 0x80  # version 1: acknowledgment number present (second flags byte)
GRE_VERSION = 0x07
GRE_V0_RESERVED = 0xF8  # second flags byte of version 0: must be zero
GRE_MAX_SOURCE_ROUTES = 16

ETHERTYPE_TEB = 0x6558  # transparent Ethernet bridging: an Ethernet frame follows
ETHERTYPE_ERSPAN_II = 0x88BE
ETHERTYPE_ERSPAN_III = 0x22EB
ETHERTYPE_PPP = 0x880B
ERSPAN_II_HEADER = 8

# inner_packet's status beside Status.OK: the tunnel carries no IP packet (not an error)
NO_INNER_IP = Status.NOT_IP


@njit(cache=True)
def _ethertype(buf, p, end, ethertype):
    """decode_ethertype's (status, l3, version): one compiled copy for every tunnel that names
    its payload by EtherType (inlined at each, the tunnel code took minutes to compile)."""
    status, l3, version, _, _ = decode_ethertype(buf, p, end, ethertype)
    return status, l3, version


@njit(cache=True, inline="always")
def _no_tunnel():
    return TUNNEL_NONE, NO_INNER_IP, -1, 0, 0


@njit(cache=True)
def _inner_ethernet(kind, buf, p, end):
    """An Ethernet frame at p: its IP packet, NO_INNER_IP for any other EtherType, else broken."""
    if end - p < ETH_HEADER_LEN:
        return kind, Status.TUNNEL_INVALID, -1, 0, end
    status, l3, version = _ethertype(buf, p + ETH_HEADER_LEN, end, be16(buf, p + 12))
    if status != Status.OK and status < FIRST_ERROR_CODE:
        return _no_tunnel()  # ARP, LLDP, an MPLS pseudowire, ...: no IP inside
    if status != Status.OK:
        return kind, Status.TUNNEL_INVALID, -1, 0, end
    return kind, Status.OK, l3, version, end


@njit(cache=True, inline="always")
def _gre(buf, p, end):
    """GRE header at p (versions 0 and 1) and what it carries."""
    if end - p < 4:
        return TUNNEL_GRE, Status.TUNNEL_INVALID, -1, 0, end
    flags = buf[p]
    version = buf[p + 1] & GRE_VERSION
    protocol = be16(buf, p + 2)
    q = p + 4
    if version == 1:  # PPTP: key present (payload length, call id), no checksum, routing or recursion
        if flags & (GRE_CHECKSUM | GRE_ROUTING | GRE_STRICT_ROUTE | GRE_RECURSION) or not flags & GRE_KEY:
            return TUNNEL_PPTP, Status.TUNNEL_INVALID, -1, 0, end
        if protocol != ETHERTYPE_PPP:
            return TUNNEL_PPTP, Status.TUNNEL_INVALID, -1, 0, end
        q += 4
        if flags & GRE_SEQUENCE:
            q += 4
        if buf[p + 1] & GRE_ACK:
            q += 4
        if q >= end:
            return _no_tunnel()  # header only (an acknowledgment), or truncated: no packet inside
        # PPP: address and control (0xFF 0x03) unless compressed, then a 1- or 2-byte protocol
        if buf[q] == 0xFF:
            if end - q < 2 or buf[q + 1] != 0x03:
                return TUNNEL_PPTP, Status.TUNNEL_INVALID, -1, 0, end
            q += 2
        if q >= end:
            return TUNNEL_PPTP, Status.TUNNEL_INVALID, -1, 0, end
        if buf[q] & 1:  # protocol-field compression: an odd first byte is the whole field
            ppp_protocol = buf[q]
            q += 1
        else:
            if end - q < 2:
                return TUNNEL_PPTP, Status.TUNNEL_INVALID, -1, 0, end
            ppp_protocol = be16(buf, q)
            q += 2
        if ppp_protocol == PPP_IPV4:
            return TUNNEL_PPTP, Status.OK, q, 4, end
        if ppp_protocol == PPP_IPV6:
            return TUNNEL_PPTP, Status.OK, q, 6, end
        return _no_tunnel()  # LCP, CCP, compressed data, ...
    if version != 0 or flags & GRE_RECURSION or buf[p + 1] & GRE_V0_RESERVED:
        return TUNNEL_GRE, Status.TUNNEL_INVALID, -1, 0, end
    if flags & (GRE_CHECKSUM | GRE_ROUTING):
        q += 4
    if flags & GRE_KEY:
        q += 4
    if flags & GRE_SEQUENCE:
        q += 4
    if flags & GRE_ROUTING:  # RFC 1701 source route entries, up to an empty one
        routes = 0
        while True:
            if end - q < 4 or routes == GRE_MAX_SOURCE_ROUTES:
                return TUNNEL_GRE, Status.TUNNEL_INVALID, -1, 0, end
            family = be16(buf, q)
            length = buf[q + 3]
            q += 4 + length
            routes += 1
            if family == 0 and length == 0:
                break
    if q > end:
        return TUNNEL_GRE, Status.TUNNEL_INVALID, -1, 0, end
    if protocol == ETHERTYPE_TEB:
        return _inner_ethernet(TUNNEL_GRE, buf, q, end)
    if protocol == ETHERTYPE_ERSPAN_II:
        if not flags & GRE_SEQUENCE:
            return _no_tunnel()  # ERSPAN type I: off by default in Suricata
        if end - q < ERSPAN_II_HEADER or buf[q] >> 4 != 1:
            return TUNNEL_ERSPAN, Status.TUNNEL_INVALID, -1, 0, end
        return _inner_ethernet(TUNNEL_ERSPAN, buf, q + ERSPAN_II_HEADER, end)
    if protocol == ETHERTYPE_ERSPAN_III:
        return _no_tunnel()  # type III: Suricata 7 does not decode it (tshark does)
    # IPv4, IPv6, MPLS and VLAN-tagged payloads are named by their EtherType
    status, l3, version = _ethertype(buf, q, end, protocol)
    if status != Status.OK and status < FIRST_ERROR_CODE:
        return _no_tunnel()
    if status != Status.OK:
        return TUNNEL_GRE, Status.TUNNEL_INVALID, -1, 0, end
    return TUNNEL_GRE, Status.OK, l3, version, end


@njit(cache=True, inline="always")
def _teredo(buf, p, end):
    """Teredo's heuristics (it has no header of its own to check)."""
    if end - p >= 2 and buf[p] == 0:
        if buf[p + 1] != 0:
            return _no_tunnel()  # an authentication indicator: not decoded, as in Suricata
        p += TEREDO_ORIGIN_INDICATION
    if end - p < IPV6_HEADER or buf[p] >> 4 != 6 or buf[p + 7] == 0:
        return _no_tunnel()
    payload_len = be16(buf, p + 4)
    if buf[p + 6] == 0 and payload_len == 0:
        return _no_tunnel()  # a bubble
    if end - p != IPV6_HEADER + payload_len:
        return _no_tunnel()
    return TUNNEL_TEREDO, Status.OK, p, 6, end


@njit(cache=True, inline="always")
def _udp(buf, p, end):
    """A UDP datagram at p, within [p, end) of the IP payload; the tunnel it carries, if any."""
    if end - p < UDP_HEADER:
        return _no_tunnel()
    sport = be16(buf, p)
    dport = be16(buf, p + 2)
    length = be16(buf, p + 4)
    if length < UDP_HEADER or length > end - p:
        return _no_tunnel()
    q = p + UDP_HEADER
    end = p + length
    if dport == VXLAN_PORT or sport == VXLAN_PORT:
        if end - q < VXLAN_HEADER or not buf[q] & 0x08 or buf[q + 7] != 0:
            return _no_tunnel()
        return _inner_ethernet(TUNNEL_VXLAN, buf, q + VXLAN_HEADER, end)
    if dport == GENEVE_PORT or sport == GENEVE_PORT:
        if end - q < GENEVE_HEADER or buf[q] >> 6 != 0:
            return _no_tunnel()
        header = GENEVE_HEADER + (buf[q] & 0x3F) * 4
        if end - q < header:
            return TUNNEL_GENEVE, Status.TUNNEL_INVALID, -1, 0, end
        protocol = be16(buf, q + 2)
        if protocol == ETHERTYPE_TEB:
            return _inner_ethernet(TUNNEL_GENEVE, buf, q + header, end)
        status, l3, version = _ethertype(buf, q + header, end, protocol)
        if status != Status.OK:
            return _no_tunnel()
        return TUNNEL_GENEVE, Status.OK, l3, version, end
    if sport == TEREDO_PORT or dport == TEREDO_PORT:
        return _teredo(buf, q, end)
    return _no_tunnel()


@njit(cache=True)
def inner_packet(buf, carrier_version, proto, upper, end):
    """The IP packet carried by an IP payload of protocol ``proto`` in [upper, end) of an IPv4 or
    IPv6 carrier: ``(kind, status, inner_l3, inner_version, inner_end)``. kind 0: not a tunnel of
    IP. status OK, or TUNNEL_INVALID for a broken tunnel header; ``inner_end`` where the
    carrier's payload ends."""
    if proto == PROTO_IPV4 and carrier_version == 6:  # IPv4 in IPv4: not decoded by Suricata 7
        return TUNNEL_IPV4_IN_IP, Status.OK, upper, 4, end
    if proto == PROTO_IPV6:
        return TUNNEL_IPV6_IN_IP, Status.OK, upper, 6, end
    if proto == PROTO_GRE:
        return _gre(buf, upper, end)
    if proto == PROTO_UDP:
        return _udp(buf, upper, end)
    return _no_tunnel()


@njit(cache=True, inline="always")
def may_carry_tunnel(buf, l3, version, end):
    """A cheap look at the IP header: False when the packet cannot be a tunnel (most packets),
    so that only candidates pay for a second decode of their IP header."""
    if version == 4:
        if end - l3 < 20:
            return False
        if be16(buf, l3 + 6) & 0x3FFF:
            return False  # a fragment: reassembly first
        proto = buf[l3 + 9]
        upper = l3 + (buf[l3] & 0x0F) * 4
    else:
        if end - l3 < IPV6_HEADER:
            return False
        proto = buf[l3 + 6]
        upper = l3 + IPV6_HEADER
        if proto == 0 or proto == 43 or proto == 51 or proto == 60:
            return True  # behind extension headers: decode to see
        if proto == IPV6_FRAGMENT_HEADER:
            return False
    if (proto == PROTO_IPV4 and version == 6) or proto == PROTO_IPV6 or proto == PROTO_GRE:
        return True
    if proto != PROTO_UDP or end - upper < 4:
        return False
    return _tunnel_port(be16(buf, upper)) or _tunnel_port(be16(buf, upper + 2))


@njit(cache=True, inline="always")
def _tunnel_port(port):
    return port == VXLAN_PORT or port == GENEVE_PORT or port == TEREDO_PORT


@njit(cache=True)
def _decode_ip(buf, l3, version, end, wire_end):
    if version == 4:
        return decode_ipv4(buf, l3, end, wire_end)
    return decode_ipv6(buf, l3, end, wire_end)


@njit(cache=True)
def follow_tunnels(buf, offset, caplen, wirelen, rows, l3_offset, ip_version):
    """``innermost`` for each of ``rows`` (decoded rows that may carry a tunnel): arrays of
    (l3, version, end, wire_end, depth, kind, invalid)."""
    n = rows.shape[0]
    l3 = np.empty(n, dtype=np.int64)
    version = np.empty(n, dtype=np.int64)
    end = np.empty(n, dtype=np.int64)
    wire_end = np.empty(n, dtype=np.int64)
    depth = np.zeros(n, dtype=np.uint8)
    kind = np.zeros(n, dtype=np.uint8)
    invalid = np.zeros(n, dtype=np.bool_)
    for k in range(n):
        i = rows[k]
        start = offset[i]
        frame_end = start + caplen[i]
        l3[k], version[k], end[k], wire_end[k], depth[k], kind[k], invalid[k] = innermost(
            buf,
            l3_offset[i],
            np.int64(ip_version[i]),
            frame_end,
            frame_wire_end(start, caplen[i], wirelen[i]),
        )
    return l3, version, end, wire_end, depth, kind, invalid


@njit(cache=True)
def innermost(buf, l3, version, end, wire_end):
    """Follow tunnels from the IP header at l3: ``(l3, version, end, wire_end, depth, kind,
    invalid)`` of the innermost IP packet whose header decodes (the outer one when none does),
    with ``end``/``wire_end`` bounding it as its carrier's payload did; ``invalid`` when a
    recognised tunnel's header or inner IP header was broken."""
    depth = 0
    kind = TUNNEL_NONE
    while depth < MAX_TUNNEL_DEPTH and may_carry_tunnel(buf, l3, version, end):
        ip = _decode_ip(buf, l3, version, end, wire_end)
        status = ip[0]
        upper = ip[2]
        claim_end = ip[3]
        avail_end = ip[4]
        if status >= FIRST_ERROR_CODE or ip[1] == 0 or upper < 0 or ip[5] != NOT_FRAGMENT:
            break
        inner_kind, inner_status, inner_l3, inner_version, inner_end = inner_packet(
            buf, version, ip[6], upper, avail_end
        )
        if inner_kind == TUNNEL_NONE:
            break
        if inner_status != Status.OK:
            return l3, version, end, wire_end, depth, kind, True
        # The inner packet ends with its carrier's payload. On the wire that was the outer IP
        # packet's claimed end, further than the bytes present only when the snap length cut
        # the frame (a UDP carrier is only followed when its whole datagram is present).
        inner_wire_end = inner_end
        if inner_end == avail_end:
            inner_wire_end = max(avail_end, min(claim_end, wire_end))
        inner = _decode_ip(buf, inner_l3, inner_version, inner_end, inner_wire_end)
        if inner[0] >= FIRST_ERROR_CODE or inner[1] == 0:
            return l3, version, end, wire_end, depth, kind, True
        l3 = inner_l3
        version = inner_version
        end = inner_end
        wire_end = inner_wire_end
        depth += 1
        if depth == 1:
            kind = inner_kind
    return l3, version, end, wire_end, depth, kind, False
