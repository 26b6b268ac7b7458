"""byte_test/byte_jump/byte_extract/isdataat parsing and their Numba primitives.

Valid and invalid examples come from Suricata's documentation and its unit tests; string
number reading is checked against the C library's own strtoull.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random

import numpy as np
import pytest

from dpi.detect import byte_ops as bo
from dpi.rules.byte_keywords import (
    ByteExtract,
    ByteJump,
    ByteKeywordError,
    ByteTest,
    IsDataAt,
    _c_strtoint,
    parse_byte_extract,
    parse_byte_jump,
    parse_byte_test,
    parse_isdataat,
)

U64 = 1 << 64


def _bt(**changes) -> ByteTest:
    base = dict(
        nbytes=4,
        op="=",
        negate=False,
        value=1,
        value_var=None,
        offset=0,
        offset_var=None,
        relative=False,
        endian="big",
        string=None,
        bitmask=None,
    )
    return ByteTest(**{**base, **changes})


def _bj(**changes) -> ByteJump:
    base = dict(
        nbytes=4,
        offset=0,
        offset_var=None,
        relative=False,
        multiplier=1,
        endian="big",
        string=None,
        align=False,
        from_beginning=False,
        from_end=False,
        post_offset=0,
        bitmask=None,
    )
    return ByteJump(**{**base, **changes})


def _be(**changes) -> ByteExtract:
    base = dict(
        nbytes=4,
        offset=2,
        name="one",
        relative=False,
        multiplier=1,
        endian="big",
        string=None,
        align=0,
        bitmask=None,
    )
    return ByteExtract(**{**base, **changes})


# --- byte_test -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2,=,0x01,0", _bt(nbytes=2, value=1)),
        ("2,=,0x03,2,relative", _bt(nbytes=2, value=3, offset=2, relative=True)),
        ("2,!=,0x06,0", _bt(nbytes=2, value=6, negate=True)),
        ("2,>,1000,1,relative", _bt(nbytes=2, op=">", value=1000, offset=1, relative=True)),
        ("2,&,0x01,12,relative", _bt(nbytes=2, op="&", value=1, offset=12, relative=True)),
        ("4,=,1337,1,relative,string,dec", _bt(value=1337, offset=1, relative=True, string="dec")),
        ("4, =, 1 , 0", _bt()),
        ("4, !=, 1, 0, relative", _bt(negate=True, relative=True)),
        ("4, !=, 1, 0, string, oct", _bt(negate=True, string="oct")),
        ("4, >, 1, 0, string, hex", _bt(op=">", string="hex")),
        ("4, <, 5, 0, big", _bt(op="<", value=5)),
        ("4, <, 5, 0, little", _bt(op="<", value=5, endian="little")),
        ("4, <, 5, 0, little, big", _bt(op="<", value=5)),
        ("4, !, 5, 0", _bt(value=5, negate=True)),
        ("\t4 , ! &, 5\t, 0 , little ", _bt(op="&", value=5, negate=True, endian="little")),
        (
            "4,!^,5,0,little,string,relative,hex",
            _bt(op="^", value=5, negate=True, endian="little", string="hex", relative=True),
        ),
        ("23,=,0xffffffffffffffffULL,0,string,oct", _bt(nbytes=23, value=U64 - 1, string="oct")),
        ("4, <, 5, 0, dce", _bt(op="<", value=5, endian="dce")),
        ("1,=,1,6,relative,dce", _bt(nbytes=1, offset=6, relative=True, endian="dce")),
        ("4, <, 5, 0, bitmask 0xf8", _bt(op="<", value=5, bitmask=0xF8)),
        (
            "4, !<, 5, 0, relative,string,hex, big, bitmask 0xf8",
            _bt(op="<", value=5, negate=True, relative=True, string="hex", bitmask=0xF8),
        ),
        ("2, =, var, 13", _bt(nbytes=2, value=None, value_var="var", offset=13)),
        ("2, =, 7, off", _bt(nbytes=2, value=7, offset=None, offset_var="off")),
        ("2,<=,5,0", _bt(nbytes=2, op="<=", value=5)),
        ("2,!>=,5,-3", _bt(nbytes=2, op=">=", value=5, negate=True, offset=-3)),
        ("2,=,-1,0x10", _bt(nbytes=2, value=U64 - 1, offset=16)),  # strtoull wraps; offset base 0
        ("4,=,5,0,string", _bt(value=5, string="auto")),  # no base: strtoull base 0
        ("0,=,0,0", _bt(nbytes=0, value=0)),
        ("8,=,0,0", _bt(nbytes=8, value=0)),
    ],
)
def test_byte_test_valid(text: str, expected: ByteTest) -> None:
    assert parse_byte_test(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4, =, 1, 0, hex",  # base without string
        "9, =, 1, 0",
        "24, =, 0xffffffffffffffffULL, 0, string",
        "4,=,0,0xffffffffffffffffULL",  # offset too big (strict int32)
        "4,=,1,0,string,dce",
        "1,=,1,6,big,dce",
        "1,=,1,6,little,dce",
        "1,=,1,6,string,hex,dce",
        "1,=,1,6,string,oct,dce",
        "1,=,1,6,string,dec,dce",
        "4,=,1",
        "4,==,1,0",
        "4,=!,1,0",
        "4,!!,1,0",
        "4,=,1,0,foo",
        "4,=,1,0,RELATIVE",
        "4,=,1,0,bitmask",
        "4,=,1,0,relative 5",
        "4,=,1,0,bitmask 0x100000000",
        "4,=,_x,0",
        "4,=,1,0,,relative",
        "4,=,1,0,relative,",
        "0x4,=,1,0",
        "-1,=,1,0",
        "4,=,1,0x",
        "4,=,99999999999999999999,0",
        "4,=,1,0," + ",".join(["relative"] * 7),
    ],
)
def test_byte_test_invalid(text: str) -> None:
    with pytest.raises(ByteKeywordError):
        parse_byte_test(text)


@pytest.mark.parametrize("text", ["nb,=,1,0", "0,=,1,0,string,dec", "4,=,1,0,string,hex,dec"])
def test_byte_test_not_implemented(text: str) -> None:
    with pytest.raises(NotImplementedError):
        parse_byte_test(text)


def test_error_index_points_at_the_bad_argument() -> None:
    with pytest.raises(ByteKeywordError) as err:
        parse_byte_test("4, =, 1, 0, foo")
    assert err.value.index == 12
    with pytest.raises(ByteKeywordError) as err:
        parse_byte_jump("4, 0, multiplier 0")
    assert err.value.index == 17
    with pytest.raises(ByteKeywordError) as err:
        parse_byte_test("4, ==, 1, 0")
    assert err.value.index == 3


# --- byte_jump -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4,0", _bj()),
        ("2,0,relative", _bj(nbytes=2, relative=True)),
        (
            " 4,0 , relative , little, string, dec, align, from_beginning",
            _bj(relative=True, endian="little", string="dec", align=True, from_beginning=True),
        ),
        (
            " 4,0 , relative , little, string, dec, align, from_beginning , multiplier 2 , post_offset -16 ",
            _bj(
                relative=True,
                endian="little",
                string="dec",
                align=True,
                from_beginning=True,
                multiplier=2,
                post_offset=-16,
            ),
        ),
        (
            " 4,0 , relative , little, string, dec, align, from_end",
            _bj(relative=True, endian="little", string="dec", align=True, from_end=True),
        ),
        ("0,0, from_end, post_offset -8", _bj(nbytes=0, from_end=True, post_offset=-8)),
        (
            "4,0, align, multiplier 2, post_offset -16,dce",
            _bj(align=True, multiplier=2, post_offset=-16, endian="dce"),
        ),
        ("4,0,dce", _bj(endian="dce")),
        ("4,-65535,multiplier 65535", _bj(offset=-65535, multiplier=65535)),
        ("4,off,relative", _bj(offset=None, offset_var="off", relative=True)),
        ("4,0,STRING,HEX", _bj(string="hex")),
        ("4,0,string", _bj(string="auto")),
        ("4,0,bitmask 0x0ff0", _bj(bitmask=0x0FF0)),
        ("23,0,string,oct", _bj(nbytes=23, string="oct")),
    ],
)
def test_byte_jump_valid(text: str, expected: ByteJump) -> None:
    assert parse_byte_jump(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        " 4,0 , relative , little, dec, align, from_beginning",
        "9, 0",
        "24, 0, string, dec",
        "4, 0xffffffffffffffff",
        "4, 0x10",  # byte_jump offsets are decimal
        "4, 65536",
        "4,0, string, dce",
        "4,0, big, dce",
        "4,0, little, dce",
        "4,0, string, dec, dce",
        "4,0, from_beginning, dce",
        "4,0, from_end, dce",
        " 4,0 , relative , little, string, dec, align, from_beginning, from_end",
        "4,0,multiplier 0",
        "4,0,multiplier 65536",
        "4,0,multiplier",
        "4,0,post_offset 65536",
        "4,0,post_offset 1x",
        "4,0,foo",
        "4,0,Relative",  # Suricata compares 'relative' with case
        "4",
        "4,0," + ",".join(["align"] * 9),
    ],
)
def test_byte_jump_invalid(text: str) -> None:
    with pytest.raises(ByteKeywordError):
        parse_byte_jump(text)


@pytest.mark.parametrize("text", ["len,0", "0,0,string,dec", "4,0,string,hex,oct"])
def test_byte_jump_not_implemented(text: str) -> None:
    with pytest.raises(NotImplementedError):
        parse_byte_jump(text)


# --- byte_extract ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4, 2, one", _be()),
        ("4, 2, one, relative", _be(relative=True)),
        ("4, 2, one, multiplier 10", _be(multiplier=10)),
        ("4, 2, one, relative, multiplier 10", _be(relative=True, multiplier=10)),
        ("4, 2, one, big", _be()),
        ("4, 2, one, little", _be(endian="little")),
        ("4, 2, one, dce", _be(endian="dce")),
        ("4, 2, one, string", _be(string="dec")),
        ("4, 2, one, string, hex", _be(string="hex")),
        ("4, 2, one, string, dec", _be(string="dec")),
        ("4, 2, one, string, oct", _be(string="oct")),
        ("4, 2, one, align 4", _be(align=4)),
        ("4, 2, one, align 2, relative", _be(align=2, relative=True)),
        (
            "4, 2, one, align 4, relative, little, multiplier 2",
            _be(align=4, relative=True, endian="little", multiplier=2),
        ),
        ("2,0,size", _be(nbytes=2, offset=0, name="size")),
        ("1,0,len,relative", _be(nbytes=1, offset=0, name="len", relative=True)),
        ("4,-65535,x", _be(offset=-65535, name="x")),
        ("14,0,x,string,hex", _be(nbytes=14, offset=0, name="x", string="hex")),
        ("20,0,x,string,dec", _be(nbytes=20, offset=0, name="x", string="dec")),
        ("23,0,x,string,oct", _be(nbytes=23, offset=0, name="x", string="oct")),
    ],
)
def test_byte_extract_valid(text: str, expected: ByteExtract) -> None:
    assert parse_byte_extract(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "4",
        "4, 2",
        "4, 65536, one",
        "4, -65536, one",
        "4, 0x2, one",
        "+4, 2, one",
        "256, 2, one, string",
        "9, 2, one",
        "15, 2, one, string, hex",
        "21, 2, one, string",
        "24, 2, one, string, oct",
        "4, 2, one, align 4, align 4",
        "4, 2, one, align 3",
        "4, 2, one, align",
        "4, 2, one, relative, relative",
        "4, 2, one, hex",
        "4, 2, one, hex, string",
        "4, 2, one, string, string",
        "4, 2, one, string, hex, dec",
        "4, 2, one, little, little",
        "4, 2, one, big, little",
        "4, 2, one, string, big",
        "4, 2, one, dce, string",
        "4, 2, one, multiplier",
        "4, 2, one, multiplier 0",
        "4, 2, one, multiplier 65536",
        "4, 2, one, multiplier 2, multiplier 2",
        "4, 2, one, RELATIVE",
        "4, 2, one, relative 3",
        "4, 2, one, bitmask 0xff",
        "4, 2, one, relative, big, multiplier 2, align 2, string, hex",  # six options
    ],
)
def test_byte_extract_invalid(text: str) -> None:
    with pytest.raises(ByteKeywordError):
        parse_byte_extract(text)


def test_byte_extract_not_implemented() -> None:
    with pytest.raises(NotImplementedError):
        parse_byte_extract("4, 2, one, slice")
    with pytest.raises(NotImplementedError):
        parse_byte_extract("0, 2, one, string")


# --- isdataat --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("512", IsDataAt(512, None, False, False)),
        ("50, relative", IsDataAt(50, None, True, False)),
        ("!10,relative", IsDataAt(10, None, True, True)),
        ("!1,relative", IsDataAt(1, None, True, True)),
        ("30 ", IsDataAt(30, None, False, False)),
        ("30 , relative", IsDataAt(30, None, True, False)),
        ("30,relative, rawbytes ", IsDataAt(30, None, True, False)),
        ("0", IsDataAt(0, None, False, False)),
        ("65535", IsDataAt(65535, None, False, False)),
        ("var_name", IsDataAt(None, "var_name", False, False)),
        ("!len,relative", IsDataAt(None, "len", True, True)),
        ("10abc", IsDataAt(10, None, False, False)),  # Suricata reads the leading digits
    ],
)
def test_isdataat_valid(text: str, expected: IsDataAt) -> None:
    assert parse_isdataat(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "!", "65536", "-1", "_x", "10,foo", "10,relative,relative", "10,rawbytes,relative", "! 10", "10,"],
)
def test_isdataat_invalid(text: str) -> None:
    with pytest.raises(ByteKeywordError):
        parse_isdataat(text)


# --- C number parsing, checked against libc --------------------------------------------------------

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.strtoull.restype = ctypes.c_ulonglong
_libc.strtoull.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]


def _libc_strtoull(data: bytes, base: int) -> tuple[int, int] | None:
    """(value, consumed) as Suricata's ByteExtractString sees it, or None where it fails."""
    buf = ctypes.create_string_buffer(data)
    end = ctypes.c_char_p()
    ctypes.set_errno(0)
    value = _libc.strtoull(buf, ctypes.byref(end), base)
    errno = ctypes.get_errno()
    consumed = ctypes.cast(end, ctypes.c_void_p).value - ctypes.addressof(buf)
    if errno != 0 or consumed == 0:
        return None
    return value, consumed


