"""The flow table: an open-addressing hash index over flows stored as columns.

Flows live densely in insertion order (flow index 0..n-1), so the per-flow state kept by
later stages (stream reassembly, matcher states) is indexed by a stable flow index; the
hash index maps the canonical 5-tuple (plus VLAN ids) to that index and can be rebuilt
larger without moving any flow. Python grows the arrays between batches; the Numba
kernel never allocates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np

from dpi.decode.status import Status

TO_SERVER = 0
TO_CLIENT = 1

TCP = 6
UDP = 17

TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_ACK = 0x10

# per-flow TCP handshake progress, as bits in tcp_state
HS_SYN = 1  # client SYN seen
HS_SYNACK = 2  # server SYN/ACK seen
HS_ACK = 4  # client ACK after the SYN/ACK seen: established
HS_MIDSTREAM = 8  # picked up without a handshake (counted as established, as Suricata's midstream mode)
HS_FIN_TO_SERVER = 16  # the client sent a FIN
HS_FIN_TO_CLIENT = 32  # the server sent a FIN
HS_RST = 64  # either side sent a RST

EMPTY = -1

# decode statuses whose headers are sound enough to be tracked in a flow
TRACKABLE = np.zeros(256, dtype=bool)
TRACKABLE[[Status.OK, Status.CAPTURE_TRUNCATED, Status.IPV4_TSO_ZERO_LENGTH]] = True

# Flow-level counters kept by the kernel (index into FlowTable.counters)
CNT_NEW_FLOWS = 0
CNT_TABLE_FULL = 1  # packets of new flows that could not be tracked (max_flows reached)
N_COUNTERS = 2


@dataclass
class FlowTable:
    max_flows: int = 1_000_000
    n_flows: int = 0
    index: np.ndarray = field(default_factory=lambda: np.full(1024, EMPTY, dtype=np.int64))
    # canonical key: endpoint "a" is the numerically lower (address, port)
    a_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    a_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    b_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    b_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    a_port: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))
    b_port: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint16))
    proto: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    vlan: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint32))
    ip_version: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    # the endpoint that opened the flow (the client): 1 when it is "a"
    client_is_a: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    flow_id: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    last_ts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pkts: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    bytes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    tcp_state: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint8))
    tcp_flags: np.ndarray = field(
        default_factory=lambda: np.zeros((0, 2), dtype=np.uint8)
    )  # OR per direction
    counters: np.ndarray = field(default_factory=lambda: np.zeros(N_COUNTERS, dtype=np.int64))

    _PER_FLOW = (
        "a_hi",
        "a_lo",
        "b_hi",
        "b_lo",
        "a_port",
        "b_port",
        "proto",
        "vlan",
        "ip_version",
        "client_is_a",
        "flow_id",
        "first_ts",
        "last_ts",
        "pkts",
        "bytes",
        "tcp_state",
        "tcp_flags",
    )

    @property
    def capacity(self) -> int:
        return int(self.a_hi.shape[0])

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more flows (bounded by max_flows) before a batch."""
        want = min(self.n_flows + extra, self.max_flows)
        if want > self.capacity:
            new_cap = max(want, self.capacity * 2, 1024)
            new_cap = min(new_cap, self.max_flows)
            for name in self._PER_FLOW:
                old = getattr(self, name)
                grown = np.zeros((new_cap,) + old.shape[1:], dtype=old.dtype)
                grown[: self.n_flows] = old[: self.n_flows]
                setattr(self, name, grown)
        # keep the hash index at most half full
        slots = self.index.shape[0]
        if want * 2 > slots:
            while want * 2 > slots:
                slots *= 2
            self.index = np.full(slots, EMPTY, dtype=np.int64)
            _rehash(
                self.index,
                self.n_flows,
                self.a_hi,
                self.a_lo,
                self.b_hi,
                self.b_lo,
                self.a_port,
                self.b_port,
                self.proto,
                self.vlan,
            )

    def nbytes(self) -> int:
        return int(self.index.nbytes + sum(getattr(self, n).nbytes for n in self._PER_FLOW))


@nb.njit(cache=True, inline="always")
def _mix(h, v):
    # splitmix64-style mixing; deterministic across runs so flow ids are stable
    h ^= v + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


@nb.njit(cache=True)
def key_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, proto, vlan):
    h = np.uint64(0xCBF29CE484222325)
    h = _mix(h, a_hi)
    h = _mix(h, a_lo)
    h = _mix(h, b_hi)
    h = _mix(h, b_lo)
    h = _mix(
        h, (np.uint64(a_port) << np.uint64(32)) | (np.uint64(b_port) << np.uint64(16)) | np.uint64(proto)
    )
    h = _mix(h, np.uint64(vlan))
    return h


