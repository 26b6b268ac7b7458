"""Transport headers: TCP, UDP, ICMP, ICMPv6; any other protocol's payload is the IP payload.

:func:`decode_transport` returns the L4 fields with OK or the status that explains why
the header could not be used. ``claim_end`` is where the IP header says
the upper layer ends, ``avail_end`` where the captured bytes of it end (never past
``claim_end``). In a first fragment the L4 header may legitimately be cut by the fragment
boundary; that is reported as FRAGMENT (reassembly will decide), not as an error, and the
fragment's bytes from ``l4_offset`` on are its payload.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dpi.decode.status import Status
from dpi.decode.wire import be16, be32

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TCP_MIN_HEADER = 20
UDP_HEADER = 8
ICMP_HEADER = 8  # type, code, checksum and the 4-byte rest-of-header
UDP_MAX_LENGTH = 0xFFFF


@njit(cache=True, inline="always")
def transport_result(
    status, sport, dport, seq, ack, flags, icmp_type, icmp_code, payload_offset, payload_len
):
    """One flat tuple of fixed types, whichever protocol filled it."""
    return (
        status,
        np.int64(sport),
        np.int64(dport),
        np.int64(seq),
        np.int64(ack),
        np.int64(flags),
        np.int64(icmp_type),
        np.int64(icmp_code),
        np.int64(payload_offset),
        np.int64(payload_len),
    )


@njit(cache=True, inline="always")
def decode_transport(buf, l4, claim_end, avail_end, proto, first_fragment):
    """``(status, sport, dport, seq, ack, flags, icmp_type, icmp_code, payload_offset,
    payload_len)``; payload_len 0 and payload_offset 0 when there is none."""
    if proto == PROTO_TCP:
        result = decode_tcp(buf, l4, claim_end, avail_end, first_fragment)
    elif proto == PROTO_UDP:
        result = decode_udp(buf, l4, claim_end, avail_end, first_fragment)
    elif proto == PROTO_ICMP:
        result = decode_icmp(buf, l4, avail_end, first_fragment, Status.ICMP_TRUNCATED)
    elif proto == PROTO_ICMPV6:
        result = decode_icmp(buf, l4, avail_end, first_fragment, Status.ICMPV6_TRUNCATED)
    else:
        # GRE, ESP, SCTP, OSPF, tunnels, ...: no ports; the payload is the IP payload
        return transport_result(Status.OK, 0, 0, 0, 0, 0, 0, 0, l4, avail_end - l4)
    if result[0] == Status.FRAGMENT:
        # a first fragment too short for its L4 header: all of it is fragment data
        return transport_result(
            Status.FRAGMENT, result[1], result[2], result[3], result[4], result[5], 0, 0, l4, avail_end - l4
        )
    return result


@njit(cache=True, inline="always")
def decode_tcp(buf, l4, claim_end, avail_end, first_fragment):
    if avail_end - l4 < TCP_MIN_HEADER:
        status = Status.FRAGMENT if first_fragment else Status.TCP_TRUNCATED
        return transport_result(status, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sport = be16(buf, l4)
    dport = be16(buf, l4 + 2)
    seq = be32(buf, l4 + 4)
    ack = be32(buf, l4 + 8)
    flags = buf[l4 + 13]
    header_len = np.int64(buf[l4 + 12] >> 4) * 4
    status = Status.OK
    if header_len < TCP_MIN_HEADER:
        status = Status.TCP_BAD_OFFSET
    elif header_len > claim_end - l4:
        status = Status.FRAGMENT if first_fragment else Status.TCP_BAD_OFFSET
    elif header_len > avail_end - l4:
        status = Status.FRAGMENT if first_fragment else Status.TCP_OPTIONS_TRUNCATED
    if status != Status.OK:
        return transport_result(status, sport, dport, seq, ack, flags, 0, 0, 0, 0)
    return transport_result(
        status, sport, dport, seq, ack, flags, 0, 0, l4 + header_len, avail_end - l4 - header_len
    )


@njit(cache=True, inline="always")
def decode_udp(buf, l4, claim_end, avail_end, first_fragment):
    if avail_end - l4 < UDP_HEADER:
        status = Status.FRAGMENT if first_fragment else Status.UDP_TRUNCATED
        return transport_result(status, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    sport = be16(buf, l4)
    dport = be16(buf, l4 + 2)
    udp_len = be16(buf, l4 + 4)
    claimed = claim_end - l4
    if udp_len == 0 and claimed > UDP_MAX_LENGTH:
        udp_len = claimed  # RFC 2675: UDP in a jumbogram carries length 0
    if first_fragment:
        # the UDP length covers the reassembled datagram; this fragment's share ends with it
        udp_end = avail_end
    else:
        udp_end = min(l4 + udp_len, avail_end)
    if udp_len < UDP_HEADER or (udp_len > claimed and not first_fragment):
        return transport_result(Status.UDP_BAD_LENGTH, sport, dport, 0, 0, 0, 0, 0, 0, 0)
    return transport_result(
        Status.OK, sport, dport, 0, 0, 0, 0, 0, l4 + UDP_HEADER, udp_end - l4 - UDP_HEADER
    )


@njit(cache=True, inline="always")
def decode_icmp(buf, l4, avail_end, first_fragment, truncated_status):
    if avail_end - l4 < ICMP_HEADER:
        status = Status.FRAGMENT if first_fragment else truncated_status
        return transport_result(status, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return transport_result(
        Status.OK, 0, 0, 0, 0, 0, buf[l4], buf[l4 + 1], l4 + ICMP_HEADER, avail_end - l4 - ICMP_HEADER
    )
