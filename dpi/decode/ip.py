"""IPv4 (options, fragments) and IPv6 (extension headers, fragment header, jumbograms).

Both decoders return one flat tuple (the kernel writes the columns; passing the output
arrays down here would cost reference-count traffic on every call):

``(status, ip_version, upper, claim_end, avail_end, fragment, proto, ttl,
src_hi, src_lo, dst_hi, dst_lo, frag_id, frag_offset, frag_more)``

- ``ip_version``: 4 or 6 once the fixed header was found good (its fields are then valid,
  even if a later extension header stops decoding), else 0;
- ``upper``: offset of the upper-layer header, or -1 when a header error stops decoding;
- ``claim_end``: where the IP header says the packet ends (may lie past the capture);
- ``avail_end``: where the bytes actually present end, ``min(claim_end, frame end)``:
  Ethernet padding past ``claim_end`` is never payload;
- ``status``: OK, or a condition that does not stop decoding (fragment, capture cut
  short, TSO length 0, length beyond the wire frame), or the error that stopped it;
- ``fragment``: NOT_FRAGMENT, FIRST_FRAGMENT or LATER_FRAGMENT (L4 not decoded).

``wire_end`` is where the frame ended on the wire (offset + wire length): an IP length
beyond the captured bytes but within ``wire_end`` is a snap-length cut, beyond it the
length field lies.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dpi.decode.status import Status
from dpi.decode.wire import be16, be32, be64

NOT_FRAGMENT = 0
FIRST_FRAGMENT = 1
LATER_FRAGMENT = 2

IPV4_MIN_HEADER = 20
IPV6_HEADER = 40
IPV4_MAPPED_PREFIX = np.uint64(0x0000FFFF00000000)

# IPv6 extension headers walked over; anything else is the upper layer (ESP 50 and
# no-next-header 59 included: nothing readable follows them).
HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
AUTH_HEADER = 51
DEST_OPTIONS = 60
MAX_IPV6_EXT_HEADERS = 8
JUMBO_OPTION = 0xC2
PAD1_OPTION = 0


@njit(cache=True, inline="always")
def length_status(status, claim_end, end, wire_end, too_long_status):
    """Fold the IP length's relation to the frame into ``status``."""
    if claim_end <= end:
        return status
    if claim_end > wire_end:
        return too_long_status
    return Status.CAPTURE_TRUNCATED


@njit(cache=True, inline="always")
def ip_failure(status):
    """The result tuple of a header that could not be decoded at all."""
    zero = np.int64(0)
    none = np.uint64(0)
    return status, zero, np.int64(-1), zero, zero, zero, zero, zero, none, none, none, none, zero, zero, zero


@njit(cache=True, inline="always")
def decode_ipv4(buf, p, end, wire_end):
    if end - p < 1:
        return ip_failure(Status.IPV4_TRUNCATED)
    first = buf[p]
    if first >> 4 != 4:
        return ip_failure(Status.IPV4_BAD_VERSION)
    header_len = np.int64(first & 0x0F) * 4
    if header_len < IPV4_MIN_HEADER:
        return ip_failure(Status.IPV4_BAD_IHL)
    if end - p < IPV4_MIN_HEADER:
        return ip_failure(Status.IPV4_TRUNCATED)
    total_len = be16(buf, p + 2)
    # a total length shorter than the header is a broken header whatever was captured
    if 0 < total_len < header_len:
        return ip_failure(Status.IPV4_BAD_TOTAL_LENGTH)
    if end - p < header_len:
        return ip_failure(Status.IPV4_OPTIONS_TRUNCATED)

    status = Status.OK
    if total_len == 0:
        # TCP segmentation offload hands the capture a super-segment before the NIC has
        # filled in the length; as Wireshark (and dpkt) do, take the length from the frame.
        total_len = wire_end - p
        status = Status.IPV4_TSO_ZERO_LENGTH
    claim_end = p + total_len
    status = length_status(status, claim_end, end, wire_end, Status.IPV4_LENGTH_EXCEEDS_FRAME)

    flags_offset = be16(buf, p + 6)
    more = (flags_offset >> 13) & 1
    frag_offset = (flags_offset & 0x1FFF) * 8
    fragment = NOT_FRAGMENT
    if frag_offset > 0:
        fragment = LATER_FRAGMENT
    elif more:
        fragment = FIRST_FRAGMENT
    if fragment != NOT_FRAGMENT and status != Status.IPV4_LENGTH_EXCEEDS_FRAME:
        status = Status.FRAGMENT

    src = IPV4_MAPPED_PREFIX | np.uint64(be32(buf, p + 12))
    dst = IPV4_MAPPED_PREFIX | np.uint64(be32(buf, p + 16))
    return (
        status,
        np.int64(4),
        p + header_len,
        claim_end,
        min(claim_end, end),
        np.int64(fragment),
        np.int64(buf[p + 9]),
        np.int64(buf[p + 8]),
        np.uint64(0),
        src,
        np.uint64(0),
        dst,
        be16(buf, p + 4),
        frag_offset,
        more,
    )


