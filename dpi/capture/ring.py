"""The AF_PACKET TPACKET_V3 ring: block and packet header layout, and the block indexer (Numba).

The ring is ``block_count`` blocks of ``block_size`` bytes. Each block starts with a
``struct tpacket_block_desc`` (48 bytes: version, offset_to_priv, then ``tpacket_hdr_v1``:
block_status, num_pkts, offset_to_first_pkt, blk_len, seq_num, first and last timestamps).
Its packets follow as ``struct tpacket3_hdr`` records (48 bytes, then a ``sockaddr_ll``, then
the frame at ``tp_mac``), each record's ``tp_next_offset`` leading to the next. Every field is
native byte order: little endian on the machines we run on, as the rest of the project reads.

The indexer trusts nothing it reads: a block whose header or packet records point outside
the block's used length gives a STOP_RING_* code and the packets before the damage, never
an out-of-bounds read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from dpi.capture.fields import read_u16, read_u32
from dpi.capture.stops import STOP_BATCH_FULL, STOP_END

# struct tpacket_block_desc / tpacket_hdr_v1 field offsets
BLOCK_STATUS = 8
BLOCK_NUM_PKTS = 12
BLOCK_FIRST_PKT = 16
BLOCK_LEN = 20
BLOCK_HEADER_LEN = 48

# struct tpacket3_hdr field offsets
PKT_NEXT_OFFSET = 0
PKT_SEC = 4
PKT_NSEC = 8
PKT_SNAPLEN = 12
PKT_LEN = 16
PKT_STATUS = 20
PKT_MAC = 24
PKT_NET = 26
PKT_VLAN_TCI = 32
PKT_VLAN_TPID = 36
PKT_HEADER_LEN = 48  # TPACKET_ALIGN(sizeof(struct tpacket3_hdr)); a sockaddr_ll follows

# block_status and tp_status bits (linux/if_packet.h)
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1 << 0
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6

ETH_P_8021Q = 0x8100
VLAN_TAG_LEN = 4
ETH_ADDRS_LEN = 12  # destination and source MAC: the tag goes right after them

# Why a block walk stopped early: damage codes above the file indexers' (dpi.capture.stops)
STOP_RING_BLOCK_TOO_SMALL = 40  # detail: bytes available for the block
STOP_RING_BAD_BLOCK_LEN = 41  # detail: blk_len (past the block, or before the first packet)
STOP_RING_BAD_FIRST_OFFSET = 42  # detail: offset_to_first_pkt
STOP_RING_TOO_MANY_PACKETS = 43  # detail: num_pkts (more records than fit in blk_len)
STOP_RING_TRUNCATED_PACKET_HEADER = 44  # detail: the record's offset in the block
STOP_RING_BAD_MAC_OFFSET = 45  # detail: tp_mac (inside the record header)
STOP_RING_FRAME_PAST_BLOCK = 46  # detail: tp_snaplen (the frame runs past blk_len)
STOP_RING_BAD_NEXT_OFFSET = 47  # detail: tp_next_offset (zero, or inside the record's own frame)
STOP_RING_BAD_NSEC = 48  # detail: tp_nsec (a billion or more)

_MESSAGES = {
    STOP_RING_BLOCK_TOO_SMALL: "block space of {} bytes is smaller than a block header",
    STOP_RING_BAD_BLOCK_LEN: "block length {} runs past the block or ends before its first packet",
    STOP_RING_BAD_FIRST_OFFSET: "offset to the first packet {} is inside the block header or past the block",
    STOP_RING_TOO_MANY_PACKETS: "packet count {} is more than the block's length can hold",
    STOP_RING_TRUNCATED_PACKET_HEADER: "packet header at block offset {} runs past the block length",
    STOP_RING_BAD_MAC_OFFSET: "frame offset tp_mac {} points inside the packet header",
    STOP_RING_FRAME_PAST_BLOCK: "captured length {} runs past the block length",
    STOP_RING_BAD_NEXT_OFFSET: "next packet offset {} does not move past this packet's frame",
    STOP_RING_BAD_NSEC: "timestamp nanoseconds {} are a billion or more",
}


def ring_damage_message(stop: int, detail: int) -> str:
    return _MESSAGES.get(stop, "damaged ring block (stop code " + str(stop) + ", detail {})").format(detail)


def block_packet_limit(space: int) -> int:
    """The most packet records that fit in ``space`` bytes of block (sizes the columns)."""
    return max(0, (space - BLOCK_HEADER_LEN) // PKT_HEADER_LEN)


@njit(cache=True, nogil=True)
def index_block(buf, block_start, block_space, restore_vlan, out_offset, out_caplen, out_wirelen, out_ts, n):
    """Index the packets of the TPACKET_V3 block at ``buf[block_start:block_start + block_space]``
    into the out_* columns from row ``n``.

    ``out_offset`` is each frame's first byte in ``buf``. With ``restore_vlan`` the kernel's
    stripped 802.1Q/802.1ad tag is written back into the frame (as libpcap does), using the
    slack before ``tp_mac``: ``buf`` must then be a private copy of the block, not the ring.

    Returns (rows filled, STOP_END | STOP_BATCH_FULL | STOP_RING_* reason, detail value).
    Every field is bounds-checked against the block's used length before it is read.
    """
    cap = out_offset.shape[0]
    if block_start < 0 or block_space < BLOCK_HEADER_LEN or block_start + block_space > buf.shape[0]:
        return n, STOP_RING_BLOCK_TOO_SMALL, block_space
    num_pkts = read_u32(buf, block_start + BLOCK_NUM_PKTS, False)
    first = read_u32(buf, block_start + BLOCK_FIRST_PKT, False)
    used = read_u32(buf, block_start + BLOCK_LEN, False)
    if num_pkts == 0:
        return n, STOP_END, 0
    if used > block_space:
        return n, STOP_RING_BAD_BLOCK_LEN, used
    if first < BLOCK_HEADER_LEN or first >= used:
        return n, STOP_RING_BAD_FIRST_OFFSET, first
    if num_pkts > (used - first) // PKT_HEADER_LEN:
        return n, STOP_RING_TOO_MANY_PACKETS, num_pkts
    pos = first  # relative to the block
    for i in range(num_pkts):
        if n >= cap:
            return n, STOP_BATCH_FULL, i
        if pos + PKT_HEADER_LEN > used:
            return n, STOP_RING_TRUNCATED_PACKET_HEADER, pos
        at = block_start + pos
        sec = read_u32(buf, at + PKT_SEC, False)
        nsec = read_u32(buf, at + PKT_NSEC, False)
        snaplen = read_u32(buf, at + PKT_SNAPLEN, False)
        wirelen = read_u32(buf, at + PKT_LEN, False)
        status = read_u32(buf, at + PKT_STATUS, False)
        mac = read_u16(buf, at + PKT_MAC, False)
        if nsec >= 1_000_000_000:
            return n, STOP_RING_BAD_NSEC, nsec
        if mac < PKT_HEADER_LEN:
            return n, STOP_RING_BAD_MAC_OFFSET, mac
        if pos + mac + snaplen > used:
            return n, STOP_RING_FRAME_PAST_BLOCK, snaplen
        frame = at + mac
        frame_end = mac + snaplen  # relative to the record, before any tag goes back in
        if restore_vlan and (status & TP_STATUS_VLAN_VALID) and snaplen >= ETH_ADDRS_LEN:
            # the slack before tp_mac is at least the sockaddr_ll, never the fields read above
            if mac < PKT_HEADER_LEN + VLAN_TAG_LEN:
                return n, STOP_RING_BAD_MAC_OFFSET, mac
            tci = read_u32(buf, at + PKT_VLAN_TCI, False) & 0xFFFF
            tpid = ETH_P_8021Q
            if status & TP_STATUS_VLAN_TPID_VALID:
                tpid = read_u16(buf, at + PKT_VLAN_TPID, False)
            for k in range(ETH_ADDRS_LEN):
                buf[frame - VLAN_TAG_LEN + k] = buf[frame + k]
            frame -= VLAN_TAG_LEN
            buf[frame + 12] = (tpid >> 8) & 0xFF
            buf[frame + 13] = tpid & 0xFF
            buf[frame + 14] = (tci >> 8) & 0xFF
            buf[frame + 15] = tci & 0xFF
            snaplen += VLAN_TAG_LEN
            wirelen += VLAN_TAG_LEN
        out_offset[n] = frame
        out_caplen[n] = snaplen
        out_wirelen[n] = wirelen
        # sec < 2**32, so this stays below 2**63: exact and without overflow
        out_ts[n] = sec * 1_000_000_000 + nsec
        n += 1
        if i + 1 < num_pkts:
            step = read_u32(buf, at + PKT_NEXT_OFFSET, False)
            # the next record starts after this one's frame (the kernel aligns it to 8 bytes)
            if step < frame_end:
                return n, STOP_RING_BAD_NEXT_OFFSET, step
            pos += step
    return n, STOP_END, 0


def block_columns(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Empty offset, caplen, wirelen and ts_ns columns for ``rows`` packets."""
    return tuple(np.empty(rows, dtype=np.int64) for _ in range(4))


