"""Numba primitives for byte_test, byte_jump, byte_extract and isdataat (Suricata 7 semantics).

Numbers are 64-bit unsigned in Suricata. Here they travel as int64 holding the same 64 bits
(two's complement), so they fit the int64 parameter and variable arrays of the interpreter;
:func:`compare` and the other kernels reinterpret them as unsigned where it matters. Use
:func:`to_int64` to store a parsed constant (0..2**64-1) in an int64 array.

Position semantics (``prev`` is the end of the previous match, det_ctx->buffer_offset in Suricata:
0 before any match, the end of a content/pcre match, or what the keywords below set; ``blen`` is
the inspected buffer's length):

- All three byte keywords fail on an empty buffer (blen == 0).
- Reading starts at ``pos = offset + (prev if relative else 0)``; the offset may be negative.
  The read fails when ``pos < 0`` or ``pos + nbytes > blen``; a relative byte_test/byte_extract
  also fails when ``pos >= blen`` (a relative byte_jump only when nbytes > 0). See
  :func:`read_position`.
- The number is read by :func:`extract_number_consumed`: binary big/little endian, or a string
  read as C ``strtoull`` does over the ``nbytes`` characters (leading whitespace and a sign allowed,
  digits up to the first non-digit, fails with no digit or on overflow). ``consumed`` is nbytes for
  binary, the number of characters strtoull used for strings (may be fewer than nbytes).
- byte_test: a bitmask is applied (:func:`apply_bitmask`), then :func:`compare`. ``prev`` is
  unchanged.
- byte_extract: the value is multiplied, then rounded up to ``align`` (2 or 4) if set
  (:func:`scale_and_align`), and stored. ``prev`` becomes ``pos + consumed``.
- byte_jump: bitmask (newer Suricata syntax) first, then :func:`jump_target`: multiplier, ``align``
  rounds up to a multiple of 4, then post_offset is added; the target is ``value`` from the buffer
  start with from_beginning, ``blen + value`` with from_end, else ``pos + consumed + value``. A
  target before the buffer start is clamped to 0; a target past ``blen`` fails; ``target == blen``
  is allowed. ``prev`` becomes the target.
- isdataat (:func:`isdataat_match`): absolute: data present when ``size < blen``; relative: when
  ``prev + size <= blen`` (one byte more lenient than absolute, as Suricata's documentation shows).
  A size from a byte_extract variable of 100000000 or more counts as "no data". ``!`` inverts the
  result; ``prev`` is unchanged. Suricata turns ``isdataat:!1,relative`` right after a content into
  ``endswith`` on that content; the check above gives the same answer for each candidate match.
- The ``dce`` endian needs the DCERPC header's byte order: :func:`encode_mode` rejects it.
"""

from __future__ import annotations

import numba as nb
import numpy as np

# mode bits: the low bit picks binary endianness, the others a string base (endianness ignored)
ENDIAN_BIG = 0
ENDIAN_LITTLE = 1
STRING_DEC = 2
STRING_HEX = 4
STRING_OCT = 8
STRING_AUTO = 16  # strtoull base 0: "0x" prefix hex, leading 0 octal, else decimal
STRING_MASK = STRING_DEC | STRING_HEX | STRING_OCT | STRING_AUTO

OP_EQ = 0
OP_LT = 1
OP_GT = 2
OP_LE = 3
OP_GE = 4
OP_AND = 5  # match when value & operand != 0
OP_XOR = 6  # "^": Suricata's "bitwise OR" is computed as XOR, match when value ^ operand != 0

_OP_CODES = {"=": OP_EQ, "<": OP_LT, ">": OP_GT, "<=": OP_LE, ">=": OP_GE, "&": OP_AND, "^": OP_XOR}
_STRING_MODES = {"dec": STRING_DEC, "hex": STRING_HEX, "oct": STRING_OCT, "auto": STRING_AUTO}

