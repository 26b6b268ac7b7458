"""Packet header rule keywords (ttl, tos, ipopts, fragbits, fragoffset, id, flags, seq, ack,
window, itype, icode, icmp_id, icmp_seq, ip_proto, sameip, dsize): their values parsed into
flat :class:`HeaderCheck` records, which :mod:`dpi.detect.packet_checks` packs into arrays
and checks per packet in a Numba kernel.

The syntax follows Suricata 7, keyword by keyword, because each keyword there has its own
parser:

- ttl, itype, icode, dsize use Suricata's unsigned-integer syntax: ``N``, ``=N``, ``<N``,
  ``>N``, ``<=N``, ``>=N``, ``!N`` / ``!=N``, and ranges ``N-M`` / ``N<>M`` whose bounds are
  *exclusive* (``5<>10`` matches 6..9). Numbers are decimal or ``0x`` hex. A comparison
  that could never match, or always would (``<0``, ``>255`` on a byte, ``5-6``), is an
  error, as it is in Suricata. ``!N-M`` (outside the range) is accepted too.
- tos: ``[!]N`` with N decimal, ``xNN`` hex (Suricata's form) or ``0xNN``.
- window: ``[!]N``; id, seq, ack: ``N``; icmp_id, icmp_seq, id: ``N`` or ``"N"``.
- fragoffset: ``[<|>|!]N``. The IPv4 offset is compared in 8-byte units (the header
  field); the IPv6 one in bytes, as Suricata does (it keeps the masked field there).
- flags / tcp.flags: letters ``F S R P A U C E`` (``1``/``2`` are the old names of C/E,
  ``0`` means no flag), one modifier ``+`` (all of these, others allowed), ``*`` (any of
  these), ``!`` (not all of these), none = exactly these; ``,MASK`` lists flags to ignore.
- fragbits: ``[+*!]`` and letters ``M D R``; ``+`` needs the bits *and at least one other*,
  as Suricata's code has it.
- ipopts: one of rr eol nop ts sec esec lsrr ssrr satid any.
- ip_proto: ``[!<>]`` and a number or a protocol name (tcp, udp, icmp, ipv6-icmp, ...).
- sameip: no value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# -- kinds: which header field a check reads -----------------------------------------------------

KIND_TTL = 1
KIND_TOS = 2
KIND_IPOPTS = 3
KIND_FRAGBITS = 4
KIND_FRAGOFFSET = 5
KIND_ID = 6
KIND_FLAGS = 7
KIND_SEQ = 8
KIND_ACK = 9
KIND_WINDOW = 10
KIND_ITYPE = 11
KIND_ICODE = 12
KIND_ICMP_ID = 13
KIND_ICMP_SEQ = 14
KIND_IP_PROTO = 15
KIND_SAMEIP = 16
KIND_DSIZE = 17

# -- ops: how the field is compared with a (and b) -----------------------------------------------

OP_EQ = 0
OP_NE = 1
OP_LT = 2
OP_LE = 3
OP_GT = 4
OP_GE = 5
OP_RANGE = 6  # a < value < b
OP_NOT_RANGE = 7  # value <= a or value >= b
# bit sets (flags, fragbits): a = the bits named, mask = bits to ignore (flags only)
OP_BITS_EXACT = 8
OP_BITS_ALL = 9  # '+'
OP_BITS_ANY = 10  # '*'
OP_BITS_NOT = 11  # '!'
OP_IPOPT = 12  # ipopts: a = the option bits of which any must be present

# -- bit values ----------------------------------------------------------------------------------

# TCP flags as they sit in the header byte (DecodedBatch.tcp_flags)
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = (1 << k for k in range(8))
# fragbits
FRAG_MF, FRAG_DF, FRAG_RB = 1, 2, 4
# ipopts: one bit per option type recorded by the kernel's walk over the IPv4 options
IPOPT_EOL = 1 << 0
IPOPT_NOP = 1 << 1
IPOPT_RR = 1 << 2
IPOPT_TS = 1 << 3
IPOPT_SEC = 1 << 4
IPOPT_ESEC = 1 << 5
IPOPT_LSRR = 1 << 6
IPOPT_SSRR = 1 << 7
IPOPT_SATID = 1 << 8
IPOPT_QS = 1 << 9  # recorded for 'any' (Suricata decodes these three as well)
IPOPT_CIPSO = 1 << 10
IPOPT_RTRALT = 1 << 11
IPOPT_ANY = (1 << 12) - 1

IPOPT_NAMES = {
    "rr": IPOPT_RR,
    "eol": IPOPT_EOL,
    "nop": IPOPT_NOP,
    "ts": IPOPT_TS,
    "sec": IPOPT_SEC,
    "esec": IPOPT_ESEC,
    "lsrr": IPOPT_LSRR,
    "ssrr": IPOPT_SSRR,
    "satid": IPOPT_SATID,
    "any": IPOPT_ANY,
}

_TCP_FLAG_LETTERS = {
    "F": TCP_FIN,
    "S": TCP_SYN,
    "R": TCP_RST,
    "P": TCP_PSH,
    "A": TCP_ACK,
    "U": TCP_URG,
    "C": TCP_CWR,
    "E": TCP_ECE,
    "1": TCP_CWR,
    "2": TCP_ECE,
}
_FRAGBIT_LETTERS = {"M": FRAG_MF, "D": FRAG_DF, "R": FRAG_RB}
_MODIFIER_OPS = {"+": OP_BITS_ALL, "*": OP_BITS_ANY, "!": OP_BITS_NOT}

# IANA protocol keywords (as /etc/protocols spells them), matched without regard to case
IP_PROTOCOL_NAMES = {
    "hopopt": 0,
    "ip": 0,
    "icmp": 1,
    "igmp": 2,
    "ggp": 3,
    "ipencap": 4,
    "ipv4": 4,
    "st": 5,
    "tcp": 6,
    "egp": 8,
    "igp": 9,
    "pup": 12,
    "udp": 17,
    "hmp": 20,
    "xns-idp": 22,
    "rdp": 27,
    "iso-tp4": 29,
    "dccp": 33,
    "xtp": 36,
    "ddp": 37,
    "idpr-cmtp": 38,
    "ipv6": 41,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "idrp": 45,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "skip": 57,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "rspf": 73,
    "vmtp": 81,
    "eigrp": 88,
    "ospf": 89,
    "ospfigp": 89,
    "ax.25": 93,
    "ipip": 94,
    "etherip": 97,
    "encap": 98,
    "pim": 103,
    "ipcomp": 108,
    "vrrp": 112,
    "l2tp": 115,
    "isis": 124,
    "sctp": 132,
    "fc": 133,
    "mobility-header": 135,
    "udplite": 136,
    "mpls-in-ip": 137,
    "manet": 138,
    "hip": 139,
    "shim6": 140,
    "wesp": 141,
    "rohc": 142,
    "ethernet": 143,
}

U8_MAX, U16_MAX, U32_MAX = 0xFF, 0xFFFF, 0xFFFFFFFF


class HeaderKeywordError(ValueError):
    """A header keyword's value is invalid; ``index`` is an offset into the value string."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.message = message
        self.index = index


