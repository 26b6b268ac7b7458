"""The flow table: an open-addressing hash index over flows stored as columns.

Each flow lives in a slot (flow index) whose per-flow state, here and in later stages
(stream reassembly, matcher states), is indexed by that slot. A slot goes FREE -> LIVE
(a packet created the flow) -> ENDED (timeout, eviction, shutdown: out of the hash
index, so the next packet of its tuple starts a new flow) -> FREE again only once the
pipeline has finalized it (delivered its held stream data, written its EVE event) and
called :meth:`FlowTable.release`. Slots ended during a batch are therefore never reused
inside that batch. Python grows the arrays between batches; the Numba kernel never
allocates.

The hash index is linear probing, kept at most half full. An entry holds the flow's slot
in its low 32 bits and the low 32 bits of the key hash above them, so probing skips
other keys and deletion finds an entry's home slot without touching the flow columns
(each a cache miss when flows are many). An ended flow leaves the index by backward-shift
deletion, so no tombstones pile up. Timeouts are in capture time: a flow is timed out once
a packet or the sweep's clock passes its last packet + the timeout of its protocol and
state (kept per flow as its deadline, for the sweep).
"""

from __future__ import annotations

from collections import namedtuple

import numba as nb
import numpy as np

from dpi.decode.status import Status
from dpi.flow.config import STREAM_BYTES_PER_FLOW_ESTIMATE, FlowConfig

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
HS_MIDSTREAM = 8  # picked up without a handshake (established only in midstream mode, as Suricata)
HS_FIN_TO_SERVER = 16  # the client sent a FIN
HS_FIN_TO_CLIENT = 32  # the server sent a FIN
HS_RST = 64  # either side sent a RST
HS_BOTH_FINS = HS_FIN_TO_SERVER | HS_FIN_TO_CLIENT

EMPTY = -1  # an index entry never equals it: a slot is below 2**31
ENTRY_FLOW = 0xFFFFFFFF
MAX_SLOTS = 1 << 31
NEVER = np.iinfo(np.int64).max  # the deadline of a slot that is not live

# slot status
SLOT_FREE = 0
SLOT_LIVE = 1
SLOT_ENDED = 2  # out of the index, waiting for the pipeline to finalize and release it

# flow state, as Suricata names it in flow events (and indexes its timeouts)
STATE_NEW = 0
STATE_ESTABLISHED = 1
STATE_CLOSED = 2
FLOW_STATES = ("new", "established", "closed")

# why a flow ended (FlowTable.end_reason); END_EMERGENCY is or-ed in when it ended while
# the table was short of room (Suricata's "emergency": true)
END_NONE = 0
END_TIMEOUT = 1
END_FORCED = 2
END_SHUTDOWN = 3
END_EMERGENCY = 0x10
END_REASON_MASK = 0x0F
END_REASONS = ("unknown", "timeout", "forced", "shutdown")

# timeout rows: flow-timeouts.default / tcp / udp / icmp
TIMEOUT_PROTOCOLS = ("default", "tcp", "udp", "icmp")
PROTO_TIMEOUT_ROW = np.zeros(256, dtype=np.int64)
PROTO_TIMEOUT_ROW[TCP] = 1
PROTO_TIMEOUT_ROW[UDP] = 2
PROTO_TIMEOUT_ROW[[1, 58]] = 3  # ICMP and ICMPv6

# decode statuses whose headers are sound enough to be tracked in a flow
TRACKABLE = np.zeros(256, dtype=bool)
TRACKABLE[[Status.OK, Status.CAPTURE_TRUNCATED, Status.IPV4_TSO_ZERO_LENGTH]] = True

# Flow-level counters kept by the kernel (index into FlowTable.counters)
CNT_NEW_FLOWS = 0
CNT_TABLE_FULL = 1  # packets of new flows that could not be tracked (no free slot)
CNT_TIMEOUT_ON_PACKET = 2  # flows found timed out by a packet of their tuple
CNT_SLOTS_REUSED = 3  # new flows placed in a slot an ended flow had used
N_COUNTERS = 4

# table cursor (FlowTable.cursor), advanced by the kernel
CUR_HIGH = 0  # slots 0..high-1 have been handed out at least once
CUR_FREE = 1  # released slots waiting on the free stack
CUR_LIVE = 2  # live flows
N_CURSOR = 3

