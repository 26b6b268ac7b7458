"""Write frames from columns: TCP and UDP datagrams with their checksums, then Ethernet (optionally
802.1Q), IPv4 or IPv6 around whole datagrams or fragments of them, straight into pcap bytes.

Two Numba kernels, no Python per packet:

- ``build_datagrams``: each row's L4 header (TCP or UDP) and payload, checksummed over the IP
  pseudo-header, into one buffer. A datagram is what IP carries; fragments are cut from it.
- ``write_pcap``: each frame's pcap record, link and IP headers, then ``length`` bytes from a data
  buffer. A frame's bytes need not be a slice of its datagram: overlapping fragments with conflicting
  data point elsewhere. IPv4 fragments carry their offset and MF flag in the header; IPv6 ones get a
  Fragment extension header.

Addresses are 128-bit as two uint64 (IPv4 in the low 32 bits of ``lo``), as the decoder's columns are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

ETH_LEN, VLAN_LEN, IP4_LEN, IP6_LEN, FRAG6_LEN = 14, 4, 20, 40, 8
TCP_LEN, UDP_LEN = 20, 8
PCAP_HEADER_LEN, RECORD_HEADER_LEN = 24, 16
TCP, UDP = 6, 17
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT_MAC = b"\x02\x00\x00\x00\x00\x01"
SERVER_MAC = b"\x02\x00\x00\x00\x00\x02"
SNAPLEN = 262144


@njit(cache=True)
def _sum16(buf, start, length, acc):
    """Ones'-complement accumulation of big-endian 16-bit words (an odd last byte is padded)."""
    end = start + length
    i = start
    while i + 1 < end:
        acc += (np.uint64(buf[i]) << np.uint64(8)) | np.uint64(buf[i + 1])
        i += 2
    if i < end:
        acc += np.uint64(buf[i]) << np.uint64(8)
    return acc


@njit(cache=True)
def _fold(acc):
    while acc >> np.uint64(16):
        acc = (acc & np.uint64(0xFFFF)) + (acc >> np.uint64(16))
    return np.uint64(~acc & np.uint64(0xFFFF))


@njit(cache=True)
def _put(buf, at, value, width):
    for k in range(width):
        buf[at + k] = (value >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)


@njit(cache=True)
def _address_sum(hi, lo, v6, acc):
    if v6:
        for part in (hi, lo):
            for k in range(4):
                acc += (part >> np.uint64(48 - 16 * k)) & np.uint64(0xFFFF)
    else:
        acc += (lo >> np.uint64(16)) & np.uint64(0xFFFF)
        acc += lo & np.uint64(0xFFFF)
    return acc


@njit(cache=True)
def _build_datagrams(
    out, out_off, proto, ip_version, src_hi, src_lo, dst_hi, dst_lo, sport, dport,
    seq, ack, flags, window, payload_buf, payload_off, payload_len,
):  # fmt: skip
    for r in range(out_off.shape[0]):
        at = out_off[r]
        hdr = TCP_LEN if proto[r] == TCP else UDP_LEN
        n = hdr + payload_len[r]
        out[at + hdr : at + n] = payload_buf[payload_off[r] : payload_off[r] + payload_len[r]]
        _put(out, at, np.uint64(sport[r]), 2)
        _put(out, at + 2, np.uint64(dport[r]), 2)
        if proto[r] == TCP:
            _put(out, at + 4, np.uint64(seq[r]), 4)
            _put(out, at + 8, np.uint64(ack[r]), 4)
            out[at + 12] = 0x50  # 5 words, no options
            out[at + 13] = flags[r]
            _put(out, at + 14, np.uint64(window[r]), 2)
            check_at = at + 16
        else:
            _put(out, at + 4, np.uint64(n), 2)
            check_at = at + 6
        v6 = ip_version[r] == 6
        acc = _address_sum(src_hi[r], src_lo[r], v6, np.uint64(0))
        acc = _address_sum(dst_hi[r], dst_lo[r], v6, acc)
        acc += np.uint64(proto[r]) + np.uint64(n)
        acc = _sum16(out, at, n, acc)
        check = _fold(acc)
        if proto[r] == UDP and check == 0:
            check = np.uint64(0xFFFF)  # zero means "no checksum" in UDP
        _put(out, check_at, check, 2)


