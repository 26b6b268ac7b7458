"""Parsers for the payload keywords byte_test, byte_jump, byte_extract and isdataat.

The accepted syntax and the validation follow Suricata 7 (detect-bytetest.c, detect-bytejump.c,
detect-byte-extract.c, detect-isdataat.c). Numbers are read the way Suricata reads them, with C's
``strtoull``/``strtoll`` rules: where Suricata parses leniently (byte_test's value and bitmask,
isdataat's size) trailing characters after the digits are ignored ("0x10ULL" is 16); where it parses
strictly (counts, offsets, multiplier, post_offset) the whole token must be a number.

Something Suricata rejects raises :class:`ByteKeywordError` (``message`` and ``index``, an offset into
the value string). Something Suricata accepts that dpi does not implement raises
``NotImplementedError`` with the reason:

- a byte_extract variable as byte_test/byte_jump ``<num of bytes>`` (newer Suricata syntax);
- ``string`` with 0 bytes (Suricata then reads an unbounded, NUL-terminated string);
- two different string bases in one byte_test/byte_jump (Suricata ORs them into a strange base);
- byte_extract's ``slice`` (newer Suricata syntax).

Conventions of the parsed objects:

- ``op`` of byte_test is one of ``< > = <= >= & ^`` and ``negate`` carries a leading ``!``:
  ``!=`` and a bare ``!`` are ``op="="``, ``negate=True``; ``!<`` is ``op="<"``, ``negate=True``.
  ``^`` is what Suricata calls "bitwise OR" but computes as XOR (match when ``value ^ operand != 0``).
- ``endian`` is ``"big"`` (the default), ``"little"`` or ``"dce"`` (byte order taken from the DCERPC
  header at run time). Between ``big`` and ``little`` in one byte_test/byte_jump, ``little`` wins
  unless ``big`` comes after it, as in Suricata.
- ``string`` is ``None`` for binary extraction, else ``"dec"``, ``"hex"``, ``"oct"``, or ``"auto"``
  for byte_test/byte_jump ``string`` without a base (Suricata then calls ``strtoull`` with base 0:
  ``0x`` prefix means hex, a leading ``0`` octal, otherwise decimal). byte_extract's ``string``
  without a base is ``"dec"``, as in Suricata.
- a token that starts with an ASCII letter where Suricata allows a variable is stored in the
  ``*_var`` field (the numeric field is then ``None``); resolving it to a byte_extract is the caller's
  job (Suricata rejects the rule when the name is unknown).
- byte_jump ``bitmask`` is accepted as in newer Suricata (the mask is applied to the extracted value
  before the multiplier); byte_extract has no bitmask in Suricata, so ``ByteExtract.bitmask`` is
  always ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

_C_SPACE = " \t\n\v\f\r"
_UINT64_MOD = 1 << 64
_MAX_STRING_BYTES = 23  # "01777777777777777777777" is 2**64-1, the longest string Suricata reads
_MAX_BINARY_BYTES = 8
_BYTE_EXTRACT_STRING_LIMITS = {"oct": 23, "dec": 20, "hex": 14}
_JUMP_OFFSET_LIMIT = 65535  # byte_jump/byte_extract offset and post_offset range is +-65535
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_UINT32_MAX = (1 << 32) - 1
_BASES = {"dec": 10, "hex": 16, "oct": 8}


class ByteKeywordError(ValueError):
    """A byte keyword value Suricata would reject; index is an offset into the value string."""

    def __init__(self, message: str, index: int = 0):
        super().__init__(message)
        self.message = message
        self.index = index


@dataclass(slots=True)
class ByteTest:
    nbytes: int
    op: str
    negate: bool
    value: int | None
    value_var: str | None
    offset: int | None
    offset_var: str | None
    relative: bool
    endian: str
    string: str | None
    bitmask: int | None


@dataclass(slots=True)
class ByteJump:
    nbytes: int
    offset: int | None
    offset_var: str | None
    relative: bool
    multiplier: int
    endian: str
    string: str | None
    align: bool
    from_beginning: bool
    from_end: bool
    post_offset: int
    bitmask: int | None


@dataclass(slots=True)
class ByteExtract:
    nbytes: int
    offset: int
    name: str
    relative: bool
    multiplier: int
    endian: str
    string: str | None
    align: int
    bitmask: int | None


@dataclass(slots=True)
class IsDataAt:
    size: int | None
    size_var: str | None
    relative: bool
    negated: bool


# --- C number parsing ------------------------------------------------------------------------------


def _digit(c: str) -> int:
    if "0" <= c <= "9":
        return ord(c) - 48
    if "a" <= c.lower() <= "z":
        return ord(c.lower()) - 87
    return 99


def _c_strtoint(text: str, base: int, signed: bool) -> tuple[int, int] | None:
    """C strtoull/strtoll: (value, characters consumed), or None for no digits or out of range.

    strtoull wraps a negative number modulo 2**64, as C does.
    """
    i, n = 0, len(text)
    while i < n and text[i] in _C_SPACE:
        i += 1
    negative = False
    if i < n and text[i] in "+-":
        negative = text[i] == "-"
        i += 1
    # glibc skips "0x" only when a hex digit follows; "0xg" reads as 0 and stops at the 'x'
    has_hex_prefix = i + 2 < n and text[i] == "0" and text[i + 1] in "xX" and _digit(text[i + 2]) < 16
    if base == 0:
        if has_hex_prefix:
            base, i = 16, i + 2
        elif i < n and text[i] == "0":
            base = 8
        else:
            base = 10
    elif base == 16 and has_hex_prefix:
        i += 2
    start = i
    magnitude = 0
    while i < n and _digit(text[i]) < base:
        magnitude = magnitude * base + _digit(text[i])
        i += 1
    if i == start:
        return None
    if signed:
        if magnitude > (1 << 63) - (0 if negative else 1):
            return None
        return (-magnitude if negative else magnitude), i
    if magnitude >= _UINT64_MOD:
        return None
    return ((-magnitude) % _UINT64_MOD if negative else magnitude), i


def _parse_number(
    text: str, index: int, what: str, *, base: int, strict: bool, lo: int, hi: int, signed: bool = False
) -> int:
    parsed = _c_strtoint(text, base, signed)
    if parsed is None:
        raise ByteKeywordError(f"invalid {what} {text!r}", index)
    value, used = parsed
    if strict and used != len(text):
        raise ByteKeywordError(f"invalid {what} {text!r}: extra characters after the number", index)
    if not lo <= value <= hi:
        raise ByteKeywordError(f"{what} {text!r} out of range [{lo}, {hi}]", index)
    return value


def _signed_offset(text: str, index: int) -> int:
    """byte_jump's and byte_extract's offset: decimal, -65535..65535."""
    return _parse_number(
        text,
        index,
        "offset",
        base=10,
        strict=True,
        lo=-_JUMP_OFFSET_LIMIT,
        hi=_JUMP_OFFSET_LIMIT,
        signed=True,
    )


# --- tokens ----------------------------------------------------------------------------------------


def _tokens(value: str, keyword: str) -> list[tuple[str, int]]:
    """Split on commas into (stripped text, index of its first character); empty tokens are errors."""
    out: list[tuple[str, int]] = []
    start = 0
    for piece in value.split(","):
        stripped = piece.strip(_C_SPACE)
        index = start + (len(piece) - len(piece.lstrip(_C_SPACE)))
        if not stripped:
            raise ByteKeywordError(f"{keyword}: empty argument", index)
        out.append((stripped, index))
        start += len(piece) + 1
    return out


def _is_var(text: str) -> bool:
    """Suricata takes an argument that starts with an ASCII letter as a variable name."""
    return text[0].isascii() and text[0].isalpha()


def _single_word(text: str, index: int, keyword: str) -> None:
    if any(c in _C_SPACE for c in text):
        raise ByteKeywordError(f"{keyword}: unexpected whitespace in {text!r}", index)


def _option_with_value(text: str, index: int, keyword: str) -> tuple[str, str, int] | None:
    """Split 'name value' into (name, value, value index); None when text is a single word."""
    parts = text.split(None, 1)
    if len(parts) == 1:
        return None
    name, rest = parts
    rest_index = index + text.index(rest, len(name))
    _single_word(rest, rest_index, keyword)
    return name, rest, rest_index


def _nbytes(text: str, index: int, keyword: str) -> int:
    if _is_var(text):
        raise NotImplementedError(f"{keyword} with a variable number of bytes ({text!r})")
    return _parse_number(text, index, "number of bytes", base=10, strict=True, lo=0, hi=_UINT32_MAX)


def _check_nbytes(nbytes: int, string: str | None, index: int, keyword: str) -> None:
    if string is not None:
        if nbytes > _MAX_STRING_BYTES:
            raise ByteKeywordError(f"{keyword}: cannot read more than 23 bytes with 'string'", index)
        if nbytes == 0:
            raise NotImplementedError(f"{keyword} 'string' with 0 bytes (unbounded string read)")
    elif nbytes > _MAX_BINARY_BYTES:
        raise ByteKeywordError(f"{keyword}: cannot read more than 8 bytes without 'string'", index)


def _string_base(bases: list[str], has_string: bool, keyword: str) -> str | None:
    if not has_string:
        return None
    if not bases:
        return "auto"
    if len(set(bases)) > 1:
        raise NotImplementedError(f"{keyword} with more than one string base ({', '.join(bases)})")
    return bases[0]


# --- byte_test -------------------------------------------------------------------------------------

_BYTE_TEST_OPS = ("=", "<", ">", "&", "^", ">=", "<=")
_BYTE_TEST_MAX_OPTIONS = 6


def parse_byte_test(value: str) -> ByteTest:
    """Parse ``nbytes, [!]op, value, offset [, relative|big|little|string|hex|dec|oct|dce|bitmask N]``."""
    tokens = _tokens(value, "byte_test")
    if len(tokens) < 4:
        raise ByteKeywordError("byte_test needs nbytes, operator, value and offset", len(value))
    if len(tokens) > 4 + _BYTE_TEST_MAX_OPTIONS:
        raise ByteKeywordError("byte_test: too many options", tokens[4 + _BYTE_TEST_MAX_OPTIONS][1])
    (nbytes_text, nbytes_index), (op_text, op_index) = tokens[0], tokens[1]
    _single_word(nbytes_text, nbytes_index, "byte_test")
    nbytes = _nbytes(nbytes_text, nbytes_index, "byte_test")

    negate = op_text.startswith("!")
    op = op_text[1:].lstrip(_C_SPACE) if negate else op_text
    if negate and op == "":
        op = "="
    if op not in _BYTE_TEST_OPS:
        raise ByteKeywordError(f"byte_test: invalid operator {op_text!r}", op_index)

    test_value = value_var = offset = offset_var = None
    value_text, value_index = tokens[2]
    _single_word(value_text, value_index, "byte_test")
    if _is_var(value_text):
        value_var = value_text
    else:
        test_value = _parse_number(
            value_text, value_index, "value", base=0, strict=False, lo=0, hi=_UINT64_MOD - 1
        )
    offset_text, offset_index = tokens[3]
    _single_word(offset_text, offset_index, "byte_test")
    if _is_var(offset_text):
        offset_var = offset_text
    else:
        offset = _parse_number(
            offset_text,
            offset_index,
            "offset",
            base=0,
            strict=True,
            lo=_INT32_MIN,
            hi=_INT32_MAX,
            signed=True,
        )

    relative = has_string = dce = False
    endian = "big"
    bases: list[str] = []
    bitmask = None
    for text, index in tokens[4:]:
        pair = _option_with_value(text, index, "byte_test")
        if pair is not None:
            name, arg, arg_index = pair
            if name != "bitmask":
                raise ByteKeywordError(f"byte_test: unknown option {text!r}", index)
            bitmask = _parse_number(arg, arg_index, "bitmask", base=0, strict=False, lo=0, hi=_UINT32_MAX)
        elif text == "relative":
            relative = True
        elif text == "string":
            has_string = True
        elif text in _BASES:
            bases.append(text)
        elif text in ("big", "little"):
            endian = text  # the later of big/little wins, as Suricata's flag handling gives
        elif text == "dce":
            dce = True
        elif text == "bitmask":
            raise ByteKeywordError("byte_test: bitmask needs a value", index)
        else:
            raise ByteKeywordError(f"byte_test: unknown option {text!r}", index)
    if bases and not has_string:
        raise ByteKeywordError("byte_test: a base (hex/dec/oct) needs 'string'", 0)
    if dce:
        if has_string or bases or _has_endian_word(tokens[4:]):
            raise ByteKeywordError("byte_test: 'dce' cannot be combined with string, a base or an endian", 0)
        endian = "dce"
    string = _string_base(bases, has_string, "byte_test")
    _check_nbytes(nbytes, string, nbytes_index, "byte_test")
    return ByteTest(
        nbytes=nbytes,
        op=op,
        negate=negate,
        value=test_value,
        value_var=value_var,
        offset=offset,
        offset_var=offset_var,
        relative=relative,
        endian=endian,
        string=string,
        bitmask=bitmask,
    )


def _has_endian_word(tokens: list[tuple[str, int]]) -> bool:
    return any(text.lower() in ("big", "little") for text, _ in tokens)


# --- byte_jump -------------------------------------------------------------------------------------

_BYTE_JUMP_MAX_OPTIONS = 8


def parse_byte_jump(value: str) -> ByteJump:
    """Parse ``nbytes, offset [, relative|multiplier N|big|little|string|hex|dec|oct|align|
    from_beginning|from_end|post_offset N|dce|bitmask N]``."""
    tokens = _tokens(value, "byte_jump")
    if len(tokens) < 2:
        raise ByteKeywordError("byte_jump needs nbytes and offset", len(value))
    if len(tokens) > 2 + _BYTE_JUMP_MAX_OPTIONS:
        raise ByteKeywordError("byte_jump: too many options", tokens[2 + _BYTE_JUMP_MAX_OPTIONS][1])
    nbytes_text, nbytes_index = tokens[0]
    _single_word(nbytes_text, nbytes_index, "byte_jump")
    nbytes = _nbytes(nbytes_text, nbytes_index, "byte_jump")
    offset_text, offset_index = tokens[1]
    _single_word(offset_text, offset_index, "byte_jump")
    offset = offset_var = None
    if _is_var(offset_text):
        offset_var = offset_text
    else:
        offset = _signed_offset(offset_text, offset_index)

    relative = has_string = align = from_beginning = from_end = dce = has_endian = False
    endian = "big"
    bases: list[str] = []
    multiplier, post_offset = 1, 0
    bitmask = None
    for text, index in tokens[2:]:
        pair = _option_with_value(text, index, "byte_jump")
        if pair is not None:
            name, arg, arg_index = pair
            if name == "multiplier":
                multiplier = _parse_number(arg, arg_index, "multiplier", base=10, strict=True, lo=1, hi=65535)
            elif name == "post_offset":
                post_offset = _parse_number(
                    arg,
                    arg_index,
                    "post_offset",
                    base=10,
                    strict=True,
                    lo=-_JUMP_OFFSET_LIMIT,
                    hi=_JUMP_OFFSET_LIMIT,
                    signed=True,
                )
            elif name == "bitmask":
                bitmask = _parse_number(arg, arg_index, "bitmask", base=0, strict=False, lo=0, hi=_UINT32_MAX)
            else:
                raise ByteKeywordError(f"byte_jump: unknown option {text!r}", index)
            continue
        word = text.lower()  # Suricata compares these without case, except 'relative'
        if text == "relative":
            relative = True
        elif word == "string":
            has_string = True
        elif word in _BASES:
            bases.append(word)
        elif word in ("big", "little"):
            endian, has_endian = word, True
        elif word == "from_beginning":
            from_beginning = True
        elif word == "from_end":
            from_end = True
        elif word == "align":
            align = True
        elif word == "dce":
            dce = True
        elif word in ("multiplier", "post_offset", "bitmask"):
            raise ByteKeywordError(f"byte_jump: {word} needs a value", index)
        else:
            raise ByteKeywordError(f"byte_jump: unknown option {text!r}", index)
    if from_beginning and from_end:
        raise ByteKeywordError("byte_jump: 'from_beginning' and 'from_end' cannot be used together", 0)
    if bases and not has_string:
        raise ByteKeywordError("byte_jump: a base (hex/dec/oct) needs 'string'", 0)
    if dce:
        if has_string or bases or has_endian or from_beginning or from_end:
            raise ByteKeywordError(
                "byte_jump: 'dce' cannot be combined with string, a base, an endian, "
                "from_beginning or from_end",
                0,
            )
        endian = "dce"
    string = _string_base(bases, has_string, "byte_jump")
    _check_nbytes(nbytes, string, nbytes_index, "byte_jump")
    return ByteJump(
        nbytes=nbytes,
        offset=offset,
        offset_var=offset_var,
        relative=relative,
        multiplier=multiplier,
        endian=endian,
        string=string,
        align=align,
        from_beginning=from_beginning,
        from_end=from_end,
        post_offset=post_offset,
        bitmask=bitmask,
    )


# --- byte_extract ----------------------------------------------------------------------------------

_BYTE_EXTRACT_MAX_OPTIONS = 5


def parse_byte_extract(value: str) -> ByteExtract:
    """Parse ``nbytes, offset, name [, relative|multiplier N|big|little|dce|string|hex|dec|oct|align N]``.

    All option words are case-sensitive and each may appear once; a base must follow ``string``.
    """
    tokens = _tokens(value, "byte_extract")
    if len(tokens) < 3:
        raise ByteKeywordError("byte_extract needs nbytes, offset and a variable name", len(value))
    if len(tokens) > 3 + _BYTE_EXTRACT_MAX_OPTIONS:
        raise ByteKeywordError("byte_extract: too many options", tokens[3 + _BYTE_EXTRACT_MAX_OPTIONS][1])
    (nbytes_text, nbytes_index), (offset_text, offset_index), (name, name_index) = tokens[:3]
    if not nbytes_text.isascii() or not nbytes_text.isdigit():
        raise ByteKeywordError(f"byte_extract: invalid number of bytes {nbytes_text!r}", nbytes_index)
    nbytes = _parse_number(nbytes_text, nbytes_index, "number of bytes", base=10, strict=True, lo=0, hi=255)
    unsigned_offset = offset_text[1:] if offset_text.startswith("-") else offset_text
    if not unsigned_offset.isascii() or not unsigned_offset.isdigit():
        raise ByteKeywordError(f"byte_extract: invalid offset {offset_text!r}", offset_index)
    offset = _signed_offset(offset_text, offset_index)
    _single_word(name, name_index, "byte_extract")

    seen: set[str] = set()
    relative = has_string = False
    endian: str | None = None
    base: str | None = None
    multiplier, align = 1, 0
    for text, index in tokens[3:]:
        pair = _option_with_value(text, index, "byte_extract")
        word = pair[0] if pair is not None else text
        if pair is not None and word not in ("multiplier", "align"):
            raise ByteKeywordError(f"byte_extract: invalid option {text!r}", index)
        if pair is None and word in ("multiplier", "align"):
            raise ByteKeywordError(f"byte_extract: {word} needs a value", index)
        group = "endian" if word in ("big", "little", "dce") else "base" if word in _BASES else word
        if group in seen:
            raise ByteKeywordError(f"byte_extract: {group} specified more than once", index)
        if word == "relative":
            relative = True
        elif word == "multiplier":
            assert pair is not None
            multiplier = _parse_number(pair[1], pair[2], "multiplier", base=10, strict=True, lo=1, hi=65535)
        elif word in ("big", "little", "dce"):
            endian = word
        elif word == "string":
            if base is not None:
                raise ByteKeywordError("byte_extract: write 'string, <base>', not '<base>, string'", index)
            has_string = True
        elif word in _BASES:
            if not has_string:
                raise ByteKeywordError(f"byte_extract: base {word!r} without a preceding 'string'", index)
            base = word
        elif word == "align":
            assert pair is not None
            align = _parse_number(pair[1], pair[2], "align", base=10, strict=True, lo=0, hi=255)
            if align not in (2, 4):
                raise ByteKeywordError("byte_extract: align must be 2 or 4", pair[2])
        elif word == "slice":
            raise NotImplementedError("byte_extract 'slice' (newer Suricata syntax)")
        else:
            raise ByteKeywordError(f"byte_extract: invalid option {text!r}", index)
        seen.add(group)

    string = None
    if has_string:
        if endian is not None:
            raise ByteKeywordError("byte_extract: 'string' cannot be combined with big, little or dce", 0)
        string = base or "dec"
        if nbytes > _BYTE_EXTRACT_STRING_LIMITS[string]:
            limit = _BYTE_EXTRACT_STRING_LIMITS[string]
            raise ByteKeywordError(
                f"byte_extract: cannot read more than {limit} bytes with 'string, {string}'", nbytes_index
            )
        if nbytes == 0:
            raise NotImplementedError("byte_extract 'string' with 0 bytes (unbounded string read)")
    elif nbytes > _MAX_BINARY_BYTES:
        raise ByteKeywordError("byte_extract: cannot read more than 8 bytes without 'string'", nbytes_index)
    return ByteExtract(
        nbytes=nbytes,
        offset=offset,
        name=name,
        relative=relative,
        multiplier=multiplier,
        endian=endian or "big",
        string=string,
        align=align,
        bitmask=None,
    )


# --- isdataat --------------------------------------------------------------------------------------


def parse_isdataat(value: str) -> IsDataAt:
    """Parse ``[!]size [, relative] [, rawbytes]``; size is 0..65535 or a byte_extract variable.

    ``rawbytes`` is accepted and ignored, as in Suricata.
    """
    stripped = value.lstrip(_C_SPACE)
    lead = len(value) - len(stripped)
    negated = stripped.startswith("!")
    body = stripped[1:] if negated else stripped
    tokens = _tokens(body, "isdataat")
    shift = lead + (1 if negated else 0)
    size_text, size_index = tokens[0]
    size_index += shift
    _single_word(size_text, size_index, "isdataat")
    if negated and size_index != shift:
        raise ByteKeywordError("isdataat: no space allowed after '!'", shift)
    size = size_var = None
    if _is_var(size_text):
        size_var = size_text
    else:
        size = _parse_number(size_text, size_index, "isdataat size", base=10, strict=False, lo=0, hi=65535)
    relative = False
    expected = ["relative", "rawbytes"]
    for text, index in tokens[1:]:
        # Suricata's pattern only allows 'relative' then 'rawbytes', each at most once, in that order.
        while expected and expected[0] != text:
            expected.pop(0)
        if not expected:
            raise ByteKeywordError(f"isdataat: unexpected option {text!r}", index + shift)
        expected.pop(0)
        relative = relative or text == "relative"
    return IsDataAt(size=size, size_var=size_var, relative=relative, negated=negated)
