"""The Numba engine's two layouts behind the Database interface.

* ``DfaDatabase``: two Aho-Corasick automata (exact, case-folded) in a hybrid dense/sparse table,
  scanned byte by byte (automaton.py, scan.py). Best when the tables stay in cache: small sets.
* ``PrefilterDatabase``: hashed window filters and exact verification (prefilter.py,
  prefilter_scan.py). Best for large sets, whose DFA would not fit in cache.

``choose_layout`` picks one from the pattern set; ``Database.describe()`` says which and why.
"""

from __future__ import annotations

import numpy as np

from . import prefilter_scan as prefilter_kernels
from . import scan as kernels
from .automaton import DEFAULT_DENSE_BUDGET, build_automaton, build_trie, pack, split_dense
from .base import Database, as_byte_array, check_chunks, check_patterns, chunk_bounds_error, empty_matches
from .prefilter import (
    C_LONG,
    C_MID,
    CLASS_HIGH,
    CLASS_LOW,
    CLASS_NAMES,
    P_FILTER_BITS,
    build_prefilter,
    co_match_bound,
)
from .prefilter_scan import HISTORY_HEADER

_MIN_ROW = 1024  # output slots per lane at least
_MAX_FIRST_ROW = 1 << 24  # first guess at most (256 MiB per lane); more comes by doubling


def group_patterns(patterns: list[bytes], nocase: list[bool]) -> tuple[list[bytes], list[bytes], list[list]]:
    """Sorted unique keys of the exact and the folded set, and the original ids of each unique key.

    Unique keys are numbered exact first, then folded; ids_of[u] lists the ids of key u, ascending.
    """
    exact: dict[bytes, list[int]] = {}
    folded: dict[bytes, list[int]] = {}
    for i, (p, fold) in enumerate(zip(patterns, nocase, strict=True)):
        if fold:
            folded.setdefault(p.lower(), []).append(i)
        else:
            exact.setdefault(p, []).append(i)
    exact_keys = sorted(exact)
    folded_keys = sorted(folded)
    ids_of = [exact[k] for k in exact_keys] + [folded[k] for k in folded_keys]
    return exact_keys, folded_keys, ids_of


