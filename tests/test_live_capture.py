"""Live capture from an AF_PACKET TPACKET_V3 ring.

Without root: the ring indexer on blocks built by hand (columns, VLAN tags written back,
every kind of damage, a bounds-checked fuzz campaign), taking blocks from a ring in an
array, BPF compilation against tcpdump's, and the errors for bad filters, missing libpcap
and missing interfaces.

As root (CI runs them so): a network namespace holding a veth pair; frames sent on one end
at a low rate with a plain AF_PACKET socket are captured on the other end by LiveCapture,
every one byte for byte, with sane timestamps and the kernel's counters read (no drops);
the kernel applies BPF filters; a capture keeps reading after dropping privileges to
nobody while new AF_PACKET sockets are refused; `run_live` writes the alerts and a stats
event with the kernel counters, and ends cleanly on SIGTERM. Frames the kernel sends by
itself on the pair (IPv6 router solicitations, MLD reports) are told apart by a marker or
filtered out with BPF.
"""

from __future__ import annotations

import io
import json
import os
import queue
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from dpi.capture import bpf as bpf_module
from dpi.capture.bpf import BpfInstruction, LibpcapMissingError, compile_bpf
from dpi.capture.live import LiveCapture, LiveCaptureError
from dpi.capture.netns import NetnsError, entered, veth_namespace
from dpi.capture.ring import (
    BLOCK_HEADER_LEN,
    STOP_BATCH_FULL,
    STOP_END,
    STOP_RING_BAD_BLOCK_LEN,
    STOP_RING_BAD_FIRST_OFFSET,
    STOP_RING_BAD_MAC_OFFSET,
    STOP_RING_BAD_NEXT_OFFSET,
    STOP_RING_BAD_NSEC,
    STOP_RING_BLOCK_TOO_SMALL,
    STOP_RING_FRAME_PAST_BLOCK,
    STOP_RING_TOO_MANY_PACKETS,
    STOP_RING_TRUNCATED_PACKET_HEADER,
    TP_STATUS_KERNEL,
    TP_STATUS_USER,
    TP_STATUS_VLAN_TPID_VALID,
    TP_STATUS_VLAN_VALID,
    BlockRing,
    block_columns,
    index_block,
    ring_damage_message,
)
from dpi.capture.writer import pcap_header
from tests.conftest import REPO, run_bounds_checked

# Where the kernel puts an Ethernet frame in a V3 record: TPACKET_ALIGN(48 + sockaddr_ll 20
# + 16) + PACKET_RESERVE 4 - 14, which leaves room to write a VLAN tag back
MAC = 86
DST, SRC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
MARKER = b"DPI-LIVE"
MARKER_TYPE, OTHER_TYPE = 0x88B5, 0x88B6  # IEEE local experimental ethertypes
SEND_GAP_S = 0.001  # a low rate: the test is about completeness, not speed


# -- hand-built TPACKET_V3 blocks ------------------------------------------------------------------


def packet_record(
    frame: bytes,
    sec: int = 1_700_000_000,
    nsec: int = 0,
    *,
    wirelen: int | None = None,
    status: int = 0,
    vlan_tci: int = 0,
    vlan_tpid: int = 0,
    mac: int = MAC,
) -> bytes:
    """One tpacket3_hdr record (its tp_next_offset is filled in by build_block), 8-aligned."""
    wirelen = len(frame) if wirelen is None else wirelen
    head = struct.pack(
        "<IIIIIIHHIIHH8x", 0, sec, nsec, len(frame), wirelen, status, mac, mac + 14, 0, vlan_tci, vlan_tpid, 0
    )
    body = head + bytes(mac - len(head)) + frame
    return body + bytes(-len(body) % 8)