def _random_number_texts(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    alphabet = b"0123456789abcdefABCDEFxX+- \t\x00gz"
    pieces = [b"0x", b"0X", b"-", b"+", b"  ", b"0", b"18446744073709551615", b"18446744073709551616"]
    out = []
    for _ in range(count):
        text = bytearray()
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.3:
                text += rng.choice(pieces)
            else:
                text += bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 5)))
        out.append(bytes(text[:23]))
    return out


_NUMBER_TEXTS = _random_number_texts(7, 400) + [
    b"1234567890",
    b"01777777777777777777777",
    b"02000000000000000000000",
    b"ffffffffffffffff",
    b"0xffffffffffffffff",
    b"0x10000000000000000",
    b"-1",
    b"-18446744073709551616",
    b"0xg",
    b"0x",
    b" \t\n\v\f\r7",
    b"12\x0034",
    b"",
    b"-",
    b"+0",
]


@pytest.mark.parametrize("base", [0, 8, 10, 16])
def test_python_strtoull_matches_libc(base: int) -> None:
    for data in _NUMBER_TEXTS:
        text = data.split(b"\x00")[0].decode("latin-1")
        assert _c_strtoint(text, base, signed=False) == _libc_strtoull(data, base), data


@pytest.mark.parametrize(
    "mode, base", [(bo.STRING_DEC, 10), (bo.STRING_HEX, 16), (bo.STRING_OCT, 8), (bo.STRING_AUTO, 0)]
)
def test_extract_string_matches_libc(mode: int, base: int) -> None:
    for data in _NUMBER_TEXTS:
        for nbytes in range(1, len(data) + 1):
            buf = np.frombuffer(b"#" + data + b"#", dtype=np.uint8)
            ok, value, used = bo.extract_number_consumed(buf, 1, 1 + len(data), nbytes, mode)
            expected = _libc_strtoull(data[:nbytes], base)
            got = (value % U64, used) if ok else None
            assert got == expected, (data, nbytes)


