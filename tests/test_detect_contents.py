"""Content verification agrees with a naive reference on random rules and payloads.

Datagrams are inspected one packet at a time, so a straightforward recursive search over
every placement of every content (Suricata's semantics: offset/depth from the buffer
start, distance/within from the previous match's end, negation, nocase) is the oracle."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpi.rules import parse_rules
from tests.scanning import alerts_of, run_scan

ALPHABET = b"abAB"  # patterns; payloads draw from a dense or a sparse alphabet
PAYLOAD_ALPHABETS = (b"ab", b"abcd", b"abcdefgh")


def _occurrences(data: bytes, pattern: bytes, nocase: bool):
    hay, needle = (data.lower(), pattern.lower()) if nocase else (data, pattern)
    return [i for i in range(len(hay) - len(needle) + 1) if hay[i : i + len(needle)] == needle]


def naive_match(data: bytes, contents) -> bool:
    def fits(c, start, prev_end):
        end = start + len(c.pattern)
        if c.relative:
            dist = c.distance or 0
            if start < max(prev_end + dist, 0):
                return False
            if c.within is not None and end > prev_end + dist + c.within:
                return False
        else:
            if start < (c.offset or 0):
                return False
            if c.depth is not None and end > (c.offset or 0) + c.depth:
                return False
        return True

    def search(k, prev_end):
        if k == len(contents):
            return True
        c = contents[k]
        starts = [s for s in _occurrences(data, c.pattern, c.nocase) if fits(c, s, prev_end)]
        if c.negated:
            return not starts and search(k + 1, prev_end)
        return any(search(k + 1, s + len(c.pattern)) for s in starts)

    return search(0, 0)


@st.composite
def content_option(draw, first: bool):
    pattern = draw(st.binary(min_size=1, max_size=3).map(lambda b: bytes(ALPHABET[x % 4] for x in b)))
    parts = [f'content:{"!" if draw(st.booleans()) and not first else ""}"{pattern.decode()}"']
    if draw(st.booleans()):
        parts.append("nocase")
    mode = draw(
        st.sampled_from(["none", "absolute", "relative", "relative"] if not first else ["none", "absolute"])
    )
    if mode == "absolute":
        if draw(st.booleans()):
            parts.append(f"offset:{draw(st.integers(0, 6))}")
        if draw(st.booleans()):
            parts.append(f"depth:{draw(st.integers(len(pattern), 10))}")
    elif mode == "relative":
        if draw(st.booleans()):
            parts.append(f"distance:{draw(st.integers(-3, 5))}")
        if draw(st.booleans()):
            parts.append(f"within:{draw(st.integers(len(pattern), 8))}")
    return "; ".join(parts)


@st.composite
def rule_text(draw, sid: int):
    n = draw(st.integers(1, 3))
    opts = [draw(content_option(first=(i == 0))) for i in range(n)]
    return f'alert udp any any -> any any (msg:"r{sid}"; {"; ".join(opts)}; sid:{sid};)'


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rules=st.lists(st.integers(), min_size=1, max_size=6).flatmap(
        lambda xs: st.tuples(*[rule_text(sid=i + 1) for i in range(len(xs))])
    ),
    payloads=st.sampled_from(PAYLOAD_ALPHABETS).flatmap(
        lambda alpha: st.lists(
            st.binary(min_size=1, max_size=16).map(lambda b: bytes(alpha[x % len(alpha)] for x in b)),
            min_size=1,
            max_size=8,
        )
    ),
)
def test_udp_content_rules_match_naive_reference(tmp_path, rules, payloads):
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    text = "\n".join(rules) + "\n"
    parsed = parse_rules(text)
    runnable = [r for r in parsed.rules if any(not c.negated for c in r.contents)]
    pkts = [
        Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000 + i, dport=2000) / p
        for i, p in enumerate(payloads)
    ]
    _, events = run_scan(tmp_path, pkts, text)
    got = sorted((a["pcap_cnt"], a["alert"]["signature_id"]) for a in alerts_of(events))
    expected = sorted(
        (i + 1, r.sid) for i, p in enumerate(payloads) for r in runnable if naive_match(p, r.contents)
    )
    assert got == expected, text


def test_within_counts_from_the_previous_match_plus_distance(tmp_path):
    """Suricata: a relative content must end within (distance + within) bytes of the
    previous match's end; 'hello1234world' matches distance:4; within:5."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    text = 'alert udp any any -> any any (msg:"w"; content:"hello"; content:"world"; '
    text += "distance:4; within:5; sid:1;)\n"
    payloads = [b"hello1234world", b"hello123world", b"hello12345world"]
    pkts = [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / p for p in payloads]
    _, events = run_scan(tmp_path, pkts, text)
    assert [a["pcap_cnt"] for a in alerts_of(events)] == [1]
    assert [naive_match(p, parse_rules(text).rules[0].contents) for p in payloads] == [True, False, False]