def build_block(
    records: list[bytes],
    space: int = 4096,
    *,
    status: int = TP_STATUS_USER,
    num_pkts: int | None = None,
    first: int = BLOCK_HEADER_LEN,
    blk_len: int | None = None,
) -> bytearray:
    """A block as the kernel hands it over: header, then the records chained by tp_next_offset
    (the last one's is 0). Header fields can be overridden to damage it."""
    body = bytearray()
    for i, rec in enumerate(records):
        rec = bytearray(rec)
        struct.pack_into("<I", rec, 0, len(rec) if i + 1 < len(records) else 0)
        body += rec
    used = first + len(body)
    head = struct.pack(
        "<IIIIIIQIIII",
        3,
        0,
        status,
        len(records) if num_pkts is None else num_pkts,
        first,
        used if blk_len is None else blk_len,
        1,
        0,
        0,
        0,
        0,
    )
    block = bytearray(head) + bytes(first - len(head)) + body
    assert len(block) <= space
    return block + bytes(space - len(block))


def frame_of(n: int, size: int = 60) -> bytes:
    head = DST + SRC + struct.pack("!H", MARKER_TYPE) + MARKER + struct.pack("!I", n)
    return head + bytes((n + k) % 251 for k in range(size - len(head)))


def index(buf, start: int = 0, space: int | None = None, restore_vlan: bool = True, rows: int = 16):
    """Run the kernel; returns (frames, wirelens, timestamps, stop, detail)."""
    buf = np.frombuffer(bytes(buf), dtype=np.uint8).copy()
    space = buf.shape[0] - start if space is None else space
    offset, caplen, wirelen, ts = block_columns(rows)
    n, stop, detail = index_block(buf, start, space, restore_vlan, offset, caplen, wirelen, ts, 0)
    frames = [bytes(buf[offset[i] : offset[i] + caplen[i]]) for i in range(n)]
    return frames, wirelen[:n].tolist(), ts[:n].tolist(), stop, detail


def test_block_columns_and_frames():
    frames = [frame_of(1, 60), frame_of(2, 1514), frame_of(3, 200)]
    records = [
        packet_record(frames[0], 1_700_000_000, 5),
        packet_record(frames[1], 1_700_000_001, 999_999_999),
        packet_record(frames[2], 1_700_000_002, 0, wirelen=9000),  # captured short of the wire
    ]
    # the block is the second of a ring: offsets are into the whole buffer
    ring = bytes(4096) + build_block(records)
    got, wirelen, ts, stop, _ = index(ring, start=4096, space=4096)
    assert stop == STOP_END
    assert got == frames
    assert wirelen == [60, 1514, 9000]
    assert ts == [1_700_000_000_000_000_005, 1_700_000_001_999_999_999, 1_700_000_002_000_000_000]


def test_empty_block():
    got, _, _, stop, _ = index(build_block([]))
    assert (got, stop) == ([], STOP_END)


@pytest.mark.parametrize(
    "status, tpid, tag",
    [
        (TP_STATUS_VLAN_VALID, 0, b"\x81\x00\x20\x05"),
        (TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, 0x88A8, b"\x88\xa8\x20\x05"),
        (TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, 0x8100, b"\x81\x00\x20\x05"),
    ],
)
def test_vlan_tag_written_back(status, tpid, tag):
    untagged = frame_of(7, 100)
    record = packet_record(untagged, status=status, vlan_tci=0x2005, vlan_tpid=tpid)
    got, wirelen, _, stop, _ = index(build_block([record, packet_record(frame_of(8))]))
    assert stop == STOP_END
    assert got[0] == untagged[:12] + tag + untagged[12:]
    assert wirelen == [104, 60]
    assert got[1] == frame_of(8)
    # without restore_vlan (indexing the ring itself) the frame is left as the kernel wrote it
    plain, _, _, _, _ = index(build_block([record]), restore_vlan=False)
    assert plain == [untagged]


def test_vlan_tag_not_written_into_a_frame_shorter_than_its_addresses():
    short = DST + SRC[:4]
    got, _, _, stop, _ = index(build_block([packet_record(short, status=TP_STATUS_VLAN_VALID)]))
    assert (got, stop) == ([short], STOP_END)