@pytest.mark.parametrize("mode", [bo.STRING_DEC, bo.STRING_HEX, bo.STRING_OCT, bo.STRING_AUTO])
def test_extract_string_bounds(mode: int) -> None:
    buf = np.frombuffer(b"1234567", dtype=np.uint8)
    assert bo.extract_number(buf, 0, 7, 7, mode)[0]
    assert not bo.extract_number(buf, 0, 6, 7, mode)[0]  # runs past end
    assert not bo.extract_number(buf, 3, 7, 5, mode)[0]
    assert not bo.extract_number(buf, -1, 7, 2, mode)[0]
    assert not bo.extract_number(buf, 0, 7, 0, mode)[0]  # Suricata would read an unbounded string
    long = np.frombuffer(b"01777777777777777777777" + b"1" * 7, dtype=np.uint8)
    assert bo.extract_number(long, 0, 30, 23, bo.STRING_OCT) == (True, -1)
    assert not bo.extract_number(long, 0, 30, 24, bo.STRING_OCT)[0]


def test_extract_string_examples() -> None:
    def read(text: bytes, nbytes: int, mode: int):
        buf = np.frombuffer(text, dtype=np.uint8)
        return bo.extract_number_consumed(buf, 0, len(buf), nbytes, mode)

    assert read(b"1337", 4, bo.STRING_DEC) == (True, 1337, 4)
    assert read(b"13ab", 4, bo.STRING_DEC) == (True, 13, 2)  # trailing junk ends the number
    assert read(b"ab", 2, bo.STRING_DEC)[0] is False  # no digit
    assert read(b"1f", 2, bo.STRING_HEX) == (True, 31, 2)
    assert read(b"0x1f", 4, bo.STRING_HEX) == (True, 31, 4)
    assert read(b"0x1f", 4, bo.STRING_AUTO) == (True, 31, 4)
    assert read(b"017", 3, bo.STRING_AUTO) == (True, 15, 3)
    assert read(b"17", 2, bo.STRING_OCT) == (True, 15, 2)
    assert read(b"18446744073709551615", 20, bo.STRING_DEC) == (True, -1, 20)
    assert read(b"18446744073709551616", 20, bo.STRING_DEC)[0] is False  # overflow


