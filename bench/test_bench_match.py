"""Matcher throughput (MB/s) on ET Open's fast patterns: each numba layout beside Hyperscan and
pyahocorasick, measured in the same run.

Pattern sets: the first 10 and 1,000 distinct fast patterns of ET Open's active alert rules (the
pattern each rule's prefilter would use: its ``fast_pattern`` content, else its longest one), and all
of them. Inputs: the TCP and UDP payloads of every shared capture, concatenated (``payloads``), and an
HTTP-like corpus from a fixed seed (``http``). Each (pattern set, input) is one benchmark group.

Engines, all counting every match over the whole buffer in one call:
- ``numba-dfa`` and ``numba-prefilter``: the two layouts, forced; ``auto`` in extra_info says which
  one ``compile_patterns`` picks for the set;
- ``hyperscan-pure``: Hyperscan finding every match with no callback at all (``hs_scan`` given a NULL
  handler): the same work as numba's ``count()``, with no Python per match;
- ``hyperscan-single``: Hyperscan's pure scan, each pattern compiled with HS_FLAG_SINGLEMATCH, so the
  Python callback runs at most once a pattern (the figure Hyperscan's own benchmarks quote);
- ``hyperscan``: every match, through the callback, as the detect engine uses it;
- ``pyahocorasick``: its two automata (exact keys, lower-cased keys) over text decoded and lower-cased
  outside the timing, counting through ``iter()``.
numba's ``count()`` reports every occurrence, which is more work than a single-match scan.

Build time, table bytes (``nbytes``), matches and MB/s go in extra_info; the numba kernels' first call
(JIT compile or cache load) is measured apart as ``jit_warmup_s``. A summary table with the ratios is
printed at the end. Under ``--benchmark-disable`` (CI) each input shrinks to 64 KiB (or
``DPI_BENCH_MATCH_BYTES``) and the ``all`` set is left out of the peers but not of numba.
"""

from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest

from bench.conftest import SHARED, write_summary
from dpi.match import choose_layout, compile_patterns
from dpi.match.corpus import capture_payloads, http_like_corpus, load_fast_patterns
from dpi.match.engines import hyperscan_expressions

RULES = SHARED / "rules" / "et-open.rules"
SMOKE_BYTES = 64 * 1024
HTTP_BYTES = 8 * 1024 * 1024
PATTERN_SETS = {"10": 10, "1k": 1000, "all": None}
INPUTS = ["payloads", "http"]
LAYOUTS = ["dfa", "prefilter"]
PEERS = {
    "hyperscan-pure": "hyperscan",
    "hyperscan-single": "hyperscan",
    "hyperscan": "hyperscan",
    "pyahocorasick": "ahocorasick",
}
CHUNK = 1460  # a full-size TCP segment, for the chunked (pipeline) scan

_results: dict[tuple[str, str, str], tuple[float, int]] = {}  # (set, input, engine) -> (MB/s, nbytes)
_databases: dict[tuple[str, str], tuple[object, float]] = {}  # (set, layout) -> (db, build s)


def _limit(request) -> int | None:
    limit = os.environ.get("DPI_BENCH_MATCH_BYTES")
    if limit:
        return int(limit)
    return SMOKE_BYTES if request.config.getoption("benchmark_disable", False) else None


@pytest.fixture(scope="module")
def fast_patterns():
    if not RULES.exists():
        pytest.skip(f"ET Open rules not found at {RULES}")
    return load_fast_patterns(RULES)


