"""The rule-content corpus helper used by the matcher's tests and benchmarks."""

from __future__ import annotations

import pytest

from dpi.match.corpus import decode_content, load_contents, rule_contents, split_options, unique_contents
from tests.conftest import SHARED_DATA

SHARED = SHARED_DATA


def test_decode_content_hex_and_escapes():
    assert decode_content('"GET "') == b"GET "
    assert decode_content('"|00 01|ab|ff|"') == b"\x00\x01ab\xff"
    assert decode_content('"a|3A20|b"') == b"a: b"
    assert decode_content(r'"say \"hi\"\; ok\\"') == b'say "hi"; ok\\'
    with pytest.raises(ValueError):
        decode_content('"|00 01"')
    with pytest.raises(ValueError):
        decode_content("unquoted")


def test_split_options_respects_quotes_and_escapes():
    body = r'msg:"a; b"; content:"x\;y"; nocase; sid:1;'
    assert split_options(body) == [("msg", '"a; b"'), ("content", r'"x\;y"'), ("nocase", ""), ("sid", "1")]


def test_rule_contents_nocase_and_negation():
    rule = (
        'alert tcp any any -> any 80 (msg:"t"; content:"GET"; http_method; content:"User-Agent|3a|"; nocase; '
        'content:!"curl"; nocase; content:"|0d 0a|"; sid:1;)'
    )
    assert rule_contents(rule) == [(b"GET", False), (b"User-Agent:", True), (b"\r\n", False)]


def test_unique_contents_folds_nocase_duplicates():
    patterns = [b"Abc", b"aBC", b"abc", b"xyz", b"Abc"]
    nocase = [True, True, False, False, True]
    assert unique_contents(patterns, nocase) == ([b"Abc", b"abc", b"xyz"], [True, False, False])
    assert unique_contents(patterns, nocase, limit=2) == ([b"Abc", b"abc"], [True, False])


@pytest.mark.needs_shared
def test_et_open_has_many_contents():
    rules = SHARED / "rules" / "et-open.rules"
    if not rules.exists():
        pytest.skip(f"shared rules not found at {rules}")
    patterns, nocase = load_contents(rules, limit=5000)
    assert len(patterns) == 5000
    assert all(patterns) and any(nocase) and not all(nocase)
    assert any(b"\x00" in p for p in patterns)  # hex runs were decoded
