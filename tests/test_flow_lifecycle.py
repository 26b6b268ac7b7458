"""The flow lifecycle: timeouts per protocol and state in capture time, the sweep after
each batch, eviction at the memory cap, slot reuse, and a flow event for each flow."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.flow.config import FlowConfig, FlowTimeouts
from dpi.flow.table import (
    EMPTY,
    END_TIMEOUT,
    ENTRY_FLOW,
    FlowTable,
    _delete_at,
    _entry,
    _misplaced,
    bytes_per_flow,
    flows_for_memcap,
)
from dpi.flow.tracking import FlowTracker
from dpi.pipeline import flows_only
from dpi.settings import Settings
from tests.conftest import tcp_session, write_pcap
from tests.scanning import alerts_of, run_scan

T0 = 1_300_000_000.0


def _udp(src_port, t, dst_port=53, reply=False, payload=b"q", src="10.0.0.1", dst="10.0.0.2"):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    if reply:
        p = Ether() / IP(src=dst, dst=src) / UDP(sport=dst_port, dport=src_port) / payload
    else:
        p = Ether() / IP(src=src, dst=dst) / UDP(sport=src_port, dport=dst_port) / payload
    p.time = t
    return p


def _tcp(flags, t, seq=1000, ack=0, payload=b"", reply=False):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 80)
    (sa, sp), (da, dp) = (s, c) if reply else (c, s)
    p = Ether() / IP(src=sa, dst=da) / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack) / payload
    p.time = t
    return p


def _retimed(pkts, t0):
    for k, p in enumerate(pkts):
        p.time = t0 + k * 0.001
    return pkts


def _events(tmp_path, pkts, batch_size=65536, settings=None, max_flows=None, name="a.pcap"):
    path = write_pcap(tmp_path / name, pkts)
    out = io.StringIO()
    result = flows_only([str(path)], out, batch_size=batch_size, settings=settings, max_flows=max_flows)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    return result, [e for e in events if e["event_type"] == "flow"], events[-1]


def _session_up_to(state):
    """Packets that leave a TCP flow in ``state``, and the packet that comes later."""
    if state == "new":
        return [_tcp("S", T0)], _tcp("S", 0)
    pkts = tcp_session([b"hello"], replies=[b"world"])
    if state == "established":
        return pkts[:-1], _tcp("PA", 0, seq=1006, ack=5006, payload=b"more")
    fin = _tcp("FA", 0, seq=5006, ack=1007, reply=True)
    fin.time = pkts[-1].time + 0.001
    return [*pkts, fin], _tcp("A", 0, seq=1007, ack=5007)


CASES = [
    # (protocol, state, that state's default timeout in seconds)
    ("tcp", "new", 60),
    ("tcp", "established", 600),
    ("tcp", "closed", 60),
    ("udp", "new", 30),
    ("udp", "established", 300),
]


def _case_packets(proto, state, gap):
    if proto == "tcp":
        first, later = _session_up_to(state)
    else:
        first = [_udp(1000, T0)]
        if state == "established":
            first.append(_udp(1000, T0 + 0.001, reply=True))
        later = _udp(1000, 0)
    later.time = float(first[-1].time) + gap
    return [*first, later]


@pytest.mark.parametrize("batch_size", [1, 65536], ids=["batch-per-packet", "one-batch"])
@pytest.mark.parametrize("proto,state,timeout", CASES, ids=[f"{p}-{s}" for p, s, _ in CASES])
def test_idle_past_timeout_ends_the_flow_and_the_tuple_starts_a_new_one(
    tmp_path, proto, state, timeout, batch_size
):
    pkts = _case_packets(proto, state, timeout + 1)
    result, flows, stats = _events(tmp_path, pkts, batch_size=batch_size)
    assert len(flows) == 2
    old, new = flows
    assert old["flow"]["reason"] == "timeout" and old["flow"]["state"] == state
    assert new["flow"]["reason"] == "shutdown"
    assert old["flow_id"] != new["flow_id"]
    assert old["flow"]["pkts_toserver"] + old["flow"]["pkts_toclient"] == len(pkts) - 1
    assert new["flow"]["pkts_toserver"] + new["flow"]["pkts_toclient"] == 1
    assert stats["stats"]["flow"]["end_reason"] == {"timeout": 1, "forced": 0, "shutdown": 1}
    assert stats["stats"]["flow"]["total"] == 2


@pytest.mark.parametrize("proto,state,timeout", CASES, ids=[f"{p}-{s}" for p, s, _ in CASES])
def test_within_the_timeout_the_flow_goes_on(tmp_path, proto, state, timeout):
    pkts = _case_packets(proto, state, timeout - 1)
    _, flows, _ = _events(tmp_path, pkts)
    assert len(flows) == 1 and flows[0]["flow"]["reason"] == "shutdown"


def test_configured_timeouts_apply(tmp_path):
    settings = Settings()
    settings.flow.timeouts["udp"] = FlowTimeouts(5, 300, 0, 2, 100, 0)
    pkts = [_udp(1000, T0), _udp(1000, T0 + 6)]
    _, flows, _ = _events(tmp_path, pkts, settings=settings)
    assert [f["flow"]["reason"] for f in flows] == ["timeout", "shutdown"]
    _, flows, _ = _events(tmp_path, pkts, name="b.pcap")  # the default 30 s
    assert len(flows) == 1


def _run_tracker(path, tracker, batch_size, after_batch=None):
    for batch in open_capture(str(path), batch_size=batch_size).batches():
        tracker.track(batch, tracker.decode(batch))
        tracker.end_idle()
        tracker.table.check_index()
        if after_batch is not None:
            after_batch(tracker)
    tracker.end_all()


def test_sweep_ends_idle_flows_after_each_batch_and_slots_are_reused(tmp_path):
    """Flow A idles while B's packets move capture time on: the sweep ends A once B passes
    A's deadline; A's slot is released after it was finalized and a later flow reuses it."""
    pkts = [_udp(1000, T0)] + [_udp(2000, T0 + t) for t in (10, 20, 29, 31)] + [_udp(3000, T0 + 32)]
    path = write_pcap(tmp_path / "a.pcap", pkts)
    ended: list[tuple[int, list, list, list]] = []
    tracker: FlowTracker

    def on_end(flows, states, reasons):
        t = tracker.table
        assert (t.status[flows] == 2).all()  # ended, not yet free
        ended.append((tracker.clock, flows.tolist(), reasons.tolist(), t.flow_id[flows].tolist()))

    tracker = FlowTracker(on_end=on_end)
    seen = []
    _run_tracker(path, tracker, batch_size=1, after_batch=lambda tr: seen.append(tr.table.n_live))
    assert seen == [1, 2, 2, 2, 1, 2]  # A ends after the batch at T0+31, not before
    first = ended[0]
    assert first[0] == int((T0 + 31) * 1e9)
    assert first[1] == [0] and first[2] == [END_TIMEOUT]
    # the flow at T0+32 took slot 0 again, with a flow id of its own
    last_flows = {f: fid for _, fl, _, ids in ended[1:] for f, fid in zip(fl, ids, strict=True)}
    assert 0 in last_flows and last_flows[0] != first[3][0]
    assert tracker.table.counters[3] == 1  # CNT_SLOTS_REUSED
    assert tracker.flow_counts()["end_reason"] == {"timeout": 1, "forced": 0, "shutdown": 2}


def test_slot_is_not_reused_inside_the_batch_that_ended_its_flow(tmp_path):
    pkts = [_udp(1000, T0), _udp(1000, T0 + 40), _udp(3000, T0 + 41)]
    path = write_pcap(tmp_path / "a.pcap", pkts)
    batch = next(open_capture(str(path)).batches())
    tracker = FlowTracker()
    _, flow, _, _ = tracker.track(batch, tracker.decode(batch))
    assert flow.tolist() == [0, 1, 2]  # flow 0 ended at the second packet; its slot waits
    assert tracker.table.status[:3].tolist() == [2, 1, 1]
    tracker.end_idle()
    assert tracker.table.status[0] == 0 and tracker.table.n_free == 1


def _many_udp_flows(n, rounds, spacing=0.01):
    """n UDP tuples, each sending ``rounds`` packets, interleaved, all within timeouts."""
    pkts = []
    t = T0
    for _ in range(rounds):
        for k in range(n):
            pkts.append(_udp(1000 + k, t))
            t += spacing
    return pkts


@pytest.mark.parametrize("batch_size", [1, 4])
def test_eviction_keeps_live_flows_bounded_and_counts_every_flow(tmp_path, batch_size):
    max_flows = 4
    pkts = _many_udp_flows(10, 3)
    result, flows, stats = _events(tmp_path, pkts, batch_size=batch_size, max_flows=max_flows)
    fs = stats["stats"]["flow"]
    assert fs["max_active"] <= max_flows
    forced = [f for f in flows if f["flow"]["reason"] == "forced"]
    assert len(forced) == fs["evicted"] == fs["end_reason"]["forced"] > 0
    assert all(f["flow"].get("emergency") for f in forced)
    assert len(flows) == fs["total"]
    assert sum(fs["end_reason"].values()) == fs["total"]
    # every packet: in a flow, or counted as not tracked
    in_flows = sum(f["flow"]["pkts_toserver"] + f["flow"]["pkts_toclient"] for f in flows)
    assert in_flows + result.not_tracked.get("flow_table_full", 0) == len(pkts)
    if batch_size == 1:  # each batch brings one new flow: eviction always makes room
        assert result.not_tracked.get("flow_table_full", 0) == 0
        assert fs["evicted"] == fs["total"] - max_flows


def test_memcap_sets_the_flow_limit(tmp_path):
    settings = Settings(flow=FlowConfig(memcap=bytes_per_flow() * 3 + 7))
    assert flows_for_memcap(settings.flow.memcap) == 3
    result, flows, stats = _events(tmp_path, _many_udp_flows(6, 2), batch_size=1, settings=settings)
    fs = stats["stats"]["flow"]
    assert fs["max_flows"] == 3 and fs["max_active"] == 3
    assert fs["evicted"] > 0 and len(flows) == fs["total"]


def test_a_batch_with_more_new_flows_than_room_counts_the_rest(tmp_path):
    pkts = _many_udp_flows(5, 1)
    result, flows, stats = _events(tmp_path, pkts, max_flows=3)
    assert len(flows) == 3
    assert result.not_tracked["flow_table_full"] == 2
    assert stats["stats"]["flow"]["evicted"] == 0  # nothing to evict: all flows were new


def test_evicted_flows_are_the_least_recently_active(tmp_path):
    # A, B, C, D in that order; A sends again; then E needs room: B goes, not A
    order = [1000, 1001, 1002, 1003, 1000, 1004]
    pkts = [_udp(p, T0 + k * 0.1) for k, p in enumerate(order)]
    _, flows, _ = _events(tmp_path, pkts, batch_size=1, max_flows=4)
    forced = [f["src_port"] for f in flows if f["flow"]["reason"] == "forced"]
    assert forced == [1001]


def test_emergency_timeouts_come_before_eviction(tmp_path):
    # four flows idle for 15 s: past UDP's emergency-new timeout (10 s), not its new (30 s)
    pkts = [_udp(1000 + k, T0 + k * 0.01) for k in range(4)] + [_udp(2000, T0 + 15)]
    _, flows, stats = _events(tmp_path, pkts, batch_size=1, max_flows=4)
    fs = stats["stats"]["flow"]
    assert fs["emergency_sweeps"] == 1 and fs["emergency_timeouts"] == 4 and fs["evicted"] == 0
    timed_out = [f for f in flows if f["flow"]["reason"] == "timeout"]
    assert len(timed_out) == 4 and all(f["flow"]["emergency"] for f in timed_out)


def test_backward_shift_deletion_keeps_every_key_reachable():
    """Insert flows with colliding hashes into a tiny index, delete at random; every
    remaining flow stays on its probe path and the deleted ones are gone."""
    rng = np.random.default_rng(11)
    size = 16
    for _ in range(300):
        index = np.full(size, EMPTY, np.int64)
        # few distinct home slots, near the end so that probe runs wrap around
        homes = (rng.integers(0, 4, size=12) * rng.integers(1, 5) + size - 2) % size
        hashes = homes.astype(np.uint64) | (
            rng.integers(0, 1 << 20, size=12).astype(np.uint64) << np.uint64(4)
        )
        for f in range(len(hashes)):
            s = int(homes[f])
            while index[s] != EMPTY:
                s = (s + 1) % size
            index[s] = _entry(hashes[f], f)
        alive = set(range(len(hashes)))
        for f in rng.permutation(len(hashes))[: rng.integers(1, len(hashes))]:
            _delete_at(index, int(np.flatnonzero((index & ENTRY_FLOW) == f)[0]))
            alive.discard(int(f))
            assert _misplaced(index) == -1
            assert set((index[index != EMPTY] & ENTRY_FLOW).tolist()) == alive


def test_random_traffic_matches_a_reference_timeout_model(tmp_path):
    """Per tuple, a new flow starts whenever a packet comes more than the timeout after the
    tuple's previous packet; the table agrees with that model at every batch size."""
    rng = np.random.default_rng(5)
    settings = Settings()
    settings.flow.timeouts["udp"] = FlowTimeouts(3, 3, 0, 1, 1, 0)
    times = np.sort(rng.uniform(0, 120, size=600))
    ports = rng.integers(1000, 1040, size=600)
    pkts = [_udp(int(p), T0 + float(t)) for p, t in zip(ports, times, strict=True)]
    expect_flows = 0
    last: dict[int, float] = {}
    for p, t in zip(ports.tolist(), times.tolist(), strict=True):
        if p not in last or t - last[p] > 3:
            expect_flows += 1
        last[p] = t
    path = write_pcap(tmp_path / "a.pcap", pkts)
    for batch_size in (1, 7, 1000):
        tracker = FlowTracker(config=settings.flow)
        _run_tracker(path, tracker, batch_size)
        counts = tracker.flow_counts()
        assert counts["total"] == expect_flows, batch_size
        assert counts["end_reason"]["timeout"] + counts["end_reason"]["shutdown"] == expect_flows
        if batch_size < 600:  # slots: live flows plus those ended within one batch
            assert tracker.table.n_flows <= 40 + batch_size