@dataclass
class RingTake:
    """Blocks copied out of the ring and indexed: ``buffer`` holds them one after another
    (read-only), the columns have one row per packet, and ``damage`` lists
    (block number, STOP_RING_* code, detail, rows of this take before the damage) for each damaged block."""

    buffer: np.ndarray
    offset: np.ndarray
    caplen: np.ndarray
    wirelen: np.ndarray
    ts_ns: np.ndarray
    damage: list[tuple[int, int, int, int]]

    def __len__(self) -> int:
        return int(self.offset.shape[0])


class BlockRing:
    """Our side of a TPACKET_V3 ring: which blocks the kernel has handed over, and taking
    them (copy, give back, index). ``ring`` is a writable uint8 view of the whole map
    (or, in tests, of an array built by hand)."""

    def __init__(self, ring: np.ndarray, block_size: int, block_count: int):
        if ring.shape[0] < block_size * block_count or block_size % 8:
            raise ValueError(
                f"ring of {ring.shape[0]} bytes cannot hold {block_count} blocks of {block_size}"
            )
        self.ring = ring
        self.words = ring.view(np.uint32)
        self.block_size = block_size
        self.block_count = block_count
        self.next_block = 0  # the kernel fills blocks in ring order; we take them in that order

    def _word(self, block: int, field: int) -> int:
        return int(self.words[(block * self.block_size + field) // 4])

    def ready(self, max_packets: int) -> list[int]:
        """The handed-over blocks from the next one on, in order, until one is not ready or
        their packets reach ``max_packets``."""
        blocks: list[int] = []
        packets = 0
        b = self.next_block
        while len(blocks) < self.block_count and packets < max_packets:
            if not self._word(b, BLOCK_STATUS) & TP_STATUS_USER:
                break
            blocks.append(b)
            packets += self._word(b, BLOCK_NUM_PKTS)
            b = (b + 1) % self.block_count
        return blocks

    def take(self, blocks: list[int], restore_vlan: bool = True) -> RingTake:
        """Copy ``blocks`` (from :meth:`ready`) into one new buffer, one copy each, hand each
        back to the kernel at once, then index the copies."""
        size = self.block_size
        spans = []
        rows = 0
        for b in blocks:
            # a damaged blk_len copies at most the block (the indexer then reports it)
            length = min(size, max(self._word(b, BLOCK_LEN), BLOCK_HEADER_LEN))
            rows += min(self._word(b, BLOCK_NUM_PKTS), block_packet_limit(length))
            spans.append(length)
        buf = np.empty(sum(spans), dtype=np.uint8)
        starts = []
        pos = 0
        for b, length in zip(blocks, spans, strict=True):
            buf[pos : pos + length] = self.ring[b * size : b * size + length]
            self.words[(b * size + BLOCK_STATUS) // 4] = TP_STATUS_KERNEL
            starts.append(pos)
            pos += length
        if blocks:
            self.next_block = (blocks[-1] + 1) % self.block_count
        offset, caplen, wirelen, ts_ns = block_columns(rows)
        damage = []
        n = 0
        for b, start, length in zip(blocks, starts, spans, strict=True):
            n, stop, detail = index_block(buf, start, length, restore_vlan, offset, caplen, wirelen, ts_ns, n)
            if stop != STOP_END:
                damage.append((b, stop, detail, n))
        buf.flags.writeable = False
        return RingTake(buf, offset[:n], caplen[:n], wirelen[:n], ts_ns[:n], damage)
