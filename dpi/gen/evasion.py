"""Evasion transforms, after Ptacek and Newsham (1998) and fragroute: each a name, combinable in
one chain, applied to chosen flows.

TCP (on the segment table, before frames are written):

- ``tcp-seg``: tiny segments (``seg_size`` bytes), each acknowledged;
- ``tcp-window``: the receiver advertises a small window and the sender never has more in flight;
- ``tcp-ooo``: the segments of each run of data are sent in a shuffled order, then acknowledged
  at once (the receiver holds them behind holes);
- ``tcp-dup``: every data segment is sent twice;
- ``tcp-overlap``: every data segment travels with a decoy of the same sequence range and other
  bytes, before the acknowledgement; which copy a host keeps is its overlap policy, and the order
  (decoy first or second) is chosen so the target policy keeps the real bytes.

IP (on the frame table):

- ``ip-frag``: every datagram in ``frag_size``-byte fragments (the transport header too);
- ``ip-frag-ooo``: the fragments in a shuffled order;
- ``ip-frag-overlap``: every fragment past the transport header with a same-range decoy, ordered
  for the target's defrag policy; the first fragment goes last so nothing completes early;
- ``ip6-frag``: the flow is IPv6 and its datagrams go in fragments with a Fragment header.

A transform's label lists the policies that still reassemble the real bytes: every policy,
except where an overlap lets the policy choose.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from dpi.defrag.config import DEFRAG_POLICIES
from dpi.defrag.config import policy_code as defrag_code
from dpi.defrag.kernels import _beats
from dpi.gen.frames import Frames
from dpi.gen.session import Segments
from dpi.stream.tcp import STREAM_POLICIES, new_data_wins
from dpi.stream.tcp import policy_code as stream_code

TCP_EVASIONS = ("tcp-seg", "tcp-window", "tcp-ooo", "tcp-dup", "tcp-overlap")
IP_EVASIONS = ("ip-frag", "ip-frag-ooo", "ip-frag-overlap", "ip6-frag")
EVASIONS = TCP_EVASIONS + IP_EVASIONS
# transforms that need fragments: the others of the IP family cut datagrams first
_FRAGMENTING = frozenset(IP_EVASIONS)


def parse_evasions(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """A chain from 'a,b' or a list; unknown names raise ValueError naming the known ones."""
    if not text:
        return ()
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in EVASIONS]
    if unknown:
        raise ValueError(f"unknown evasion(s) {', '.join(unknown)}; known: {', '.join(EVASIONS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class EvasionSettings:
    chain: tuple[str, ...] = ()
    seg_size: int = 8  # tcp-seg: payload bytes a segment
    window: int = 32  # tcp-window: the receiver's advertised window
    frag_size: int = 8  # ip-frag: data bytes a fragment (a multiple of 8)
    stream_policy: str = "bsd"  # the target host's TCP overlap policy
    defrag_policy: str = "bsd"  # the target host's fragment overlap policy

    def __post_init__(self):
        if self.frag_size < 8 or self.frag_size % 8:
            raise ValueError(f"fragment size is a positive multiple of 8, got {self.frag_size}")
        if self.seg_size < 1 or self.window < 1:
            raise ValueError("segment size and window are at least one byte")
        stream_code(self.stream_policy)
        defrag_code(self.defrag_policy)

    def tcp(self) -> tuple[str, ...]:
        return tuple(n for n in self.chain if n in TCP_EVASIONS)

    def ip(self) -> tuple[str, ...]:
        return tuple(n for n in self.chain if n in IP_EVASIONS)

    def decoy_first_tcp(self) -> bool:
        """Same-range overlap: the order of (real, decoy) that leaves the target the real bytes."""
        return bool(new_data_wins(stream_code(self.stream_policy), 0, 8, 0, 8))

    def decoy_first_ip(self) -> bool:
        return bool(_beats(defrag_code(self.defrag_policy), 8, 16, 8, 16))

    def stream_seen_by(self, applied: tuple[str, ...]) -> list[str]:
        """The TCP policies that reassemble the real bytes of a flow with these transforms."""
        if "tcp-overlap" not in applied:
            return list(STREAM_POLICIES)
        decoy_first = self.decoy_first_tcp()
        return [p for i, p in enumerate(STREAM_POLICIES) if bool(new_data_wins(i, 0, 8, 0, 8)) == decoy_first]

    def defrag_seen_by(self, applied: tuple[str, ...]) -> list[str]:
        if "ip-frag-overlap" not in applied:
            return list(DEFRAG_POLICIES)
        decoy_first = self.decoy_first_ip()
        return [p for i, p in enumerate(DEFRAG_POLICIES) if bool(_beats(i, 8, 16, 8, 16)) == decoy_first]


def applicable(chain: tuple[str, ...], tcp: bool) -> tuple[str, ...]:
    """The transforms of the chain that apply to a TCP (or UDP) flow."""
    return tuple(n for n in chain if tcp or n not in TCP_EVASIONS)


def _decoy(r: random.Random, n: int) -> bytes:
    """Decoy bytes: consonants, so a decoy spells no rule's word."""
    return bytes(r.choice(b"bcdfghlmnprst") for _ in range(n))


