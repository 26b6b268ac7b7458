"""The labelled generator: deterministic for a seed, and its labels hold when the capture is read
back with the reference readers (dpkt for the flows and their bytes, tshark for fragments)."""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict

import dpkt
import numpy as np
import pytest

from dpi.gen.generator import GenConfig, generate, write_generated
from dpi.gen.labels import LabelError, read_labels
from dpi.rules.parser import load_rules
from tests.conftest import REPO

SAMPLE_RULES = str(REPO / "rules" / "dpi-sample.rules")


def _ip_text(raw: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(raw))


def read_back(pcap: bytes):
    """Per flow key (proto, client endpoint, server endpoint as in the labels, either order):
    the bytes of each direction (TCP by sequence number, duplicates once; UDP datagrams end to end),
    the IP versions and VLAN ids seen, and the frame count. Only whole, unfragmented packets."""
    import io

    flows = defaultdict(lambda: {"data": defaultdict(dict), "versions": set(), "vlans": set(), "frames": 0})
    for _, frame in dpkt.pcap.Reader(io.BytesIO(pcap)):
        eth = dpkt.ethernet.Ethernet(frame)
        ip = eth.data
        vlan = eth.vlan_tags[0].id if getattr(eth, "vlan_tags", None) else None
        l4 = ip.data
        if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            raise AssertionError("only whole TCP and UDP packets expected here")
        a, b = (_ip_text(ip.src), l4.sport), (_ip_text(ip.dst), l4.dport)
        proto = "TCP" if isinstance(l4, dpkt.tcp.TCP) else "UDP"
        key = (proto, min(a, b), max(a, b))
        rec = flows[key]
        rec["frames"] += 1
        rec["versions"].add(ip.v)
        rec["vlans"].add(vlan)
        if l4.data:
            place = l4.seq if proto == "TCP" else len(rec["data"][a])
            rec["data"][a][place] = bytes(l4.data)
    out = {}
    for key, rec in flows.items():
        streams = {}
        for sender, pieces in rec["data"].items():
            if key[0] == "TCP":
                ordered = sorted(pieces.items())
                base = ordered[0][0]
                # sequence numbers may wrap: order by distance from the first segment
                ordered = sorted(pieces.items(), key=lambda kv: (kv[0] - base) % 2**32)
                streams[sender] = b"".join(v for _, v in ordered)
            else:
                streams[sender] = b"".join(pieces[i] for i in sorted(pieces))
        out[key] = {**rec, "streams": streams}
    return out


def _key(flow):
    a, b = (flow["src_ip"], flow["src_port"]), (flow["dest_ip"], flow["dest_port"])
    return (flow["proto"], min(a, b), max(a, b))


@pytest.fixture(scope="module")
def generated():
    return generate(GenConfig(flows=300, seed=21, rules=[SAMPLE_RULES], vlan_share=0.2, ipv6_share=0.2))


def test_same_seed_same_capture_and_labels(generated):
    again = generate(GenConfig(flows=300, seed=21, rules=[SAMPLE_RULES], vlan_share=0.2, ipv6_share=0.2))
    assert np.array_equal(again.pcap, generated.pcap)
    assert again.labels.flows == generated.labels.flows
    other = generate(GenConfig(flows=300, seed=22, rules=[SAMPLE_RULES], vlan_share=0.2, ipv6_share=0.2))
    assert not np.array_equal(other.pcap, generated.pcap)