def test_live_memory_follows_live_flows_not_flows_seen(tmp_path):
    """Thousands of short flows one after another: the table stays small."""
    pkts = []
    for k in range(3000):
        pkts.append(_udp(1000 + k % 60000, T0 + k * 1.0, src=f"10.1.{k // 250}.{k % 250 + 1}"))
    path = write_pcap(tmp_path / "a.pcap", pkts)
    tracker = FlowTracker()
    for batch in open_capture(str(path), batch_size=500).batches():
        tracker.track(batch, tracker.decode(batch))
        tracker.end_idle()
    tracker.end_all()
    assert tracker.flow_counts()["total"] == 3000
    assert tracker.table.n_flows <= 2 * 500 + 40  # slots: live flows plus one batch's worth
    assert tracker.table.capacity <= 1024


NEEDLE_RULE = (
    'alert tcp any any -> any 80 (msg:"needle"; flow:established,to_server; '
    'content:"NEEDLE-in-the-haystack"; sid:1; rev:1;)\n'
    'alert tcp any any -> any 80 (msg:"get"; flow:to_server; content:"GET /first"; sid:2; rev:1;)\n'
)


def _split_needle_packets(gap):
    """A connection sends 'GET /first ... NEEDLE-in', idles ``gap`` seconds, then sends
    '-the-haystack' in sequence; meanwhile another tuple moves capture time on, so with a
    long gap the first flow is swept and its slot released before the second part."""
    first = b"GET /first HTTP/1.1\r\nX: NEEDLE-in"
    pkts = tcp_session([first])[:-1]  # no FIN: the connection stays open
    clock = _udp(5353, pkts[-1].time + gap - 1)
    rest = _tcp("PA", pkts[-1].time + gap, seq=1001 + len(first), ack=5001, payload=b"-the-haystack\r\n")
    return [*pkts, clock, rest]