@nb.njit(cache=True)
def _rehash(index, n_flows, a_hi, a_lo, b_hi, b_lo, a_port, b_port, proto, vlan):
    mask = np.uint64(index.shape[0] - 1)
    for f in range(n_flows):
        h = key_hash(a_hi[f], a_lo[f], b_hi[f], b_lo[f], a_port[f], b_port[f], proto[f], vlan[f])
        slot = np.int64(h & mask)
        while index[slot] != EMPTY:
            slot = (slot + 1) & np.int64(mask)
        index[slot] = f


@nb.njit(cache=True, inline="always")
def _less(x_hi, x_lo, x_port, y_hi, y_lo, y_port):
    if x_hi != y_hi:
        return x_hi < y_hi
    if x_lo != y_lo:
        return x_lo < y_lo
    return x_port < y_port


@nb.njit(cache=True)
def assign_flows(
    eligible,
    ts_ns,
    wirelen,
    ip_version,
    proto,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    sport,
    dport,
    tcp_flags,
    vlan_inner,
    vlan_outer,
    index,
    n_flows,
    max_flows,
    t_a_hi,
    t_a_lo,
    t_b_hi,
    t_b_lo,
    t_a_port,
    t_b_port,
    t_proto,
    t_vlan,
    t_ipver,
    t_client_is_a,
    t_flow_id,
    t_first_ts,
    t_last_ts,
    t_pkts,
    t_bytes,
    t_tcp_state,
    t_tcp_flags,
    counters,
    out_flow,
    out_dir,
    out_established,
):
    """Look up or create each eligible packet's flow; fill flow index, direction
    (TO_SERVER/TO_CLIENT) and whether the flow counts as established at that packet.
    Returns the new number of flows."""
    mask = np.int64(index.shape[0] - 1)
    n = eligible.shape[0]
    for i in range(n):
        out_flow[i] = -1
        out_dir[i] = 0
        out_established[i] = 0
        if not eligible[i]:
            continue
        s_hi = src_hi[i]
        s_lo = src_lo[i]
        d_hi = dst_hi[i]
        d_lo = dst_lo[i]
        sp = sport[i]
        dp = dport[i]
        src_is_a = _less(s_hi, s_lo, sp, d_hi, d_lo, dp) or (s_hi == d_hi and s_lo == d_lo and sp == dp)
        if src_is_a:
            a_hi, a_lo, a_port, b_hi, b_lo, b_port = s_hi, s_lo, sp, d_hi, d_lo, dp
        else:
            a_hi, a_lo, a_port, b_hi, b_lo, b_port = d_hi, d_lo, dp, s_hi, s_lo, sp
        pr = proto[i]
        vl = (np.uint32(vlan_outer[i]) << np.uint32(16)) | np.uint32(vlan_inner[i])
        h = key_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, pr, vl)
        slot = np.int64(h & np.uint64(mask))
        f = -1
        while True:
            cand = index[slot]
            if cand == EMPTY:
                break
            if (
                t_a_hi[cand] == a_hi
                and t_a_lo[cand] == a_lo
                and t_b_hi[cand] == b_hi
                and t_b_lo[cand] == b_lo
                and t_a_port[cand] == a_port
                and t_b_port[cand] == b_port
                and t_proto[cand] == pr
                and t_vlan[cand] == vl
            ):
                f = cand
                break
            slot = (slot + 1) & mask
        flags = tcp_flags[i]
        if f == -1:
            if n_flows >= max_flows or n_flows >= t_a_hi.shape[0]:
                counters[CNT_TABLE_FULL] += 1
                continue
            f = n_flows
            n_flows += 1
            index[slot] = f
            t_a_hi[f] = a_hi
            t_a_lo[f] = a_lo
            t_b_hi[f] = b_hi
            t_b_lo[f] = b_lo
            t_a_port[f] = a_port
            t_b_port[f] = b_port
            t_proto[f] = pr
            t_vlan[f] = vl
            t_ipver[f] = ip_version[i]
            # the client is the SYN's sender; a SYN/ACK seen first names its receiver;
            # otherwise the first packet's sender
            sender_is_client = True
            if pr == TCP and (flags & TH_SYN) and (flags & TH_ACK):
                sender_is_client = False
            t_client_is_a[f] = 1 if (src_is_a == sender_is_client) else 0
            fid = key_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, pr, vl) ^ np.uint64(ts_ns[i])
            fid = _mix(fid, np.uint64(f))
            t_flow_id[f] = np.int64(fid & np.uint64(0x7FFFFFFFFFFFF)) | np.int64(1)
            t_first_ts[f] = ts_ns[i]
            t_last_ts[f] = ts_ns[i]
            t_pkts[f, 0] = 0
            t_pkts[f, 1] = 0
            t_bytes[f, 0] = 0
            t_bytes[f, 1] = 0
            t_tcp_state[f] = 0
            t_tcp_flags[f, 0] = 0
            t_tcp_flags[f, 1] = 0
            counters[CNT_NEW_FLOWS] += 1
        d = TO_SERVER if (src_is_a == (t_client_is_a[f] == 1)) else TO_CLIENT
        out_flow[i] = f
        out_dir[i] = d
        t_pkts[f, d] += 1
        t_bytes[f, d] += wirelen[i]
        if ts_ns[i] > t_last_ts[f]:
            t_last_ts[f] = ts_ns[i]
        st = t_tcp_state[f]
        if pr == TCP:
            syn = (flags & TH_SYN) != 0
            ack = (flags & TH_ACK) != 0
            if syn and not ack and d == TO_SERVER:
                st |= HS_SYN
            elif syn and ack and d == TO_CLIENT:
                st |= HS_SYNACK
            elif ack and not syn and d == TO_SERVER and (st & HS_SYNACK):
                st |= HS_ACK
            elif not syn and (st & (HS_SYN | HS_SYNACK)) == 0:
                st |= HS_MIDSTREAM
            if flags & TH_FIN:
                st |= HS_FIN_TO_SERVER if d == TO_SERVER else HS_FIN_TO_CLIENT
            if flags & TH_RST:
                st |= HS_RST
            t_tcp_state[f] = st
            t_tcp_flags[f, d] |= flags
            out_established[i] = 1 if (st & (HS_ACK | HS_MIDSTREAM)) else 0
        else:
            # UDP and others: established once both directions have been seen (as Suricata)
            out_established[i] = 1 if (t_pkts[f, 0] > 0 and t_pkts[f, 1] > 0) else 0
    return n_flows


