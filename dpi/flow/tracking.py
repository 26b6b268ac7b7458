"""decode -> flow for each batch, and the flow lifecycle, keeping the counts that explain
every packet read: read = packets of every decode status, and of those tracked, the ones
left out by reason.

Flows end in capture time, at three points of a batch:

* before it, only when it could overflow the table (flow.memcap or max_flows): flows idle
  past the emergency timeouts end ("timeout"), then the least recently active ones are
  evicted ("forced") until the batch's new flows fit; flows the batch continues are spared;
* inside it, when a packet finds its flow timed out ("timeout"; the packet opens a new one);
* after it (:meth:`FlowTracker.end_idle`), when the sweep finds a flow idle past its
  timeout as of the batch's last timestamp ("timeout"). The batch's own clock, not the
  latest ever seen: captures concatenated out of time order then do not time out every
  flow of the later, older one at once.

Ended flows are handed to ``on_end(flows, states, reasons)`` (the pipeline flushes their
streams, detects on the held data, writes their EVE events) and only then released, so a
slot is never reused inside the batch that ended its flow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np

from dpi.decode import decode_batch
from dpi.decode.status import Status, count_by_status
from dpi.defrag import Defragmenter
from dpi.flow.config import FlowConfig
from dpi.flow.table import (
    CNT_SLOTS_REUSED,
    CNT_TIMEOUT_ON_PACKET,
    END_EMERGENCY,
    END_FORCED,
    END_REASON_MASK,
    END_REASONS,
    END_SHUTDOWN,
    END_TIMEOUT,
    FLOW_STATES,
    TRACKABLE,
    FlowTable,
    count_new,
    flow_states,
    track_flows,
)

# on_end(flows, states, reasons): slots of the ended flows, their FLOW_STATES codes and
# their end reasons (END_* codes, END_EMERGENCY or-ed in); the slots are released after it
OnEnd = Callable[[np.ndarray, np.ndarray, np.ndarray], None]


def trackable_packets(decoded) -> tuple[np.ndarray, np.ndarray]:
    """(packets that enter flow tracking, IP fragments): fragments go to defragmentation,
    and the datagrams they complete are tracked in their place."""
    trackable = TRACKABLE[decoded.status]
    fragment = (decoded.status == Status.FRAGMENT) | (trackable & (decoded.is_fragment != 0))
    return trackable & ~fragment, fragment


class FlowTracker:
    def __init__(
        self,
        max_flows: int | None = None,
        config: FlowConfig | None = None,
        on_end: OnEnd | None = None,
        defrag: Defragmenter | None = None,
        defrag_policy=None,
        midstream: bool = True,
    ):
        self.table = FlowTable(max_flows=max_flows, config=config, midstream=midstream)
        self.on_end = on_end
        # IP defragmentation, and the HostPolicyMap giving each receiving host's policy
        self.defrag = defrag if defrag is not None else Defragmenter()
        self.defrag_policy = defrag_policy
        self.packets = 0
        self.bytes = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None  # the latest timestamp seen
        self.clock: int | None = None  # capture time: the last decoded batch's last timestamp
        self.status_counts = np.zeros(256, dtype=np.int64)
        self.not_tracked: Counter[str] = Counter()
        self.ended_by_reason = np.zeros(len(END_REASONS), dtype=np.int64)
        self.ended_by_state = np.zeros(len(FLOW_STATES), dtype=np.int64)
        self.emergency_sweeps = 0  # batches that found the table short of room
        self.emergency_timeouts = 0  # flows those sweeps timed out
        self.evicted = 0  # flows ended "forced" to make room
        self.max_live = 0

    def decode(self, batch):
        """Decode one batch and count its packets, bytes, time span and decode statuses."""
        decoded = decode_batch(batch)
        self.packets += len(batch)
        self.bytes += int(batch.caplen.sum())
        if len(batch):
            lo, hi = int(batch.ts_ns.min()), int(batch.ts_ns.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
            self.clock = hi
        self.status_counts += np.bincount(decoded.status, minlength=256)
        return decoded

    def track(self, batch, decoded):
        """(eligible, flow index, direction, established) columns of a decoded batch."""
        self.finish_ended()  # whatever a caller left ended after the last batch
        eligible, fragment = trackable_packets(decoded)
        self.not_tracked["ip_fragment"] += int(fragment.sum())  # the defrag stats say what became of them
        self._make_room(batch, decoded, eligible)
        flow, direction, established = track_flows(self.table, eligible, batch, decoded)
        self.not_tracked["flow_table_full"] += int((eligible & (flow < 0)).sum())
        self.max_live = max(self.max_live, self.table.n_live)
        return eligible, flow, direction, established

    def stages(self, batch) -> Iterator[tuple]:
        """Decode and track a batch, then the datagrams its fragments completed: yields
        (packets, decoded, eligible, flow, direction, established) for the batch and, when
        fragments completed datagrams, for a batch of those (raw-IP frames in a buffer of
        their own; each counted in its flow with the wire length of the fragment that
        completed it, as tshark's conversation table counts the frame it reassembles in)."""
        decoded = self.decode(batch)
        yield (batch, decoded, *self.track(batch, decoded))
        fragment = trackable_packets(decoded)[1]
        if not fragment.any() and self.defrag.active == 0:
            return
        policy = None
        if self.defrag_policy is not None and fragment.any():
            policy = self.defrag_policy.lookup(decoded.dst_hi, decoded.dst_lo)
        datagrams = self.defrag.process(batch, decoded, fragment, policy)
        if len(datagrams) == 0:
            return
        accounted = replace(datagrams, wirelen=batch.wirelen[self.defrag.last_rows])
        dec = decode_batch(datagrams)
        yield (datagrams, dec, *self.track(accounted, dec))

    def _make_room(self, batch, decoded, eligible) -> None:
        """Before a batch that could overflow the table: emergency timeouts, then
        eviction of the least recently active flows, so that its new flows fit."""
        table = self.table
        room = table.room()
        if int(np.count_nonzero(eligible)) <= room:
            return
        need, touched = count_new(table, eligible, batch, decoded)
        if need <= room:
            return
        now = int(batch.ts_ns[eligible].min())  # the batch's start, in capture time
        self.emergency_sweeps += 1
        expired = table.expired(now, emergency=True, exclude=touched)
        table.end(expired, END_TIMEOUT | END_EMERGENCY)
        self.emergency_timeouts += len(expired)
        short = need - room - len(expired)
        if short > 0:
            victims = table.least_recent(short, exclude=touched)
            table.end(victims, END_FORCED | END_EMERGENCY)
            self.evicted += len(victims)
        self.finish_ended()

    def end_idle(self) -> None:
        """After a batch (and the later stages' work on it): end every flow idle past its
        timeout as of the batch's last timestamp, and finish every ended flow."""
        if self.clock is not None:
            self.table.end(self.table.expired(self.clock), END_TIMEOUT)
        self.finish_ended()

    def end_all(self) -> None:
        """End of input: every live flow ends with reason "shutdown"."""
        self.table.end(self.table.live_flows(), END_SHUTDOWN)
        self.finish_ended()
        self.defrag.flush()  # datagrams still missing fragments: dropped and counted

    def finish_ended(self) -> None:
        """Hand the ended flows to on_end, count them, release their slots."""
        flows = self.table.ended_flows()
        if len(flows) == 0:
            return
        flows = flows[np.argsort(self.table.last_ts[flows], kind="stable")]  # events in end order
        states = flow_states(self.table, flows)
        reasons = self.table.end_reason[flows].copy()
        if self.on_end is not None:
            self.on_end(flows, states, reasons)
        self.ended_by_reason += np.bincount(reasons & END_REASON_MASK, minlength=len(END_REASONS))[
            : len(END_REASONS)
        ]
        self.ended_by_state += np.bincount(states, minlength=len(FLOW_STATES))[: len(FLOW_STATES)]
        self.table.release(flows)

    def flow_counts(self) -> dict:
        """Flow statistics: flows by end reason and by state at their end, timeouts,
        emergency sweeps and evictions, and the table's limits."""
        t = self.table
        return {
            "total": t.total_flows,
            "active": t.n_live,
            "max_active": self.max_live,
            "max_flows": t.max_flows,
            "memcap_bytes": t.config.memcap,
            **{name: int(self.ended_by_state[i]) for i, name in enumerate(FLOW_STATES)},
            "end_reason": {name: int(self.ended_by_reason[i]) for i, name in enumerate(END_REASONS) if i},
            "timeouts_on_packet": int(t.counters[CNT_TIMEOUT_ON_PACKET]),
            "emergency_sweeps": self.emergency_sweeps,
            "emergency_timeouts": self.emergency_timeouts,
            "evicted": self.evicted,
            "slots_reused": int(t.counters[CNT_SLOTS_REUSED]),
        }

    def decode_counts(self) -> dict[str, int]:
        return count_by_status(np.repeat(np.arange(256, dtype=np.uint8), self.status_counts))


def tracker_for(settings, max_flows: int | None = None, on_end: OnEnd | None = None) -> FlowTracker:
    """The FlowTracker a run's Settings describe: flow table, defragmentation, the defrag
    policy of each receiving host (host-os-policy over defrag.policy), and whether TCP
    sessions picked up midstream count as established (stream.midstream; unset: off)."""
    from dpi.hostos import defrag_policy_map

    policy = defrag_policy_map(settings) if settings.host_os_policy else None
    return FlowTracker(
        max_flows=max_flows,
        config=settings.flow,
        on_end=on_end,
        defrag=Defragmenter(settings.defrag),
        defrag_policy=policy,
        midstream=bool(settings.stream.midstream),
    )
