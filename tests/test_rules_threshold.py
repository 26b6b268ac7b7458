"""`threshold` (limit, threshold, both) and `detection_filter`: which matches alert, per
source or destination, in capture-time windows, as Suricata's detect-engine-threshold."""

from __future__ import annotations

import pytest

from dpi.rules import parse_rules
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _queries(times, srcs=None):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = []
    for k, t in enumerate(times):
        src = srcs[k] if srcs else "10.0.0.1"
        p = Ether() / IP(src=src, dst="10.0.0.53") / UDP(sport=4000 + k, dport=53) / b"QUERY"
        p.time = T0 + t
        pkts.append(p)
    return pkts


def _rule(option):
    return f'alert udp any any -> any 53 (msg:"q"; content:"QUERY"; {option}; sid:1; rev:1;)\n'


def _alerted(tmp_path, option, times, srcs=None):
    _, events = run_scan(tmp_path, _queries(times, srcs), _rule(option))
    return [a["pcap_cnt"] for a in alerts_of(events)]


FIVE = [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("threshold: type limit, track by_src, count 1, seconds 60", [1]),
        ("threshold: type limit, track by_src, count 2, seconds 60", [1, 2]),
        ("threshold: type threshold, track by_src, count 2, seconds 60", [2, 4]),
        ("threshold: type both, track by_src, count 2, seconds 60", [2]),
        ("detection_filter: track by_src, count 2, seconds 60", [3, 4, 5]),
        ("threshold: type threshold, track by_src, count 1, seconds 60", [1, 2, 3, 4, 5]),
    ],
)
def test_kinds_in_one_window(tmp_path, option, expected):
    assert _alerted(tmp_path, option, FIVE) == expected


def test_a_new_window_starts_after_the_seconds(tmp_path):
    times = [0, 10, 70, 75, 140]  # windows of 60 s open at 0, 70 and 140
    assert _alerted(tmp_path, "threshold: type limit, track by_src, count 1, seconds 60", times) == [1, 3, 5]
    assert _alerted(tmp_path, "detection_filter: track by_src, count 1, seconds 60", times) == [2, 4]


def test_tracked_by_source_or_destination(tmp_path):
    srcs = ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]
    times = [0, 1, 2, 3]
    assert _alerted(tmp_path, "threshold: type limit, track by_src, count 1, seconds 60", times, srcs) == [
        1,
        2,
    ]
    assert _alerted(tmp_path, "threshold: type limit, track by_dst, count 1, seconds 60", times, srcs) == [1]


def test_suppressed_alerts_are_counted(tmp_path):
    result, events = run_scan(
        tmp_path, _queries(FIVE), _rule("threshold: type limit, track by_src, count 1, seconds 60")
    )
    assert result.detect["threshold_suppressed"] == 4
    assert events[-1]["stats"]["detect"]["threshold_suppressed"] == 4


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("threshold: type limit, track by_src, count 1", "missing seconds"),
        ("threshold: type sometimes, track by_src, count 1, seconds 6", "type must be one of"),
        ("threshold: type limit, track by_src, count 0, seconds 6", "count must be a positive number"),
        ("threshold: type limit, track by_nobody, count 1, seconds 6", "track must be"),
        ("detection_filter: type limit, track by_src, count 1, seconds 6", "unknown type"),
        (
            "threshold: type limit, track by_src, count 1, seconds 6; "
            "detection_filter: track by_src, count 1, seconds 6",
            "only one threshold",
        ),
    ],
)
def test_syntax_errors(option, message):
    rs = parse_rules(_rule(option))
    assert not rs.rules and len(rs.errors) == 1 and message in str(rs.errors[0]), rs.errors


def test_unsupported_tracking_is_a_reported_skip():
    rs = parse_rules(_rule("threshold: type limit, track by_rule, count 1, seconds 6"))
    assert not rs.rules and not rs.errors
    assert rs.skip_reasons() == {"unsupported threshold track 'by_rule'": 1}
