"""An address index for IP-only rules, in the spirit of Suricata's detect-engine-iponly radix
trees: the first packet of a flow direction looks its two addresses up, instead of testing every
IP-only rule.

Emerging Threats Open has about 1,200 IP-only rules, most of them reputation lists (up to 50
addresses) towards $HOME_NET. Testing each on each new flow direction cost about 0.1 ms, and
dominated the scan once there were thousands of flows. Each rule is keyed here by the narrower of
its two address sets; the key's intervals cut the address space into segments, and each segment
lists the rules whose key covers it. A lookup is a binary search and a short list; every rule it
proposes still goes through the full header check. Rules whose narrower side is still wide (any,
$EXTERNAL_NET) stay in the linear list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpi.detect.compile import DetectionDatabase

KEY_MAX_ADDRESSES = 1 << 24  # a narrower side wider than a /8 is not worth a key
SEGMENTS_PER_RULE_MAX = 1024  # a key that other keys cut into more segments stays linear


@dataclass
class AddressIndex:
    """Per side (0: keyed by the source address set, 1: by the destination's): segment
    boundaries as 128-bit (hi, lo) pairs, sorted, and the rules of each segment (CSR)."""

    b_hi: np.ndarray  # (2, m) padded with the maximum address; ``bounds[s]`` real boundaries on side s
    b_lo: np.ndarray
    bounds: np.ndarray  # (2,) boundaries per side
    seg_start: np.ndarray  # (2, m) CSR offsets into seg_rules, per side
    seg_rules: np.ndarray  # (2, k) rule indices, padded
    indexed: np.ndarray  # rule indices in the index
    n_rules: int


def _intervals(db: DetectionDatabase, table: np.ndarray, r: int) -> list[tuple[int, int]]:
    start, end = table[r]
    return [
        ((int(db.a_lo_hi[k]) << 64) | int(db.a_lo_lo[k]), (int(db.a_hi_hi[k]) << 64) | int(db.a_hi_lo[k]))
        for k in range(start, end)
    ]


def _side(intervals_by_rule: dict[int, list[tuple[int, int]]]):
    """(boundaries, per-segment rule lists, rules whose key is cut into too many segments)."""
    bounds = sorted({x for ivs in intervals_by_rule.values() for lo, hi in ivs for x in (lo, hi + 1)})
    at = {b: i for i, b in enumerate(bounds)}
    heavy = {
        r
        for r, ivs in intervals_by_rule.items()
        if sum(at[hi + 1] - at[lo] for lo, hi in ivs) > SEGMENTS_PER_RULE_MAX
    }
    if heavy:  # without them the others are cut less; one more pass settles it
        kept = {r: ivs for r, ivs in intervals_by_rule.items() if r not in heavy}
        bounds, segments, more = _side(kept)
        return bounds, segments, heavy | more
    segments: list[list[int]] = [[] for _ in range(max(len(bounds) - 1, 0))]
    for r, ivs in intervals_by_rule.items():
        for lo, hi in ivs:
            for j in range(at[lo], at[hi + 1]):
                segments[j].append(r)
    return bounds, segments, set()


def build_address_index(db: DetectionDatabase, ip_only_rules: list[int]) -> tuple[AddressIndex, list[int]]:
    """The index of the IP-only rules that can be keyed, and the rules left to the linear list."""
    keyed: list[dict[int, list[tuple[int, int]]]] = [{}, {}]
    linear = []
    for r in ip_only_rules:
        sides = [_intervals(db, db.r_src, r), _intervals(db, db.r_dst, r)]
        sizes = [sum(hi - lo + 1 for lo, hi in ivs) for ivs in sides]
        s = 0 if sizes[0] <= sizes[1] else 1
        if sizes[s] > KEY_MAX_ADDRESSES or not sides[s]:
            linear.append(r)
        else:
            keyed[s][r] = sides[s]
    built = []
    for s in (0, 1):
        bounds, segments, heavy = _side(keyed[s])
        linear.extend(sorted(heavy))
        built.append((bounds, segments))
    m = max(max(len(b) for b, _ in built), 1)
    k = max(max(sum(len(seg) for seg in segs) for _, segs in built), 1)
    b_hi = np.full((2, m), np.iinfo(np.uint64).max, np.uint64)
    b_lo = np.full((2, m), np.iinfo(np.uint64).max, np.uint64)
    seg_start = np.zeros((2, m), np.int64)
    seg_rules = np.zeros((2, k), np.int64)
    for s, (bounds, segments) in enumerate(built):
        for i, b in enumerate(bounds):
            b_hi[s, i], b_lo[s, i] = b >> 64, b & ((1 << 64) - 1)
        flat = [r for seg in segments for r in seg]
        seg_rules[s, : len(flat)] = flat
        seg_start[s, 1 : len(segments) + 1] = np.cumsum([len(seg) for seg in segments])
    indexed = sorted((set(keyed[0]) | set(keyed[1])) - set(linear))
    index = AddressIndex(
        b_hi=b_hi,
        b_lo=b_lo,
        bounds=np.array([len(b) for b, _ in built], np.int64),
        seg_start=seg_start,
        seg_rules=seg_rules,
        indexed=np.asarray(indexed, np.int64),
        n_rules=len(db.r_proto),
    )
    return index, sorted(set(linear))


__all__ = ["AddressIndex", "build_address_index"]