@pytest.mark.parametrize("mode", [bo.ENDIAN_BIG, bo.ENDIAN_LITTLE])
def test_extract_binary_every_width(mode: int) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, size=40, dtype=np.uint8)
    data[:8] = 0xFF
    byteorder = "little" if mode == bo.ENDIAN_LITTLE else "big"
    for nbytes in range(0, 9):
        for pos in range(0, 40 - nbytes + 1):
            ok, value, used = bo.extract_number_consumed(data, pos, 40, nbytes, mode)
            expected = int.from_bytes(bytes(data[pos : pos + nbytes]), byteorder)
            assert ok and used == nbytes and value % U64 == expected
        # truncated: the read would cross end (end below the array size too)
        assert not bo.extract_number(data, 40 - nbytes + 1, 40, nbytes, mode)[0] or nbytes == 0
        assert not bo.extract_number(data, 10, 10 + nbytes - 1, nbytes, mode)[0] or nbytes == 0
        assert not bo.extract_number(data, -1, 40, nbytes, mode)[0]
    assert not bo.extract_number(data, 0, 40, 9, mode)[0]


def test_encode_mode_and_op_code() -> None:
    assert bo.encode_mode("big", None) == bo.ENDIAN_BIG
    assert bo.encode_mode("little", None) == bo.ENDIAN_LITTLE
    assert bo.encode_mode("little", "hex") == bo.STRING_HEX
    assert bo.encode_mode("big", "auto") == bo.STRING_AUTO
    with pytest.raises(NotImplementedError):
        bo.encode_mode("dce", None)
    with pytest.raises(ValueError):
        bo.encode_mode("middle", None)
    assert {bo.op_code(op) for op in ["=", "<", ">", "<=", ">=", "&", "^"]} == set(range(7))
    with pytest.raises(ValueError):
        bo.op_code("!=")
    assert bo.to_int64(U64 - 1) == -1 and bo.to_int64(5) == 5
    with pytest.raises(ValueError):
        bo.to_int64(U64)


