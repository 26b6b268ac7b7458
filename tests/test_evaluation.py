"""dpi eval's scoring on hand-written labels and EVE lines (ours and Suricata's shapes), and the
gen -> scan -> eval command line."""

from __future__ import annotations

import json

import pytest

from dpi.cli import main
from dpi.evaluation import EveError, evaluate, read_alerts
from dpi.gen.labels import Labels
from tests.conftest import REPO


def _flow(i, src, sport, dst, dport, expect=(), evasions=(), undecided=(), proto="TCP", app="http"):
    return {
        "flow": i, "proto": proto, "src_ip": src, "src_port": sport, "dest_ip": dst, "dest_port": dport,
        "app": app, "payload_bytes": 100, "plaintext_bytes": 0 if app == "tls" else 100,
        "evasions": list(evasions), "undecided": list(undecided),
        "expect": [{"sid": s, "gid": 1, "msg": f"rule {s}", "origin": "planted"} for s in expect],
    }  # fmt: skip


def _alert(sid, src, sport, dst, dport, proto="TCP"):
    alert = {"gid": 1, "signature_id": sid, "signature": f"rule {sid}"}
    return {"event_type": "alert", "proto": proto, "src_ip": src, "src_port": sport, "dest_ip": dst,
            "dest_port": dport, "alert": alert}  # fmt: skip


LABELS = Labels(
    {"seed": 1, "target_policy": {"host_os": "bsd", "stream": "bsd", "defrag": "bsd"}},
    [
        _flow(0, "10.0.0.1", 1000, "198.51.100.1", 80, expect=[1, 2]),
        _flow(1, "10.0.0.2", 1001, "198.51.100.1", 80, expect=[1], evasions=["tcp-seg"]),
        _flow(2, "2001:db8:c::1", 1002, "2001:db8:5::1", 443, app="tls", undecided=[9]),
        _flow(3, "10.0.0.4", 1003, "198.51.100.9", 53, expect=[3], proto="UDP", app="dns-udp"),
    ],
)


def test_scores_per_flow_and_rule():
    alerts = [
        _alert(1, "10.0.0.1", 1000, "198.51.100.1", 80),
        _alert(1, "10.0.0.1", 1000, "198.51.100.1", 80),  # a repeat counts once
        _alert(2, "198.51.100.1", 80, "10.0.0.1", 1000),  # the other direction: same flow
        # Suricata writes IPv6 addresses in full; the flow is still found
        _alert(
            7, "2001:0db8:0005:0000:0000:0000:0000:0001", 443, "2001:0db8:000c:0000:0000:0000:0000:0001", 1002
        ),
        _alert(9, "2001:db8:c::1", 1002, "2001:db8:5::1", 443),  # undecided: not scored
        _alert(3, "10.0.0.4", 1003, "198.51.100.9", 53, proto="TCP"),  # wrong protocol: another flow
    ]
    report = evaluate(LABELS, alerts).report
    assert report["counts"] == {"tp": 2, "fp": 2, "fn": 2}
    assert report["precision"] == 0.5 and report["recall"] == 0.5 and report["f1"] == 0.5
    assert report["alerted_undecided_pairs"] == 1
    assert report["alerts_on_unlabelled_flows"] == 1
    assert report["per_sid"]["1"]["recall"] == 0.5 and report["per_sid"]["2"]["precision"] == 1.0
    assert report["per_sid"]["7"]["precision"] == 0.0 and report["per_sid"]["7"]["recall"] is None
    assert report["per_evasion"]["tcp-seg"]["fn"] == 1
    assert report["per_evasion"]["unlabelled-flow"]["fp"] == 1
    assert {(m["flow"], m["sid"]) for m in report["missed"]} == {(1, 1), (3, 3)}
    assert report["inspectable"]["payload_bytes"] == 400 and report["inspectable"]["plaintext_bytes"] == 300
    assert report["inspectable"]["plaintext_share"] == 0.75


def test_no_alerts_and_no_expectations_have_no_ratios():
    report = evaluate(Labels({"seed": 1}, [_flow(0, "10.0.0.1", 1, "10.0.0.2", 2)]), []).report
    assert report["precision"] is None and report["recall"] is None and report["f1"] is None


def test_bad_eve_names_the_line(tmp_path):
    eve = tmp_path / "eve.json"
    eve.write_text(json.dumps(_alert(1, "a", 1, "b", 2)) + "\n{oops\n")
    with pytest.raises(EveError, match=r"eve.json:2: not JSON"):
        read_alerts(eve)


def test_gen_scan_eval_on_the_command_line(tmp_path, capsys):
    rules = str(REPO / "rules" / "dpi-sample.rules")
    pcap, labels, eve = tmp_path / "g.pcap", tmp_path / "g.labels", tmp_path / "eve.json"
    assert main(["gen", "--out", str(pcap), "--labels", str(labels), "--rules", rules, "--flows", "80",
                 "--seed", "4", "--evasion", "tcp-seg,ip-frag", "--tls-share", "0.4"]) == 0  # fmt: skip
    assert main(["scan", str(pcap), "--rules", rules, "--eve", str(eve)]) == 0
    capsys.readouterr()
    assert main(["eval", "--labels", str(labels), "--eve", str(eve), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == 1.0 and report["recall"] == 1.0 and report["f1"] == 1.0
    assert "tcp-seg+ip-frag" in report["per_evasion"]
    assert 0 < report["inspectable"]["plaintext_share"] < 1
    assert main(["eval", "--labels", str(labels), "--eve", str(eve)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("overall: precision 1.000  recall 1.000  F1 1.000")
    assert "inspectable:" in text and "per sid" in text
    # errors: a missing file, an unknown evasion
    assert main(["eval", "--labels", str(tmp_path / "none"), "--eve", str(eve)]) == 2
    assert (
        main(["gen", "--out", str(pcap), "--labels", str(labels), "--rules", rules, "--evasion", "tcp-x"])
        == 2
    )
    assert "unknown evasion" in capsys.readouterr().err