def id_table(ids_of: list[list], n_patterns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids per unique key, ids_ptr, ids) in CSR form: unique key u stands for the original pattern ids
    ``ids[ids_ptr[u]:ids_ptr[u + 1]]``."""
    counts = np.fromiter((len(g) for g in ids_of), dtype=np.int64, count=len(ids_of))
    ids_ptr = np.zeros(len(ids_of) + 1, dtype=np.int64)
    np.cumsum(counts, out=ids_ptr[1:])
    ids = np.fromiter((i for g in ids_of for i in g), dtype=np.int64, count=n_patterns)
    return counts, ids_ptr, ids


def check_states(states, dtype, width: int) -> None:
    """A TypeError unless states is a writable C-contiguous dtype[n, width] array (from new_states)."""
    if not (
        isinstance(states, np.ndarray)
        and states.dtype == dtype
        and states.ndim == 2
        and states.shape[1] == width
        and states.flags.c_contiguous
        and states.flags.writeable
    ):
        raise TypeError(f"states must be a writable {np.dtype(dtype).name} array from new_states()")


def plan_checked(buf_a, buf_b, src, offset, length, stream, warm, n_states: int, n_lanes: int):
    """scan.plan_lanes, with a bad chunk or stream id turned into a ValueError naming the chunk."""
    status, bad, lane_ptr, lane_chunks = kernels.plan_lanes(
        buf_a.shape[0], buf_b.shape[0], src, offset, length, stream, warm, n_states, n_lanes
    )
    if status == kernels.BAD_CHUNK:
        raise chunk_bounds_error(bad, buf_a, buf_b, src, offset, length)
    if status == kernels.BAD_STREAM:
        raise ValueError(f"chunk {bad}: stream {int(stream[bad])} is not in 0..{n_states - 1} or -1")
    return lane_ptr, lane_chunks


class DfaDatabase(Database):
    """Aho-Corasick with a hybrid dense/sparse table (see automaton.py), scanned by scan.py.

    ``dense_budget`` is the memory, in bytes, for the dense rows of both automata: a small set gets a
    full DFA, a large one dense rows for its shallow states only.
    """

    engine = "numba"
    layout = "dfa"

    def __init__(self, patterns: list[bytes], nocase: list[bool] | None = None, dense_budget=None):
        patterns, nocase = check_patterns(patterns, nocase)
        super().__init__(patterns, nocase)
        budget = DEFAULT_DENSE_BUDGET if dense_budget is None else int(dense_budget)
        exact_keys, folded_keys, ids_of = group_patterns(patterns, nocase)
        counts, self.ids_ptr, self.ids = id_table(ids_of, len(patterns))
        self.n_unique = len(ids_of)

        tries = [build_trie(exact_keys, 0, fold=False), build_trie(folded_keys, len(exact_keys), fold=True)]
        n_dense = split_dense(tries, budget)
        automata = [
            build_automaton(trie, n, self.ids_ptr, self.ids) for trie, n in zip(tries, n_dense, strict=True)
        ]
        # The exact automaton first: the kernels expect its table at the start of the blob.
        self.blob, self.meta, (self.exact, self.folded) = pack(automata)
        # Output slots one byte may need in one lane: the fast path always writes two.
        self.max_emit = max(2, self.exact.max_count + self.folded.max_count)
        self._density = 1 / 16  # matches per byte of the last scan, to size the outputs

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.meta.nbytes + self.ids_ptr.nbytes + self.ids.nbytes

    def count(self, data) -> int:
        data = _read_only(as_byte_array(data))
        return int(kernels.count_kernel(data, self.blob, self.meta, self.max_length))

    def scan(self, data):
        data = _read_only(as_byte_array(data))
        n = data.shape[0]
        if n == 0:
            return empty_matches()
        # Segments for the lanes; each but the first replays up to max_length bytes before it.
        n_lanes = kernels.SCAN_LANES if n >= kernels.LANE_MIN_BYTES else 1
        starts = (np.arange(n_lanes, dtype=np.int64) * n) // n_lanes
        warm = np.minimum(starts, self.max_length)
        offset = starts - warm
        length = np.append(starts[1:], n) - offset
        src = np.zeros(n_lanes, dtype=np.int8)
        stream = np.full(n_lanes, -1, dtype=np.int64)
        pattern, end, counts = self._scan(
            data, data, src, offset, length, stream, warm, self.new_states(0), n_lanes
        )
        end += np.repeat(offset, counts)
        return pattern, end

    def new_states(self, n_streams: int) -> np.ndarray:
        """int32[n_streams, 2]: the encoded state of the exact and of the folded automaton."""
        return np.zeros((int(n_streams), 2), dtype=np.int32)

    def reset_states(self, states: np.ndarray, stream_ids) -> None:
        states[np.asarray(stream_ids, dtype=np.int64)] = 0

    def scan_chunks(self, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states):
        buf_a, buf_b, src, offset, length, stream = check_chunks(
            buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream
        )
        check_states(states, np.int32, 2)
        warm = np.zeros(src.shape[0], dtype=np.int64)
        pattern, end, counts = self._scan(
            _read_only(buf_a),
            _read_only(buf_b),
            src,
            offset,
            length,
            stream,
            warm,
            states,
            kernels.SCAN_LANES,
        )
        chunk = np.repeat(np.arange(src.shape[0], dtype=np.int64), counts)
        return pattern, chunk, end

    def _scan(self, buf_a, buf_b, src, offset, length, stream, warm, states, n_lanes):
        """(pattern ids, chunk-relative ends, matches per chunk) of the chunks, in chunk order."""
        lane_ptr, lane_chunks = plan_checked(
            buf_a, buf_b, src, offset, length, stream, warm, states.shape[0], n_lanes
        )
        n_chunks = src.shape[0]
        total = int(length.sum()) if n_chunks else 0
        # Regions sized from the match density seen so far (a lane may get more than its share of
        # bytes: then the kernel stops, the regions grow and it resumes where it stopped).
        guess = min(int(total * self._density * 1.25 / n_lanes), _MAX_FIRST_ROW)
        region = max(_MIN_ROW, 4 * self.max_emit, guess)
        out_pattern = np.empty(n_lanes * region, dtype=np.int64)
        out_end = np.empty(n_lanes * region, dtype=np.int64)
        lanes = np.zeros((n_lanes, kernels.LANE_FIELDS), dtype=np.int64)
        lanes[:, kernels.LANE_CURSOR] = lane_ptr[:-1]  # each lane's first chunk in lane_chunks
        lanes[:, kernels.LANE_POS] = -1  # no chunk started
        lanes[:, kernels.LANE_NOUT] = np.arange(n_lanes) * region  # each lane's next write index
        chunk_first = np.zeros(n_chunks, dtype=np.int64)
        chunk_count = np.zeros(n_chunks, dtype=np.int64)
        while True:
            status = kernels.scan_kernel(
                buf_a, buf_b, src, offset, length, stream, warm, states,
                self.blob, self.meta, self.ids_ptr, self.ids, self.max_emit, lane_ptr, lane_chunks, lanes,
                region, out_pattern, out_end, chunk_first, chunk_count,
            )  # fmt: skip
            if status == kernels.DONE:
                break
            out_pattern, out_end, region = _grown(
                out_pattern, out_end, lanes, lane_ptr, lane_chunks, chunk_first, region
            )
        n_out = int(chunk_count.sum())
        if total:
            self._density = min(max(n_out / total, 1e-4), 1.0)  # past one per byte, doubling is fine
        if np.array_equal(lane_chunks, np.arange(n_chunks)):
            # Lanes hold consecutive runs of chunks (always so for scan()): slide each lane's matches
            # down behind the previous lane's, in place, instead of gathering into new arrays.
            at = 0
            for j in range(n_lanes):
                used = int(lanes[j, kernels.LANE_NOUT]) - j * region
                for out in (out_pattern, out_end):
                    out[at : at + used] = out[j * region : j * region + used]
                at += used
            return _trimmed(out_pattern, n_out), _trimmed(out_end, n_out), chunk_count
        pattern, end = kernels.gather(chunk_first, chunk_count, out_pattern, out_end)
        return pattern, end, chunk_count


def _grown(out_pattern, out_end, lanes, lane_ptr, lane_chunks, chunk_first, region):
    """Outputs with every lane's region doubled; write indexes and chunk starts moved along."""
    n_lanes = lanes.shape[0]
    wider = 2 * region
    grown = []
    for old in (out_pattern, out_end):
        new = np.empty(n_lanes * wider, dtype=old.dtype)
        for j in range(n_lanes):
            used = int(lanes[j, kernels.LANE_NOUT]) - j * region
            new[j * wider : j * wider + used] = old[j * region : j * region + used]
        grown.append(new)
    # Lane j's region moves from j * region to j * wider: shift the indexes that point into it.
    lane_of_chunk = np.empty(chunk_first.shape[0], dtype=np.int64)
    lane_of_chunk[lane_chunks] = np.repeat(np.arange(n_lanes), np.diff(lane_ptr))
    chunk_first += lane_of_chunk * (wider - region)
    lanes[:, kernels.LANE_NOUT] += np.arange(n_lanes) * (wider - region)
    return grown[0], grown[1], wider