@dataclass(frozen=True, slots=True)
class HeaderCheck:
    """One header comparison: ``kind`` (KIND_*) names the field, ``op`` (OP_*) the test."""

    keyword: str
    kind: int
    op: int
    a: int
    b: int = 0
    mask: int = 0


# -- the unsigned-integer syntax (ttl, itype, icode, dsize) -------------------------------------

_NUMBER = r"(0x[0-9a-fA-F]+|[0-9]+)"
_UINT_RANGE = re.compile(rf"\s*(!?)\s*{_NUMBER}\s*(-|<>)\s*{_NUMBER}\s*\Z")
_UINT_SYMBOL = re.compile(rf"\s*(>=|<=|!=|>|<|!|=)?\s*{_NUMBER}\s*\Z")
_SYMBOL_OPS = {
    None: OP_EQ,
    "=": OP_EQ,
    "!": OP_NE,
    "!=": OP_NE,
    "<": OP_LT,
    "<=": OP_LE,
    ">": OP_GT,
    ">=": OP_GE,
}


def _number(text: str) -> int:
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text)


def _first_non_space(value: str) -> int:
    return len(value) - len(value.lstrip())


def _parse_uint(name: str, kind: int, value: str, maximum: int) -> HeaderCheck:
    m = _UINT_RANGE.match(value)
    if m:
        low, high = _number(m.group(2)), _number(m.group(4))
        for group, number in ((2, low), (4, high)):
            if number > maximum:
                raise HeaderKeywordError(f"{name}: {number} is out of range (0 to {maximum})", m.start(group))
        if high <= low + 1:
            raise HeaderKeywordError(
                f"{name}: the range {low}-{high} is empty (bounds are exclusive: {low}<>{high} "
                f"matches values strictly between them)",
                m.start(2),
            )
        return HeaderCheck(name, kind, OP_NOT_RANGE if m.group(1) else OP_RANGE, low, high)
    m = _UINT_SYMBOL.match(value)
    if not m:
        raise HeaderKeywordError(
            f"{name}: expected N, <N, >N, <=N, >=N, !N or N-M (exclusive range), got '{value}'",
            _first_non_space(value),
        )
    op = _SYMBOL_OPS[m.group(1)]
    number = _number(m.group(2))
    if number > maximum:
        raise HeaderKeywordError(f"{name}: {number} is out of range (0 to {maximum})", m.start(2))
    never = (op == OP_LT and number == 0) or (op == OP_GT and number == maximum)
    always = (op == OP_LE and number == maximum) or (op == OP_GE and number == 0)
    if never or always:
        what = "can never match" if never else "always matches"
        raise HeaderKeywordError(f"{name}: '{value.strip()}' {what}", m.start(1))
    return HeaderCheck(name, kind, op, number)


