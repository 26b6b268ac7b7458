"""Detection follows the reassembly policy: `dpi scan` inspects the stream the target host
would reassemble, so a content hidden by overlapping segments alerts only under the
policies that rebuild it."""

from __future__ import annotations

import pytest

from dpi.settings import load_settings
from tests.scanning import alerts_of, run_scan
from tests.test_stream_policy import EXPECTED, MAIN, SAME, _session

# "HHQQ" spans two segments (HH and QQ): only a reassembly that keeps QQ over I has it, and
# no single packet does, so inspecting packets alone cannot find it either.
RULE = 'alert tcp any any -> any 80 (msg:"only linux sees it"; flow:to_server; content:"HHQQ"; sid:1;)\n'


def _scan(tmp_path, steps, *assignments, rule=RULE):
    settings = load_settings(None, list(assignments))
    return run_scan(tmp_path, _session(steps, 1000), rule, settings=settings)


def test_the_fixture_differs_between_policies():
    assert b"HHQQ" in EXPECTED["linux"]["main"]
    assert b"HHQQ" not in EXPECTED["windows"]["main"]
    assert all(b"HHQQ" not in data for _, data in MAIN)


@pytest.mark.parametrize(
    ("policy", "alerts"),
    [("linux", 1), ("old-linux", 1), ("solaris", 1), ("last", 0), ("windows", 0), ("bsd", 0), ("first", 0)],
)
def test_content_only_under_linux(tmp_path, policy, alerts):
    _, events = _scan(tmp_path, MAIN, f"stream.policy={policy}")
    assert len(alerts_of(events)) == alerts


def test_host_os_policy_chooses_by_destination(tmp_path):
    # the server (10.0.0.2) is a Linux host; everything else defaults to windows
    _, events = _scan(tmp_path, MAIN, "stream.policy=windows", "host-os-policy.linux=10.0.0.0/24")
    assert len(alerts_of(events)) == 1
    _, events = _scan(tmp_path, MAIN, "stream.policy=linux", "host-os-policy.windows=[10.0.0.2]")
    assert len(alerts_of(events)) == 0


def test_a_packet_is_still_inspected_alone(tmp_path):
    """As Suricata, a packet's own payload is inspected besides the stream: under windows
    the stream keeps CCC over LLLL, but the LLLL packet itself still matches."""
    rule = 'alert tcp any any -> any 80 (msg:"packet"; flow:to_server; content:"LLLL"; sid:2;)\n'
    _, events = _scan(tmp_path, SAME, "stream.policy=windows", rule=rule)
    alerts = alerts_of(events)
    assert [a["pcap_cnt"] for a in alerts] == [8]  # the LLLL segment
    _, events = _scan(tmp_path, SAME, "stream.policy=linux", rule=rule)
    assert [a["pcap_cnt"] for a in alerts_of(events)] == [8]


def test_overlap_with_different_data_is_an_eve_anomaly(tmp_path):
    result, events = _scan(tmp_path, SAME, "stream.policy=windows")
    anomalies = [e for e in events if e["event_type"] == "anomaly"]
    assert len(anomalies) == 4  # KKK, LLLL, P and QQ rewrite held bytes
    a = anomalies[0]
    assert a["anomaly"] == {
        "type": "stream",
        "event": "stream.reassembly_overlap_different_data",
        "stream_offset": 0,
        "overlap_bytes": 3,
    }
    assert a["src_ip"] == "10.0.0.1" and a["dest_port"] == 80 and a["pcap_cnt"] == 7
    assert result.stream["reassembly_overlap_different_data"] == 4
