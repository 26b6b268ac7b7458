"""Unit tests for the rule parser (dpi.rules): header, addresses, ports, options, errors."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dpi.rules import AddressSet, PortSet, RuleError, RuleSet, ip_to_int, load_rules, parse_rules
from dpi.rules.content import choose_fast_pattern, decode_content, pattern_strength
from dpi.rules.intervals import normalize, subtract
from dpi.rules.model import Content

HEADER = "alert tcp any any -> any any"


def parse_one(text: str, **kwargs) -> RuleSet:
    rs = parse_rules(text, filename="t.rules", **kwargs)
    assert len(rs.rules) + len(rs.skipped) + len(rs.errors) == 1, rs
    return rs


def rule_of(text: str, **kwargs):
    rs = parse_one(text, **kwargs)
    assert not rs.errors, [str(e) for e in rs.errors]
    assert not rs.skipped, rs.skipped
    return rs.rules[0]


def error_of(text: str, **kwargs) -> RuleError:
    rs = parse_one(text, **kwargs)
    assert len(rs.errors) == 1, (rs.rules, rs.skipped)
    return rs.errors[0]


def skip_reason(text: str, **kwargs) -> str:
    rs = parse_one(text, **kwargs)
    assert len(rs.skipped) == 1, (rs.rules, [str(e) for e in rs.errors])
    return rs.skipped[0].reason


def opts(body: str, header: str = HEADER) -> str:
    return f"{header} ({body} sid:1;)"


def column_of(text: str, needle: str) -> int:
    return text.index(needle) + 1


# -- whole rules ------------------------------------------------------------------------------------


def test_basic_rule_fields():
    text = (
        'alert tcp $HOME_NET any -> $EXTERNAL_NET 80 (msg:"ET Test \\"quoted\\" \\; msg"; '
        'flow:established,to_server; content:"GET"; depth:3; classtype:trojan-activity; '
        "reference:url,example.com/a; reference:cve,2024-1; "
        "metadata:created_at 2024_01_01, deployment Perimeter; sid:2000001; rev:7; gid:1;)"
    )
    r = rule_of(text)
    assert (r.action, r.proto, r.sid, r.rev, r.gid) == ("alert", "tcp", 2000001, 7, 1)
    assert r.msg == 'ET Test "quoted" ; msg'
    assert r.classtype == "trojan-activity"
    assert r.category == "A Network Trojan was detected"
    assert r.priority == 1  # from classification.config
    assert r.references == [("url", "example.com/a"), ("cve", "2024-1")]
    assert r.metadata == ["created_at 2024_01_01", "deployment Perimeter"]
    assert r.flow.established and r.flow.to_server and not r.flow.to_client
    assert r.file == "t.rules" and r.line == 1
    assert not r.bidirectional
    assert r.dst_ports == PortSet([(80, 80)])


def test_priority_rule_wins_then_classtype_then_default():
    assert rule_of(opts("classtype:trojan-activity; priority:4;")).priority == 4
    assert rule_of(opts("classtype:misc-activity;")).priority == 3
    assert rule_of(opts("classtype:bad-unknown;")).priority == 2
    plain = rule_of(opts('msg:"x";'))
    assert (plain.priority, plain.category, plain.classtype) == (3, "", None)


def test_custom_classification_file(tmp_path):
    path = tmp_path / "classification.config"
    path.write_text("# mine\nconfig classification: my-class,My Own Class,5\n")
    r = rule_of(opts("classtype:my-class;"), classification=str(path))
    assert (r.classtype, r.category, r.priority) == ("my-class", "My Own Class", 5)
    err = error_of(opts("classtype:trojan-activity;"), classification=str(path))
    assert "unknown classtype 'trojan-activity'" in err.message


def test_comments_blank_lines_and_several_rules():
    text = "\n".join(
        [
            "# a comment",
            "",
            "   ",
            opts('content:"a";').replace("sid:1", "sid:10"),
            "#alert tcp any any -> any any (sid:11;)",
            "  " + opts('content:"b";').replace("sid:1", "sid:12"),
        ]
    )
    rs = parse_rules(text)
    assert [r.sid for r in rs.rules] == [10, 12]
    assert [r.line for r in rs.rules] == [4, 6]
    assert not rs.errors and not rs.skipped


def test_multiline_rule_with_backslash_continuation():
    text = 'alert tcp any any -> any any (msg:"multi"; \\\n    content:"abc"; \\\n    nocase; sid:5;)\n'
    r = rule_of(text)
    assert r.sid == 5 and r.line == 1
    assert r.contents[0].pattern == b"abc" and r.contents[0].nocase


def test_multiline_error_points_at_the_physical_line_and_column():
    text = 'alert tcp any any -> any any (msg:"multi"; \\\n  content:"a|4|"; \\\n  sid:5;)\n'
    err = error_of(text)
    assert (err.line, err.column) == (2, len('  content:"a|') + 1)
    assert "odd number of hex digits" in err.message
    assert str(err).startswith("t.rules:2:")


def test_errors_do_not_stop_the_load_and_name_file_line_column():
    good = opts('content:"a";')
    bad = 'alert tcp any any -> any any (content:"a"; depth:zz; sid:2;)'
    rs = parse_rules("\n".join([good, bad, good.replace("sid:1", "sid:3")]), filename="x.rules")
    assert [r.sid for r in rs.rules] == [1, 3]
    (err,) = rs.errors
    assert (err.file, err.line, err.column, err.sid) == ("x.rules", 2, column_of(bad, "zz"), 2)
    assert "'depth' needs a number" in err.message
    assert str(err) == f"x.rules:2:{column_of(bad, 'zz')}: {err.message}"


@pytest.mark.parametrize(
    ("text", "message", "needle"),
    [
        (f'{HEADER} (msg:"no sid";)', "rule has no sid", "("),
        (opts("sid:2;"), "duplicated 'sid' keyword", "sid:1"),
        (f"{HEADER} (sid:0;)", "'sid' needs a whole number", "0;"),
        (f"{HEADER} (sid:abc;)", "'sid' needs a whole number", "abc"),
        (f'{HEADER} (msg:"x"; sid:1)', "not terminated by ';'", "sid:1"),
        (f'{HEADER} (msg "x"; sid:1;)', "expected ':' or ';' after keyword 'msg'", '"x"'),
        (f'{HEADER} (msg:"x"; sid:1;', "missing ')'", None),
        (f"{HEADER} (sid:1;) trailing", "unexpected text after the closing ')'", " trailing"),
        ("alert tcp any any -> any (sid:1;)", "rule header has 6 fields", "("),
        ("alert tcp any any -> any any any (sid:1;)", "rule header has 8 fields", "any (sid"),
        ("alert tcp any any any any any", "missing '('", None),
        ("alrt tcp any any -> any any (sid:1;)", "unknown action 'alrt'", "alrt"),
        ("alert tcp any any <- any any (sid:1;)", "invalid direction '<-'", "<-"),
        ("alert t$p any any -> any any (sid:1;)", "invalid protocol", "t$p"),
        (opts('msg:"a"; msg:"b";'), "duplicated 'msg' keyword", 'msg:"b"'),
        (opts("rev:1; rev:2;"), "duplicated 'rev' keyword", "rev:2"),
        (opts("reference:nocomma;"), "reference needs 'type,id'", "nocomma"),
    ],
)
def test_structural_errors(text, message, needle):
    err = error_of(text)
    assert message in err.message
    if needle is not None:
        assert err.column == column_of(text, needle)
    else:
        assert err.column >= 1


def test_duplicate_signature_keeps_higher_rev():
    first = opts("rev:1;").replace("sid:1", "sid:9")
    second = opts("rev:3;").replace("sid:1", "sid:9")
    rs = parse_rules(first + "\n" + second)
    assert [(r.sid, r.rev, r.line) for r in rs.rules] == [(9, 3, 2)]
    (err,) = rs.errors
    assert err.line == 1 and "duplicate signature gid 1 sid 9" in err.message
    assert len(rs.rules) + len(rs.skipped) + len(rs.errors) == 2


# -- skips ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alert http any any -> any any (sid:1;)", "unsupported protocol 'http'"),
        ("alert tcp-frame any any -> any any (sid:1;)", "unsupported protocol 'tcp-frame'"),
        ("sdrop tcp any any -> any any (sid:1;)", "unsupported action 'sdrop'"),
        ("log tcp any any -> any any (sid:1;)", "unsupported action 'log'"),
        (opts('content:"a"; pcre:"/(a)\\1/";'), "pcre: backreference"),
        (opts('content:"a"; pcre:"/a/U";'), "app-layer keyword"),
        (opts('http.uri; content:"a";'), "app-layer keyword"),
        (opts('content:"a"; http_uri;'), "app-layer keyword"),
        (opts("byte_test:1,>,2,0,dce;"), "byte_test: dce byte order (needs the DCERPC parser)"),
        (opts("stream_size:server,>,10;"), "unsupported keyword 'stream_size'"),
        (
            opts("threshold:type limit, track by_rule, count 1, seconds 60;"),
            "unsupported threshold track 'by_rule'",
        ),
        (opts("flow:no_frag;"), "unsupported flow option 'no_frag'"),
    ],
)
def test_skipped_rules_have_reasons(text, reason):
    rs = parse_one(text)
    (skipped,) = rs.skipped
    assert skipped.reason == reason
    assert (skipped.file, skipped.line, skipped.sid) == ("t.rules", 1, 1)


def test_skip_reasons_and_summary_count_everything():
    text = "\n".join(
        [
            "alert http any any -> any any (sid:1;)",
            "alert dns any any -> any any (sid:2;)",
            "alert http any any -> any any (sid:3;)",
            opts('content:"a"; http_uri;').replace("sid:1", "sid:4"),
            opts('content:"a";').replace("sid:1", "sid:5"),
            opts("depth:3;").replace("sid:1", "sid:6"),
        ]
    )
    rs = parse_rules(text)
    assert rs.skip_reasons() == {
        "unsupported protocol 'http'": 2,
        "unsupported protocol 'dns'": 1,
        "app-layer keyword": 1,
    }
    summary = rs.summary()
    assert (summary["loaded"], summary["skipped"], summary["errors"]) == (1, 4, 1)
    assert summary["top_skip_reasons"][0] == ("unsupported protocol 'http'", 2)
    assert "'depth' needs a preceding content" in summary["first_errors"][0]


# -- content ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("abc", b"abc"),
        ("|41 42|", b"AB"),
        ("|4142|", b"AB"),
        ("a|0d 0a|b", b"a\r\nb"),
        ("|00|x|FF fe|", b"\x00x\xff\xfe"),
        ('say \\"hi\\"', b'say "hi"'),
        ("a\\;b", b"a;b"),
        ("a\\\\b", b"a\\b"),
        ("a\\:b", b"a:b"),
        ("a:b", b"a:b"),
    ],
)
def test_decode_content(literal, expected):
    assert decode_content(literal) == expected


def test_content_in_rules_hex_escapes_and_negation():
    r = rule_of(opts('content:"|47 45 54|"; content:!"bad\\;x"; content: ! "a\\\\b\\"c";'))
    assert [c.pattern for c in r.contents] == [b"GET", b"bad;x", b'a\\b"c']
    assert [c.negated for c in r.contents] == [False, True, True]


def test_content_bytes_are_kept_exactly(tmp_path):
    path = tmp_path / "latin.rules"
    path.write_bytes(b'alert tcp any any -> any any (content:"caf\xe9"; sid:1;)\n')
    assert load_rules([str(path)]).rules[0].contents[0].pattern == b"caf\xe9"
    # text given as str is read as its UTF-8 bytes
    r = rule_of(opts('msg:"café"; content:"café";'))
    assert r.contents[0].pattern == "café".encode()
    assert r.msg == "café"


@pytest.mark.parametrize(
    ("body", "message", "needle"),
    [
        ('content:"a|4|";', "odd number of hex digits", "4|"),
        ('content:"a|4g|";', "invalid character 'g' in hex section", "g|"),
        ('content:"a|41";', "hex section is not closed", "|41"),
        ('content:"a\\nb";', "invalid escape '\\n'", "\\n"),
        ('content:"a"b";', "unescaped '\"' inside content", '"b";'),
        ('content:"";', "empty content", None),
        ("content:abc;", "content needs a quoted string", "abc"),
        ('content:"abc",depth 3;', "Snort 3 inline modifiers", '"abc"'),
        ("content;", "'content' needs a value", "content"),
    ],
)
def test_content_errors(body, message, needle):
    text = opts(body)
    err = error_of(text)
    assert message in err.message
    if needle is not None:
        assert err.column == column_of(text, needle)


# -- modifiers --------------------------------------------------------------------------------------


def test_modifiers_apply_to_the_preceding_content():
    r = rule_of(opts('content:"abc"; nocase; offset:2; depth:10; content:"de"; distance:-1; within:5;'))
    a, b = r.contents
    assert (a.nocase, a.offset, a.depth, a.distance, a.within, a.relative) == (True, 2, 10, None, None, False)
    assert (b.nocase, b.offset, b.depth, b.distance, b.within, b.relative) == (False, None, None, -1, 5, True)


def test_distance_and_within_on_the_first_content_are_accepted_like_suricata():
    # Suricata accepts them; with no previous match they count from the start of the buffer
    r = rule_of(opts('content:"abc"; distance:4; within:10;'))
    c = r.contents[0]
    assert (c.distance, c.within, c.relative) == (4, 10, True)


@pytest.mark.parametrize(
    ("body", "message", "needle"),
    [
        ("nocase;", "'nocase' needs a preceding content", "nocase"),
        ("depth:4;", "'depth' needs a preceding content", "depth"),
        ("within:4;", "'within' needs a preceding content", "within"),
        ("fast_pattern;", "'fast_pattern' needs a preceding content", "fast_pattern"),
        ('content:"abcd"; depth:3;', "depth 3 is smaller than the content length 4", "3;"),
        ('content:"abcd"; within:3;', "within 3 is smaller than the content length 4", "3;"),
        ('content:"ab"; offset:1; distance:2;', "'distance' cannot be mixed with offset/depth", "distance"),
        ('content:"ab"; depth:4; within:4;', "'within' cannot be mixed with offset/depth", "within"),
        ('content:"ab"; distance:0; offset:1;', "'offset' cannot be mixed with distance/within", "offset"),
        ('content:"ab"; within:4; depth:4;', "'depth' cannot be mixed with distance/within", "depth"),
        ('content:"ab"; depth:4; depth:5;', "'depth' given twice", "depth:5"),
        ('content:"ab"; nocase; nocase;', "'nocase' given twice", "nocase;"),
        ('content:"ab"; nocase:1;', "'nocase' takes no value", "1;"),
        ('content:"ab"; offset:-1;', "'offset' must be from 0 to 65535", "-1"),
        ('content:"ab"; depth:70000;', "'depth' must be from 1 to 65535", "70000"),
        ('content:"ab"; distance:x;', "no earlier byte_extract defines 'x'", "x;"),
        (
            'content:"ab"; fast_pattern; content:"cd"; fast_pattern;',
            "only one content in a rule",
            "fast_pattern;",
        ),
        (
            'content:"ab"; fast_pattern:only; depth:2;',
            "cannot modify a content with fast_pattern:only",
            "depth",
        ),
        ('content:"ab"; depth:2; fast_pattern:only;', "fast_pattern:only cannot be used", "only"),
        ('content:!"ab"; fast_pattern:only;', "fast_pattern:only cannot be used with negation", "only"),
        ('content:!"ab"; offset:1; fast_pattern;', "negated content with offset/depth", "fast_pattern"),
        ('content:!"ab"; fast_pattern; offset:1;', "negated content that has fast_pattern", "offset"),
        (
            'content:"ab"; fast_pattern:only; content:"c"; distance:0;',
            "previous content that has fast_pattern:only",
            "distance",
        ),
        ('content:"abcd"; fast_pattern:2,3;', "fast_pattern 2,3 ends past the 4-byte content", "2,3"),
        ('content:"abcd"; fast_pattern:bogus;', "invalid fast_pattern argument 'bogus'", "bogus"),
    ],
)
def test_modifier_validation_errors(body, message, needle):
    text = opts(body)
    err = error_of(text)
    assert message in err.message
    # the needle is the last occurrence in these cases (a modifier after an earlier one of the same name)
    assert err.column == text.rindex(needle) + 1 if body.count(needle) > 1 else column_of(text, needle)


def test_fast_pattern_variants():
    r = rule_of(opts('content:"ab"; content:"xyz"; fast_pattern;'))
    assert r.fast_pattern_index == 1 and r.contents[1].fast_pattern and not r.contents[1].fast_pattern_only
    r = rule_of(opts('content:"abc"; fast_pattern:only;'))
    assert r.contents[0].fast_pattern and r.contents[0].fast_pattern_only
    r = rule_of(opts('content:"aaaaaaaaabc"; fast_pattern:7,4;'))
    c = r.contents[0]
    assert (c.fast_pattern_offset, c.fast_pattern_length, c.fast_pattern_bytes) == (7, 4, b"aabc")
    assert rule_of(opts('content:"ab";')).contents[0].fast_pattern_bytes == b"ab"


def test_automatic_fast_pattern_choice():
    # the longest positive content
    assert rule_of(opts('content:"ab"; content:"abcd"; content:"abc";')).fast_pattern_index == 1
    # negated contents are never chosen
    assert rule_of(opts('content:!"longest one"; content:"ab";')).fast_pattern_index == 1
    assert rule_of(opts('content:!"ab";')).fast_pattern_index is None
    assert rule_of(opts('msg:"no content";')).fast_pattern_index is None
    # same length: the higher pattern strength ("abcd" has four distinct letters, "aaaa" one)
    assert rule_of(opts('content:"aaaa"; content:"abcd";')).fast_pattern_index == 1
    # same length and strength: the first one
    assert rule_of(opts('content:"abcd"; content:"efgh";')).fast_pattern_index == 0
    # an explicit fast_pattern wins over length
    assert rule_of(opts('content:"abcdef"; content:"ab"; fast_pattern;')).fast_pattern_index == 1


def test_pattern_strength_matches_suricata_scoring():
    assert pattern_strength(b"aaa") == 3 + 1 + 1
    assert pattern_strength(b"ab") == 6
    assert pattern_strength(b"a1") == 3 + 4
    assert pattern_strength(b"\x00\x01\xff") == 12
    assert pattern_strength(b"\x02\x80") == 12
    assert choose_fast_pattern([Content(b"|\x02"), Content(b"ab")]) == 0


# -- flow -------------------------------------------------------------------------------------------


def test_flow_options():
    f = rule_of(opts("flow: to_client , established;")).flow
    assert (f.to_client, f.established, f.to_server, f.not_established) == (True, True, False, False)
    f = rule_of(opts("flow:from_client,not_established;")).flow
    assert (f.to_server, f.not_established) == (True, True)
    assert rule_of(opts("flow:from_server;")).flow.to_client
    assert rule_of(opts("flow:stateless;")).flow.stateless
    assert not rule_of(opts('msg:"x";')).flow.is_set


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("flow:to_server,to_client;", "both to_server and to_client"),
        ("flow:established,not_established;", "both established and not_established"),
        ("flow:established,established;", "given twice"),
        ("flow:sideways;", "unknown flow option 'sideways'"),
        ("flow:established; flow:to_server;", "only one 'flow' option"),
        ("flow;", "'flow' needs a value"),
    ],
)
def test_flow_errors(body, message):
    assert message in error_of(opts(body)).message


# -- header: direction, addresses, ports ---------------------------------------------------------


def test_bidirectional_rule():
    assert rule_of("alert udp any any <> any 53 (sid:1;)").bidirectional


def test_addresses_single_cidr_lists_and_negation():
    r = rule_of("alert ip [10.0.0.0/8,!10.1.0.0/16,2001:db8::/32] any -> 192.0.2.1 any (sid:1;)")
    assert r.src.contains("10.2.3.4") and not r.src.contains("10.1.2.3")
    assert r.src.contains("2001:db8::5") and not r.src.contains("2001:db9::")
    assert not r.src.contains("11.0.0.0")
    assert r.dst.contains("192.0.2.1") and not r.dst.contains("192.0.2.2")
    assert r.dst.intervals == ((ip_to_int("192.0.2.1"), ip_to_int("192.0.2.1")),)
    r = rule_of("alert ip ![1.2.3.4,[5.6.7.0/24,!5.6.7.8]] any -> !fe80::/10 any (sid:1;)")
    assert not r.src.contains("1.2.3.4") and not r.src.contains("5.6.7.9")
    assert r.src.contains("5.6.7.8") and r.src.contains("8.8.8.8") and r.src.contains("::1")
    assert not r.dst.contains("fe80::1") and r.dst.contains("2001:db8::1") and r.dst.contains("10.0.0.1")


def test_address_lists_with_spaces_in_the_header():
    r = rule_of("alert tcp [1.2.3.4, 5.6.7.8] any -> any [80, 8080] (sid:1;)")
    assert r.src.contains("5.6.7.8") and r.dst_ports.contains(8080)


def test_ipv4_is_stored_ipv4_mapped():
    assert ip_to_int("10.0.0.1") == 0xFFFF_0A00_0001
    assert ip_to_int("::ffff:10.0.0.1") == ip_to_int("10.0.0.1")
    assert ip_to_int(ipaddress.ip_address("2001:db8::1")) == int(ipaddress.ip_address("2001:db8::1"))


def test_address_arrays_split_128_bit_bounds():
    s = AddressSet.parse("[10.0.0.0/8,2001:db8::/32]")
    lo_hi, lo_lo, hi_hi, hi_lo = s.arrays()
    assert all(a.dtype == np.uint64 for a in (lo_hi, lo_lo, hi_hi, hi_lo))
    assert lo_hi.tolist() == [0, 0x2001_0DB8_0000_0000]
    assert lo_lo.tolist() == [0xFFFF_0A00_0000, 0]
    assert hi_hi.tolist() == [0, 0x2001_0DB8_FFFF_FFFF]
    assert hi_lo.tolist() == [0xFFFF_0AFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]
    assert AddressSet.any().is_any and AddressSet.any().arrays()[2].tolist() == [0xFFFF_FFFF_FFFF_FFFF]


def test_home_net_and_external_net_defaults():
    r = rule_of("alert tcp $HOME_NET any -> $EXTERNAL_NET any (sid:1;)")
    for inside in ("10.1.1.1", "172.16.0.1", "192.168.5.5"):
        assert r.src.contains(inside) and not r.dst.contains(inside)
    assert not r.src.contains("8.8.8.8") and r.dst.contains("8.8.8.8")
    # HOME_NET is IPv4 only: its negation keeps all of IPv6 (not an empty IPv6 set)
    assert not r.src.contains("2001:db8::1") and r.dst.contains("2001:db8::1")
    assert r.dst.has_ipv6 and not r.src.has_ipv6
    assert rule_of("alert tcp $HTTP_SERVERS any -> $SQL_SERVERS any (sid:1;)").src == r.src


def test_negating_an_ipv6_group_keeps_all_of_ipv4():
    r = rule_of("alert tcp !2001:db8::/32 any -> any any (sid:1;)")
    assert r.src.contains("10.0.0.1") and r.src.contains("::1") and not r.src.contains("2001:db8::1")


def test_negation_in_a_list_with_the_other_family_positive():
    # as Suricata: IPv4 has only a negated entry, so its positive part is all of IPv4
    s = AddressSet.parse("[2001:db8::/32,!10.0.0.0/8]")
    assert s.contains("8.8.8.8") and not s.contains("10.0.0.1") and s.contains("2001:db8::1")
    assert not s.contains("2001:db9::1")


def test_variable_override():
    r = rule_of(
        "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (sid:1;)",
        variables={"HOME_NET": "[10.0.0.0/8]", "$HTTP_PORTS": "[80,8080]"},
    )
    assert r.src.contains("10.0.0.1") and not r.src.contains("192.168.1.1")
    assert r.dst.contains("192.168.1.1")  # EXTERNAL_NET follows the new HOME_NET
    assert r.dst_ports.contains(8080)
    r = rule_of("alert tcp $MY_NET any -> any any (sid:1;)", variables={"MY_NET": "2001:db8::/32"})
    assert r.src.contains("2001:db8::1")


@pytest.mark.parametrize(
    ("header", "message", "needle"),
    [
        ("alert tcp !any any -> any any", "covers the whole address space", "!any"),
        ("alert tcp [1.2.3.4,!1.2.3.4] any -> any any", "no addresses left", "[1.2.3.4,!"),
        ("alert tcp $NOPE any -> any any", "undefined variable $NOPE", "$NOPE"),
        ("alert tcp [1.2.3.4,$NOPE] any -> any any", "undefined variable $NOPE", "$NOPE"),
        ("alert tcp 1.2.3.400 any -> any any", "invalid IPv4 address '1.2.3.400'", "1.2.3.400"),
        ("alert tcp 10.0.0.0/33 any -> any any", "invalid IPv4 prefix", "10.0.0.0/33"),
        ("alert tcp 2001:db8::/129 any -> any any", "invalid IPv6 network", "2001:db8::/129"),
        ("alert tcp [1.2.3.4 any -> any any", "'[' is not closed", "[1.2.3.4"),
        ("alert tcp [1.2.3.4,] any -> any any", "unexpected ']'", "]"),
        ("alert tcp [] any -> any any", "empty address list", "[]"),
        ("alert tcp !!1.2.3.4 any -> any any", "double negation", "!!"),
        ("alert tcp $HTTP_PORTS any -> any any", "invalid IPv4 address '80'", "$HTTP_PORTS"),
        ("alert tcp any 70000 -> any any", "port 70000 is out of range", "70000"),
        ("alert tcp any 90:80 -> any any", "first port after its last", "90:80"),
        ("alert tcp any !any -> any any", "covers the whole port space", "!any"),
        ("alert tcp any [80,!80] -> any any", "no ports left", "[80"),
        ("alert tcp any http -> any any", "invalid port 'http'", "http"),
        ("alert tcp any : -> any any", "invalid port range", ":"),
    ],
)
def test_address_and_port_errors(header, message, needle):
    text = header + " (sid:1;)"
    err = error_of(text)
    assert message in err.message
    if needle is not None:
        assert err.column == column_of(text, needle)


def test_variable_loop_is_an_error():
    err = error_of("alert tcp $A any -> any any (sid:1;)", variables={"A": "[$B]", "B": "!$A"})
    assert "variable loop: $A -> $B -> $A" in err.message


def test_ports_ranges_lists_negation_and_variables():
    r = rule_of("alert tcp any [1024:,!2000:2010] -> any :1023 (sid:1;)")
    assert r.src_ports.intervals == ((1024, 1999), (2011, 65535))
    assert r.dst_ports.intervals == ((0, 1023),)
    assert PortSet.parse("[80:100,!99]").intervals == ((80, 98), (100, 100))
    assert PortSet.parse("!80").intervals == ((0, 79), (81, 65535))
    assert PortSet.parse("[1:80,![2,4]]").intervals == ((1, 1), (3, 3), (5, 80))
    assert PortSet.parse("$SHELLCODE_PORTS") == PortSet.parse("!80")
    assert PortSet.parse("$FILE_DATA_PORTS").intervals == ((80, 80), (110, 110), (143, 143))
    assert PortSet.parse("[$HTTP_PORTS,$SSH_PORTS]").ranges() == ["22", "80"]
    assert PortSet.parse("any").is_any and not PortSet.parse("1:65535").is_any
    lo, hi = PortSet.parse("[80,443:445]").arrays()
    assert lo.dtype == np.int32 and hi.dtype == np.int32
    assert lo.tolist() == [80, 443] and hi.tolist() == [80, 445]
    s = PortSet.parse("[80,443:445]")
    assert s.contains(444) and not s.contains(446) and not s.contains(0)


# -- interval and set properties ------------------------------------------------------------------

small_intervals = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 60)).map(lambda t: (min(t), max(t))), max_size=6
)


def _points(intervals) -> set[int]:
    return {x for lo, hi in intervals for x in range(lo, hi + 1)}


@settings(max_examples=200, deadline=None)
@given(small_intervals, small_intervals)
def test_interval_normalize_and_subtract_match_python_sets(a, b):
    na, nb = normalize(a), normalize(b)
    assert _points(na) == _points(a)
    assert all(na[i][1] + 1 < na[i + 1][0] for i in range(len(na) - 1))  # disjoint, not touching
    assert _points(subtract(na, nb)) == _points(a) - _points(b)


addresses = st.one_of(
    st.integers(0, 0xFFFF_FFFF).map(lambda v: str(ipaddress.IPv4Address(v))),
    st.integers(0, (1 << 128) - 1).map(lambda v: str(ipaddress.IPv6Address(v))),
    st.sampled_from(["10.0.0.0", "10.255.255.255", "192.168.0.1", "172.32.0.0", "::", "::ffff:0:0"]),
)


@settings(max_examples=300, deadline=None)
@given(addresses)
def test_address_set_arrays_agree_with_contains(address):
    s = AddressSet.parse("[$EXTERNAL_NET,!8.8.8.0/24,2001:db8::/32]")
    value = ip_to_int(address)
    hi_word, lo_word = np.uint64(value >> 64), np.uint64(value & ((1 << 64) - 1))
    lo_hi, lo_lo, hi_hi, hi_lo = s.arrays()
    above_lo = (hi_word > lo_hi) | ((hi_word == lo_hi) & (lo_word >= lo_lo))
    below_hi = (hi_word < hi_hi) | ((hi_word == hi_hi) & (lo_word <= hi_lo))
    assert bool(np.any(above_lo & below_hi)) == s.contains(address)
    ip = ipaddress.ip_address(address)
    home = [ipaddress.ip_network(n) for n in ("192.168.0.0/16", "10.0.0.0/8", "172.16.0.0/12")]
    if ip.version == 4:
        expected = not any(ip in n for n in home) and ip not in ipaddress.ip_network("8.8.8.0/24")
    else:
        expected = True  # !$HOME_NET keeps all IPv6
    assert s.contains(address) == expected


rule_fragments = st.lists(
    st.sampled_from(
        [
            "alert",
            "drop",
            "tcp",
            "udp",
            "http",
            " ",
            "any",
            "->",
            "<>",
            "$HOME_NET",
            "!",
            "[",
            "]",
            ",",
            "10.0.0.0/8",
            "2001:db8::/32",
            "80",
            ":",
            "1024:",
            "(",
            ")",
            ";",
            "msg:",
            '"',
            "\\",
            "|",
            "41",
            "content:",
            "depth:",
            "distance:",
            "-1",
            "3",
            "nocase;",
            "fast_pattern",
            "only",
            "sid:",
            "1",
            "flow:",
            "established",
            "to_server",
            "pcre:",
            "\n",
            "#",
        ]
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["", "alert tcp any any -> any any (", 'alert udp any any -> any 53 (content:"']),
    rule_fragments,
)
def test_arbitrary_text_never_raises_and_is_always_accounted_for(prefix, fragments):
    text = prefix + "".join(fragments)
    rs = parse_rules(text)
    assert len(rs.rules) + len(rs.skipped) + len(rs.errors) <= text.count("\n") + 1
    for err in rs.errors:
        assert err.line >= 1 and err.column >= 1 and err.message


def test_load_rules_from_several_files(tmp_path):
    a = tmp_path / "a.rules"
    b = tmp_path / "b.rules"
    a.write_text(opts('content:"a"; rev:2;') + "\nalert http any any -> any any (sid:2;)\n")
    b.write_text(
        "# b\n" + opts('content:"b"; rev:1;') + "\n" + opts("depth:1;").replace("sid:1", "sid:3") + "\n"
    )
    rs = load_rules([str(a), b])
    assert [(r.file, r.line, r.rev) for r in rs.rules] == [(str(a), 1, 2)]
    assert [(s.file, s.line, s.sid) for s in rs.skipped] == [(str(a), 2, 2)]
    assert sorted((e.file, e.line) for e in rs.errors) == [(str(b), 2), (str(b), 3)]
    assert any(f"kept rev 2 from {a}:1" in e.message for e in rs.errors)
    assert load_rules(str(a)).summary()["loaded"] == 1
    with pytest.raises(FileNotFoundError):
        load_rules([str(tmp_path / "missing.rules")])
