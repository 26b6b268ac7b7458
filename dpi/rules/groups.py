"""Address and port group expressions: ``[a,b,![c,$VAR]]``, negation and variables.

Semantics:

* a list is the union of its positive elements minus the union of its negated ones (as Suricata's
  detect-engine-address.c DetectAddressMergeNot);
* a list that mixes both takes, for each family (IPv4, IPv6) that has negated but no positive entries,
  the whole family as its positive part, so ``[2001:db8::/32,!10.0.0.0/8]`` keeps the IPv4 complement
  (also as Suricata);
* a pure negation (no positive element) is the complement within the whole space: ``!$HOME_NET`` with
  an IPv4-only HOME_NET is all of IPv6 plus the IPv4 addresses outside HOME_NET. This is deliberate
  and differs from Suricata's code, where the pure negation only fills the families that the negated
  list names, so its ``$EXTERNAL_NET`` holds no IPv6 address at all and never matches IPv6 traffic;
* negating everything (``!any``) or ending with an empty set is an error, as in Suricata.

A variable stands for the set its value evaluates to. (Suricata splices a variable's text into the
enclosing list instead, which only differs for odd mixes such as ``[$EXTERNAL_NET,10.0.0.1]``.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dpi.rules.intervals import Intervals, intersect, subtract, union

_TOKEN = re.compile(r"\s*(?:([\[\],!])|([^\s\[\],!]+))")


class GroupError(ValueError):
    """A group expression that cannot be evaluated; position is an offset into the expression."""

    def __init__(self, message: str, position: int = 0):
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class GroupKind:
    noun: str  # "address" or "port", for messages
    plural: str
    universe: Intervals
    parse_atom: Callable[[str], Intervals]
    atom_errors: tuple[type[Exception], ...]
    families: tuple[Intervals, ...] = ()


Lookup = Callable[[str], Intervals]


def evaluate(text: str, kind: GroupKind, lookup: Lookup) -> Intervals:
    """Evaluate a group expression into normalised intervals; raises GroupError."""
    return _Parser(text, kind, lookup).parse()


class _Parser:
    def __init__(self, text: str, kind: GroupKind, lookup: Lookup):
        self.kind = kind
        self.lookup = lookup
        self.tokens: list[tuple[str, int]] = []
        pos = 0
        end = len(text.rstrip())
        while pos < end:
            m = _TOKEN.match(text, pos)
            if m is None:  # pragma: no cover - the token pattern accepts every non-space character
                raise GroupError(f"unexpected character {text[pos]!r}", pos)
            start = m.start(1) if m.group(1) else m.start(2)
            self.tokens.append((m.group(1) or m.group(2), start))
            pos = m.end()
        self.i = 0

    def _peek(self) -> tuple[str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def parse(self) -> Intervals:
        if not self.tokens:
            raise GroupError(f"empty {self.kind.noun} group", 0)
        negated, value = self._element()
        extra = self._peek()
        if extra is not None:
            raise GroupError(f"unexpected '{extra[0]}' after the {self.kind.noun} group", extra[1])
        if negated:
            return self._combine((), value, has_positive=False, position=0)
        return value

    def _element(self) -> tuple[bool, Intervals]:
        tok = self._peek()
        if tok is None:
            last = self.tokens[-1]
            raise GroupError(f"{self.kind.noun} group ends early", last[1] + len(last[0]))
        text, pos = tok
        self.i += 1
        if text == "!":
            negated, value = self._element()
            if negated:
                raise GroupError("double negation", pos)
            return True, value
        if text == "[":
            return False, self._list(pos)
        if text in ",]":
            raise GroupError(f"unexpected '{text}'", pos)
        if text.startswith("$"):
            try:
                return False, self.lookup(text[1:])
            except GroupError as exc:
                # positions inside a variable's value mean nothing in the rule: point at the reference
                raise GroupError(exc.message, pos) from None
        try:
            return False, self.kind.parse_atom(text)
        except self.kind.atom_errors as exc:
            raise GroupError(str(exc), pos) from None

    def _list(self, open_pos: int) -> Intervals:
        positive: Intervals = ()
        negative: Intervals = ()
        has_positive = has_negative = False
        tok = self._peek()
        if tok is not None and tok[0] == "]":
            raise GroupError(f"empty {self.kind.noun} list", open_pos)
        while True:
            negated, value = self._element()
            if negated:
                negative = union(negative, value)
                has_negative = True
            else:
                positive = union(positive, value)
                has_positive = True
            tok = self._peek()
            if tok is None:
                raise GroupError("missing ']' to close this list", open_pos)
            self.i += 1
            if tok[0] == "]":
                break
            if tok[0] != ",":
                raise GroupError(f"expected ',' or ']' but found '{tok[0]}'", tok[1])
        if not has_negative:
            return positive
        return self._combine(positive, negative, has_positive, open_pos)

    def _combine(
        self, positive: Intervals, negative: Intervals, has_positive: bool, position: int
    ) -> Intervals:
        kind = self.kind
        if not has_positive:
            result = subtract(kind.universe, negative)
            if not result:
                raise GroupError(f"the negation covers the whole {kind.noun} space (e.g. '!any')", position)
            return result
        for family in kind.families:
            if not intersect(positive, family) and intersect(negative, family):
                positive = union(positive, family)
        result = subtract(positive, negative)
        if not result:
            raise GroupError(f"no {kind.plural} left after applying the negations", position)
        return result