# name -> (dtype, shape per flow, fill of an unused slot)
COLUMNS = {
    # canonical key: endpoint "a" is the numerically lower (address, port)
    "a_hi": (np.uint64, (), 0),
    "a_lo": (np.uint64, (), 0),
    "b_hi": (np.uint64, (), 0),
    "b_lo": (np.uint64, (), 0),
    "a_port": (np.uint16, (), 0),
    "b_port": (np.uint16, (), 0),
    "proto": (np.uint8, (), 0),
    "vlan": (np.uint32, (), 0),
    "ip_version": (np.uint8, (), 0),
    "key_hash": (np.uint64, (), 0),  # kept for rehashing and deletion
    # the endpoint that opened the flow (the client): 1 when it is "a"
    "client_is_a": (np.uint8, (), 0),
    "flow_id": (np.int64, (), 0),
    "first_ts": (np.int64, (), 0),
    "last_ts": (np.int64, (), 0),
    "deadline": (np.int64, (), NEVER),  # last_ts + the timeout of the flow's state
    "pkts": (np.int64, (2,), 0),
    "bytes": (np.int64, (2,), 0),
    "tcp_state": (np.uint8, (), 0),
    "tcp_flags": (np.uint8, (2,), 0),  # OR per direction
    "status": (np.uint8, (), SLOT_FREE),
    "end_reason": (np.uint8, (), END_NONE),
}
FlowColumns = namedtuple("FlowColumns", list(COLUMNS))

# bytes per slot outside the columns: the hash index (a power of two at least twice the
# capacity, so up to four int64 entries per slot) and the free stack (one int64)
INDEX_BYTES_PER_FLOW = 4 * 8
FREE_STACK_BYTES_PER_FLOW = 8


def column_bytes_per_flow() -> int:
    return sum(np.dtype(dt).itemsize * int(np.prod(shape)) for dt, shape, _ in COLUMNS.values())


def bytes_per_flow() -> int:
    """What one flow costs against flow.memcap: this table's real bytes per slot, plus the
    stated estimate of the per-flow state of later stages (stream reassembly, matcher)."""
    return (
        column_bytes_per_flow()
        + INDEX_BYTES_PER_FLOW
        + FREE_STACK_BYTES_PER_FLOW
        + STREAM_BYTES_PER_FLOW_ESTIMATE
    )


