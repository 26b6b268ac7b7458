"""Sets of integers as sorted, disjoint, inclusive intervals.

Address groups (128-bit) and port groups (16-bit) are both unions and differences of ranges; keeping
them as normalised interval tuples makes negation a complement and makes the NumPy export trivial.
"""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[int, int]
Intervals = tuple[Interval, ...]


def normalize(intervals: Iterable[Interval]) -> Intervals:
    """Sort and merge overlapping or touching intervals."""
    ordered = sorted(intervals)
    if not ordered:
        return ()
    merged: list[list[int]] = [list(ordered[0])]
    for lo, hi in ordered[1:]:
        last = merged[-1]
        if lo <= last[1] + 1:
            if hi > last[1]:
                last[1] = hi
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def union(a: Intervals, b: Intervals) -> Intervals:
    if not a:
        return b
    if not b:
        return a
    return normalize(a + b)


def subtract(a: Intervals, b: Intervals) -> Intervals:
    """a minus b; both must be normalised."""
    if not a or not b:
        return a
    out: list[Interval] = []
    j = 0
    for lo, hi in a:
        cur = lo
        while j < len(b) and b[j][1] < cur:
            j += 1
        k = j
        while k < len(b) and b[k][0] <= hi:
            b_lo, b_hi = b[k]
            if b_lo > cur:
                out.append((cur, b_lo - 1))
            cur = max(cur, b_hi + 1)
            if cur > hi:
                break
            k += 1
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


def intersect(a: Intervals, b: Intervals) -> Intervals:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def covers(a: Intervals, b: Intervals) -> bool:
    """True when every value of b is in a."""
    return not subtract(b, a)
