"""The native capture reader against dpkt, scapy and tshark on real captures, and on
synthetic captures that exercise each format feature on its own."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dpi.capture import CaptureError, open_capture
from dpi.capture.native import NativeReader
from dpi.capture.pcapng import INT64_MAX, tsresol_to_ns, units_to_ns
from dpi.capture.writer import (
    pcap_header,
    pcap_record,
    pcapng_block,
    pcapng_enhanced_packet,
    pcapng_interface,
    pcapng_obsolete_packet,
    pcapng_section_header,
    pcapng_simple_packet,
)
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA
PCAPS = DATA / "pcaps"

# Files where dpkt's answer is wrong, with the reason; for these the test first checks that
# dpkt really does differ (so the list cannot go stale) and then checks against tshark.
DPKT_WRONG_TIMESTAMPS = {
    "zeek/pcapng-multi-interface.pcapng": "dpkt applies interface 0's if_tsresol (ns) to interface 1 (us)",
    "ndpi/sites.pcapng": "dpkt applies interface 0's if_tsresol (ns) to all 22 interfaces, some in us",
}
# Damaged on purpose: file -> byte offset where the damaged record starts. dpkt stops with
# NeedData here too (reporting where its read ended, not where the record starts).
DAMAGED = {"dpkt/truncated-dns-2.pcap": 240}


def shared_captures() -> list[str]:
    if not PCAPS.is_dir():
        return []
    files = [p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng")]
    return sorted(str(p.relative_to(PCAPS)) for p in files)


CAPTURES = shared_captures()


def need_shared(name: str) -> Path:
    path = PCAPS / name
    if not path.is_file():
        pytest.skip(f"shared capture {path} is absent (../shared/data beside the repo)")
    return path


class Columns:
    """Every batch of a reader, concatenated, and its frames as bytes."""

    def __init__(self, reader, path: Path):
        parts = list(reader.batches())
        self.reader = reader
        self.batches = parts
        self.frames = [b.frame(i) for b in parts for i in range(len(b))]
        for name in ("offset", "caplen", "wirelen", "ts_ns", "linktype", "number"):
            joined = np.concatenate([getattr(b, name) for b in parts]) if parts else np.zeros(0, np.int64)
            setattr(self, name, joined)
        self.error = reader.error

    def __len__(self):
        return len(self.frames)


def read(path: Path, reader: str = "native", batch_size: int = 65536) -> Columns:
    return Columns(open_capture(str(path), reader=reader, batch_size=batch_size), path)


def tshark_rows(path: Path) -> tuple[list[tuple[int, int, int, int]], str]:
    """(frame.number, ns since the epoch, cap_len, len) per packet, and tshark's stderr."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    fields = ["frame.number", "frame.time_epoch", "frame.cap_len", "frame.len"]
    cmd = ["tshark", "-r", str(path), "-T", "fields"] + [a for f in fields for a in ("-e", f)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = []
    for line in done.stdout.splitlines():
        number, epoch, caplen, wirelen = line.split("\t")
        seconds, _, fraction = epoch.partition(".")
        rows.append(
            (int(number), int(seconds) * 10**9 + int(fraction.ljust(9, "0")), int(caplen), int(wirelen))
        )
    if done.returncode != 0 and not rows:
        pytest.skip(f"tshark cannot read {path}: {done.stderr.strip()}")
    return rows, done.stderr


def native_rows(cols: Columns) -> list[tuple[int, int, int, int]]:
    return list(
        zip(
            cols.number.tolist(),
            cols.ts_ns.tolist(),
            cols.caplen.tolist(),
            cols.wirelen.tolist(),
            strict=True,
        )
    )


# ---------------------------------------------------------------------------------------
# real captures


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", CAPTURES or ["<no shared captures>"])
def test_agrees_with_dpkt_scapy_and_tshark(name):
    path = need_shared(name)
    native = read(path)
    size = path.stat().st_size

    # shape of the columns, whatever the reference says
    n = len(native)
    assert native.number.tolist() == list(range(1, n + 1))
    assert (native.offset >= 0).all() and (native.offset + native.caplen <= size).all()
    for b in native.batches:
        assert b.buffer.shape[0] == size and not b.buffer.flags.writeable

    dpkt = read(path, "dpkt")
    assert len(dpkt) == n, f"packet count: native {n}, dpkt {len(dpkt)}"
    assert native.frames == dpkt.frames

    if name in DPKT_WRONG_TIMESTAMPS:
        # dpkt is wrong here (see the reason); tshark is the reference
        assert np.abs(native.ts_ns - dpkt.ts_ns).max() > 10**6, f"dpkt no longer wrong on {name}: drop it"
        rows, _ = tshark_rows(path)
        assert native_rows(native) == rows
    elif native.reader.info.format == "pcap" and native.reader.info.interfaces[0].tsresol_ns_num == 1:
        # nanosecond pcap: dpkt gives a Decimal, exact
        assert native.ts_ns.tolist() == dpkt.ts_ns.tolist()
    else:
        # dpkt gives float seconds, good to a fraction of a microsecond
        assert (np.abs(native.ts_ns - dpkt.ts_ns) < 1000).all()
        microsecond = native.ts_ns % 1000 == 0
        rounded = np.round(dpkt.ts_ns / 1000).astype(np.int64) * 1000
        assert (native.ts_ns[microsecond] == rounded[microsecond]).all()

    # dpkt does not give the wire length: scapy does (scapy cuts frames at 65535 bytes,
    # so only the count and the wire length are compared)
    scapy = read(path, "scapy")
    assert len(scapy) == n
    assert native.wirelen.tolist() == scapy.wirelen.tolist()
    assert (native.caplen == [len(f) for f in native.frames]).all()

    if name in DAMAGED:
        assert dpkt.error is not None
        assert native.error is not None
        assert native.error.offset == DAMAGED[name] and native.error.packet == n + 1
        assert native.error.path == str(path)
        rows, stderr = tshark_rows(path)
        assert "cut short" in stderr
        assert native_rows(native) == rows
    else:
        assert native.error is None, native.error
        assert dpkt.error is None


@pytest.mark.needs_shared
def test_tshark_agrees_on_multi_interface_timestamps():
    # the exact nanoseconds tshark prints, for a file with a 10^-6 and a 10^-9 interface
    path = need_shared("zeek/pcapng-multi-interface.pcapng")
    native = read(path)
    rows, _ = tshark_rows(path)
    assert native_rows(native) == rows
    info = native.reader.info
    assert info.format == "pcapng" and info.sections == 1
    assert [(i.tsresol_ns_num, i.tsresol_ns_den) for i in info.interfaces] == [(1, 1), (1000, 1)]


@pytest.mark.needs_shared
def test_timestamp_past_2106():
    path = need_shared("tcpdump/time-2106-overflow.pcapng")
    native = read(path)
    assert native.ts_ns.tolist() == [2**32 * 10**9]
    assert native_rows(native) == tshark_rows(path)[0]


@pytest.mark.needs_shared
def test_pcap_linktype_upper_bits_are_masked():
    path = need_shared("tcpdump/bad-ipv4-version.pcap")
    assert struct.unpack_from("<I", path.read_bytes(), 20)[0] == 0x30000001
    native = read(path)
    assert native.linktype.tolist() == [1] * len(native)
    assert native.reader.info.interfaces[0].linktype == 1


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", ["zeek/empty.pcap", "tcpdump/empty.pcapng"])
def test_shared_empty_captures(name):
    native = read(need_shared(name))
    assert len(native) == 0 and native.batches == [] and native.error is None


@pytest.mark.needs_shared
def test_batches_of_three_match_one_batch_on_a_real_capture():
    path = need_shared("ndpi/sites.pcapng")
    whole, small = read(path), read(path, batch_size=3)
    assert len(whole.batches) == 1 and all(len(b) <= 3 for b in small.batches)
    for name in ("offset", "caplen", "wirelen", "ts_ns", "linktype", "number"):
        assert getattr(whole, name).tolist() == getattr(small, name).tolist()


# ---------------------------------------------------------------------------------------
# synthetic captures


def write(tmp_path: Path, data: bytes, name: str = "synthetic.pcapng") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FRAMES = [
    bytes((i + k) % 256 for k in range(length))
    for i, length in ((0, 60), (7, 1), (3, 0), (11, 97), (5, 1514))
]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path, big_endian, nanosecond):
    frac_per_s = 10**9 if nanosecond else 10**6
    times = [(1_700_000_000 + i, (i * 123_457) % frac_per_s) for i in range(len(FRAMES))]
    data = pcap_header(big_endian=big_endian, nanosecond=nanosecond, snaplen=65535, linktype=113)
    offsets = []
    for (sec, frac), frame in zip(times, FRAMES, strict=True):
        offsets.append(len(data) + 16)
        data += pcap_record(sec, frac, frame, wirelen=len(frame) + 4, big_endian=big_endian)
    path = write(tmp_path, data, "synthetic.pcap")
    native = read(path)
    assert native.frames == FRAMES
    assert native.offset.tolist() == offsets
    assert native.wirelen.tolist() == [len(f) + 4 for f in FRAMES]
    assert native.ts_ns.tolist() == [s * 10**9 + f * (10**9 // frac_per_s) for s, f in times]
    assert native.linktype.tolist() == [113] * len(FRAMES)
    info = native.reader.info
    assert info.format == "pcap" and info.sections == 1
    assert info.interfaces[0].snaplen == 65535
    assert info.interfaces[0].tsresol_ns_num == (1 if nanosecond else 1000)
    if shutil.which("tshark"):
        assert native_rows(native) == tshark_rows(path)[0]


def test_pcap_caplen_sanity(tmp_path):
    # a snaplen above 262144 allows captured lengths up to it; beyond the limit is damage
    big = bytes(270_000)
    ok = write(tmp_path, pcap_header(snaplen=300_000) + pcap_record(1, 2, big), "ok.pcap")
    native = read(ok)
    assert native.caplen.tolist() == [270_000] and native.error is None
    data = pcap_header(snaplen=1500) + pcap_record(1, 2, b"x" * 10) + pcap_record(3, 4, big)
    bad = write(tmp_path, data, "bad.pcap")
    native = read(bad)
    assert native.frames == [b"x" * 10]
    assert native.error.offset == 24 + 16 + 10 and native.error.packet == 2
    assert "270000" in native.error.reason


def two_interface_section(big_endian: bool) -> tuple[bytes, list[tuple[int, int, int, bytes]]]:
    """A section with a 10^-9 s interface and a 2^-20 s interface with if_tsoffset -100 s.

    Returns the bytes and the expected (ts_ns, linktype, wirelen, frame) per packet.
    """
    data = pcapng_section_header(big_endian=big_endian)
    data += pcapng_interface(1, 0, tsresol=9, name="eth0", big_endian=big_endian)
    data += pcapng_interface(101, 0, tsresol=0x80 | 20, tsoffset=-100, big_endian=big_endian)
    expected = []
    rng = random.Random(5)
    for i, frame in enumerate(FRAMES):
        iface = i % 2
        units = rng.randrange(2**52)  # below 2^32 s in both units
        data += pcapng_enhanced_packet(iface, units, frame, wirelen=len(frame) + i, big_endian=big_endian)
        if iface == 0:
            ts = units
        else:
            ts = int(Fraction(units * 10**9, 2**20)) - 100 * 10**9  # floor: both are positive
        expected.append((ts, 101 if iface else 1, len(frame) + i, frame))
    return data, expected


def test_pcapng_two_interfaces_resolutions_and_offset(tmp_path):
    data, expected = two_interface_section(big_endian=False)
    native = read(write(tmp_path, data))
    assert native.frames == [e[3] for e in expected]
    assert native.ts_ns.tolist() == [e[0] for e in expected]
    assert native.linktype.tolist() == [e[1] for e in expected]
    assert native.wirelen.tolist() == [e[2] for e in expected]
    ifaces = native.reader.info.interfaces
    assert [(i.linktype, i.tsresol_ns_num, i.tsresol_ns_den, i.tsoffset_s) for i in ifaces] == [
        (1, 1, 1, 0),
        (101, 1953125, 2048, -100),  # 10^9 / 2^20 ns, reduced
    ]
    assert ifaces[0].name == "eth0"


def test_pcapng_sections_of_both_byte_orders(tmp_path):
    first, expected_first = two_interface_section(big_endian=False)
    second, expected_second = two_interface_section(big_endian=True)
    # a third section whose only interface is interface 0: ids restart per section
    third = pcapng_section_header(big_endian=True) + pcapng_interface(228, 0, big_endian=True)
    third += pcapng_enhanced_packet(0, 5_000_000, b"third", big_endian=True)
    path = write(tmp_path, first + second + third)
    native = read(path)
    expected = expected_first + expected_second + [(5 * 10**9, 228, 5, b"third")]
    assert native.frames == [e[3] for e in expected]
    assert native.ts_ns.tolist() == [e[0] for e in expected]
    assert native.linktype.tolist() == [e[1] for e in expected]
    assert native.reader.info.sections == 3 and len(native.reader.info.interfaces) == 5
    assert native.error is None
    if shutil.which("tshark"):
        # tshark reads the same file the same way
        rows, _ = tshark_rows(path)
        assert [r[:3] for r in native_rows(native)] == [r[:3] for r in rows]


def test_pcapng_interface_ids_do_not_carry_across_sections(tmp_path):
    data, _ = two_interface_section(big_endian=False)
    second = pcapng_section_header(big_endian=True) + pcapng_interface(1, 0, big_endian=True)
    second += pcapng_enhanced_packet(0, 1, b"ok", big_endian=True)
    bad_at = len(data) + len(second)
    second += pcapng_enhanced_packet(1, 1, b"interface 1 belongs to the first section", big_endian=True)
    native = read(write(tmp_path, data + second))
    assert len(native) == len(FRAMES) + 1
    assert native.error.offset == bad_at and native.error.packet == len(FRAMES) + 2
    assert "interface id 1" in native.error.reason


def test_pcapng_simple_obsolete_and_unknown_blocks(tmp_path):
    data = pcapng_section_header() + pcapng_interface(1, 64, tsresol=3)
    data += pcapng_block(0x00000BAD, b"unknown block type")
    # the block holds 10 of 100 bytes plus 2 bytes of padding, which an SPB cannot tell
    # from data: the captured length is min(origlen, data space, snaplen) = 12
    data += pcapng_simple_packet(b"s" * 10, wirelen=100)
    data += pcapng_block(0x40000BAD, b"custom block, copied")
    data += pcapng_simple_packet(b"t" * 80, wirelen=200)  # snaplen 64 cuts it
    data += pcapng_simple_packet(b"u" * 7)  # origlen 7: the padding is not data
    data += pcapng_block(5, bytes(20))  # interface statistics
    data += pcapng_obsolete_packet(0, 12_345, b"obsolete", wirelen=9)
    data += pcapng_block(4, bytes(4))  # name resolution
    native = read(write(tmp_path, data))
    assert native.frames == [b"s" * 10 + b"\0\0", b"t" * 64, b"u" * 7, b"obsolete"]
    assert native.wirelen.tolist() == [100, 200, 7, 9]
    assert native.ts_ns.tolist() == [0, 0, 0, 12_345 * 10**6]
    assert native.linktype.tolist() == [1] * 4
    assert native.error is None


def test_pcapng_options_overrun_and_bad_resolution(tmp_path):
    head = pcapng_section_header() + pcapng_interface(1)
    good = pcapng_enhanced_packet(0, 1, b"good")
    # if_tsresol 2^-127 s cannot be held as num/den nanoseconds below 2^63
    bad_resol = pcapng_interface(1, tsresol=0x80 | 127)
    native = read(write(tmp_path, head + good + bad_resol, "a.pcapng"))
    assert native.frames == [b"good"] and native.error.offset == len(head + good)
    assert "if_tsresol" in native.error.reason
    # an option whose length runs past the block
    body = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 2, 200) + b"name"
    native = read(write(tmp_path, head + good + pcapng_block(1, body), "b.pcapng"))
    assert native.frames == [b"good"] and "runs past" in native.error.reason


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda blk: blk[:4] + struct.pack("<I", 30) + blk[8:], "multiple of 4"),
        (lambda blk: blk[:4] + struct.pack("<I", 8) + blk[8:], "too small"),
        (lambda blk: blk[:-4] + struct.pack("<I", 999), "trailing block length"),
        (lambda blk: blk[:20] + struct.pack("<I", 100) + blk[24:], "larger than the block"),
        (lambda blk: blk[:4] + struct.pack("<I", 1 << 20) + blk[8:], "past the end"),
    ],
)
def test_pcapng_damaged_block(tmp_path, damage, reason):
    head = pcapng_section_header() + pcapng_interface(1)
    good = pcapng_enhanced_packet(0, 1, b"good") + pcapng_block(0x1234, b"skip me")
    bad = damage(pcapng_enhanced_packet(0, 2, b"bad!"))
    native = read(write(tmp_path, head + good + bad + good))
    assert native.frames == [b"good"]
    assert native.error.offset == len(head + good) and native.error.packet == 2
    assert reason in native.error.reason
    assert str(tmp_path) in str(native.error)