MAX_STRING_BYTES = 23
MAX_BINARY_BYTES = 8
VARIABLE_SIZE_LIMIT = 100_000_000  # isdataat: larger byte_extract values mean "no data" in Suricata

_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


def op_code(op: str) -> int:
    """The OP_* code of a byte_test operator (``= < > <= >= & ^``; negation is separate)."""
    try:
        return _OP_CODES[op]
    except KeyError:
        raise ValueError(f"unknown byte_test operator {op!r}") from None


def encode_mode(endian: str, string: str | None) -> int:
    """The ``mode`` for :func:`extract_number`.

    endian is 'big' or 'little'; string is None or 'dec', 'hex', 'oct', 'auto' (endian then ignored).
    """
    if string is not None:
        if string not in _STRING_MODES:
            raise ValueError(f"unknown string base {string!r}")
        return _STRING_MODES[string]
    if endian == "big":
        return ENDIAN_BIG
    if endian == "little":
        return ENDIAN_LITTLE
    if endian == "dce":
        raise NotImplementedError("dce byte order (taken from the DCERPC header) is not supported")
    raise ValueError(f"unknown endian {endian!r}")


def to_int64(value: int) -> int:
    """A 0..2**64-1 number as the int64 with the same bits (for int64 parameter arrays)."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} is not a 64-bit unsigned number")
    return value - (1 << 64) if value >= 1 << 63 else value


@nb.njit(cache=True, inline="always")
def _digit_value(c):
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 122:
        return c - 87
    if 65 <= c <= 90:
        return c - 55
    return 99


@nb.njit(cache=True)
def _strtoull(buf, pos, stop, base):
    """C strtoull over buf[pos:stop] (a NUL ends the string). Returns (ok, value, consumed)."""
    i = pos
    while i < stop and (buf[i] == 32 or 9 <= buf[i] <= 13):
        i += 1
    negative = False
    if i < stop and (buf[i] == 43 or buf[i] == 45):
        negative = buf[i] == 45
        i += 1
    # glibc skips "0x" only when a hex digit follows ("0xg" reads as 0 and stops at the 'x')
    hex_prefix = i + 2 < stop and buf[i] == 48 and (buf[i + 1] | 32) == 120 and _digit_value(buf[i + 2]) < 16
    if base == 0:
        if hex_prefix:
            base = 16
            i += 2
        elif i < stop and buf[i] == 48:
            base = 8
        else:
            base = 10
    elif base == 16 and hex_prefix:
        i += 2
    ubase = np.uint64(base)
    limit = _U64_MAX // ubase
    value = np.uint64(0)
    overflow = False
    start = i
    while i < stop:
        d = _digit_value(buf[i])
        if d >= base:
            break
        ud = np.uint64(d)
        if value > limit or value * ubase > _U64_MAX - ud:
            overflow = True
        else:
            value = value * ubase + ud
        i += 1
    if i == start or overflow:
        return False, np.int64(0), 0
    if negative:
        value = ~value + np.uint64(1)
    return True, np.int64(value), i - pos


@nb.njit(cache=True)
def extract_number_consumed(buf, pos, end, nbytes, mode):
    """Read the number at buf[pos:pos+nbytes]; returns (ok, value as int64 bits, bytes consumed).

    Fails when pos < 0 or pos + nbytes > end, for binary nbytes > 8, for string nbytes outside
    1..23, and for a string without a digit or over 2**64-1.
    """
    if pos < 0 or nbytes < 0 or pos + nbytes > end:
        return False, np.int64(0), 0
    if mode & STRING_MASK:
        if nbytes == 0 or nbytes > MAX_STRING_BYTES:
            return False, np.int64(0), 0
        stop = pos
        while stop < pos + nbytes and buf[stop] != 0:  # Suricata copies into a C string
            stop += 1
        if mode & STRING_DEC:
            base = 10
        elif mode & STRING_HEX:
            base = 16
        elif mode & STRING_OCT:
            base = 8
        else:
            base = 0
        return _strtoull(buf, pos, stop, base)
    if nbytes > MAX_BINARY_BYTES:
        return False, np.int64(0), 0
    value = np.uint64(0)
    if mode & ENDIAN_LITTLE:
        for i in range(nbytes):
            value |= np.uint64(buf[pos + i]) << np.uint64(8 * i)
    else:
        for i in range(nbytes):
            value = (value << np.uint64(8)) | np.uint64(buf[pos + i])
    return True, np.int64(value), nbytes


@nb.njit(cache=True)
def extract_number(buf, pos, end, nbytes, mode):
    """Read the number at buf[pos:pos+nbytes] (bounded by end); returns (ok, value as int64 bits)."""
    ok, value, _ = extract_number_consumed(buf, pos, end, nbytes, mode)
    return ok, value


@nb.njit(cache=True)
def compare(value, op_code, operand, negate):
    """byte_test's comparison, unsigned 64-bit: value <op> operand, inverted when negate."""
    a = np.uint64(value)
    b = np.uint64(operand)
    if op_code == OP_EQ:
        hit = a == b
    elif op_code == OP_LT:
        hit = a < b
    elif op_code == OP_GT:
        hit = a > b
    elif op_code == OP_LE:
        hit = a <= b
    elif op_code == OP_GE:
        hit = a >= b
    elif op_code == OP_AND:
        hit = (a & b) != np.uint64(0)
    elif op_code == OP_XOR:
        hit = (a ^ b) != np.uint64(0)
    else:
        return False
    return hit != negate


