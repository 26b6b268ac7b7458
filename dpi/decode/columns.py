"""The columns that cross the decode -> flow boundary."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

# IPv4 addresses are stored IPv4-mapped in 128 bits (::ffff:a.b.c.d) as (hi, lo) uint64.
IPV4_MAPPED_HI = np.uint64(0)
IPV4_MAPPED_LO_PREFIX = np.uint64(0x0000FFFF00000000)


@dataclass
class DecodedBatch:
    """Per-packet header columns; one row per packet of the PacketBatch it came from.

    A tunnelled packet's row describes the IP packet inside the tunnel (dpi.decode.tunnel).

    Offsets are absolute byte offsets into the PacketBatch's ``buffer``. Fields a packet
    does not have are zero. ``status`` is a :mod:`dpi.decode.status` code: 0 means every
    header was present and sane.
    """

    status: np.ndarray  # uint8, dpi.decode.status code
    ip_version: np.ndarray  # uint8, 4, 6 or 0 (not IP)
    l3_offset: np.ndarray  # int64, start of the IP header (-1 when none)
    l4_offset: np.ndarray  # int64, start of the transport header (-1 when none)
    proto: np.ndarray  # uint8, IP protocol / IPv6 upper-layer next header
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    sport: np.ndarray  # uint16 (ICMP: 0)
    dport: np.ndarray  # uint16
    tcp_seq: np.ndarray  # uint32
    tcp_ack: np.ndarray  # uint32
    tcp_flags: np.ndarray  # uint8 (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128)
    icmp_type: np.ndarray  # uint8
    icmp_code: np.ndarray  # uint8
    payload_offset: np.ndarray  # int64, first byte of L4 payload (or of the IP payload for other protocols)
    payload_len: np.ndarray  # int64, payload bytes present in the buffer (IP length bound, capture bound)
    ip_payload_len: np.ndarray  # int64, L4 length by the IP header (may exceed what was captured)
    frag_offset: np.ndarray  # int32, fragment offset in bytes
    frag_more: np.ndarray  # uint8, more-fragments flag
    frag_id: np.ndarray  # uint32, IPv4 id or IPv6 fragment identification
    is_fragment: np.ndarray  # uint8, 1 when the packet is a fragment (offset > 0 or MF)
    vlan: np.ndarray  # uint16, innermost 802.1Q VLAN id (0 when untagged)
    vlan_outer: np.ndarray  # uint16, outer VLAN id for QinQ (0 when single or untagged)
    ttl: np.ndarray  # uint8, IPv4 TTL / IPv6 hop limit
    tunnel_depth: np.ndarray  # uint8, encapsulations removed to reach this row's IP packet (0: none)
    tunnel_kind: np.ndarray  # uint8, the outermost one (dpi.decode.tunnel.TUNNEL_NAMES)
    outer_l3_offset: np.ndarray  # int64, the outermost IP header of a tunnelled row (0 when not tunnelled)

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @staticmethod
    def allocate(n: int) -> DecodedBatch:
        dtypes = {
            "status": np.uint8,
            "ip_version": np.uint8,
            "l3_offset": np.int64,
            "l4_offset": np.int64,
            "proto": np.uint8,
            "src_hi": np.uint64,
            "src_lo": np.uint64,
            "dst_hi": np.uint64,
            "dst_lo": np.uint64,
            "sport": np.uint16,
            "dport": np.uint16,
            "tcp_seq": np.uint32,
            "tcp_ack": np.uint32,
            "tcp_flags": np.uint8,
            "icmp_type": np.uint8,
            "icmp_code": np.uint8,
            "payload_offset": np.int64,
            "payload_len": np.int64,
            "ip_payload_len": np.int64,
            "frag_offset": np.int32,
            "frag_more": np.uint8,
            "frag_id": np.uint32,
            "is_fragment": np.uint8,
            "vlan": np.uint16,
            "vlan_outer": np.uint16,
            "ttl": np.uint8,
            "tunnel_depth": np.uint8,
            "tunnel_kind": np.uint8,
            "outer_l3_offset": np.int64,
        }
        return DecodedBatch(**{f.name: np.zeros(n, dtype=dtypes[f.name]) for f in fields(DecodedBatch)})
