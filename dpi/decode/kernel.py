"""The decode kernel: one pass over a PacketBatch, link -> IP -> transport, into DecodedBatch columns.

Every read is preceded by a check against the frame's end (``offset + caplen``), so a
crafted packet can never make the kernel read outside its own frame. The helpers live in
:mod:`.link`, :mod:`.ip` and :mod:`.transport`, one protocol family each. They return
flat tuples and only this kernel writes columns, and they are inlined at the Numba level
(``inline="always"``): a real call per packet costs an atomic reference-count update for
every array it is handed, which had made the kernel several times slower. The price is a
longer first compile (about 10 s, then cached).

Tunnels (:mod:`.tunnel`) are followed after the kernel: it only marks the rows that may carry
one (a few reads of the IP header), and :func:`decode_batch` decodes the packet inside each
real tunnel again, as a raw IP frame over the same buffer, into that row. Following them in
the kernel's loop made every packet's decode 6-10% slower (measured), called or inlined.

Numba's ``cache=True`` watches only the source file of the function it caches: after
editing a helper module or the codes in :mod:`.status`, clear ``dpi/decode/__pycache__``
(or touch this file) so the cached kernel is rebuilt.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import fields

import numpy as np
from numba import njit

from dpi.capture.batch import PacketBatch
from dpi.decode.columns import DecodedBatch
from dpi.decode.ip import FIRST_FRAGMENT, LATER_FRAGMENT, NOT_FRAGMENT, decode_ipv4, decode_ipv6
from dpi.decode.link import LINKTYPE_IPV4, LINKTYPE_IPV6, VERSION_FROM_NIBBLE, decode_link
from dpi.decode.status import FIRST_ERROR_CODE, Status
from dpi.decode.transport import decode_transport
from dpi.decode.tunnel import follow_tunnels, may_carry_tunnel
from dpi.decode.wire import frame_wire_end

# The DecodedBatch columns as a namedtuple, which Numba passes by attribute name.
DecodedColumns = namedtuple("DecodedColumns", [f.name for f in fields(DecodedBatch)])


@njit(cache=True)
def decode_kernel(buf, offset, caplen, wirelen, linktype, out, tunnel_candidate):
    buffer_len = buf.shape[0]
    for i in range(offset.shape[0]):
        out.l3_offset[i] = -1
        out.l4_offset[i] = -1
        start = offset[i]
        captured = caplen[i]
        if start < 0 or captured < 0 or start > buffer_len or captured > buffer_len - start:
            out.status[i] = Status.FRAME_OUT_OF_BUFFER
            continue
        end = start + captured
        wire_end = frame_wire_end(start, captured, wirelen[i])

        status, l3, version, vlan, vlan_outer = decode_link(buf, start, end, linktype[i])
        out.vlan[i] = vlan
        out.vlan_outer[i] = vlan_outer
        if status != Status.OK:
            out.status[i] = status
            continue
        if version == VERSION_FROM_NIBBLE:
            if l3 >= end:
                out.status[i] = Status.IP_TRUNCATED
                continue
            version = buf[l3] >> 4
            if version != 4 and version != 6:
                out.status[i] = Status.IP_BAD_VERSION
                continue
        tunnel_candidate[i] = may_carry_tunnel(buf, l3, version, end)
        out.l3_offset[i] = l3

        if version == 4:
            ip = decode_ipv4(buf, l3, end, wire_end)
        else:
            ip = decode_ipv6(buf, l3, end, wire_end)
        (
            status,
            ip_version,
            upper,
            claim_end,
            avail_end,
            fragment,
            proto,
            ttl,
            src_hi,
            src_lo,
            dst_hi,
            dst_lo,
            frag_id,
            frag_offset,
            frag_more,
        ) = ip
        out.status[i] = status
        if ip_version == 0:
            continue
        out.ip_version[i] = ip_version
        out.proto[i] = proto
        out.ttl[i] = ttl
        out.src_hi[i] = src_hi
        out.src_lo[i] = src_lo
        out.dst_hi[i] = dst_hi
        out.dst_lo[i] = dst_lo
        out.frag_id[i] = frag_id
        out.frag_offset[i] = frag_offset
        out.frag_more[i] = frag_more
        out.is_fragment[i] = fragment != NOT_FRAGMENT
        if upper < 0:
            continue
        out.ip_payload_len[i] = claim_end - upper

        if fragment == LATER_FRAGMENT:
            # the transport header, if any, is in the first fragment: this is all payload
            out.payload_offset[i] = upper
            out.payload_len[i] = avail_end - upper
            continue
        out.l4_offset[i] = upper
        (l4_status, sport, dport, seq, ack, flags, icmp_type, icmp_code, payload_offset, payload_len) = (
            decode_transport(buf, upper, claim_end, avail_end, proto, fragment == FIRST_FRAGMENT)
        )
        if l4_status >= FIRST_ERROR_CODE:
            out.status[i] = l4_status
        out.sport[i] = sport
        out.dport[i] = dport
        out.tcp_seq[i] = seq
        out.tcp_ack[i] = ack
        out.tcp_flags[i] = flags
        out.icmp_type[i] = icmp_type
        out.icmp_code[i] = icmp_code
        out.payload_offset[i] = payload_offset
        out.payload_len[i] = payload_len


def _int64_column(column: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(column, dtype=np.int64)


def decode_batch(batch: PacketBatch) -> DecodedBatch:
    """Decode every frame of ``batch``; one row per packet, in the batch's order."""
    decoded = DecodedBatch.allocate(len(batch))
    if len(batch) == 0:
        return decoded
    buffer = batch.buffer
    if buffer.dtype != np.uint8 or buffer.ndim != 1:
        raise TypeError(f"PacketBatch.buffer must be 1-D uint8, not {buffer.dtype} with {buffer.ndim} dims")
    columns = DecodedColumns(**{name: getattr(decoded, name) for name in DecodedColumns._fields})
    buffer = np.ascontiguousarray(buffer)
    offset, caplen, wirelen = (_int64_column(c) for c in (batch.offset, batch.caplen, batch.wirelen))
    candidate = np.zeros(len(batch), dtype=np.bool_)
    decode_kernel(buffer, offset, caplen, wirelen, _int64_column(batch.linktype), columns, candidate)
    rows = np.flatnonzero(candidate)
    if len(rows):
        _decode_tunnelled(decoded, buffer, offset, caplen, wirelen, rows)
    return decoded


