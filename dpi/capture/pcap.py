"""Classic pcap: the file header (parsed in Python, once) and the record indexer (Numba).

Layout: a 24-byte file header (magic, version, thiszone, sigfigs, snaplen, link type),
then records of a 16-byte header (ts_sec, ts_frac, incl_len, orig_len) and incl_len bytes
of frame. The magic's byte order is the byte order of every field; its value says
whether ts_frac counts microseconds or nanoseconds.
"""

from __future__ import annotations

import struct

import numpy as np
from numba import njit

from dpi.capture.errors import CaptureError
from dpi.capture.fields import read_u32
from dpi.capture.reader import Interface
from dpi.capture.stops import (
    STOP_BATCH_FULL,
    STOP_CAPLEN_INSANE,
    STOP_END,
    STOP_TRUNCATED_DATA,
    STOP_TRUNCATED_HEADER,
    damage_message,
    is_damage,
)

FILE_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
# Larger captured lengths than this are corrupt unless the file's snaplen allows them
# (libpcap's own limit for most link types).
MAX_SANE_CAPLEN = 262144
# The link type field's upper bits carry FCS information (pcap spec); the type is below.
LINKTYPE_MASK = 0x03FFFFFF

# magic bytes as they appear in the file -> (big endian, nanosecond timestamps)
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": (False, False),
    b"\xa1\xb2\xc3\xd4": (True, False),
    b"\x4d\x3c\xb2\xa1": (False, True),
    b"\xa1\xb2\x3c\x4d": (True, True),
}


class PcapHeader:
    """The fields of the pcap file header that the indexer needs."""

    def __init__(self, path: str, head: bytes):
        if len(head) < FILE_HEADER_LEN:
            raise CaptureError(path, 0, f"file too short for a pcap header ({len(head)} of 24 bytes)")
        order = _MAGICS.get(head[:4])
        if order is None:
            raise CaptureError(path, 0, f"not a pcap file (magic {head[:4].hex()})")
        self.big_endian, self.nanosecond = order
        fmt = ">HHiIII" if self.big_endian else "<HHiIII"
        _major, _minor, _thiszone, _sigfigs, self.snaplen, raw_linktype = struct.unpack(
            fmt, head[4:FILE_HEADER_LEN]
        )
        self.linktype = raw_linktype & LINKTYPE_MASK
        self.caplen_limit = max(self.snaplen, MAX_SANE_CAPLEN)

    def interface(self) -> Interface:
        return Interface(
            linktype=self.linktype,
            snaplen=self.snaplen,
            tsresol_ns_num=1 if self.nanosecond else 1000,
            tsresol_ns_den=1,
        )


@njit(cache=True, nogil=True)
def index_pcap(
    buf, pos, big_endian, ns_per_frac, caplen_limit, out_offset, out_caplen, out_wirelen, out_ts, n
):
    """Index records from byte ``pos`` into the out_* columns from row ``n`` until they are
    full, the file ends, or a record is damaged.

    Returns (rows filled, position of the next unread record, STOP_* reason, detail value).
    Every field is bounds-checked against the buffer before it is read.
    """
    end = buf.shape[0]
    cap = out_offset.shape[0]
    while n < cap:
        left = end - pos
        if left == 0:
            return n, pos, STOP_END, 0
        if left < RECORD_HEADER_LEN:
            return n, pos, STOP_TRUNCATED_HEADER, left
        ts_sec = read_u32(buf, pos, big_endian)
        ts_frac = read_u32(buf, pos + 4, big_endian)
        caplen = read_u32(buf, pos + 8, big_endian)
        wirelen = read_u32(buf, pos + 12, big_endian)
        if caplen > caplen_limit:
            return n, pos, STOP_CAPLEN_INSANE, caplen
        if caplen > left - RECORD_HEADER_LEN:
            return n, pos, STOP_TRUNCATED_DATA, caplen
        out_offset[n] = pos + RECORD_HEADER_LEN
        out_caplen[n] = caplen
        out_wirelen[n] = wirelen
        # ts_sec < 2**32, so this stays below 2**63: exact and without overflow
        out_ts[n] = ts_sec * 1_000_000_000 + ts_frac * ns_per_frac
        pos += RECORD_HEADER_LEN + caplen
        n += 1
    return n, pos, STOP_BATCH_FULL, 0


class PcapIndexer:
    """Walks a mapped pcap file batch by batch; between batches the state is a position.

    After each ``fill``: ``finished`` is True once nothing more can be read, and ``damage``
    holds (byte offset, reason) when reading stopped at a damaged record.
    """

    format = "pcap"
    min_record_len = RECORD_HEADER_LEN

    def __init__(self, path: str, buf: np.ndarray):
        self.path = path
        self.buf = buf
        self.header = PcapHeader(path, bytes(buf[:FILE_HEADER_LEN]))
        self.interfaces = [self.header.interface()]
        self.sections = 1
        self.pos = FILE_HEADER_LEN
        self.finished = False
        self.damage: tuple[int, str] | None = None

    def fill(self, out_offset, out_caplen, out_wirelen, out_ts, out_linktype) -> int:
        """Index records into the columns (all of one length); returns the rows filled."""
        h = self.header
        n, self.pos, stop, detail = index_pcap(
            self.buf,
            self.pos,
            h.big_endian,
            1 if h.nanosecond else 1000,
            h.caplen_limit,
            out_offset,
            out_caplen,
            out_wirelen,
            out_ts,
            0,
        )
        out_linktype[:n] = h.linktype
        if stop != STOP_BATCH_FULL:
            self.finished = True
        if is_damage(stop):
            self.damage = (self.pos, damage_message(stop, detail))
        return n
