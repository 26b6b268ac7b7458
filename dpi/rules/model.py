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
    # endswith: the match ends the buffer
    endswith: bool = False
    # byte_extract variables named by offset/depth/distance/within (their value, when
    # named, is read at inspection time; the number fields are then None)
    offset_var: str | None = None
    depth_var: str | None = None
    distance_var: str | None = None
    within_var: str | None = None

    @property
    def uses_variables(self) -> bool:
        return any(
            v is not None for v in (self.offset_var, self.depth_var, self.distance_var, self.within_var)
        )

    @property
    def relative(self) -> bool:
        return (
            self.distance is not None
            or self.within is not None
            or self.distance_var is not None
            or self.within_var is not None
        )

    @property
    def fast_pattern_bytes(self) -> bytes:
        """The bytes the multi-pattern matcher should look for (the chop, if any)."""
        if self.fast_pattern_offset is None or self.fast_pattern_length is None:
            return self.pattern
        return self.pattern[self.fast_pattern_offset : self.fast_pattern_offset + self.fast_pattern_length]


@dataclass(slots=True)
class Pcre:
    """``pcre:"/pattern/flags"``: ``flags`` keeps the letters the regex engine reads (i, s, m,
    x, A, E, G); R (relative) and ! (negated) are fields; ``regex`` is the compiled program."""

    pattern: str
    flags: str = ""
    negated: bool = False
    relative: bool = False
    regex: object | None = None


@dataclass(frozen=True, slots=True)
class Flowbit:
    """One ``flowbits`` command: set, unset, toggle (on a match) or isset, isnotset (a
    condition). ``names`` joined by ``|`` (any_of) or ``&`` in the rule."""

    command: str
    names: tuple[str, ...]
    any_of: bool = False

    @property
    def reads(self) -> bool:
        return self.command in ("isset", "isnotset")


@dataclass(slots=True)
class FlowOptions:
    to_server: bool = False
    to_client: bool = False
    established: bool = False
    not_established: bool = False
    stateless: bool = False
    only_stream: bool = False  # the reassembled stream only
    no_stream: bool = False  # packets only, never the reassembled stream

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
    # the payload keywords in rule order: Content, Pcre and the byte_*/isdataat keywords of
    # dpi.rules.byte_keywords (``contents`` holds the Content items alone)
    payload: list = field(default_factory=list)
    dsize: object | None = None  # a dpi.rules.header_keywords.HeaderCheck on the payload size
    header_checks: list = field(default_factory=list)  # dpi.rules.header_keywords.HeaderCheck
    flowbits: list[Flowbit] = field(default_factory=list)
    noalert: bool = False
    target: str | None = None  # "src_ip" or "dest_ip": which side is the target (EVE source/target)

    @property
    def needs_bytes(self) -> bool:
        """Is the rule verified on the payload bytes (pcre, byte_*, isdataat, endswith,
        byte_extract variables), not on matcher occurrences alone?"""
        return any(
            not isinstance(item, Content) or item.endswith or item.uses_variables for item in self.payload
        )

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
    keyword: str | None = None  # the keyword (or header field) behind the reason


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

    def skip_keywords(self) -> Counter[str]:
        return Counter(s.keyword or "-" for s in self.skipped)

    def summary(self, top: int = 10) -> dict:
        return {
            "loaded": len(self.rules),
            "skipped": len(self.skipped),
            "errors": len(self.errors),
            "parse_seconds": round(self.parse_seconds, 3),
            "top_skip_reasons": self.skip_reasons().most_common(top),
            "skip_reasons": dict(self.skip_reasons().most_common()),
            "skipped_by_keyword": dict(self.skip_keywords().most_common()),
            "first_errors": [str(e) for e in self.errors[:top]],
        }