def flows_for_memcap(memcap: int) -> int:
    """The most flows (live, or ended and not yet released) that fit in ``memcap`` bytes."""
    return max(1, int(memcap) // bytes_per_flow())


def timeout_table(config: FlowConfig, emergency: bool = False) -> np.ndarray:
    """int64[protocol row, state] timeouts in nanoseconds."""
    out = np.zeros((len(TIMEOUT_PROTOCOLS), len(FLOW_STATES)), dtype=np.int64)
    for row, proto in enumerate(TIMEOUT_PROTOCOLS):
        t = config.timeouts.get(proto, config.timeouts["default"])
        secs = (
            (t.emergency_new, t.emergency_established, t.emergency_closed)
            if emergency
            else (t.new, t.established, t.closed)
        )
        out[row] = np.array(secs, dtype=np.int64) * 1_000_000_000
    return out


class FlowTable:
    """Flow state in columns (see COLUMNS), the hash index, the free stack and counters.

    ``max_flows`` caps the slots in use (live flows and ended ones not yet released): by
    default what ``config.memcap`` affords (:func:`flows_for_memcap`); when given, the
    smaller of the two (tests use it for small tables)."""

    def __init__(
        self, max_flows: int | None = None, config: FlowConfig | None = None, midstream: bool = True
    ):
        self.config = config or FlowConfig()
        # a TCP session picked up without its handshake counts as established only in
        # midstream mode (Suricata's stream.midstream): for flow:established, the flow
        # event's state and which timeout applies
        self.established_bits = np.uint8(HS_ACK | (HS_MIDSTREAM if midstream else 0))
        self.memcap_flows = flows_for_memcap(self.config.memcap)
        limit = self.memcap_flows if max_flows is None else max(0, min(max_flows, self.memcap_flows))
        self.max_flows = min(limit, MAX_SLOTS - 1)
        self.timeouts = timeout_table(self.config)
        self.emergency_timeouts = timeout_table(self.config, emergency=True)
        for name, (dt, shape, fill) in COLUMNS.items():
            setattr(self, name, np.full((0, *shape), fill, dtype=dt))
        self.index = np.full(1024, EMPTY, dtype=np.int64)
        self.free = np.zeros(0, dtype=np.int64)  # stack of released slots
        self.cursor = np.zeros(N_CURSOR, dtype=np.int64)
        self.counters = np.zeros(N_COUNTERS, dtype=np.int64)

    @property
    def n_flows(self) -> int:
        """Slots handed out so far (0..n_flows-1): the high-water mark, not the live count."""
        return int(self.cursor[CUR_HIGH])

    @property
    def n_live(self) -> int:
        return int(self.cursor[CUR_LIVE])

    @property
    def n_free(self) -> int:
        return int(self.cursor[CUR_FREE])

    @property
    def capacity(self) -> int:
        return int(self.a_hi.shape[0])

    @property
    def total_flows(self) -> int:
        """Flows created since the start."""
        return int(self.counters[CNT_NEW_FLOWS])

    def room(self) -> int:
        """New flows that can be created now without ending any."""
        return self.n_free + max(self.max_flows - self.n_flows, 0)

    def columns(self) -> FlowColumns:
        return FlowColumns(*(getattr(self, name) for name in COLUMNS))

    def reserve(self, extra: int) -> None:
        """Make room in the arrays for ``extra`` more flows (bounded by max_flows)."""
        have = self.n_free + (self.capacity - self.n_flows)
        if extra > have and self.capacity < self.max_flows:
            want = min(self.n_flows + extra - self.n_free, self.max_flows)
            new_cap = min(max(want, self.capacity * 2, 1024), self.max_flows)
            n = self.n_flows
            for name, (dt, shape, fill) in COLUMNS.items():
                grown = np.full((new_cap, *shape), fill, dtype=dt)
                grown[:n] = getattr(self, name)[:n]
                setattr(self, name, grown)
            free = np.zeros(new_cap, dtype=np.int64)
            free[: self.n_free] = self.free[: self.n_free]
            self.free = free
        # keep the hash index at most half full
        slots = self.index.shape[0]
        if self.capacity * 2 > slots:
            while self.capacity * 2 > slots:
                slots *= 2
            old, self.index = self.index, np.full(slots, EMPTY, dtype=np.int64)
            _rehash(old, self.index)

    def nbytes(self) -> int:
        return int(self.index.nbytes + self.free.nbytes + sum(getattr(self, n).nbytes for n in COLUMNS))

    # --- ending and releasing flows (vectorised; Numba only for the index deletions)

    def live_flows(self) -> np.ndarray:
        return np.flatnonzero(self.status[: self.n_flows] == SLOT_LIVE)

    def ended_flows(self) -> np.ndarray:
        """Slots whose flows ended and wait to be finalized and released, in slot order."""
        return np.flatnonzero(self.status[: self.n_flows] == SLOT_ENDED)

    def end(self, flows: np.ndarray, reason: int) -> None:
        """End these live flows: out of the hash index, slot kept until release()."""
        flows = np.asarray(flows, dtype=np.int64)
        flows = flows[self.status[flows] == SLOT_LIVE]
        if len(flows) == 0:
            return
        _unindex(self.index, self.key_hash, flows)
        self.status[flows] = SLOT_ENDED
        self.end_reason[flows] = reason
        self.deadline[flows] = NEVER
        self.cursor[CUR_LIVE] -= len(flows)

    def release(self, flows: np.ndarray) -> None:
        """The pipeline has finalized these ended flows: their slots may be reused."""
        flows = np.asarray(flows, dtype=np.int64)
        if len(flows) == 0:
            return
        if (self.status[flows] != SLOT_ENDED).any():
            raise ValueError("release() takes ended flows only")
        self.status[flows] = SLOT_FREE
        top = self.n_free
        self.free[top : top + len(flows)] = flows[::-1]  # the first given is reused first
        self.cursor[CUR_FREE] = top + len(flows)

    def expired(self, now: int, emergency: bool = False, exclude: np.ndarray | None = None) -> np.ndarray:
        """Live flows idle past their timeout at capture time ``now`` (ns); with
        ``emergency``, by the emergency timeouts. ``exclude``: a mask of slots to keep."""
        n = self.n_flows
        if emergency:
            live = self.live_flows()
            limit = self.emergency_timeouts[
                PROTO_TIMEOUT_ROW[self.proto[live]], flow_states(self, live).astype(np.int64)
            ]
            out = live[now - self.last_ts[live] > limit]
        else:
            out = np.flatnonzero(self.deadline[:n] < now)
        if exclude is not None and len(out):
            out = out[~exclude[out]]
        return out

    def least_recent(self, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Up to ``k`` live flows with the oldest last packet, skipping masked slots."""
        live = self.live_flows()
        if exclude is not None:
            live = live[~exclude[live]]
        if k <= 0 or len(live) == 0:
            return np.zeros(0, np.int64)
        if len(live) <= k:
            return live
        pick = np.argpartition(self.last_ts[live], k - 1)[:k]
        return np.sort(live[pick])

    def check_index(self) -> None:
        """Raise AssertionError unless the index holds exactly the live flows, each on its
        probe path (for tests)."""
        entries = self.index[self.index != EMPTY]
        held = entries & ENTRY_FLOW
        live = self.live_flows()
        assert np.array_equal(np.sort(held), live), "index and live flows differ"
        tags = (entries >> 32) & ENTRY_FLOW
        assert np.array_equal(tags, (self.key_hash[held] & np.uint64(ENTRY_FLOW)).astype(np.int64))
        bad = _misplaced(self.index)
        assert bad < 0, f"flow {bad} is not reachable from its home slot"


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


@nb.njit(cache=True, inline="always")
def _entry(h, f):
    return (np.int64(h & np.uint64(ENTRY_FLOW)) << np.int64(32)) | np.int64(f)


@nb.njit(cache=True, inline="always")
def _home(entry, mask):
    return (entry >> np.int64(32)) & mask


@nb.njit(cache=True)
def _rehash(old, index):
    """Move every entry of ``old`` into the larger, empty ``index``."""
    mask = np.int64(index.shape[0] - 1)
    for s in range(old.shape[0]):
        e = old[s]
        if e == EMPTY:
            continue
        slot = _home(e, mask)
        while index[slot] != EMPTY:
            slot = (slot + 1) & mask
        index[slot] = e


@nb.njit(cache=True)
def _delete_at(index, hole):
    """Empty index[hole] by backward shift: later entries of the probe run move back when
    the hole lies on their path from their home slot, so every lookup still finds them."""
    mask = np.int64(index.shape[0] - 1)
    j = hole
    while True:
        j = (j + 1) & mask
        e = index[j]
        if e == EMPTY:
            break
        home = _home(e, mask)
        if ((j - home) & mask) >= ((j - hole) & mask):
            index[hole] = e
            hole = j
    index[hole] = EMPTY


@nb.njit(cache=True)
def _unindex(index, hashes, flows):
    mask = np.int64(index.shape[0] - 1)
    for k in range(flows.shape[0]):
        want = _entry(hashes[flows[k]], flows[k])
        slot = np.int64(hashes[flows[k]] & np.uint64(mask))
        while index[slot] != EMPTY:
            if index[slot] == want:
                _delete_at(index, slot)
                break
            slot = (slot + 1) & mask


@nb.njit(cache=True)
def _misplaced(index):
    """A flow whose probe run from its home slot meets an empty slot first, or -1."""
    mask = np.int64(index.shape[0] - 1)
    for s in range(index.shape[0]):
        e = index[s]
        if e == EMPTY:
            continue
        j = _home(e, mask)
        while j != s:
            if index[j] == EMPTY:
                return e & ENTRY_FLOW
            j = (j + 1) & mask
    return -1


@nb.njit(cache=True, inline="always")
def _less(x_hi, x_lo, x_port, y_hi, y_lo, y_port):
    if x_hi != y_hi:
        return x_hi < y_hi
    if x_lo != y_lo:
        return x_lo < y_lo
    return x_port < y_port


@nb.njit(cache=True, inline="always")
def _canonical(s_hi, s_lo, sp, d_hi, d_lo, dp):
    """(src is endpoint a, a_hi, a_lo, a_port, b_hi, b_lo, b_port)."""
    src_is_a = _less(s_hi, s_lo, sp, d_hi, d_lo, dp) or (s_hi == d_hi and s_lo == d_lo and sp == dp)
    if src_is_a:
        return True, s_hi, s_lo, sp, d_hi, d_lo, dp
    return False, d_hi, d_lo, dp, s_hi, s_lo, sp


@nb.njit(cache=True, inline="always")
def state_of(proto, tcp_state, pkts_to_server, pkts_to_client, est_bits):
    """Suricata's flow state: TCP closed after a RST or a FIN each way, established after
    the handshake (``est_bits``: HS_ACK, with HS_MIDSTREAM in midstream mode); other
    protocols established once both directions have been seen."""
    if proto == TCP:
        if (tcp_state & HS_RST) or (tcp_state & HS_BOTH_FINS) == HS_BOTH_FINS:
            return STATE_CLOSED
        if tcp_state & est_bits:
            return STATE_ESTABLISHED
        return STATE_NEW
    if pkts_to_server > 0 and pkts_to_client > 0:
        return STATE_ESTABLISHED
    return STATE_NEW


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
    t,
    free,
    cursor,
    timeouts,
    proto_row,
    counters,
    out_flow,
    out_dir,
    out_established,
    est_bits,
):
    """Look up or create each eligible packet's flow; fill flow index, direction
    (TO_SERVER/TO_CLIENT) and whether the flow counts as established at that packet.
    A packet that finds its flow timed out ends it (reason timeout) and starts a new one.
    New flows take released slots first, then never-used ones."""
    n = eligible.shape[0]
    capacity = t.a_hi.shape[0]
    mask = np.int64(index.shape[0] - 1)
    for i in range(n):
        out_flow[i] = -1
        out_dir[i] = 0
        out_established[i] = 0
        if not eligible[i]:
            continue
        src_is_a, a_hi, a_lo, a_port, b_hi, b_lo, b_port = _canonical(
            src_hi[i], src_lo[i], sport[i], dst_hi[i], dst_lo[i], dport[i]
        )
        pr = proto[i]
        vl = (np.uint32(vlan_outer[i]) << np.uint32(16)) | np.uint32(vlan_inner[i])
        h = key_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, pr, vl)
        ts = ts_ns[i]
        # the probe is written out here, not in a helper: a helper taking the column
        # tuple costs this loop a third of its speed
        slot = np.int64(h & np.uint64(mask))
        tag = np.int64(h & np.uint64(ENTRY_FLOW))
        f = -1
        while True:
            e = index[slot]
            if e == EMPTY:
                break
            cand = e & ENTRY_FLOW
            if (
                ((e >> np.int64(32)) & ENTRY_FLOW) == tag
                and t.a_hi[cand] == a_hi
                and t.a_lo[cand] == a_lo
                and t.b_hi[cand] == b_hi
                and t.b_lo[cand] == b_lo
                and t.a_port[cand] == a_port
                and t.b_port[cand] == b_port
                and t.proto[cand] == pr
                and t.vlan[cand] == vl
            ):
                f = cand
                break
            slot = (slot + 1) & mask
        if (
            f >= 0
            and ts - t.last_ts[f]
            > timeouts[proto_row[pr], state_of(pr, t.tcp_state[f], t.pkts[f, 0], t.pkts[f, 1], est_bits)]
        ):
            # idle past its timeout: the old flow ends here, this packet opens a new one
            _delete_at(index, slot)
            t.status[f] = SLOT_ENDED
            t.end_reason[f] = END_TIMEOUT
            t.deadline[f] = NEVER
            cursor[CUR_LIVE] -= 1
            counters[CNT_TIMEOUT_ON_PACKET] += 1
            f = -1
            slot = np.int64(h & np.uint64(mask))
            while index[slot] != EMPTY:
                slot = (slot + 1) & mask
        flags = tcp_flags[i]
        if f == -1:
            if cursor[CUR_FREE] > 0:
                cursor[CUR_FREE] -= 1
                f = free[cursor[CUR_FREE]]
                counters[CNT_SLOTS_REUSED] += 1
            elif cursor[CUR_HIGH] < capacity:
                f = cursor[CUR_HIGH]
                cursor[CUR_HIGH] += 1
            else:
                counters[CNT_TABLE_FULL] += 1
                continue
            index[slot] = _entry(h, f)
            cursor[CUR_LIVE] += 1
            t.a_hi[f] = a_hi
            t.a_lo[f] = a_lo
            t.b_hi[f] = b_hi
            t.b_lo[f] = b_lo
            t.a_port[f] = a_port
            t.b_port[f] = b_port
            t.proto[f] = pr
            t.vlan[f] = vl
            t.key_hash[f] = h
            t.ip_version[f] = ip_version[i]
            # the client is the SYN's sender; a SYN/ACK seen first names its receiver;
            # otherwise the first packet's sender
            sender_is_client = True
            if pr == TCP and (flags & TH_SYN) and (flags & TH_ACK):
                sender_is_client = False
            t.client_is_a[f] = 1 if (src_is_a == sender_is_client) else 0
            # unique per run: the creation sequence number in the low 31 bits, 22 bits of
            # the key hash above (below 2**53, exact for JSON readers that use doubles)
            seq = counters[CNT_NEW_FLOWS] + 1
            fid = (np.int64(h >> np.uint64(42)) << np.int64(31)) | (seq & np.int64(0x7FFFFFFF))
            t.flow_id[f] = fid
            t.first_ts[f] = ts
            t.last_ts[f] = ts
            t.pkts[f, 0] = 0
            t.pkts[f, 1] = 0
            t.bytes[f, 0] = 0
            t.bytes[f, 1] = 0
            t.tcp_state[f] = 0
            t.tcp_flags[f, 0] = 0
            t.tcp_flags[f, 1] = 0
            t.status[f] = SLOT_LIVE
            t.end_reason[f] = END_NONE
            counters[CNT_NEW_FLOWS] += 1
        d = TO_SERVER if (src_is_a == (t.client_is_a[f] == 1)) else TO_CLIENT
        out_flow[i] = f
        out_dir[i] = d
        t.pkts[f, d] += 1
        t.bytes[f, d] += wirelen[i]
        if ts > t.last_ts[f]:
            t.last_ts[f] = ts
        st = t.tcp_state[f]
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
            t.tcp_state[f] = st
            t.tcp_flags[f, d] |= flags
            out_established[i] = 1 if (st & est_bits) else 0
        else:
            out_established[i] = 1 if (t.pkts[f, 0] > 0 and t.pkts[f, 1] > 0) else 0
        state = state_of(pr, st, t.pkts[f, 0], t.pkts[f, 1], est_bits)
        t.deadline[f] = t.last_ts[f] + timeouts[proto_row[pr], state]


@nb.njit(cache=True, inline="always")
def _same_tuple(i, j, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport, vlan_inner, vlan_outer):
    if proto[i] != proto[j] or vlan_inner[i] != vlan_inner[j] or vlan_outer[i] != vlan_outer[j]:
        return False
    fwd = (
        src_hi[i] == src_hi[j]
        and src_lo[i] == src_lo[j]
        and sport[i] == sport[j]
        and dst_hi[i] == dst_hi[j]
        and dst_lo[i] == dst_lo[j]
        and dport[i] == dport[j]
    )
    if fwd:
        return True
    return (
        src_hi[i] == dst_hi[j]
        and src_lo[i] == dst_lo[j]
        and sport[i] == dport[j]
        and dst_hi[i] == src_hi[j]
        and dst_lo[i] == src_lo[j]
        and dport[i] == sport[j]
    )


@nb.njit(cache=True)
def count_new_flows(
    eligible,
    ts_ns,
    proto,
    src_hi,
    src_lo,
    dst_hi,
    dst_lo,
    sport,
    dport,
    vlan_inner,
    vlan_outer,
    index,
    t,
    touched,
    scratch,
):
    """Before a batch that could overflow the table: how many distinct tuples of the
    batch have no live flow (or find theirs timed out), i.e. the flows it will create;
    ``touched`` marks the live flows it continues. ``scratch``: an empty set of packet
    indices, a power of two at least twice the batch."""
    smask = np.int64(scratch.shape[0] - 1)
    mask = np.int64(index.shape[0] - 1)
    n_new = 0
    for i in range(eligible.shape[0]):
        if not eligible[i]:
            continue
        src_is_a, a_hi, a_lo, a_port, b_hi, b_lo, b_port = _canonical(
            src_hi[i], src_lo[i], sport[i], dst_hi[i], dst_lo[i], dport[i]
        )
        pr = proto[i]
        vl = (np.uint32(vlan_outer[i]) << np.uint32(16)) | np.uint32(vlan_inner[i])
        h = key_hash(a_hi, a_lo, b_hi, b_lo, a_port, b_port, pr, vl)
        slot = np.int64(h & np.uint64(mask))
        tag = np.int64(h & np.uint64(ENTRY_FLOW))
        f = -1
        while True:  # as in assign_flows
            e = index[slot]
            if e == EMPTY:
                break
            cand = e & ENTRY_FLOW
            if (
                ((e >> np.int64(32)) & ENTRY_FLOW) == tag
                and t.a_hi[cand] == a_hi
                and t.a_lo[cand] == a_lo
                and t.b_hi[cand] == b_hi
                and t.b_lo[cand] == b_lo
                and t.a_port[cand] == a_port
                and t.b_port[cand] == b_port
                and t.proto[cand] == pr
                and t.vlan[cand] == vl
            ):
                f = cand
                break
            slot = (slot + 1) & mask
        if f >= 0 and ts_ns[i] <= t.deadline[f]:
            touched[f] = True
            continue
        s = np.int64(h & np.uint64(smask))
        while True:
            j = scratch[s]
            if j == EMPTY:
                scratch[s] = i
                n_new += 1
                break
            if _same_tuple(i, j, proto, src_hi, src_lo, dst_hi, dst_lo, sport, dport, vlan_inner, vlan_outer):
                break
            s = (s + 1) & smask
    return n_new


def track_flows(table: FlowTable, eligible: np.ndarray, packets, decoded):
    """Assign flows for one batch; returns (flow index, direction, established) columns.
    Flows a packet finds timed out are left ENDED in the table for the caller to
    finalize and release (FlowTracker does both)."""
    n = len(eligible)
    table.reserve(int(np.count_nonzero(eligible)))
    out_flow = np.empty(n, dtype=np.int64)
    out_dir = np.empty(n, dtype=np.uint8)
    out_est = np.empty(n, dtype=np.uint8)
    assign_flows(
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
        table.columns(),
        table.free,
        table.cursor,
        table.timeouts,
        PROTO_TIMEOUT_ROW,
        table.counters,
        out_flow,
        out_dir,
        out_est,
        table.established_bits,
    )
    return out_flow, out_dir, out_est


def count_new(table: FlowTable, eligible: np.ndarray, packets, decoded) -> tuple[int, np.ndarray]:
    """(flows this batch would create, mask of the live flows it continues)."""
    touched = np.zeros(table.capacity, dtype=bool)
    if table.capacity == 0:
        touched = np.zeros(1, dtype=bool)
    size = 1
    while size < 2 * max(int(np.count_nonzero(eligible)), 1):
        size *= 2
    scratch = np.full(size, EMPTY, dtype=np.int64)
    n_new = count_new_flows(
        eligible,
        packets.ts_ns,
        decoded.proto,
        decoded.src_hi,
        decoded.src_lo,
        decoded.dst_hi,
        decoded.dst_lo,
        decoded.sport,
        decoded.dport,
        decoded.vlan,
        decoded.vlan_outer,
        table.index,
        table.columns(),
        touched,
        scratch,
    )
    return int(n_new), touched


def endpoints(table: FlowTable, flow: np.ndarray, direction: np.ndarray):
    """(src_hi, src_lo, sport, dst_hi, dst_lo, dport) of packets sent in ``direction`` on
    ``flow`` (TO_SERVER: the client is the source). A flow index of -1 reads flow 0, or zeros
    while the table has no flow at all (a batch of packets none of which opened one)."""
    if table.client_is_a.shape[0] == 0:
        zero = np.zeros(len(flow), np.uint64)
        port = np.zeros(len(flow), np.int64)
        return zero, zero.copy(), port, zero.copy(), zero.copy(), port.copy()
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
    tcp_est = (table.tcp_state[f] & table.established_bits) != 0
    both = (table.pkts[f, 0] > 0) & (table.pkts[f, 1] > 0)
    return np.where(table.proto[f] == TCP, tcp_est, both)


def flow_states(table: FlowTable, flows: np.ndarray | None = None) -> np.ndarray:
    """Each flow's state as Suricata names it in flow events (FLOW_STATES): 0 new,
    1 established, 2 closed (TCP: a RST, or a FIN each way). Default: every slot handed out."""
    f = np.arange(table.n_flows) if flows is None else np.asarray(flows, dtype=np.int64)
    st = table.tcp_state[f]
    closed = (table.proto[f] == TCP) & (((st & HS_RST) != 0) | ((st & HS_BOTH_FINS) == HS_BOTH_FINS))
    est = established(table, f)
    return np.where(closed, STATE_CLOSED, np.where(est, STATE_ESTABLISHED, STATE_NEW)).astype(np.uint8)
