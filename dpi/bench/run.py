"""`dpi bench`: one measured run and three sweeps, as JSON, a table beside line rates, and plots.

Inputs are synthetic TCP captures written from a fixed seed (dpi.gen.tcp): concurrent HTTP-like
flows (handshake, data segments each acknowledged by the server, FIN), the payload read from an
HTTP-like corpus so that rules and matchers see text like a web capture's. A sweep point changes one
thing: the number of rules (the first N loadable rules of the rule files), the data segment's payload
size, or the number of concurrent flows; the packet count stays ``packets``.

The JIT warm-up (compile, or load from Numba's cache) is one full pass over a tiny capture before
anything is timed, reported apart as ``jit_warmup_s``. Rule compile time is reported apart too.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dpi.bench.linerate import LINK_GBPS, line_rates
from dpi.bench.machine import machine_info, peak_rss_bytes
from dpi.bench.stages import STAGES, best_end_to_end, measure_stages
from dpi.detect.compile import compile_rules
from dpi.gen.tcp import synthetic_tcp_pcap
from dpi.match.corpus import http_like_corpus
from dpi.rules import load_rules

RULE_COUNTS = (10, 100, 1000, 10000, None)  # None: every loadable rule
PAYLOAD_SIZES = (64, 256, 512, 1024, 1460)
FLOW_COUNTS = (10, 100, 1000, 10000, 100000)
SWEEPS = ("rules", "size", "flows")
PACKETS_PER_FLOW_MIN = 6  # SYN, SYN/ACK, ACK, one data segment and its ACK, FIN


@dataclass
class BenchConfig:
    rule_paths: list[str]
    packets: int = 100_000
    payload_len: int = 512
    flows: int = 1000
    seed: int = 1
    repeat: int = 2
    sweeps: tuple[str, ...] = SWEEPS
    rule_counts: tuple = RULE_COUNTS
    payload_sizes: tuple = PAYLOAD_SIZES
    flow_counts: tuple = FLOW_COUNTS
    workdir: str | None = None
    progress: object = field(default=sys.stderr)


def write_input(path: Path, packets: int, payload_len: int, flows: int, seed: int) -> dict:
    """A synthetic capture of about ``packets`` packets (see the module docstring); what it holds."""
    flows = max(1, min(flows, packets // PACKETS_PER_FLOW_MIN))
    segments = max(1, round((packets / flows - 4) / 2))
    corpus = http_like_corpus(1 << 20, seed=seed)
    cap = synthetic_tcp_pcap(
        path, flows=flows, segments=segments, segment_len=payload_len, seed=seed, payload=corpus
    )
    return {
        "path": str(path),
        "packets": cap.packets,
        "flows": flows,
        "segments_per_flow": segments,
        "payload_len": payload_len,
        "captured_bytes": cap.bytes,
        "seed": seed,
    }


def _say(config: BenchConfig, text: str) -> None:
    if config.progress is not None:
        print(text, file=config.progress, flush=True)


def _compiled(rules: list, engine: str = "numba"):
    start = time.perf_counter()
    db = compile_rules(rules, engine=engine)
    return db, time.perf_counter() - start


def _point(path: str, db, repeat: int) -> dict:
    """End-to-end figures of one sweep point: best of ``repeat`` full scans."""
    seconds, _, result = best_end_to_end(path, db, repeat=repeat)
    return {
        "seconds": round(seconds, 6),
        "gbps": round(result.bytes * 8 / seconds / 1e9, 4),
        "mpps": round(result.packets / seconds / 1e6, 4),
        "packets": result.packets,
        "captured_bytes": result.bytes,
        "alerts": result.alerts,
    }


def run_bench(config: BenchConfig) -> dict:
    """Measure, sweep and return the JSON-ready result (see the module docstring)."""
    started = time.perf_counter()
    ruleset = load_rules(config.rule_paths)
    rules = ruleset.rules
    with tempfile.TemporaryDirectory(dir=config.workdir, prefix="dpi-bench-") as tmp:
        work = Path(tmp)
        db, compile_s = _compiled(rules)

        tiny = write_input(work / "warmup.pcap", 120, 200, 10, config.seed)
        start = time.perf_counter()
        measure_stages(tiny["path"], db, repeat=1)  # every kernel once: JIT compile or cache load
        warmup_s = time.perf_counter() - start
        _say(config, f"dpi bench: JIT warm-up {warmup_s:.1f} s; rules compiled in {compile_s:.1f} s")

        main = write_input(work / "main.pcap", config.packets, config.payload_len, config.flows, config.seed)
        _say(config, f"dpi bench: {main['packets']} packets, {main['flows']} flows, measuring each stage")
        measured = measure_stages(main["path"], db, repeat=config.repeat)
        wirelen = measured.pop("wirelen")
        e2e = measured["end_to_end"]
        result = {
            "machine": machine_info(),
            "input": {**main, "mean_frame_bytes": round(float(wirelen.mean()), 1) if len(wirelen) else 0},
            "rules": {
                "files": [str(p) for p in config.rule_paths],
                "loaded": len(db.rules),
                "skipped": len(ruleset.skipped) + len(db.report.skipped),
                "patterns": db.n_patterns,
                "matcher": db.matcher.describe() if db.matcher is not None else None,
                "compile_s": round(compile_s, 3),
            },
            "jit_warmup_s": round(warmup_s, 3),
            "stages": measured["stages"],
            "end_to_end": e2e,
            "pipeline_clock_s": measured["pipeline_clock_s"],
            "alerts": measured["alerts"],
            "flows": measured["flows"],
            "line_rates": line_rates(wirelen, e2e["gbps"] or 0.0),
            "sweeps": {},
        }
        # every stage beside every line rate: the cores that stage alone would need
        for row in [*result["stages"].values(), e2e]:
            links = line_rates(wirelen, row["gbps"] or 0.0)
            row["cores_needed"] = {str(r["link_gbps"]): r["cores_needed"] for r in links}

        sweeps = result["sweeps"]
        if "rules" in config.sweeps:
            points = []
            seen = set()
            for count in config.rule_counts:
                subset = rules if count is None else rules[:count]
                if len(subset) in seen or not subset:
                    continue  # a count past the rule set repeats the whole set
                seen.add(len(subset))
                sub_db, sub_compile = _compiled(subset)
                _say(config, f"dpi bench: sweep rules={len(subset)}")
                points.append(
                    {
                        "rules": len(subset),
                        "asked": count,
                        "patterns": sub_db.n_patterns,
                        "compile_s": round(sub_compile, 3),
                        **_point(main["path"], sub_db, config.repeat),
                    }
                )
            sweeps["rules"] = points
        if "size" in config.sweeps:
            points = []
            for size in config.payload_sizes:
                cap = write_input(work / f"size-{size}.pcap", config.packets, size, config.flows, config.seed)
                _say(config, f"dpi bench: sweep payload={size} B")
                point = _point(cap["path"], db, config.repeat)
                point["mean_frame_bytes"] = round(point["captured_bytes"] / max(point["packets"], 1), 1)
                points.append({"payload_len": size, **point})
            sweeps["size"] = points
        if "flows" in config.sweeps:
            points = []
            for flows in config.flow_counts:
                cap = write_input(
                    work / f"flows-{flows}.pcap", config.packets, config.payload_len, flows, config.seed
                )
                if points and cap["flows"] == points[-1]["flows"]:
                    continue  # capped by the packet count: the same input again
                _say(config, f"dpi bench: sweep flows={cap['flows']}")
                points.append(
                    {"flows": cap["flows"], "asked": flows, **_point(cap["path"], db, config.repeat)}
                )
            sweeps["flows"] = points

    result["peak_rss_bytes"] = peak_rss_bytes()
    result["total_s"] = round(time.perf_counter() - started, 2)
    return result


def format_table(result: dict) -> str:
    """The human summary: stages, then the end-to-end figure beside each line rate, then sweeps."""
    m = result["machine"]
    inp = result["input"]
    lines = [
        f"dpi bench on {m['cpu_model']} ({m['usable_cores']} usable cores), one core measured",
        f"input: {inp['packets']} packets, {inp['flows']} flows, mean frame {inp['mean_frame_bytes']} B; "
        f"rules: {result['rules']['loaded']} loaded ({result['rules']['patterns']} patterns); "
        f"JIT warm-up {result['jit_warmup_s']:.1f} s (not in the figures)",
        "",
        "cores each stage alone would need to keep up with a full link (at this packet mix):",
        f"{'stage':<12}{'Gbps':>10}{'Mpps':>10}{'seconds':>10}"
        + "".join(f"{f'{link} GbE':>9}" for link in LINK_GBPS),
    ]
    for name in STAGES:
        row = result["end_to_end"] if name == "end_to_end" else result["stages"][name]
        gbps = "-" if row["gbps"] is None else f"{row['gbps']:.3f}"
        mpps = "-" if row["mpps"] is None else f"{row['mpps']:.3f}"
        secs = "-" if row["seconds"] is None else f"{row['seconds']:.3f}"
        cores = row.get("cores_needed") or {}
        need = "".join(f"{'-' if cores.get(str(k)) is None else cores[str(k)]:>9}" for k in LINK_GBPS)
        lines.append(f"{name:<12}{gbps:>10}{mpps:>10}{secs:>10}{need}")
    lines += [
        "",
        "end to end beside line rate (at this packet mix; preamble, FCS and inter-frame gap counted):",
        f"{'link':>8}{'line Mpps':>12}{'line Gbps*':>12}{'share':>9}{'cores':>7}",
    ]
    for row in result["line_rates"]:
        share = "-" if row.get("share_of_line") is None else f"{100 * row['share_of_line']:.1f}%"
        cores = "-" if row.get("cores_needed") is None else str(row["cores_needed"])
        lines.append(
            f"{row['link_gbps']:>5} GbE{row['line_mpps']:>12.3f}{row['line_gbps']:>12.3f}{share:>9}{cores:>7}"
        )
    lines.append("  * captured bytes per second a full link delivers; cores: of this one-core throughput")
    names = {"rules": "rules", "size": "payload_len", "flows": "flows"}
    for sweep, points in result["sweeps"].items():
        lines += [
            "",
            f"sweep {sweep}: " + ", ".join(f"{p[names[sweep]]}: {p['gbps']:.3f} Gbps" for p in points),
        ]
    lines.append(f"\npeak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB; total {result['total_s']:.0f} s")
    return "\n".join(lines)


def write_results(result: dict, out_dir: str | Path) -> list[Path]:
    """bench.json and the plots under out_dir; the paths written."""
    from dpi.bench.plots import write_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return [path, *write_plots(result, out)]


__all__ = ["BenchConfig", "LINK_GBPS", "format_table", "run_bench", "write_input", "write_results"]