@nb.njit(cache=True)
def apply_bitmask(value, bitmask):
    """value & bitmask, shifted right by the mask's trailing zero bits (Suricata's bitmask)."""
    mask = np.uint64(bitmask)
    masked = np.uint64(value) & mask
    if masked != np.uint64(0):
        while (mask & np.uint64(1)) == np.uint64(0):
            mask >>= np.uint64(1)
            masked >>= np.uint64(1)
    return np.int64(masked)


@nb.njit(cache=True)
def scale_and_align(value, multiplier, align):
    """value * multiplier rounded up to a multiple of align (when align > 1), wrapping at 2**64."""
    v = np.uint64(value) * np.uint64(multiplier)
    if align > 1:
        ualign = np.uint64(align)
        rest = v % ualign
        if rest != np.uint64(0):
            v += ualign - rest
    return np.int64(v)


@nb.njit(cache=True)
def read_position(blen, prev, offset, relative, nbytes, is_jump):
    """Where a byte keyword starts reading; returns (ok, pos) with Suricata's bounds checks."""
    if blen <= 0:
        return False, 0
    pos = offset + prev if relative else offset
    if relative and pos >= blen and (nbytes > 0 or not is_jump):
        return False, 0
    if pos < 0 or nbytes > blen - pos:
        return False, 0
    return True, pos


@nb.njit(cache=True)
def jump_target(blen, pos, consumed, value, multiplier, align, post_offset, from_beginning, from_end):
    """byte_jump's new position; returns (ok, target). value is after any bitmask."""
    v = np.uint64(value) * np.uint64(multiplier)
    if align:
        rest = v % np.uint64(4)
        if rest != np.uint64(0):
            v += np.uint64(4) - rest
    v += np.uint64(np.int64(post_offset))
    jump = np.int64(v)
    if from_beginning:
        target = jump
    elif from_end:
        target = blen + jump
    else:
        target = pos + consumed + jump
    if target < 0:
        return True, 0
    if target > blen:
        return False, 0
    return True, target


@nb.njit(cache=True)
def isdataat_match(blen, prev, size, relative, negated):
    """isdataat: absolute needs size < blen, relative needs prev + size <= blen; negated inverts."""
    if size < 0 or size >= VARIABLE_SIZE_LIMIT:
        present = False
    elif relative:
        present = prev + size <= blen
    else:
        present = size < blen
    return present != negated