_BIG = U64 - 2  # above 2**63: must compare as unsigned


@pytest.mark.parametrize(
    "value, op, operand, expected",
    [
        (5, "=", 5, True),
        (5, "=", 6, False),
        (5, "<", 6, True),
        (6, "<", 6, False),
        (7, ">", 6, True),
        (6, ">", 6, False),
        (6, "<=", 6, True),
        (7, "<=", 6, False),
        (6, ">=", 6, True),
        (5, ">=", 6, False),
        (0b1010, "&", 0b0010, True),
        (0b1010, "&", 0b0101, False),
        (5, "^", 4, True),
        (5, "^", 5, False),
        (_BIG, ">", 1, True),
        (1, "<", _BIG, True),
        (_BIG, "<", _BIG + 1, True),
    ],
)
def test_compare_every_operator(value: int, op: str, operand: int, expected: bool) -> None:
    code = bo.op_code(op)
    a, b = bo.to_int64(value), bo.to_int64(operand)
    assert bo.compare(a, code, b, False) is expected
    assert bo.compare(a, code, b, True) is (not expected)


def test_apply_bitmask() -> None:
    assert bo.apply_bitmask(0x1234, 0xF8) == (0x1234 & 0xF8) >> 3
    assert bo.apply_bitmask(0xFF, 0xF0) == 0xF
    assert bo.apply_bitmask(0xFF, 0x01) == 0xFF & 1
    assert bo.apply_bitmask(0x0F, 0xF0) == 0
    assert bo.apply_bitmask(0xFF, 0) == 0
    assert bo.apply_bitmask(-1, bo.to_int64(1 << 63)) == 1