@pytest.mark.parametrize("batch_size", [1, 65536])
def test_no_stream_state_or_alert_crosses_a_timeout(tmp_path, batch_size):
    result, events = run_scan(tmp_path, _split_needle_packets(700), NEEDLE_RULE, batch_size=batch_size)
    assert [a["alert"]["signature_id"] for a in alerts_of(events)] == [2]
    tcp_flows = [e for e in events if e["event_type"] == "flow" and e["proto"] == "TCP"]
    assert [f["flow"]["reason"] for f in tcp_flows] == ["timeout", "shutdown"]
    assert [f["flow"]["alerted"] for f in tcp_flows] == [True, False]
    if batch_size == 1:
        stats = events[-1]["stats"]["flow"]
        assert stats["slots_reused"] >= 1  # the second flow reused the first one's slot


def test_the_split_needle_alerts_within_the_timeout(tmp_path):
    """The control: the same packets with a short gap are one flow, and the needle is found."""
    _, events = run_scan(tmp_path, _split_needle_packets(10), NEEDLE_RULE, batch_size=1)
    assert sorted(a["alert"]["signature_id"] for a in alerts_of(events)) == [1, 2]
    tcp_flows = [e for e in events if e["event_type"] == "flow" and e["proto"] == "TCP"]
    assert len(tcp_flows) == 1 and tcp_flows[0]["flow"]["alerted"]