def _three_records() -> list[bytes]:
    return [packet_record(frame_of(i, 100), nsec=i) for i in range(3)]


def _set_u32(block: bytearray, at: int, value: int) -> bytearray:
    struct.pack_into("<I", block, at, value)
    return block


REC = len(_three_records()[0])  # each record's length (all three are the same size)
P1 = BLOCK_HEADER_LEN + REC  # where the second record starts


def _three_with(at: int, value: int) -> bytearray:
    return _set_u32(build_block(_three_records()), at, value)


# name: (block, space given to the kernel (None: all of it), stop, detail, packets kept)
DAMAGE = {
    "block length past the block": (_three_with(20, 5000), None, STOP_RING_BAD_BLOCK_LEN, 5000, 0),
    "block length before the first packet": (_three_with(20, 40), None, STOP_RING_BAD_FIRST_OFFSET, 48, 0),
    "first packet inside the header": (_three_with(16, 16), None, STOP_RING_BAD_FIRST_OFFSET, 16, 0),
    "packet count too large": (_three_with(12, 10**6), None, STOP_RING_TOO_MANY_PACKETS, 10**6, 0),
    "space smaller than a header": (build_block([]), 40, STOP_RING_BLOCK_TOO_SMALL, 40, 0),
    "frame past the block length": (_three_with(P1 + 12, 3000), None, STOP_RING_FRAME_PAST_BLOCK, 3000, 1),
    "tp_mac inside the record header": (_three_with(P1 + 24, 20), None, STOP_RING_BAD_MAC_OFFSET, 20, 1),
    "next offset zero before the last packet": (_three_with(P1, 0), None, STOP_RING_BAD_NEXT_OFFSET, 0, 2),
    "next offset inside the frame": (_three_with(P1, 90), None, STOP_RING_BAD_NEXT_OFFSET, 90, 2),
    "next offset past the block length": (
        _three_with(P1, 0xFFFFFFF0), None, STOP_RING_TRUNCATED_PACKET_HEADER, P1 + 0xFFFFFFF0, 2
    ),
    "nanoseconds a billion": (_three_with(P1 + 8, 10**9), None, STOP_RING_BAD_NSEC, 10**9, 1),
    "no room before tp_mac for a VLAN tag": (
        build_block([packet_record(frame_of(1), status=TP_STATUS_VLAN_VALID, mac=50)]),
        None, STOP_RING_BAD_MAC_OFFSET, 50, 0,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DAMAGE))
def test_damaged_block(name):
    block, space, want_stop, want_detail, kept = DAMAGE[name]
    got, _, _, stop, detail = index(block, space=space)
    assert (stop, detail) == (want_stop, want_detail), ring_damage_message(stop, detail)
    assert got == [frame_of(i, 100) for i in range(kept)]
    assert str(detail) in ring_damage_message(stop, detail)


def test_columns_full_is_not_damage():
    _, _, _, stop, detail = index(build_block(_three_records()), rows=2)
    assert (stop, detail) == (STOP_BATCH_FULL, 2)


QINQ_STATUS = TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID


def taken_frames(taken) -> list[bytes]:
    return [bytes(taken.buffer[o : o + c]) for o, c in zip(taken.offset, taken.caplen, strict=True)]


def ring_of(blocks: list[bytearray], block_size: int = 4096) -> np.ndarray:
    return np.frombuffer(b"".join(bytes(b) for b in blocks), dtype=np.uint8).copy()


