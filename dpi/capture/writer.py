"""Building pcap and pcapng bytes, field by field: synthetic captures for tests and generators.

Every builder takes the byte order explicitly, so files of either order (and pcapng files
whose sections differ in order) can be written. Lengths default to the frame's own and can
be overridden to build damaged records on purpose.
"""

from __future__ import annotations

import struct

from dpi.capture.pcapng import (
    BT_EPB,
    BT_IDB,
    BT_PB,
    BT_SHB,
    BT_SPB,
    OPT_ENDOFOPT,
    OPT_IF_NAME,
    OPT_IF_TSOFFSET,
    OPT_IF_TSRESOL,
)

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D


def _order(big_endian: bool) -> str:
    return ">" if big_endian else "<"


def _pad4(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)


def pcap_header(
    *, big_endian: bool = False, nanosecond: bool = False, snaplen: int = 262144, linktype: int = 1
) -> bytes:
    magic = PCAP_MAGIC_NS if nanosecond else PCAP_MAGIC_US
    return struct.pack(_order(big_endian) + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(
    ts_sec: int,
    ts_frac: int,
    frame: bytes,
    *,
    wirelen: int | None = None,
    caplen: int | None = None,
    big_endian: bool = False,
) -> bytes:
    """One record; ts_frac is in the file's unit (us or ns)."""
    caplen = len(frame) if caplen is None else caplen
    wirelen = len(frame) if wirelen is None else wirelen
    return struct.pack(_order(big_endian) + "IIII", ts_sec, ts_frac, caplen, wirelen) + frame


def pcapng_block(btype: int, body: bytes, *, big_endian: bool = False) -> bytes:
    body = _pad4(body)
    total = 12 + len(body)
    o = _order(big_endian)
    return struct.pack(o + "II", btype, total) + body + struct.pack(o + "I", total)


def pcapng_option(code: int, value: bytes, *, big_endian: bool = False) -> bytes:
    return struct.pack(_order(big_endian) + "HH", code, len(value)) + _pad4(value)


def pcapng_section_header(*, big_endian: bool = False, section_length: int = -1) -> bytes:
    body = struct.pack(_order(big_endian) + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, section_length)
    return pcapng_block(BT_SHB, body, big_endian=big_endian)


def pcapng_interface(
    linktype: int,
    snaplen: int = 0,
    *,
    tsresol: int | None = None,
    tsoffset: int | None = None,
    name: str | None = None,
    big_endian: bool = False,
) -> bytes:
    """An IDB; tsresol is the raw option byte (MSB 0: 10^-n s, MSB 1: 2^-n s), tsoffset seconds."""
    o = _order(big_endian)
    options = b""
    if name is not None:
        options += pcapng_option(OPT_IF_NAME, name.encode(), big_endian=big_endian)
    if tsresol is not None:
        options += pcapng_option(OPT_IF_TSRESOL, bytes([tsresol]), big_endian=big_endian)
    if tsoffset is not None:
        options += pcapng_option(OPT_IF_TSOFFSET, struct.pack(o + "q", tsoffset), big_endian=big_endian)
    if options:
        options += pcapng_option(OPT_ENDOFOPT, b"", big_endian=big_endian)
    body = struct.pack(o + "HHI", linktype, 0, snaplen) + options
    return pcapng_block(BT_IDB, body, big_endian=big_endian)


def pcapng_enhanced_packet(
    interface: int,
    ts_units: int,
    frame: bytes,
    *,
    wirelen: int | None = None,
    caplen: int | None = None,
    big_endian: bool = False,
) -> bytes:
    """An EPB; ts_units counts the interface's timestamp unit."""
    caplen = len(frame) if caplen is None else caplen
    wirelen = len(frame) if wirelen is None else wirelen
    head = struct.pack(
        _order(big_endian) + "IIIII", interface, ts_units >> 32, ts_units & 0xFFFFFFFF, caplen, wirelen
    )
    return pcapng_block(BT_EPB, head + frame, big_endian=big_endian)


def pcapng_obsolete_packet(
    interface: int, ts_units: int, frame: bytes, *, wirelen: int | None = None, big_endian: bool = False
) -> bytes:
    """The obsolete Packet Block (type 2): a 16-bit interface id and a drops count."""
    wirelen = len(frame) if wirelen is None else wirelen
    head = struct.pack(
        _order(big_endian) + "HHIIII",
        interface,
        0,
        ts_units >> 32,
        ts_units & 0xFFFFFFFF,
        len(frame),
        wirelen,
    )
    return pcapng_block(BT_PB, head + frame, big_endian=big_endian)


def pcapng_simple_packet(frame: bytes, *, wirelen: int | None = None, big_endian: bool = False) -> bytes:
    """An SPB: no interface id, no timestamp, no captured length (it follows from the block)."""
    wirelen = len(frame) if wirelen is None else wirelen
    return pcapng_block(BT_SPB, struct.pack(_order(big_endian) + "I", wirelen) + frame, big_endian=big_endian)