def reshape_segments(
    seg: Segments,
    evaded: np.ndarray,
    settings: EvasionSettings,
    start_ns: np.ndarray,
    gap_ns: np.ndarray,
    data: np.ndarray,
    r: random.Random,
) -> tuple[Segments, np.ndarray]:
    """The segment table with the ordering transforms (ooo, dup, overlap) applied to the flows
    marked ``evaded`` (per flow), and the message bytes with the decoys appended. Segment sizes
    (tcp-seg, tcp-window) are the caller's, through the flows' mss and window."""
    names = settings.tcp()
    ooo, dup, overlap = "tcp-ooo" in names, "tcp-dup" in names, "tcp-overlap" in names
    n = len(seg.flow)
    step = np.empty(n, np.int64)
    by_flow = np.argsort(seg.flow, kind="stable")  # each flow's rows, in capture order
    flows_sorted = seg.flow[by_flow]
    bounds = np.searchsorted(flows_sorted, np.arange(len(evaded) + 1))
    step[by_flow] = np.arange(n) - bounds[flows_sorted]
    if not (ooo or dup or overlap) or not evaded.any():
        return seg, data
    decoy_first = settings.decoy_first_tcp()
    keep = np.ones(n, np.bool_)
    new_rows: list[tuple[int, int, int]] = []  # (source row, step, decoy offset or -1)
    decoys: list[bytes] = []
    decoy_at = len(data)
    for f in np.nonzero(evaded)[0]:
        rows = by_flow[bounds[f] : bounds[f + 1]]
        keep[rows] = False
        out: list[tuple[int, int]] = []  # (source row, decoy offset or -1)
        i = 0
        while i < len(rows):
            if seg.payload_len[rows[i]] == 0:
                out.append((rows[i], -1))
                i += 1
                continue
            # a run: data rows of one direction, each followed by its acknowledgement
            direction = seg.direction[rows[i]]
            run = []
            while i + 1 < len(rows) and seg.payload_len[rows[i]] > 0 and seg.direction[rows[i]] == direction:
                run.append((rows[i], rows[i + 1]))
                i += 2
            order = list(range(len(run)))
            if ooo and len(run) > 1:
                while order == sorted(order):
                    r.shuffle(order)
            for k in order:
                data_row, ack_row = run[k]
                copies = [(data_row, -1)] + ([(data_row, -1)] if dup else [])
                if overlap:
                    blob = _decoy(r, int(seg.payload_len[data_row]))
                    decoys.append(blob)
                    pair = (data_row, decoy_at)
                    decoy_at += len(blob)
                    copies = [pair] + copies if decoy_first else copies + [pair]
                out.extend(copies)
                if not ooo:
                    out.append((ack_row, -1))
            if ooo:
                out.append((run[-1][1], -1))  # one cumulative acknowledgement of the whole run
        new_rows.extend((src, s, off) for s, (src, off) in enumerate(out))
    src = np.array([x[0] for x in new_rows], np.int64)
    new_step = np.array([x[1] for x in new_rows], np.int64)
    decoy_off = np.array([x[2] for x in new_rows], np.int64)
    old = np.nonzero(keep)[0]
    flow = np.concatenate([seg.flow[old], seg.flow[src]])
    steps = np.concatenate([step[old], new_step])
    ts = np.concatenate([seg.ts_ns[old], start_ns[seg.flow[src]] + new_step * gap_ns[seg.flow[src]]])
    payload_off = np.concatenate(
        [seg.payload_off[old], np.where(decoy_off >= 0, decoy_off, seg.payload_off[src])]
    )
    order = np.lexsort((steps, flow, ts))

    def col(a):
        return np.concatenate([a[old], a[src]])[order]

    out_seg = Segments(
        flow=flow[order],
        direction=col(seg.direction),
        ts_ns=ts[order],
        seq=col(seg.seq),
        ack=col(seg.ack),
        flags=col(seg.flags),
        payload_off=payload_off[order],
        payload_len=col(seg.payload_len),
        window=None if seg.window is None else col(seg.window),
    )
    extra = np.frombuffer(b"".join(decoys), np.uint8)
    return out_seg, np.concatenate([data, extra])


@dataclass
class FrameRows:
    """Frames plus, per row, its flow and header length of the transport (where a decoy may start)."""

    frames: Frames
    flow: np.ndarray
    l4_header: np.ndarray