def test_labels_match_what_dpkt_reads_back(generated):
    flows = read_back(generated.pcap.tobytes())
    labels = generated.labels.flows
    assert len(flows) == len(labels) == 300
    rules = {r.sid: r for r in load_rules(SAMPLE_RULES)}
    apps = defaultdict(int)
    for flow in labels:
        seen = flows[_key(flow)]
        client, server = (flow["src_ip"], flow["src_port"]), (flow["dest_ip"], flow["dest_port"])
        to_server, to_client = seen["streams"].get(client, b""), seen["streams"].get(server, b"")
        assert len(to_server) + len(to_client) == flow["payload_bytes"]
        assert seen["versions"] == {flow["ip_version"]}
        assert seen["vlans"] == {flow["vlan"]}
        apps[flow["app"]] += 1
        if flow["app"] == "http":
            request = dpkt.http.Request(to_server)
            assert request.method in ("GET", "POST") and request.headers["host"]
            assert to_client.startswith(b"HTTP/1.1 200 OK\r\n")
        elif flow["app"] == "dns-udp":
            query = dpkt.dns.DNS(to_server[: len(to_server) // _queries(to_server)])
            assert query.qd and query.qd[0].type == dpkt.dns.DNS_A
        elif flow["app"] == "dns-tcp":
            length = int.from_bytes(to_server[:2], "big")
            assert dpkt.dns.DNS(to_server[2 : 2 + length]).qd
        elif flow["app"] == "tls":
            record = dpkt.ssl.TLSRecord(to_server)
            assert record.type == 22 and record.data[0] == 1  # a ClientHello
            assert dpkt.ssl.TLSRecord(to_client).type == 22
        elif flow["app"] == "smtp":
            assert to_client.startswith(b"220 ") and to_server.startswith(b"EHLO ")
        for e in flow["expect"]:
            # the rule's contents are there, in its direction, in order
            stream = to_server if e.get("direction", "to_server") == "to_server" else to_client
            if e["origin"] == "planted":
                contents = [c for c in rules[e["sid"]].contents if not c.negated]
                at = 0
                for c in contents:
                    hay = stream.lower() if c.nocase else stream
                    found = hay.find(c.pattern.lower() if c.nocase else c.pattern, at)
                    assert found >= 0, (e["sid"], c.pattern)
                    at = found + len(c.pattern)
    assert set(apps) >= {"http", "dns-udp", "tls", "smtp", "tcp-noise", "udp-noise", "planted"}
    assert sum(1 for f in labels if f["app"] == "planted") == 30


def _queries(stream: bytes) -> int:
    """DNS over UDP flows here send one or two queries of the same length."""
    half = len(stream) // 2
    return 2 if len(stream) % 2 == 0 and stream[2:4] == stream[half + 2 : half + 4] and half > 12 else 1


def test_label_file_round_trip_and_errors(tmp_path, generated):
    pcap, labels = tmp_path / "g.pcap", tmp_path / "g.labels"
    write_generated(generated, pcap, labels)
    back = read_labels(labels)
    assert back.flows == generated.labels.flows
    assert back.capture["seed"] == 21 and back.capture["packets"] == generated.packets
    lines = labels.read_text().splitlines()
    broken = tmp_path / "broken.labels"
    broken.write_text("\n".join(lines[:5] + ["{not json"] + lines[5:]))
    with pytest.raises(LabelError, match=r"broken.labels:6: not JSON"):
        read_labels(broken)
    headless = tmp_path / "headless.labels"
    headless.write_text("\n".join(lines[1:]))
    with pytest.raises(LabelError, match="no capture record"):
        read_labels(headless)


def test_tls_share_sets_the_encrypted_share():
    shares = []
    for tls in (0.0, 0.5, 0.9):
        g = generate(GenConfig(flows=400, seed=3, tls_share=tls))
        flows = g.labels.flows
        tls_flows = sum(1 for f in flows if f["app"] == "tls")
        assert abs(tls_flows / len(flows) - tls) < 0.08
        payload = sum(f["payload_bytes"] for f in flows)
        plain = sum(f["plaintext_bytes"] for f in flows)
        shares.append(plain / payload)
        if tls == 0.0:
            assert plain == payload
    assert shares[0] > shares[1] > shares[2]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown evasion"):
        from dpi.gen.evasion import parse_evasions

        parse_evasions("tcp-seg,ip-shred")
    with pytest.raises(ValueError, match="multiple of 8"):
        generate(GenConfig(flows=10, evasions=("ip-frag",), frag_size=12))
    with pytest.raises(ValueError, match="ipv6-share"):
        generate(GenConfig(flows=10, ipv6_share=-0.1))
    with pytest.raises(ValueError, match="tls-share"):
        generate(GenConfig(flows=10, tls_share=1.5))
    with pytest.raises(ValueError, match="sid"):
        generate(GenConfig(flows=10, rules=[SAMPLE_RULES], sids=[1]))


# a bad checksum, a fragment tshark cannot place, or a malformed packet below the application
# (planted payloads are not well-formed DNS or TLS, nor meant to be)
BROKEN = (
    'ip.checksum.status == "Bad" || tcp.checksum.status == "Bad" || udp.checksum.status == "Bad"'
    " || ip.fragment.error || ipv6.fragment.error || ip.fragment.overlap || ipv6.fragment.overlap"
    " || (_ws.malformed && !dns && !tls && !http && !smtp && !imf)"
)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize(
    "evasion", [("ip-frag", "tcp-seg"), ("ip6-frag", "tcp-ooo"), ("ip-frag-ooo", "tcp-dup")]
)
def test_tshark_reassembles_the_fragments_without_errors(tmp_path, evasion):
    g = generate(GenConfig(flows=60, seed=4, rules=[SAMPLE_RULES], evasions=evasion, planted=10))
    pcap = tmp_path / "f.pcap"
    write_generated(g, pcap, tmp_path / "f.labels")
    checks = [
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
    ]
    errors = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *checks, "-Y", BROKEN],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert errors.strip() == ""
    fragments = subprocess.run(
        [
            "tshark",
            "-n",
            "-r",
            str(pcap),
            "-Y",
            "ip.flags.mf == 1 || ipv6.fraghdr.more == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert len(fragments) > 50
    # every planted flow's conversation, reassembled from its fragments, is one tshark conversation
    conv = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-q", "-z", "conv,tcp", "-z", "conv,udp"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    rows = [line for line in conv.splitlines() if "<->" in line]
    assert len(rows) == len(g.labels.flows)
