"""pcapng: packet blocks indexed by a Numba kernel, section and interface blocks parsed in Python.

A file is a run of blocks (type, total length, body, total length again). A section header
block (SHB) starts a section with its own byte order and its own interface list; interface
description blocks (IDB) add interfaces with a link type, a snapshot length and a timestamp
resolution and offset. Packets come in enhanced (EPB), simple (SPB) and the obsolete packet
blocks (PB); every other block type is skipped by its length. SHBs and IDBs are rare, so the
kernel stops at them and Python reads them: the kernel loop only ever sees packets.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
from numba import njit

from dpi.capture.errors import CaptureError
from dpi.capture.fields import read_u16, read_u32
from dpi.capture.reader import Interface
from dpi.capture.stops import (
    STOP_BAD_BLOCK_LENGTH,
    STOP_BATCH_FULL,
    STOP_CAPLEN_OVER_BLOCK,
    STOP_END,
    STOP_INTERFACE_BLOCK,
    STOP_NO_SUCH_INTERFACE,
    STOP_SECTION_HEADER,
    STOP_TRAILER_MISMATCH,
    STOP_TRUNCATED_BLOCK,
    STOP_TRUNCATED_HEADER,
    damage_message,
    is_damage,
)

BT_SHB = 0x0A0D0D0A  # a palindrome: recognisable before the byte order is known
BT_IDB = 0x00000001
BT_PB = 0x00000002  # obsolete packet block
BT_SPB = 0x00000003
BT_EPB = 0x00000006

BYTE_ORDER_MAGIC_LE = b"\x4d\x3c\x2b\x1a"
BYTE_ORDER_MAGIC_BE = b"\x1a\x2b\x3c\x4d"

MIN_BLOCK_LEN = 12  # type, length, trailing length
MIN_SHB_LEN = 28
MIN_IDB_LEN = 20
MIN_EPB_LEN = 32  # also the obsolete packet block's
MIN_SPB_LEN = 16
EPB_DATA = 28  # packet data starts this far into an EPB or PB
SPB_DATA = 12

OPT_ENDOFOPT = 0
OPT_IF_NAME = 2
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
DEFAULT_TSRESOL = 6  # 10^-6 s when an IDB has no if_tsresol

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


@njit(cache=True, inline="always")
def _mul_div_exact(a, b, d):
    """floor(a * b / d) for uint64 a < d <= 2**63, without the 128-bit product.

    Long multiplication over b's bits, keeping the quotient and a remainder below d;
    only used for timestamp units where a * b could pass 2**64.
    """
    one = np.uint64(1)
    q = np.uint64(0)
    rem = np.uint64(0)
    for i in range(63, -1, -1):
        q = q << one
        rem = rem << one
        if rem >= d:
            rem -= d
            q += one
        if (b >> np.uint64(i)) & one:
            rem += a
            if rem >= d:
                rem -= d
                q += one
    return q


@njit(cache=True, inline="always")
def units_to_ns(units, num, den, exact_slow, offset_ns):
    """A timestamp of ``units`` (uint64) of num/den ns each, plus offset_ns, in int64 ns.

    Exact integer arithmetic (floor to the nanosecond); saturates at the int64 limits,
    which are past the year 2262.
    """
    top = np.uint64(INT64_MAX)
    q = units // den
    r = units % den
    if q > top // num:
        return INT64_MAX
    whole = q * num
    if exact_slow:
        frac = _mul_div_exact(r, num, den)
    else:
        frac = (r * num) // den
    if whole > top - frac:
        return INT64_MAX
    ts = np.int64(whole + frac)
    if offset_ns > 0 and ts > INT64_MAX - offset_ns:
        return INT64_MAX
    return ts + offset_ns


@njit(cache=True, nogil=True)
def index_pcapng(
    buf,
    pos,
    big_endian,
    if_linktype,
    if_snaplen,
    if_num,
    if_den,
    if_slow,
    if_offset_ns,
    n_if,
    out_offset,
    out_caplen,
    out_wirelen,
    out_ts,
    out_linktype,
    n,
):
    """Index packet blocks from byte ``pos`` into the out_* columns from row ``n``.

    Stops when the columns are full, at the end of the file, before an SHB or IDB (for
    Python to read), or at a damaged block. Returns (rows filled, position, STOP_*, detail).
    The interface arrays describe the current section's first n_if interfaces.
    """
    end = buf.shape[0]
    cap = out_offset.shape[0]
    while n < cap:
        left = end - pos
        if left == 0:
            return n, pos, STOP_END, 0
        if left < MIN_BLOCK_LEN:
            return n, pos, STOP_TRUNCATED_HEADER, left
        btype = read_u32(buf, pos, big_endian)
        if btype == BT_SHB:
            return n, pos, STOP_SECTION_HEADER, 0
        blen = read_u32(buf, pos + 4, big_endian)
        if blen < MIN_BLOCK_LEN or blen % 4 != 0:
            return n, pos, STOP_BAD_BLOCK_LENGTH, blen
        if blen > left:
            return n, pos, STOP_TRUNCATED_BLOCK, blen
        trailer = read_u32(buf, pos + blen - 4, big_endian)
        if trailer != blen:
            return n, pos, STOP_TRAILER_MISMATCH, trailer
        if btype == BT_IDB:
            return n, pos, STOP_INTERFACE_BLOCK, 0
        if btype == BT_EPB or btype == BT_PB:
            if blen < MIN_EPB_LEN:
                return n, pos, STOP_BAD_BLOCK_LENGTH, blen
            if btype == BT_EPB:
                iface = read_u32(buf, pos + 8, big_endian)
            else:
                iface = read_u16(buf, pos + 8, big_endian)
            if iface >= n_if:
                return n, pos, STOP_NO_SUCH_INTERFACE, iface
            ts_high = read_u32(buf, pos + 12, big_endian)
            ts_low = read_u32(buf, pos + 16, big_endian)
            caplen = read_u32(buf, pos + 20, big_endian)
            wirelen = read_u32(buf, pos + 24, big_endian)
            # blen - 32 is a multiple of 4, so this also covers the padding
            if caplen > blen - MIN_EPB_LEN:
                return n, pos, STOP_CAPLEN_OVER_BLOCK, caplen
            units = (np.uint64(ts_high) << np.uint64(32)) | np.uint64(ts_low)
            out_offset[n] = pos + EPB_DATA
            out_caplen[n] = caplen
            out_wirelen[n] = wirelen
            out_ts[n] = units_to_ns(units, if_num[iface], if_den[iface], if_slow[iface], if_offset_ns[iface])
            out_linktype[n] = if_linktype[iface]
            n += 1
        elif btype == BT_SPB:
            if blen < MIN_SPB_LEN:
                return n, pos, STOP_BAD_BLOCK_LENGTH, blen
            if n_if == 0:
                return n, pos, STOP_NO_SUCH_INTERFACE, 0
            wirelen = read_u32(buf, pos + 8, big_endian)
            caplen = min(wirelen, blen - MIN_SPB_LEN)
            if if_snaplen[0] > 0:
                caplen = min(caplen, if_snaplen[0])
            out_offset[n] = pos + SPB_DATA
            out_caplen[n] = caplen
            out_wirelen[n] = wirelen
            out_ts[n] = 0  # an SPB carries no timestamp
            out_linktype[n] = if_linktype[0]
            n += 1
        pos += blen
    return n, pos, STOP_BATCH_FULL, 0


def tsresol_to_ns(code: int) -> tuple[int, int]:
    """if_tsresol -> the unit as num/den nanoseconds (MSB 0: 10^-n s, MSB 1: 2^-n s)."""
    exponent = code & 0x7F
    per_second = (2 if code & 0x80 else 10) ** exponent
    unit = Fraction(1_000_000_000, per_second)
    return unit.numerator, unit.denominator


class _InterfaceTable:
    """The current section's interfaces as arrays for the kernel (grown by doubling)."""

    def __init__(self):
        self.count = 0
        self._alloc(8)

    def _alloc(self, capacity: int):
        old = [
            getattr(self, name, None) for name in ("linktype", "snaplen", "num", "den", "slow", "offset_ns")
        ]
        self.linktype = np.zeros(capacity, dtype=np.int64)
        self.snaplen = np.zeros(capacity, dtype=np.int64)
        self.num = np.ones(capacity, dtype=np.uint64)
        self.den = np.ones(capacity, dtype=np.uint64)
        self.slow = np.zeros(capacity, dtype=np.bool_)
        self.offset_ns = np.zeros(capacity, dtype=np.int64)
        new = (self.linktype, self.snaplen, self.num, self.den, self.slow, self.offset_ns)
        for before, after in zip(old, new, strict=True):
            if before is not None:
                after[: self.count] = before[: self.count]

    def clear(self):
        self.count = 0

    def add(self, iface: Interface):
        if self.count == self.linktype.shape[0]:
            self._alloc(2 * self.count)
        i = self.count
        self.linktype[i] = iface.linktype
        self.snaplen[i] = iface.snaplen
        self.num[i] = iface.tsresol_ns_num
        self.den[i] = iface.tsresol_ns_den
        # r * num with r < den must fit in a uint64 for the fast path
        self.slow[i] = iface.tsresol_ns_num * iface.tsresol_ns_den > INT64_MAX
        self.offset_ns[i] = min(max(iface.tsoffset_s * 1_000_000_000, INT64_MIN), INT64_MAX)
        self.count += 1


