"""Peer engines behind the same Database interface: pyahocorasick and Hyperscan.

They exist for cross-checks and benchmarks, so they favour plain, obviously-correct use of each
library over speed: Python runs per match. Both are optional imports.
"""

from __future__ import annotations

import numpy as np

from .base import (
    ChunkMatches,
    Database,
    Matches,
    as_byte_array,
    check_chunks,
    check_patterns,
    chunk_bounds_error,
    empty_matches,
)


def _sorted_matches(pattern_ids: list[int], ends: list[int]) -> Matches:
    ids = np.asarray(pattern_ids, dtype=np.int64)
    end = np.asarray(ends, dtype=np.int64)
    order = np.lexsort((ids, end))
    return ids[order], end[order]


def _chunk_views(buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, n_streams):
    """(index, bytes, stream) of each chunk, after checking them all (as the Numba engine does, so
    that a bad chunk leaves every stream state untouched)."""
    views = []
    for c in range(chunk_src.shape[0]):
        buf = buf_a if chunk_src[c] == 0 else buf_b
        start, length = int(chunk_offset[c]), int(chunk_len[c])
        if start < 0 or length < 0 or start + length > buf.shape[0]:
            raise chunk_bounds_error(c, buf_a, buf_b, chunk_src, chunk_offset, chunk_len)
        stream = int(chunk_stream[c])
        if stream < -1 or stream >= n_streams:
            raise ValueError(f"chunk {c}: stream {stream} is not in 0..{n_streams - 1} or -1")
        views.append((c, buf[start : start + length].tobytes(), stream))
    return views


def _concat_chunk_matches(parts: list[tuple[int, Matches]]) -> ChunkMatches:
    if not parts:
        z = np.zeros(0, dtype=np.int64)
        return z, z.copy(), z.copy()
    ids = np.concatenate([p[1][0] for p in parts])
    chunk = np.concatenate([np.full(p[1][0].shape[0], p[0], dtype=np.int64) for p in parts])
    end = np.concatenate([p[1][1] for p in parts])
    return ids, chunk, end


class AhoCorasickDatabase(Database):
    """pyahocorasick: one automaton for exact patterns, one over lower-cased keys for nocase ones.

    The module is built for str keys, so bytes go through latin-1 (one char per byte); case folding is
    done on the bytes first, so only ASCII letters fold, as in the other engines. Streaming keeps the
    last (longest pattern - 1) bytes of each stream and rescans them in front of the next chunk.
    """

    engine = "pyahocorasick"

    def __init__(self, patterns: list[bytes], nocase: list[bool] | None = None):
        try:
            import ahocorasick
        except ImportError as err:
            raise ImportError("engine 'pyahocorasick' needs the pyahocorasick package") from err
        patterns, nocase = check_patterns(patterns, nocase)
        super().__init__(patterns, nocase)
        groups: tuple[dict, dict] = ({}, {})
        for i, (p, fold) in enumerate(zip(patterns, nocase, strict=True)):
            key = (p.lower() if fold else p).decode("latin-1")
            groups[fold].setdefault(key, []).append(i)
        self._automata = []
        for fold, group in enumerate(groups):
            if not group:
                continue
            automaton = ahocorasick.Automaton()
            for key, ids in group.items():
                automaton.add_word(key, tuple(ids))
            automaton.make_automaton()
            self._automata.append((bool(fold), automaton))

    @property
    def nbytes(self) -> int:
        return int(sum(a.get_stats()["total_size"] for _, a in self._automata))

    def _scan_text(self, data: bytes, skip: int) -> Matches:
        """Matches in data that end after its first `skip` bytes, ends relative to that point."""
        pattern_ids: list[int] = []
        ends: list[int] = []
        lowered = None
        for fold, automaton in self._automata:
            if fold:
                lowered = lowered if lowered is not None else data.lower().decode("latin-1")
                text = lowered
            else:
                text = data.decode("latin-1")
            for last, ids in automaton.iter(text):
                end = last + 1 - skip
                if end > 0:
                    pattern_ids.extend(ids)
                    ends.extend([end] * len(ids))
        return _sorted_matches(pattern_ids, ends)

    def scan(self, data) -> Matches:
        data = as_byte_array(data).tobytes()
        return self._scan_text(data, 0) if data else empty_matches()

    def new_states(self, n_streams: int) -> np.ndarray:
        """object[n_streams]: the tail (up to longest pattern - 1 bytes) of each stream so far."""
        states = np.empty(int(n_streams), dtype=object)
        states[:] = b""
        return states

    def reset_states(self, states: np.ndarray, stream_ids) -> None:
        for s in np.asarray(stream_ids, dtype=np.int64).reshape(-1):
            states[s] = b""

    def scan_chunks(self, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states):
        columns = check_chunks(buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream)
        keep = max(self.max_length - 1, 0)
        parts = []
        for c, chunk, stream in _chunk_views(*columns, states.shape[0]):
            tail = states[stream] if stream >= 0 else b""
            text = tail + chunk
            found = self._scan_text(text, len(tail))
            if found[0].shape[0]:
                parts.append((c, found))
            if stream >= 0:
                states[stream] = text[max(0, len(text) - keep) :] if keep else b""
        return _concat_chunk_matches(parts)


