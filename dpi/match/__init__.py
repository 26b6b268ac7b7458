"""Multi-pattern matching: compile literal patterns once, scan buffers or batches of stream chunks.

    db = compile_patterns([b"GET ", b"user-agent:"], nocase=[False, True])
    ids, ends = db.scan(payload)          # every occurrence, end offsets exclusive

Engines share one interface (``Database`` in base.py): "numba" (default; Aho-Corasick scanned by Numba
kernels), "pyahocorasick" and "hyperscan" (optional peers for cross-checks and benchmarks).

Chunked, streaming scans (``Database.scan_chunks``): chunk i is ``buf_a[off:off+len]`` when
``chunk_src[i] == 0``, else the same slice of ``buf_b``. It is scanned from ``states[chunk_stream[i]]``
and the final state is stored back there, so a pattern split across chunks of one stream is found in
the chunk where it ends (``match_end`` is the exclusive end inside that chunk). A stream of -1 starts
from the initial state and is not saved. Chunks of one stream must come in stream order.
"""

from __future__ import annotations

from .base import Database, PatternStream, check_patterns
from .database import DfaDatabase, PrefilterDatabase
from .layout import LAYOUTS, choose_layout

ENGINES = ("numba", "pyahocorasick", "hyperscan")


def compile_patterns(
    patterns: list[bytes], nocase: list[bool] | None = None, engine="numba", layout="auto"
) -> Database:
    """Compile literal byte patterns (pattern id = index in the list) into a Database.

    ``nocase[i]`` makes pattern i match regardless of ASCII case. Empty patterns raise ValueError.
    ``layout`` (numba engine only) is "dfa", "prefilter" or "auto": chosen from the pattern set by
    ``choose_layout``; ``Database.describe()`` reports the choice and its reason.
    """
    if engine == "numba":
        patterns, nocase = check_patterns(patterns, nocase)
        reason = f"asked for layout {layout!r}"
        if layout == "auto":
            layout, reason = choose_layout(patterns, nocase)
        if layout == "dfa":
            db = DfaDatabase(patterns, nocase)
        elif layout == "prefilter":
            db = PrefilterDatabase(patterns, nocase)
        else:
            raise ValueError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")
        db.layout_reason = reason
        return db
    if layout not in ("auto", engine):
        raise ValueError(f"engine {engine!r} has no layout {layout!r}")
    if engine == "pyahocorasick":
        from .engines import AhoCorasickDatabase

        return AhoCorasickDatabase(patterns, nocase)
    if engine == "hyperscan":
        from .engines import HyperscanDatabase

        return HyperscanDatabase(patterns, nocase)
    raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


__all__ = [
    "ENGINES",
    "LAYOUTS",
    "Database",
    "DfaDatabase",
    "PatternStream",
    "PrefilterDatabase",
    "choose_layout",
    "compile_patterns",
]