# -- the keywords with a syntax of their own ----------------------------------------------------

_TOS = re.compile(r"\s*(!?)\s*(?:([xX]|0[xX])([0-9a-fA-F]{1,2})|([0-9]{1,3}))\s*\Z")
_WINDOW = re.compile(r"\s*(!?)\s*([0-9]{1,9})\s*\Z")
_PLAIN = re.compile(r"\s*([0-9]+)\s*\Z")
_QUOTED = re.compile(r'\s*(?:"\s*([0-9]+)\s*"|([0-9]+))\s*\Z')
_FRAGOFFSET = re.compile(r"\s*([<>!]?)\s*([0-9]+)\s*\Z")
_IP_PROTO = re.compile(r"\s*([!<>]?)\s*(\S+)\s*\Z")
_FRAGBITS = re.compile(r"\s*([+*!]?)\s*([A-Za-z]+)\s*\Z")
_FLAGS = re.compile(r"\s*([+*!]?)\s*([^,\s]*)\s*(?:,\s*([^,\s]*)\s*)?\Z")


def _parse_tos(name: str, value: str) -> HeaderCheck:
    m = _TOS.match(value)
    if not m:
        raise HeaderKeywordError(
            f"{name}: expected [!]N with N from 0 to 255 (decimal, or hex as xNN), got '{value}'",
            _first_non_space(value),
        )
    tos = int(m.group(3), 16) if m.group(3) else int(m.group(4))
    if tos > U8_MAX:
        raise HeaderKeywordError(f"{name}: {tos} is out of range (0 to 255)", m.start(4))
    return HeaderCheck(name, KIND_TOS, OP_NE if m.group(1) else OP_EQ, tos)


def _parse_equal(
    name: str, kind: int, value: str, pattern: re.Pattern, maximum: int, form: str
) -> HeaderCheck:
    m = pattern.match(value)
    if not m:
        raise HeaderKeywordError(f"{name}: expected {form}, got '{value}'", _first_non_space(value))
    group = 1 if m.group(1) is not None else 2
    number = int(m.group(group))
    if number > maximum:
        raise HeaderKeywordError(f"{name}: {number} is out of range (0 to {maximum})", m.start(group))
    return HeaderCheck(name, kind, OP_EQ, number)


