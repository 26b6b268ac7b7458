"""Reassembled TCP streams agree with Wireshark's "Follow TCP stream" on real captures.

tshark is an independent reassembler: for every TCP connection of the capture, the bytes
each side sent, in order, must be the bytes we deliver for that flow direction. Captures
with holes are left out on purpose (we skip a hole and say so; Wireshark shows no bytes
for it either, but where the later data lands is a policy question for the next issue).

tcpflow was tried as a second oracle and is not used: it writes Ethernet padding of short
frames into its stream files (zero bytes past the IP length), which is not stream data.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest

from dpi.output.eve import format_address
from dpi.stream import StreamConfig
from tests.conftest import SHARED_DATA
from tests.test_stream import reassemble

CAPTURES = [
    "zeek/http-get.pcap",
    "zeek/http-post.pcap",
    "zeek/http-pipelined-requests.pcap",
    "zeek/http-vlan.pcap",
    "zeek/http-qinq.pcap",
    "zeek/smtp.pcap",
    "zeek/pop3.pcap",
    "zeek/irc-basic.pcap",
    "zeek/ftp-ipv4.pcap",
    "zeek/ftp-ipv6.pcap",
    "zeek/http-100-continue.pcap",
    "zeek/wikipedia.pcap",
    "zeek/tcp-ssh-dups.pcap",
    "zeek/tls-google-duplicate.pcap",
    "dpkt/http.pcap",
    "dpkt/nb6-http.pcap",
    "scapy/http-chunked.pcap",
    "ndpi/smtp.pcap",
    "ndpi/http-ipv6.pcap",
    "tcpreplay/test.pcap",
    "chrissanders/http-ip4and6.pcapng",
]


def _endpoint(text: str) -> tuple[str, int]:
    addr, port = text.rsplit(":", 1)
    return str(ipaddress.ip_address(addr.strip("[]"))), int(port)


def tshark_streams(path) -> dict[tuple, bytes]:
    """{(src, dst): bytes} for every TCP connection, from tshark's follow,tcp,raw."""
    rows = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "tcp.stream", "-e", "frame.protocols"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # connections inside a tunnel (IP in UDP/L2TP, GRE, ...) are not decoded in this stage;
    # an ICMP error quoting a TCP header also nests IP, but is not a tunnel
    tunneled = set()
    for row in rows:
        sid, layers = row.split()[0], row.split()[1].split(":")
        if layers.count("ip") + layers.count("ipv6") > 1 and "icmp" not in layers and "icmpv6" not in layers:
            tunneled.add(int(sid))
    args = []
    for sid in sorted({int(r.split()[0]) for r in rows} - tunneled):
        args += ["-z", f"follow,tcp,raw,{sid}"]
    out = subprocess.run(
        ["tshark", "-r", str(path), "-q", *args], capture_output=True, text=True, check=True
    ).stdout
    streams: dict[tuple, bytearray] = {}
    node0 = node1 = None
    for line in out.splitlines():
        if line.startswith("Node 0: "):
            node0 = _endpoint(line[8:])
        elif line.startswith("Node 1: "):
            node1 = _endpoint(line[8:])
        elif line.startswith("\t") and node0:
            streams.setdefault((node1, node0), bytearray()).extend(bytes.fromhex(line.strip()))
        elif line and node0 and all(c in "0123456789abcdef" for c in line):
            streams.setdefault((node0, node1), bytearray()).extend(bytes.fromhex(line))
        elif line.startswith("====="):
            node0 = node1 = None if not line else node0
    return {k: bytes(v) for k, v in streams.items()}


@pytest.mark.parametrize("capture", CAPTURES)
def test_streams_match_wireshark_follow(capture):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the independent oracle for this test")
    path = SHARED_DATA / "pcaps" / capture
    if not path.exists():
        pytest.skip(f"{path} not found (needs ../shared/data)")
    ours, streams, flows = reassemble(
        path, StreamConfig(depth=0, midstream=True)
    )  # whole streams, as Wireshark
    assert streams.stats()["gaps"] == 0, "a capture with holes: choose another"
    theirs = tshark_streams(path)
    mine = {}
    for (f, d), data in ours.items():
        if flows.proto[f] != 6:
            continue
        ver = int(flows.ip_version[f])
        a = (format_address(flows.a_hi[f], flows.a_lo[f], ver), int(flows.a_port[f]))
        b = (format_address(flows.b_hi[f], flows.b_lo[f], ver), int(flows.b_port[f]))
        client, server = (a, b) if flows.client_is_a[f] else (b, a)
        mine[(client, server) if d == 0 else (server, client)] = data
    theirs = {k: v for k, v in theirs.items() if v}
    assert theirs, "tshark followed nothing: the test would prove nothing"
    assert set(mine) == set(theirs)
    for key, data in theirs.items():
        assert mine[key] == data, key
