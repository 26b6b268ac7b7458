"""Reference readers over dpkt and scapy, behind the native reader's interface.

They are slow (a Python object per packet) and exist to cross-check the native reader and
to serve as peers in benchmarks. Frames are copied into one contiguous buffer per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from dpi.capture.batch import PacketBatch
from dpi.capture.errors import CaptureError
from dpi.capture.reader import CaptureInfo, CaptureReader, Interface

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def sniff_format(path: str) -> str:
    """'pcap' or 'pcapng' from the first four bytes; CaptureError otherwise."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in PCAP_MAGICS:
        return "pcap"
    if head == PCAPNG_MAGIC:
        return "pcapng"
    if len(head) < 4:
        raise CaptureError(path, 0, f"file too short for a capture header ({len(head)} bytes)")
    raise CaptureError(path, 0, f"not a pcap or pcapng file (magic {head.hex()})")


def _pack(rows: list[tuple[int, int, int, int, bytes]], first_number: int) -> PacketBatch:
    """rows of (ts_ns, caplen, wirelen, linktype, frame) -> one PacketBatch."""
    n = len(rows)
    sizes = np.fromiter((len(r[4]) for r in rows), dtype=np.int64, count=n)
    offset = np.zeros(n, dtype=np.int64)
    if n:
        offset[1:] = np.cumsum(sizes)[:-1]
    buffer = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.uint8)
    return PacketBatch(
        buffer=buffer,
        offset=offset,
        caplen=sizes,
        wirelen=np.fromiter((r[2] for r in rows), dtype=np.int64, count=n),
        ts_ns=np.fromiter((r[0] for r in rows), dtype=np.int64, count=n),
        linktype=np.fromiter((r[3] for r in rows), dtype=np.int64, count=n),
        number=np.arange(first_number, first_number + n, dtype=np.int64),
    )


class _RowBatcher:
    """Groups per-packet rows into batches; shared by the reference readers."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def run(self, rows: Iterable[tuple[int, int, int, int, bytes]]) -> Iterator[PacketBatch]:
        pending: list = []
        number = 1
        for row in rows:
            pending.append(row)
            if len(pending) == self.batch_size:
                yield _pack(pending, number)
                number += len(pending)
                pending = []
        if pending:
            yield _pack(pending, number)


class DpktReader(CaptureReader):
    """dpkt's pcap/pcapng readers. Known dpkt behaviours: its pcapng reader applies the
    first interface's timestamp resolution to every interface, it returns damaged
    trailing records without complaint, and for pcapng it gives no wire length."""

    name = "dpkt"

    def batches(self) -> Iterator[PacketBatch]:
        import dpkt

        fmt = sniff_format(self.path)
        self.info = CaptureInfo(path=self.path, format=fmt)
        fh = open(self.path, "rb")
        try:
            reader = dpkt.pcap.Reader(fh) if fmt == "pcap" else dpkt.pcapng.Reader(fh)
            linktype = int(reader.datalink())
            self.info.interfaces = [Interface(linktype=linktype, snaplen=int(reader.snaplen))]

            def rows():
                try:
                    for ts, buf, wirelen in _dpkt_records(reader, fmt):
                        yield (_ts_to_ns(ts), len(buf), wirelen, linktype, bytes(buf))
                except (dpkt.NeedData, dpkt.UnpackError, ValueError) as exc:
                    self.error = CaptureError(self.path, fh.tell(), f"dpkt: {exc!r}")

            yield from _RowBatcher(self.batch_size).run(rows())
        finally:
            fh.close()


def _dpkt_records(reader, fmt: str):
    """(timestamp, frame, wire length) per record. dpkt's pcap iterator drops the record's
    original length, so for pcap walk the records with dpkt's own header class as its
    iterator does, keeping it; dpkt's pcapng iterator keeps none (the captured length
    stands in there)."""
    if fmt != "pcap":
        for ts, buf in reader:
            yield ts, buf, len(buf)
        return
    header_cls = reader._Reader__ph  # the record-header class dpkt chose for this file
    fh = reader._Reader__f
    while True:
        raw = fh.read(header_cls.__hdr_len__)
        if not raw:
            return
        hdr = header_cls(raw)
        buf = fh.read(hdr.caplen)
        yield hdr.tv_sec + (hdr.tv_usec / reader._divisor), buf, int(hdr.len)


def _ts_to_ns(ts) -> int:
    """dpkt gives float seconds (or a Decimal for nanosecond pcap); floats carry only
    about 0.1 us of precision at today's epoch, so compare these at microsecond level."""
    from decimal import Decimal

    if isinstance(ts, Decimal):
        return int(ts * 1_000_000_000)
    return int(round(float(ts) * 1e9))


class ScapyReader(CaptureReader):
    """scapy's RawPcapReader / RawPcapNgReader."""

    name = "scapy"

    def batches(self) -> Iterator[PacketBatch]:
        from scapy.utils import RawPcapNgReader, RawPcapReader

        fmt = sniff_format(self.path)
        self.info = CaptureInfo(path=self.path, format=fmt)
        reader = RawPcapReader(self.path) if fmt == "pcap" else RawPcapNgReader(self.path)
        try:

            def rows():
                try:
                    while True:
                        # iterating the reader would cut frames at scapy's MTU (65535)
                        try:
                            data, meta = reader._read_packet(size=1 << 20)
                        except EOFError:
                            break
                        yield _scapy_row(fmt, reader, data, meta)
                except Exception as exc:  # scapy raises a variety of errors on damage
                    self.error = CaptureError(self.path, reader.f.tell(), f"scapy: {exc!r}")

            yield from _RowBatcher(self.batch_size).run(rows())
        finally:
            reader.close()


def _scapy_row(fmt, reader, data, meta):
    if fmt == "pcap":
        ts_ns = meta.sec * 1_000_000_000 + meta.usec * (1 if reader.nano else 1000)
        return (ts_ns, len(data), meta.wirelen, int(reader.linktype), bytes(data))
    # pcapng: tshigh/tslow in units of tsresol (seconds per unit)
    ts = (meta.tshigh << 32) | meta.tslow
    ts_ns = int(ts * 1_000_000_000 // meta.tsresol) if meta.tsresol else ts
    linktype = int(meta.linktype) if getattr(meta, "linktype", None) is not None else int(reader.linktype)
    wirelen = meta.wirelen if meta.wirelen is not None else len(data)
    return (ts_ns, len(data), wirelen, linktype, bytes(data))
