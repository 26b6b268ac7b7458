"""The command line: every command runs, reports what it skipped, and sets its exit status."""

from __future__ import annotations

import json
import subprocess
import sys

from dpi.cli import main
from tests.conftest import REPO

SAMPLE = REPO / "pcaps" / "wikipedia.pcap"
RULES = (
    'alert tcp any any -> any 80 (msg:"x"; content:"GET"; http.uri; sid:1;)\n'
    'alert tcp any any -> any 80 (msg:"bad"; content:"GET"; depth:2; sid:2;)\n'
    'alert http any any -> any any (msg:"h"; sid:3;)\n'
    'alert tcp any any -> any 80 (msg:"ok"; content:"GET"; sid:4;)\n'
)


def test_rules_check_reports_skips_and_errors(tmp_path, capsys):
    rules = tmp_path / "t.rules"
    rules.write_text(RULES)
    # a syntax error makes the exit status 1
    assert main(["rules", "check", str(rules), "--list"]) == 1
    out = capsys.readouterr().out
    assert "1 rules loaded, 2 skipped, 1 errors" in out
    assert "app-layer keyword" in out and "unsupported protocol 'http'" in out
    assert "http.uri" in out.split("skipped by keyword:")[1]  # the keyword behind the reason
    assert f"{rules}:2:62: depth 2 is smaller than the content length 3" in out
    assert f"{rules}:1: sid 1: skipped: app-layer keyword" in out
    assert main(["rules", "check", str(rules), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["loaded"], doc["skipped"], doc["errors"]) == (1, 2, 1)
    assert doc["skipped_by_keyword"] == {"http.uri": 1, "protocol http": 1}
    assert doc["rule_errors"][0]["line"] == 2 and doc["rule_errors"][0]["column"] == 62
    # without the broken rule: exit status 0
    rules.write_text("".join(line + "\n" for line in RULES.splitlines() if "sid:2;" not in line))
    assert main(["rules", "check", str(rules)]) == 0


def test_rules_check_reads_vars_from_a_config_file(tmp_path, capsys):
    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp $LAB any -> any $WEB (msg:"x"; content:"GET"; sid:1;)\n')
    config = tmp_path / "vars.yaml"
    config.write_text(
        "vars:\n  address-groups:\n    LAB: 10.9.0.0/16\n  port-groups:\n    WEB: '[80,8080]'\n"
    )
    assert main(["rules", "check", str(rules)]) == 1  # $LAB is undefined
    capsys.readouterr()
    assert main(["rules", "check", str(rules), "--config", str(config)]) == 0
    assert "1 rules loaded" in capsys.readouterr().out
    assert main(["rules", "check", str(rules), "--config", str(config), "--var", "LAB=[10.0.0.1,]"]) == 1


def test_scan_reports_skipped_rules_and_errors(tmp_path, capsys):
    rules = tmp_path / "t.rules"
    rules.write_text(RULES)
    eve = tmp_path / "eve.json"
    assert main(["scan", str(SAMPLE), "--rules", str(rules), "--eve", str(eve)]) == 0
    captured = capsys.readouterr()
    assert "rules: 1 loaded, 2 skipped, 1 failed" in captured.out
    assert "app-layer keyword (1)" in captured.err
    assert "rule error:" in captured.err and ":2:" in captured.err
    stats = json.loads(eve.read_text().splitlines()[-1])["stats"]["detect"]
    assert stats["skip_reasons"] == {"app-layer keyword": 1, "unsupported protocol 'http'": 1}
    assert len(stats["rule_errors"]) == 1


def test_scan_eve_to_stdout(tmp_path, capsys):
    rules = tmp_path / "t.rules"
    rules.write_text('alert udp any any -> any 5353 (msg:"mdns"; sid:7;)\n')
    assert main(["scan", str(SAMPLE), "--rules", str(rules), "--eve", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event_type"] for e in events].count("alert") == 4
    assert events[-1]["event_type"] == "stats"


def test_damaged_capture_exit_status_and_packets_before_damage(tmp_path, capsys):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(SAMPLE.read_bytes()[:9000])
    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp any any -> any 80 (msg:"get"; content:"GET "; depth:4; sid:1;)\n')
    eve = tmp_path / "eve.json"
    assert main(["scan", str(cut), "--rules", str(rules), "--eve", str(eve)]) == 1
    err = capsys.readouterr().err
    assert str(cut) in err and "byte offset" in err
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    assert any(e["event_type"] == "alert" for e in events)  # packets before the damage were scanned
    stats = events[-1]["stats"]
    assert stats["capture"]["errors"] and stats["capture"]["packets"] > 0


def test_python_dash_m_and_console_entry(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dpi", "info", str(SAMPLE), "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    assert json.loads(proc.stdout)["packets"] == 136


def test_scan_honours_reassembly_depth(tmp_path, capsys):
    from tests.conftest import tcp_session, write_pcap

    payload = b"A" * 300 + b"NEEDLE" + b"B" * 50
    pcap = write_pcap(
        tmp_path / "a.pcap", tcp_session([payload[i : i + 50] for i in range(0, len(payload), 50)])
    )
    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp any any -> any 80 (msg:"needle"; content:"NEEDLE"; sid:1;)\n')
    eve = tmp_path / "eve.json"

    def alerts(*extra):
        assert main(["scan", str(pcap), "--rules", str(rules), "--eve", str(eve), *extra]) == 0
        return sum(1 for line in eve.read_text().splitlines() if '"event_type":"alert"' in line)

    # the needle is carried whole by one packet: packet inspection finds it past the depth
    # too, as Suricata's does; the stream is cut at the depth
    assert alerts() == 1
    assert alerts("--set", "stream.reassembly.depth=200") == 1
    stats = json.loads(eve.read_text().splitlines()[-1])["stats"]["tcp"]
    assert stats["reassembly_depth_reached"] == 1
    assert main(["scan", str(pcap), "--rules", str(rules), "--eve", str(eve), "--set", "nope=1"]) == 2
    capsys.readouterr()


def test_past_the_depth_only_single_packets_are_inspected(tmp_path):
    from tests.conftest import tcp_session
    from tests.scanning import alerts_of, run_scan

    payload = b"A" * 297 + b"NEEDLE" + b"B" * 47  # the needle straddles two 50-byte segments
    pkts = tcp_session([payload[i : i + 50] for i in range(0, len(payload), 50)])
    rule = 'alert tcp any any -> any 80 (msg:"needle"; content:"NEEDLE"; sid:1;)\n'
    from dpi.stream import StreamConfig

    _, events = run_scan(tmp_path, pkts, rule)
    assert len(alerts_of(events)) == 1
    _, events = run_scan(tmp_path, pkts, rule, stream_config=StreamConfig(depth=200))
    assert alerts_of(events) == []


def _needle_capture(tmp_path):
    from tests.conftest import tcp_session, write_pcap

    payload = b"A" * 297 + b"NEEDLE" + b"B" * 47  # the needle straddles two 50-byte segments
    pcap = write_pcap(
        tmp_path / "a.pcap", tcp_session([payload[i : i + 50] for i in range(0, len(payload), 50)])
    )
    return pcap


def _scan_alerts(tmp_path, rule: str, *extra) -> int:
    rules = tmp_path / "t.rules"
    rules.write_text(rule)
    eve = tmp_path / "eve.json"
    pcap = _needle_capture(tmp_path)
    assert main(["scan", str(pcap), "--rules", str(rules), "--eve", str(eve), *extra]) == 0
    return sum(1 for line in eve.read_text().splitlines() if '"event_type":"alert"' in line)


NEEDLE_RULE = 'alert tcp any any -> any 80 (msg:"needle"; content:"NEEDLE"; sid:1;)\n'


def test_scan_config_file_and_set_reach_the_run(tmp_path, capsys):
    config = tmp_path / "suricata.yaml"
    config.write_text(
        "%YAML 1.1\n---\noutputs:\n  - eve-log:\n      enabled: yes\n"
        "stream:\n  memcap: 64mb\n  reassembly:\n    memcap: 256mb\n    depth: 200\n"
    )
    assert _scan_alerts(tmp_path, NEEDLE_RULE) == 1
    # the stream stops at 200 bytes, and no single packet holds the whole needle
    assert _scan_alerts(tmp_path, NEEDLE_RULE, "--config", str(config)) == 0
    # the command line wins over the file
    assert (
        _scan_alerts(tmp_path, NEEDLE_RULE, "--config", str(config), "--set", "stream.reassembly.depth=1mb")
        == 1
    )
    assert _scan_alerts(tmp_path, NEEDLE_RULE, "--set", "stream.reassembly.depth=0.1kb") == 0
    capsys.readouterr()


def test_scan_reads_vars_from_the_config_and_var_wins(tmp_path, capsys):
    rule = 'alert tcp $HOME_NET any -> any $HTTP_PORTS (msg:"needle"; content:"NEEDLE"; sid:1;)\n'
    config = tmp_path / "suricata.yaml"
    config.write_text(
        '%YAML 1.1\n---\nvars:\n  address-groups:\n    HOME_NET: "[192.168.0.0/16]"\n'
        "  port-groups:\n    HTTP_PORTS: 80\n"
    )
    assert _scan_alerts(tmp_path, rule) == 1  # Suricata's default HOME_NET holds 10.0.0.1
    assert _scan_alerts(tmp_path, rule, "--config", str(config)) == 0
    assert _scan_alerts(tmp_path, rule, "--config", str(config), "--var", "HOME_NET=[10.0.0.0/8]") == 1
    capsys.readouterr()


def test_bad_config_or_key_exits_2_naming_the_problem(tmp_path, capsys):
    pcap = _needle_capture(tmp_path)
    rules = tmp_path / "t.rules"
    rules.write_text(NEEDLE_RULE)
    eve = tmp_path / "eve.json"
    scan = ["scan", str(pcap), "--rules", str(rules), "--eve", str(eve)]

    broken = tmp_path / "broken.yaml"
    broken.write_text("stream:\n  reassembly: {depth: 1mb\n")
    assert main([*scan, "--config", str(broken)]) == 2
    assert f"dpi scan: {broken}:3:1: YAML syntax error" in capsys.readouterr().err

    bad_value = tmp_path / "bad.yaml"
    bad_value.write_text("defrag:\n  policy: vista\n")
    assert main([*scan, "--config", str(bad_value)]) == 2
    assert f"{bad_value}:2: defrag.policy: bad value 'vista'" in capsys.readouterr().err

    assert main([*scan, "--set", "stream.reasembly.depth=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown setting 'stream.reasembly.depth'" in err and "stream.reassembly.depth" in err

    assert main([*scan, "--set", "host-os-policy.plan9=10.0.0.1"]) == 2
    assert "unknown policy 'plan9'" in capsys.readouterr().err

    assert main([*scan, "--config", str(tmp_path / "absent.yaml")]) == 2
    assert "absent.yaml: cannot read" in capsys.readouterr().err

    for command in (["flows", str(pcap)], ["streams", str(pcap), "--out", str(tmp_path / "s")]):
        assert main([*command, "--set", "flow.memcap=lots"]) == 2
        assert "flow.memcap: bad value 'lots'" in capsys.readouterr().err


def test_help_lists_the_supported_keys(capsys):
    import pytest

    for command in ("scan", "flows", "streams"):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        for key in (
            "--config",
            "stream.reassembly.depth",
            "defrag.max-frags",
            "flow-timeouts.",
            "host-os-policy.",
            "windows2k3",
        ):
            assert key in out, (command, key)


def test_flows_and_streams_take_a_config(tmp_path, capsys):
    pcap = _needle_capture(tmp_path)
    config = tmp_path / "suricata.yaml"
    config.write_text("stream:\n  reassembly:\n    depth: 100\nflow:\n  memcap: 64mb\n")
    eve = tmp_path / "flows.json"
    assert main(["flows", str(pcap), "--eve", str(eve), "--config", str(config)]) == 0
    assert sum('"event_type":"flow"' in line for line in eve.read_text().splitlines()) == 1
    out = tmp_path / "streams"
    assert main(["streams", str(pcap), "--out", str(out), "--config", str(config)]) == 0
    assert (out / "010.000.000.001.40000-010.000.000.002.00080").stat().st_size == 100
    capsys.readouterr()
