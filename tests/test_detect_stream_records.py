"""stream_records: the match records detect_streams reads, against a plain reference.

A record is kept only where some rule is a candidate in its stream group (the rule's fast pattern
occurs there) and has a content on the record's pattern; the kept records come back sorted by
(key, position) and by (key, pattern, position), each sort stable in record order.
"""

from __future__ import annotations

import numpy as np
import pytest

from dpi.detect.kernels import stream_records


def _random_case(rng: np.random.Generator):
    n_patterns = int(rng.integers(1, 12))
    n_rules = int(rng.integers(1, 10))
    contents = [
        sorted(set(rng.integers(0, n_patterns, int(rng.integers(1, 4))).tolist())) for _ in range(n_rules)
    ]
    r_contents = np.zeros((n_rules, 2), np.int64)
    c_pattern = []
    for r, cs in enumerate(contents):
        r_contents[r] = (len(c_pattern), len(c_pattern) + len(cs))
        c_pattern.extend(cs)
    c_pattern = np.array(c_pattern, np.int64)
    # a fast pattern among each rule's contents, or none (a rule with no usable fast pattern)
    r_fast = np.array([rng.choice(cs) if rng.random() < 0.8 else -1 for cs in contents], np.int64)
    with_fast = np.nonzero(r_fast >= 0)[0]
    order = np.argsort(r_fast[with_fast], kind="stable")
    fast_rule = with_fast[order].astype(np.int64)
    counts = np.bincount(r_fast[with_fast], minlength=n_patterns)
    fast_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    n_groups = int(rng.integers(1, 6))
    group_keys = np.sort(rng.choice(1000, n_groups, replace=False)).astype(np.int64)
    n = int(rng.integers(0, 60))
    group = rng.integers(0, n_groups, n).astype(np.int64)
    pattern = rng.integers(0, n_patterns, n).astype(np.int64)
    pos = np.zeros(n, np.int64)
    last = np.zeros(n_groups, np.int64)
    for i in range(n):  # within a group, records come in stream order
        last[group[i]] += int(rng.integers(0, 5))
        pos[i] = last[group[i]]
    args = (group, n_groups, group_keys, pattern, n_patterns, pos)
    return args + (fast_start, fast_rule, r_contents, c_pattern), (r_fast, contents)


def _reference(args, rules):
    group, n_groups, group_keys, pattern, n_patterns, pos, *_ = args
    r_fast, contents = rules
    kept = []
    for g in range(n_groups):
        mine = [i for i in range(len(group)) if group[i] == g]
        present = {int(pattern[i]) for i in mine}
        needed = set()
        for r, cs in enumerate(contents):
            if r_fast[r] >= 0 and int(r_fast[r]) in present:
                needed.update(cs)
        kept.extend(i for i in mine if int(pattern[i]) in needed)
    kept = np.array(kept, np.int64)
    by_pos = kept[np.lexsort((np.arange(len(kept)), group[kept]))] if len(kept) else kept
    by_pat = kept[np.lexsort((np.arange(len(kept)), pattern[kept], group[kept]))] if len(kept) else kept
    return [
        group_keys[group[by_pos]], pattern[by_pos], pos[by_pos],
        group_keys[group[by_pat]], pattern[by_pat], pos[by_pat],
    ]  # fmt: skip


@pytest.mark.parametrize("seed", range(300))
def test_stream_records_equal_reference(seed):
    rng = np.random.default_rng(seed)
    args, rules = _random_case(rng)
    got = stream_records(*args)
    want = _reference(args, rules)
    for name, a, b in zip(
        ("r_key", "r_pattern", "r_pos", "o_key", "o_pattern", "o_pos"), got, want, strict=True
    ):
        assert np.array_equal(a, b), name


def test_records_of_a_pattern_no_candidate_uses_are_dropped():
    # rule 0: fast pattern 0, contents {0, 1}; rule 1: fast pattern 2, contents {2, 3}.
    r_contents = np.array([[0, 2], [2, 4]], np.int64)
    c_pattern = np.array([0, 1, 2, 3], np.int64)
    fast_rule = np.array([0, 1], np.int64)
    fast_start = np.array([0, 1, 1, 2, 2], np.int64)
    # one group: patterns 0 (rule 0's fast), 1 (rule 0 needs it), 3 (only rule 1, not a candidate)
    group = np.zeros(4, np.int64)
    pattern = np.array([3, 0, 1, 3], np.int64)
    pos = np.array([1, 2, 3, 4], np.int64)
    r_key, r_pattern, r_pos, o_key, o_pattern, o_pos = stream_records(
        group, 1, np.array([7], np.int64), pattern, 4, pos,
        fast_start, fast_rule, r_contents, c_pattern,
    )  # fmt: skip
    assert r_pattern.tolist() == [0, 1] and r_pos.tolist() == [2, 3] and r_key.tolist() == [7, 7]
    assert o_pattern.tolist() == [0, 1] and o_pos.tolist() == [2, 3]