@pytest.fixture(scope="module")
def inputs(request) -> dict[str, bytes]:
    captures = sorted(p for p in (SHARED / "pcaps").rglob("*") if p.suffix in (".pcap", ".pcapng"))
    if not captures:
        pytest.skip(f"shared captures not found under {SHARED / 'pcaps'}")
    limit = _limit(request)
    payloads, _ = capture_payloads(captures)
    http = http_like_corpus(limit or HTTP_BYTES, seed=0)
    return {"payloads": payloads[:limit].tobytes(), "http": http[:limit].tobytes()}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = ["matcher MB/s (best round), table MiB, and the best numba layout's ratio to each peer:"]
    for name in PATTERN_SETS:
        for source in INPUTS:
            row = {e: v for (s, i, e), v in _results.items() if (s, i) == (name, source)}
            if not row:
                continue
            parts = [f"{e} {mbps:.0f} ({nbytes / 2**20:.1f} MiB)" for e, (mbps, nbytes) in row.items()]
            ours = [row[f"numba-{layout}"][0] for layout in LAYOUTS if f"numba-{layout}" in row]
            for peer in PEERS:
                if ours and peer in row:
                    parts.append(f"numba/{peer} {max(ours) / row[peer][0]:.2f}x")
            lines.append(f"  {name} patterns, {source}: " + ", ".join(parts))
    write_summary(request, lines if len(lines) > 1 else [])


def _patterns(fast_patterns, name: str):
    patterns, nocase = fast_patterns
    limit = PATTERN_SETS[name]
    return patterns[:limit], nocase[:limit]


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def _numba_database(fast_patterns, name: str, layout: str):
    """Built once per (set, layout) and shared by both inputs."""
    if (name, layout) not in _databases:
        patterns, nocase = _patterns(fast_patterns, name)
        _databases[(name, layout)] = _timed(compile_patterns, patterns, nocase, layout=layout)
    return _databases[(name, layout)]


def _expected(fast_patterns, name: str, data: bytes) -> int:
    """Every match, from the prefilter layout (the tests hold both layouts to a naive search)."""
    db, _ = _numba_database(fast_patterns, name, "prefilter")
    return db.count(data)