@njit(cache=True)
def _write_pcap(
    out, rec_off, ts_ns, vlan, to_server, ip_version, src_hi, src_lo, dst_hi, dst_lo, proto, ttl, ip_id,
    frag_offset, more_fragments, fragment_header, data_buf, data_off, data_len, client_mac, server_mac,
):  # fmt: skip
    for r in range(rec_off.shape[0]):
        at = rec_off[r]
        v6 = ip_version[r] == 6
        link = ETH_LEN + (VLAN_LEN if vlan[r] >= 0 else 0)
        ip_len = (IP6_LEN + (FRAG6_LEN if fragment_header[r] else 0)) if v6 else IP4_LEN
        frame = link + ip_len + data_len[r]
        # pcap record header, little-endian, nanosecond timestamps
        sec = ts_ns[r] // 1_000_000_000
        nsec = ts_ns[r] % 1_000_000_000
        for k, value in enumerate((sec, nsec, frame, frame)):
            for b in range(4):
                out[at + 4 * k + b] = (value >> (8 * b)) & 0xFF
        e = at + RECORD_HEADER_LEN
        src_mac, dst_mac = (client_mac, server_mac) if to_server[r] else (server_mac, client_mac)
        for k in range(6):
            out[e + k] = dst_mac[k]
            out[e + 6 + k] = src_mac[k]
        if vlan[r] >= 0:
            _put(out, e + 12, np.uint64(0x8100), 2)
            _put(out, e + 14, np.uint64(vlan[r] & 0xFFF), 2)
        _put(out, e + link - 2, np.uint64(0x86DD if v6 else 0x0800), 2)
        ip = e + link
        if v6:
            out[ip] = 0x60
            _put(out, ip + 4, np.uint64(ip_len - IP6_LEN + data_len[r]), 2)
            out[ip + 6] = 44 if fragment_header[r] else proto[r]
            out[ip + 7] = ttl[r]
            _put(out, ip + 8, src_hi[r], 8)
            _put(out, ip + 16, src_lo[r], 8)
            _put(out, ip + 24, dst_hi[r], 8)
            _put(out, ip + 32, dst_lo[r], 8)
            if fragment_header[r]:
                f = ip + IP6_LEN
                out[f] = proto[r]
                _put(out, f + 2, np.uint64((frag_offset[r] // 8) << 3 | (1 if more_fragments[r] else 0)), 2)
                _put(out, f + 4, np.uint64(ip_id[r]), 4)
        else:
            out[ip] = 0x45
            _put(out, ip + 2, np.uint64(IP4_LEN + data_len[r]), 2)
            _put(out, ip + 4, np.uint64(ip_id[r] & 0xFFFF), 2)
            _put(out, ip + 6, np.uint64((0x2000 if more_fragments[r] else 0) | (frag_offset[r] // 8)), 2)
            out[ip + 8] = ttl[r]
            out[ip + 9] = proto[r]
            _put(out, ip + 12, src_lo[r] & np.uint64(0xFFFFFFFF), 4)
            _put(out, ip + 16, dst_lo[r] & np.uint64(0xFFFFFFFF), 4)
            _put(out, ip + 10, _fold(_sum16(out, ip, IP4_LEN, np.uint64(0))), 2)
        d = ip + ip_len
        out[d : d + data_len[r]] = data_buf[data_off[r] : data_off[r] + data_len[r]]


def _col(values, n: int, dtype) -> np.ndarray:
    """A column of n rows from an array or a scalar."""
    array = np.asarray(values, dtype=dtype)
    return np.broadcast_to(array, (n,)).copy() if array.ndim == 0 else np.ascontiguousarray(array)


def build_datagrams(
    proto, ip_version, src_hi, src_lo, dst_hi, dst_lo, sport, dport, payload_buf, payload_off, payload_len,
    seq=0, ack=0, flags=ACK | PSH, window=65535,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """(buffer, offset, length) of each row's TCP or UDP datagram, checksummed."""
    payload_len = np.ascontiguousarray(payload_len, dtype=np.int64)
    n = payload_len.shape[0]
    proto = _col(proto, n, np.uint8)
    if np.any((proto != TCP) & (proto != UDP)):
        raise ValueError("datagrams are TCP (6) or UDP (17)")
    length = np.where(proto == TCP, TCP_LEN, UDP_LEN) + payload_len
    offset = np.zeros(n, dtype=np.int64)
    np.cumsum(length[:-1], out=offset[1:])
    out = np.zeros(int(length.sum()), dtype=np.uint8)
    u64 = [_col(a, n, np.uint64) for a in (src_hi, src_lo, dst_hi, dst_lo)]
    _build_datagrams(
        out, offset, proto, _col(ip_version, n, np.uint8), *u64, _col(sport, n, np.int64),
        _col(dport, n, np.int64), _col(seq, n, np.int64) % 2**32, _col(ack, n, np.int64) % 2**32,
        _col(flags, n, np.uint8), _col(window, n, np.int64),
        np.ascontiguousarray(payload_buf, dtype=np.uint8), _col(payload_off, n, np.int64), payload_len,
    )  # fmt: skip
    return out, offset, length


@dataclass
class Frames:
    """One row per frame. ``data_*`` name the bytes IP carries in the frame: a whole datagram, or the
    fragment of it at ``frag_offset``. ``to_server`` picks the MAC addresses' direction."""

    ts_ns: np.ndarray
    ip_version: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    proto: np.ndarray
    data_buf: np.ndarray
    data_off: np.ndarray
    data_len: np.ndarray
    to_server: np.ndarray | bool = True
    vlan: np.ndarray | int = -1
    ttl: np.ndarray | int = 64
    ip_id: np.ndarray | int = 0
    frag_offset: np.ndarray | int = 0
    more_fragments: np.ndarray | bool = False
    fragment_header: np.ndarray | bool = False  # IPv6: a Fragment header (fragments, atomic ones too)


def pcap_bytes(frames: Frames) -> np.ndarray:
    """A whole pcap file (little-endian, nanosecond timestamps, Ethernet) of the frames, in row order."""
    n = np.asarray(frames.data_len).shape[0]
    data_len = _col(frames.data_len, n, np.int64)
    v6 = _col(frames.ip_version, n, np.uint8) == 6
    vlan = _col(frames.vlan, n, np.int32)
    frag6 = _col(frames.fragment_header, n, np.bool_)
    ip_len = np.where(v6, IP6_LEN + np.where(frag6, FRAG6_LEN, 0), IP4_LEN)
    frame_len = ETH_LEN + np.where(vlan >= 0, VLAN_LEN, 0) + ip_len + data_len
    if np.any(frame_len > SNAPLEN):
        raise ValueError(f"a frame of {int(frame_len.max())} bytes is past the snap length {SNAPLEN}")
    frag_offset = _col(frames.frag_offset, n, np.int64)
    if np.any(frag_offset % 8):
        raise ValueError("fragment offsets are multiples of 8 bytes")
    rec_off = PCAP_HEADER_LEN + np.concatenate([[0], np.cumsum(RECORD_HEADER_LEN + frame_len)[:-1]]).astype(
        np.int64
    )
    out = np.zeros(PCAP_HEADER_LEN + int((RECORD_HEADER_LEN + frame_len).sum()), dtype=np.uint8)
    header = np.array([0xA1B23C4D, 0x00040002, 0, 0, SNAPLEN, 1], dtype="<u4").tobytes()[:24]
    out[:PCAP_HEADER_LEN] = np.frombuffer(header, dtype=np.uint8)
    u64 = [_col(a, n, np.uint64) for a in (frames.src_hi, frames.src_lo, frames.dst_hi, frames.dst_lo)]
    _write_pcap(
        out, rec_off if n else np.zeros(0, np.int64), _col(frames.ts_ns, n, np.int64), vlan,
        _col(frames.to_server, n, np.bool_), _col(frames.ip_version, n, np.uint8), *u64,
        _col(frames.proto, n, np.uint8), _col(frames.ttl, n, np.uint8), _col(frames.ip_id, n, np.int64),
        frag_offset, _col(frames.more_fragments, n, np.bool_), frag6,
        np.ascontiguousarray(frames.data_buf, dtype=np.uint8), _col(frames.data_off, n, np.int64), data_len,
        np.frombuffer(CLIENT_MAC, np.uint8), np.frombuffer(SERVER_MAC, np.uint8),
    )  # fmt: skip
    return out


_ROW_FIELDS = ("ts_ns", "ip_version", "src_hi", "src_lo", "dst_hi", "dst_lo", "proto", "data_off",
               "data_len", "to_server", "vlan", "ttl", "ip_id", "frag_offset", "more_fragments",
               "fragment_header")  # fmt: skip
_ROW_TYPES = (np.int64, np.uint8, np.uint64, np.uint64, np.uint64, np.uint64, np.uint8, np.int64, np.int64,
              np.bool_, np.int32, np.uint8, np.int64, np.int64, np.bool_, np.bool_)  # fmt: skip


def concat_frames(parts: list[Frames]) -> Frames:
    """One frame table of several, their data buffers joined (offsets moved along)."""
    sizes = [np.asarray(p.data_len).shape[0] for p in parts]
    base = np.cumsum([0] + [len(p.data_buf) for p in parts[:-1]])
    columns = {}
    for name, dtype in zip(_ROW_FIELDS, _ROW_TYPES, strict=True):
        pieces = [_col(getattr(p, name), n, dtype) for p, n in zip(parts, sizes, strict=True)]
        if name == "data_off":
            pieces = [piece + b for piece, b in zip(pieces, base, strict=True)]
        columns[name] = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
    buf = (
        np.concatenate([np.asarray(p.data_buf, np.uint8) for p in parts]) if parts else np.zeros(0, np.uint8)
    )
    return Frames(data_buf=buf, **columns)


def take_frames(frames: Frames, rows: np.ndarray) -> Frames:
    """The frames at ``rows``, in that order (the data buffer is shared)."""
    n = np.asarray(frames.data_len).shape[0]
    columns = {
        name: _col(getattr(frames, name), n, dtype)[rows]
        for name, dtype in zip(_ROW_FIELDS, _ROW_TYPES, strict=True)
    }
    return Frames(data_buf=frames.data_buf, **columns)
