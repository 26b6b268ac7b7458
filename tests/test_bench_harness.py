"""`dpi bench`: line-rate arithmetic, the stage and end-to-end measurements, sweeps, JSON and plots."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from dpi.bench.linerate import line_rates, wire_bytes
from dpi.bench.run import write_input
from dpi.bench.stages import STAGES, measure_stages
from dpi.cli import main
from dpi.detect.compile import compile_rules
from dpi.pipeline import scan
from dpi.rules import parse_rules

REPO = Path(__file__).resolve().parents[1]
RULES = """\
alert tcp any any -> any 80 (msg:"GET request"; flow:to_server,established; content:"GET /"; sid:1;)
alert tcp any any -> any 80 (msg:"Chrome agent"; content:"Chrome/120"; sid:2;)
alert udp any any -> any any (msg:"never"; content:"no such bytes anywhere"; sid:3;)
"""


def test_line_rates_match_the_textbook_figures():
    # 64-byte frames (60 captured + FCS) at 10 GbE: 14.88 Mpps; 1518-byte frames: 812,744 pps.
    small, large = line_rates(np.array([60]), 1.0), line_rates(np.array([1514]), 1.0)
    ten = {r["link_gbps"]: r for r in small}[10]
    assert ten["line_mpps"] == pytest.approx(14.8810, abs=1e-3)
    assert {r["link_gbps"]: r for r in large}[10]["line_mpps"] == pytest.approx(0.812744, abs=1e-5)
    # a full 10 GbE link of minimum frames carries 60/84 of 10 Gbps in captured bytes
    assert ten["line_gbps"] == pytest.approx(10 * 60 / 84, abs=1e-3)
    assert ten["cores_needed"] == 8 and ten["share_of_line"] == pytest.approx(1 / (10 * 60 / 84), abs=1e-3)
    assert [r["link_gbps"] for r in small] == [1, 10, 25, 40, 100]
    # runts are padded to the minimum frame, the FCS is added unless captured
    assert wire_bytes(np.array([10, 60, 1514])).tolist() == [84, 84, 1538]
    assert wire_bytes(np.array([1518]), fcs_captured=True).tolist() == [1538]


def test_stages_see_every_packet_and_alert_as_scan_does(tmp_path):
    info = write_input(tmp_path / "in.pcap", packets=1200, payload_len=300, flows=40, seed=3)
    assert info["packets"] == 40 * (4 + 2 * info["segments_per_flow"])
    ruleset = parse_rules(RULES)
    db = compile_rules(ruleset.rules)
    measured = measure_stages(info["path"], db, repeat=1)
    assert measured["packets"] == info["packets"]
    assert measured["captured_bytes"] == info["captured_bytes"]
    assert measured["stream_bytes"] == 40 * info["segments_per_flow"] * 300  # every byte reassembled
    assert set(measured["stages"]) | {"end_to_end"} == set(STAGES)
    for name, row in [*measured["stages"].items(), ("end_to_end", measured["end_to_end"])]:
        assert row["gbps"] is None or row["gbps"] > 0, name
        assert row["seconds"] is None or row["seconds"] >= 0, name
    assert measured["end_to_end"]["gbps"] > 0
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    with open(tmp_path / "eve.json", "w") as eve:
        reference = scan([info["path"]], [str(rules)], eve)
    assert reference.alerts > 0 and measured["alerts"] == reference.alerts
    assert measured["flows"] == reference.flows == 40


def test_dpi_bench_json_sweeps_and_plots(tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            ["bench", "--json", "--packets", "600", "--flows", "20", "--repeat", "1",
             "--rules", str(rules), "--out", str(tmp_path / "results")]
        )  # fmt: skip
    assert code == 0
    result = json.loads(out.getvalue())
    for name in STAGES[:-1]:
        assert {"gbps", "mpps", "seconds", "cores_needed"} <= set(result["stages"][name])
    cores = result["end_to_end"]["cores_needed"]
    assert list(cores) == ["1", "10", "25", "40", "100"] and cores["100"] >= cores["10"] >= cores["1"] >= 1
    assert cores["10"] == {r["link_gbps"]: r for r in result["line_rates"]}[10]["cores_needed"]
    assert result["end_to_end"]["gbps"] > 0 and result["end_to_end"]["mpps"] > 0
    assert result["jit_warmup_s"] >= 0 and result["peak_rss_bytes"] > 0
    assert result["machine"]["cpu_model"] and result["machine"]["cores"] >= 1
    assert [row["link_gbps"] for row in result["line_rates"]] == [1, 10, 25, 40, 100]
    assert [p["rules"] for p in result["sweeps"]["rules"]] == [3]  # 10, 100, ... past 3 rules: the whole set
    assert [p["payload_len"] for p in result["sweeps"]["size"]] == [64, 256, 512, 1024, 1460]
    assert [p["flows"] for p in result["sweeps"]["flows"]] == [10, 100]  # 600 packets hold at most 100 flows
    sizes = result["sweeps"]["size"]
    assert sizes[0]["mean_frame_bytes"] < sizes[-1]["mean_frame_bytes"]
    written = json.loads((tmp_path / "results" / "bench.json").read_text())
    assert written["end_to_end"] == result["end_to_end"]
    for name in ("stages", "sweep_rules", "sweep_size", "sweep_flows"):
        assert (tmp_path / "results" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dpi_bench_table_and_bad_arguments(tmp_path, capsys):
    rules = tmp_path / "r.rules"
    rules.write_text(RULES)
    assert main(["bench", "--packets", "300", "--repeat", "1", "--sweep", "none", "--rules", str(rules)]) == 0
    table = capsys.readouterr().out
    assert "end_to_end" in table and "10 GbE" in table and "cores each stage alone" in table
    assert main(["bench", "--sweep", "colour", "--rules", str(rules)]) == 2
    assert "unknown sweep 'colour'" in capsys.readouterr().err
    assert main(["bench", "--rules", str(tmp_path / "missing.rules")]) == 2
    assert "missing.rules: no such file" in capsys.readouterr().err