@njit(cache=True, inline="always")
def jumbo_payload_length(buf, p, options_end):
    """The Jumbo Payload option's value in a hop-by-hop header's options, or -1."""
    while p < options_end:
        option = buf[p]
        if option == PAD1_OPTION:
            p += 1
            continue
        if options_end - p < 2:
            return -1
        length = np.int64(buf[p + 1])
        if option == JUMBO_OPTION and length == 4 and options_end - p >= 6:
            return be32(buf, p + 2)
        p += 2 + length
    return -1


@njit(cache=True, inline="always")
def decode_ipv6(buf, p, end, wire_end):
    if end - p < 1:
        return ip_failure(Status.IPV6_TRUNCATED)
    if buf[p] >> 4 != 6:
        return ip_failure(Status.IPV6_BAD_VERSION)
    if end - p < IPV6_HEADER:
        return ip_failure(Status.IPV6_TRUNCATED)

    ttl = np.int64(buf[p + 7])
    src_hi = be64(buf, p + 8)
    src_lo = be64(buf, p + 16)
    dst_hi = be64(buf, p + 24)
    dst_lo = be64(buf, p + 32)
    payload_len = be16(buf, p + 4)
    next_header = np.int64(buf[p + 6])
    cur = p + IPV6_HEADER
    claim_end = cur + payload_len
    # payload length 0 with a hop-by-hop header may be a jumbogram (RFC 2675): the real
    # length is in the header's options, so bound that header by the capture alone.
    jumbo_possible = payload_len == 0 and next_header == HOP_BY_HOP

    status = Status.OK
    fragment = NOT_FRAGMENT
    frag_id = np.int64(0)
    frag_offset = np.int64(0)
    more = np.int64(0)
    headers = 0
    while (
        next_header == HOP_BY_HOP
        or next_header == ROUTING
        or next_header == DEST_OPTIONS
        or next_header == FRAGMENT
        or next_header == AUTH_HEADER
    ):
        if headers == MAX_IPV6_EXT_HEADERS:
            status = Status.IPV6_TOO_MANY_EXT
            break
        headers += 1
        limit = end if jumbo_possible else min(claim_end, end)
        if limit - cur < 8:  # every extension header is at least 8 bytes
            status = Status.IPV6_EXT_TRUNCATED
            break
        if next_header == FRAGMENT:
            ext_len = np.int64(8)
        elif next_header == AUTH_HEADER:
            ext_len = (np.int64(buf[cur + 1]) + 2) * 4
        else:
            ext_len = (np.int64(buf[cur + 1]) + 1) * 8
        if limit - cur < ext_len:
            status = Status.IPV6_EXT_TRUNCATED
            break
        if jumbo_possible:
            jumbo = jumbo_payload_length(buf, cur + 2, cur + ext_len)
            if jumbo >= 0:
                claim_end = p + IPV6_HEADER + jumbo  # counts the extension headers too
            jumbo_possible = False
            if claim_end - cur < ext_len:
                status = Status.IPV6_EXT_TRUNCATED
                break
        if next_header == FRAGMENT:
            field = be16(buf, cur + 2)
            frag_offset = field & 0xFFF8  # 13-bit offset in 8-byte units, already shifted
            more = field & 1
            frag_id = be32(buf, cur + 4)
            # offset 0 without M is an atomic fragment (RFC 6946): a whole packet
            if frag_offset > 0:
                fragment = LATER_FRAGMENT
            elif more:
                fragment = FIRST_FRAGMENT
        next_header = np.int64(buf[cur])
        cur += ext_len
        if fragment == LATER_FRAGMENT:
            break  # what follows is the middle of someone else's datagram

    upper = cur
    if status != Status.OK:
        upper = -1  # the fixed header's fields stand; the chain behind it does not
    else:
        status = length_status(status, claim_end, end, wire_end, Status.IPV6_LENGTH_EXCEEDS_FRAME)
        if fragment != NOT_FRAGMENT and status != Status.IPV6_LENGTH_EXCEEDS_FRAME:
            status = Status.FRAGMENT
    return (
        status,
        np.int64(6),
        upper,
        claim_end,
        min(claim_end, end),
        np.int64(fragment),
        next_header,
        ttl,
        src_hi,
        src_lo,
        dst_hi,
        dst_lo,
        frag_id,
        frag_offset,
        more,
    )