# Columns a tunnelled row takes from the packet inside (the link layer's VLAN ids stay)
_INNER_COLUMNS = [name for name in DecodedColumns._fields if name not in ("vlan", "vlan_outer")]


def _decode_tunnelled(decoded, buffer, offset, caplen, wirelen, rows) -> None:
    """Rows that may carry a tunnel: follow it, and decode the innermost packet again, as a raw
    IP frame bounded by its carrier's payload, into the row."""
    l3, version, end, wire_end, depth, kind, invalid = follow_tunnels(
        buffer, offset, caplen, wirelen, rows, decoded.l3_offset, decoded.ip_version
    )
    broken = rows[invalid & (depth == 0)]  # the outer packet stays, and says why
    decoded.status[broken[decoded.status[broken] == Status.OK]] = Status.TUNNEL_INVALID
    inside = depth > 0
    if not inside.any():
        return
    rows = rows[inside]
    l3 = l3[inside]
    inner = _decode_raw_ip(buffer, l3, version[inside], end[inside] - l3, wire_end[inside] - l3)
    inner.tunnel_depth[:] = depth[inside]
    inner.tunnel_kind[:] = kind[inside]
    inner.outer_l3_offset[:] = decoded.l3_offset[rows]
    inner.status[invalid[inside] & (inner.status == Status.OK)] = Status.TUNNEL_INVALID
    for name in _INNER_COLUMNS:
        getattr(decoded, name)[rows] = getattr(inner, name)


def _decode_raw_ip(buffer, l3, version, caplen, wirelen) -> DecodedBatch:
    """The IP packets at l3 (of the given versions), with caplen bytes present and wirelen on
    the wire from l3 on, decoded as raw IP frames over the buffer, tunnels not followed."""
    decoded = DecodedBatch.allocate(len(l3))
    columns = DecodedColumns(**{name: getattr(decoded, name) for name in DecodedColumns._fields})
    linktype = np.where(version == 4, LINKTYPE_IPV4, LINKTYPE_IPV6).astype(np.int64)
    candidate = np.zeros(len(l3), dtype=np.bool_)
    decode_kernel(buffer, l3, caplen, wirelen, linktype, columns, candidate)
    return decoded


def decode_outer(batch: PacketBatch, decoded: DecodedBatch, rows: np.ndarray) -> DecodedBatch:
    """The outermost IP packet of each of ``rows`` (tunnelled rows of ``decoded``), as the row
    would be without following its tunnels: for the EVE ``tunnel`` object."""
    rows = np.asarray(rows, dtype=np.int64)
    buffer = np.ascontiguousarray(batch.buffer)
    l3 = decoded.outer_l3_offset[rows]
    before = l3 - _int64_column(batch.offset)[rows]  # the frame's bytes before its IP header
    version = (buffer[l3] >> 4).astype(np.int64)
    caplen = _int64_column(batch.caplen)[rows] - before
    return _decode_raw_ip(buffer, l3, version, caplen, _int64_column(batch.wirelen)[rows] - before)
