"""Mutated and random frames through the decoder, in a subprocess with NUMBA_BOUNDSCHECK=1.

Three nets for an out-of-frame read:
- every frame alone in a buffer of exactly its captured length: a read past the end is an
  IndexError under NUMBA_BOUNDSCHECK (or a crash, which the parent sees);
- the same frames packed end to end, and again with random garbage between them: a read
  outside a frame would see different bytes, so the decoded columns would differ;
- every offset the decoder writes must lie inside the packet's own frame.
"""

from __future__ import annotations

import numpy as np

from tests.conftest import SHARED_DATA, run_bounds_checked

PCAPS = SHARED_DATA / "pcaps"
SEED = 20240611
LINKTYPES = np.array([0, 1, 1, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147, 0x30000001], dtype=np.int64)
OFFSET_COLUMNS = ("l3_offset", "l4_offset", "payload_offset", "outer_l3_offset")


def seed_frames() -> list[tuple[int, bytes]]:
    """Well-formed frames of every layer the decoder knows, plus a few real ones."""
    from scapy.contrib.mpls import MPLS
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
    from scapy.layers.inet6 import (
        ICMPv6EchoRequest,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
        Jumbo,
    )
    from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether

    tcp = TCP(options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]) / b"payload"
    frames = [
        (1, Ether() / IP(options=IPOption(b"\x01\x01\x01\x00")) / tcp),
        (1, Ether() / Dot1AD() / Dot1Q() / IP(flags="MF") / UDP() / (b"x" * 20)),
        (1, Ether() / Dot1Q() / MPLS(s=0) / MPLS(s=1) / IPv6() / ICMPv6EchoRequest()),
        (
            1,
            Ether()
            / IPv6()
            / IPv6ExtHdrHopByHop()
            / IPv6ExtHdrRouting()
            / IPv6ExtHdrDestOpt()
            / IPv6ExtHdrFragment(m=1)
            / tcp,
        ),
        (1, Ether() / IPv6(plen=0) / IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=70000)]) / UDP()),
        (1, Ether() / IP(frag=3) / b"fragment data"),
        (113, CookedLinux() / IP() / ICMP() / b"echo"),
        (276, CookedLinuxV2(proto=0x86DD) / IPv6() / UDP()),
        (0, b"\x02\x00\x00\x00" + bytes(IP() / TCP())),
        (108, b"\x00\x00\x00\x1e" + bytes(IPv6() / TCP())),
        (101, IP() / UDP() / b"dns?"),
    ]
    frames = [(lt, bytes(f)) for lt, f in frames]
    from tests.test_decode_tunnels import CASES as TUNNELS  # every encapsulation, and near misses

    frames += [(1, bytes(frame)) for frame, _, _ in TUNNELS.values()]
    if PCAPS.is_dir():
        from dpi.capture.reference import DpktReader

        for name in (
            "zeek/mixed-vlan-mpls.pcap",
            "zeek/ipv6-fragmented-dns.pcap",
            "tcpdump/various-gre.pcap",
            "zeek/tunnel-vxlan-http.pcap",
            "zeek/tunnel-teredo.pcap",
        ):
            if (PCAPS / name).is_file():
                for batch in DpktReader(str(PCAPS / name)).batches():
                    frames += [(int(batch.linktype[i]), batch.frame(i)) for i in range(min(len(batch), 20))]
    return frames


def fuzz_frames(count: int, rng: np.random.Generator) -> tuple[list[bytes], np.ndarray]:
    seeds = seed_frames()
    frames, linktypes = [], np.empty(count, dtype=np.int64)
    for k in range(count):
        kind = rng.random()
        if kind < 0.15:  # pure noise
            frame = rng.integers(0, 256, int(rng.integers(0, 120)), dtype=np.uint8).tobytes()
            linktypes[k] = rng.choice(LINKTYPES)
        else:
            linktype, frame = seeds[int(rng.integers(len(seeds)))]
            data = bytearray(frame)
            # flip a few bytes, mostly inside the headers
            for _ in range(int(rng.integers(0, 6))):
                if data:
                    where = int(rng.integers(min(len(data), 100)))
                    data[where] = int(rng.integers(256))
            if rng.random() < 0.5:
                data = data[: int(rng.integers(0, len(data) + 1))]
            frame = bytes(data)
            linktypes[k] = linktype if rng.random() < 0.85 else rng.choice(LINKTYPES)
        frames.append(frame)
    return frames, linktypes


