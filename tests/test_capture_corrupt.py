"""Damaged captures: the native reader never crashes, never points past the file, keeps every
packet before the damage and names the file and byte offset of the damage.

The same checks run twice: in this process, and in a subprocess whose kernels are compiled
with NUMBA_BOUNDSCHECK=1 (into a private cache), where an out-of-bounds access in a kernel
is an IndexError instead of a silent read.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np
import pytest

from dpi.capture import CaptureError
from dpi.capture.native import NativeReader
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
from tests.conftest import SHARED_DATA, run_bounds_checked

PCAPS = SHARED_DATA / "pcaps"
SHARED_SMALL = [
    "zeek/tcp-option-sack.pcap",
    "tcpdump/tcp-handshake-nano.pcap",
    "tcpdump/time-2106-overflow.pcapng",
    "scapy/macos.pcapng",
    "zeek/pcapng-multi-interface.pcapng",
]
MUTATIONS_PER_FILE = 120
PACKET_BLOCKS = (2, 3, 6)


def synthetic_captures() -> dict[str, bytes]:
    """Small captures for what the shared ones lack: big-endian pcap, and pcapng with
    sections of both byte orders, several interfaces, SPB, PB and unknown blocks."""
    pcap = pcap_header(big_endian=True, snaplen=128, linktype=101)
    for i in range(6):
        pcap += pcap_record(1_600_000_000 + i, i * 1000, bytes(range(i * 7, i * 7 + 20 + i)), big_endian=True)
    ng = b""
    for big in (False, True):
        ng += pcapng_section_header(big_endian=big)
        ng += pcapng_interface(1, 96, tsresol=9, big_endian=big)
        ng += pcapng_enhanced_packet(0, 10**18, b"first interface", big_endian=big)
        ng += pcapng_interface(101, 0, tsresol=0x80 | 16, tsoffset=7, big_endian=big)
        ng += pcapng_block(0x00000BAD, b"unknown", big_endian=big)
        ng += pcapng_enhanced_packet(1, 2**40, b"second interface" * 3, wirelen=99, big_endian=big)
        ng += pcapng_simple_packet(b"simple packet", big_endian=big)
        ng += pcapng_obsolete_packet(1, 2**33, b"obsolete packet", big_endian=big)
        ng += pcapng_block(5, bytes(16), big_endian=big)
    return {"synthetic/big-endian.pcap": pcap, "synthetic/two-sections.pcapng": ng}


def sample_captures() -> dict[str, bytes]:
    samples = {name: (PCAPS / name).read_bytes() for name in SHARED_SMALL if (PCAPS / name).is_file()}
    samples.update(synthetic_captures())
    return samples


SAMPLES = sample_captures()


def layout(data: bytes) -> tuple[int, list[tuple[int, int, bool]]]:
    """An independent walk of an undamaged capture: the length of its file header (pcap
    header or first SHB) and (start, end, is a packet) for every record or block after it."""
    blocks = []
    if data[:4] != b"\x0a\x0d\x0d\x0a":
        order = ">" if data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") else "<"
        pos = 24
        while pos < len(data):
            end = pos + 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
            blocks.append((pos, end, True))
            pos = end
        return 24, blocks
    pos = 0
    order = "<"
    while pos < len(data):
        if data[pos : pos + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(order + "II", data, pos)
        blocks.append((pos, pos + blen, btype in PACKET_BLOCKS))
        pos += blen
    return blocks[0][1], blocks[1:]


def read_checked(path: Path, batch_size: int = 65536):
    """Every packet as (number, frame, ts_ns, wirelen, linktype), and the error; or
    (None, error) when batches() refused the file. Checks the columns on the way."""
    size = path.stat().st_size
    reader = NativeReader(str(path), batch_size=batch_size)
    try:
        batches = reader.batches()
    except CaptureError as exc:
        return None, exc
    packets = []
    for batch in batches:
        assert 0 < len(batch) <= batch_size
        assert batch.buffer.shape[0] == size
        assert (batch.offset >= 0).all() and (batch.caplen >= 0).all()
        assert (batch.offset + batch.caplen <= size).all(), "a frame extends beyond the file"
        for i in range(len(batch)):
            packets.append(
                (
                    int(batch.number[i]),
                    batch.frame(i),
                    int(batch.ts_ns[i]),
                    int(batch.wirelen[i]),
                    int(batch.linktype[i]),
                )
            )
    assert [p[0] for p in packets] == list(range(1, len(packets) + 1))
    return packets, reader.error


def check_truncations(workdir: Path, name: str, data: bytes) -> int:
    """Cut the capture at every byte offset; returns the number of cuts checked."""
    header_len, blocks = layout(data)
    full_path = workdir / "full"
    full_path.write_bytes(data)
    full, error = read_checked(full_path)
    assert error is None, f"{name} is expected to be undamaged: {error}"
    assert len(full) == sum(b[2] for b in blocks)
    for cut in range(len(data) + 1):
        path = workdir / f"cut-{cut}"
        path.write_bytes(data[:cut])
        packets, error = read_checked(path, batch_size=1 + cut % 4)
        where = f"{name} cut at {cut}"
        if cut < header_len:
            assert packets is None, f"{where}: a cut file header must be refused"
            assert error.path == str(path) and error.offset == 0, where
        else:
            complete = [b for b in blocks if b[1] <= cut]
            kept = sum(b[2] for b in complete)
            assert packets == full[:kept], where
            boundary = complete[-1][1] if complete else header_len
            if cut == boundary:
                assert error is None, f"{where}: {error}"
            else:
                assert error is not None, f"{where}: damage not reported"
                assert (error.path, error.offset, error.packet) == (str(path), boundary, kept + 1), where
        path.unlink()
    return len(data) + 1


INTERESTING_U32 = [0, 1, 3, 4, 8, 11, 12, 15, 16, 28, 31, 32, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFC, 0xFFFFFFFF]


def mutate(rng: random.Random, data: bytes, blocks: list[tuple[int, int, bool]]) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:  # flip a few bits anywhere
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:  # random bytes anywhere
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    else:  # a length, id or option field of a record or block gets an edge value
        start, end, _ = rng.choice(blocks) if blocks else (0, len(buf), False)
        field = rng.choice([4, 8, 12, 16, 20, 24, end - start - 4, rng.randrange(max(1, end - start))])
        field = start + (field & ~3)
        if field + 4 <= len(buf):
            value = rng.choice(INTERESTING_U32 + [end - start + rng.choice([-4, 4, 1])])
            buf[field : field + 4] = struct.pack(rng.choice("<>") + "I", value & 0xFFFFFFFF)
        if kind == 3:  # and the file is cut short as well
            del buf[rng.randrange(len(buf) // 2, len(buf) + 1) :]
    return bytes(buf)


def check_mutations(workdir: Path, name: str, data: bytes, rounds: int, seed: int) -> int:
    """Random damage; every packet whose record ends before the first changed byte must
    come out as in the undamaged file. Returns the number of mutants that kept the header."""
    rng = random.Random(seed)
    header_len, blocks = layout(data)
    full_path = workdir / "full"
    full_path.write_bytes(data)
    full, _ = read_checked(full_path)
    readable = 0
    for i in range(rounds):
        mutant = mutate(rng, data, blocks)
        changed = [j for j in range(min(len(data), len(mutant))) if data[j] != mutant[j]]
        first = changed[0] if changed else min(len(data), len(mutant))
        path = workdir / f"mutant-{i}"
        path.write_bytes(mutant)
        packets, error = read_checked(path, batch_size=rng.choice([1, 2, 3, 5, 65536]))
        where = f"{name} mutant {i} (first change at {first})"
        if packets is None:
            assert first < header_len, f"{where}: refused although the header is intact: {error}"
            assert error.path == str(path), where
        else:
            readable += 1
            kept = sum(b[2] for b in blocks if b[1] <= first)
            assert packets[:kept] == full[:kept], where
            if error is not None:
                assert error.path == str(path) and 0 <= error.offset <= len(mutant), where
                assert error.packet == len(packets) + 1, where
        path.unlink()
    return readable


def bounds_checked_campaign(workdir: str) -> None:
    """The subprocess's work: every check above, with bounds-checked kernels."""
    import numba

    assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK=1 did not take effect"

    @numba.njit
    def read_at(a, i):
        return a[i]

    try:
        read_at(np.zeros(3, dtype=np.uint8), 3)
    except IndexError:
        pass
    else:
        raise AssertionError("an out-of-bounds read did not raise: bounds checking is off")

    cuts = mutants = 0
    for seed, (name, data) in enumerate(sorted(SAMPLES.items())):
        d = Path(workdir) / f"sample-{seed}"
        d.mkdir()
        cuts += check_truncations(d, name, data)
        mutants += check_mutations(d, name, data, MUTATIONS_PER_FILE, seed)
    print(f"campaign ok: {len(SAMPLES)} captures, {cuts} cuts, {mutants} readable mutants")


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_truncated_at_every_offset(tmp_path, name):
    assert check_truncations(tmp_path, name, SAMPLES[name]) == len(SAMPLES[name]) + 1


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_random_mutations(tmp_path, name):
    readable = check_mutations(tmp_path, name, SAMPLES[name], MUTATIONS_PER_FILE, seed=1000 + len(name))
    # most mutants keep their file header, so the checks above did run
    assert readable > MUTATIONS_PER_FILE // 2


def test_shared_samples_present():
    missing = [n for n in SHARED_SMALL if not (PCAPS / n).is_file()]
    if missing:
        pytest.skip(f"shared captures absent under {PCAPS}: {missing}; only synthetic ones were damaged")


def test_bounds_checked_subprocess(tmp_path):
    code = (
        "import runpy, sys\n"
        f"ns = runpy.run_path({str(Path(__file__).resolve())!r})\n"
        f"ns['bounds_checked_campaign']({str(tmp_path)!r})\n"
    )
    done = run_bounds_checked(tmp_path, ["-c", code], timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]
    assert "campaign ok" in done.stdout