def test_block_ring_takes_handed_over_blocks_in_order_and_gives_them_back():
    size = 4096
    frames = [frame_of(i, 80 + i) for i in range(8)]
    blocks = [
        build_block([packet_record(frames[0]), packet_record(frames[1])]),
        build_block([packet_record(frames[2])]),
        build_block([packet_record(frames[3])], status=TP_STATUS_KERNEL),  # still being filled
        build_block([packet_record(frames[4])]),
    ]
    ring = BlockRing(ring_of(blocks), size, 4)
    assert ring.ready(100) == [0, 1]
    taken = ring.take([0, 1])
    assert taken_frames(taken) == frames[:3]
    assert not taken.buffer.flags.writeable and taken.damage == []
    # both went back to the kernel; block 2 is not ready, so block 3 waits behind it
    assert [int(ring.words[b * size // 4 + 2]) for b in range(4)] == [0, 0, 0, TP_STATUS_USER]
    assert ring.ready(100) == []
    # the kernel hands over 2, then wraps round to 0 (with a damaged block at 3)
    for b, block in (
        (2, build_block([packet_record(frames[5])])),
        (3, build_block([packet_record(frames[6])], num_pkts=99)),
        (0, build_block([packet_record(frames[7])])),
    ):
        ring.ring[b * size : (b + 1) * size] = np.frombuffer(bytes(block), dtype=np.uint8)
    assert ring.ready(1000) == [2, 3, 0]
    taken = ring.take([2, 3, 0])
    assert taken_frames(taken) == [frames[5], frames[7]]
    assert taken.damage == [(3, STOP_RING_TOO_MANY_PACKETS, 99, 1)]
    assert ring.next_block == 1
    # ready() stops adding blocks once their packets fill a batch
    for b in range(4):
        ring.ring[b * size : (b + 1) * size] = np.frombuffer(bytes(build_block(_three_records())), np.uint8)
    assert ring.ready(4) == [1, 2]


def fuzz_ring_blocks(rounds: int, seed: int) -> int:
    """Random damage to a valid block; the kernel must stop cleanly and every row it fills
    must lie inside the block. Returns how many mutants still gave packets."""
    records = [
        packet_record(frame_of(1, 60)),
        packet_record(frame_of(2, 300), status=TP_STATUS_VLAN_VALID, vlan_tci=5),
        packet_record(
            frame_of(3, 64), status=TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID, vlan_tpid=0x88A8
        ),
        packet_record(DST + SRC[:3]),  # shorter than its addresses: no tag goes back in
    ]
    base = build_block(records, space=1024)
    used = struct.unpack_from("<I", base, 20)[0]
    rng = random.Random(seed)
    readable = 0
    for _ in range(rounds):
        mutant = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(0, used)
            if rng.random() < 0.5:
                mutant[pos] = rng.randrange(256)
            else:
                value = rng.choice([0, 1, 47, 48, 86, 0xFFFF, 0xFFFFFFFF, rng.randrange(2**32)])
                struct.pack_into("<I", mutant, min(pos, len(mutant) - 4), value)
        prefix = rng.randrange(16)
        space = rng.choice([len(mutant), rng.randrange(len(mutant) + 1)])
        buf = np.frombuffer(bytes(prefix) + bytes(mutant), dtype=np.uint8).copy()
        cols = block_columns(8)
        n, stop, _ = index_block(buf, prefix, space, rng.random() < 0.8, *cols, 0)
        offset, caplen = cols[0][:n], cols[1][:n]
        assert 0 <= n <= 8
        assert np.all(offset >= prefix + BLOCK_HEADER_LEN) and np.all(offset + caplen <= prefix + space)
        readable += n > 0
    return readable


def test_ring_fuzz():
    assert fuzz_ring_blocks(3000, seed=6) > 300


def test_ring_fuzz_bounds_checked(tmp_path):
    code = (
        "import runpy, numba\n"
        "assert numba.config.BOUNDSCHECK\n"
        f"ns = runpy.run_path({str(Path(__file__).resolve())!r})\n"
        "print('fuzz ok', ns['fuzz_ring_blocks'](3000, 7))\n"
    )
    done = run_bounds_checked(tmp_path, ["-c", code], timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    assert "fuzz ok" in done.stdout


# -- BPF -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expression", ["udp", "tcp port 80 and not host 10.0.0.1", "ether proto 0x88b5"])
def test_compile_bpf_as_tcpdump_does(tmp_path, expression):
    if shutil.which("tcpdump") is None:
        pytest.skip("tcpdump is not installed (it is the reference compiler here)")
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(pcap_header(snaplen=262144, linktype=1))
    out = subprocess.run(
        ["tcpdump", "-ddd", "-r", str(empty), expression], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    count, lines = int(out[0]), [line for line in out[1:] if line.strip()]
    want = [BpfInstruction(*map(int, line.split())) for line in lines]
    assert len(want) == count
    assert compile_bpf(expression) == want


def test_bad_bpf_expression_names_it_and_libpcap_reason():
    with pytest.raises(ValueError, match=r"^BPF filter 'udp and port banana' does not compile: .*banana"):
        compile_bpf("udp and port banana")  # libpcap says: unknown port 'banana'
    with pytest.raises(ValueError, match=r"^BPF filter 'ether proto' does not compile: .*syntax error"):
        compile_bpf("ether proto")


def test_libpcap_missing_is_said_clearly(monkeypatch):
    monkeypatch.setattr(bpf_module, "_libpcap", None)
    monkeypatch.setattr(bpf_module, "_LIBPCAP_NAMES", ("libpcap-that-does-not-exist.so.9",))
    monkeypatch.setattr(bpf_module.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(LibpcapMissingError, match="libpcap.*could not be loaded"):
        compile_bpf("udp")


def test_missing_interface_is_named():
    with pytest.raises(LiveCaptureError, match="^dpi-no-such0: no such network interface$"):
        LiveCapture("dpi-no-such0")


@cache
def can_open_packet_sockets() -> bool:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except PermissionError:
        return False
    return True


def test_without_cap_net_raw_is_said_clearly():
    if can_open_packet_sockets():
        pytest.skip("this process has CAP_NET_RAW: test_drop_privileges checks this as nobody")
    with pytest.raises(LiveCaptureError, match="^lo: cannot open an AF_PACKET socket: .*CAP_NET_RAW"):
        LiveCapture("lo")


# -- as root, in a network namespace ---------------------------------------------------------------


@cache
def live_skip_reason() -> str | None:
    if sys.platform != "linux":
        return "AF_PACKET live capture is Linux only"
    if os.geteuid() != 0 or not can_open_packet_sockets():
        return (
            "live capture tests need root with CAP_NET_RAW (AF_PACKET sockets, network namespaces); "
            "CI runs them as root"
        )
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    try:
        with veth_namespace(prefix="dpi-probe"):
            pass
    except NetnsError as exc:
        return f"cannot make a network namespace with a veth pair here: {exc}"
    return None


@pytest.fixture
def veth():
    reason = live_skip_reason()
    if reason:
        pytest.skip(reason)
    with veth_namespace() as pair:
        yield pair


@contextmanager
def sender(netns: str, iface: str):
    """A plain AF_PACKET socket in ``netns`` that sends frames out of ``iface``."""
    with entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        sock.bind((iface, 0))
        yield sock
    finally:
        sock.close()


def marker_frames(count: int, ethertype: int = MARKER_TYPE) -> list[bytes]:
    """Frames of many sizes, some with an 802.1Q tag and some with 802.1ad + 802.1Q tags."""
    sizes = [60, 64, 128, 333, 1000, 1514]
    frames = []
    for n in range(count):
        size = sizes[n % len(sizes)]
        tags = b""
        if n % 7 == 3:
            tags = struct.pack("!HH", 0x8100, 0x2000 | n % 4096)
        elif n % 11 == 5:
            tags = struct.pack("!HHHH", 0x88A8, 100, 0x8100, 200 + n % 50)
        if tags:
            size = min(size, 1400)  # tagged frames stay inside the MTU the socket allows
        head = DST + SRC + tags + struct.pack("!H", ethertype) + MARKER + struct.pack("!I", n)
        frames.append(head + bytes((n * 7 + k) % 256 for k in range(size - len(head))))
    return frames


def send_slowly(sock: socket.socket, frames: list[bytes], gap: float = SEND_GAP_S) -> threading.Thread:
    def run():
        for frame in frames:
            sock.send(frame)
            time.sleep(gap)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def capture_frames(capture: LiveCapture, want: int, timeout: float = 30.0, marker: bytes = MARKER):
    """Frames carrying ``marker`` (in capture order) with their columns, until ``want`` of
    them have come or ``timeout`` passes."""
    got, wirelen, ts, numbers, linktypes = [], [], [], [], []
    for batch in capture.batches(duration=timeout, stop=lambda: len(got) >= want):
        numbers.extend(batch.number.tolist())
        for i in range(len(batch)):
            frame = batch.frame(i)
            if marker in frame:
                got.append(frame)
                wirelen.append(int(batch.wirelen[i]))
                ts.append(int(batch.ts_ns[i]))
                linktypes.append(int(batch.linktype[i]))
    return got, wirelen, ts, numbers, linktypes


@pytest.mark.parametrize(
    "ring",
    [{}, {"block_size": 4096, "block_count": 16}],
    ids=["default-ring", "small-ring-wraps"],
)
def test_every_frame_captured_byte_for_byte(veth, ring):
    frames = marker_frames(300)
    capture = LiveCapture(veth.capture_iface, netns=veth.name, **ring)
    with capture, sender(veth.name, veth.send_iface) as sock:
        before = time.time_ns()
        thread = send_slowly(sock, frames)
        got, wirelen, ts, numbers, linktypes = capture_frames(capture, len(frames))
        thread.join()
        after = time.time_ns()
        stats = capture.stats()
    assert len(got) == len(frames)
    assert got == frames  # every frame, in order, the VLAN tags the kernel took off put back
    assert wirelen == [len(f) for f in frames]
    assert set(linktypes) == {1}
    assert numbers == list(range(1, len(numbers) + 1))
    assert all(before <= t <= after for t in ts), (before, ts[:3], after)
    assert ts == sorted(ts)
    assert stats["kernel_packets"] >= len(frames)  # and the kernel's own IPv6 frames
    assert stats["kernel_drops"] == 0
    assert stats["ring_damaged_blocks"] == 0 and capture.errors == []
    assert capture.packets == len(numbers)


def test_outgoing_frames_are_captured_too(veth):
    frames = marker_frames(40)
    with (
        LiveCapture(veth.send_iface, netns=veth.name) as capture,
        sender(veth.name, veth.send_iface) as sock,
    ):
        send_slowly(sock, frames).join()
        got = capture_frames(capture, len(frames))[0]
    # outgoing frames are seen before the receive path could strip a tag: sent as they are
    assert got == frames


def test_bpf_filter_runs_in_the_kernel(veth):
    wanted = marker_frames(60)
    others = marker_frames(60, ethertype=OTHER_TYPE)
    interleaved = [f for pair in zip(wanted, others, strict=True) for f in pair]
    # the kernel has taken single VLAN tags off before the filter runs, so those frames match
    # by their inner type; the 802.1ad ones keep an inner 802.1Q header and do not
    expected = [f for f in wanted if f[12:14] != b"\x88\xa8"]
    with (
        LiveCapture(veth.capture_iface, netns=veth.name, bpf=f"ether proto {MARKER_TYPE:#x}") as capture,
        sender(veth.name, veth.send_iface) as sock,
    ):
        send_slowly(sock, interleaved).join()
        got = capture_frames(capture, len(expected))[0]
        time.sleep(0.2)  # anything the filter let through by mistake would be in the ring by now
        late = capture_frames(capture, 1, timeout=0.5)[0]
        stats = capture.stats()
    assert got == expected and late == []
    assert stats["kernel_packets"] == len(expected)  # frames the filter refused are not counted
    assert stats["kernel_drops"] == 0


def test_bad_filter_and_missing_names_on_open(veth):
    with pytest.raises(ValueError, match="BPF filter 'ether proto' does not compile"):
        LiveCapture(veth.capture_iface, netns=veth.name, bpf="ether proto")
    with pytest.raises(
        LiveCaptureError, match=r"^eth9 \(network namespace dpi-.*\): no such network interface$"
    ):
        LiveCapture("eth9", netns=veth.name)
    with pytest.raises(LiveCaptureError, match="network namespace 'dpi-no-such-ns' not found"):
        LiveCapture(veth.capture_iface, netns="dpi-no-such-ns")


def test_stats_accumulate_across_reads(veth):
    frames = marker_frames(10)
    with (
        LiveCapture(veth.capture_iface, netns=veth.name, bpf=f"ether proto {MARKER_TYPE:#x}") as capture,
        sender(veth.name, veth.send_iface) as sock,
    ):
        send_slowly(sock, frames[:5]).join()
        time.sleep(0.05)  # the receive softirq has run for the last one
        first = capture.stats()
        send_slowly(sock, frames[5:]).join()
        capture_frames(capture, 9)  # the 802.1ad frame (n=5) does not pass the filter
        second = capture.stats()
    # the kernel resets its counters on each read; ours add up
    assert first["kernel_packets"] == 5 and second["kernel_packets"] == 9


CHILD_ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


class Child:
    """A Python child process whose stdout lines arrive on a queue."""

    def __init__(self, code: str, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=REPO,
            env=CHILD_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def line(self, timeout: float = 600) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
            raise AssertionError(f"child gave no line (exit {self.proc.returncode}):\n{self.stderr[-6000:]}")
        return line

    def finish(self, timeout: float = 120) -> int:
        _, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode


DROP_CHILD = """
import json, os, socket, sys
import numpy as np
from dpi.capture.live import LiveCapture, LiveCaptureError
from dpi.capture.ring import block_columns, index_block

netns, iface, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
capture = LiveCapture(iface, netns=netns, bpf="ether proto 0x88b5")
# the ring indexer is compiled (or loaded from the cache) while the cache is still writable
index_block(np.zeros(64, np.uint8), 0, 64, True, *block_columns(1), 0)
capture.drop_privileges("nobody")
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    new_socket = "opened"
except PermissionError:
    new_socket = "refused"
try:
    LiveCapture("lo")
    new_capture = "opened"
except LiveCaptureError as exc:
    new_capture = str(exc)
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
                  "new_socket": new_socket, "new_capture": new_capture}), flush=True)
frames = []
for batch in capture.batches(duration=30, stop=lambda: len(frames) >= count):
    frames += [batch.frame(i).hex() for i in range(len(batch))]
print(json.dumps({"frames": frames, "stats": capture.stats()}), flush=True)
"""


def test_drop_privileges_keeps_the_capture_and_refuses_new_sockets(veth):
    frames = marker_frames(20)
    expected = [f for f in frames if f[12:14] != b"\x88\xa8"]
    child = Child(DROP_CHILD, veth.name, veth.capture_iface, str(len(expected)))
    dropped = json.loads(child.line())
    with sender(veth.name, veth.send_iface) as sock:
        send_slowly(sock, frames).join()
    done = json.loads(child.line(timeout=60))
    assert child.finish() == 0, child.stderr[-4000:]
    nobody = 65534
    assert (dropped["uid"], dropped["gid"], dropped["groups"]) == (nobody, nobody, [])
    assert dropped["new_socket"] == "refused"
    assert dropped["new_capture"].startswith("lo: cannot open an AF_PACKET socket")
    assert "CAP_NET_RAW" in dropped["new_capture"]
    assert [bytes.fromhex(f) for f in done["frames"]] == expected
    assert done["stats"]["kernel_packets"] == len(expected) and done["stats"]["kernel_drops"] == 0


def udp_frame(payload: bytes, sport: int = 40000, dport: int = 5353) -> bytes:
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0, b"", b""))
    ip[12:20] = bytes([10, 0, 0, 1, 10, 0, 0, 2])
    words = struct.unpack("!10H", ip)
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    ip[10:12] = struct.pack("!H", ~total & 0xFFFF)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return DST + SRC + b"\x08\x00" + bytes(ip) + udp + payload


RULE = 'alert udp any any -> any any (msg:"live marker"; content:"MARKER"; sid:1;)\n'


def read_eve(text: str) -> tuple[list[dict], dict]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    stats = [e for e in events if e["event_type"] == "stats"]
    assert len(stats) == 1 and events[-1] is stats[0]
    return alerts, stats[0]["stats"]


def test_run_live_alerts_and_kernel_counters(veth, tmp_path):
    from dpi.live import run_live

    rules = tmp_path / "live.rules"
    rules.write_text(RULE)
    frames = [udp_frame(b"GET MARKER %d" % i, sport=40000 + i) for i in range(5)]
    frames += [udp_frame(b"nothing to see %d" % i, sport=41000 + i) for i in range(3)]
    eve = io.StringIO()
    with sender(veth.name, veth.send_iface) as sock:
        threads = []
        result = run_live(
            veth.capture_iface,
            [str(rules)],
            eve,
            netns=veth.name,
            bpf="udp",
            idle_timeout=1.5,
            duration=120,
            on_ready=lambda: threads.append(send_slowly(sock, frames, gap=0.01)),
        )
        assert len(threads) == 1
        threads[0].join()
    alerts, stats = read_eve(eve.getvalue())
    assert result.packets == len(frames) and result.alerts == 5 and result.ok
    assert sorted(a["src_port"] for a in alerts) == list(range(40000, 40005))
    assert {(a["alert"]["signature_id"], a["src_ip"], a["dest_ip"], a["dest_port"]) for a in alerts} == {
        (1, "10.0.0.1", "10.0.0.2", 5353)
    }
    capture = stats["capture"]
    assert capture["interface"] == veth.capture_iface
    assert capture["packets"] == len(frames) and capture["errors"] == []
    assert capture["kernel_packets"] == len(frames)  # the filter kept the kernel's IPv6 frames out
    assert capture["kernel_drops"] == 0 and capture["kernel_freeze_q"] == 0
    assert stats["detect"]["alert"] == 5


SIGTERM_CHILD = """
import json, sys
from dpi.live import run_live

netns, iface, rules, eve = sys.argv[1:5]
with open(eve, "w", encoding="utf-8") as out:
    ready = lambda: print("ready", flush=True)  # noqa: E731
    result = run_live(iface, [rules], out, netns=netns, bpf="udp", on_ready=ready)
print(json.dumps({"packets": result.packets, "alerts": result.alerts}), flush=True)
"""


def test_run_live_ends_cleanly_on_sigterm(veth, tmp_path):
    rules = tmp_path / "live.rules"
    rules.write_text(RULE)
    eve = tmp_path / "eve.json"
    child = Child(SIGTERM_CHILD, veth.name, veth.capture_iface, str(rules), str(eve))
    assert child.line().strip() == "ready"  # rules compiled, kernels warm, socket bound
    frames = [udp_frame(b"MARKER %d" % i) for i in range(4)]
    with sender(veth.name, veth.send_iface) as sock:
        send_slowly(sock, frames, gap=0.01).join()
    time.sleep(0.5)  # the blocks retire (50 ms) and the batch goes through the pipeline
    child.proc.send_signal(signal.SIGTERM)
    result = json.loads(child.line(timeout=60))
    assert child.finish() == 0, child.stderr[-4000:]
    assert result == {"packets": 4, "alerts": 4}
    alerts, stats = read_eve(eve.read_text())
    assert len(alerts) == 4
    assert stats["capture"]["kernel_packets"] == 4 and stats["capture"]["kernel_drops"] == 0
    # the flow ended at shutdown: flushed, and its flow event written before the stats event
    assert stats["flow"]["total"] == 1
