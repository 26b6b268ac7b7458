"""The flow table: one flow per 5-tuple (+VLAN), client by SYN or first packet."""

from __future__ import annotations

import numpy as np
import pytest

from dpi.capture import open_capture
from dpi.decode import decode_batch
from dpi.flow import TO_CLIENT, TO_SERVER, FlowTable, track_flows
from dpi.flow.table import TRACKABLE
from tests.conftest import tcp_session, write_pcap


def run_flows(path, table=None, batch_size=65536):
    table = table or FlowTable()
    cols = {"flow": [], "dir": [], "est": []}
    decoded = []
    for batch in open_capture(str(path), batch_size=batch_size).batches():
        dec = decode_batch(batch)
        eligible = TRACKABLE[dec.status] & (dec.is_fragment == 0)
        f, d, e = track_flows(table, eligible, batch, dec)
        cols["flow"].append(f)
        cols["dir"].append(d)
        cols["est"].append(e)
        decoded.append(dec)
    return table, {k: np.concatenate(v) for k, v in cols.items()}, decoded


def test_handshake_sets_client_and_established(tmp_path):
    pkts = tcp_session([b"hello"], replies=[b"world"])
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts))
    assert table.n_flows == 1
    assert c["flow"].tolist() == [0] * len(pkts)
    # SYN, SYN/ACK, ACK, data, reply, FIN
    assert c["dir"].tolist() == [TO_SERVER, TO_CLIENT, TO_SERVER, TO_SERVER, TO_CLIENT, TO_SERVER]
    assert c["est"].tolist() == [0, 0, 1, 1, 1, 1]
    assert table.pkts[0].tolist() == [4, 2]


def test_synack_first_names_its_receiver_client(tmp_path):
    pkts = tcp_session([b"hello"])[1:]  # capture starts at the SYN/ACK
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts))
    assert c["dir"].tolist()[:2] == [TO_CLIENT, TO_SERVER]


def test_first_packet_sender_is_client_without_handshake(tmp_path):
    pkts = tcp_session([b"hello"], replies=[b"x"])[3:]
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts))
    assert c["dir"].tolist() == [TO_SERVER, TO_CLIENT, TO_SERVER]
    assert c["est"].tolist() == [1, 1, 1]  # midstream pickup counts as established


def test_udp_established_after_both_directions(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    q = Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53) / b"q"
    r = Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=1000) / b"r"
    _, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", [q, r, q]))
    assert c["dir"].tolist() == [TO_SERVER, TO_CLIENT, TO_SERVER]
    assert c["est"].tolist() == [0, 1, 1]


def test_vlan_separates_flows(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Dot1Q, Ether

    base = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53) / b"q"
    pkts = [Ether() / base, Ether() / Dot1Q(vlan=10) / base, Ether() / Dot1Q(vlan=20) / base]
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts))
    assert c["flow"].tolist() == [0, 1, 2]


def test_many_flows_match_a_dict_and_survive_rehash(tmp_path):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    rng = np.random.default_rng(3)
    tuples = [(int(a), int(b)) for a, b in rng.integers(1, 3000, size=(5000, 2))]
    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=a, dport=b) for a, b in tuples]
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts), batch_size=700)
    expect: dict = {}
    for a, b in tuples:
        key = (min(a, b), max(a, b)) if a != b else (a, b)
        expect.setdefault(key, len(expect))
    assert table.n_flows == len(expect)
    got = c["flow"].tolist()
    assert got == [expect[(min(a, b), max(a, b))] for a, b in tuples]


def test_flow_ids_are_stable_and_distinct(tmp_path):
    pkts = tcp_session([b"a"]) + tcp_session([b"b"], client=("10.0.0.3", 40001))
    path = write_pcap(tmp_path / "a.pcap", pkts)
    t1, _, _ = run_flows(path)
    t2, _, _ = run_flows(path)
    ids = t1.flow_id[: t1.n_flows]
    assert ids.tolist() == t2.flow_id[: t2.n_flows].tolist()
    assert len(set(ids.tolist())) == 2
    assert (ids > 0).all() and (ids < 2**53).all()  # exact in JSON readers that use doubles


@pytest.mark.parametrize("max_flows", [1, 3])
def test_flow_cap_counts_untracked_packets(tmp_path, max_flows):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=53) for i in range(5)]
    table, c, _ = run_flows(write_pcap(tmp_path / "a.pcap", pkts), table=FlowTable(max_flows=max_flows))
    assert table.n_flows == max_flows
    assert int((c["flow"] < 0).sum()) == 5 - max_flows
    assert table.counters[1] == 5 - max_flows


# wikipedia: no flow times out inside it; the others have flows that do (UDP and TCP
# tuples idle past their timeouts, then active again), so they hold more flows than tuples
TSHARK_CONV_CAPTURES = [
    "zeek/wikipedia.pcap",
    "ndpi/1kxun.pcap",
    "ndpi/gnutella.pcap",
    "ndpi/alexa-app.pcapng",
]


@pytest.mark.parametrize("capture", TSHARK_CONV_CAPTURES)
def test_shared_capture_conversations_match_tshark(shared_data, capture):
    """TCP and UDP conversation counts of a real capture agree with tshark's.

    tshark's conversation table is keyed by the address/port pair, while a tuple idle past
    its flow timeout becomes a new flow here (as in Suricata): so the comparison is of
    distinct tuples over every flow event, and the flows split by a timeout are checked to
    be exactly the timed-out ones."""
    import io
    import json
    import shutil
    import subprocess

    from dpi.pipeline import flows_only

    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    path = shared_data / "pcaps" / capture
    if not path.exists():
        pytest.skip(f"{path} not found")
    out = io.StringIO()
    result = flows_only([str(path)], out)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    flows = [e for e in events if e["event_type"] == "flow"]
    for proto in ("tcp", "udp"):
        mine = [e for e in flows if e["proto"] == proto.upper()]
        tuples = {frozenset([(e["src_ip"], e["src_port"]), (e["dest_ip"], e["dest_port"])]) for e in mine}
        theirs_out = subprocess.run(
            ["tshark", "-r", str(path), "-q", "-z", f"conv,{proto}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs = sum(1 for line in theirs_out.splitlines() if "<->" in line)
        assert len(tuples) == theirs, proto
        # a tuple with several flows: all but its last ended by a timeout
        by_tuple: dict = {}
        for e in mine:
            key = frozenset([(e["src_ip"], e["src_port"]), (e["dest_ip"], e["dest_port"])])
            by_tuple.setdefault(key, []).append(e["flow"]["reason"])
        for reasons in by_tuple.values():
            assert all(r == "timeout" for r in reasons[:-1]), reasons
    assert result.flow["total"] == len(flows)