def hyperscan_expressions(patterns: list[bytes]) -> list[bytes]:
    """Each pattern as a Hyperscan expression matching its bytes literally. Every byte is an \\xHH
    escape through the regex compiler: python-hyperscan hands literal-mode expressions to Hyperscan
    as C strings, so a pattern would end at its first NUL byte."""
    return ["".join(f"\\x{b:02x}" for b in p).encode() for p in patterns]


class HyperscanDatabase(Database):
    """Hyperscan: block mode for scan(), a stream-mode database for scan_chunks().

    Stream states are Hyperscan streams, opened on a stream's first chunk and kept with the stream's
    byte count (Hyperscan reports end offsets from the start of the stream).
    """

    engine = "hyperscan"

    def __init__(self, patterns: list[bytes], nocase: list[bool] | None = None):
        try:
            import hyperscan
        except ImportError as err:
            raise ImportError("engine 'hyperscan' needs the hyperscan package (x86-64 only)") from err
        patterns, nocase = check_patterns(patterns, nocase)
        super().__init__(patterns, nocase)
        self._hs = hyperscan
        self._flags = [hyperscan.HS_FLAG_CASELESS if f else 0 for f in nocase]
        self._block = self._compile(hyperscan.HS_MODE_BLOCK)
        self._stream_db = None

    def _compile(self, mode):
        db = self._hs.Database(mode=mode)
        if self.patterns:
            db.compile(
                expressions=hyperscan_expressions(self.patterns),
                ids=list(range(len(self.patterns))),
                elements=len(self.patterns),
                flags=self._flags,
            )
        return db

    @property
    def nbytes(self) -> int:
        return int(self._block.size()) if self.patterns else 0

    def scan(self, data) -> Matches:
        data = as_byte_array(data).tobytes()
        if not data or not self.patterns:
            return empty_matches()
        found, on_match = _collector()
        self._block.scan(data, match_event_handler=on_match)
        return _sorted_matches([i for i, _ in found], [end for _, end in found])

    def count(self, data) -> int:
        data = data if isinstance(data, bytes) else as_byte_array(data).tobytes()
        if not data or not self.patterns:
            return 0
        found = [0]

        def on_match(pattern_id, start, end, flags, context):
            found[0] += 1

        self._block.scan(data, match_event_handler=on_match)
        return found[0]

    def new_states(self, n_streams: int) -> np.ndarray:
        """object[n_streams]: None, or [open Hyperscan stream, bytes scanned so far]."""
        return np.full(int(n_streams), None, dtype=object)

    def reset_states(self, states: np.ndarray, stream_ids) -> None:
        for s in np.asarray(stream_ids, dtype=np.int64).reshape(-1):
            if states[s] is not None:
                states[s][0].close()
                states[s] = None

    def scan_chunks(self, buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream, states):
        columns = check_chunks(buf_a, buf_b, chunk_src, chunk_offset, chunk_len, chunk_stream)
        parts = []
        for c, chunk, stream in _chunk_views(*columns, states.shape[0]):
            if not self.patterns:
                continue
            if stream < 0:
                found = self.scan(chunk)
            else:
                found = self._scan_stream(states, stream, chunk)
            if found[0].shape[0]:
                parts.append((c, found))
        return _concat_chunk_matches(parts)

    def _scan_stream(self, states: np.ndarray, stream: int, chunk: bytes) -> Matches:
        if self._stream_db is None:
            self._stream_db = self._compile(self._hs.HS_MODE_STREAM)
        if states[stream] is None:
            handle = self._stream_db.stream(match_event_handler=_collector()[1])
            handle.__enter__()  # opens the Hyperscan stream; reset_states closes it
            states[stream] = [handle, 0]
        handle, before = states[stream]
        found, on_match = _collector()
        handle.scan(chunk, match_event_handler=on_match)
        states[stream][1] = before + len(chunk)
        return _sorted_matches([i for i, _ in found], [end - before for _, end in found])


def _collector():
    """A fresh match list and the Hyperscan callback that fills it.

    The callback is a closure rather than one function given a `context`: python-hyperscan 0.7 does not
    keep the context object alive, and a stream scanned after a block scan was handed None.
    """
    found: list[tuple[int, int]] = []

    def on_match(pattern_id, start, end, flags, context):
        found.append((pattern_id, end))

    return found, on_match
