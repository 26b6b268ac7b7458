"""The detector matches and verifies a batch's chunks in passes of bounded size: cutting a batch
into many passes must not change a single alert."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from dpi.detect.engine import Detector, pass_bounds
from dpi.pipeline import scan

REPO = Path(__file__).resolve().parents[1]


def test_pass_bounds_cut_runs_within_the_budget():
    lengths = np.array([5, 5, 5, 20, 1, 1, 1])
    assert pass_bounds(lengths, 10).tolist() == [0, 2, 3, 4, 7]  # the 20-byte chunk alone
    assert pass_bounds(lengths, 1000).tolist() == [0, 7]
    assert pass_bounds(np.zeros(0, np.int64), 10).tolist() == [0, 0]
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 50, 500)
    bounds = pass_bounds(lengths, 60)
    assert bounds[0] == 0 and bounds[-1] == 500 and np.all(np.diff(bounds) >= 1)
    sums = np.add.reduceat(lengths, bounds[:-1])
    assert np.all((sums <= 60) | (np.diff(bounds) == 1))


def alerts(capture, rules, monkeypatch, budget) -> list[str]:
    monkeypatch.setattr(Detector, "chunk_bytes_per_pass", budget)
    out = io.StringIO()
    scan([str(capture)], [str(rules)], out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return sorted(json.dumps(e, sort_keys=True) for e in events if e["event_type"] == "alert")


def test_many_small_passes_give_the_same_alerts(monkeypatch):
    capture, rules = REPO / "pcaps" / "wikipedia.pcap", REPO / "rules" / "dpi-sample.rules"
    whole = alerts(capture, rules, monkeypatch, 8 << 20)
    assert len(whole) == 68
    assert alerts(capture, rules, monkeypatch, 700) == whole  # about one segment a pass


@pytest.mark.needs_shared
def test_many_small_passes_give_the_same_et_open_alerts(monkeypatch, shared_data):
    rules = shared_data / "rules" / "et-open.rules"
    captures = [shared_data / "pcaps" / name for name in ("ndpi/gnutella.pcap", "zeek/irc-basic.pcap")]
    total = 0
    for capture in captures:
        if not capture.exists():
            pytest.skip(f"shared capture not found at {capture}")
        whole = alerts(capture, rules, monkeypatch, 8 << 20)
        assert alerts(capture, rules, monkeypatch, 3000) == whole
        total += len(whole)
    assert total > 0
