"""Suricata rule files -> RuleSet.

A rule is ``action proto src src_port direction dst dst_port (options)``, possibly continued over
several lines with a trailing backslash. Each rule ends up in exactly one of RuleSet.rules (loaded),
RuleSet.skipped (valid as far as we read it, but uses something we do not support) or RuleSet.errors
(invalid, with file, line and column), so loaded + skipped + errors == rules in the input.

Checks run in this order, the first one that fails decides: header shape, option syntax, sid; then
action and protocol (skip); addresses and ports (error); unsupported keywords or flow options (skip);
the supported keywords themselves (error). A rule that uses both pcre and a malformed depth is
therefore skipped for pcre, not reported as an error.
"""

from __future__ import annotations

import os
import re
import time
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from dpi.rules.classification import Classtype, load_classification
from dpi.rules.content import choose_fast_pattern
from dpi.rules.errors import RuleSkip, RuleSyntaxError
from dpi.rules.groups import GroupError
from dpi.rules.model import Rule, RuleError, RuleSet, SkippedRule
from dpi.rules.options import Option, OptionReader, find_sid, split_options, unsupported_reason
from dpi.rules.variables import Variables

# In IDS mode (offline captures) drop and the reject family alert like alert; pass stops
# inspection as in Suricata (see dpi.detect.stateful).
SUPPORTED_ACTIONS = frozenset({"alert", "pass", "drop", "reject", "rejectsrc", "rejectdst", "rejectboth"})
# actions of Snort (and old Suricata) that we recognise but do not implement
OTHER_ACTIONS = frozenset({"config", "sdrop", "log"})
SUPPORTED_PROTOCOLS = frozenset({"tcp", "udp", "icmp", "ip", "tcp-pkt", "tcp-stream"})
_PROTOCOL_NAME = re.compile(r"[a-z0-9][a-z0-9_\-.]*\Z")
_HEADER_FIELD = re.compile(r"\S+")
HEADER_FIELDS = (
    "action",
    "protocol",
    "source",
    "source port",
    "direction",
    "destination",
    "destination port",
)