def _parse_window(name: str, value: str) -> HeaderCheck:
    m = _WINDOW.match(value)
    if not m:
        raise HeaderKeywordError(f"{name}: expected [!]N, got '{value}'", _first_non_space(value))
    size = int(m.group(2))
    if size > U16_MAX:
        raise HeaderKeywordError(f"{name}: {size} is out of range (0 to 65535)", m.start(2))
    return HeaderCheck(name, KIND_WINDOW, OP_NE if m.group(1) else OP_EQ, size)


def _parse_fragoffset(name: str, value: str) -> HeaderCheck:
    m = _FRAGOFFSET.match(value)
    if not m:
        raise HeaderKeywordError(f"{name}: expected [<|>|!]N, got '{value}'", _first_non_space(value))
    offset = int(m.group(2))
    if offset > U16_MAX:
        raise HeaderKeywordError(f"{name}: {offset} is out of range (0 to 65535)", m.start(2))
    op = {"": OP_EQ, "<": OP_LT, ">": OP_GT, "!": OP_NE}[m.group(1)]
    return HeaderCheck(name, KIND_FRAGOFFSET, op, offset)


def _parse_ip_proto(name: str, value: str) -> HeaderCheck:
    m = _IP_PROTO.match(value)
    if not m:
        raise HeaderKeywordError(
            f"{name}: expected [!<>] and a protocol number or name, got '{value}'", _first_non_space(value)
        )
    token = m.group(2)
    if token.isdigit():
        number = int(token)
        if number > U8_MAX:
            raise HeaderKeywordError(f"{name}: {number} is out of range (0 to 255)", m.start(2))
    elif token.lower() in IP_PROTOCOL_NAMES:
        number = IP_PROTOCOL_NAMES[token.lower()]
    else:
        raise HeaderKeywordError(f"{name}: unknown protocol '{token}'", m.start(2))
    op = {"": OP_EQ, "!": OP_NE, "<": OP_LT, ">": OP_GT}[m.group(1)]
    if (op == OP_LT and number == 0) or (op == OP_GT and number == U8_MAX):
        raise HeaderKeywordError(f"{name}: '{value.strip()}' can never match", m.start(1))
    return HeaderCheck(name, KIND_IP_PROTO, op, number)


def _parse_ipopts(name: str, value: str) -> HeaderCheck:
    option = value.strip().lower()
    if option not in IPOPT_NAMES:
        raise HeaderKeywordError(
            f"{name}: unknown IP option '{value.strip()}' (one of {', '.join(IPOPT_NAMES)})",
            _first_non_space(value),
        )
    return HeaderCheck(name, KIND_IPOPTS, OP_IPOPT, IPOPT_NAMES[option])


def _parse_fragbits(name: str, value: str) -> HeaderCheck:
    m = _FRAGBITS.match(value)
    if not m:
        raise HeaderKeywordError(f"{name}: expected [+*!] and the letters M, D, R, got '{value}'", 0)
    bits = 0
    for k, letter in enumerate(m.group(2)):
        if letter not in _FRAGBIT_LETTERS:
            raise HeaderKeywordError(f"{name}: unknown fragment bit '{letter}' (M, D, R)", m.start(2) + k)
        bits |= _FRAGBIT_LETTERS[letter]
    return HeaderCheck(name, KIND_FRAGBITS, _MODIFIER_OPS.get(m.group(1), OP_BITS_EXACT), bits)


