"""Plain data classes for parsed rules and for the outcome of a load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from dpi.rules.addresses import AddressSet
from dpi.rules.ports import PortSet


@dataclass(slots=True)
class Content:
    """One ``content`` match with its modifiers, as written in the rule.

    ``depth`` counts from ``offset`` and ``within`` from the end of the previous match, as in the rule
    language. A relative content (distance/within) that is the rule's first content is anchored at the
    start of the buffer (offset 0), which is what Suricata does.
    """

    pattern: bytes
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    fast_pattern: bool = False
    fast_pattern_only: bool = False
    # fast_pattern:N,M ("chop"): the matcher uses pattern[N:N+M]
    fast_pattern_offset: int | None = None
    fast_pattern_length: int | None = None
    # startswith: the match begins the buffer (Suricata's shorthand for offset 0 and a depth
    # of the content's length)
    startswith: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None

    @property
    def fast_pattern_bytes(self) -> bytes:
        """The bytes the multi-pattern matcher should look for (the chop, if any)."""
        if self.fast_pattern_offset is None or self.fast_pattern_length is None:
            return self.pattern
        return self.pattern[self.fast_pattern_offset : self.fast_pattern_offset + self.fast_pattern_length]


@dataclass(slots=True)
class FlowOptions:
    to_server: bool = False
    to_client: bool = False
    established: bool = False
    not_established: bool = False
    stateless: bool = False

    @property
    def is_set(self) -> bool:
        return self.to_server or self.to_client or self.established or self.not_established or self.stateless


@dataclass(slots=True, kw_only=True)
class Rule:
    action: str
    proto: str
    src: AddressSet
    src_ports: PortSet
    dst: AddressSet
    dst_ports: PortSet
    sid: int
    bidirectional: bool = False
    msg: str = ""
    gid: int = 1
    rev: int = 0
    classtype: str | None = None
    priority: int = 3
    category: str = ""
    contents: list[Content] = field(default_factory=list)
    flow: FlowOptions = field(default_factory=FlowOptions)
    references: list[tuple[str, str]] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)
    file: str = "<string>"
    line: int = 0
    fast_pattern_index: int | None = None
    threshold: Threshold | None = None

    @property
    def fast_pattern(self) -> Content | None:
        return None if self.fast_pattern_index is None else self.contents[self.fast_pattern_index]


@dataclass(frozen=True, slots=True)
class Threshold:
    """``threshold`` (kind limit, threshold or both) or ``detection_filter`` (kind
    detection_filter): at most/after ``count`` matches per ``seconds``, counted per source
    or destination address (track by_src / by_dst), as Suricata's detect-engine-threshold."""

    kind: str
    track: str
    count: int
    seconds: int


@dataclass(frozen=True, slots=True)
class SkippedRule:
    file: str
    line: int
    sid: int
    reason: str


@dataclass(frozen=True, slots=True)
class RuleError:
    file: str
    line: int
    column: int
    message: str
    sid: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass(slots=True)
class RuleSet:
    rules: list[Rule] = field(default_factory=list)
    skipped: list[SkippedRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    parse_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def skip_reasons(self) -> Counter[str]:
        return Counter(s.reason for s in self.skipped)

    def summary(self, top: int = 10) -> dict:
        return {
            "loaded": len(self.rules),
            "skipped": len(self.skipped),
            "errors": len(self.errors),
            "parse_seconds": round(self.parse_seconds, 3),
            "top_skip_reasons": self.skip_reasons().most_common(top),
            "first_errors": [str(e) for e in self.errors[:top]],
        }
