"""EVE flow events: Suricata's fields, and packet/byte counts equal to tshark's per
conversation and direction.

Several of these captures have flows that time out inside them (a tuple idle past its
timeout, then active again, becomes a second flow, as in Suricata). tshark keys its counts
by address/port pair, so ours are summed over every flow event of a tuple and direction:
a timeout splits a conversation into flows, and must neither lose nor double a packet."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections import Counter

import pytest

from dpi.cli import main
from dpi.pipeline import flows_only
from tests.conftest import REPO, SHARED_DATA, tcp_session, write_pcap

CAPTURES = [
    "zeek/wikipedia.pcap",
    "zeek/http-pipelined-requests.pcap",
    "zeek/smtp.pcap",
    "zeek/dns-edns-ecs.pcap",
    "zeek/http-vlan.pcap",
    "zeek/ftp-ipv6.pcap",
    "dpkt/dns-icmp.pcap",
    "ndpi/syslog.pcap",
    "ndpi/sip.pcap",
    "ndpi/1kxun.pcap",
    "ndpi/quic.pcap",
    "tcpreplay/test.pcap",
    "chrissanders/http-espn.pcapng",
    # IP fragments carrying TCP/UDP: the reassembled datagrams count in their flows (the
    # captures with only ICMP or unknown payload in fragments are checked in test_defrag)
    "ndpi/dns-fragmented.pcap",
    "ndpi/ip-fragmented-garbage.pcap",
    "zeek/ipv4-fragmented-1.pcap",
    "zeek/ipv4-fragmented-4.pcap",
    "zeek/ipv6-fragmented-dns.pcap",
    "zeek/ipv4-fragmented-syn.pcap",
    # tunnels: the conversations inside them
    "zeek/tunnel-gre-sample.pcap",
    "zeek/tunnel-vxlan-http.pcap",
    "zeek/tunnel-6in4.pcap",
]


def _events(path) -> list[dict]:
    out = io.StringIO()
    flows_only([str(path)], out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _tshark_counts(path, proto: str) -> Counter:
    """{(src, sport, dst, dport): [frames, bytes]} from tshark's dissection. A tunnelled frame
    counts in the conversation of the packet inside (its innermost IP layer), with the frame's
    length, as dpi counts it; a packet quoted by an ICMP error is not this protocol's
    conversation. A datagram reassembled from IP fragments counts once, in the frame that
    completed it, with that frame's length: dpi counts it the same way."""
    fields = [
        "frame.protocols",
        "ip.src",
        "ipv6.src",
        f"{proto}.srcport",
        "ip.dst",
        "ipv6.dst",
        f"{proto}.dstport",
        "frame.len",
        "ip.frag_offset",
        "ipv6.fraghdr.offset",
    ]
    # a TCP header shorter than 20 bytes is malformed: no flow (Suricata drops it too)
    display = "tcp and tcp.hdr_len >= 20" if proto == "tcp" else proto
    args = ["tshark", "-r", str(path), "-Y", display, "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    rows = subprocess.run(args, capture_output=True, text=True, check=True).stdout.splitlines()
    counts: Counter = Counter()
    for row in rows:
        layers, s4, s6, sp, d4, d6, dp, length, frag4, frag6 = row.split("|")
        chain = layers.split(":")
        for k, layer in enumerate(chain):
            if layer in ("icmp", "icmpv6"):
                chain = chain[:k]  # what follows is a quoted packet
                break
        innermost = max(k for k, layer in enumerate(chain) if layer in ("ip", "ipv6"))
        # the layer above the innermost IP, past its extension headers (ipv6.fraghdr, ...)
        upper = [layer for layer in chain[innermost + 1 :] if not layer.startswith("ipv6.")]
        if upper[:1] != [proto]:
            continue  # the packet inside is not of this protocol (a UDP tunnel of TCP, say)
        version = chain[innermost]
        nth = chain.count(version) - 1
        src, dst = (s4, d4) if version == "ip" else (s6, d6)
        nth_port = chain.count(proto) - 1
        key = (
            src.split(",")[nth],
            int(sp.split(",")[nth_port]),
            dst.split(",")[nth],
            int(dp.split(",")[nth_port]),
        )
        counts[key + ("frames",)] += 1
        counts[key + ("bytes",)] += int(length)
    return counts


@pytest.mark.parametrize("capture", CAPTURES)
def test_counts_match_tshark(capture):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent oracle for this test")
    path = SHARED_DATA / "pcaps" / capture
    if not path.exists():
        pytest.skip(f"{path} not found (needs ../shared/data)")
    ours: Counter = Counter()
    for e in _events(path):
        if e["event_type"] != "flow" or e["proto"] not in ("TCP", "UDP"):
            continue
        fwd = (e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"])
        rev = (e["dest_ip"], e["dest_port"], e["src_ip"], e["src_port"])
        fl = e["flow"]
        for key, pk, by in (
            (fwd, fl["pkts_toserver"], fl["bytes_toserver"]),
            (rev, fl["pkts_toclient"], fl["bytes_toclient"]),
        ):
            if pk:
                ours[key + ("frames",)] += pk
                ours[key + ("bytes",)] += by
    theirs = _tshark_counts(path, "tcp") + _tshark_counts(path, "udp")
    assert theirs, "tshark counted nothing: the test would prove nothing"
    assert ours == theirs


def test_flow_event_fields_and_states(tmp_path):
    pkts = tcp_session([b"hello"], replies=[b"world"])
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    fin = (
        Ether()
        / IP(src="10.0.0.2", dst="10.0.0.1")
        / TCP(sport=80, dport=40000, flags="FA", seq=5006, ack=1007)
    )
    fin.time = pkts[-1].time + 1.5
    events = _events(write_pcap(tmp_path / "a.pcap", [*pkts, fin]))
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == 1
    e = flows[0]
    assert (e["src_ip"], e["src_port"], e["dest_ip"], e["dest_port"], e["proto"]) == (
        "10.0.0.1",
        40000,
        "10.0.0.2",
        80,
        "TCP",
    )
    f = e["flow"]
    assert (f["pkts_toserver"], f["pkts_toclient"]) == (4, 3)
    assert f["state"] == "closed" and f["reason"] == "shutdown" and f["alerted"] is False
    assert f["age"] == 1 and f["start"].startswith("2011-03-13T")
    assert e["tcp"]["syn"] and e["tcp"]["fin"] and e["tcp"]["tcp_flags_ts"] == "1b"
    assert events[-1]["event_type"] == "stats"
    assert events[-1]["stats"]["flow"]["closed"] == 1


def test_scan_writes_flow_events_with_alerted(tmp_path):
    rules = tmp_path / "t.rules"
    rules.write_text('alert tcp any any -> any 80 (msg:"get"; content:"GET "; depth:4; sid:1;)\n')
    eve = tmp_path / "eve.json"
    assert (
        main(["scan", str(REPO / "pcaps" / "wikipedia.pcap"), "--rules", str(rules), "--eve", str(eve)]) == 0
    )
    events = [json.loads(line) for line in eve.read_text().splitlines()]
    alerted_ids = {e["flow_id"] for e in events if e["event_type"] == "alert"}
    flows = {e["flow_id"]: e for e in events if e["event_type"] == "flow"}
    assert len(flows) == 34 and alerted_ids
    assert {i for i, e in flows.items() if e["flow"]["alerted"]} == alerted_ids
    assert events[-1]["event_type"] == "stats"


def test_flows_command(tmp_path, capsys):
    out = tmp_path / "flows.json"
    assert main(["flows", str(REPO / "pcaps" / "wikipedia.pcap"), "--eve", str(out)]) == 0
    assert "34 flows" in capsys.readouterr().out
    kinds = Counter(json.loads(line)["event_type"] for line in out.read_text().splitlines())
    assert kinds == {"flow": 34, "stats": 1}


def test_midstream_session_is_established_only_in_midstream_mode(tmp_path):
    """Suricata's stream.midstream: without it, a session whose handshake the capture
    lacks stays "new" (and gets the new-flow timeout); with it, it is established."""
    from dpi.settings import load_settings

    path = write_pcap(tmp_path / "a.pcap", tcp_session([b"hello"], replies=[b"world"])[3:])
    for assignments, state in (([], "new"), (["stream.midstream=true"], "established")):
        out = io.StringIO()
        flows_only([str(path)], out, settings=load_settings(None, assignments))
        (flow,) = [json.loads(x) for x in out.getvalue().splitlines() if '"event_type":"flow"' in x]
        assert flow["flow"]["state"] == state, assignments
