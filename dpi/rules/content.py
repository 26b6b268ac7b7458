"""Content strings (``"abc|0d 0a|def"``) and the choice of a rule's fast pattern."""

from __future__ import annotations

from collections.abc import Sequence

from dpi.rules.model import Content

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_ESCAPABLE = frozenset(':;\\"')


class ContentError(ValueError):
    """A content string that cannot be decoded; index is the offending character's position."""

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.message = message
        self.index = index


def decode_content(text: str) -> bytes:
    """Decode the text between the quotes of a content option into bytes.

    ``text`` holds one character per byte (the rule file decoded as latin-1). Between pipes come hex
    bytes (spaces allowed); outside, only ``\\"``, ``\\;``, ``\\:`` and ``\\\\`` are escapes, and a bare
    double quote is an error, following Suricata's DetectContentDataParse.
    """
    if "|" not in text and "\\" not in text and '"' not in text:
        if not text:
            raise ContentError("empty content", 0)
        return text.encode("latin-1")
    out = bytearray()
    n = len(text)
    i = 0
    in_hex = False
    hex_start = 0
    pending = -1  # index of an unpaired hex digit
    while i < n:
        c = text[i]
        if in_hex:
            if c == "|":
                if pending >= 0:
                    raise ContentError("odd number of hex digits in '|...|'", pending)
                in_hex = False
            elif c in _HEX_DIGITS:
                if pending < 0:
                    pending = i
                else:
                    out.append(int(text[pending] + c, 16))
                    pending = -1
            elif c != " " and c != ",":
                raise ContentError(f"invalid character {c!r} in hex section", i)
        elif c == "\\":
            if i + 1 >= n:
                raise ContentError("content ends with an unfinished escape '\\'", i)
            escaped = text[i + 1]
            if escaped not in _ESCAPABLE:
                raise ContentError(
                    f"invalid escape '\\{escaped}' in content (only \\\" \\; \\: \\\\ are escapes)", i
                )
            out.append(ord(escaped))
            i += 2
            continue
        elif c == "|":
            in_hex = True
            hex_start = i
        elif c == '"':
            raise ContentError("unescaped '\"' inside content (write \\\")", i)
        else:
            out.append(ord(c))
        i += 1
    if in_hex:
        raise ContentError("hex section is not closed with '|'", hex_start)
    if not out:
        raise ContentError("empty content", 0)
    return bytes(out)


def pattern_strength(pattern: bytes) -> int:
    """Suricata's PatternStrength: first sight of a letter 3, of another printable (or 00/01/ff) 4,
    of anything else 6; a repeated byte 1. Breaks ties between equally long candidate fast patterns."""
    seen = set()
    score = 0
    for b in pattern:
        if b in seen:
            score += 1
            continue
        seen.add(b)
        if 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A:
            score += 3
        elif 0x20 <= b <= 0x7E or b in (0x00, 0x01, 0xFF):
            score += 4
        else:
            score += 6
    return score


def choose_fast_pattern(contents: Sequence[Content]) -> int | None:
    """Index of the content the multi-pattern matcher should use, or None without a positive content.

    An explicit ``fast_pattern`` wins. Otherwise, as Suricata does within one buffer: the longest
    positive content, then the highest pattern strength, then the first in rule order. A negated content
    is never chosen (it cannot make a rule a candidate), even when it carries ``fast_pattern``.
    """
    for i, c in enumerate(contents):
        if c.fast_pattern and not c.negated:
            return i
    best = None
    best_key = (-1, -1)
    for i, c in enumerate(contents):
        if c.negated:
            continue
        key = (len(c.pattern), pattern_strength(c.pattern))
        if key > best_key:
            best, best_key = i, key
    return best
