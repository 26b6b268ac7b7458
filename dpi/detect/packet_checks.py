"""Header keyword checks of every rule, packed into flat arrays, and the Numba kernel that
runs one rule's checks on one decoded packet.

Fields the decoder keeps as columns (ttl, protocol, TCP seq/ack/flags, ICMP type/code,
fragment fields, addresses) are read from them; the others (IPv4 TOS, DF and reserved
bits, options, TCP window, ICMP id/sequence) from the capture buffer at the packet's
L3/L4 offsets. Each buffer read is bounded by what the decoder established: the IPv4
header must end exactly where the decoder put the next layer, and a transport field
must lie before the packet's payload offset (which the decoder sets only after it has
seen the whole transport header). A packet that lacks the header a keyword reads does
not match it, as in Suricata: tos, id, fragbits and ipopts need IPv4; the TCP keywords
a decoded TCP header; the ICMP keywords an ICMP (v4 over IPv4, v6 over IPv6) header.
A fragment's transport header is not inspected (Suricata inspects the reassembled
packet instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from dpi.rules.header_keywords import (
    FRAG_DF,
    FRAG_MF,
    FRAG_RB,
    IPOPT_CIPSO,
    IPOPT_EOL,
    IPOPT_ESEC,
    IPOPT_LSRR,
    IPOPT_NOP,
    IPOPT_QS,
    IPOPT_RR,
    IPOPT_RTRALT,
    IPOPT_SATID,
    IPOPT_SEC,
    IPOPT_SSRR,
    IPOPT_TS,
    KIND_ACK,
    KIND_DSIZE,
    KIND_FLAGS,
    KIND_FRAGBITS,
    KIND_FRAGOFFSET,
    KIND_ICMP_ID,
    KIND_ICMP_SEQ,
    KIND_ICODE,
    KIND_ID,
    KIND_IP_PROTO,
    KIND_IPOPTS,
    KIND_ITYPE,
    KIND_SAMEIP,
    KIND_SEQ,
    KIND_TOS,
    KIND_TTL,
    KIND_WINDOW,
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
    HeaderCheck,
)

PROTO_ICMP, PROTO_TCP, PROTO_ICMPV6 = 1, 6, 58
IPV4_MIN_HEADER = 20
TCP_MIN_HEADER = 20
ICMP_HEADER = 8

# IPv4 option type -> bit recorded by the option walk (types not listed record nothing)
_IPOPT_BIT_BY_TYPE = np.zeros(256, dtype=np.int64)
for _type, _bit in (
    (0x00, IPOPT_EOL),
    (0x01, IPOPT_NOP),
    (0x07, IPOPT_RR),
    (0x19, IPOPT_QS),
    (0x44, IPOPT_TS),
    (0x82, IPOPT_SEC),
    (0x83, IPOPT_LSRR),
    (0x85, IPOPT_ESEC),
    (0x86, IPOPT_CIPSO),
    (0x88, IPOPT_SATID),
    (0x89, IPOPT_SSRR),
    (0x94, IPOPT_RTRALT),
):
    _IPOPT_BIT_BY_TYPE[_type] = _bit
IPOPT_BIT_BY_TYPE = _IPOPT_BIT_BY_TYPE  # read-only global: Numba freezes it into the kernel

# ICMP types whose header carries an identifier and a sequence number (as Suricata lists them)
_ICMPV4_ID_TYPES = (0, 8, 13, 14, 15, 16, 17, 18)
_ICMPV6_ID_TYPES = (128, 129)


@dataclass
class PacketChecks:
    """All rules' checks packed flat: rule r's checks are ``[start[r], start[r + 1])``."""

    start: np.ndarray  # int64 (n_rules + 1,)
    kind: np.ndarray  # int64, KIND_*
    op: np.ndarray  # int64, OP_*
    a: np.ndarray  # int64
    b: np.ndarray  # int64
    mask: np.ndarray  # int64


def pack_checks(per_rule: list[list[HeaderCheck]]) -> PacketChecks:
    """Pack each rule's list of checks (possibly empty) into :class:`PacketChecks`."""
    counts = np.array([len(checks) for checks in per_rule], dtype=np.int64)
    start = np.zeros(len(per_rule) + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    flat = [check for checks in per_rule for check in checks]

    def column(attribute: str) -> np.ndarray:
        return np.array([getattr(check, attribute) for check in flat], dtype=np.int64)

    return PacketChecks(start, column("kind"), column("op"), column("a"), column("b"), column("mask"))


# -- comparisons ---------------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _compare(value, op, a, b):
    if op == OP_EQ:
        return value == a
    if op == OP_NE:
        return value != a
    if op == OP_LT:
        return value < a
    if op == OP_LE:
        return value <= a
    if op == OP_GT:
        return value > a
    if op == OP_GE:
        return value >= a
    if op == OP_RANGE:
        return a < value < b
    if op == OP_NOT_RANGE:
        return value <= a or value >= b
    return False


@nb.njit(cache=True, inline="always")
def _tcp_flags_match(packet_flags, op, wanted, ignored):
    # as Suricata: flags:0 on a packet with any flag set matches only under '!'
    if wanted == 0 and packet_flags != 0:
        return op == OP_BITS_NOT
    flags = packet_flags & ~ignored & 0xFF
    return _bits_match(flags, op, wanted)


@nb.njit(cache=True, inline="always")
def _bits_match(bits, op, wanted):
    if op == OP_BITS_ANY:
        return (bits & wanted) != 0
    if op == OP_BITS_ALL:
        return (bits & wanted) == wanted
    if op == OP_BITS_NOT:
        return (bits & wanted) != wanted
    if op == OP_BITS_EXACT:
        return bits == wanted
    return False


# -- header locations ----------------------------------------------------------------------------


@nb.njit(cache=True, inline="always")
def _ipv4_header_end(buf, ip_version, l3, l4, payload_offset):
    """End of the IPv4 header (options included), or -1 when it cannot be trusted: the
    header length must agree with where the decoder put the next layer."""
    if ip_version != 4 or l3 < 0 or l3 >= buf.shape[0]:
        return -1
    header_len = np.int64(buf[l3] & 0x0F) * 4
    if header_len < IPV4_MIN_HEADER:
        return -1
    end = l3 + header_len
    upper = l4 if l4 >= 0 else payload_offset
    if end != upper or end > buf.shape[0]:
        return -1
    return end


@nb.njit(cache=True, inline="always")
def _ipv4_options(buf, l3, end):
    """Bit set of the options in buf[l3 + 20:end]; -1 when their lengths are malformed
    (Suricata drops such a packet as invalid, so no ipopts check matches it)."""
    found = np.int64(0)
    pos = l3 + IPV4_MIN_HEADER
    while pos < end:
        option = buf[pos]
        if option == 0x00:  # end of list
            found |= IPOPT_BIT_BY_TYPE[0]
            break
        if option == 0x01:  # no-op, one byte
            found |= IPOPT_BIT_BY_TYPE[1]
            pos += 1
            continue
        if end - pos < 2:
            break  # a lone type byte at the end: padding, as Suricata reads it
        length = np.int64(buf[pos + 1])
        if length < 2 or length > end - pos:
            return np.int64(-1)
        found |= IPOPT_BIT_BY_TYPE[option]
        pos += length
    return found


@nb.njit(cache=True, inline="always")
def _transport_ok(buf, l4, payload_offset, is_fragment, header_len):
    """The decoder saw at least ``header_len`` bytes of transport header at ``l4``."""
    return (
        is_fragment == 0 and l4 >= 0 and payload_offset - l4 >= header_len and payload_offset <= buf.shape[0]
    )


@nb.njit(cache=True, inline="always")
def _be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@nb.njit(cache=True, inline="always")
def _is_icmp(ip_version, proto):
    return (ip_version == 4 and proto == PROTO_ICMP) or (ip_version == 6 and proto == PROTO_ICMPV6)


@nb.njit(cache=True, inline="always")
def _icmp_has_id(ip_version, icmp_type):
    if ip_version == 4:
        for t in _ICMPV4_ID_TYPES:
            if icmp_type == t:
                return True
        return False
    for t in _ICMPV6_ID_TYPES:
        if icmp_type == t:
            return True
    return False


# -- the kernel ----------------------------------------------------------------------------------


@nb.njit(cache=True)
def packet_checks_ok(
    r,
    start,
    kind,
    op,
    a,
    b,
    mask,
    i,
    buf,
    ip_version,
    l3_offset,
    l4_offset,
    proto,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    tcp_seq,
    tcp_ack,
    tcp_flags,
    icmp_type,
    icmp_code,
    ttl,
    frag_offset,
    frag_more,
    frag_id,
    is_fragment,
    payload_offset,
):
    """True when packet ``i`` passes every check of rule ``r`` (a rule with none passes)."""
    version = np.int64(ip_version[i])
    l3 = np.int64(l3_offset[i])
    l4 = np.int64(l4_offset[i])
    protocol = np.int64(proto[i])
    fragment = np.int64(is_fragment[i])
    payload = np.int64(payload_offset[i])
    for k in range(start[r], start[r + 1]):
        what = kind[k]
        how = op[k]
        if what == KIND_TTL:
            if version != 4 and version != 6:
                return False
            if not _compare(np.int64(ttl[i]), how, a[k], b[k]):
                return False
        elif what == KIND_IP_PROTO:
            if version != 4 and version != 6:
                return False
            if not _compare(protocol, how, a[k], b[k]):
                return False
        elif what == KIND_SAMEIP:
            if version != 4 and version != 6:
                return False
            if src_hi[i] != dst_hi[i] or src_lo[i] != dst_lo[i]:
                return False
        elif what == KIND_FRAGOFFSET:
            if version == 4:
                value = np.int64(frag_offset[i]) // 8  # the header field counts 8-byte units
            elif version == 6 and (fragment != 0 or frag_id[i] != 0):
                value = np.int64(frag_offset[i])  # Suricata keeps the IPv6 field masked, in bytes
            else:
                return False  # IPv6 without a fragment header, or not IP
            if not _compare(value, how, a[k], b[k]):
                return False
        elif what == KIND_ID:
            if version != 4 or not _compare(np.int64(frag_id[i]), how, a[k], b[k]):
                return False
        elif what == KIND_TOS or what == KIND_FRAGBITS or what == KIND_IPOPTS:
            end = _ipv4_header_end(buf, version, l3, l4, payload)
            if end < 0:
                return False
            if what == KIND_TOS:
                if not _compare(np.int64(buf[l3 + 1]), how, a[k], b[k]):
                    return False
            elif what == KIND_FRAGBITS:
                flags_byte = buf[l3 + 6]
                bits = np.int64(0)
                if frag_more[i] != 0:
                    bits |= FRAG_MF
                if flags_byte & 0x40:
                    bits |= FRAG_DF
                if flags_byte & 0x80:
                    bits |= FRAG_RB
                if how == OP_BITS_ALL:
                    # Suricata's '+' wants the named bits and at least one more
                    if (bits & a[k]) != a[k] or bits == a[k]:
                        return False
                elif not _bits_match(bits, how, a[k]):
                    return False
            else:
                options = _ipv4_options(buf, l3, end)
                if options < 0 or (options & a[k]) == 0:
                    return False
        elif what == KIND_FLAGS or what == KIND_SEQ or what == KIND_ACK or what == KIND_WINDOW:
            if protocol != PROTO_TCP or not _transport_ok(buf, l4, payload, fragment, TCP_MIN_HEADER):
                return False
            if what == KIND_FLAGS:
                if not _tcp_flags_match(np.int64(tcp_flags[i]), how, a[k], mask[k]):
                    return False
            elif what == KIND_SEQ:
                if not _compare(np.int64(tcp_seq[i]), how, a[k], b[k]):
                    return False
            elif what == KIND_ACK:
                if not _compare(np.int64(tcp_ack[i]), how, a[k], b[k]):
                    return False
            elif not _compare(_be16(buf, l4 + 14), how, a[k], b[k]):
                return False
        elif what == KIND_ITYPE or what == KIND_ICODE or what == KIND_ICMP_ID or what == KIND_ICMP_SEQ:
            if not _is_icmp(version, protocol) or not _transport_ok(buf, l4, payload, fragment, ICMP_HEADER):
                return False
            if what == KIND_ITYPE:
                if not _compare(np.int64(icmp_type[i]), how, a[k], b[k]):
                    return False
            elif what == KIND_ICODE:
                if not _compare(np.int64(icmp_code[i]), how, a[k], b[k]):
                    return False
            else:
                if not _icmp_has_id(version, np.int64(icmp_type[i])):
                    return False
                field = l4 + 4 if what == KIND_ICMP_ID else l4 + 6
                if not _compare(_be16(buf, field), how, a[k], b[k]):
                    return False
        else:
            return False  # a kind this kernel does not know (dsize has its own kernel)
    return True


@nb.njit(cache=True)
def dsize_ok(r, start, kind, op, a, b, mask, payload_len):
    """True when ``payload_len`` passes rule ``r``'s dsize checks (a rule with none passes)."""
    for k in range(start[r], start[r + 1]):
        if kind[k] != KIND_DSIZE or not _compare(np.int64(payload_len), op[k], a[k], b[k]):
            return False
    return True