def _parse_flags(name: str, value: str) -> HeaderCheck:
    m = _FLAGS.match(value)
    if not m or not (m.group(1) or m.group(2)):
        raise HeaderKeywordError(
            f"{name}: expected [+*!] and flag letters (F S R P A U C E, 0 for none), then optionally ','"
            " and the flags to ignore",
            _first_non_space(value),
        )
    op = _MODIFIER_OPS.get(m.group(1), OP_BITS_EXACT)
    modifier_seen = bool(m.group(1))
    flags = 0
    letters = 0
    for k, char in enumerate(m.group(2)):
        if char in _MODIFIER_OPS:  # Suricata also takes the modifier after the letters ('SA+')
            if modifier_seen:
                raise HeaderKeywordError(f"{name}: only one modifier (+, * or !) is allowed", m.start(2) + k)
            modifier_seen = True
            op = _MODIFIER_OPS[char]
        elif char == "0":
            flags = 0  # '0' means no flags (Suricata resets whatever came before it)
            letters += 1
        elif char in _TCP_FLAG_LETTERS:
            flags |= _TCP_FLAG_LETTERS[char]
            letters += 1
        else:
            raise HeaderKeywordError(
                f"{name}: unknown TCP flag '{char}' (F S R P A U C E, 1 2 for C E, 0 for none)",
                m.start(2) + k,
            )
    if not letters:
        raise HeaderKeywordError(f"{name}: no flags given", max(m.start(2), _first_non_space(value)))
    ignored = 0
    if m.group(3) is not None:
        if not m.group(3):
            raise HeaderKeywordError(f"{name}: no flags to ignore after ','", m.end(2))
        for k, char in enumerate(m.group(3)):
            if char not in _TCP_FLAG_LETTERS:
                raise HeaderKeywordError(
                    f"{name}: unknown TCP flag '{char}' in the ignore mask", m.start(3) + k
                )
            ignored |= _TCP_FLAG_LETTERS[char]
    return HeaderCheck(name, KIND_FLAGS, op, flags, 0, ignored)


# -- entry point ---------------------------------------------------------------------------------

_UINT_KEYWORDS = {
    "ttl": (KIND_TTL, U8_MAX),
    "itype": (KIND_ITYPE, U8_MAX),
    "icode": (KIND_ICODE, U8_MAX),
    "dsize": (KIND_DSIZE, U16_MAX),
}

HEADER_KEYWORDS: frozenset[str] = frozenset(
    {
        "ttl",
        "tos",
        "ipopts",
        "fragbits",
        "fragoffset",
        "id",
        "flags",
        "tcp.flags",
        "seq",
        "ack",
        "window",
        "itype",
        "icode",
        "icmp_id",
        "icmp_seq",
        "ip_proto",
        "sameip",
        "dsize",
    }
)


def parse_header_keyword(name: str, value: str | None) -> HeaderCheck:
    """The check of header keyword ``name`` (one of :data:`HEADER_KEYWORDS`) with ``value``
    (the text after ':', None when there was none). Raises HeaderKeywordError."""
    if name not in HEADER_KEYWORDS:
        raise HeaderKeywordError(f"'{name}' is not a header keyword", 0)
    if name == "sameip":
        if value is not None and value.strip():
            raise HeaderKeywordError("sameip: takes no value", 0)
        return HeaderCheck(name, KIND_SAMEIP, OP_EQ, 0)
    if value is None or not value.strip():
        raise HeaderKeywordError(f"{name}: needs a value", 0)
    if name in _UINT_KEYWORDS:
        kind, maximum = _UINT_KEYWORDS[name]
        return _parse_uint(name, kind, value, maximum)
    if name == "tos":
        return _parse_tos(name, value)
    if name == "ipopts":
        return _parse_ipopts(name, value)
    if name == "fragbits":
        return _parse_fragbits(name, value)
    if name == "fragoffset":
        return _parse_fragoffset(name, value)
    if name == "id":
        return _parse_equal(name, KIND_ID, value, _QUOTED, U16_MAX, 'N or "N" (0 to 65535)')
    if name in ("flags", "tcp.flags"):
        return _parse_flags(name, value)
    if name in ("seq", "ack"):
        kind = KIND_SEQ if name == "seq" else KIND_ACK
        return _parse_equal(name, kind, value, _PLAIN, U32_MAX, "N (0 to 4294967295)")
    if name == "window":
        return _parse_window(name, value)
    if name in ("icmp_id", "icmp_seq"):
        kind = KIND_ICMP_ID if name == "icmp_id" else KIND_ICMP_SEQ
        return _parse_equal(name, kind, value, _QUOTED, U16_MAX, 'N or "N" (0 to 65535)')
    return _parse_ip_proto(name, value)
