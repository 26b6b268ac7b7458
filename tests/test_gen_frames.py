"""The frame writer behind `dpi gen` (dpi.gen.frames), read back by scapy and by our decoder."""

from __future__ import annotations

import numpy as np
import pytest
from scapy.layers.inet import IP, TCP, UDP, defrag
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, defragment6
from scapy.layers.l2 import Dot1Q
from scapy.utils import rdpcap

from dpi.capture import open_capture
from dpi.decode import decode_batch
from dpi.gen.frames import Frames, build_datagrams, pcap_bytes

V4_CLIENT, V4_SERVER = (10 << 24) | 1, (10 << 24) | (200 << 16) | 1  # 10.0.0.1, 10.200.0.1
V6_HI = 0x20010DB800000000  # 2001:db8::/64


def random_rows(rng, n):
    v6 = rng.random(n) < 0.4
    proto = np.where(rng.random(n) < 0.7, 6, 17).astype(np.uint8)
    lengths = rng.integers(0, 1400, n)
    lengths[:3] = [0, 1, 7]  # empty and odd payloads
    payload = rng.integers(0, 256, int(lengths.sum()), dtype=np.uint8)
    return {
        "proto": proto,
        "ip_version": np.where(v6, 6, 4).astype(np.uint8),
        "src_hi": np.where(v6, V6_HI, 0).astype(np.uint64),
        "src_lo": np.where(v6, rng.integers(1, 2**63, n), V4_CLIENT + rng.integers(0, 200, n)).astype(
            np.uint64
        ),
        "dst_hi": np.where(v6, V6_HI, 0).astype(np.uint64),
        "dst_lo": np.where(v6, 2, V4_SERVER).astype(np.uint64),
        "sport": rng.integers(1024, 65536, n),
        "dport": rng.choice([53, 80, 443, 25], n),
        "payload_buf": payload,
        "payload_off": np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        "payload_len": lengths,
        "seq": rng.integers(0, 2**32, n),
        "ack": rng.integers(0, 2**32, n),
        "flags": rng.choice([0x02, 0x12, 0x10, 0x18, 0x11], n).astype(np.uint8),
    }


def write(tmp_path, frames: Frames):
    path = tmp_path / "f.pcap"
    pcap_bytes(frames).tofile(path)
    return path


def checksum_ok(packet, layer) -> bool:
    """scapy recomputes a checksum left out (over the pseudo-header too); the written one must be it."""
    copy = packet.__class__(bytes(packet))
    written = copy[layer].chksum
    del copy[layer].chksum
    return packet.__class__(bytes(copy))[layer].chksum == written


def test_whole_datagrams_read_back_with_valid_checksums(tmp_path):
    rng = np.random.default_rng(4)
    n = 300
    rows = random_rows(rng, n)
    buf, off, length = build_datagrams(**rows)
    vlan = np.where(rng.random(n) < 0.3, rng.integers(1, 4095, n), -1)
    ts = 1_700_000_000_000_000_000 + np.arange(n) * 1_234_567
    frames = Frames(
        ts_ns=ts, ip_version=rows["ip_version"], src_hi=rows["src_hi"], src_lo=rows["src_lo"],
        dst_hi=rows["dst_hi"], dst_lo=rows["dst_lo"], proto=rows["proto"], data_buf=buf, data_off=off,
        data_len=length, vlan=vlan, ip_id=np.arange(n), ttl=rng.integers(1, 255, n),
    )  # fmt: skip
    packets = rdpcap(str(write(tmp_path, frames)))
    assert len(packets) == n
    for i, p in enumerate(packets):
        assert int(p.time * 10**9) // 1000 == ts[i] // 1000  # scapy keeps ns as a float
        assert (Dot1Q in p) == (vlan[i] >= 0) and (Dot1Q not in p or p[Dot1Q].vlan == vlan[i])
        ip = p[IPv6] if rows["ip_version"][i] == 6 else p[IP]
        if rows["ip_version"][i] == 4:
            assert checksum_ok(p, IP) and ip.src == f"10.0.0.{1 + int(rows['src_lo'][i]) - V4_CLIENT}"
        l4 = p[TCP] if rows["proto"][i] == 6 else p[UDP]
        assert checksum_ok(p, l4.__class__)
        assert (l4.sport, l4.dport) == (rows["sport"][i], rows["dport"][i])
        start, size = int(rows["payload_off"][i]), int(rows["payload_len"][i])
        assert bytes(l4.payload) == rows["payload_buf"][start : start + size].tobytes()
        if rows["proto"][i] == 6:
            assert (l4.seq, l4.ack, int(l4.flags)) == (rows["seq"][i], rows["ack"][i], rows["flags"][i])
    # our own decoder agrees on every packet
    batch = next(open_capture(str(tmp_path / "f.pcap")).batches())
    decoded = decode_batch(batch)
    assert np.all(decoded.status == 0)
    assert decoded.payload_len.tolist() == rows["payload_len"].tolist()
    assert decoded.dport.tolist() == rows["dport"].tolist()


@pytest.mark.parametrize("version", [4, 6])
def test_fragments_reassemble_to_the_datagram(tmp_path, version):
    rng = np.random.default_rng(version)
    payload = rng.integers(0, 256, 3000, dtype=np.uint8)
    v6 = version == 6
    address = {"src_hi": V6_HI if v6 else 0, "src_lo": 5 if v6 else V4_CLIENT,
               "dst_hi": V6_HI if v6 else 0, "dst_lo": 6 if v6 else V4_SERVER}  # fmt: skip
    buf, off, length = build_datagrams(
        proto=[17], ip_version=version, payload_buf=payload, payload_off=[0], payload_len=[3000],
        sport=5000, dport=53, **address,
    )  # fmt: skip
    cuts = np.array([0, 8, 808, 1608, 2400, int(length[0])])  # multiples of 8 but the end
    frag_len = np.diff(cuts)
    order = np.array([3, 0, 4, 2, 1])  # out of order on the wire
    frames = Frames(
        ts_ns=np.arange(5) * 1000, ip_version=version, proto=17, data_buf=buf, data_off=cuts[:-1][order],
        data_len=frag_len[order], frag_offset=cuts[:-1][order], more_fragments=(order < 4), ip_id=77,
        fragment_header=v6, **address,
    )  # fmt: skip
    packets = rdpcap(str(write(tmp_path, frames)))
    if v6:
        assert all(IPv6ExtHdrFragment in p for p in packets)
        whole = IPv6(bytes(defragment6([p[IPv6] for p in packets])))  # scapy leaves it Raw
    else:
        # scapy's defrag wants fragments in offset order (ours does not: see tests/test_defrag.py)
        _, done, missing = defrag(sorted(packets, key=lambda p: p[IP].frag))
        assert len(done) == 1 and not missing
        whole = done[0][IP]
    assert bytes(whole[UDP].payload) == payload.tobytes() and checksum_ok(whole, UDP)