def test_held_stream_data_is_delivered_when_the_flow_times_out(tmp_path):
    """Data held behind a hole is flushed and inspected when its flow ends, not lost."""
    rule = 'alert tcp any any -> any 80 (msg:"tail"; content:"TAIL-MARKER"; sid:3; rev:1;)\n'
    pkts = tcp_session([b"A" * 20, b"B" * 20, b"TAIL-MARKER"], order=[0, 2])[:-1]
    pkts.append(_udp(5353, pkts[-1].time + 700))  # moves capture time past the timeout
    pkts.append(_udp(5353, pkts[-1].time + 1))
    result, events = run_scan(tmp_path, pkts, rule, batch_size=1)
    alerts = alerts_of(events)
    assert [a["alert"]["signature_id"] for a in alerts] == [3]
    tcp_flow = next(e for e in events if e["event_type"] == "flow" and e["proto"] == "TCP")
    assert tcp_flow["flow"]["reason"] == "timeout" and tcp_flow["flow"]["alerted"]
    # the alert was written before the flow event that reports it
    order = [e["event_type"] for e in events]
    assert order.index("alert") < events.index(tcp_flow)


def test_streams_command_writes_a_file_per_flow_on_a_reused_tuple(tmp_path):
    from dpi.output.streams import write_streams

    a = tcp_session([b"first connection"])[:-1]
    b = tcp_session([b"second connection"], t0=float(a[-1].time) + 700, isn_client=9000)
    path = write_pcap(tmp_path / "a.pcap", [*a, *b])
    for batch_size in (1, 65536):
        out = tmp_path / f"out{batch_size}"
        writer, _ = write_streams([str(path)], str(out), batch_size=batch_size)
        name = "010.000.000.001.40000-010.000.000.002.00080"
        assert (out / name).read_bytes() == b"first connection"
        assert (out / f"{name}c1").read_bytes() == b"second connection"
        index = json.loads((out / "index.json").read_text())
        assert index["flow"]["end_reason"]["timeout"] == 1
        assert writer.files[name].flow_id != writer.files[f"{name}c1"].flow_id


