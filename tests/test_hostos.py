"""host-os-policy lookup: the most specific network wins, IPv4 and IPv6 apart, default elsewhere."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpi.defrag.config import DEFRAG_POLICIES
from dpi.hostos import (
    DEFRAG_POLICY_OF_HOST_OS,
    HOST_OS_POLICIES,
    HostPolicyError,
    HostPolicyMap,
    defrag_policy_map,
    stream_policy_map,
)
from dpi.settings import Settings
from dpi.stream.tcp import STREAM_POLICIES

IPV4_MAPPED = 0xFFFF_0000_0000
MASK64 = (1 << 64) - 1


def halves(addresses):
    """(hi, lo) uint64 columns as the decoder fills them (IPv4 mapped to ::ffff:a.b.c.d)."""
    values = []
    for a in addresses:
        ip = ipaddress.ip_address(a)
        values.append(IPV4_MAPPED | int(ip) if ip.version == 4 else int(ip))
    hi = np.array([v >> 64 for v in values], dtype=np.uint64)
    lo = np.array([v & MASK64 for v in values], dtype=np.uint64)
    return hi, lo


def names_of(policy_map, addresses):
    hi, lo = halves(addresses)
    return [policy_map.names[i] for i in policy_map.lookup(hi, lo)]


def test_most_specific_network_wins_ipv4():
    m = HostPolicyMap(
        {
            "windows": ["0.0.0.0/0"],
            "linux": ["10.0.0.0/8"],
            "solaris": ["10.1.0.0/16", "192.168.7.7"],
            "first": ["10.1.2.0/24"],
        },
        "bsd",
        STREAM_POLICIES,
    )
    got = names_of(m, ["10.1.2.3", "10.1.3.3", "10.2.0.1", "192.168.7.7", "192.168.7.8", "8.8.8.8", "::1"])
    assert got == ["first", "solaris", "linux", "solaris", "windows", "windows", "bsd"]


def test_most_specific_network_wins_ipv6_and_families_stay_apart():
    m = HostPolicyMap(
        {"linux": ["2001:db8::/32"], "windows": ["2001:db8:1::/48", "::/0"], "last": ["2001:db8:1::5"]},
        "bsd",
        STREAM_POLICIES,
    )
    got = names_of(m, ["2001:db8:1::5", "2001:db8:1::6", "2001:db8:2::1", "fe80::1", "10.0.0.1", "::"])
    # ::/0 is IPv6 only, as in Suricata's separate IPv4 tree: 10.0.0.1 gets the default
    assert got == ["last", "windows", "linux", "windows", "bsd", "windows"]


def test_default_everywhere_when_nothing_is_named_and_shape_is_kept():
    m = HostPolicyMap({"linux": []}, "windows", STREAM_POLICIES)
    hi, lo = halves(["1.2.3.4", "::1", "255.255.255.255", "ffff::"])
    out = m.lookup(hi.reshape(2, 2), lo.reshape(2, 2))
    assert out.dtype == np.uint8 and out.shape == (2, 2)
    assert (out == STREAM_POLICIES.index("windows")).all()
    assert m.lookup(np.zeros(0, np.uint64), np.zeros(0, np.uint64)).shape == (0,)


def test_default_keyword_comma_lists_and_brackets():
    m = HostPolicyMap({"linux": ["default"], "solaris": ["[10.0.0.1, 10.0.0.2]"]}, "bsd", STREAM_POLICIES)
    assert names_of(m, ["1.1.1.1", "10.0.0.2", "::2"]) == ["linux", "solaris", "bsd"]


def test_unknown_policy_and_bad_entries_are_errors_naming_them():
    with pytest.raises(HostPolicyError, match="'plan9'"):
        HostPolicyMap({"plan9": ["10.0.0.0/8"]}, "bsd", STREAM_POLICIES)
    with pytest.raises(HostPolicyError, match="'nope'"):
        HostPolicyMap({}, "nope", STREAM_POLICIES)
    with pytest.raises(HostPolicyError, match="10.0.0.0/33"):
        HostPolicyMap({"linux": ["10.0.0.0/33"]}, "bsd", STREAM_POLICIES)
    with pytest.raises(HostPolicyError, match="not an address"):
        HostPolicyMap({"linux": ["10.0.0.1-10.0.0.9"]}, "bsd", STREAM_POLICIES)
    with pytest.raises(HostPolicyError, match="both 'linux' and 'windows'"):
        HostPolicyMap({"linux": ["10.0.0.0/8"], "windows": ["10.1.1.1/8"]}, "bsd", STREAM_POLICIES)
    # a TCP-only name is unknown to the defrag engine unless translated
    with pytest.raises(HostPolicyError, match="'hpux11'"):
        HostPolicyMap({"hpux11": ["10.0.0.0/8"]}, "bsd", DEFRAG_POLICIES)


def test_defrag_map_uses_suricatas_translation_of_tcp_only_names():
    # Suricata's defrag.c: hpux10/irix read as bsd, old-linux as linux, old-solaris, hpux11
    # and macos as first, vista and windows2k3 as windows
    expected = {
        "hpux10": "bsd",
        "irix": "bsd",
        "old-linux": "linux",
        "old-solaris": "first",
        "hpux11": "first",
        "macos": "first",
        "vista": "windows",
        "windows2k3": "windows",
        "bsd-right": "bsd-right",
        "solaris": "solaris",
        "last": "last",
    }
    hosts = {name: [f"10.0.{i}.0/24"] for i, name in enumerate(expected)}
    cfg = Settings(host_os_policy=hosts)
    addresses = [f"10.0.{i}.9" for i in range(len(expected))] + ["11.0.0.1"]
    assert names_of(defrag_policy_map(cfg), addresses) == [*expected.values(), "bsd"]
    stream = names_of(stream_policy_map(cfg), addresses)
    assert stream[:-1] == [("solaris" if n == "old-solaris" else n) for n in expected]
    assert set(DEFRAG_POLICY_OF_HOST_OS.values()) <= set(DEFRAG_POLICIES)
    assert set(HOST_OS_POLICIES) >= set(expected)


def test_default_policy_comes_from_the_settings():
    cfg = Settings(host_os_policy={"linux": ["10.0.0.0/8"]})
    cfg.stream.policy = "windows"
    cfg.defrag.policy = "solaris"
    assert names_of(stream_policy_map(cfg), ["10.0.0.1", "9.9.9.9"]) == ["linux", "windows"]
    assert names_of(defrag_policy_map(cfg), ["10.0.0.1", "9.9.9.9"]) == ["linux", "solaris"]


# -- against a naive per-address check with the standard library --------------------------

POLICIES = ("bsd", "linux", "windows", "solaris", "first", "last")
# a few anchors so that random networks nest and addresses land inside them
V4_ANCHORS = [0x0A000000, 0x0A010203, 0xC0A80000, 0x08080808]
V6_ANCHORS = [0x20010DB8 << 96, (0x20010DB8 << 96) | (1 << 80) | 5, 0xFE80 << 112]


@st.composite
def v4_networks(draw):
    prefix = draw(st.integers(0, 32))
    base = draw(st.one_of(st.sampled_from(V4_ANCHORS), st.integers(0, 2**32 - 1)))
    return ipaddress.IPv4Network((base, prefix), strict=False)


@st.composite
def v6_networks(draw):
    prefix = draw(st.integers(0, 128))
    base = draw(st.one_of(st.sampled_from(V6_ANCHORS), st.integers(0, 2**128 - 1)))
    return ipaddress.IPv6Network((base, prefix), strict=False)


@st.composite
def addresses_near(draw, networks):
    """Addresses inside the networks (first, last, random) and anywhere at all."""
    out = []
    for net in networks:
        size = net.num_addresses
        out.append(net.network_address + draw(st.integers(0, size - 1)))
        out.append(net.network_address)
        out.append(net.broadcast_address)
    out += draw(st.lists(st.ip_addresses(v=4), max_size=10))
    out += draw(st.lists(st.ip_addresses(v=6), max_size=10))
    return out


def naive(networks: dict, default: str, address) -> str:
    # the address columns cannot tell ::ffff:a.b.c.d from a.b.c.d: both are IPv4 there
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    best, best_len = default, -1
    for net, policy in networks.items():
        if net.version == address.version and address in net and net.prefixlen > best_len:
            best, best_len = policy, net.prefixlen
    return best


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_vectorised_lookup_matches_a_naive_check(data):
    nets = data.draw(st.lists(st.one_of(v4_networks(), v6_networks()), max_size=12))
    assigned = {}
    for net in nets:
        assigned.setdefault(net, data.draw(st.sampled_from(POLICIES)))  # one policy per network
    default = data.draw(st.sampled_from(POLICIES))
    hosts: dict[str, list[str]] = {}
    for net, policy in assigned.items():
        # single hosts are written without a prefix length, as users do
        text = str(net.network_address) if net.num_addresses == 1 else str(net)
        hosts.setdefault(policy, []).append(text)
    m = HostPolicyMap(hosts, default, STREAM_POLICIES)
    addresses = data.draw(addresses_near(list(assigned)))
    got = names_of(m, [str(a) for a in addresses])
    assert got == [naive(assigned, default, a) for a in addresses]
