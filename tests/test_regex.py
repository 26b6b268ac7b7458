"""The bounded regex engine (dpi.regex): spans agree with Python's ``re`` where PCRE and ``re``
agree, PCRE's own semantics elsewhere, unsupported syntax is refused with a reason, and
hostile patterns stay within the step budget."""

from __future__ import annotations

import random
import re
import warnings
from collections import Counter

import numba as nb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dpi.regex import (
    CompiledRegex,
    RegexSet,
    RegexSyntaxError,
    RegexUnsupported,
    compile_regex,
    pack_regexes,
    regex_search,
    search,
)
from dpi.regex.parse import parse


def _span(pattern: str, flags: str, subject: bytes, budget: int = 10**6):
    start, end, _ = search(compile_regex(pattern, flags), subject, budget)
    assert start != -2, "budget ran out"
    return (start, end) if start >= 0 else None


def _python_flags(flags: str) -> int:
    py_flags = 0
    for letter, value in zip("ismx", (re.I, re.S, re.M, re.X), strict=True):
        if letter in flags:
            py_flags |= value
    return py_flags


def _python_span(pattern: str, flags: str, subject: bytes):
    m = re.search(pattern.encode("latin-1"), subject, _python_flags(flags))
    return m.span() if m else None


# (pattern, flags, subject, expected span) where PCRE and Python's re agree
AGREED = [
    ("abc", "", b"xxabcx", (2, 5)),
    ("a+", "", b"baaa", (1, 4)),
    ("a+?", "", b"baaa", (1, 2)),
    ("a*?b", "", b"aaab", (0, 4)),
    ("a{2,3}", "", b"aaaa", (0, 3)),
    ("a{2,3}?", "", b"aaaa", (0, 2)),
    ("a{2}", "", b"a aa", (2, 4)),
    ("a{2,}", "", b"aaaaa", (0, 5)),
    ("(?:ab){1,2}?c", "", b"ababc", (0, 5)),
    ("a|ab", "", b"ab", (0, 1)),
    ("ab|a", "", b"ab", (0, 2)),
    ("(?:a|ab)(?:c|bcd)", "", b"abcd", (0, 4)),
    ("x*", "", b"abc", (0, 0)),
    ("(|a)*", "", b"aa", (0, 0)),
    ("(a|)*b", "", b"aab", (0, 3)),
    ("(?:a?)*?b", "", b"ab", (0, 2)),
    (".+", "", b"ab\ncd", (0, 2)),
    (".+", "s", b"ab\ncd", (0, 5)),
    ("^cd", "", b"ab\ncd", None),
    ("^cd", "m", b"ab\ncd", (3, 5)),
    ("ab$", "", b"ab\ncd", None),
    ("ab$", "m", b"ab\ncd", (0, 2)),
    ("cd$", "", b"ab\ncd\n", (3, 5)),
    ("\\Acd", "m", b"ab\ncd", None),
    ("[a-c]+", "", b"xxbcaz", (2, 5)),
    ("[^a-c]+", "", b"abxyc", (2, 4)),
    ("[]a]+", "", b"x]a]", (1, 4)),
    ("[a-]+", "", b"x-a-", (1, 4)),
    ("[\\x41-\\x43]+", "", b"zABCD", (1, 4)),
    ("[\\d\\s]+", "", b"ab1 2c", (2, 5)),
    ("\\d+\\.\\d+", "", b"v 1.25 ", (2, 6)),
    ("\\w+", "", b"  foo_1 ", (2, 7)),
    ("\\W\\S", "", b"ab c", (2, 4)),
    ("\\bfoo\\b", "", b"afoo foo", (5, 8)),
    ("\\Boo", "", b"foo", (1, 3)),
    ("GET", "i", b"xget /", (1, 4)),
    ("[a-c]{2}", "i", b"zABd", (1, 3)),
    ("(?i)abc", "", b"xABC", (1, 4)),
    ("a b c # spaces\n", "x", b"abc", (0, 3)),
    ("a[ ]b", "x", b"a b", (0, 3)),
    ("\\x41\\x4a\\n\\r\\t", "", b"AJ\n\r\t", (0, 5)),
    ("\\101\\0", "", b"A\x00", (0, 2)),
    ("a\\/b\\;c", "", b"a/b;c", (0, 5)),
    ("(?<=a)b", "", b"abcb", (1, 2)),
    ("(?<!a)b", "", b"abcb", (3, 4)),
    ("a(?=c)", "", b"abac", (2, 3)),
    ("a(?!b)", "", b"abac", (2, 3)),
    ("^(?=.*z)(?!.*q).", "", b"abz", (0, 1)),
    ("(?=(?!b)(?<=a)c)c", "", b"bcac", (3, 4)),
    ("(?P<name>ab)+", "", b"abab", (0, 4)),
    ("(?:GET|POST)\\s+\\/[a-z]{3,}", "i", b"x post  /abcd", (2, 13)),
    ("\\x2e(?:exe|dll)$", "", b"run.exe", (3, 7)),
]