def test_growth_rehashes_live_flows_only(tmp_path):
    """Ended flows (not yet released) stay out of the index when it is rebuilt larger, and
    a packet of their tuple opens a new flow."""
    from dpi.decode import decode_batch
    from dpi.flow.table import SLOT_ENDED, TRACKABLE, track_flows
    from dpi.gen.tcp import synthetic_tcp_pcap

    cap = synthetic_tcp_pcap(tmp_path / "s.pcap", flows=1500, segments=1, segment_len=10)
    batches = list(open_capture(str(cap.path), batch_size=3000).batches())
    table = FlowTable()

    def track(batch):
        dec = decode_batch(batch)
        return track_flows(table, TRACKABLE[dec.status] & (dec.is_fragment == 0), batch, dec)[0]

    first = track(batches[0])
    ended = np.unique(first)[::2]
    table.end(ended, END_TIMEOUT)
    assert (table.status[ended] == SLOT_ENDED).all()
    index_before = table.index.shape[0]
    later = np.concatenate([track(b) for b in batches[1:]])
    assert table.index.shape[0] > index_before  # the index was rebuilt
    table.check_index()
    assert not np.isin(later, ended).any()  # their tuples got new flows, in other slots
    assert table.n_live == table.total_flows - len(ended)


def test_captures_out_of_time_order_do_not_time_out_each_packet(tmp_path):
    """A second capture older than the first: its flows are timed against its own clock."""
    late = write_pcap(tmp_path / "late.pcap", [_udp(1000, T0 + 5000)])
    early = write_pcap(tmp_path / "early.pcap", [_udp(2000, T0 + k) for k in range(3)])
    out = io.StringIO()
    flows_only([str(late), str(early)], out, batch_size=1)
    flows = [json.loads(line) for line in out.getvalue().splitlines()][:-1]
    by_port = {f["src_port"]: f["flow"]["pkts_toserver"] for f in flows}
    assert by_port == {1000: 1, 2000: 3}
