"""Aho-Corasick automaton build: trie, failure links, hybrid dense/sparse transition table.

States are numbered in breadth-first order, so the shallow states (where real traffic spends most of
its time) come first. The first ``n_dense`` states get a full row of the transition table; deeper
states keep only their trie children (a contiguous, class-sorted id range, thanks to the numbering)
and follow failure links until a dense state answers. Failure links always point to a shallower state
and the root is dense, so every chain ends in a dense row.

A dense row is ``stride = n_classes + 2`` int32 wide: one entry per input class, then the row's state
id, then the one pattern id the state reports when it reports exactly one (else NO_ID). An entry is
encoded so that the scan's common step needs no branch (see scan.py):

* dense target t: ``t * stride | min(out_count[t], 127) << 24`` (the row's offset from the start of
  the automaton's table, below 2**24, and a saturated count; non-negative);
* sparse target t: ``-(t + 1)``.

A scan state is a dense row offset (>= 0) or ``-(t + 1)`` for a sparse state; 0 is the root.

Both automata (exact and case-folded) are packed into one int32 array, the blob (see ``pack``), so
that the kernels take one array instead of a dozen: Numba passes every array as seven scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

#: Default memory for the dense rows of both automata together (the 24-bit row offsets allow 64 MiB):
#: with the state records, a large set's tables stay within 32 MiB.
DEFAULT_DENSE_BUDGET = 24 * 1024 * 1024

_ENTRY_BYTES = 4  # int32 table entries
COUNT_SHIFT = 24
ROW_MASK = (1 << COUNT_SHIFT) - 1  # row offsets live in the low 24 bits of an entry
COUNT_SATURATED = 127  # the 7-bit count field says "look the count up" at this value
EXTRA_COLUMNS = 2  # state id, single reported id
NO_ID = 2**31 - 1  # the single-id column of a state that reports none (sorts after every id)

# Fields of a state's record in the blob.
NODE_FIELDS = 7
FAIL, CHILD_FIRST, CHILD_COUNT, LABEL, OUT_PATTERN, OUT_LINK, OUT_COUNT = range(NODE_FIELDS)
# Columns of a row of ``meta`` (one row per automaton): where its parts are in the blob, and sizes.
META_FIELDS = 6
CLASS_OFF, NODE_OFF, ROW_BASE, N_CLASSES, STRIDE, N_DENSE = range(META_FIELDS)


def class_map(patterns: list[bytes], fold: bool) -> tuple[np.ndarray, int]:
    """Byte -> class: one class per byte used in a pattern, in byte order; all other bytes share one.

    With ``fold`` the patterns are already lower-case, and A-Z take the class of a-z.
    """
    used = np.zeros(256, dtype=bool)
    if patterns:
        used[np.frombuffer(b"".join(patterns), dtype=np.uint8)] = True
    n_used = int(used.sum())
    byte_class = np.full(256, n_used, dtype=np.int64)  # the shared class of unused bytes
    byte_class[used] = np.arange(n_used)
    n_classes = n_used + (1 if n_used < 256 else 0)
    if fold:
        upper = np.arange(ord("A"), ord("Z") + 1)
        byte_class[upper] = byte_class[upper + 32]
    return byte_class.astype(np.uint8), n_classes


@njit(cache=True)
def _build_trie(pattern_bytes, pattern_offsets, byte_class):
    """Trie of sorted, unique patterns, nodes numbered in depth-first (creation) order.

    Returns (n_nodes, parent, label, depth, end_node): end_node[i] is the node where pattern i ends.
    """
    n_patterns = pattern_offsets.shape[0] - 1
    capacity = pattern_offsets[n_patterns] + 1
    parent = np.zeros(capacity, dtype=np.int32)
    label = np.zeros(capacity, dtype=np.uint8)
    depth = np.zeros(capacity, dtype=np.int32)
    end_node = np.zeros(n_patterns, dtype=np.int32)
    max_len = 0
    for i in range(n_patterns):
        max_len = max(max_len, pattern_offsets[i + 1] - pattern_offsets[i])
    path = np.zeros(max_len + 1, dtype=np.int32)  # node of each prefix of the previous pattern
    n_nodes = 1
    prev_start = 0
    prev_len = 0
    for i in range(n_patterns):
        start = pattern_offsets[i]
        length = pattern_offsets[i + 1] - start
        common = 0
        limit = min(length, prev_len)
        while common < limit and pattern_bytes[start + common] == pattern_bytes[prev_start + common]:
            common += 1
        for d in range(common, length):
            node = n_nodes
            n_nodes += 1
            parent[node] = path[d]
            label[node] = byte_class[pattern_bytes[start + d]]
            depth[node] = d + 1
            path[d + 1] = node
        end_node[i] = path[length]
        prev_start = start
        prev_len = length
    return n_nodes, parent, label, depth, end_node


@njit(cache=True)
def _goto(state, cls, stride, n_dense, raw_table, fail, label, child_first, child_count):
    """Target state id of (state, cls) during the build, where the table still holds plain ids."""
    while True:
        if state < n_dense:
            return raw_table[state * stride + cls]
        k = child_first[state]
        end = k + child_count[state]
        while k < end:
            if label[k] == cls:
                return k
            k += 1
        state = fail[state]


@njit(cache=True)
def _build_links(parent, label, child_first, child_count, out_pattern, ids_ptr, ids, n_classes, n_dense):
    """Failure links, output links and counts, and the encoded dense table, in one BFS-order pass."""
    n_states = parent.shape[0]
    stride = n_classes + EXTRA_COLUMNS
    fail = np.zeros(n_states, dtype=np.int32)
    out_link = np.full(n_states, -1, dtype=np.int32)
    out_count = np.zeros(n_states, dtype=np.int32)
    table = np.zeros(n_dense * stride, dtype=np.int32)
    for k in range(child_first[0], child_first[0] + child_count[0]):
        table[label[k]] = k
    for v in range(1, n_states):
        p = parent[v]
        f = 0
        if p != 0:
            f = _goto(fail[p], label[v], stride, n_dense, table, fail, label, child_first, child_count)
        fail[v] = f
        out_link[v] = f if out_pattern[f] >= 0 else out_link[f]
        u = out_pattern[v]
        own = ids_ptr[u + 1] - ids_ptr[u] if u >= 0 else 0
        out_count[v] = own + out_count[f]
        if v < n_dense:
            row = v * stride
            frow = f * stride
            for c in range(n_classes):
                table[row + c] = table[frow + c]
            for k in range(child_first[v], child_first[v] + child_count[v]):
                table[row + label[k]] = k
    # Encode the entries (see the module docstring) and fill the two extra columns.
    for v in range(n_dense):
        row = v * stride
        for c in range(n_classes):
            t = table[row + c]
            if t < n_dense:
                table[row + c] = t * stride | min(out_count[t], COUNT_SATURATED) << COUNT_SHIFT
            else:
                table[row + c] = -(t + 1)
        table[row + n_classes] = v
        single = NO_ID
        if out_count[v] == 1:
            u = out_pattern[v] if out_pattern[v] >= 0 else out_pattern[out_link[v]]
            single = ids[ids_ptr[u]]
        table[row + n_classes + 1] = single
    return fail, out_link, out_count, table


@dataclass(frozen=True)
class Trie:
    """A trie in breadth-first numbering, before the dense/sparse split is chosen."""

    byte_class: np.ndarray
    n_classes: int
    parent: np.ndarray
    label: np.ndarray
    depth: np.ndarray
    child_first: np.ndarray
    child_count: np.ndarray
    out_pattern: np.ndarray  # unique pattern (global numbering) ending at each node, or -1

    @property
    def n_states(self) -> int:
        return int(self.parent.shape[0])

    def depth_counts(self) -> np.ndarray:
        return np.bincount(self.depth, minlength=1)


def build_trie(keys: list[bytes], first_unique: int, fold: bool) -> Trie:
    """Trie of sorted unique ``keys``; key i is unique pattern ``first_unique + i``."""
    byte_class, n_classes = class_map(keys, fold)
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(keys), dtype=np.uint8) if keys else np.zeros(0, dtype=np.uint8)
    n_nodes, parent, label, depth, end_node = _build_trie(data, offsets, byte_class)
    parent, label, depth = parent[:n_nodes], label[:n_nodes], depth[:n_nodes]

    # Renumber breadth-first. Creation order is depth-first over sorted patterns, so a stable sort by
    # depth keeps each level in lexicographic order: siblings end up contiguous and sorted by class.
    order = np.argsort(depth, kind="stable")
    rank = np.empty(n_nodes, dtype=np.int32)
    rank[order] = np.arange(n_nodes, dtype=np.int32)
    bfs_parent = rank[parent[order]]
    bfs_parent[0] = 0
    child_parents = bfs_parent[1:]
    if np.any(np.diff(child_parents) < 0):
        raise AssertionError("trie children are not contiguous after renumbering")
    child_count = np.bincount(child_parents, minlength=n_nodes).astype(np.int32)
    child_first = (np.searchsorted(child_parents, np.arange(n_nodes)) + 1).astype(np.int32)
    out_pattern = np.full(n_nodes, -1, dtype=np.int32)
    out_pattern[rank[end_node]] = np.arange(first_unique, first_unique + len(keys), dtype=np.int32)
    return Trie(
        byte_class, n_classes, bfs_parent, label[order], depth[order], child_first, child_count, out_pattern
    )


def split_dense(tries: list[Trie], budget_bytes: int) -> list[int]:
    """How many breadth-first states of each trie get a dense row, shallowest first, within the budget.

    Levels are taken whole while they fit; the first level that does not fit is shared out in proportion.
    The root is always dense (failure chains end there), and row offsets must fit in 24 bits.
    """
    strides = [t.n_classes + EXTRA_COLUMNS for t in tries]
    remaining = max(0, budget_bytes // _ENTRY_BYTES - sum(strides))
    counts = [t.depth_counts() for t in tries]
    n_dense = [1] * len(tries)
    for d in range(1, max(len(c) for c in counts)):
        level = [int(c[d]) if d < len(c) else 0 for c in counts]
        need = sum(n * s for n, s in zip(level, strides, strict=True))
        if need <= remaining:
            remaining -= need
            n_dense = [a + b for a, b in zip(n_dense, level, strict=True)]
            continue
        share = remaining / need
        n_dense = [a + int(b * share) for a, b in zip(n_dense, level, strict=True)]
        break
    return [min(n, ROW_MASK // s) for n, s in zip(n_dense, strides, strict=True)]


@dataclass(frozen=True)
class Automaton:
    """One automaton (exact or case-folded), in the pieces that ``pack`` lays out in the blob."""

    table: np.ndarray  # int32[n_dense * stride], encoded entries
    nodes: np.ndarray  # int32[n_states, NODE_FIELDS]
    byte_class: np.ndarray  # uint8[256]: byte -> input class
    n_classes: int
    n_dense: int  # states [0, n_dense) have a dense row
    max_depth: int
    max_count: int  # most pattern ids one state reports

    @property
    def n_states(self) -> int:
        return int(self.nodes.shape[0])

    @property
    def stride(self) -> int:
        return self.n_classes + EXTRA_COLUMNS


def build_automaton(trie: Trie, n_dense: int, ids_ptr: np.ndarray, ids: np.ndarray) -> Automaton:
    """Links and the encoded table for ``trie``, its first ``n_dense`` states dense.

    Unique pattern u stands for the original ids ``ids[ids_ptr[u]:ids_ptr[u + 1]]``.
    """
    n_dense = min(n_dense, trie.n_states)
    if ids.shape[0] and int(ids.max()) >= NO_ID:
        raise ValueError("pattern ids must fit int32")
    fail, out_link, out_count, table = _build_links(
        trie.parent,
        trie.label,
        trie.child_first,
        trie.child_count,
        trie.out_pattern,
        ids_ptr,
        ids,
        trie.n_classes,
        n_dense,
    )
    nodes = np.empty((trie.n_states, NODE_FIELDS), dtype=np.int32)
    nodes[:, FAIL] = fail
    nodes[:, CHILD_FIRST] = trie.child_first
    nodes[:, CHILD_COUNT] = trie.child_count
    nodes[:, LABEL] = trie.label
    nodes[:, OUT_PATTERN] = trie.out_pattern
    nodes[:, OUT_LINK] = out_link
    nodes[:, OUT_COUNT] = out_count
    return Automaton(
        table=table,
        nodes=nodes,
        byte_class=trie.byte_class,
        n_classes=trie.n_classes,
        n_dense=n_dense,
        max_depth=int(trie.depth.max()),
        max_count=int(out_count.max()),
    )


def pack(automata: list[Automaton]) -> tuple[np.ndarray, np.ndarray, list[Automaton]]:
    """(blob, meta, automata): every automaton's table, then the byte classes of each (256 apart, so
    that one base register serves all), then the node records; meta[a] locates automaton a's parts.

    The first automaton's table starts the blob (the scan kernels rely on it). The automata come back
    with their table and nodes as views into the blob, so the memory is held once.
    """
    tables = [a.table for a in automata]
    class_start = sum(t.shape[0] for t in tables)
    node_start = class_start + 256 * len(automata)
    meta = np.zeros((len(automata), META_FIELDS), dtype=np.int64)
    node_off = node_start
    row_base = 0
    for i, a in enumerate(automata):
        meta[i, CLASS_OFF] = class_start + 256 * i
        meta[i, NODE_OFF] = node_off
        meta[i, ROW_BASE] = row_base
        row_base += a.table.shape[0]
        meta[i, N_CLASSES] = a.n_classes
        meta[i, STRIDE] = a.stride
        meta[i, N_DENSE] = a.n_dense
        node_off += a.nodes.size
    parts = (
        tables + [a.byte_class.astype(np.int32) for a in automata] + [a.nodes.reshape(-1) for a in automata]
    )
    blob = np.concatenate(parts)
    views = []
    for i, a in enumerate(automata):
        rows = blob[meta[i, ROW_BASE] : meta[i, ROW_BASE] + a.table.shape[0]]
        nodes = blob[meta[i, NODE_OFF] : meta[i, NODE_OFF] + a.nodes.size].reshape(a.nodes.shape)
        views.append(replace(a, table=rows, nodes=nodes))
    return blob, meta, views