@pytest.mark.parametrize(("pattern", "flags", "subject", "expected"), AGREED)
def test_spans_agree_with_python_re(pattern, flags, subject, expected):
    assert _python_span(pattern, flags, subject) == expected  # the table itself is right
    assert _span(pattern, flags, subject) == expected


# PCRE semantics that Python's re does not share, and flags it does not have
PCRE_ONLY = [
    ("\\v", "", b"a\x0bb\n", (1, 2)),  # \v is vertical space, not just VT
    ("\\v+", "", b"a\n\r\x0c", (1, 4)),
    ("\\h+", "", b"a \t\xa0b", (1, 4)),
    ("\\H", "", b" \tx", (2, 3)),
    ("\\R", "", b"x\r\ny", (1, 3)),
    ("^$", "m", b"a\n", None),  # PCRE's ^ does not match after a newline that ends the subject
    ("^$", "m", b"a\n\n", (2, 2)),
    ("a$", "E", b"a\n", None),
    ("a$", "", b"a\n", (0, 1)),
    ("a$", "Em", b"a\n", (0, 1)),
    ("a\\Z", "", b"a\n", (0, 1)),
    ("a\\z", "", b"a\n", None),
    ("b", "A", b"ab", None),
    ("a", "A", b"ab", (0, 1)),
    ("a+", "G", b"aaa", (0, 1)),
    ("a+?", "G", b"aaa", (0, 3)),
    ("(?U)a+", "", b"aaa", (0, 1)),
    ("[[:digit:]]+", "", b"ab123c", (2, 5)),
    ("[[:^alpha:][:space:]]+", "", b"ab1 2c", (2, 5)),
    ("[[:upper:]]+", "i", b"1aB", (1, 3)),
    ("\\x{41}\\o{102}\\cC\\e", "", b"AB\x03\x1b", (0, 4)),
    ("\\12", "", b"a\nb", (1, 2)),  # no 12 groups: octal
    ("\\Qa.b\\E+", "", b"a.bbb", (0, 5)),
    ("a(?i)b|c", "", b"C", (0, 1)),  # an inline flag carries on into later branches
    ("(?i:a)b", "", b"AB", None),
    ("(?i:a)b", "", b"Ab", (0, 2)),
    ("(?i)a(?-i)b", "", b"AB", None),
    ("(?x: a b )c", "", b"abc", (0, 3)),
    ("(?s).(?-s).", "", b"\n\n\nx", (2, 4)),
    ("a{,3}", "", b"aaaa", (0, 3)),  # PCRE2 10.43+: {,n} is {0,n}
    ("x{", "", b"x{", (0, 2)),  # not a quantifier: literal
    ("x{a}", "", b"x{a}", (0, 4)),
    ("(?<=ab|c)d", "", b"cd", (1, 2)),
    ("(?<=a.*)z", "", b"axyz", (3, 4)),  # any lookbehind length
    ("(?>a+)b", "", b"aab", (0, 3)),
    ("a*+a", "", b"aaa", (0, 3)),  # possessive read as greedy: PCRE finds no match here
    ("\\N+", "", b"ab\nc", (0, 2)),
    ("[\\b]", "", b"a\x08", (1, 2)),
    ("\xe9", "i", b"\xc9\xe9", (1, 2)),  # caseless is ASCII only
    ("(?#comment)ab", "", b"ab", (0, 2)),
]


@pytest.mark.parametrize(("pattern", "flags", "subject", "expected"), PCRE_ONLY)
def test_pcre_semantics(pattern, flags, subject, expected):
    assert _span(pattern, flags, subject) == expected