def test_batching_across_boundaries(tmp_path):
    # sections and interfaces in the middle of batches, and batches smaller than them
    first, _ = two_interface_section(big_endian=False)
    second, _ = two_interface_section(big_endian=True)
    path = write(tmp_path, first + pcapng_simple_packet(b"spb") + second + first)
    whole = read(path)
    for size in (1, 2, 3, 4, 7):
        small = read(path, batch_size=size)
        assert [len(b) for b in small.batches] == [size] * (len(whole) // size) + (
            [len(whole) % size] if len(whole) % size else []
        )
        for name in ("offset", "caplen", "wirelen", "ts_ns", "linktype", "number"):
            assert getattr(small, name).tolist() == getattr(whole, name).tolist(), (size, name)
        assert small.frames == whole.frames


def test_header_only_captures(tmp_path):
    for name, data in [
        ("a.pcap", pcap_header(big_endian=True)),
        ("b.pcapng", pcapng_section_header()),
        ("c.pcapng", pcapng_section_header(big_endian=True) + pcapng_interface(1, big_endian=True)),
    ]:
        native = read(write(tmp_path, data, name))
        assert native.batches == [] and native.error is None
        assert native.reader.info.format == name.split(".")[1]


@pytest.mark.parametrize(
    "data, where",
    [
        (b"", "too short"),
        (b"\xd4\xc3", "too short"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap"),
        (pcap_header()[:20], "too short"),
        (pcapng_section_header()[:20], "past the end"),
        (pcapng_section_header()[:8] + b"\x01\x02\x03\x04" + pcapng_section_header()[12:], "byte-order"),
        (pcapng_section_header()[:12] + b"\x02\x00" + pcapng_section_header()[14:], "version 2"),
    ],
)
def test_not_a_capture_raises_before_yielding(tmp_path, data, where):
    path = write(tmp_path, data, "not-a-capture.bin")
    reader = NativeReader(str(path))
    with pytest.raises(CaptureError) as exc:
        reader.batches()
    assert where in str(exc.value) and exc.value.path == str(path) and exc.value.offset == 0


def test_batch_size_must_be_positive(tmp_path):
    with pytest.raises(ValueError):
        NativeReader(str(tmp_path / "x.pcap"), batch_size=0)


def test_exact_timestamp_conversion():
    # units_to_ns against Python's big integers, on the fast and the long-multiplication path
    rng = random.Random(1)
    codes = [0, 3, 6, 9, 12, 27, 0x80, 0x80 | 10, 0x80 | 20, 0x80 | 40, 0x80 | 60, 0x80 | 63]
    for code in codes:
        num, den = tsresol_to_ns(code)
        assert Fraction(num, den) == Fraction(10**9, (2 if code & 0x80 else 10) ** (code & 0x7F))
        slow = num * den > INT64_MAX
        for _ in range(200):
            units = rng.choice([rng.randrange(2**64), rng.randrange(2**40), den - 1, 2**64 - 1, 0])
            for offset_s in (0, -100, 3):
                # the conversion saturates at INT64_MAX before the offset is added
                base = units * num // den
                want = INT64_MAX if base > INT64_MAX else min(base + offset_s * 10**9, INT64_MAX)
                got = units_to_ns(np.uint64(units), np.uint64(num), np.uint64(den), slow, offset_s * 10**9)
                assert got == want, (code, units, offset_s)