def _trimmed(array: np.ndarray, n: int) -> np.ndarray:
    """The first n items: a view, or a copy when that frees most of the buffer."""
    return array[:n].copy() if 2 * n < array.shape[0] else array[:n]


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view, so that the kernels see one array type whatever the caller passes."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.flags.writeable = False
    return view


class PrefilterDatabase(Database):
    """Hashed window filters and exact verification (see prefilter.py), scanned by prefilter_scan.py.

    The stream state is the stream's last ``max_length - 1`` bytes, so that a pattern that starts in
    one chunk and ends in the next is verified across the boundary.
    """

    engine = "numba"
    layout = "prefilter"

    def __init__(self, patterns: list[bytes], nocase: list[bool] | None = None):
        patterns, nocase = check_patterns(patterns, nocase)
        super().__init__(patterns, nocase)
        if self.max_length - 1 > 0xFFFF:
            raise ValueError(f"the prefilter layout keeps at most 65536-byte patterns, not {self.max_length}")
        exact_keys, folded_keys, ids_of = group_patterns(patterns, nocase)
        counts, self.ids_ptr, self.ids = id_table(ids_of, len(patterns))
        keys = exact_keys + folded_keys
        key_nocase = [False] * len(exact_keys) + [True] * len(folded_keys)
        self.tables = build_prefilter(keys, key_nocase)
        self.max_co = max(1, co_match_bound(keys, key_nocase, counts))
        self.n_unique = len(keys)
        self._density = 1 / 16

    @property
    def nbytes(self) -> int:
        return self.tables.nbytes + self.ids_ptr.nbytes + self.ids.nbytes

    def describe(self) -> dict:
        info = super().describe()
        t = self.tables
        lengths = np.diff(t.key_ptr)
        info.update(
            unique_keys=self.n_unique,
            keys_by_length={"1": int((lengths == 1).sum())}
            | {
                name: int(((lengths >= low) & (lengths <= high)).sum())
                for name, low, high in zip(CLASS_NAMES, CLASS_LOW, CLASS_HIGH, strict=True)
            },
            filter_bits={CLASS_NAMES[c]: int(t.class_params[c, P_FILTER_BITS]) for c in (C_MID, C_LONG)},
            table_bytes={
                "pair": t.pair.nbytes,
                "filters": t.filters.nbytes,
                "buckets": t.bucket_ptr.nbytes + t.entries.nbytes,
                "keys": t.key_bytes.nbytes + t.key_ptr.nbytes + t.key_nocase.nbytes,
            },
            stream_state_bytes=HISTORY_HEADER + self.max_length - 1,
        )
        return info

    def new_states(self, n_streams: int) -> np.ndarray:
        """uint8[n_streams, 2 + max_length - 1]: each stream's history length, then its history."""
        return np.zeros((int(n_streams), HISTORY_HEADER + self.max_length - 1), dtype=np.uint8)

    def reset_states(self, states: np.ndarray, stream_ids) -> None:
        states[np.asarray(stream_ids, dtype=np.int64), :HISTORY_HEADER] = 0

    def count(self, data) -> int:
        data = as_byte_array(data)
        if data.shape[0] == 0:
            return 0
        columns = _one_chunk(data)
        counts = np.zeros(1, dtype=np.int64)
        self._run(data, data, *columns, self.new_states(0), counts, count_only=True)
        return int(counts[0])

    def scan(self, data):
        data = as_byte_array(data)
        if data.shape[0] == 0:
            return empty_matches()
        pattern, end, _ = self._run(data, data, *_one_chunk(data), self.new_states(0), np.zeros(1, np.int64))
        return pattern, end

    def scan_chunks(self, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states):
        buf_a, buf_b, src, offset, length, stream = check_chunks(
            buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream
        )
        check_states(states, np.uint8, HISTORY_HEADER + self.max_length - 1)
        counts = np.zeros(src.shape[0], dtype=np.int64)
        pattern, end, counts = self._run(buf_a, buf_b, src, offset, length, stream, states, counts)
        chunk = np.repeat(np.arange(src.shape[0], dtype=np.int64), counts)
        return pattern, chunk, end

    def _run(self, buf_a, buf_b, src, offset, length, stream, states, counts, count_only=False):
        # The chunks are checked as the DFA's are; the prefilter scans them in one lane, in order.
        plan_checked(buf_a, buf_b, src, offset, length, stream, np.zeros_like(length), states.shape[0], 1)
        total = int(length.sum()) if src.shape[0] else 0
        size = 1 if count_only else max(_MIN_ROW, 4 * self.max_co, int(total * self._density * 1.25))
        out_pattern = np.empty(size, dtype=np.int64)
        out_end = np.empty(size, dtype=np.int64)
        resume = np.zeros(4, dtype=np.int64)
        t = self.tables
        while True:
            status = prefilter_kernels.scan_kernel(
                buf_a, buf_b, src, offset, length, stream, states,
                t.fold, t.pair, t.one_ptr, t.one_keys, t.filters, t.class_params, t.bucket_ptr,
                t.entries, t.key_bytes, t.key_ptr, t.key_nocase,
                self.ids_ptr, self.ids, self.max_co, out_pattern, out_end, counts, resume, count_only,
            )  # fmt: skip
            if status == prefilter_kernels.DONE:
                break
            # Double: the block that overflowed may need more than the whole first guess, and it
            # may be the first block (nothing kept), so growing by what was kept could add nothing.
            used = int(resume[2])
            grown = 2 * out_pattern.shape[0]
            out_pattern = np.concatenate([out_pattern[:used], np.empty(grown - used, np.int64)])
            out_end = np.concatenate([out_end[:used], np.empty(grown - used, np.int64)])
        n_out = int(resume[2])
        if total and not count_only:
            self._density = min(max(n_out / total, 1e-4), 1.0)
        return _trimmed(out_pattern, n_out), _trimmed(out_end, n_out), counts


def _one_chunk(data: np.ndarray):
    """Chunk columns for scanning one buffer whole, with no stream."""
    return (
        np.zeros(1, dtype=np.int8),
        np.zeros(1, dtype=np.int64),
        np.full(1, data.shape[0], dtype=np.int64),
        np.full(1, -1, dtype=np.int64),
    )
