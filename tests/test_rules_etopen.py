"""The rule parser on real rulesets from ../shared/data/rules (skipped when that folder is absent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dpi.rules import load_rules
from tests.conftest import SHARED_DATA

RULES_DIR = SHARED_DATA / "rules"
ET_OPEN = RULES_DIR / "et-open.rules"

pytestmark = pytest.mark.needs_shared


def _active_rule_count(path: Path) -> int:
    """Rules in a file counted independently of the parser: non-blank, non-comment logical lines."""
    count = 0
    continuing = False
    for line in path.read_bytes().decode("latin-1").split("\n"):
        stripped = line.strip()
        if not continuing and (not stripped or stripped.startswith("#")):
            continue
        if not continuing:
            count += 1
        continuing = stripped.endswith("\\")
    return count


@pytest.fixture(scope="module")
def et_open():
    if not ET_OPEN.is_file():
        pytest.skip(f"ET Open ruleset not found at {ET_OPEN} (needs ../shared/data beside the repo)")
    started = time.perf_counter()
    ruleset = load_rules([str(ET_OPEN)])
    return ruleset, time.perf_counter() - started


def test_et_open_loads_quickly_and_every_rule_is_accounted_for(et_open):
    ruleset, seconds = et_open
    summary = ruleset.summary(top=15)
    print(f"\nET Open: {summary}  ({seconds:.2f} s)")
    assert seconds < 20, f"loading ET Open took {seconds:.1f} s"
    active = _active_rule_count(ET_OPEN)
    assert active == 24827  # SOURCES.md: 24,827 active rules
    assert len(ruleset.rules) + len(ruleset.skipped) + len(ruleset.errors) == active
    # every rule we support in ET Open parses: an error here is a parser regression
    assert ruleset.errors == [], [str(e) for e in ruleset.errors[:5]]
    assert len(ruleset.rules) > 500


def test_et_open_skip_reasons(et_open):
    ruleset, _ = et_open
    reasons = ruleset.skip_reasons()
    assert reasons["unsupported protocol 'http'"] == 14544  # SOURCES.md: 14,544 active http rules
    assert reasons["unsupported protocol 'dns'"] == 3976
    # the rule language for packet and stream data is covered: what remains are app-layer
    # protocols and keywords, PCRE constructs a bounded engine cannot run, and a few rare
    # keywords; each skip names its reason and keyword
    assert reasons["pcre: backreference"] > 50
    assert not [r for r in reasons if "'flowbits'" in r or "'byte_" in r or "'isdataat'" in r]
    assert len(ruleset.rules) > 3000
    by_keyword = ruleset.skip_keywords()
    assert (by_keyword["protocol http"], by_keyword["protocol dns"]) == (14544, 3976)
    print("\nskipped by keyword:", by_keyword.most_common(12))
    assert sum(reasons.values()) == len(ruleset.skipped)
    assert all(s.sid > 0 and s.line > 0 for s in ruleset.skipped)


def test_et_open_loaded_rules_are_complete(et_open):
    ruleset, _ = et_open
    assert {r.proto for r in ruleset.rules} <= {"tcp", "udp", "icmp", "ip"}
    assert all(r.action == "alert" and r.msg and r.classtype for r in ruleset.rules)
    assert len({(r.gid, r.sid) for r in ruleset.rules}) == len(ruleset.rules)
    with_content = [r for r in ruleset.rules if any(not c.negated for c in r.contents)]
    assert all(r.fast_pattern_index is not None for r in with_content)
    # a known rule: ET ACTIVEX Viscom Movie Player Pro SDK ActiveX DrawText (sid 2010944, rev 2)
    (rule,) = [r for r in ruleset.rules if r.sid == 2010944]
    assert rule.rev == 2 and rule.proto == "tcp" and rule.priority == 1
    assert rule.src_ports.intervals == ((80, 80),) and rule.dst_ports.is_any
    assert rule.dst.contains("192.168.1.1") and not rule.src.contains("192.168.1.1")
    assert rule.flow.established and rule.flow.to_client
    assert [c.pattern for c in rule.contents] == [
        b"ActiveXObject",
        b"MOVIEPLAYER.MoviePlayerCtrl.1",
        b"DrawText",
    ]
    assert all(c.nocase for c in rule.contents) and rule.contents[1].distance == 0
    assert rule.fast_pattern_index == 1  # the longest content
    assert rule.category == "Attempted User Privilege Gain"


def test_snort2_community_rules_parse_without_errors():
    path = RULES_DIR / "snort2-community.rules"
    if not path.is_file():
        pytest.skip(f"Snort 2 community rules not found at {path}")
    ruleset = load_rules([str(path)])
    assert ruleset.errors == [], [str(e) for e in ruleset.errors[:5]]
    assert len(ruleset.rules) + len(ruleset.skipped) == _active_rule_count(path)
    assert ruleset.skip_reasons()["app-layer keyword"] > 0
    assert ruleset.skip_keywords()["http_uri"] > 0