class PcapngIndexer:
    """Walks a mapped pcapng file batch by batch; see PcapIndexer for the protocol."""

    format = "pcapng"
    min_record_len = MIN_BLOCK_LEN

    def __init__(self, path: str, buf: np.ndarray):
        self.path = path
        self.buf = buf
        self.interfaces: list[Interface] = []
        self.sections = 0
        self.big_endian = False
        self.pos = 0
        self.finished = False
        self.damage: tuple[int, str] | None = None
        self._table = _InterfaceTable()
        damage = self._section_header()
        if damage is not None:
            raise CaptureError(path, damage[0], damage[1])

    def fill(self, out_offset, out_caplen, out_wirelen, out_ts, out_linktype) -> int:
        t = self._table
        n = 0
        while True:
            n, self.pos, stop, detail = index_pcapng(
                self.buf,
                self.pos,
                self.big_endian,
                t.linktype,
                t.snaplen,
                t.num,
                t.den,
                t.slow,
                t.offset_ns,
                t.count,
                out_offset,
                out_caplen,
                out_wirelen,
                out_ts,
                out_linktype,
                n,
            )
            if stop == STOP_SECTION_HEADER:
                damage = self._section_header()
            elif stop == STOP_INTERFACE_BLOCK:
                damage = self._interface_block()
            else:
                if stop != STOP_BATCH_FULL:
                    self.finished = True
                if is_damage(stop):
                    self.damage = (self.pos, damage_message(stop, detail))
                return n
            if damage is not None:
                self.damage = damage
                self.finished = True
                return n

    def _u16(self, pos: int) -> int:
        return struct.unpack_from(">H" if self.big_endian else "<H", self.buf, pos)[0]

    def _u32(self, pos: int) -> int:
        return struct.unpack_from(">I" if self.big_endian else "<I", self.buf, pos)[0]

    def _section_header(self) -> tuple[int, str] | None:
        """Read the SHB at self.pos: it sets the byte order and starts an empty interface list."""
        pos = self.pos
        left = self.buf.shape[0] - pos
        if left < MIN_BLOCK_LEN:
            return pos, f"file ends inside a section header block ({left} bytes left)"
        bom = bytes(self.buf[pos + 8 : pos + 12])
        if bom not in (BYTE_ORDER_MAGIC_LE, BYTE_ORDER_MAGIC_BE):
            return pos, f"section header has an unknown byte-order magic {bom.hex()}"
        self.big_endian = bom == BYTE_ORDER_MAGIC_BE
        blen = self._u32(pos + 4)
        if blen < MIN_SHB_LEN or blen % 4 != 0:
            return pos, damage_message(STOP_BAD_BLOCK_LENGTH, blen)
        if blen > left:
            return pos, damage_message(STOP_TRUNCATED_BLOCK, blen)
        trailer = self._u32(pos + blen - 4)
        if trailer != blen:
            return pos, damage_message(STOP_TRAILER_MISMATCH, trailer)
        major = self._u16(pos + 12)
        if major != 1:
            return pos, f"unsupported pcapng version {major}.{self._u16(pos + 14)}"
        self.sections += 1
        self._table.clear()
        self.pos = pos + blen
        return None

    def _interface_block(self) -> tuple[int, str] | None:
        """Read the IDB at self.pos (its length and trailer were checked by the kernel)."""
        pos = self.pos
        blen = self._u32(pos + 4)
        if blen < MIN_IDB_LEN:
            return pos, damage_message(STOP_BAD_BLOCK_LENGTH, blen)
        tsresol = DEFAULT_TSRESOL
        tsoffset = 0
        name = ""
        opt = pos + 16
        opt_end = pos + blen - 4
        while opt + 4 <= opt_end:
            code = self._u16(opt)
            length = self._u16(opt + 2)
            if code == OPT_ENDOFOPT:
                break
            value_end = opt + 4 + length
            if value_end > opt_end:
                return pos, f"interface option {code} of length {length} runs past its block"
            value = bytes(self.buf[opt + 4 : value_end])
            if code == OPT_IF_TSRESOL and length >= 1:
                tsresol = value[0]
            elif code == OPT_IF_TSOFFSET and length >= 8:
                tsoffset = struct.unpack(">q" if self.big_endian else "<q", value[:8])[0]
            elif code == OPT_IF_NAME:
                name = value.split(b"\0", 1)[0].decode("utf-8", "replace")
            opt = value_end + (-length % 4)
        num, den = tsresol_to_ns(tsresol)
        if den > INT64_MAX:
            return pos, f"if_tsresol 0x{tsresol:02x} is finer than this reader supports"
        iface = Interface(
            linktype=self._u16(pos + 8),
            snaplen=self._u32(pos + 12),
            tsresol_ns_num=num,
            tsresol_ns_den=den,
            tsoffset_s=tsoffset,
            name=name,
        )
        self.interfaces.append(iface)
        self._table.add(iface)
        self.pos = pos + blen
        return None
