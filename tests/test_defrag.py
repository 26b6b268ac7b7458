"""IPv4/IPv6 defragmentation: overlap policies (the Sturges/Novak vectors Suricata tests
with), reassembly of random fragmentations, caps and timeouts, malformed fragments, and
agreement with tshark on the real captures that carry fragments."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpi.capture import open_capture
from dpi.capture.batch import PacketBatch
from dpi.decode import Status, decode_batch
from dpi.defrag import DEFRAG_POLICIES, DefragConfig, Defragmenter, policy_code
from tests.conftest import run_bounds_checked, write_pcap

T0_S = 1_300_000_000  # capture start, whole seconds
T0 = float(T0_S)

# drops and ends that account for every fragment handed to the defragmenter
ACCOUNTED = (
    "memcap_dropped",
    "max_frags_reached",
    "max_trackers_reached",
    "fragments_reassembled",
    "fragments_timed_out",
    "fragments_flushed",
    "fragments_too_large",
    "fragments_held",
)


def accounted(stats: dict[str, int]) -> int:
    invalid = sum(
        v for k, v in stats.items() if k.startswith("invalid.") and k != "invalid.reassembled_too_large"
    )
    return invalid + sum(stats[k] for k in ACCOUNTED)


def ether():
    """Ethernet with both addresses given: scapy would otherwise resolve them (and wait)."""
    from scapy.layers.l2 import Ether

    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


def ipv4_frag(off, mf, data, ident=1, proto=1, src="1.1.1.1", dst="2.2.2.2", vlan=None, **ip):
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Dot1Q

    l3 = IP(src=src, dst=dst, id=ident, proto=proto, flags="MF" if mf else 0, frag=off // 8, **ip) / data
    return ether() / Dot1Q(vlan=vlan) / l3 if vlan is not None else ether() / l3


def ipv6_frag(off, mf, data, ident=1, nh=58, src="2001:db8::1", dst="2001:db8::2"):
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

    return (
        ether()
        / IPv6(src=src, dst=dst)
        / IPv6ExtHdrFragment(nh=nh, id=ident, offset=off // 8, m=int(mf))
        / data
    )


def timed(pkts, step=0.001, t0=T0):
    for k, p in enumerate(pkts):
        p.time = t0 + k * step
    return pkts


def check_held_state(df: Defragmenter) -> None:
    """The held data is consistent: per datagram, pieces sorted and disjoint, the tail is
    the last one, the held count is their sum; arena bytes and piece counts add up."""
    tr, pc = df.trackers, df.pieces
    live_bytes, n_pieces = 0, 0
    for t in np.flatnonzero(tr.live):
        q, last_end, held, last = int(tr.head[t]), -1, 0, -1
        while q >= 0:
            assert pc.live[q] and pc.start[q] >= last_end and pc.end[q] > pc.start[q]
            assert tr.total_len[t] < 0 or pc.end[q] <= tr.total_len[t]
            held += int(pc.end[q] - pc.start[q])
            last_end, last, q = int(pc.end[q]), q, int(pc.next[q])
            n_pieces += 1
        assert last == tr.tail[t] and held == tr.held[t]
        live_bytes += held + int(tr.hdr_len[t])
    assert live_bytes == df.held_bytes and n_pieces == int(pc.live.sum())


@dataclass
class Run:
    datagrams: list[bytes]  # raw IP frames, in the order they completed
    numbers: list[int]  # packet number of the fragment that completed each
    defrag: Defragmenter

    @property
    def stats(self) -> dict[str, int]:
        return self.defrag.stats()


def run(path, config=None, batch_size=65536, policy_of=None, select=None, flush=False, mangle=None) -> Run:
    """Capture -> decode -> Defragmenter, as the pipeline will call it; ``select`` picks
    the rows handed over (default: what the decoder calls a fragment)."""
    df = Defragmenter(config)
    datagrams, numbers, n = [], [], 0
    for batch in open_capture(str(path), batch_size=batch_size).batches():
        if mangle is not None:
            batch = mangle(batch)
        dec = decode_batch(batch)
        mask = dec.is_fragment != 0 if select is None else select(dec)
        n += int(mask.sum())
        out = df.process(batch, dec, mask, None if policy_of is None else policy_of(dec))
        assert out.buffer.dtype == np.uint8 and (out.caplen == out.wirelen).all()
        # each datagram carries the time and number of the fragment that completed it
        rows = df.last_rows
        assert (out.ts_ns == batch.ts_ns[rows]).all() and (out.number == batch.number[rows]).all()
        assert mask[rows].all() and (out.linktype == 101).all()
        datagrams += [out.frame(k) for k in range(len(out))]
        numbers += out.number.tolist()
        check_held_state(df)
    if flush:
        df.flush()
    result = Run(datagrams, numbers, df)
    assert accounted(result.stats) == n, result.stats
    return result


def run_packets(tmp_path, pkts, name="frags.pcap", retime=True, **kw) -> Run:
    return run(write_pcap(tmp_path / name, timed(pkts) if retime else pkts), **kw)


def ip_payload(frame: bytes) -> bytes:
    """The data behind the IP header (IPv6: no extension headers in these tests)."""
    return frame[(frame[0] & 15) * 4 :] if frame[0] >> 4 == 4 else frame[40:]


def ipv4_checksum_ok(header: bytes) -> bool:
    acc = sum(int.from_bytes(header[k : k + 2], "big") for k in range(0, len(header), 2))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc == 0xFFFF


# ---------------------------------------------------------------------------------------
# Sturges/Novak: 9 original fragments, 8 overlapping ones, then the last; each letter in
# the expected strings stands for 8 bytes of that letter (Suricata's defrag.c unit tests).

NOVAK_FRAGMENTS = [
    (0, "A", 24),
    (32, "B", 16),
    (48, "C", 24),
    (80, "D", 8),
    (104, "E", 16),
    (120, "F", 24),
    (144, "G", 16),
    (160, "H", 16),
    (176, "I", 8),
    (8, "J", 32),
    (48, "K", 24),
    (72, "L", 24),
    (96, "M", 24),
    (128, "N", 8),
    (152, "O", 8),
    (160, "P", 8),
    (176, "Q", 16),  # the last fragment
]

NOVAK_EXPECTED = {
    "bsd": "AAAJJBCCCLLLMMMFFFGGHHIQ",
    "linux": "AAAJJBKKKLLLMMMFFFGGPHQQ",
    "windows": "AAAJBBCCCLLLMEEFFFGGHHIQ",
    "solaris": "AAAJBBCCCLLLMMMFFFGGHHIQ",
    "first": "AAAJBBCCCLDLMEEFFFGGHHIQ",
    "last": "AJJJJBKKKLLLMMMFNFGOPHQQ",
    # not in Suricata's tests: the mirror of bsd (the fragment further right wins, a tie
    # goes to the newer), which is what Suricata's reassembly does for bsd-right
    "bsd-right": "AJJJBBKKKLDLMEEFNFGOPHQQ",
}
assert set(NOVAK_EXPECTED) == set(DEFRAG_POLICIES)


def novak_packets(version):
    make = ipv4_frag if version == 4 else ipv6_frag
    last = len(NOVAK_FRAGMENTS) - 1
    return [make(off, k != last, letter.encode() * n) for k, (off, letter, n) in enumerate(NOVAK_FRAGMENTS)]


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("policy", DEFRAG_POLICIES)
def test_sturges_novak_vectors(tmp_path, policy, version):
    expected = b"".join(letter.encode() * 8 for letter in NOVAK_EXPECTED[policy])
    path = write_pcap(tmp_path / "novak.pcap", timed(novak_packets(version)))
    # one batch, and one fragment per batch: the state carried between calls is the same
    for batch_size in (65536, 1):
        r = run(path, DefragConfig(policy=policy), batch_size=batch_size)
        assert len(r.datagrams) == 1 and r.numbers == [17]
        frame = r.datagrams[0]
        assert ip_payload(frame) == expected
        if version == 4:
            assert int.from_bytes(frame[2:4], "big") == 20 + 192 and frame[6:8] == b"\0\0"
            assert ipv4_checksum_ok(frame[:20])
        else:
            assert int.from_bytes(frame[4:6], "big") == 192 and frame[6] == 58
        s = r.stats
        ip = f"ipv{version}"
        assert s[f"{ip}.fragments"] == 17 and s[f"{ip}.reassembled"] == 1
        # every one of the 8 later fragments overlaps, with other letters
        assert s[f"{ip}.frag_overlap"] == 8 and s[f"{ip}.frag_overlap_different_data"] == 8
        assert s["fragments_reassembled"] == 17 and s["memuse"] == 0 and s["trackers_active"] == 0


# Suricata's further BSD/Linux cases: (policy, [(offset, MF, data)], expected payload or None)
EXTRA_CASES = {
    "bsd_fragment_after_no_mf": (
        "bsd",
        [(24, 0, b"A" * 16), (8, 1, b"B" * 16), (16, 1, b"C" * 16), (0, 1, b"D" * 8)],
        b"D" * 8 + b"B" * 16 + b"C" * 8 + b"A" * 8,
    ),
    "bsd_subsequent_overlaps_start_of_original": (
        "bsd",
        [(8, 0, b"E" * 24), (0, 1, b"M" * 24)],
        b"M" * 24 + b"E" * 8,
    ),
    "bsd_subsequent_overlaps_start_of_original_2": (
        "bsd",
        [
            (16, 1, b"AABBCCDDAABBDDCC"),
            (8, 1, b"AACCBBDDAACCDDBB"),
            (0, 1, b"ZZZZZZZZ"),
            (32, 0, b"DDCCBBAA"),
        ],
        b"ZZZZZZZZAACCBBDDAACCDDBBAABBDDCCDDCCBBAA",
    ),
    "bsd_missing_fragment": (
        "bsd",
        [
            (16, 1, b"AABBCCDDAABBDDCC"),
            (40, 1, b"AACCBBDD"),
            (8, 1, b"AACCDDBBAADDBBCC"),
            (0, 1, b"ZZZZZZZZ"),
            (48, 0, b"DDCCBBAA"),
        ],
        None,
    ),
    "linux_jeremy": (
        "linux",
        [(0, 1, b"A" * 24), (40, 1, b"B" * 48), (24, 1, b"C" * 48), (88, 0, b"D" * 14)],
        b"A" * 24 + b"C" * 48 + b"B" * 16 + b"D" * 14,
    ),
    # the last fragment fixes the end: data past it is cut, not reassembled
    "mf_cleared_early": ("bsd", [(16, 1, b"C" * 8), (0, 1, b"A" * 8), (8, 0, b"B" * 8)], b"A" * 8 + b"B" * 8),
    "reverse_order": (
        "bsd",
        [(16, 0, b"C" * 3), (8, 1, b"B" * 8), (0, 1, b"A" * 8)],
        b"A" * 8 + b"B" * 8 + b"C" * 3,
    ),
}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("case", sorted(EXTRA_CASES))
def test_suricata_overlap_cases(tmp_path, case, version):
    policy, frags, expected = EXTRA_CASES[case]
    make = ipv4_frag if version == 4 else ipv6_frag
    r = run_packets(
        tmp_path, [make(off, mf, data, ident=0x96) for off, mf, data in frags], config=DefragConfig(policy)
    )
    if expected is None:
        assert r.datagrams == [] and r.defrag.active == 1
        return
    assert [ip_payload(d) for d in r.datagrams] == [expected]
    assert r.numbers == [len(frags)]
    assert r.stats["fragments_cut_at_end"] == (1 if case == "mf_cleared_early" else 0)


# ---------------------------------------------------------------------------------------
# Reassembled datagrams decode as whole packets


def test_reassembled_ipv4_udp_with_options_decodes(tmp_path):
    from scapy.layers.inet import IP, UDP, IPOption, fragment

    payload = bytes(range(256)) * 12
    original = (
        IP(src="10.0.0.1", dst="10.0.0.2", id=4242, options=IPOption(b"\x94\x04\x00\x00"))
        / UDP(sport=5353, dport=53)
        / payload
    )
    frags = [ether() / f for f in fragment(original, fragsize=512)]
    assert len(frags) == 7
    order = [3, 6, 3, 0, 5, 1, 4, 2]  # out of order, one duplicate
    r = run_packets(tmp_path, [frags[k] for k in order])
    assert r.datagrams == [bytes(original)]  # header, options and checksum included
    assert r.numbers == [8]
    out = raw_batch(r.datagrams)
    dec = decode_batch(out)
    assert dec.status[0] == Status.OK and dec.is_fragment[0] == 0
    assert (dec.proto[0], dec.sport[0], dec.dport[0]) == (17, 5353, 53)
    assert out.frame(0)[dec.payload_offset[0] : dec.payload_offset[0] + dec.payload_len[0]] == payload
    assert r.stats["ipv4.frag_overlap"] == 1 and r.stats["ipv4.frag_overlap_different_data"] == 0


def test_reassembled_ipv6_keeps_unfragmentable_headers(tmp_path):
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6

    payload = b"GET / HTTP/1.1\r\n" * 150
    tcp = TCP(sport=40000, dport=80, flags="PA", seq=7) / payload
    src, dst = "2001:db8::10", "2001:db8::20"
    sent = (
        IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(id=77) / tcp
    )
    frags = [ether() / f for f in fragment6(sent, 600)]
    assert len(frags) >= 4
    r = run_packets(tmp_path, frags[::-1])
    expected = bytes(IPv6(src=src, dst=dst) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / tcp)
    assert r.datagrams == [expected]  # fragment header gone, next header and length fixed
    out = raw_batch([expected])
    dec = decode_batch(out)
    assert dec.status[0] == Status.OK and dec.is_fragment[0] == 0
    assert (dec.proto[0], dec.sport[0], dec.dport[0], dec.tcp_seq[0]) == (6, 40000, 80, 7)
    assert expected[dec.payload_offset[0] :] == payload


def test_largest_datagrams(tmp_path):
    """65535 bytes in all (IPv4) and a 65535-byte payload (IPv6) still reassemble."""
    rng = np.random.default_rng(3)
    pkts = []
    for version, size in ((4, 65535 - 20), (6, 65535)):
        data = bytes(rng.integers(0, 256, size, dtype=np.uint8))
        offsets = list(range(0, size, 1480))
        make = ipv4_frag if version == 4 else ipv6_frag
        frags = [make(off, off != offsets[-1], data[off : off + 1480], ident=9) for off in offsets]
        pkts += [frags[k] for k in rng.permutation(len(frags))]
    r = run_packets(tmp_path, pkts)
    assert [len(d) for d in r.datagrams] == [65535, 65575]
    assert r.datagrams[0][2:4] == b"\xff\xff" and r.datagrams[1][4:6] == b"\xff\xff"
    assert ipv4_checksum_ok(r.datagrams[0][:20])


def test_configuration_is_checked():
    with pytest.raises(ValueError, match="vista"):
        Defragmenter(DefragConfig(policy="vista"))
    with pytest.raises(ValueError, match="memcap"):
        Defragmenter(DefragConfig(memcap=0))


# ---------------------------------------------------------------------------------------
# Random fragmentations reassemble to the original


@st.composite
def fragmentations(draw):
    version = draw(st.sampled_from([4, 6]))
    size = draw(st.integers(9, 3000))
    data = draw(st.binary(min_size=size, max_size=size))
    unit = draw(st.integers(1, min(64, (size - 1) // 8))) * 8  # two fragments at least
    pieces = [(off, data[off : off + unit]) for off in range(0, size, unit)]
    order = list(draw(st.permutations(range(len(pieces)))))
    for dup in draw(st.lists(st.integers(0, len(pieces) - 1), max_size=3)):
        order.insert(draw(st.integers(0, len(order))), dup)
    batch_size = draw(st.sampled_from([1, 2, 3, 65536]))
    policy = draw(st.sampled_from(DEFRAG_POLICIES))
    ident = draw(st.integers(0, 0xFFFF))
    return version, data, pieces, order, batch_size, policy, ident


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragmentations())
def test_random_fragmentations_reassemble(case):
    from scapy.layers.inet import IP, defragment

    version, data, pieces, order, batch_size, policy, ident = case
    last = len(pieces) - 1
    if version == 4:
        frags = [
            ipv4_frag(off, k != last, chunk, ident=ident, proto=17) for k, (off, chunk) in enumerate(pieces)
        ]
    else:
        frags = [
            ipv6_frag(off, k != last, chunk, ident=ident, nh=17) for k, (off, chunk) in enumerate(pieces)
        ]
    sent = [frags[k].copy() for k in order]
    with tempfile.TemporaryDirectory() as tmp:
        r = run_packets(
            Path(tmp), sent, config=DefragConfig(policy=policy), batch_size=batch_size, flush=True
        )
    # a datagram completes when every piece has arrived; copies after that start another
    completions, seen = [], set()
    for number, k in enumerate(order, 1):
        seen.add(k)
        if len(seen) == len(pieces):
            completions.append(number)
            seen = set()
    assert r.numbers == completions
    assert [ip_payload(d) for d in r.datagrams] == [data] * len(completions)
    s = r.stats
    assert s[f"ipv{version}.reassembled"] == len(completions)
    assert s["fragments_reassembled"] == completions[-1]
    assert s["fragments_flushed"] == len(order) - completions[-1]
    assert s[f"ipv{version}.frag_overlap_different_data"] == 0
    if version == 4:
        theirs = defragment([f[IP] for f in frags])
        assert len(theirs) == 1 and bytes(theirs[0]) == r.datagrams[0]


# ---------------------------------------------------------------------------------------
# What keys a datagram, and per-packet policies


def test_key_separates_vlan_protocol_and_addresses(tmp_path):
    pkts = [
        ipv4_frag(0, 1, b"A" * 8, vlan=10),
        ipv4_frag(8, 0, b"B" * 8, vlan=11),  # other VLAN
        ipv4_frag(8, 0, b"B" * 8, proto=17),  # other protocol
        ipv4_frag(8, 0, b"B" * 8, dst="2.2.2.3"),  # other destination
        ipv4_frag(8, 0, b"B" * 8, ident=2),  # other id
        ipv6_frag(8, 0, b"B" * 8),  # other IP version
        ipv4_frag(8, 0, b"B" * 8, vlan=10),  # this one completes it
    ]
    r = run_packets(tmp_path, pkts, flush=True)
    assert [ip_payload(d) for d in r.datagrams] == [b"A" * 8 + b"B" * 8] and r.numbers == [7]
    assert r.stats["tracker_flushed"] == 5 and r.stats["fragments_flushed"] == 5


def test_policy_per_packet_from_the_destination(tmp_path):
    pkts = []
    for dst in ("2.2.2.2", "3.3.3.3"):
        pkts += [
            ipv4_frag(0, 1, b"A" * 16, dst=dst),
            ipv4_frag(0, 1, b"B" * 16, dst=dst),
            ipv4_frag(16, 0, b"C" * 8, dst=dst),
        ]
    codes = {0x02020202: policy_code("first"), 0x03030303: policy_code("last")}

    def policy_of(dec):
        return np.array([codes.get(int(v) & 0xFFFFFFFF, 0) for v in dec.dst_lo], np.uint8)

    r = run_packets(tmp_path, pkts, policy_of=policy_of)
    assert [ip_payload(d) for d in r.datagrams] == [b"A" * 16 + b"C" * 8, b"B" * 16 + b"C" * 8]


# ---------------------------------------------------------------------------------------
# Timeout, memcap, max fragments, max trackers


def test_timeout_drops_incomplete_datagrams(tmp_path):
    pkts = [
        ipv4_frag(0, 1, b"A" * 8, ident=1),
        ipv4_frag(0, 1, b"X" * 8, ident=2),
        ipv4_frag(8, 0, b"Y" * 8, ident=2),  # completes id 2 at once
        ipv4_frag(8, 0, b"B" * 8, ident=1),  # 61 s later: id 1 has timed out
    ]
    for p, t in zip(pkts, (0.0, 1.0, 2.0, 61.5), strict=True):
        p.time = T0 + t
    r = run_packets(tmp_path, pkts, retime=False, config=DefragConfig(timeout_s=60), batch_size=1)
    assert [ip_payload(d) for d in r.datagrams] == [b"X" * 8 + b"Y" * 8]
    s = r.stats
    assert s["tracker_timeout"] == 1 and s["fragments_timed_out"] == 1
    # the late fragment started a datagram of its own, which expire() drops in time
    assert r.defrag.active == 1
    t_late = (T0_S + 61) * 10**9 + 500_000_000
    assert r.defrag.expire(t_late + 60 * 10**9) == 0
    assert r.defrag.expire(t_late + 61 * 10**9) == 1
    assert r.defrag.stats()["tracker_timeout"] == 2 and r.defrag.active == 0


def test_each_fragment_restarts_the_timeout(tmp_path):
    """As Suricata: the timeout runs from a datagram's latest fragment, so fragments 50 s
    apart complete a datagram whose first fragment is 100 s old."""
    pkts = [
        ipv4_frag(0, 1, b"A" * 8, ident=1),
        ipv4_frag(8, 1, b"B" * 8, ident=1),
        ipv4_frag(16, 0, b"C" * 8, ident=1),
    ]
    for p, t in zip(pkts, (0.0, 50.0, 100.0), strict=True):
        p.time = T0 + t
    r = run_packets(tmp_path, pkts, retime=False, config=DefragConfig(timeout_s=60), batch_size=1)
    assert [ip_payload(d) for d in r.datagrams] == [b"A" * 8 + b"B" * 8 + b"C" * 8]
    assert r.stats["tracker_timeout"] == 0


def test_timeout_is_checked_at_the_end_of_each_batch(tmp_path):
    pkts = [ipv4_frag(0, 1, b"A" * 8, ident=1), ipv4_frag(0, 1, b"A" * 8, ident=2, proto=6)]
    pkts[0].time, pkts[1].time = T0, T0 + 100
    r = run_packets(tmp_path, pkts, retime=False, batch_size=1)
    assert r.stats["tracker_timeout"] == 1 and r.defrag.active == 1
    assert r.defrag.flush() == 1 and r.defrag.stats()["tracker_flushed"] == 1


def test_memcap_drops_and_counts(tmp_path):
    # each first fragment holds 20 header + 400 data bytes; 1000 bytes fit two datagrams
    firsts = [ipv4_frag(0, 1, bytes([k]) * 400, ident=k) for k in range(4)]
    lasts = [ipv4_frag(400, 0, b"z" * 8, ident=k) for k in range(4)]
    r = run_packets(tmp_path, firsts + lasts, config=DefragConfig(memcap=1000), flush=True)
    assert [ip_payload(d)[0] for d in r.datagrams] == [0, 1]
    s = r.stats
    assert s["memcap_dropped"] == 2
    assert s["fragments_flushed"] == 2  # the last fragments of the two that did not fit
    assert s["memuse"] == 0


def test_max_fragments_and_max_trackers(tmp_path):
    firsts = [ipv4_frag(0, 1, b"a" * 8, ident=k) for k in range(3)]
    seconds = [ipv4_frag(8, 1, b"b" * 8, ident=k) for k in range(3)]
    r = run_packets(tmp_path, firsts + seconds, config=DefragConfig(max_fragments=4), flush=True)
    assert r.stats["max_frags_reached"] == 2 and r.stats["fragments_flushed"] == 4

    r = run_packets(
        tmp_path, firsts + seconds, name="t.pcap", config=DefragConfig(max_trackers=2), flush=True
    )
    assert r.stats["max_trackers_reached"] == 2 and r.stats["fragments_flushed"] == 4


# ---------------------------------------------------------------------------------------
# Malformed fragments are counted by reason, never reassembled, never a crash


def test_invalid_fragments_are_counted(tmp_path):
    from scapy.layers.inet import IP, IPOption_NOP

    nops = [IPOption_NOP()] * 40
    big = IP(src="1.1.1.1", dst="2.2.2.2", id=9, proto=1, flags="MF", options=nops) / (b"o" * 32760)
    pkts = [
        ipv4_frag(8, 0, b"", ident=1),  # zero length (Suricata's no-data case)
        ipv4_frag(8183 * 8, 0, b"A" * 71, ident=2),  # past 65535 bytes
        ipv6_frag(0, 1, b"A" * 12, ident=3),  # not a multiple of 8 with M set
        ipv4_frag(0, 1, b"A" * 16, ident=4, len=0),  # total length 0: no fragment length
        ipv4_frag(0, 0, b"A" * 8, ident=5),  # offset 0 without MF: no fragment
        ipv4_frag(0, 1, b"A" * 8, ident=6),
        ipv4_frag(8, 0, b"B" * 8, ident=6),
        ipv4_frag(0, 1, b"A" * 8, ident=7),
        ipv4_frag(16, 0, b"C" * 8, ident=7),
        ipv4_frag(32, 0, b"D" * 8, ident=7),  # another end: conflicting
        ipv4_frag(40, 1, b"E" * 8, ident=7),  # past the end
        ether() / big,  # 60-byte header and data up to 65515: too long once reassembled
        ipv4_frag(32760, 0, b"t" * (65515 - 32760), ident=9),
    ]
    # every IP packet is handed over, so the one that is no fragment is seen too
    r = run_packets(tmp_path, pkts, select=lambda dec: dec.ip_version > 0, flush=True)
    s = r.stats
    assert [ip_payload(d) for d in r.datagrams] == [b"A" * 8 + b"B" * 8]
    assert s["invalid.zero_length"] == 1
    assert s["invalid.too_large"] == 1
    assert s["invalid.not_multiple_of_8"] == 1
    assert s["invalid.bad_header"] == 1
    assert s["invalid.not_fragment"] == 1
    assert s["invalid.conflicting_end"] == 1
    assert s["invalid.past_end"] == 1
    assert s["invalid.reassembled_too_large"] == 1 and s["fragments_too_large"] == 2
    assert s["tracker_flushed"] == 1  # id 7, still missing [8, 16)


def test_fragment_cut_by_the_snap_length_is_counted(tmp_path):
    pkts = [ipv4_frag(0, 1, b"A" * 64), ipv4_frag(64, 0, b"B" * 8)]

    def cut_first(batch):
        batch.caplen = batch.caplen.copy()
        batch.caplen[0] -= 10
        return batch

    r = run_packets(tmp_path, pkts, mangle=cut_first, flush=True)
    assert r.datagrams == [] and r.stats["invalid.truncated"] == 1


def mutated_fragments(rng, count):
    """Fragments of a few datagrams with random header and length damage."""
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6

    frames = []
    for k in range(6):
        payload = bytes(rng.integers(0, 256, 900 + 37 * k, dtype=np.uint8))
        v4 = IP(src="10.0.0.1", dst="10.0.0.2", id=k) / UDP() / payload
        v6 = IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrFragment(id=k) / UDP() / payload
        frames += [bytes(f) for f in fragment(v4, 200)] + [bytes(f) for f in fragment6(v6, 300)]
    out = []
    for _ in range(count):
        frame = bytearray(frames[rng.integers(len(frames))])
        for _ in range(rng.integers(0, 4)):
            pos = int(rng.integers(0, min(len(frame), 60)))  # headers, mostly
            frame[pos] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            frame = frame[: rng.integers(0, len(frame) + 1)]
        out.append(bytes(frame))
    return out


def raw_batch(frames, gaps=None, rng=None):
    """A raw-IP PacketBatch of ``frames``, packed or with random garbage between them."""
    parts, offsets, pos = [], [], 0
    for k, f in enumerate(frames):
        if gaps is not None:
            junk = bytes(rng.integers(0, 256, int(gaps[k]), dtype=np.uint8))
            parts.append(junk)
            pos += len(junk)
        offsets.append(pos)
        parts.append(f)
        pos += len(f)
    n = len(frames)
    lengths = np.array([len(f) for f in frames], np.int64)
    buffer = np.frombuffer(b"".join(parts), np.uint8)  # read-only, as a mapped capture
    return PacketBatch(
        buffer,
        np.array(offsets, np.int64),
        lengths,
        lengths.copy(),
        (np.arange(n, dtype=np.int64) * 1000 + int(T0 * 1e9)),
        np.full(n, 101, np.int64),
        np.arange(1, n + 1, dtype=np.int64),
    )


def header_columns(batch: PacketBatch):
    """The few decoded columns the defragmenter reads, for raw-IP frames, in plain Python
    (so the boundscheck child compiles the defrag kernels alone)."""
    from dpi.decode.columns import DecodedBatch

    dec = DecodedBatch.allocate(len(batch))
    dec.l3_offset[:] = batch.offset
    for i in range(len(batch)):
        frame = batch.frame(i)
        version = frame[0] >> 4 if frame else 0
        if version == 4 and len(frame) >= 20:
            dec.ip_version[i] = 4
            dec.src_lo[i] = 0xFFFF00000000 | int.from_bytes(frame[12:16], "big")
            dec.dst_lo[i] = 0xFFFF00000000 | int.from_bytes(frame[16:20], "big")
        elif version == 6 and len(frame) >= 40:
            dec.ip_version[i] = 6
            words = [int.from_bytes(frame[k : k + 8], "big") for k in range(8, 40, 8)]
            dec.src_hi[i], dec.src_lo[i], dec.dst_hi[i], dec.dst_lo[i] = words
    return dec


def fuzz_round(frames, seed, chunk, decoder=None):
    """Datagrams and stats of the frames packed, and again with garbage between them: a
    read outside a frame would make them differ. Some non-fragments are handed over too."""
    results = []
    for gapped in (False, True):
        rng = np.random.default_rng(seed)  # the same gaps and selections in both rounds
        junk = np.random.default_rng(seed + 1)
        df = Defragmenter(DefragConfig(memcap=1 << 16, max_fragments=64, max_trackers=16))
        got, n = [], 0
        for start in range(0, len(frames), chunk):
            part = frames[start : start + chunk]
            gaps = rng.integers(0, 50, len(part))
            extra = rng.random(len(part)) < 0.05
            batch = raw_batch(part, gaps if gapped else None, junk)
            if decoder is None:
                dec = decode_batch(batch)
                mask = (dec.is_fragment != 0) | extra
            else:
                dec = decoder(batch)
                mask = np.ones(len(part), bool)
            n += int(mask.sum())
            out = df.process(batch, dec, mask)
            got += [out.frame(k) for k in range(len(out))]
            check_held_state(df)
        df.flush()
        s = df.stats()
        assert accounted(s) == n, s
        results.append((got, s))
    assert results[0] == results[1]
    return results[0]


def test_mutated_fragments_never_crash_and_are_accounted():
    rng = np.random.default_rng(7)
    got, s = fuzz_round(mutated_fragments(rng, 3000), seed=8, chunk=500)
    assert s["ipv4.reassembled"] + s["ipv6.reassembled"] > 0
    assert s["invalid.bad_header"] > 0 and s["invalid.truncated"] > 0
    for frame in got:  # every datagram decodes as a whole IP packet
        assert decode_batch(raw_batch([frame])).is_fragment[0] == 0


def boundscheck_main(count: int = 3000) -> None:
    """Runs in the child (NUMBA_BOUNDSCHECK=1, fresh cache): an out-of-bounds access in
    the kernels is an IndexError there."""
    import numba

    assert numba.config.BOUNDSCHECK
    frames = mutated_fragments(np.random.default_rng(11), count)
    total = 0
    for chunk in (1, 400):
        got, s = fuzz_round(frames, seed=12, chunk=chunk, decoder=header_columns)
        total += s["ipv4.reassembled"] + s["ipv6.reassembled"]
    print("fuzzed", count, "reassembled", total)


@pytest.mark.slow
def test_mutated_fragments_under_numba_boundscheck(tmp_path):
    child = run_bounds_checked(tmp_path, ["-c", "import test_defrag as t; t.boundscheck_main()"])
    assert child.returncode == 0, f"defrag failed under NUMBA_BOUNDSCHECK:\n{child.stderr[-4000:]}"
    assert "fuzzed" in child.stdout and "reassembled 0" not in child.stdout, child.stdout


# ---------------------------------------------------------------------------------------
# Real captures: the same datagrams as tshark (whose overlap rule is bsd's)

FRAGMENT_CAPTURES = [
    "chrissanders/ip-frag-source.pcapng",
    "chrissanders/ipv6-fragments.pcapng",
    "ndpi/dns-fragmented.pcap",
    "ndpi/ip-fragmented-garbage.pcap",
    "zeek/dns-edns-ecs.pcap",
    "zeek/ipv4-fragmented-1.pcap",  # overlap with other data, data past the last fragment
    "zeek/ipv4-fragmented-2.pcap",  # a hole: nothing reassembled
    "zeek/ipv4-fragmented-3.pcap",  # no last fragment
    "zeek/ipv4-fragmented-4.pcap",  # overlapping fragments
    "zeek/ipv4-fragmented-syn.pcap",
    "zeek/ipv6-fragmented-dns.pcap",
]


def tshark_datagrams(path) -> dict[int, bytes]:
    """{frame number: reassembled data behind the IP header(s)} as tshark sees it."""
    fields = ["frame.number", "ip.reassembled.data", "ipv6.reassembled.data"]
    cmd = [
        "tshark",
        "-r",
        str(path),
        "-Y",
        "ip.reassembled.length or ipv6.reassembled.length",
        "-T",
        "fields",
    ]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=120).stdout
    result = {}
    for line in out.splitlines():
        number, v4, v6 = line.split("\t")
        result[int(number)] = bytes.fromhex(v4 or v6)
    return result


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", FRAGMENT_CAPTURES)
def test_real_captures_match_tshark(shared_data, name):
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    path = shared_data / "pcaps" / name
    if not path.is_file():
        pytest.skip(f"{name} is not in the shared data")
    r = run(path, flush=True)
    mine = {}
    for number, frame in zip(r.numbers, r.datagrams, strict=True):
        if frame[0] >> 4 == 4:
            mine[number] = ip_payload(frame)
        else:  # tshark gives the data behind the fragment header; the decoder finds it
            dec = decode_batch(raw_batch([frame]))
            assert dec.is_fragment[0] == 0 and dec.l4_offset[0] >= 40
            mine[number] = frame[int(dec.l4_offset[0]) :]
    assert mine == tshark_datagrams(path)
    s = r.stats
    assert s["ipv4.reassembled"] + s["ipv6.reassembled"] == len(mine)
