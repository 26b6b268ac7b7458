"""`dpi scan` over IP fragments: reassembled datagrams are decoded again and inspected, with
the receiving host's fragment overlap policy."""

from __future__ import annotations

import pytest

from dpi.settings import load_settings
from tests.scanning import alerts_of, run_scan


def _fragments(payload: bytes, dst="10.0.0.2", size=16, ipv6=False):
    from scapy.layers.inet import IP, UDP, fragment
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
    from scapy.layers.l2 import Ether

    if ipv6:
        pkt = (
            IPv6(src="2001:db8::1", dst="2001:db8::2")
            / IPv6ExtHdrFragment()
            / UDP(sport=5000, dport=53)
            / payload
        )
        frags = fragment6(pkt, 80)
    else:
        frags = fragment(
            IP(src="10.0.0.1", dst=dst, id=77) / UDP(sport=5000, dport=53) / payload, fragsize=size
        )
    out = []
    for i, f in enumerate(frags):
        p = Ether() / f
        p.time = 1_300_000_000 + i * 0.001
        out.append(p)
    return out


RULE = 'alert udp any any -> any 53 (msg:"split"; content:"SECRET-PAYLOAD"; sid:7;)\n'


@pytest.mark.parametrize("ipv6", [False, True])
def test_content_split_across_fragments_alerts(tmp_path, ipv6):
    payload = b"x" * 30 + b"SECRET-PAYLOAD" + b"y" * 60
    frags = _fragments(payload, ipv6=ipv6)
    assert len(frags) >= 2
    result, events = run_scan(tmp_path, list(reversed(frags)), RULE)
    alerts = alerts_of(events)
    assert len(alerts) == 1
    assert alerts[0]["pcap_cnt"] == len(frags)  # the fragment that completed the datagram
    assert alerts[0]["dest_port"] == 53
    key = "ipv6" if ipv6 else "ipv4"
    assert result.defrag[f"{key}.reassembled"] == 1
    assert result.not_tracked["ip_fragment"] == len(frags)
    flows = [e for e in events if e["event_type"] == "flow"]
    assert len(flows) == 1 and flows[0]["flow"]["pkts_toserver"] == 1


def test_defrag_policy_decides_what_is_inspected(tmp_path):
    """Two fragments cover the same bytes with different data: 'first' keeps the first
    copy, 'last' the second; the rule sees what the policy rebuilds."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    udp = bytes(UDP(sport=5000, dport=53, len=8 + 16, chksum=0))
    good, evil = b"SECRET-PAYLOAD!!", b"harmless-bytes!!"

    def frag(offset, data, mf, t):
        p = (
            Ether()
            / IP(src="10.0.0.1", dst="10.0.0.2", id=9, proto=17, frag=offset // 8, flags="MF" if mf else 0)
            / data
        )
        p.time = 1_300_000_000 + t
        return p

    # the two copies of the tail arrive first; the head then completes the datagram
    pkts = [frag(8, evil, False, 0.0), frag(8, good, False, 0.001), frag(0, udp, True, 0.002)]
    for policy, alerts in (("first", 0), ("last", 1)):
        _, events = run_scan(tmp_path, pkts, RULE, settings=load_settings(None, [f"defrag.policy={policy}"]))
        assert len(alerts_of(events)) == alerts, policy