def test_subject_is_exactly_the_slice():
    """^ and lookbehind see ``start`` as the subject start; $ sees ``end`` as its end."""
    buf = np.frombuffer(b"abcab\n", dtype=np.uint8)

    def run(pattern, start, end):
        packed = pack_regexes([compile_regex(pattern)])
        s, e, _ = regex_search(packed.arrays, 0, buf, start, end, 10**5)
        return (s, e) if s >= 0 else None

    assert run("^b", 1, 6) == (1, 2)
    assert run("(?<=a)b", 1, 6) == (4, 5)
    assert run("\\bb", 1, 6) == (1, 2)
    assert run("b$", 0, 2) == (1, 2)
    assert run("b$", 0, 6) == (4, 5)
    assert run("c\\z", 0, 3) == (2, 3)
    assert run("(?=c)", 3, 6) is None
    assert run("a", 3, 3) is None
    assert run("", 3, 3) == (3, 3)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a)\\1", "backreference"),
        ("(?<n>a)\\k<n>", "backreference"),
        ("(?P<n>a)(?P=n)", "backreference"),
        ("(a)\\g{1}", "backreference"),
        ("a(?R)?", "recursion"),
        ("(a)(?1)", "recursion"),
        ("(?&name)", "recursion"),
        ("\\g<1>", "recursion"),
        ("(?(1)a|b)", "conditional"),
        ("\\p{L}", "unicode property"),
        ("[\\P{L}]", "unicode property"),
        ("a\\C", "\\C"),
        ("\\Ga", "\\G"),
        ("a\\Kb", "\\K"),
        ("(?C1)a", "callout"),
        ("(*SKIP)a", "backtracking verb"),
        ("\u0100", "non-latin1 character"),
        ("\\x{100}", "non-latin1 character"),
        ("(?:a|aa){1,5000}", "program too large"),
        ("(" * 300 + ")" * 300, "nesting too deep"),
    ],
)
def test_unsupported_syntax_is_refused_with_a_reason(pattern, reason):
    with pytest.raises(RegexUnsupported) as info:
        compile_regex(pattern)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("pattern", "position"),
    [
        ("(ab", 0),
        ("ab)", 2),
        ("[ab", 0),
        ("*a", 0),
        ("a|+", 2),
        ("a**", 2),
        ("[z-a]", 2),
        ("[\\d-z]", 3),
        ("a{3,2}", 1),
        ("\\y", 0),
        ("ab\\", 2),
        ("(?Z)", 2),
        ("[[:nope:]]", 1),
        ("\\u0041", 0),
        ("\\400", 0),
    ],
)
def test_malformed_patterns_raise_syntax_errors(pattern, position):
    with pytest.raises(RegexSyntaxError) as info:
        compile_regex(pattern)
    assert info.value.position == position
    assert info.value.message


def test_compiled_regex_is_hashable_and_compared_by_text():
    a, b = compile_regex("a+b", "i"), compile_regex("a+b", "i")
    assert a == b and hash(a) == hash(b)
    assert a != compile_regex("a+b")
    assert isinstance(a, CompiledRegex) and a.pattern == "a+b" and a.flags == "i"


@nb.njit
def _search_all(arrays, count, buf, budget):
    """A kernel calling regex_search for each regex of a set, as the detection engine does."""
    out = np.empty((count, 3), np.int64)
    for rid in range(count):
        s, e, steps = regex_search(arrays, rid, buf, 0, len(buf), budget)
        out[rid, 0] = s
        out[rid, 1] = e
        out[rid, 2] = steps
    return out


def test_packed_set_is_searched_from_njit_code():
    patterns = [("b+", ""), ("(?<=b)c", ""), ("X", "i"), ("q", ""), ("^a", "")]
    packed = pack_regexes([compile_regex(p, f) for p, f in patterns])
    assert isinstance(packed, RegexSet) and packed.count == 5
    buf = np.frombuffer(b"abbcx", dtype=np.uint8)
    out = _search_all(packed.arrays, packed.count, buf, 10**5)
    assert [tuple(row[:2]) for row in out] == [(1, 3), (3, 4), (4, 5), (-1, -1), (0, 1)]
    assert out[3, 2] == 0  # no 'q' in the subject: the first-byte skip did all the work
    assert all(row[2] > 0 for row in out if row[0] >= 0)


def test_empty_set_packs_to_the_same_argument_types():
    empty = pack_regexes([])
    assert empty.count == 0
    full = pack_regexes([compile_regex("a")])
    assert len(empty.arrays) == len(full.arrays)
    assert [a.dtype for a in empty.arrays] == [a.dtype for a in full.arrays]
    assert all(a.ndim == 1 for a in empty.arrays)


# -- hostile patterns ---------------------------------------------------------------------------

HOSTILE_SUBJECT = b"a" * 20000 + b"X"


