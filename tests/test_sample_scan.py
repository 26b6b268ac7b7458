"""`dpi scan` on the bundled sample: every alert checked against tshark display filters.

tshark is an independent oracle here: for each sample rule a display filter selects the
packets the rule must alert on, and the EVE alerts must name exactly those packets."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest

from dpi.cli import main
from dpi.pipeline import scan
from tests.conftest import REPO

SAMPLE = REPO / "pcaps" / "wikipedia.pcap"
RULES = REPO / "rules" / "dpi-sample.rules"

# sid -> a tshark display filter selecting the packets the rule describes
ORACLE = {
    9000001: 'tcp.dstport == 80 && tcp.payload[0:4] == "GET "',
    9000002: 'tcp.dstport == 80 && http.user_agent contains "Firefox/3.6"',
    9000003: 'tcp.dstport == 80 && lower(http.request.uri) matches "^/wikipedia/commons/.{0,36}logo"',
    9000004: 'tcp.srcport == 80 && tcp.payload[0:7] == "HTTP/1." && tcp.payload[8:17] == " 304 Not Modified"',
    9000005: 'udp.dstport == 53 && lower(dns.qry.name) == "upload.wikimedia.org"',
    9000006: "udp.dstport == 5353",
    9000007: 'tcp.dstport == 80 && tcp.payload[0:4] == "GET " && !http.referer',
    9000008: "udp && ipv6.src == fe80::/10",
}


# rules with flow:established: with stream.midstream off (Suricata's default) a session
# counts as established only after a handshake the capture holds
ESTABLISHED = {9000001, 9000002, 9000004}
# IP-only rules (addresses and protocol, any ports, no payload or flow keywords): Suricata
# checks them on the first packet of each flow direction only
IP_ONLY = {9000008}


@pytest.fixture(scope="module")
def sample_alerts():
    out = io.StringIO()
    result = scan([str(SAMPLE)], [str(RULES)], out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return result, events


def _tshark_rows(display_filter: str, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(SAMPLE), "-Y", display_filter, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _tshark_frames(display_filter: str, handshake_only: bool = False) -> list[int]:
    rows = _tshark_rows(display_filter, "frame.number", "tcp.stream")
    if handshake_only:
        syn = {r[0] for r in _tshark_rows("tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.stream")}
        synack = {r[0] for r in _tshark_rows("tcp.flags.syn == 1 && tcp.flags.ack == 1", "tcp.stream")}
        rows = [r for r in rows if r[1] in syn & synack]
    return [int(r[0]) for r in rows]


def _first_per_direction(display_filter: str) -> list[int]:
    """The first frame of each UDP conversation in each direction (source address and port)."""
    first: dict[tuple[str, ...], int] = {}
    for frame, stream, src, sport in _tshark_rows(
        display_filter, "frame.number", "udp.stream", "ipv6.src", "udp.srcport"
    ):
        first.setdefault((stream, src, sport), int(frame))
    return sorted(first.values())


@pytest.mark.parametrize("sid", sorted(ORACLE))
def test_alerts_match_tshark(sample_alerts, sid):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent oracle for this test")
    _, events = sample_alerts
    ours = sorted(
        e["pcap_cnt"] for e in events if e["event_type"] == "alert" and e["alert"]["signature_id"] == sid
    )
    expected = _tshark_frames(ORACLE[sid], handshake_only=sid in ESTABLISHED)
    if sid in IP_ONLY:
        expected = _first_per_direction(ORACLE[sid])
    assert expected, "the oracle filter selects nothing: the test would prove nothing"
    assert ours == expected


def test_midstream_sessions_alert_when_midstream_is_on():
    """The sample holds sessions whose handshake was not captured: with stream.midstream
    on they count as established, as Suricata's midstream mode has it."""
    from dpi.settings import load_settings

    out = io.StringIO()
    scan([str(SAMPLE)], [str(RULES)], out, settings=load_settings(None, ["stream.midstream=true"]))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    ours = sorted(
        e["pcap_cnt"] for e in events if e["event_type"] == "alert" and e["alert"]["signature_id"] == 9000001
    )
    assert ours == _tshark_frames(ORACLE[9000001])
    assert len(ours) > len(_tshark_frames(ORACLE[9000001], handshake_only=True))


def test_every_rule_loads_and_alerts(sample_alerts):
    result, events = sample_alerts
    assert result.rules["rules_loaded"] == len(ORACLE)
    assert result.rules["rules_skipped"] == 0
    sids = {e["alert"]["signature_id"] for e in events if e["event_type"] == "alert"}
    assert sids == set(ORACLE)


def test_eve_shape_is_suricatas(sample_alerts):
    _, events = sample_alerts
    alert = next(e for e in events if e["event_type"] == "alert" and e["proto"] == "TCP")
    for key in ("timestamp", "flow_id", "event_type", "src_ip", "src_port", "dest_ip", "dest_port", "proto"):
        assert key in alert
    assert set(alert["alert"]) >= {
        "action",
        "gid",
        "signature_id",
        "rev",
        "signature",
        "category",
        "severity",
    }
    assert alert["timestamp"].startswith("2011-03-18T") and alert["timestamp"].endswith("+0000")
    assert len(alert["timestamp"]) == len("2011-03-04T10:00:00.123456+0000")
    assert "payload" not in alert and "packet" not in alert  # data minimisation by default
    stats = events[-1]
    assert stats["event_type"] == "stats"
    assert stats["stats"]["capture"]["packets"] == 136
    assert stats["stats"]["decoder"]["status"] == {"ok": 126, "not_ip": 10}


def test_alert_endpoints_follow_the_packet(sample_alerts):
    _, events = sample_alerts
    for e in events:
        if e["event_type"] == "alert" and e["alert"]["signature_id"] == 9000004:
            assert e["src_port"] == 80 and e["direction"] == "to_client"
        if e["event_type"] == "alert" and e["alert"]["signature_id"] == 9000001:
            assert e["dest_port"] == 80 and e["direction"] == "to_server"


def test_readers_agree(sample_alerts):
    """The reference readers feed the same pipeline to the same alerts (dpkt's float
    timestamps differ below the microsecond, so timestamps and flow ids are left out)."""

    def key(events):
        return [
            (e["pcap_cnt"], e["alert"]["signature_id"], e["src_ip"], e.get("src_port"), e["dest_ip"])
            for e in events
            if e["event_type"] == "alert"
        ]

    _, native = sample_alerts
    for reader in ("dpkt", "scapy"):
        out = io.StringIO()
        scan([str(SAMPLE)], [str(RULES)], out, reader=reader)
        events = [json.loads(line) for line in out.getvalue().splitlines()]
        assert key(events) == key(native), reader


def test_cli_scan_writes_eve_and_table(tmp_path, capsys):
    eve = tmp_path / "eve.json"
    assert main(["scan", str(SAMPLE), "--rules", str(RULES), "--eve", str(eve)]) == 0
    printed = capsys.readouterr().out
    assert "136 packets" in printed and "[1:9000001] DPI SAMPLE HTTP GET request" in printed
    lines = eve.read_text().splitlines()
    assert json.loads(lines[-1])["event_type"] == "stats"


def test_cli_missing_file(tmp_path, capsys):
    assert (
        main(["scan", str(tmp_path / "nope.pcap"), "--rules", str(RULES), "--eve", str(tmp_path / "e")]) == 2
    )
    assert "nope.pcap" in capsys.readouterr().err
