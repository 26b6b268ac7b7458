"""Detection follows the reassembly policy: `dpi scan` inspects the stream the target host
would reassemble, so a content hidden by overlapping segments alerts only under the
policies that rebuild it."""

from __future__ import annotations

import pytest

from dpi.settings import load_settings
from tests.scanning import alerts_of, run_scan
from tests.test_stream_policy import EXPECTED, SAME, _session

# Under linux the client's stream begins "LLLL"; under windows (bsd rules) it is "CCCL".
RULE = 'alert tcp any any -> any 80 (msg:"only linux sees it"; flow:to_server; content:"LLLL"; sid:1;)\n'


def _scan(tmp_path, *assignments):
    settings = load_settings(None, list(assignments))
    return run_scan(tmp_path, _session(SAME, 1000), RULE, settings=settings)


def test_the_fixture_differs_between_policies():
    assert EXPECTED["linux"]["same"].startswith(b"LLLL")
    assert b"LLLL" not in EXPECTED["windows"]["same"]


@pytest.mark.parametrize(
    ("policy", "alerts"),
    [("linux", 1), ("old-linux", 1), ("last", 1), ("windows", 0), ("bsd", 0), ("first", 0)],
)
def test_content_only_under_linux(tmp_path, policy, alerts):
    _, events = _scan(tmp_path, f"stream.policy={policy}")
    assert len(alerts_of(events)) == alerts


def test_host_os_policy_chooses_by_destination(tmp_path):
    # the server (10.0.0.2) is a Linux host; everything else defaults to windows
    _, events = _scan(tmp_path, "stream.policy=windows", "host-os-policy.linux=10.0.0.0/24")
    assert len(alerts_of(events)) == 1
    _, events = _scan(tmp_path, "stream.policy=linux", "host-os-policy.windows=[10.0.0.2]")
    assert len(alerts_of(events)) == 0


def test_overlap_with_different_data_is_an_eve_anomaly(tmp_path):
    result, events = _scan(tmp_path, "stream.policy=windows")
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
