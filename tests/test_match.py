"""The multi-pattern matcher (dpi.match) against a naive search, across engines and chunkings."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpi.match import DfaDatabase, PrefilterDatabase, compile_patterns
from dpi.match.corpus import load_contents
from dpi.match.layout import MEMORY_BUDGET, choose_layout, full_dfa_bytes
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA
HAVE_PYAHOCORASICK = importlib.util.find_spec("ahocorasick") is not None
HAVE_HYPERSCAN = importlib.util.find_spec("hyperscan") is not None
PEERS = [
    pytest.param(
        "pyahocorasick",
        marks=pytest.mark.skipif(not HAVE_PYAHOCORASICK, reason="pyahocorasick is not installed"),
    ),
    pytest.param(
        "hyperscan", marks=pytest.mark.skipif(not HAVE_HYPERSCAN, reason="hyperscan is not installed")
    ),
]
# Every layout of the numba engine. The DFA with its default budget (a full DFA for small sets), with
# a budget of 0 (only the root dense, every other state sparse) and of 200 bytes (a few shallow dense
# states, the rest sparse); the prefilter.
LAYOUTS = ["dfa", "dfa-sparse", "dfa-200", "prefilter"]


def build(layout: str, patterns, nocase=None):
    """A numba Database of the given layout (see LAYOUTS)."""
    if layout == "prefilter":
        return PrefilterDatabase(patterns, nocase)
    budget = {"dfa": None, "dfa-sparse": 0, "dfa-200": 200}[layout]
    return DfaDatabase(patterns, nocase, dense_budget=budget)


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def naive(patterns: list[bytes], nocase: list[bool], data: bytes) -> list[tuple[int, int]]:
    """(end, id) of every occurrence, by trying every pattern at every end offset."""
    lowered = data.lower()
    found = []
    for end in range(1, len(data) + 1):
        for i, (p, fold) in enumerate(zip(patterns, nocase, strict=True)):
            if len(p) <= end:
                if fold and lowered[end - len(p) : end] == p.lower():
                    found.append((end, i))
                elif not fold and data[end - len(p) : end] == p:
                    found.append((end, i))
    return found


def naive_find(patterns: list[bytes], nocase: list[bool], data: bytes) -> list[tuple[int, int]]:
    """Same as naive(), by bytes.find from every start: fast enough for buffers of tens of KB."""
    lowered = data.lower()
    found = []
    for i, (p, fold) in enumerate(zip(patterns, nocase, strict=True)):
        hay, needle = (lowered, p.lower()) if fold else (data, p)
        at = hay.find(needle)
        while at >= 0:
            found.append((at + len(p), i))
            at = hay.find(needle, at + 1)
    return sorted(found)


def as_pairs(ids: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(ends.tolist(), ids.tolist(), strict=True))


@st.composite
def pattern_sets(draw, alphabet=b"abAB\x00", max_len=6, max_patterns=12):
    letters = st.sampled_from(list(alphabet))
    pattern = st.lists(letters, min_size=1, max_size=max_len).map(bytes)
    patterns = draw(st.lists(pattern, min_size=1, max_size=max_patterns))
    nocase = draw(st.lists(st.booleans(), min_size=len(patterns), max_size=len(patterns)))
    return patterns, nocase


small_data = st.lists(st.sampled_from(list(b"abAB\x00")), max_size=120).map(bytes)


@st.composite
def binary_case(draw):
    """Random bytes and patterns cut from them (so they occur), plus a few random ones."""
    data = draw(st.binary(min_size=1, max_size=300))
    patterns, nocase = [], []
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.booleans()):
            start = draw(st.integers(0, len(data) - 1))
            length = draw(st.integers(1, min(8, len(data) - start)))
            patterns.append(data[start : start + length])
        else:
            patterns.append(draw(st.binary(min_size=1, max_size=4)))
        nocase.append(draw(st.booleans()))
    return patterns, nocase, data


@pytest.mark.parametrize("layout_name", LAYOUTS)
@PROPERTY
@given(case=pattern_sets(), data=small_data)
def test_scan_equals_naive_small_alphabet(layout_name, case, data):
    patterns, nocase = case
    db = build(layout_name, patterns, nocase)
    ids, ends = db.scan(data)
    assert ids.dtype == np.int64 and ends.dtype == np.int64
    assert as_pairs(ids, ends) == naive(patterns, nocase, data)
    assert db.count(data) == len(ids)


@pytest.mark.parametrize("layout_name", LAYOUTS)
@PROPERTY
@given(case=binary_case())
def test_scan_equals_naive_binary(layout_name, case):
    patterns, nocase, data = case
    db = build(layout_name, patterns, nocase)
    ids, ends = db.scan(data)
    assert as_pairs(ids, ends) == naive(patterns, nocase, data)
    assert db.count(data) == len(ids)


@st.composite
def long_buffers(draw):
    """20-40 KB from a small alphabet (long enough for the multi-lane path), with patterns up to 40
    bytes cut from it, so that matches straddle the lanes' segment boundaries."""
    seed = draw(st.binary(min_size=50, max_size=400))
    data = bytes(b"abAB\x00"[x % 5] for x in seed)
    size = draw(st.integers(20_000, 40_000))
    data = (data * (size // len(data) + 1))[:size]
    patterns, nocase = draw(pattern_sets())
    start = draw(st.integers(0, size - 41))
    patterns.append(data[start : start + draw(st.integers(10, 40))])
    nocase.append(draw(st.booleans()))
    return patterns, nocase, data


@pytest.mark.parametrize("layout_name", ["dfa", "dfa-sparse", "prefilter"])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=long_buffers())
def test_long_buffers_use_lanes_and_agree(layout_name, case):
    patterns, nocase, data = case
    db = build(layout_name, patterns, nocase)
    expected = naive_find(patterns, nocase, data)
    assert as_pairs(*db.scan(data)) == expected
    assert db.count(data) == len(expected)


@pytest.mark.parametrize("layout_name", LAYOUTS)
def test_first_block_denser_than_the_output_guess(layout_name):
    # Three matches a byte from the first byte on: the outputs, sized from a guess of one match in
    # sixteen bytes, must grow even though nothing before the overflowing block was kept.
    patterns, nocase = [b"a", b"A", b"aa"], [False, True, False]
    db = build(layout_name, patterns, nocase)
    data = b"a" * 20_000
    ids, ends = db.scan(data)
    assert len(ids) == 3 * len(data) - 1
    assert as_pairs(ids, ends) == naive(patterns, nocase, data)
    assert db.count(data) == len(ids)


def test_classic_example_and_duplicates():
    patterns = [b"he", b"she", b"his", b"hers", b"he", b"HE", b"s"]
    nocase = [False, False, False, False, False, True, True]
    db = compile_patterns(patterns, nocase)
    data = b"ushers SHE He his"
    ids, ends = db.scan(data)
    assert as_pairs(ids, ends) == naive(patterns, nocase, data)
    # "ushe": she, and every id of the duplicated "he" (exact twice, nocase once).
    at_4 = sorted(i for e, i in as_pairs(ids, ends) if e == 4)
    assert at_4 == [0, 1, 4, 5]


def test_input_types_and_empty_data():
    db = compile_patterns([b"ab", b"b"])
    expected = as_pairs(*db.scan(b"xabab"))
    assert expected == [(3, 0), (3, 1), (5, 0), (5, 1)]
    assert as_pairs(*db.scan(bytearray(b"xabab"))) == expected
    assert as_pairs(*db.scan(memoryview(b"xabab"))) == expected
    assert as_pairs(*db.scan(np.frombuffer(b"xabab", dtype=np.uint8))) == expected
    strided = np.frombuffer(b"x-a-b-a-b-", dtype=np.uint8)[::2]
    assert as_pairs(*db.scan(strided)) == expected
    ids, ends = db.scan(b"")
    assert ids.shape == (0,) and ends.shape == (0,)
    assert db.count(b"") == 0
    with pytest.raises(TypeError):
        db.scan(np.zeros(4, dtype=np.int32))


def test_compile_errors():
    with pytest.raises(ValueError, match="empty"):
        compile_patterns([b"a", b""])
    with pytest.raises(ValueError, match="nocase"):
        compile_patterns([b"a", b"b"], nocase=[True])
    with pytest.raises(ValueError, match="unknown engine"):
        compile_patterns([b"a"], engine="grep")


def test_empty_pattern_list_matches_nothing():
    db = compile_patterns([])
    assert db.count(b"anything") == 0
    assert db.scan(b"anything")[0].shape == (0,)


def test_many_matches_grow_the_output():
    # 20 patterns matching at almost every byte: far more matches than the first output guess.
    patterns = [b"a" * k for k in range(1, 21)]
    data = b"a" * 5000 + b"b" + b"A" * 100
    db = compile_patterns(patterns, [k % 2 == 0 for k in range(20)])
    ids, ends = db.scan(data)
    assert as_pairs(ids, ends) == naive(patterns, db.nocase, data)
    assert len(ids) == db.count(data) > 90_000


def test_hybrid_table_is_smaller_than_full_dfa():
    rng = np.random.default_rng(1)
    patterns = [rng.integers(65, 91, 12, dtype=np.uint8).tobytes() for _ in range(300)]
    full = DfaDatabase(patterns)
    hybrid = DfaDatabase(patterns, dense_budget=64 * 1024)
    assert full.exact.n_dense == full.exact.n_states
    assert 1 < hybrid.exact.n_dense < hybrid.exact.n_states
    assert hybrid.nbytes < full.nbytes
    data = b"".join(patterns[::3]) + bytes(range(256))
    assert as_pairs(*hybrid.scan(data)) == as_pairs(*full.scan(data))


# --- chunked, streaming scans ------------------------------------------------------------------------


def chunk_columns(pieces: list[bytes], streams: list[int], in_b: list[bool]):
    """Lay pieces out in two buffers (with gaps) and return the chunk columns."""
    buf_a, buf_b = bytearray(b"#"), bytearray(b"##")
    src, offset, length = [], [], []
    for piece, other in zip(pieces, in_b, strict=True):
        buf = buf_b if other else buf_a
        src.append(1 if other else 0)
        offset.append(len(buf))
        length.append(len(piece))
        buf += piece + b"|"
    return (
        np.frombuffer(bytes(buf_a), dtype=np.uint8),
        np.frombuffer(bytes(buf_b), dtype=np.uint8),
        np.array(src, dtype=np.int8),
        np.array(offset, dtype=np.int64),
        np.array(length, dtype=np.int64),
        np.array(streams, dtype=np.int64),
    )


def split_points(draw, n: int) -> list[int]:
    cuts = sorted(set(draw(st.lists(st.integers(0, n), max_size=12))) | {0, n})
    return cuts


def absolute(pattern, chunk, end, chunk_start: list[int]) -> list[tuple[int, int]]:
    return [
        (chunk_start[c] + e, p)
        for p, c, e in zip(pattern.tolist(), chunk.tolist(), end.tolist(), strict=True)
    ]


@pytest.mark.parametrize("layout_name", ["dfa", "dfa-sparse", "prefilter"])
@PROPERTY
@given(case=pattern_sets(), data=small_data, layout=st.data())
def test_chunks_of_one_stream_equal_whole_scan(layout_name, case, data, layout):
    patterns, nocase = case
    db = build(layout_name, patterns, nocase)
    cuts = split_points(layout.draw, len(data))
    if layout.draw(st.booleans()):
        cuts = list(range(len(data) + 1))  # 1-byte chunks
    pieces = [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    in_b = [layout.draw(st.booleans()) for _ in pieces]
    states = db.new_states(3)
    pattern, chunk, end = db.scan_chunks(*chunk_columns(pieces, [1] * len(pieces), in_b), states)
    assert as_pairs(*db.scan(data)) == absolute(pattern, chunk, end, cuts)
    assert np.all(np.diff(chunk) >= 0)
    assert np.all(states[[0, 2]] == 0)  # other streams untouched


@PROPERTY
@given(case=pattern_sets(), first=small_data, second=small_data, layout=st.data())
def test_interleaved_streams_keep_separate_state(case, first, second, layout):
    patterns, nocase = case
    db = compile_patterns(patterns, nocase)
    cuts = [split_points(layout.draw, len(first)), split_points(layout.draw, len(second))]
    queues = [
        [(0, a, first[a:b]) for a, b in zip(cuts[0], cuts[0][1:], strict=False)],
        [(1, a, second[a:b]) for a, b in zip(cuts[1], cuts[1][1:], strict=False)],
    ]
    order = []
    while queues[0] or queues[1]:
        pick = layout.draw(st.sampled_from([q for q in (0, 1) if queues[q]]))
        order.append(queues[pick].pop(0))
    streams = [s for s, _, _ in order]
    columns = chunk_columns([p for _, _, p in order], streams, [False] * len(order))
    states = db.new_states(2)
    pattern, chunk, end = db.scan_chunks(*columns, states)
    starts = [a for _, a, _ in order]
    for stream, data in ((0, first), (1, second)):
        mine = np.isin(chunk, [i for i, s in enumerate(streams) if s == stream])
        got = absolute(pattern[mine], chunk[mine], end[mine], starts)
        assert got == as_pairs(*db.scan(data))


@pytest.mark.parametrize("engine", ["numba", *PEERS])
def test_unsaved_chunks_do_not_leak_state(engine):
    db = compile_patterns([b"abcd", b"cd"], engine=engine)
    pieces = [b"xab", b"cdx", b"ab", b"ab", b"cd"]
    streams = [-1, -1, 0, -1, 0]
    states = db.new_states(1)
    pattern, chunk, end = db.scan_chunks(*chunk_columns(pieces, streams, [False] * 5), states)
    # chunk 1 sees only "cd" (no carried "ab"); chunk 3's "ab" is not carried into chunk 4,
    # while stream 0 carries "ab" from chunk 2 into chunk 4.
    found = sorted(zip(chunk.tolist(), pattern.tolist(), end.tolist(), strict=True))
    assert found == [(1, 1, 2), (4, 0, 2), (4, 1, 2)]


@pytest.mark.parametrize("layout_name", LAYOUTS)
@PROPERTY
@given(case=pattern_sets(), data=small_data, layout=st.data())
def test_pattern_stream_equals_whole_scan(layout_name, case, data, layout):
    """Database.stream(): ends count from the stream's start, so the pieces' matches are the whole's."""
    patterns, nocase = case
    stream = build(layout_name, patterns, nocase).stream()
    cuts = split_points(layout.draw, len(data))
    found = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        found += as_pairs(*stream.scan(data[a:b]))
    assert found == naive(patterns, nocase, data)
    # After reset the stream starts again: offsets from 0, nothing carried from before.
    stream.reset()
    assert as_pairs(*stream.scan(data)) == naive(patterns, nocase, data)


@pytest.mark.parametrize("engine", ["numba", *PEERS])
def test_pattern_stream_reset_forgets_the_tail(engine):
    stream = compile_patterns([b"abcd", b"cd"], engine=engine).stream()
    assert as_pairs(*stream.scan(b"xab")) == []
    assert as_pairs(*stream.scan(b"cd")) == [(5, 0), (5, 1)]
    stream.scan(b"ab")
    stream.reset()
    assert as_pairs(*stream.scan(b"cd")) == [(2, 1)]  # "ab" before the reset is forgotten


@pytest.mark.parametrize("layout_name", ["dfa", "prefilter"])
def test_describe_reports_layout_sizes_and_reason(layout_name):
    patterns, nocase = [b"GET ", b"user-agent:", b"x", b"\x00\x01"], [False, True, False, False]
    db = compile_patterns(patterns, nocase, layout=layout_name)
    info = db.describe()
    assert json.loads(json.dumps(info)) == info  # JSON-ready
    assert info["engine"] == "numba" and info["layout"] == layout_name
    assert info["patterns"] == 4 and info["nocase_patterns"] == 1 and info["max_length"] == 11
    assert info["nbytes"] == db.nbytes > 0
    assert info["reason"] == f"asked for layout {layout_name!r}"


def test_auto_layout_follows_the_full_dfa_size():
    small = compile_patterns([b"abc", b"def"])
    assert small.describe()["layout"] == "dfa" and "within" in small.describe()["reason"]
    # Random 12-byte keys: every key adds 12 states of ~300-byte dense rows, past 32 MiB at ~9,000.
    rng = np.random.default_rng(5)
    keys = [bytes(k) for k in rng.integers(0, 256, size=(12_000, 12), dtype=np.uint8)]
    assert full_dfa_bytes(keys) > MEMORY_BUDGET
    assert choose_layout(keys)[0] == "prefilter"
    big = compile_patterns(keys)
    assert big.describe()["layout"] == "prefilter" and "over the 32 MiB budget" in big.describe()["reason"]
    assert big.nbytes <= MEMORY_BUDGET
    data = b"".join(keys[::997]) + bytes(rng.integers(0, 256, 5000, dtype=np.uint8))
    assert as_pairs(*big.scan(data)) == naive_find(keys, [False] * len(keys), data)


@pytest.mark.parametrize("engine", ["numba", *PEERS])
def test_reset_states_forgets_a_stream(engine):
    db = compile_patterns([b"abcd"], engine=engine)
    states = db.new_states(2)
    columns = chunk_columns([b"ab", b"ab"], [0, 1], [False, False])
    db.scan_chunks(*columns, states)
    db.reset_states(states, [1])
    pattern, chunk, end = db.scan_chunks(*chunk_columns([b"cd", b"cd"], [0, 1], [False, False]), states)
    assert (pattern.tolist(), chunk.tolist(), end.tolist()) == ([0], [0], [2])


@pytest.mark.parametrize("engine", ["numba", *PEERS])
def test_empty_batch_and_empty_chunks(engine):
    db = compile_patterns([b"ab"], engine=engine)
    empty = np.zeros(0, dtype=np.int64)
    buf = np.frombuffer(b"abab", dtype=np.uint8)
    result = db.scan_chunks(buf, buf, np.zeros(0, dtype=np.int8), empty, empty, empty, db.new_states(1))
    assert [len(a) for a in result] == [0, 0, 0]
    columns = chunk_columns([b"", b"a", b"", b"b"], [0, 0, 0, 0], [False, True, False, True])
    pattern, chunk, end = db.scan_chunks(*columns, db.new_states(1))
    assert (pattern.tolist(), chunk.tolist(), end.tolist()) == ([0], [3], [1])


@pytest.mark.parametrize("engine", ["numba", *PEERS])
def test_bad_chunks_are_rejected(engine):
    db = compile_patterns([b"ab"], engine=engine)
    buf = np.frombuffer(b"abcdef", dtype=np.uint8)
    one = np.ones(1, dtype=np.int64)
    src = np.zeros(1, dtype=np.int8)
    with pytest.raises(ValueError, match="outside"):
        db.scan_chunks(buf, buf, src, one * 4, one * 3, one * -1, db.new_states(1))
    with pytest.raises(ValueError, match="outside"):
        db.scan_chunks(buf, buf, src, one * -1, one, one * -1, db.new_states(1))
    with pytest.raises(ValueError, match="stream"):
        db.scan_chunks(buf, buf, src, one, one, one * 5, db.new_states(1))
    with pytest.raises(ValueError, match="one length"):
        db.scan_chunks(buf, buf, src, one, one, np.zeros(2, dtype=np.int64), db.new_states(1))


def test_chunked_output_grows_and_resumes():
    db = compile_patterns([b"a" * k for k in range(1, 9)])
    pieces = [b"a" * 700] * 6
    pattern, chunk, end = db.scan_chunks(*chunk_columns(pieces, [0] * 6, [False] * 6), db.new_states(1))
    cuts = [700 * i for i in range(7)]
    assert absolute(pattern, chunk, end, cuts) == as_pairs(*db.scan(b"a" * 4200))
    with pytest.raises(TypeError, match="new_states"):
        db.scan_chunks(*chunk_columns(pieces, [0] * 6, [False] * 6), np.zeros((1, 2), dtype=np.int64))


@pytest.mark.parametrize("layout_name", ["dfa", "dfa-sparse", "prefilter"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pattern_sets(alphabet=b"aAb", max_len=5), layout=st.data())
def test_many_streams_and_unsaved_chunks(layout_name, case, layout):
    """Several streams (spread over the kernel's lanes) and -1 chunks, interleaved; match-dense data
    so that the outputs overflow and the kernel resumes."""
    patterns, nocase = case
    db = build(layout_name, patterns, nocase)
    n_streams = layout.draw(st.integers(1, 7))
    streams, pieces = [], []
    for _ in range(layout.draw(st.integers(1, 60))):
        streams.append(layout.draw(st.integers(-1, n_streams - 1)))
        pieces.append(layout.draw(st.lists(st.sampled_from(list(b"aAb")), max_size=400).map(bytes)))
    in_b = [layout.draw(st.booleans()) for _ in pieces]
    states = db.new_states(n_streams)
    pattern, chunk, end = db.scan_chunks(*chunk_columns(pieces, streams, in_b), states)
    assert np.all(np.diff(chunk) >= 0)
    got = list(zip(chunk.tolist(), end.tolist(), pattern.tolist(), strict=True))
    expected = []
    for stream in set(streams):
        mine = [c for c, s in enumerate(streams) if s == stream]
        if stream == -1:
            for c in mine:
                expected += [(c, e, i) for e, i in naive_find(patterns, nocase, pieces[c])]
            continue
        starts = np.cumsum([0] + [len(pieces[c]) for c in mine])
        for e, i in naive_find(patterns, nocase, b"".join(pieces[c] for c in mine)):
            k = int(np.searchsorted(starts, e, side="left")) - 1  # the chunk holding the match's last byte
            expected.append((mine[k], e - int(starts[k]), i))
    assert got == sorted(expected)


# --- peer engines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", PEERS)
@PROPERTY
@given(case=pattern_sets(), data=small_data)
def test_peer_scan_equals_numba(engine, case, data):
    patterns, nocase = case
    peer = compile_patterns(patterns, nocase, engine=engine)
    assert peer.engine == engine
    expected = compile_patterns(patterns, nocase).scan(data)
    assert as_pairs(*peer.scan(data)) == as_pairs(*expected)
    assert peer.count(data) == len(expected[0])
    assert peer.nbytes > 0


@pytest.mark.parametrize("engine", PEERS)
@PROPERTY
@given(case=pattern_sets(), data=small_data, layout=st.data())
def test_peer_chunks_equal_numba(engine, case, data, layout):
    patterns, nocase = case
    cuts = split_points(layout.draw, len(data))
    pieces = [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    streams = [layout.draw(st.sampled_from([-1, 0, 1])) for _ in pieces]
    columns = chunk_columns(pieces, streams, [layout.draw(st.booleans()) for _ in pieces])
    results = []
    for name in ("numba", engine):
        db = compile_patterns(patterns, nocase, engine=name)
        results.append([a.tolist() for a in db.scan_chunks(*columns, db.new_states(2))])
    assert results[0] == results[1]


# --- real rules and traffic --------------------------------------------------------------------------


def et_open_contents():
    rules = SHARED / "rules" / "et-open.rules"
    if not rules.exists():
        pytest.skip(f"shared rules not found at {rules}")
    return load_contents(rules)


@pytest.mark.needs_shared
@pytest.mark.skipif(not HAVE_PYAHOCORASICK, reason="pyahocorasick is not installed")
@pytest.mark.parametrize("layout", ["dfa", "prefilter"])
def test_et_open_contents_agree_with_pyahocorasick_on_a_capture(layout):
    patterns, nocase = et_open_contents()
    capture = SHARED / "pcaps" / "zeek" / "http-bro.org-browse.pcap"
    if not capture.exists():
        pytest.skip(f"shared capture not found at {capture}")
    assert len(patterns) > 10_000 and any(nocase) and not all(nocase)
    data = capture.read_bytes()[:200_000]
    db = compile_patterns(patterns, nocase, layout=layout)
    if layout == "dfa":
        assert db.exact.n_dense < db.exact.n_states  # the large set exercises the hybrid table
    ids, ends = db.scan(data)
    peer_ids, peer_ends = compile_patterns(patterns, nocase, engine="pyahocorasick").scan(data)
    assert len(ids) > 1000
    assert np.array_equal(ids, peer_ids) and np.array_equal(ends, peer_ends)
    assert db.count(data) == len(ids)
