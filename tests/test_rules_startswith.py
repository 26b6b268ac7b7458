"""`startswith`: the content must begin the buffer (Suricata's shorthand for offset 0 and a
depth of the content's length), with Suricata's restrictions."""

from __future__ import annotations

import pytest

from dpi.rules import parse_rules
from tests.conftest import tcp_session
from tests.scanning import alerts_of, run_scan

HEAD = 'alert tcp any any -> any 80 (msg:"x"; '


def _one(options: str):
    rs = parse_rules(HEAD + options + " sid:1;)\n")
    return rs.rules, [str(e) for e in rs.errors]


def test_startswith_is_offset_zero_and_depth_of_the_content():
    (rule,), errors = _one('content:"GET "; startswith;')
    assert not errors
    (c,) = rule.contents
    assert (c.offset, c.depth, c.startswith) == (0, 4, True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ('content:"GET"; startswith; depth:4;', "'depth' cannot be mixed with startswith"),
        ('content:"GET"; offset:1; startswith;', "'startswith' cannot be mixed with offset"),
        ('content:"a"; content:"GET"; distance:0; startswith;', "'startswith' cannot be mixed with offset"),
        ('content:"GET"; startswith; startswith;', "'startswith' given twice"),
        ('content:"GET"; startswith:1;', "'startswith' takes no value"),
        ("startswith;", "content"),
    ],
)
def test_startswith_errors(options, message):
    rules, errors = _one(options)
    assert not rules and len(errors) == 1 and message in errors[0], errors


def test_negated_startswith_is_allowed():
    (rule,), errors = _one('content:"a"; content:!"GET"; startswith;')
    assert not errors and rule.contents[1].negated and rule.contents[1].depth == 3


RULE = HEAD + 'flow:to_server; content:"GET "; startswith; sid:1;)\n'


@pytest.mark.parametrize(
    ("payload", "alerts"),
    [(b"GET / HTTP/1.1\r\n\r\n", 1), (b" GET / HTTP/1.1\r\n\r\n", 0), (b"POST /GET HTTP/1.1\r\n\r\n", 0)],
)
def test_startswith_alerts_only_at_the_start(tmp_path, payload, alerts):
    _, events = run_scan(tmp_path, tcp_session([payload]), RULE)
    assert len(alerts_of(events)) == alerts
