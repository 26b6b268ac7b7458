"""Compile each rule's payload keywords (content, pcre, byte_test, byte_jump, byte_extract,
isdataat) into one flat op table that :mod:`dpi.detect.payload` interprets on the bytes.

The compiler is given only the rules that need the bytes themselves (``Rule.needs_bytes``,
or no positive content to anchor on); rules the matcher's occurrences verify alone get an
empty program.
Each op is a row: its kind, flag bits, eight integer parameters and four variable slots
(-1: the parameter is a constant). Content patterns are stored folded to lower case when
nocase, in one byte array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpi.detect.byte_ops import encode_mode, op_code, to_int64
from dpi.regex import RegexSet, pack_regexes
from dpi.rules.byte_keywords import ByteExtract, ByteJump, ByteTest, IsDataAt
from dpi.rules.model import Content, Pcre

OP_CONTENT = 1
OP_PCRE = 2
OP_BYTE_TEST = 3
OP_BYTE_JUMP = 4
OP_BYTE_EXTRACT = 5
OP_ISDATAAT = 6

F_NEGATED = 1
F_RELATIVE = 2
F_NOCASE = 4
F_ENDSWITH = 8
F_FROM_BEGINNING = 16
F_FROM_END = 32
F_ALIGN = 64
F_RETRY = 128  # the next op is relative to this one: on its failure, try this one's next match
F_ABSOLUTE_BOUNDS = 256  # offset/depth given (not relative)
F_BITMASK = 512  # the byte keyword has a bitmask (0 is a valid mask: it zeroes the value)

UNSET = -(1 << 40)
MAX_VARIABLES = 16  # byte_extract names per rule (Suricata allows a handful)


@dataclass
class PayloadPrograms:
    r_prog: np.ndarray  # (n_rules, 2) start/end into the op rows; empty for rules not using bytes
    kind: np.ndarray  # int64 (n_ops,)
    flags: np.ndarray  # int64
    param: np.ndarray  # int64 (n_ops, 8)
    var: np.ndarray  # int64 (n_ops, 4)
    patterns: np.ndarray  # uint8, the content bytes
    regexes: RegexSet


def _const_or_var(value, name, slots: dict[str, int]) -> tuple[int, int]:
    if name is not None:
        return UNSET, slots[name]
    return (UNSET if value is None else int(value)), -1


def compile_programs(rules) -> PayloadPrograms:
    kinds: list[int] = []
    flags: list[int] = []
    params: list[list[int]] = []
    variables: list[list[int]] = []
    pattern_bytes = bytearray()
    regexes = []
    r_prog = np.zeros((len(rules), 2), np.int64)
    for r, rule in enumerate(rules):
        start = len(kinds)
        if rule.payload:
            slots: dict[str, int] = {}
            for item in rule.payload:
                p = [0] * 8
                v = [-1] * 4
                f = F_NEGATED if getattr(item, "negated", False) else 0
                if getattr(item, "relative", False):
                    f |= F_RELATIVE
                if getattr(item, "bitmask", None) is not None:
                    f |= F_BITMASK
                    p[5] = to_int64(item.bitmask)
                if isinstance(item, Content):
                    kind = OP_CONTENT
                    pattern = bytes(item.pattern).lower() if item.nocase else bytes(item.pattern)
                    p[0], p[1] = len(pattern_bytes), len(pattern)
                    pattern_bytes += pattern
                    p[2], v[0] = _const_or_var(item.offset, item.offset_var, slots)
                    p[3], v[1] = _const_or_var(item.depth, item.depth_var, slots)
                    p[4], v[2] = _const_or_var(item.distance, item.distance_var, slots)
                    p[5], v[3] = _const_or_var(item.within, item.within_var, slots)
                    if item.nocase:
                        f |= F_NOCASE
                    if item.endswith:
                        f |= F_ENDSWITH
                    if not item.relative and (
                        item.offset is not None or item.depth is not None or item.offset_var or item.depth_var
                    ):
                        f |= F_ABSOLUTE_BOUNDS
                elif isinstance(item, Pcre):
                    kind = OP_PCRE
                    p[0] = len(regexes)
                    regexes.append(item.regex)
                elif isinstance(item, ByteTest):
                    kind = OP_BYTE_TEST
                    p[0], p[1] = item.nbytes, encode_mode(item.endian, item.string)
                    p[2], v[0] = _const_or_var(item.offset, item.offset_var, slots)
                    p[3] = op_code(item.op)
                    p[4], v[1] = _const_or_var(item.value, item.value_var, slots)
                    if item.value_var is None:
                        p[4] = to_int64(item.value)
                    p[6] = 1 if item.negate else 0
                    f &= ~F_NEGATED
                elif isinstance(item, ByteJump):
                    kind = OP_BYTE_JUMP
                    p[0], p[1] = item.nbytes, encode_mode(item.endian, item.string)
                    p[2], v[0] = _const_or_var(item.offset, item.offset_var, slots)
                    p[3], p[4] = item.multiplier, item.post_offset
                    if item.align:
                        f |= F_ALIGN
                    if item.from_beginning:
                        f |= F_FROM_BEGINNING
                    if item.from_end:
                        f |= F_FROM_END
                elif isinstance(item, ByteExtract):
                    kind = OP_BYTE_EXTRACT
                    p[0], p[1] = item.nbytes, encode_mode(item.endian, item.string)
                    p[2], p[3], p[4] = item.offset, item.multiplier, item.align
                    if len(slots) >= MAX_VARIABLES:
                        raise ValueError(f"sid {rule.sid}: more than {MAX_VARIABLES} byte_extract variables")
                    slots[item.name] = len(slots)
                    p[6] = slots[item.name]
                elif isinstance(item, IsDataAt):
                    kind = OP_ISDATAAT
                    p[0], v[0] = _const_or_var(item.size, item.size_var, slots)
                else:  # the parser only produces the kinds above
                    raise TypeError(f"unknown payload keyword {type(item).__name__}")
                kinds.append(kind)
                flags.append(f)
                params.append(p)
                variables.append(v)
            # Suricata retries a content or pcre match only when the next keyword is relative to it
            for k in range(start, len(kinds) - 1):
                if (
                    flags[k + 1] & F_RELATIVE
                    and kinds[k] in (OP_CONTENT, OP_PCRE)
                    and not flags[k] & F_NEGATED
                ):
                    flags[k] |= F_RETRY
        r_prog[r] = (start, len(kinds))
    return PayloadPrograms(
        r_prog=r_prog,
        kind=np.asarray(kinds, np.int64),
        flags=np.asarray(flags, np.int64),
        param=np.asarray(params, np.int64).reshape(-1, 8),
        var=np.asarray(variables, np.int64).reshape(-1, 4),
        patterns=np.frombuffer(bytes(pattern_bytes) or b"\0", np.uint8).copy(),
        regexes=pack_regexes([x for x in regexes]),
    )
