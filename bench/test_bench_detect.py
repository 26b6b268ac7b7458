"""Detection throughput (Gbps of captured bytes, end to end: read, decode, flow, stream, match,
verify, output) with every loadable ET Open rule, for each matcher engine in the same run.

The rules are loaded once and compiled once per engine (compile time in extra_info, not in
the throughput); the JIT warm-up (the first batch through every kernel, or the cache load)
is one scan of a small capture, measured apart as ``jit_warmup_s``. Two inputs: every shared
capture (about 22 MB, real traffic) scanned together, and a synthetic capture written from a fixed
seed (``dpi.bench.run.write_input``: 200,000 packets of 1,000 concurrent HTTP-like flows).

Under ``--benchmark-disable`` (CI) the rule set is the first 2,000 ET Open rules and the data
one small capture and 2,000 synthetic packets, so that the benchmark runs and never rots.
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from bench.conftest import SHARED, write_summary
from dpi.bench.run import write_input
from dpi.capture import batches_of
from dpi.detect.compile import compile_rules
from dpi.pipeline import Scanner
from dpi.rules import load_rules, parse_rules

RULES = SHARED / "rules" / "et-open.rules"
SMOKE_CAPTURE = "dpkt/http.pcap"
SMOKE_RULES = 2000
ENGINES = ["numba", "pyahocorasick", "hyperscan"]
MODULES = {"pyahocorasick": "ahocorasick", "hyperscan": "hyperscan"}  # what each engine imports

SYNTHETIC_PACKETS, SMOKE_SYNTHETIC_PACKETS = 200_000, 2_000
INPUTS = ["captures", "synthetic"]

_results: dict[tuple[str, str], float] = {}  # (input, engine) -> Gbps


@pytest.fixture(scope="module")
def smoke(request) -> bool:
    return bool(request.config.getoption("benchmark_disable", False))


@pytest.fixture(scope="module")
def ruleset(smoke):
    if not RULES.exists():
        pytest.skip(f"ET Open rules not found at {RULES}")
    if smoke:
        lines = RULES.read_text(encoding="latin-1").splitlines()
        active = [line for line in lines if line.strip() and not line.startswith("#")]
        return parse_rules("\n".join(active[:SMOKE_RULES]), filename=str(RULES))
    return load_rules([str(RULES)])


@pytest.fixture(scope="module")
def inputs(smoke, tmp_path_factory) -> dict[str, list[str]]:
    if smoke:
        paths = [SHARED / "pcaps" / SMOKE_CAPTURE]
    else:
        paths = sorted(p for p in (SHARED / "pcaps").rglob("*") if p.suffix in (".pcap", ".pcapng"))
    if not paths or not paths[0].exists():
        pytest.skip(f"shared captures not found under {SHARED / 'pcaps'}")
    n = SMOKE_SYNTHETIC_PACKETS if smoke else SYNTHETIC_PACKETS
    synthetic = write_input(tmp_path_factory.mktemp("detect") / "synthetic.pcap", n, 512, 1000, seed=1)
    return {"captures": [str(p) for p in paths], "synthetic": [synthetic["path"]]}


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    lines = []
    for source in INPUTS:
        row = {engine: gbps for (i, engine), gbps in _results.items() if i == source}
        parts = [f"{engine} {gbps:.3f} Gbps" for engine, gbps in row.items()]
        for peer in ENGINES[1:]:
            if peer in row and "numba" in row:
                parts.append(f"numba/{peer} {row['numba'] / row[peer]:.2f}x")
        if parts:
            lines.append(f"detection throughput, all loadable ET Open rules, {source}: " + ", ".join(parts))
    write_summary(request, lines)


def _scan(db, captures) -> tuple[int, int, dict]:
    scanner = Scanner(db, flow_events=False)
    for batch in batches_of(captures, "native"):
        scanner.process_batch(batch)
    scanner.flush()
    result = scanner.finish()
    return result.bytes, result.alerts, result.timings


@pytest.mark.parametrize("source", INPUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_detection_throughput(benchmark, ruleset, inputs, engine, source):
    if engine != "numba" and importlib.util.find_spec(MODULES[engine]) is None:
        pytest.skip(f"{engine} is not installed")
    started = time.perf_counter()
    db = compile_rules(ruleset.rules, engine=engine)
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    _scan(db, [str(SHARED / "pcaps" / SMOKE_CAPTURE)])  # JIT compile or cache load
    warmup_s = time.perf_counter() - started
    benchmark.group = f"detect ET Open, {source}"
    n_bytes, alerts, clock = benchmark.pedantic(_scan, args=(db, inputs[source]), rounds=3, iterations=1)
    assert n_bytes > 0
    # where the time of the last round went, stage by stage (the pipeline's own clock)
    benchmark.extra_info.update(
        input=source, rules=len(db.rules), compile_s=round(compile_s, 2), jit_warmup_s=round(warmup_s, 2),
        bytes=n_bytes, alerts=alerts, stage_seconds={stage: round(s, 4) for stage, s in clock.items()},
    )  # fmt: skip
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None):
        gbps = n_bytes * 8 / stats.stats.min / 1e9
        benchmark.extra_info["gbps"] = round(gbps, 4)
        _results[(source, engine)] = gbps
