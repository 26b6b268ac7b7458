"""A content split across TCP segments is found exactly once, whatever the split."""

from __future__ import annotations

import random

import pytest

from tests.conftest import tcp_session
from tests.scanning import alerts_of, run_scan

RULE = (
    'alert tcp any any -> any 80 (msg:"split needle"; flow:established,to_server; '
    'content:"NEEDLE-in-the-haystack"; sid:1; rev:1;)\n'
)
PAYLOAD = b"GET /x HTTP/1.1\r\nX-Data: NEEDLE-in-the-haystack\r\n\r\n"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    cuts = sorted(set(c for c in cuts if 0 < c < len(data)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


NEEDLE_AT = PAYLOAD.index(b"NEEDLE")


@pytest.mark.parametrize(
    "segments",
    [
        pytest.param(_split(PAYLOAD, [NEEDLE_AT + 7]), id="2-segments"),
        pytest.param(_split(PAYLOAD, [NEEDLE_AT + 3, NEEDLE_AT + 12]), id="3-segments"),
        pytest.param([PAYLOAD[i : i + 1] for i in range(len(PAYLOAD))], id="1-byte-segments"),
    ],
)
def test_split_content_alerts_once(tmp_path, segments):
    _, events = run_scan(tmp_path, tcp_session(segments), RULE)
    alerts = alerts_of(events)
    assert len(alerts) == 1
    a = alerts[0]
    assert a["alert"]["signature_id"] == 1
    assert (a["src_ip"], a["src_port"], a["dest_ip"], a["dest_port"]) == ("10.0.0.1", 40000, "10.0.0.2", 80)
    assert a["proto"] == "TCP"
    # the alert belongs to the packet that completed the match: the one carrying the last needle byte
    end = NEEDLE_AT + len(b"NEEDLE-in-the-haystack")
    pos, completing = 0, None
    for i, seg in enumerate(segments):
        pos += len(seg)
        if pos >= end:
            completing = i
            break
    assert a["pcap_cnt"] == 4 + completing  # 3 handshake packets, then data in order


def test_split_out_of_order_and_retransmitted(tmp_path):
    segments = [PAYLOAD[i : i + 5] for i in range(0, len(PAYLOAD), 5)]
    order = list(range(len(segments)))
    rng = random.Random(7)
    rng.shuffle(order)
    order = order + order[:4]  # retransmissions of already-delivered segments
    _, events = run_scan(tmp_path, tcp_session(segments, order=order), RULE)
    assert len(alerts_of(events)) == 1


def test_split_across_sequence_wraparound(tmp_path):
    segments = _split(PAYLOAD, [NEEDLE_AT + 5, NEEDLE_AT + 9])
    pkts = tcp_session(segments, isn_client=2**32 - NEEDLE_AT - 8)
    _, events = run_scan(tmp_path, pkts, RULE)
    assert len(alerts_of(events)) == 1


def test_two_streams_do_not_mix(tmp_path):
    """Half a needle in one connection and the other half in another is no match."""
    first, second = PAYLOAD[: NEEDLE_AT + 7], PAYLOAD[NEEDLE_AT + 7 :]
    pkts = tcp_session([first], client=("10.0.0.1", 40000)) + tcp_session(
        [second], client=("10.0.0.1", 40001)
    )
    _, events = run_scan(tmp_path, pkts, RULE)
    assert alerts_of(events) == []


def test_needle_twice_in_one_stream_alerts_per_packet(tmp_path):
    segments = [PAYLOAD, PAYLOAD]
    _, events = run_scan(tmp_path, tcp_session(segments), RULE)
    assert [a["pcap_cnt"] for a in alerts_of(events)] == [4, 5]


def test_nocase_content_split(tmp_path):
    rule = 'alert tcp any any -> any any (msg:"nocase"; content:"needle-IN-THE"; nocase; sid:2;)\n'
    segments = _split(PAYLOAD, [NEEDLE_AT + 2, NEEDLE_AT + 4, NEEDLE_AT + 6])
    _, events = run_scan(tmp_path, tcp_session(segments), rule)
    assert len(alerts_of(events)) == 1


def test_gap_is_never_bridged(tmp_path):
    """A segment lost in the middle of the needle: no alert, and the gap is counted."""
    segments = _split(PAYLOAD, [NEEDLE_AT + 5, NEEDLE_AT + 9])
    pkts = tcp_session(segments, order=[0, 2])
    result, events = run_scan(tmp_path, pkts, RULE)
    assert alerts_of(events) == []
    assert result.stream["gaps"] == 1


def test_distance_within_across_segments(tmp_path):
    rule = (
        'alert tcp any any -> any 80 (msg:"two contents"; content:"GET "; depth:4; '
        'content:"NEEDLE"; distance:0; within:40; sid:3;)\n'
    )
    segments = _split(PAYLOAD, [2, NEEDLE_AT + 3])
    _, events = run_scan(tmp_path, tcp_session(segments), rule)
    alerts = alerts_of(events)
    assert len(alerts) == 1 and alerts[0]["pcap_cnt"] == 6


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_state_carries_across_batches(tmp_path, batch_size):
    """Matcher state, held segments and earlier matches survive batch boundaries."""
    rule = (
        'alert tcp any any -> any 80 (msg:"two contents"; content:"GET "; depth:4; '
        'content:"NEEDLE-in-the-haystack"; distance:0; within:60; sid:3;)\n'
    )
    segments = [PAYLOAD[i : i + 3] for i in range(0, len(PAYLOAD), 3)]
    order = list(range(len(segments)))
    order[2], order[3] = order[3], order[2]  # one out-of-order pair
    _, whole = run_scan(tmp_path, tcp_session(segments, order=order), rule)
    _, batched = run_scan(tmp_path, tcp_session(segments, order=order), rule, batch_size=batch_size)
    assert len(alerts_of(whole)) == 1
    assert alerts_of(batched) == alerts_of(whole)