def _record(benchmark, name, source, engine, data_len, nbytes, **info) -> None:
    benchmark.extra_info.update(patterns_set=name, input=source, data_bytes=data_len, nbytes=nbytes, **info)
    stats = getattr(benchmark, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return
    mbps = data_len / stats.stats.min / 1e6
    benchmark.extra_info["mb_per_s"] = round(mbps, 1)
    _results[(name, source, engine)] = (mbps, int(nbytes))


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("name", list(PATTERN_SETS))
@pytest.mark.parametrize("layout", LAYOUTS)
def test_numba(benchmark, fast_patterns, inputs, layout, name, source):
    data = inputs[source]
    db, build_s = _numba_database(fast_patterns, name, layout)
    _, warmup_s = _timed(db.count, data[:256])  # first call: JIT compile or cache load
    benchmark.group = f"match {name} {source}"
    matches = benchmark.pedantic(db.count, args=(data,), rounds=5, iterations=1)
    assert matches == _expected(fast_patterns, name, data)
    ids, _ = db.scan(data)
    assert len(ids) == matches
    patterns, nocase = _patterns(fast_patterns, name)
    _record(
        benchmark, name, source, f"numba-{layout}", len(data), db.nbytes,
        patterns=len(patterns), matches=int(matches), build_s=round(build_s, 3),
        jit_warmup_s=round(warmup_s, 3), describe=db.describe(),
        auto=choose_layout(patterns, nocase)[0],
    )  # fmt: skip


@pytest.mark.parametrize("name", ["all"])
def test_numba_chunks(benchmark, fast_patterns, inputs, name):
    """The pipeline's call: 1460-byte chunks of 64 interleaved streams in one kernel call."""
    data = inputs["payloads"]
    patterns, nocase = _patterns(fast_patterns, name)
    db = compile_patterns(patterns, nocase)
    buf = np.frombuffer(data, dtype=np.uint8)
    offset = np.arange(0, len(data), CHUNK, dtype=np.int64)
    length = np.minimum(CHUNK, len(data) - offset)
    stream = np.arange(offset.shape[0], dtype=np.int64) % 64
    src = np.zeros(offset.shape[0], dtype=np.int8)

    def run():
        return db.scan_chunks(buf, buf, src, offset, length, stream, db.new_states(64))

    run()
    benchmark.group = f"match {name} payloads"
    pattern, _, _ = benchmark.pedantic(run, rounds=5, iterations=1)
    streams = [b"".join(data[o : o + CHUNK] for o in offset[stream == s].tolist()) for s in range(64)]
    assert len(pattern) == sum(db.count(s) for s in streams)
    _record(
        benchmark, name, "payloads", f"numba-{db.layout}-chunks", len(data), db.nbytes,
        chunks=int(offset.shape[0]), matches=len(pattern),
    )  # fmt: skip


def _skip_peer(request, engine: str, name: str) -> None:
    if importlib.util.find_spec(PEERS[engine]) is None:
        pytest.skip(f"{PEERS[engine]} is not installed")
    if name == "all" and request.config.getoption("benchmark_disable", False):
        pytest.skip("smoke run: peers are compiled for the 10 and 1k sets only")


def _hyperscan_database(patterns, nocase, single: bool):
    import hyperscan

    single_flag = hyperscan.HS_FLAG_SINGLEMATCH if single else 0
    flags = [(hyperscan.HS_FLAG_CASELESS if f else 0) | single_flag for f in nocase]
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    expressions = hyperscan_expressions(patterns)
    db.compile(expressions=expressions, ids=list(range(len(patterns))), elements=len(patterns), flags=flags)
    return db


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("name", list(PATTERN_SETS))
@pytest.mark.parametrize("engine", ["hyperscan-pure", "hyperscan-single", "hyperscan"])
def test_hyperscan(request, benchmark, fast_patterns, inputs, engine, name, source):
    _skip_peer(request, engine, name)
    data = inputs[source]
    patterns, nocase = _patterns(fast_patterns, name)
    db, build_s = _timed(_hyperscan_database, patterns, nocase, engine == "hyperscan-single")
    found = [0]

    def on_match(pattern_id, start, end, flags, context):
        found[0] += 1

    def count():
        found[0] = 0
        # With no handler Hyperscan still finds every match; it only has no one to tell.
        db.scan(data, match_event_handler=None if engine == "hyperscan-pure" else on_match)
        return found[0]

    benchmark.group = f"match {name} {source}"
    matches = benchmark.pedantic(count, rounds=3, iterations=1)
    expected = _expected(fast_patterns, name, data)
    if engine == "hyperscan":
        assert matches == expected
    elif engine == "hyperscan-single":
        assert matches <= expected and (matches > 0) == (expected > 0)
    else:
        matches = None  # not reported
    _record(benchmark, name, source, engine, len(data), db.size(), matches=matches, build_s=round(build_s, 3))


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("name", list(PATTERN_SETS))
def test_pyahocorasick(request, benchmark, fast_patterns, inputs, name, source):
    _skip_peer(request, "pyahocorasick", name)
    import ahocorasick

    data = inputs[source]
    patterns, nocase = _patterns(fast_patterns, name)

    def build():
        groups: tuple[dict, dict] = ({}, {})
        for p, fold in zip(patterns, nocase, strict=True):
            key = (p.lower() if fold else p).decode("latin-1")
            groups[fold][key] = groups[fold].get(key, 0) + 1
        automata = []
        for group in groups:
            automaton = ahocorasick.Automaton()
            for key, n_ids in group.items():
                automaton.add_word(key, n_ids)
            automaton.make_automaton()
            automata.append(automaton if group else None)  # an empty automaton cannot iter()
        return automata

    (exact, folded), build_s = _timed(build)
    text = data.decode("latin-1")
    lowered = data.lower().decode("latin-1")

    def count():
        total = 0
        for automaton, haystack in ((exact, text), (folded, lowered)):
            if automaton is not None:
                total += sum(n for _, n in automaton.iter(haystack))
        return total

    benchmark.group = f"match {name} {source}"
    matches = benchmark.pedantic(count, rounds=3, iterations=1)
    assert matches == _expected(fast_patterns, name, data)
    nbytes = sum(a.get_stats()["total_size"] for a in (exact, folded) if a is not None)
    _record(
        benchmark,
        name,
        source,
        "pyahocorasick",
        len(data),
        nbytes,
        matches=matches,
        build_s=round(build_s, 3),
    )