def batch_of(frames, linktypes, gaps=None, rng=None):
    from dpi.capture import PacketBatch

    parts, offsets, position = [], [], 0
    for k, frame in enumerate(frames):
        if gaps is not None:
            gap = rng.integers(0, 256, int(gaps[k]), dtype=np.uint8).tobytes()
            parts.append(gap)
            position += len(gap)
        offsets.append(position)
        parts.append(frame)
        position += len(frame)
    n = len(frames)
    caplen = np.array([len(f) for f in frames], dtype=np.int64)
    return PacketBatch(
        buffer=np.frombuffer(b"".join(parts), dtype=np.uint8),
        offset=np.array(offsets, dtype=np.int64),
        caplen=caplen,
        wirelen=caplen + (np.arange(n) % 3 == 0) * 100,  # a third look snapped
        ts_ns=np.zeros(n, dtype=np.int64),
        linktype=linktypes,
        number=np.arange(1, n + 1, dtype=np.int64),
    )


def absent(decoded, name: str) -> np.ndarray:
    """Rows without this offset: -1 for l3/l4, 0 (the DecodedBatch default) for the payload,
    and rows that are not tunnelled for the outer IP header."""
    values = getattr(decoded, name)
    if name == "outer_l3_offset":
        return decoded.tunnel_depth == 0
    return (values == 0) if name == "payload_offset" else (values == -1)


def relative(decoded, batch) -> dict[str, np.ndarray]:
    columns = dict(decoded.__dict__)
    for name in OFFSET_COLUMNS:
        columns[name] = np.where(absent(decoded, name), -1, columns[name] - batch.offset)
    return columns


def fuzz_main(count: int = 20000) -> None:
    """Runs in the child process (NUMBA_BOUNDSCHECK=1, a fresh NUMBA_CACHE_DIR)."""
    from dpi.decode import STATUS_NAMES, decode_batch

    rng = np.random.default_rng(SEED)
    frames, linktypes = fuzz_frames(count, rng)

    packed = batch_of(frames, linktypes)
    decoded = decode_batch(packed)
    gapped = batch_of(frames, linktypes, gaps=rng.integers(0, 40, count), rng=rng)
    gapped_decoded = decode_batch(gapped)
    mine, theirs = relative(decoded, packed), relative(gapped_decoded, gapped)
    for name in mine:
        differ = np.flatnonzero(mine[name] != theirs[name])
        assert differ.size == 0, f"{name} depends on bytes outside the frame: rows {differ[:10]}"

    assert set(np.unique(decoded.status).tolist()) <= set(STATUS_NAMES), "undefined status code"
    ends = packed.offset + packed.caplen
    for name in OFFSET_COLUMNS:
        values = getattr(decoded, name)
        inside = absent(decoded, name) | ((values >= packed.offset) & (values <= ends))
        assert inside.all(), f"{name} outside the frame: rows {np.flatnonzero(~inside)[:10]}"
    payload_end = decoded.payload_offset + decoded.payload_len
    assert (decoded.payload_len >= 0).all()
    assert ((decoded.payload_len == 0) | (payload_end <= ends)).all(), "payload runs past the frame"
    assert np.isin(decoded.ip_version, (0, 4, 6)).all()

    # each frame alone in a buffer of exactly caplen bytes: an overrun is an IndexError
    for k in range(0, count, 4):
        single = batch_of([frames[k]], linktypes[k : k + 1])
        single.wirelen = packed.wirelen[k : k + 1]
        alone = decode_batch(single)
        assert alone.status[0] == decoded.status[k], k
    counts = np.bincount(decoded.status, minlength=256)
    print("fuzzed", count, "frames;", {STATUS_NAMES[c]: int(counts[c]) for c in np.flatnonzero(counts)})


def test_fuzzed_frames_under_numba_boundscheck(tmp_path):
    child = run_bounds_checked(tmp_path, ["-c", "import test_decode_fuzz as fuzz; fuzz.fuzz_main()"])
    assert child.returncode == 0, f"decoder failed under NUMBA_BOUNDSCHECK:\n{child.stderr[-4000:]}"
    assert "fuzzed" in child.stdout
    # the fuzzing reached deep into the headers, not just the link layer
    for name in ("ok", "tcp_truncated", "ipv6_ext_truncated", "fragment", "not_ip"):
        assert f"'{name}'" in child.stdout, (name, child.stdout)
