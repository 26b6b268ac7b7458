"""Matcher throughput (MB/s) on ET Open's content strings, numba against pyahocorasick and Hyperscan.

Pattern sets: the first 1k unique (content, nocase) pairs of ET Open's active alert rules, and all of
them. Data: the raw bytes of a few shared captures concatenated (headers and payloads, a few MB).
Every engine of a pattern set is in one benchmark group, measured in the same run; build time, table
memory, matches and MB/s are in extra_info, and the numba kernels' first call (JIT compile or cache
load) is measured apart as ``jit_warmup_s``. A summary with the speed-ups is printed at the end.

The pyahocorasick peer is given every advantage we can fairly give it: its two automata (exact keys,
and lower-cased keys for nocase ones) scan text that was decoded and lower-cased outside the timing,
and it counts occurrences through ``iter()``, as our ``count()`` does; our ``scan()`` also builds the
sorted id and offset arrays. Hyperscan counts in a Python callback (how python-hyperscan is used).

Under ``--benchmark-disable`` (CI) the data shrinks to 64 KiB (or ``DPI_BENCH_MATCH_BYTES``).
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import numpy as np
import pytest

from dpi.match import compile_patterns
from dpi.match.corpus import load_contents, unique_contents

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RULES = SHARED / "rules" / "et-open.rules"
CAPTURES = [
    "zeek/http-bro.org-browse.pcap",
    "ndpi/1kxun.pcap",
    "zeek/smb2.pcap",
    "zeek/http-no-crlf.pcap",
]
SMOKE_BYTES = 64 * 1024
PATTERN_SETS = {"1k": 1000, "all": None}
CHUNK = 1460  # a full-size TCP segment, for the chunked (pipeline) scan

_results: dict[tuple[str, str], float] = {}  # (pattern set, engine) -> MB/s, for the summary


@pytest.fixture(scope="module")
def corpus():
    if not RULES.exists():
        pytest.skip(f"ET Open rules not found at {RULES}")
    return load_contents(RULES)


@pytest.fixture(scope="module")
def data(request) -> bytes:
    paths = [SHARED / "pcaps" / name for name in CAPTURES]
    missing = [p for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"shared captures not found: {missing[0]}")
    blob = b"".join(p.read_bytes() for p in paths)
    limit = os.environ.get("DPI_BENCH_MATCH_BYTES")
    if limit:
        return blob[: int(limit)]
    if request.config.getoption("benchmark_disable", False):
        return blob[:SMOKE_BYTES]
    return blob


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if not _results or reporter is None or capture is None:
        return
    lines = ["", "matcher MB/s (best round) and numba's speed-up over each peer:"]
    for name in PATTERN_SETS:
        row = {engine: mbps for (pset, engine), mbps in _results.items() if pset == name}
        parts = [f"{engine} {mbps:.0f}" for engine, mbps in row.items()]
        for peer in ("pyahocorasick", "hyperscan"):
            for ours in ("numba-scan", "numba-count", "numba-chunks"):
                if peer in row and ours in row:
                    parts.append(f"{ours}/{peer} {row[ours] / row[peer]:.1f}x")
        if parts:
            lines.append(f"  {name}: " + ", ".join(parts))
    with capture.global_and_fixture_disabled():  # teardown output is captured otherwise
        for line in lines:
            reporter.write_line(line)


def _patterns(corpus, name):
    patterns, nocase = corpus
    return unique_contents(patterns, nocase, PATTERN_SETS[name])


def _record(benchmark, name: str, engine: str, data_len: int, **info) -> None:
    benchmark.extra_info.update(patterns_set=name, data_bytes=data_len, **info)
    stats = getattr(benchmark, "stats", None)
    if stats is None or not getattr(stats, "stats", None):
        return
    mbps = data_len / stats.stats.min / 1e6
    benchmark.extra_info["mb_per_s"] = round(mbps, 1)
    _results[(name, engine)] = mbps


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


@pytest.mark.parametrize("name", list(PATTERN_SETS))
@pytest.mark.parametrize("mode", ["scan", "count"])
def test_numba(benchmark, corpus, data, name, mode):
    patterns, nocase = _patterns(corpus, name)
    db, build_s = _timed(compile_patterns, patterns, nocase)
    run = db.scan if mode == "scan" else db.count
    _, warmup_s = _timed(run, data[:256])  # first call: JIT compile or cache load
    run(data)  # sizes the output buffers from the match density, as a long-running scan would
    benchmark.group = f"match {name}"
    result = benchmark.pedantic(run, args=(data,), rounds=5, iterations=1)
    matches = len(result[0]) if mode == "scan" else result
    assert matches == db.count(data)
    _record(
        benchmark,
        name,
        f"numba-{mode}",
        len(data),
        patterns=len(patterns),
        matches=int(matches),
        build_s=round(build_s, 3),
        nbytes=db.nbytes,
        layout=db.describe(),
        jit_warmup_s=round(warmup_s, 3),
    )


@pytest.mark.parametrize("name", list(PATTERN_SETS))
def test_numba_chunks(benchmark, corpus, data, name):
    """The pipeline's call: 1460-byte chunks of 64 interleaved streams in one kernel call."""
    patterns, nocase = _patterns(corpus, name)
    db = compile_patterns(patterns, nocase)
    buf = np.frombuffer(data, dtype=np.uint8)
    offset = np.arange(0, len(data), CHUNK, dtype=np.int64)
    length = np.minimum(CHUNK, len(data) - offset)
    stream = np.arange(offset.shape[0], dtype=np.int64) % 64
    src = np.zeros(offset.shape[0], dtype=np.int8)

    def run():
        return db.scan_chunks(buf, buf, src, offset, length, stream, db.new_states(64))

    run()
    benchmark.group = f"match {name}"
    pattern, _, _ = benchmark.pedantic(run, rounds=5, iterations=1)
    streams = [b"".join(data[o : o + CHUNK] for o in offset[stream == s].tolist()) for s in range(64)]
    assert len(pattern) == sum(db.count(s) for s in streams)
    _record(benchmark, name, "numba-chunks", len(data), chunks=int(offset.shape[0]), matches=len(pattern))


