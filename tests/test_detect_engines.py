"""The three matcher engines (numba, pyahocorasick, hyperscan) give the same alerts with every
loadable ET Open rule on the shared captures: the matcher is swapped, nothing else is."""

from __future__ import annotations

import importlib.util
import io
import json

import pytest

from dpi.pipeline import scan
from tests.conftest import SHARED_DATA

pytestmark = [pytest.mark.needs_shared, pytest.mark.slow]

ET_OPEN = SHARED_DATA / "rules" / "et-open.rules"
ENGINES = ["numba", "pyahocorasick", "hyperscan"]
MODULES = {"pyahocorasick": "ahocorasick", "hyperscan": "hyperscan"}  # what each engine imports


def _captures():
    root = SHARED_DATA / "pcaps"
    return sorted(str(p) for p in root.rglob("*") if p.suffix in (".pcap", ".pcapng"))


@pytest.fixture(scope="module")
def alerts_by_engine():
    if not ET_OPEN.is_file():
        pytest.skip(f"ET Open ruleset not found at {ET_OPEN} (needs ../shared/data beside the repo)")
    captures = _captures()
    out = {}
    for engine in ENGINES:
        if engine != "numba" and importlib.util.find_spec(MODULES[engine]) is None:
            continue
        eve = io.StringIO()
        result = scan(captures, [str(ET_OPEN)], eve, engine=engine, flow_events=False)
        events = [json.loads(line) for line in eve.getvalue().splitlines()]
        out[engine] = (
            result,
            [
                (e["pcap_cnt"], e["timestamp"], e["src_ip"], e["dest_ip"], e["alert"]["signature_id"])
                for e in events
                if e["event_type"] == "alert"
            ],
        )
    return out


def test_numba_finds_alerts_on_the_shared_captures(alerts_by_engine):
    result, alerts = alerts_by_engine["numba"]
    assert result.rules["rules_loaded"] > 1000
    assert len(alerts) > 10
    print(f"\n{len(alerts)} alerts from {len({a[-1] for a in alerts})} rules; detect stats {result.detect}")


@pytest.mark.parametrize("engine", ENGINES[1:])
def test_engines_agree(alerts_by_engine, engine):
    if engine not in alerts_by_engine:
        pytest.skip(f"{engine} is not installed (pip install '.[engines]')")
    assert alerts_by_engine[engine][1] == alerts_by_engine["numba"][1]
