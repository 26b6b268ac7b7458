"""What every matcher engine shares: the Database interface and input checks."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

Matches = tuple[np.ndarray, np.ndarray]
ChunkMatches = tuple[np.ndarray, np.ndarray, np.ndarray]


def check_patterns(patterns: list[bytes], nocase: list[bool] | None) -> tuple[list[bytes], list[bool]]:
    """Patterns as bytes and one nocase flag per pattern; empty patterns are an error."""
    patterns = [bytes(p) for p in patterns]
    if nocase is None:
        nocase = [False] * len(patterns)
    nocase = [bool(f) for f in nocase]
    if len(nocase) != len(patterns):
        raise ValueError(f"nocase has {len(nocase)} flags for {len(patterns)} patterns")
    for i, p in enumerate(patterns):
        if not p:
            raise ValueError(f"pattern {i} is empty")
    return patterns, nocase


def as_byte_array(data) -> np.ndarray:
    """A 1-D contiguous uint8 view of bytes-like or array data (no copy when already so)."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TypeError(f"data must be uint8, not {data.dtype}")
        return np.ascontiguousarray(data.reshape(-1))
    return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)


def empty_matches() -> Matches:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def check_chunks(buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream):
    """Chunk columns as contiguous arrays of the kernel's dtypes, all of one length."""
    buf_a = as_byte_array(buf_a)
    buf_b = as_byte_array(buf_b)
    chunk_src = np.ascontiguousarray(chunk_src, dtype=np.int8)
    chunk_offset = np.ascontiguousarray(chunk_offset, dtype=np.int64)
    chunk_len = np.ascontiguousarray(chunk_len, dtype=np.int64)
    chunk_stream = np.ascontiguousarray(chunk_stream, dtype=np.int64)
    n = chunk_src.shape[0]
    if not (chunk_offset.shape == chunk_len.shape == chunk_stream.shape == (n,)):
        raise ValueError("chunk_src, chunk_offset, chunk_len and chunk_stream must be 1-D of one length")
    return buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream


def chunk_bounds_error(chunk: int, buf_a, buf_b, chunk_src, chunk_offset, chunk_len) -> ValueError:
    buf = buf_a if chunk_src[chunk] == 0 else buf_b
    return ValueError(
        f"chunk {chunk}: offset {int(chunk_offset[chunk])} length {int(chunk_len[chunk])} "
        f"is outside its buffer of {buf.shape[0]} bytes"
    )


class Database(ABC):
    """A compiled, immutable pattern set (Hyperscan's notion of a database).

    Pattern ids are the indexes into the list given to ``compile_patterns``. Matches are
    (pattern id, exclusive end offset), every overlapping occurrence of every pattern, sorted by
    (end offset, pattern id); a chunked scan reports them per chunk, in chunk order.
    """

    engine: str = ""
    layout: str = ""  # how the engine laid out its tables, for engines that have more than one

    def __init__(self, patterns: list[bytes], nocase: list[bool]):
        self.patterns = patterns
        self.nocase = nocase
        self.max_length = max((len(p) for p in patterns), default=0)

    def __len__(self) -> int:
        return len(self.patterns)

    @abstractmethod
    def scan(self, data) -> Matches:
        """(pattern_ids, end_offsets) of every occurrence in data, as int64 arrays."""

    def count(self, data) -> int:
        """Number of occurrences in data (len(scan(data)[0]))."""
        return int(self.scan(data)[0].shape[0])

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Memory held by the compiled tables."""

    def describe(self) -> dict:
        """What was compiled and how: engine, layout, sizes (JSON-ready)."""
        return {
            "engine": self.engine,
            "layout": self.layout or self.engine,
            "patterns": len(self.patterns),
            "nocase_patterns": int(sum(self.nocase)),
            "max_length": self.max_length,
            "nbytes": int(self.nbytes),
            "reason": getattr(self, "layout_reason", ""),
        }

    def stream(self) -> PatternStream:
        """A stream: successive ``scan`` calls find patterns that cross from one call into the next."""
        return PatternStream(self)

    @abstractmethod
    def new_states(self, n_streams: int) -> np.ndarray:
        """Initial scan state for n_streams streams."""

    @abstractmethod
    def reset_states(self, states: np.ndarray, stream_ids) -> None:
        """Put the given streams back in the initial state."""

    @abstractmethod
    def scan_chunks(
        self, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states
    ) -> ChunkMatches:
        """(match_pattern, match_chunk, match_end) of a batch of chunks; see dpi.match for the contract."""


class PatternStream:
    """One stream over a Database (Hyperscan's stream mode): ``scan`` takes the stream's next bytes and
    returns (pattern_ids, end_offsets) of the matches that end in them, the ends counted from the
    start of the stream. ``reset`` starts a new stream."""

    def __init__(self, db: Database):
        self.db = db
        self.state = db.new_states(1)
        self.offset = 0  # bytes scanned so far

    def scan(self, data) -> Matches:
        data = as_byte_array(data)
        one = np.ones(1, dtype=np.int64)
        ids, _, ends = self.db.scan_chunks(
            data, data, np.zeros(1, np.int8), np.zeros(1, np.int64), one * data.shape[0], one * 0, self.state
        )
        ends = ends + self.offset
        self.offset += int(data.shape[0])
        return ids, ends

    def reset(self) -> None:
        self.db.reset_states(self.state, [0])
        self.offset = 0