@pytest.mark.parametrize(
    ("pattern", "expected"), [("(a+)+$", None), ("(a|aa)*b", None), ("(.*a){12}", (0, 20000))]
)
def test_hostile_patterns_end_within_the_budget(pattern, expected):
    budget = 2_000_000
    regex = compile_regex(pattern)
    start, end, steps = search(regex, HOSTILE_SUBJECT, budget)
    # one subject position of work past the budget at most
    assert steps <= budget + 4 * regex.size + 4
    if start != -2:
        assert ((start, end) if start >= 0 else None) == expected


def test_budget_exhaustion_is_reported():
    start, end, steps = search(compile_regex("(a|aa)*b"), HOSTILE_SUBJECT, budget=1000)
    assert (start, end) == (-2, -2)
    assert 1000 < steps <= 1100


def test_first_byte_skip_keeps_the_leftmost_match():
    subject = b"." * 5000 + b"GET /x" + b"." * 100 + b"GET /y"
    start, end, steps = search(compile_regex("GET /[a-z]"), subject)
    assert (start, end) == (5000, 5006)
    assert steps < 100  # the 5000 bytes before were skipped, not stepped through


# -- randomised differential test against Python's re ---------------------------------------------

_LEAVES = ["a", "b", "c", "A", ".", "[ab]", "[^a]", "\\n", "[a-c\\n]", "\\w", "\\s", "\\W", "\\d"]
_ASSERTS = ["^", "$", "\\b", "\\B", "\\A", "\\z", "\\Z"]
_QUANTS = ["*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}"]


def _python_assert(text: str, multiline: bool) -> str:
    """Python's spelling of PCRE's assertion (where the two differ)."""
    if text == "^" and multiline:
        return "(?:\\A|(?<=\\n)(?!\\Z))"  # PCRE: not after a newline that ends the subject
    if text == "\\B":
        return "(?:(?<=\\w)(?=\\w)|(?<!\\w)(?!\\w))"  # Python's \B never matches in b""
    return {"\\z": "\\Z", "\\Z": "(?=\\n?\\Z)"}.get(text, text)


# a node: ("leaf", text) | ("assert", text) | ("group", branches) | ("look", kind, node)
#         | ("rep", node, quantifier, lazy); a branch is a tuple of nodes
def _nodes():
    leaf = st.sampled_from(_LEAVES).map(lambda t: ("leaf", t))
    assertion = st.sampled_from(_ASSERTS).map(lambda t: ("assert", t))
    lookbehind = st.tuples(
        st.sampled_from(["<=", "<!"]), st.text(alphabet="ab\n", min_size=1, max_size=2)
    ).map(lambda kl: ("look", kl[0], ("leaf", kl[1].replace("\n", "\\n"))))

    def extend(children):
        branches = st.lists(st.lists(children, max_size=3).map(tuple), min_size=1, max_size=3).map(tuple)
        group = branches.map(lambda b: ("group", b))
        look = st.tuples(st.sampled_from(["=", "!"]), group).map(lambda kg: ("look", kg[0], kg[1]))
        rep = st.tuples(children, st.sampled_from(_QUANTS), st.booleans()).map(lambda t: ("rep", *t))
        return st.one_of(group, look, rep.filter(_repeatable))

    return st.recursive(st.one_of(leaf, leaf, assertion, lookbehind), extend, max_leaves=8)


def _nullable(node) -> bool:
    kind = node[0]
    if kind == "leaf":
        return False
    if kind == "group":
        return any(all(_nullable(x) for x in branch) for branch in node[1])
    if kind == "rep":
        return node[2] in ("*", "?", "{0,2}") or _nullable(node[1])
    return True


def _has_rep(node) -> bool:
    kind = node[0]
    if kind == "rep":
        return True
    if kind == "group":
        return any(_has_rep(x) for branch in node[1] for x in branch)
    return kind == "look" and _has_rep(node[2])


def _repeatable(rep) -> bool:
    """Quantify a leaf or group; not an assertion, and not a body that can match empty and
    itself holds a quantifier: there the Pike VM's merging of equal states can pick another
    end than PCRE's backtracking (a documented limitation)."""
    body = rep[1]
    if body[0] not in ("leaf", "group"):
        return False
    return not (_nullable(body) and _has_rep(body))


