"""Link layers: Ethernet (802.1Q/802.1ad/QinQ tags, MPLS), Linux SLL/SLL2, BSD loopback, raw IP.

:func:`decode_link` finds where the IP header starts. It returns
``(status, l3_offset, ip_version, vlan, vlan_outer)``: ``ip_version`` is 4 or 6 when the
link layer says which, and ``VERSION_FROM_NIBBLE`` when only the first nibble of the IP
header can tell (raw IP, MPLS has already looked). A non-OK status means stop here.
"""

from __future__ import annotations

from numba import njit

from dpi.decode.status import Status
from dpi.decode.wire import be16, be32, le32

# LINKTYPE_* values (https://www.tcpdump.org/linktypes.html); pcap's upper 6 bits carry FCS
# information and are masked off.
LINKTYPE_MASK = 0x03FFFFFF
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW as libpcap writes it on most systems
LINKTYPE_RAW_DLT14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_8021Q = 0x8100
ETHERTYPE_8021AD = 0x88A8
ETHERTYPE_QINQ_9100 = 0x9100  # pre-802.1ad vendor QinQ
ETHERTYPE_QINQ_9200 = 0x9200
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_MPLS_MULTICAST = 0x8848
ETHERTYPE_PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# Loopback address families: AF_INET is 2 everywhere; AF_INET6 differs by OS
# (24 NetBSD/OpenBSD, 28 FreeBSD/DragonFly, 30 macOS).
AF_INET = 2
AF_INET6_BSD = 24
AF_INET6_FREEBSD = 28
AF_INET6_DARWIN = 30

MAX_VLAN_TAGS = 4
MAX_MPLS_LABELS = 8

ETH_HEADER_LEN = 14
SLL_HEADER_LEN = 16
SLL2_HEADER_LEN = 20
LOOPBACK_HEADER_LEN = 4

VERSION_FROM_NIBBLE = 0


@njit(cache=True, inline="always")
def decode_link(buf, start, end, linktype):
    lt = linktype & LINKTYPE_MASK
    if lt == LINKTYPE_ETHERNET:
        if end - start < ETH_HEADER_LEN:
            return Status.ETH_TRUNCATED, -1, 0, 0, 0
        return decode_ethertype(buf, start + ETH_HEADER_LEN, end, be16(buf, start + 12))
    if lt == LINKTYPE_LINUX_SLL:
        if end - start < SLL_HEADER_LEN:
            return Status.SLL_TRUNCATED, -1, 0, 0, 0
        return decode_ethertype(buf, start + SLL_HEADER_LEN, end, be16(buf, start + 14))
    if lt == LINKTYPE_LINUX_SLL2:
        if end - start < SLL2_HEADER_LEN:
            return Status.SLL2_TRUNCATED, -1, 0, 0, 0
        return decode_ethertype(buf, start + SLL2_HEADER_LEN, end, be16(buf, start))
    if lt == LINKTYPE_RAW or lt == LINKTYPE_RAW_DLT12 or lt == LINKTYPE_RAW_DLT14:
        return Status.OK, start, VERSION_FROM_NIBBLE, 0, 0
    if lt == LINKTYPE_IPV4:
        return Status.OK, start, 4, 0, 0
    if lt == LINKTYPE_IPV6:
        return Status.OK, start, 6, 0, 0
    if lt == LINKTYPE_NULL or lt == LINKTYPE_LOOP:
        return decode_loopback(buf, start, end)
    return Status.UNSUPPORTED_LINKTYPE, -1, 0, 0, 0


@njit(cache=True, inline="always")
def decode_loopback(buf, start, end):
    """4-byte address family: host byte order for NULL, network order for LOOP; files move
    between machines, so both orders are accepted for both link types."""
    if end - start < LOOPBACK_HEADER_LEN:
        return Status.LOOPBACK_TRUNCATED, -1, 0, 0, 0
    big = be32(buf, start)
    little = le32(buf, start)
    l3 = start + LOOPBACK_HEADER_LEN
    for family in (big, little):
        if family == AF_INET:
            return Status.OK, l3, 4, 0, 0
        if family == AF_INET6_BSD or family == AF_INET6_FREEBSD or family == AF_INET6_DARWIN:
            return Status.OK, l3, 6, 0, 0
    return Status.NOT_IP, -1, 0, 0, 0


