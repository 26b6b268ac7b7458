"""The generator's reference content matcher: hand cases of the rule language, and a differential
run against the detection engine on hundreds of random rules and payloads at once."""

from __future__ import annotations

import random

import pytest

from dpi.gen.oracle import contents_match
from dpi.rules.parser import parse_rules
from tests.scanning import alerts_of, run_scan


def _contents(options: str):
    rules = parse_rules(f"alert udp any any -> any any ({options} sid:1;)")
    assert rules.rules, rules.errors or rules.skipped
    return rules.rules[0].contents


@pytest.mark.parametrize(
    ("options", "payload", "expected"),
    [
        ('content:"abc";', b"xxabcxx", True),
        ('content:"abc"; offset:3;', b"xxabcxx", False),
        ('content:"abc"; depth:4;', b"xxabcxx", False),
        ('content:"abc"; depth:5;', b"xxabcxx", True),
        ('content:"ABC"; nocase;', b"xxabcxx", True),
        ('content:"ABC";', b"xxabcxx", False),
        ('content:"a"; content:"b"; distance:1; within:2;', b"a.b", True),
        ('content:"a"; content:"b"; distance:0; within:1;', b"a.b", False),
        # the second content fails after the first occurrence of the first, holds after a later one
        ('content:"a"; content:"b"; within:1;', b"a.ab", True),
        ('content:"a"; content:!"b"; within:1;', b"a.b", True),
        ('content:"a"; content:!"b"; within:2;', b"a.b", False),
        ('content:"a"; content:!"b"; within:2;', b"ab.", False),
        ('content:"|00 01|"; offset:2; depth:2; content:"z"; distance:0;', b"..\x00\x01..z", True),
        ('content:"end"; endswith;', b"the end", True),
        ('content:"end"; endswith;', b"the end.", False),
        ('content:"the"; startswith;', b"the end", True),
        ('content:"end"; startswith;', b"the end", False),
    ],
)
def test_rule_language_cases(options, payload, expected):
    assert contents_match(_contents(options), payload) is expected


def _random_rule(r: random.Random) -> str:
    parts = []
    for k in range(r.randint(1, 3)):
        pattern = "".join(r.choice("ab") for _ in range(r.randint(1, 3)))
        neg = "!" if k > 0 and r.random() < 0.2 else ""
        opts = [f'content:{neg}"{pattern}";']
        if r.random() < 0.3:
            opts.append("nocase;")
        if k > 0 and r.random() < 0.6:
            opts.append(f"distance:{r.randint(0, 3)};")
            if r.random() < 0.6:
                opts.append(f"within:{r.randint(len(pattern) + 3, len(pattern) + 8)};")
        elif r.random() < 0.4:
            opts.append(f"offset:{r.randint(0, 4)};")
            if r.random() < 0.5:
                opts.append(f"depth:{r.randint(len(pattern), len(pattern) + 5)};")
        parts.append(" ".join(opts))
    if not any("!" not in p for p in parts):
        parts.insert(0, 'content:"a";')
    return " ".join(parts)


def test_agrees_with_the_detection_engine(tmp_path):
    """Random rules over 'a'/'b' text (dense overlapping matches): each rule alone on its own
    port, each payload in its own datagram; the engine alerts exactly where the reference says."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    r = random.Random(7)
    rules, packets, expected = [], [], set()
    for i in range(300):
        options = _random_rule(r)
        payload = "".join(r.choice("abAB.") for _ in range(r.randint(0, 14))).encode()
        rules.append(f"alert udp any any -> any {5000 + i} ({options} sid:{100 + i};)")
        packets.append(
            Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=5000 + i) / payload
        )
        if payload and contents_match(_contents(options), payload):
            expected.add(100 + i)
    _, events = run_scan(tmp_path, packets, "\n".join(rules) + "\n")
    fired = {e["alert"]["signature_id"] for e in alerts_of(events)}
    assert 30 < len(expected) < 270  # both verdicts are well represented
    assert fired == expected
