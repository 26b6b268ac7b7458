"""Alert thresholds: ``threshold`` (limit, threshold, both) and ``detection_filter``, per
rule and per source or destination address, in capture time — the rules of Suricata's
detect-engine-threshold.c. Windows are counted in whole seconds, as Suricata does.

A Numba kernel walks a batch's alerts in order against a typed dict of
(rule, address) -> (window start, matches in the window); Python runs once per batch.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import types
from numba.typed import Dict

from dpi.detect.engine import AlertBatch
from dpi.flow.table import endpoints

KINDS = {"limit": 1, "threshold": 2, "both": 3, "detection_filter": 4}
LIMIT, THRESHOLD, BOTH, DETECTION_FILTER = 1, 2, 3, 4
NS = 1_000_000_000
MAX_ENTRIES = 1 << 20  # tracked (rule, address) pairs; past it, expired windows are dropped

_KEY = types.UniTuple(types.int64, 3)
_VALUE = types.UniTuple(types.int64, 2)


@nb.njit(cache=True)
def apply_thresholds(rule, ts_ns, addr_hi, addr_lo, kind, count, seconds, table, keep):
    """keep[i] = whether alert i passes its rule's threshold; updates ``table``."""
    suppressed = 0
    for i in range(rule.shape[0]):
        r = rule[i]
        k = kind[r]
        if k == 0:
            keep[i] = True
            continue
        now = ts_ns[i] // NS
        n = count[r]
        key = (r, addr_hi[i], addr_lo[i])
        ok = False
        if key in table:
            start, seen = table[key]
            if now <= start + seconds[r]:
                seen += 1
                if k == LIMIT:
                    ok = seen <= n
                elif k == THRESHOLD:
                    if seen >= n:
                        ok = True
                        seen = 0
                elif k == BOTH:
                    ok = seen == n
                else:
                    ok = seen > n
            else:  # the window is over: this match opens a new one
                start, seen = now, 1
                ok = k == LIMIT or ((k == THRESHOLD or k == BOTH) and n == 1)
            table[key] = (start, seen)
        else:
            table[key] = (now, 1)
            ok = k == LIMIT or ((k == THRESHOLD or k == BOTH) and n == 1)
            if k == THRESHOLD and n == 1:
                table[key] = (now, 0)
        keep[i] = ok
        if not ok:
            suppressed += 1
    return suppressed


@nb.njit(cache=True)
def _drop_expired(table, now, seconds):
    """Forget (rule, address) windows that ended before ``now`` (whole seconds)."""
    old = []
    for key, value in table.items():
        if now > value[0] + seconds[key[0]]:
            old.append(key)
    for key in old:
        del table[key]
    return len(old)


class ThresholdFilter:
    """The thresholds of a DetectionDatabase's rules, and their state across batches."""

    def __init__(self, rules):
        n = len(rules)
        self.kind = np.zeros(max(n, 1), np.int64)
        self.track_dst = np.zeros(max(n, 1), np.bool_)
        self.count = np.zeros(max(n, 1), np.int64)
        self.seconds = np.zeros(max(n, 1), np.int64)
        for i, rule in enumerate(rules):
            t = rule.threshold
            if t is not None:
                self.kind[i] = KINDS[t.kind]
                self.track_dst[i] = t.track == "by_dst"
                self.count[i] = t.count
                self.seconds[i] = t.seconds
        self.active = bool(self.kind.any())
        self.table = Dict.empty(key_type=_KEY, value_type=_VALUE)
        self.suppressed = 0
        self.expired = 0

    def filter(self, alerts: AlertBatch, flows) -> AlertBatch:
        """The alerts that pass their thresholds (in order); the rest are counted."""
        if not self.active or len(alerts) == 0:
            return alerts
        s_hi, s_lo, _, d_hi, d_lo, _ = endpoints(flows, alerts.flow, alerts.direction)
        by_dst = self.track_dst[alerts.rule]
        hi = np.where(by_dst, d_hi, s_hi).view(np.int64)
        lo = np.where(by_dst, d_lo, s_lo).view(np.int64)
        keep = np.zeros(len(alerts), np.bool_)
        self.suppressed += apply_thresholds(
            alerts.rule, alerts.ts_ns, hi, lo, self.kind, self.count, self.seconds, self.table, keep
        )
        if len(self.table) > MAX_ENTRIES:
            self.expired += _drop_expired(self.table, int(alerts.ts_ns.max()) // NS, self.seconds)
        if keep.all():
            return alerts
        return alerts.take(keep)