@njit(cache=True, inline="always")
def is_vlan_ethertype(ethertype):
    return (
        ethertype == ETHERTYPE_8021Q
        or ethertype == ETHERTYPE_8021AD
        or ethertype == ETHERTYPE_QINQ_9100
        or ethertype == ETHERTYPE_QINQ_9200
    )


@njit(cache=True, inline="always")
def decode_ethertype(buf, p, end, ethertype):
    """From an EtherType at ``p``: VLAN tags, then MPLS labels or IP."""
    vlan = 0
    vlan_outer = 0
    tags = 0
    while is_vlan_ethertype(ethertype):
        if tags == MAX_VLAN_TAGS:
            return Status.VLAN_TOO_MANY_TAGS, -1, 0, vlan, vlan_outer
        if end - p < 4:
            return Status.VLAN_TRUNCATED, -1, 0, vlan, vlan_outer
        vid = be16(buf, p) & 0x0FFF
        if tags == 0:
            vlan_outer = vid
        vlan = vid
        ethertype = be16(buf, p + 2)
        p += 4
        tags += 1
    if tags < 2:
        vlan_outer = 0  # a single tag is the innermost one

    if ethertype == ETHERTYPE_IPV4:
        return Status.OK, p, 4, vlan, vlan_outer
    if ethertype == ETHERTYPE_IPV6:
        return Status.OK, p, 6, vlan, vlan_outer
    if ethertype == ETHERTYPE_MPLS or ethertype == ETHERTYPE_MPLS_MULTICAST:
        return decode_mpls(buf, p, end, vlan, vlan_outer)
    if ethertype == ETHERTYPE_PPPOE_SESSION:
        return decode_pppoe_session(buf, p, end, vlan, vlan_outer)
    return Status.NOT_IP, -1, 0, vlan, vlan_outer


@njit(cache=True, inline="always")
def decode_pppoe_session(buf, p, end, vlan, vlan_outer):
    """PPPoE session header (6 bytes) and the PPP protocol field (2 bytes; PPPoE forbids
    protocol-field compression), then IPv4 or IPv6; other PPP protocols (LCP, IPCP, ...)
    carry no IP."""
    if end - p < 8:
        return Status.PPPOE_TRUNCATED, -1, 0, vlan, vlan_outer
    ppp_protocol = be16(buf, p + 6)
    if ppp_protocol == PPP_IPV4:
        return Status.OK, p + 8, 4, vlan, vlan_outer
    if ppp_protocol == PPP_IPV6:
        return Status.OK, p + 8, 6, vlan, vlan_outer
    return Status.NOT_IP, -1, 0, vlan, vlan_outer


@njit(cache=True, inline="always")
def decode_mpls(buf, p, end, vlan, vlan_outer):
    """Pop labels to the bottom of the stack; MPLS has no payload type, so the first nibble
    below the stack decides between IPv4 and IPv6."""
    labels = 0
    while True:
        if labels == MAX_MPLS_LABELS:
            return Status.MPLS_TOO_MANY_LABELS, -1, 0, vlan, vlan_outer
        if end - p < 4:
            return Status.MPLS_TRUNCATED, -1, 0, vlan, vlan_outer
        bottom_of_stack = buf[p + 2] & 1
        p += 4
        labels += 1
        if bottom_of_stack:
            break
    if p >= end:
        return Status.MPLS_TRUNCATED, -1, 0, vlan, vlan_outer
    nibble = buf[p] >> 4
    if nibble == 4:
        return Status.OK, p, 4, vlan, vlan_outer
    if nibble == 6:
        return Status.OK, p, 6, vlan, vlan_outer
    return Status.MPLS_UNKNOWN_PAYLOAD, -1, 0, vlan, vlan_outer