def test_scale_and_align() -> None:
    assert bo.scale_and_align(5, 1, 0) == 5
    assert bo.scale_and_align(5, 3, 4) == 16
    assert bo.scale_and_align(5, 1, 2) == 6
    assert bo.scale_and_align(8, 1, 4) == 8


def test_read_position() -> None:
    assert bo.read_position(10, 0, 2, False, 4, False) == (True, 2)
    assert bo.read_position(10, 3, 2, True, 4, False) == (True, 5)
    assert bo.read_position(10, 3, -3, True, 4, False) == (True, 0)
    assert bo.read_position(10, 3, -4, True, 4, False)[0] is False  # before the buffer
    assert bo.read_position(10, 6, 0, True, 4, False) == (True, 6)
    assert bo.read_position(10, 7, 0, True, 4, False)[0] is False  # past the end
    assert bo.read_position(0, 0, 0, False, 0, True)[0] is False  # empty buffer
    assert bo.read_position(10, 10, 0, True, 0, True) == (True, 10)  # byte_jump:0 at the end
    assert bo.read_position(10, 10, 0, True, 0, False)[0] is False


def test_jump_target() -> None:
    # "2,0": 2 bytes read at 0 with value 3 -> 0 + 2 + 3
    assert bo.jump_target(20, 0, 2, 3, 1, False, 0, False, False) == (True, 5)
    assert bo.jump_target(20, 0, 2, 3, 2, True, 0, False, False) == (True, 10)  # 6 aligned to 8
    assert bo.jump_target(20, 0, 2, 3, 1, False, -1, False, False) == (True, 4)
    assert bo.jump_target(20, 4, 2, 3, 1, False, 0, True, False) == (True, 3)
    assert bo.jump_target(20, 4, 0, 0, 1, False, -8, False, True) == (True, 12)  # from_end, -8
    assert bo.jump_target(20, 0, 2, 18, 1, False, 0, False, False) == (True, 20)  # end is allowed
    assert bo.jump_target(20, 0, 2, 19, 1, False, 0, False, False)[0] is False
    assert bo.jump_target(20, 4, 2, 0, 1, False, -50, False, False) == (True, 0)  # clamped to start


def test_isdataat_documented_tables() -> None:
    # a 32 byte payload
    assert bo.isdataat_match(32, 0, 31, False, False)
    assert not bo.isdataat_match(32, 0, 32, False, False)
    assert bo.isdataat_match(32, 0, 31, True, False)
    assert bo.isdataat_match(32, 0, 32, True, False)
    assert not bo.isdataat_match(32, 0, 33, True, False)
    # "abcdefgh" after content "c" (previous match ends at 3)
    assert bo.isdataat_match(8, 3, 4, True, False)
    assert bo.isdataat_match(8, 3, 5, True, False)
    assert not bo.isdataat_match(8, 3, 6, True, False)
    # negation, and the isdataat:!1,relative "ends with" case
    assert bo.isdataat_match(8, 8, 1, True, True)
    assert not bo.isdataat_match(8, 7, 1, True, True)
    assert not bo.isdataat_match(8, 0, bo.VARIABLE_SIZE_LIMIT, True, False)
