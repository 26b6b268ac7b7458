"""decode -> flow for each batch, keeping the counts that explain every packet read:
read = packets of every decode status, and of those tracked, the ones left out by reason."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dpi.decode import decode_batch
from dpi.decode.status import Status, count_by_status
from dpi.flow.table import TRACKABLE, FlowTable, track_flows


def trackable_packets(decoded) -> tuple[np.ndarray, np.ndarray]:
    """(packets that enter flow tracking, fragments): fragments wait for defragmentation
    (a stage still to come) and are counted, not tracked."""
    trackable = TRACKABLE[decoded.status]
    fragment = (decoded.status == Status.FRAGMENT) | (trackable & (decoded.is_fragment != 0))
    return trackable & ~fragment, fragment


class FlowTracker:
    def __init__(self, max_flows: int = 1_000_000):
        self.table = FlowTable(max_flows=max_flows)
        self.packets = 0
        self.bytes = 0
        self.first_ts: int | None = None
        self.last_ts: int | None = None
        self.status_counts = np.zeros(256, dtype=np.int64)
        self.not_tracked: Counter[str] = Counter()

    def decode(self, batch):
        """Decode one batch and count its packets, bytes, time span and decode statuses."""
        decoded = decode_batch(batch)
        self.packets += len(batch)
        self.bytes += int(batch.caplen.sum())
        if len(batch):
            lo, hi = int(batch.ts_ns.min()), int(batch.ts_ns.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        self.status_counts += np.bincount(decoded.status, minlength=256)
        return decoded

    def track(self, batch, decoded):
        """(eligible, flow index, direction, established) columns of a decoded batch."""
        eligible, fragment = trackable_packets(decoded)
        self.not_tracked["fragment_awaiting_defrag"] += int(fragment.sum())
        flow, direction, established = track_flows(self.table, eligible, batch, decoded)
        self.not_tracked["flow_table_full"] += int((eligible & (flow < 0)).sum())
        return eligible, flow, direction, established

    def decode_counts(self) -> dict[str, int]:
        return count_by_status(np.repeat(np.arange(256, dtype=np.uint8), self.status_counts))