def _render(node, multiline: bool, python: bool) -> str:
    kind = node[0]
    if kind == "leaf":
        return node[1]
    if kind == "assert":
        return _python_assert(node[1], multiline) if python else node[1]
    if kind == "group":
        branches = ("".join(_render(x, multiline, python) for x in b) for b in node[1])
        return f"(?:{'|'.join(branches)})"
    if kind == "look":
        return f"(?{node[1]}{_render(node[2], multiline, python)})"
    return _render(node[1], multiline, python) + node[2] + ("?" if node[3] else "")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=_nodes(),
    flags=st.sets(st.sampled_from("ism")).map(lambda s: "".join(sorted(s))),
    subject=st.lists(st.sampled_from(b"abcAB1\n "), max_size=12).map(bytes),
)
def test_random_patterns_agree_with_python_re(tree, flags, subject):
    ours = _render(tree, "m" in flags, python=False)
    theirs = _render(tree, "m" in flags, python=True)
    m = re.search(theirs.encode(), subject, _python_flags(flags))
    assert _span(ours, flags, subject) == (m.span() if m else None), (ours, theirs)


# -- the ET Open rule set ---------------------------------------------------------------------------

_PCRE_OPTION = re.compile(r'pcre:\s*"((?:[^"\\]|\\.)*)"')
# where Python's re reads the text differently from PCRE (or could backtrack for too long)
_PYTHON_DIFFERS = ("\\v", "\\h", "\\H", "\\V", "\\R", "\\Z", "\\e", "[:", "(?>", "*+", "++", "?+", "}+")


def _et_patterns(shared_data) -> list[tuple[str, str]]:
    path = shared_data / "rules" / "et-open.rules"
    if not path.exists():
        pytest.skip(f"{path} not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    out = set()
    for body in _PCRE_OPTION.findall(text):
        body = body.lstrip("!").strip()
        close = body.rfind("/")
        if body.startswith("/") and close > 0:
            out.add((body[1:close], body[close + 1 :]))
    return sorted(out)


def _nested_repeat(node, inside: bool = False) -> bool:
    kind = node[0]
    if kind in ("cat", "alt"):
        return any(_nested_repeat(x, inside) for x in node[1])
    if kind == "rep":
        return inside or _nested_repeat(node[1], True)
    if kind == "look":
        return _nested_repeat(node[1], inside)
    return False


def _derive(node, rng: random.Random, out: list) -> None:
    """Bytes that the tree (mostly) matches: assertions and lookarounds are ignored."""
    kind = node[0]
    if kind == "set":
        printable = [c for c in range(32, 127) if node[1] >> c & 1]
        out.append(rng.choice(printable or [c for c in range(256) if node[1] >> c & 1]))
    elif kind == "cat":
        for x in node[1]:
            _derive(x, rng, out)
    elif kind == "alt":
        _derive(rng.choice(node[1]), rng, out)
    elif kind == "rep":
        _, body, low, high, _greedy = node
        extra = 2 if high < 0 else min(2, high - low)
        for _ in range(low + rng.randint(0, extra)):
            if len(out) > 2000:
                break
            _derive(body, rng, out)


def test_et_open_patterns_compile_or_are_refused(shared_data):
    reasons = Counter()
    compiled = 0
    for pattern, flags in _et_patterns(shared_data):
        try:
            compile_regex(pattern, flags)
            compiled += 1
        except RegexUnsupported as exc:
            reasons[exc.reason] += 1
        except RegexSyntaxError:
            reasons["syntax error"] += 1
    assert compiled > 2500, (compiled, reasons)
    assert set(reasons) <= {"backreference", "syntax error"}, reasons


def test_et_open_patterns_agree_with_python_re_on_derived_subjects(shared_data):
    rng = random.Random(7)
    compared = 0
    for pattern, flags in _et_patterns(shared_data)[::3]:
        if set(flags) - set("ismx") or any(s in pattern for s in _PYTHON_DIFFERS):
            continue
        try:
            regex = compile_regex(pattern, flags)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # re's "possible nested set"
                python = re.compile(pattern.encode("latin-1"), _python_flags(flags))
        except (RegexSyntaxError, RegexUnsupported, re.error):
            continue
        tree = parse(pattern, flags)
        if _nested_repeat(tree):
            continue
        out = []
        _derive(tree, rng, out)
        derived = bytes(out)
        for subject in (derived, b"zz\r\n" + derived + b"\r\nzz", derived[:-1]):
            m = python.search(subject)
            start, end, _ = search(regex, subject)
            assert ((start, end) if start >= 0 else None) == (m.span() if m else None), (
                pattern,
                flags,
                subject,
            )
            compared += 1
    assert compared > 1000