def track_flows(table: FlowTable, eligible: np.ndarray, packets, decoded):
    """Assign flows for one batch; returns (flow index, direction, established) columns."""
    n = len(eligible)
    table.reserve(n)
    out_flow = np.empty(n, dtype=np.int64)
    out_dir = np.empty(n, dtype=np.uint8)
    out_est = np.empty(n, dtype=np.uint8)
    table.n_flows = assign_flows(
        eligible,
        packets.ts_ns,
        packets.wirelen,
        decoded.ip_version,
        decoded.proto,
        decoded.src_hi,
        decoded.src_lo,
        decoded.dst_hi,
        decoded.dst_lo,
        decoded.sport,
        decoded.dport,
        decoded.tcp_flags,
        decoded.vlan,
        decoded.vlan_outer,
        table.index,
        table.n_flows,
        table.max_flows,
        table.a_hi,
        table.a_lo,
        table.b_hi,
        table.b_lo,
        table.a_port,
        table.b_port,
        table.proto,
        table.vlan,
        table.ip_version,
        table.client_is_a,
        table.flow_id,
        table.first_ts,
        table.last_ts,
        table.pkts,
        table.bytes,
        table.tcp_state,
        table.tcp_flags,
        table.counters,
        out_flow,
        out_dir,
        out_est,
    )
    return out_flow, out_dir, out_est


FLOW_STATES = ("new", "established", "closed")


def endpoints(table: FlowTable, flow: np.ndarray, direction: np.ndarray):
    """(src_hi, src_lo, sport, dst_hi, dst_lo, dport) of packets sent in ``direction`` on
    ``flow`` (TO_SERVER: the client is the source). A flow index of -1 reads flow 0."""
    f = np.maximum(flow, 0)
    client_is_a = table.client_is_a[f] == 1
    src_is_a = np.where(direction == TO_SERVER, client_is_a, ~client_is_a)
    s_hi = np.where(src_is_a, table.a_hi[f], table.b_hi[f])
    s_lo = np.where(src_is_a, table.a_lo[f], table.b_lo[f])
    sp = np.where(src_is_a, table.a_port[f], table.b_port[f]).astype(np.int64)
    d_hi = np.where(src_is_a, table.b_hi[f], table.a_hi[f])
    d_lo = np.where(src_is_a, table.b_lo[f], table.a_lo[f])
    dp = np.where(src_is_a, table.b_port[f], table.a_port[f]).astype(np.int64)
    return s_hi, s_lo, sp, d_hi, d_lo, dp


def established(table: FlowTable, flow: np.ndarray) -> np.ndarray:
    """Whether each flow counts as established now: TCP after the handshake (or a
    midstream pick-up), other protocols once both directions have been seen."""
    f = np.maximum(flow, 0)
    tcp_est = (table.tcp_state[f] & (HS_ACK | HS_MIDSTREAM)) != 0
    both = (table.pkts[f, 0] > 0) & (table.pkts[f, 1] > 0)
    return np.where(table.proto[f] == TCP, tcp_est, both)


def flow_states(table: FlowTable) -> np.ndarray:
    """Each flow's state as Suricata names it in flow events: 0 new, 1 established, 2 closed
    (TCP: a RST, or a FIN each way)."""
    n = table.n_flows
    st = table.tcp_state[:n]
    both_fins = HS_FIN_TO_SERVER | HS_FIN_TO_CLIENT
    closed = (table.proto[:n] == TCP) & (((st & HS_RST) != 0) | ((st & both_fins) == both_fins))
    est = established(table, np.arange(n))
    return np.where(closed, 2, np.where(est, 1, 0)).astype(np.uint8)