@pytest.mark.skipif(importlib.util.find_spec("ahocorasick") is None, reason="pyahocorasick is not installed")
@pytest.mark.parametrize("name", list(PATTERN_SETS))
def test_pyahocorasick(benchmark, corpus, data, name):
    import ahocorasick

    patterns, nocase = _patterns(corpus, name)

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
            automata.append(automaton)
        return automata

    (exact, folded), build_s = _timed(build)
    text = data.decode("latin-1")
    lowered = data.lower().decode("latin-1")

    def count():
        return sum(n for _, n in exact.iter(text)) + sum(n for _, n in folded.iter(lowered))

    benchmark.group = f"match {name}"
    matches = benchmark.pedantic(count, rounds=3, iterations=1)
    assert matches == compile_patterns(patterns, nocase).count(data)
    nbytes = exact.get_stats()["total_size"] + folded.get_stats()["total_size"]
    _record(
        benchmark, name, "pyahocorasick", len(data), matches=matches, build_s=round(build_s, 3), nbytes=nbytes
    )


@pytest.mark.skipif(importlib.util.find_spec("hyperscan") is None, reason="hyperscan is not installed")
@pytest.mark.parametrize("name", list(PATTERN_SETS))
def test_hyperscan(benchmark, corpus, data, name):
    patterns, nocase = _patterns(corpus, name)
    db, build_s = _timed(compile_patterns, patterns, nocase, "hyperscan")
    benchmark.group = f"match {name}"
    matches = benchmark.pedantic(db.count, args=(data,), rounds=3, iterations=1)
    assert matches == compile_patterns(patterns, nocase).count(data)
    _record(
        benchmark, name, "hyperscan", len(data), matches=matches, build_s=round(build_s, 3), nbytes=db.nbytes
    )
