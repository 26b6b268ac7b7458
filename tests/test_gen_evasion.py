"""dpi gen, then dpi scan, then dpi eval: perfect scores where the scanner's overlap policy sees
the planted content, for each evasion alone and in combination, and exactly the visible share of
it where the policy does not."""

from __future__ import annotations

import io
import json

import pytest

from dpi.evaluation import evaluate, read_alerts
from dpi.gen.evasion import EVASIONS, parse_evasions
from dpi.gen.generator import GenConfig, generate, write_generated
from dpi.pipeline import scan
from dpi.settings import load_settings
from tests.conftest import REPO

SAMPLE_RULES = str(REPO / "rules" / "dpi-sample.rules")


def gen_scan_eval(
    tmp_path, evasions=(), target="bsd", scan_policy=None, flows=120, seed=11, rules=SAMPLE_RULES
):
    generated = generate(
        GenConfig(
            flows=flows, seed=seed, rules=[rules], evasions=parse_evasions(evasions), target_policy=target
        )
    )
    pcap, labels = tmp_path / "gen.pcap", tmp_path / "gen.labels"
    write_generated(generated, pcap, labels)
    policy = scan_policy or target
    settings = load_settings(None, [f"stream.policy={policy}", f"defrag.policy={_defrag(policy)}"])
    out = io.StringIO()
    scan([str(pcap)], [rules], out, settings=settings)
    eve = tmp_path / "eve.json"
    eve.write_text(out.getvalue())
    alerts, _ = read_alerts(eve)
    return generated, evaluate(generated.labels, alerts, policy).report


def _defrag(policy: str) -> str:
    from dpi.hostos import DEFRAG_POLICY_OF_HOST_OS

    return DEFRAG_POLICY_OF_HOST_OS[policy]


@pytest.mark.parametrize(
    "evasion", ["", *EVASIONS, "tcp-seg,tcp-ooo,tcp-dup", "tcp-ooo,ip-frag-ooo", "ip6-frag,tcp-seg"]
)
def test_every_evasion_is_scored_perfectly_where_the_policy_sees_it(tmp_path, evasion):
    generated, report = gen_scan_eval(tmp_path, evasion)
    capture = generated.labels.capture
    assert capture["planted_not_confirmed"] == 0
    evaded = [f for f in generated.labels.flows if f["evasions"]]
    if evasion:
        assert evaded, "the planted flows carry the evasion"
        assert all(e["seen_by"]["stream"] and e["seen_by"]["defrag"] for f in evaded for e in f["expect"])
    assert report["expected"] > 0
    assert report["precision"] == 1.0 and report["recall"] == 1.0 and report["f1"] == 1.0, (
        report["missed"][:3],
        report["spurious"][:3],
    )
    groups = report["per_evasion"]
    for name, group in groups.items():
        assert group["visible_to_ids_policy"] == group["expected"], name


@pytest.mark.parametrize(
    ("evasion", "target", "scanner"),
    [
        ("tcp-overlap", "bsd", "last"),
        ("tcp-overlap", "last", "bsd"),
        ("ip-frag-overlap", "bsd", "linux"),
        ("ip-frag-overlap", "linux", "first"),
        ("tcp-overlap,ip-frag-overlap", "windows", "last"),
    ],
)
def test_overlaps_hide_content_from_a_scanner_with_another_policy(tmp_path, evasion, target, scanner):
    generated, report = gen_scan_eval(tmp_path, evasion, target=target, scan_policy=scanner, flows=150)
    name = "+".join(parse_evasions(evasion))
    group = report["per_evasion"][name]
    # the evasion works: the scanner misses content the target host receives ...
    assert group["fn"] > 0 and group["visible_to_ids_policy"] < group["expected"]
    # ... and the label says exactly which: what the scanner's policy can see, it finds, and nothing more
    assert group["tp"] == group["visible_to_ids_policy"]
    assert report["precision"] == 1.0
    assert report["per_evasion"]["none"]["recall"] == 1.0
    # the label names the policies that keep the real bytes; the target is one of them
    from dpi.hostos import STREAM_POLICY_OF_HOST_OS

    for flow in generated.labels.flows:
        for e in flow["expect"]:
            if "tcp-overlap" in flow["evasions"]:
                assert STREAM_POLICY_OF_HOST_OS[target] in e["keeps_real"]["stream"]
                assert scanner not in e["keeps_real"]["stream"]


def test_eval_json_has_the_overall_figures_at_top_level(tmp_path):
    _, report = gen_scan_eval(tmp_path, "tcp-seg", flows=60)
    text = json.dumps(report)
    again = json.loads(text)
    for key in ("precision", "recall", "f1"):
        assert again[key] == 1.0
    assert set(again["per_evasion"]) >= {"tcp-seg"}
    assert again["inspectable"]["payload_bytes"] >= again["inspectable"]["plaintext_bytes"] > 0


@pytest.mark.slow
def test_et_open_rules_are_planted_and_scored(tmp_path, shared_data):
    """Emerging Threats Open: contents-only rules planted into a mixed capture; every alert of the
    3,000-odd loadable rules is accounted for by the ground truth."""
    rules = str(shared_data / "rules" / "et-open.rules")
    generated, report = gen_scan_eval(tmp_path, "tcp-seg,ip-frag", flows=400, seed=5, rules=rules)
    assert generated.labels.capture["plantable_rules"] > 500
    assert len(report["per_sid"]) > 20
    assert report["precision"] == 1.0 and report["recall"] == 1.0, (
        report["missed"][:3],
        report["spurious"][:3],
    )