class LogicalRule:
    """One rule's text, joined from its physical lines, with a map back to line and column."""

    __slots__ = ("text", "line", "_starts", "_positions")

    def __init__(self, text: str, positions: list[tuple[int, int, int]]):
        self.text = text
        self.line = positions[0][1]
        # (offset in text, physical line number, column offset of that piece in its line)
        self._positions = positions
        self._starts = [p[0] for p in positions]

    def locate(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of an offset into the joined text."""
        i = max(0, bisect_right(self._starts, offset) - 1)
        start, line, col = self._positions[i]
        return line, col + (offset - start) + 1


def iter_rules(text: str) -> Iterator[LogicalRule]:
    """Rules of a file's text; comments and blank lines are not rules.

    A line ending in a backslash continues on the next line (the backslash is dropped and the next
    line appended as is, as Suricata does). Leading whitespace is allowed before a rule.
    """
    pieces: list[str] = []
    positions: list[tuple[int, int, int]] = []
    length = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip()
        if not pieces:
            stripped = line.lstrip()
            if not stripped or stripped[0] == "#":
                continue
            col = len(line) - len(stripped)
            line = stripped
        else:
            col = 0
        if line.endswith("\\"):
            piece = line[:-1]
            pieces.append(piece)
            positions.append((length, number, col))
            length += len(piece)
            continue
        pieces.append(line)
        positions.append((length, number, col))
        yield LogicalRule("".join(pieces), positions)
        pieces, positions, length = [], [], 0
    if pieces:
        yield LogicalRule("".join(pieces), positions)


def _header_fields(text: str, end: int) -> list[tuple[str, int]]:
    if "[" not in text[:end]:
        return [(m.group(0), m.start()) for m in _HEADER_FIELD.finditer(text, 0, end)]
    # address and port lists may contain spaces: split on whitespace outside brackets
    fields = []
    i = 0
    while i < end:
        while i < end and text[i].isspace():
            i += 1
        if i >= end:
            break
        start = i
        depth = 0
        while i < end and (depth > 0 or not text[i].isspace()):
            if text[i] == "[":
                depth += 1
            elif text[i] == "]":
                depth -= 1
            i += 1
        if depth > 0:
            raise RuleSyntaxError("'[' is not closed with ']' in the rule header", start)
        fields.append((text[start:i], start))
    return fields


class _Loader:
    def __init__(self, variables: Mapping[str, str | int] | None, classification: str | os.PathLike | None):
        self.variables = Variables(variables)
        self.classes: dict[str, Classtype] = load_classification(classification)
        self.ruleset = RuleSet()

    def add_text(self, text: str, filename: str) -> None:
        for logical in iter_rules(text):
            self._add_rule(logical, filename)

    def _add_rule(self, logical: LogicalRule, filename: str) -> None:
        try:
            rule = self._parse(logical.text)
        except RuleSyntaxError as exc:
            line, column = logical.locate(exc.position)
            self.ruleset.errors.append(RuleError(filename, line, column, exc.message, sid=exc.sid))
            return
        except RuleSkip as skip:
            self.ruleset.skipped.append(
                SkippedRule(filename, logical.line, skip.sid, skip.reason, skip.keyword)
            )
            return
        rule.file = filename
        rule.line = logical.line
        self.ruleset.rules.append(rule)

    def _parse(self, text: str) -> Rule:
        open_paren = text.find("(")
        if open_paren < 0:
            raise RuleSyntaxError("missing '(' before the rule options", len(text))
        fields = _header_fields(text, open_paren)
        if len(fields) != 7:
            where = fields[7][1] if len(fields) > 7 else open_paren
            raise RuleSyntaxError(
                f"rule header has {len(fields)} fields, expected 7: " + ", ".join(HEADER_FIELDS), where
            )
        close_paren = text.rfind(")")
        if close_paren < open_paren:
            raise RuleSyntaxError("missing ')' at the end of the rule options", len(text))
        if text[close_paren + 1 :].strip():
            raise RuleSyntaxError("unexpected text after the closing ')'", close_paren + 1)
        options = split_options(text, open_paren + 1, close_paren)
        sid = find_sid(options, open_paren)
        try:
            return self._parse_rule(fields, options, sid)
        except (RuleSyntaxError, RuleSkip) as exc:
            exc.sid = sid
            raise

    def _parse_rule(self, fields: list[tuple[str, int]], options: list[Option], sid: int) -> Rule:
        (action, action_pos), (proto, proto_pos), src, sport, (arrow, arrow_pos), dst, dport = fields
        action = action.lower()
        if action not in SUPPORTED_ACTIONS:
            if action in OTHER_ACTIONS:
                raise RuleSkip(f"unsupported action '{action}'", keyword="action")
            raise RuleSyntaxError(f"unknown action '{action}'", action_pos)
        if arrow not in ("->", "<>"):
            if arrow == "=>":  # Suricata 8 transactional rules
                raise RuleSkip("unsupported direction '=>'", keyword="direction")
            raise RuleSyntaxError(f"invalid direction '{arrow}' (expected '->' or '<>')", arrow_pos)
        proto = proto.lower()
        if proto not in SUPPORTED_PROTOCOLS:
            if _PROTOCOL_NAME.match(proto):
                raise RuleSkip(f"unsupported protocol '{proto}'", keyword=f"protocol {proto}")
            raise RuleSyntaxError(f"invalid protocol '{proto}'", proto_pos)

        src_set = _group(self.variables.address, src)
        sport_set = _group(self.variables.ports, sport)
        dst_set = _group(self.variables.address, dst)
        dport_set = _group(self.variables.ports, dport)

        skip = unsupported_reason(options)
        if skip is not None:
            raise skip

        reader = OptionReader(self.classes)
        reader.read(options)
        # Suricata's tcp-pkt and tcp-stream: TCP rules for packets only / the stream only
        if proto == "tcp-pkt":
            proto, reader.flow.no_stream = "tcp", True
        elif proto == "tcp-stream":
            proto, reader.flow.only_stream = "tcp", True
        if reader.flow.no_stream and reader.flow.only_stream:
            raise RuleSyntaxError("tcp-pkt/tcp-stream contradicts the flow option", proto_pos)
        return Rule(
            action=action,
            proto=proto,
            src=src_set,
            src_ports=sport_set,
            bidirectional=arrow == "<>",
            dst=dst_set,
            dst_ports=dport_set,
            msg=reader.msg,
            sid=sid,
            gid=reader.gid,
            rev=reader.rev,
            classtype=reader.classtype,
            priority=reader.effective_priority,
            category=reader.category,
            contents=reader.contents,
            flow=reader.flow,
            references=reader.references,
            metadata=reader.metadata,
            fast_pattern_index=choose_fast_pattern(reader.contents),
            threshold=reader.threshold,
            payload=reader.payload,
            dsize=reader.dsize,
            header_checks=reader.header_checks,
            flowbits=reader.flowbits,
            noalert=reader.noalert,
            target=reader.target,
        )

    def finish(self) -> RuleSet:
        """Drop duplicate signatures as Suricata does: the higher rev wins, else the first loaded."""
        kept: dict[tuple[int, int], int] = {}
        dropped: set[int] = set()
        rules = self.ruleset.rules
        for i, rule in enumerate(rules):
            key = (rule.gid, rule.sid)
            j = kept.get(key)
            if j is None:
                kept[key] = i
                continue
            old = rules[j]
            loser, winner = (j, i) if rule.rev > old.rev else (i, j)
            if rule.rev > old.rev:
                kept[key] = i
            dropped.add(loser)
            lost, won = rules[loser], rules[winner]
            self.ruleset.errors.append(
                RuleError(
                    lost.file,
                    lost.line,
                    1,
                    f"duplicate signature gid {lost.gid} sid {lost.sid}: kept rev {won.rev} "
                    f"from {won.file}:{won.line}",
                    sid=lost.sid,
                )
            )
        if dropped:
            self.ruleset.rules = [r for i, r in enumerate(rules) if i not in dropped]
        return self.ruleset


def _group(parse, field: tuple[str, int]):
    text, pos = field
    try:
        return parse(text)
    except GroupError as exc:
        raise RuleSyntaxError(exc.message, pos + exc.position) from None


def parse_rules(
    text: str,
    filename: str = "<string>",
    variables: Mapping[str, str | int] | None = None,
    classification: str | os.PathLike | None = None,
) -> RuleSet:
    """Parse rule text. Content bytes are the UTF-8 encoding of the text."""
    started = time.perf_counter()
    loader = _Loader(variables, classification)
    # one character per byte from here on, so content strings keep their exact bytes
    loader.add_text(text.encode("utf-8").decode("latin-1"), filename)
    ruleset = loader.finish()
    ruleset.parse_seconds = time.perf_counter() - started
    return ruleset


def load_rules(
    paths: Iterable[str | os.PathLike] | str | os.PathLike,
    variables: Mapping[str, str | int] | None = None,
    classification: str | os.PathLike | None = None,
) -> RuleSet:
    """Load rule files into one RuleSet. Unreadable files raise OSError; bad rules do not stop the load.

    variables overrides Suricata's default address and port groups, e.g. {"HOME_NET": "[10.0.0.0/8]"};
    classification is the path of a classification.config (default: the bundled ET Open one).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    started = time.perf_counter()
    loader = _Loader(variables, classification)
    for path in paths:
        loader.add_text(Path(path).read_bytes().decode("latin-1"), str(path))
    ruleset = loader.finish()
    ruleset.parse_seconds = time.perf_counter() - started
    return ruleset