def fragment_frames(
    rows: FrameRows, evaded: np.ndarray, settings: EvasionSettings, gap_ns: np.ndarray, r: random.Random
) -> Frames:
    """Frames with the datagrams of evaded flows cut into fragments, reordered and overlapped as
    the chain says. Rows of other flows are kept as they are."""
    names = settings.ip()
    fr = rows.frames
    n = len(fr.data_len)
    if not names or not evaded.any():
        return fr
    ooo, overlap = "ip-frag-ooo" in names, "ip-frag-overlap" in names
    size = settings.frag_size
    decoy_first = settings.decoy_first_ip()

    def col(values, dtype):
        return np.broadcast_to(np.asarray(values, dtype=dtype), (n,))

    data_off, data_len = col(fr.data_off, np.int64), col(fr.data_len, np.int64)
    target = evaded[rows.flow] & (data_len > size)
    out_src: list[int] = []
    out_start: list[int] = []
    out_len: list[int] = []
    out_more: list[bool] = []
    out_tick: list[int] = []
    out_decoy: list[int] = []
    decoys: list[bytes] = []
    decoy_at = len(fr.data_buf)
    for i in np.nonzero(target)[0]:
        total = int(data_len[i])
        starts = list(range(0, total, size))
        pieces = [(s, min(size, total - s)) for s in starts]
        order = list(range(len(pieces)))
        if ooo:
            while order == sorted(order):
                r.shuffle(order)
        sent: list[tuple[int, int, int]] = []  # (start, length, decoy offset or -1)
        for k in order:
            s, ln = pieces[k]
            real = (s, ln, -1)
            if overlap and s >= rows.l4_header[i]:
                blob = _decoy(r, ln)
                decoys.append(blob)
                pair = (s, ln, decoy_at)
                decoy_at += ln
                sent.extend([pair, real] if decoy_first else [real, pair])
            else:
                sent.append(real)
        if overlap:  # the first fragment last: no datagram completes before its decoys are in
            first = [x for x in sent if x[0] == 0]
            sent = [x for x in sent if x[0] != 0] + first
        for tick, (s, ln, off) in enumerate(sent):
            out_src.append(i)
            out_start.append(s)
            out_len.append(ln)
            out_more.append(s + ln < total)
            out_tick.append(tick)
            out_decoy.append(off)
    src = np.array(out_src, np.int64)
    start = np.array(out_start, np.int64)
    tick = np.array(out_tick, np.int64)
    decoy_off = np.array(out_decoy, np.int64)
    old = np.nonzero(~target)[0]
    per_frag = np.maximum(1, gap_ns[rows.flow[src]] // (np.bincount(src, minlength=n)[src] + 2))
    ts_all = col(fr.ts_ns, np.int64)
    ts = np.concatenate([ts_all[old], ts_all[src] + tick * per_frag])
    order = np.lexsort((np.concatenate([np.zeros(len(old), np.int64), tick]), ts))

    def both(values, dtype, new=None):
        a = col(values, dtype)
        return np.concatenate([a[old], a[src] if new is None else new]).astype(dtype)[order]

    ip_version = col(fr.ip_version, np.uint8)
    ident = np.arange(n, dtype=np.int64) % 65535 + 1  # one identification per datagram
    buf = np.concatenate([np.asarray(fr.data_buf, np.uint8), np.frombuffer(b"".join(decoys), np.uint8)])
    return Frames(
        ts_ns=ts[order],
        ip_version=both(fr.ip_version, np.uint8),
        src_hi=both(fr.src_hi, np.uint64),
        src_lo=both(fr.src_lo, np.uint64),
        dst_hi=both(fr.dst_hi, np.uint64),
        dst_lo=both(fr.dst_lo, np.uint64),
        proto=both(fr.proto, np.uint8),
        data_buf=buf,
        data_off=both(fr.data_off, np.int64, np.where(decoy_off >= 0, decoy_off, data_off[src] + start)),
        data_len=both(fr.data_len, np.int64, np.array(out_len, np.int64)),
        to_server=both(fr.to_server, np.bool_),
        vlan=both(fr.vlan, np.int32),
        ttl=both(fr.ttl, np.uint8),
        ip_id=both(fr.ip_id, np.int64, ident[src]),
        frag_offset=both(fr.frag_offset, np.int64, start),
        more_fragments=both(fr.more_fragments, np.bool_, np.array(out_more, np.bool_)),
        fragment_header=both(fr.fragment_header, np.bool_, ip_version[src] == 6),
    )


__all__ = [
    "EVASIONS",
    "EvasionSettings",
    "FrameRows",
    "IP_EVASIONS",
    "TCP_EVASIONS",
    "applicable",
    "fragment_frames",
    "parse_evasions",
    "reshape_segments",
]
