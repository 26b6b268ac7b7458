"""Rule options: splitting ``(key:value; key; ...)`` and reading the keywords we support.

Options end at a ``;`` that is not escaped by a backslash; quotes do not protect a ``;`` (as in
Suricata, which is why rule writers escape it as ``\\;`` inside msg and content).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dpi.regex import RegexSyntaxError, RegexUnsupported, compile_regex
from dpi.rules import byte_keywords
from dpi.rules.byte_keywords import ByteExtract, ByteKeywordError
from dpi.rules.classification import DEFAULT_PRIORITY, Classtype
from dpi.rules.content import ContentError, decode_content
from dpi.rules.errors import RuleSkip, RuleSyntaxError
from dpi.rules.header_keywords import HEADER_KEYWORDS, HeaderKeywordError, parse_header_keyword
from dpi.rules.model import Content, Flowbit, FlowOptions, Pcre, Threshold

SUPPORTED_KEYWORDS = frozenset(
    {
        "msg",
        "sid",
        "rev",
        "gid",
        "classtype",
        "priority",
        "reference",
        "metadata",
        "content",
        "nocase",
        "offset",
        "depth",
        "distance",
        "within",
        "fast_pattern",
        "flow",
        "startswith",
        "endswith",
        "rawbytes",
        "threshold",
        "detection_filter",
        "pcre",
        "flowbits",
        "noalert",
        "target",
        "dsize",
        "isdataat",
        "byte_test",
        "byte_jump",
        "byte_extract",
    }
    | HEADER_KEYWORDS
)

# Keywords of Suricata's application-layer inspection (sticky buffers, content modifiers
# on HTTP and other parsed buffers, app-layer state): out of scope, skipped as one reason.
_APP_LAYER_PREFIXES = (
    "http",
    "dns",
    "tls",
    "ssl_",
    "ssh",
    "file",
    "ja3",
    "ja4",
    "smb",
    "dcerpc",
    "krb5",
    "ftp",
    "smtp",
    "imap",
    "sip",
    "snmp",
    "mqtt",
    "rfb",
    "dhcp",
    "quic",
    "ike",
    "nfs",
    "modbus",
    "dnp3",
    "enip",
    "cip",
    "ldap",
    "pgsql",
    "websocket",
    "bittorrent",
    "tftp",
    "rdp",
    "ntp",
    "template",
    "app-layer",
    "base64",
    "uri",
    "urilen",
    "email",
    "mime",
    "krb",
    "sdp",
    "pop3",
)
_APP_LAYER_KEYWORDS = frozenset({"filestore", "filemagic", "filename", "fileext", "filesize", "filemd5"})
# pcre modifiers that name an application-layer buffer (http_uri and the like)
_PCRE_APP_LAYER_FLAGS = frozenset("UIPQHDMCKSYVWZ")
_PCRE_ENGINE_FLAGS = frozenset("ismxAEG")
_FLOWBIT_COMMANDS = frozenset({"set", "unset", "toggle", "isset", "isnotset"})
_FLOWBIT_NAME = re.compile(r"[A-Za-z0-9_.\-]+\Z")


def is_app_layer_keyword(name: str) -> bool:
    return name in _APP_LAYER_KEYWORDS or name.startswith(_APP_LAYER_PREFIXES)


_FLOW_DIRECTION = {
    "to_server": "to_server",
    "from_client": "to_server",
    "to_client": "to_client",
    "from_server": "to_client",
}
_FLOW_STATE = frozenset({"established", "not_established", "stateless"})
_FLOW_STREAM = frozenset({"only_stream", "no_stream"})
UNSUPPORTED_FLOW_OPTIONS = frozenset({"only_frag", "no_frag"})

# keyword, then either ';' or ':' value ';' where the value may hold backslash-escaped characters
_OPTION = re.compile(r"\s*([^\s:;]+)\s*(?:(;)|:([^;\\]*(?:\\.[^;\\]*)*);)", re.S)
_KEYWORD_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]*\Z")
_INT = re.compile(r"[+-]?\d+\Z")
_UINT = re.compile(r"\d+\Z")
_FAST_PATTERN_CHOP = re.compile(r"\s*(\d+)\s*,\s*(\d+)\s*\Z")

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
UINT32_MAX = (1 << 32) - 1
MAX_OFFSET = 65535  # Suricata stores offset and depth as uint16


@dataclass(slots=True)
class Option:
    name: str  # lower case
    value: str | None  # stripped; None for a keyword without ':'
    name_pos: int  # offsets into the joined rule text
    value_pos: int


def split_options(rule: str, start: int, end: int) -> list[Option]:
    """Options of rule[start:end] (the text between the parentheses)."""
    options: list[Option] = []
    pos = start
    for m in _OPTION.finditer(rule, start, end):
        if m.start() != pos:
            break  # a gap the pattern could not read: diagnosed below
        name = m.group(1)
        if not _KEYWORD_NAME.match(name):  # keywords are case-insensitive; most are lower case already
            name = name.lower()
            if not _KEYWORD_NAME.match(name):
                raise RuleSyntaxError(f"invalid keyword name '{m.group(1)}'", m.start(1))
        raw = m.group(3)
        if raw is None:
            options.append(Option(name, None, m.start(1), m.start(2)))
        else:
            lead = len(raw) - len(raw.lstrip())
            options.append(Option(name, raw.strip(), m.start(1), m.start(3) + lead))
        pos = m.end()
    while pos < end and rule[pos].isspace():
        pos += 1
    if pos < end:
        _raise_option_syntax(rule, pos, end)
    return options


def _raise_option_syntax(rule: str, pos: int, end: int):
    name = re.match(r"[^\s:;]*", rule[pos:end]).group(0)
    after = pos + len(name)
    while after < end and rule[after].isspace():
        after += 1
    if not name:
        raise RuleSyntaxError(f"expected a keyword, found {rule[pos]!r}", pos)
    if after >= end:
        raise RuleSyntaxError(f"option '{name}' is not terminated by ';'", pos)
    if rule[after] != ":":
        raise RuleSyntaxError(f"expected ':' or ';' after keyword '{name}', found {rule[after]!r}", after)
    raise RuleSyntaxError(f"value of option '{name}' is not terminated by ';'", pos)


def parse_uint(option: Option, maximum: int = UINT32_MAX, minimum: int = 0) -> int:
    value = option.value
    if value is None or value == "":
        raise RuleSyntaxError(f"'{option.name}' needs a value", option.name_pos)
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1].strip()
    if not _UINT.match(value) or not minimum <= int(value) <= maximum:
        raise RuleSyntaxError(
            f"'{option.name}' needs a whole number from {minimum} to {maximum}, got '{option.value}'",
            option.value_pos,
        )
    return int(value)


def find_sid(options: list[Option], rule_start: int) -> int:
    sid = None
    for option in options:
        if option.name != "sid":
            continue
        if sid is not None:
            raise RuleSyntaxError("duplicated 'sid' keyword", option.name_pos)
        sid = parse_uint(option, minimum=1, maximum=UINT32_MAX - 1)
    if sid is None:
        raise RuleSyntaxError("rule has no sid", rule_start)
    return sid


def unsupported_reason(options: list[Option]) -> RuleSkip | None:
    """Why the rule cannot be used, or None: the first unsupported keyword or flow option."""
    for option in options:
        if option.name not in SUPPORTED_KEYWORDS:
            if is_app_layer_keyword(option.name):
                return RuleSkip("app-layer keyword", keyword=option.name)
            return RuleSkip(f"unsupported keyword '{option.name}'", keyword=option.name)
        if option.name == "flow" and option.value:
            for word in option.value.split(","):
                word = word.strip().lower()
                if word in UNSUPPORTED_FLOW_OPTIONS:
                    return RuleSkip(f"unsupported flow option '{word}'", keyword="flow")
    return None


def unescape_text(value: str) -> str:
    """msg text: drop the quotes, undo backslash escapes, and read the bytes as UTF-8."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1]
    if "\\" in value:
        value = re.sub(r"\\(.)", r"\1", value, flags=re.S)
    return value.encode("latin-1").decode("utf-8", errors="replace")


def _negation(value: str) -> tuple[bool, int]:
    """A leading '!' (content:!"x", pcre:!"/x/"): whether it is there, and where the quoted
    text starts."""
    if not value.startswith("!"):
        return False, 0
    i = 1
    while i < len(value) and value[i].isspace():
        i += 1
    return True, i


class OptionReader:
    """Reads the supported options of one rule, in order, into rule fields."""

    def __init__(self, classes: dict[str, Classtype]):
        self.classes = classes
        self.msg = ""
        self.rev = 0
        self.gid = 1
        self.classtype: str | None = None
        self.priority: int | None = None
        self.contents: list[Content] = []
        self.flow = FlowOptions()
        self.references: list[tuple[str, str]] = []
        self.metadata: list[str] = []
        self.threshold: Threshold | None = None
        self.payload: list = []  # Content, Pcre and byte keywords, in rule order
        self.header_checks: list = []
        self.dsize = None
        self.flowbits: list[Flowbit] = []
        self.noalert = False
        self.target: str | None = None
        self.variables: set[str] = set()  # byte_extract names defined so far
        self._seen: set[str] = set()

    def read(self, options: list[Option]) -> None:
        for option in options:
            handler = getattr(self, "_kw_" + option.name.replace(".", "_"))
            handler(option)

    @property
    def category(self) -> str:
        cls = self.classes.get(self.classtype.lower()) if self.classtype else None
        return cls.description if cls else ""

    @property
    def effective_priority(self) -> int:
        if self.priority is not None:
            return self.priority
        cls = self.classes.get(self.classtype.lower()) if self.classtype else None
        return cls.priority if cls else DEFAULT_PRIORITY

    # -- informational keywords ---------------------------------------------------------------

    def _once(self, option: Option) -> None:
        if option.name in self._seen:
            raise RuleSyntaxError(f"duplicated '{option.name}' keyword", option.name_pos)
        self._seen.add(option.name)

    def _needs_value(self, option: Option) -> str:
        if not option.value:
            raise RuleSyntaxError(f"'{option.name}' needs a value", option.name_pos)
        return option.value

    def _kw_sid(self, option: Option) -> None:
        pass  # read before the rest by find_sid

    def _kw_msg(self, option: Option) -> None:
        self._once(option)
        self.msg = unescape_text(self._needs_value(option))

    def _kw_rev(self, option: Option) -> None:
        self._once(option)
        self.rev = parse_uint(option)

    def _kw_gid(self, option: Option) -> None:
        self._once(option)
        self.gid = parse_uint(option)

    def _kw_priority(self, option: Option) -> None:
        self._once(option)
        self.priority = parse_uint(option, minimum=1, maximum=255)

    def _kw_classtype(self, option: Option) -> None:
        self._once(option)
        name = self._needs_value(option)
        cls = self.classes.get(name.lower())
        if cls is None:
            raise RuleSyntaxError(
                f"unknown classtype '{name}' (not in classification.config)", option.value_pos
            )
        self.classtype = cls.name

    def _kw_reference(self, option: Option) -> None:
        kind, comma, ident = self._needs_value(option).partition(",")
        if not comma or not kind.strip() or not ident.strip():
            raise RuleSyntaxError("reference needs 'type,id'", option.value_pos)
        self.references.append((kind.strip(), ident.strip()))

    def _kw_metadata(self, option: Option) -> None:
        items = [item.strip() for item in self._needs_value(option).split(",")]
        self.metadata.extend(item for item in items if item)

    # -- flow ------------------------------------------------------------------------------------

    def _kw_flow(self, option: Option) -> None:
        if "flow" in self._seen:
            raise RuleSyntaxError("a rule may have only one 'flow' option", option.name_pos)
        self._seen.add("flow")
        words = [w.strip().lower() for w in self._needs_value(option).split(",")]
        seen: set[str] = set()
        flow = self.flow
        for word in words:
            if word in seen:
                raise RuleSyntaxError(f"flow option '{word}' given twice", option.value_pos)
            seen.add(word)
            if word in _FLOW_DIRECTION:
                setattr(flow, _FLOW_DIRECTION[word], True)
            elif word in _FLOW_STATE or word in _FLOW_STREAM:
                setattr(flow, word, True)
            else:  # unsupported known options were skipped before reading
                raise RuleSyntaxError(f"unknown flow option '{word}'", option.value_pos)
        if flow.to_server and flow.to_client:
            raise RuleSyntaxError("flow cannot be both to_server and to_client", option.value_pos)
        if flow.established and flow.not_established:
            raise RuleSyntaxError("flow cannot be both established and not_established", option.value_pos)
        if flow.only_stream and flow.no_stream:
            raise RuleSyntaxError("flow cannot be both only_stream and no_stream", option.value_pos)

    # -- content and its modifiers ---------------------------------------------------------------

    def _kw_content(self, option: Option) -> None:
        value = self._needs_value(option)
        negated, i = _negation(value)
        if len(value) - i < 2 or value[i] != '"' or value[-1] != '"':
            hint = (
                ' (Snort 3 inline modifiers such as content:"x",depth 4 are not supported)'
                if '",' in value
                else ""
            )
            raise RuleSyntaxError('content needs a quoted string: content:"..."' + hint, option.value_pos + i)
        try:
            pattern = decode_content(value[i + 1 : -1])
        except ContentError as exc:
            raise RuleSyntaxError(exc.message, option.value_pos + i + 1 + exc.index) from None
        content = Content(pattern=pattern, negated=negated)
        self.contents.append(content)
        self.payload.append(content)

    def _last_content(self, option: Option) -> Content:
        if not self.contents:
            raise RuleSyntaxError(f"'{option.name}' needs a preceding content", option.name_pos)
        return self.contents[-1]

    def _kw_nocase(self, option: Option) -> None:
        cd = self._last_content(option)
        if option.value:
            raise RuleSyntaxError("'nocase' takes no value", option.value_pos)
        if cd.nocase:
            raise RuleSyntaxError("'nocase' given twice for the same content", option.name_pos)
        cd.nocase = True

    def _positional(self, option: Option) -> Content:
        """Checks shared by offset, depth, distance and within (Suricata's detect-*.c setup)."""
        cd = self._last_content(option)
        name = option.name
        if cd.startswith:
            raise RuleSyntaxError(
                f"'{name}' cannot be mixed with startswith on the same content", option.name_pos
            )
        if getattr(cd, name) is not None or getattr(cd, name + "_var") is not None:
            raise RuleSyntaxError(f"'{name}' given twice for the same content", option.name_pos)
        absolute = name in ("offset", "depth")
        if absolute and cd.relative:
            raise RuleSyntaxError(
                f"'{name}' cannot be mixed with distance/within on the same content", option.name_pos
            )
        if not absolute and (cd.offset is not None or cd.depth is not None or cd.offset_var or cd.depth_var):
            raise RuleSyntaxError(
                f"'{name}' cannot be mixed with offset/depth on the same content", option.name_pos
            )
        if cd.negated and cd.fast_pattern:
            raise RuleSyntaxError(
                f"'{name}' cannot modify a negated content that has fast_pattern", option.name_pos
            )
        if cd.fast_pattern_only:
            raise RuleSyntaxError(f"'{name}' cannot modify a content with fast_pattern:only", option.name_pos)
        if not absolute and len(self.contents) > 1 and self.contents[-2].fast_pattern_only:
            raise RuleSyntaxError(
                f"'{name}' refers to a previous content that has fast_pattern:only", option.name_pos
            )
        return cd

    def _number(self, option: Option, minimum: int, maximum: int) -> int:
        value = option.value
        if value is None or value == "":
            raise RuleSyntaxError(f"'{option.name}' needs a value", option.name_pos)
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1].strip()
        if not _INT.match(value):
            hint = " (byte_extract variables are not supported)" if value[:1].isalpha() else ""
            raise RuleSyntaxError(
                f"'{option.name}' needs a number, got '{option.value}'{hint}", option.value_pos
            )
        number = int(value)
        if not minimum <= number <= maximum:
            raise RuleSyntaxError(
                f"'{option.name}' must be from {minimum} to {maximum}, got {number}", option.value_pos
            )
        return number

    def _variable(self, option: Option) -> str | None:
        """The byte_extract variable an offset/depth/distance/within names, if it names one."""
        value = (option.value or "").strip()
        if value[:1].isalpha() or value[:1] == "_":
            if value not in self.variables:
                raise RuleSyntaxError(
                    f"'{option.name}' needs a number or a byte_extract variable; "
                    f"no earlier byte_extract defines '{value}'",
                    option.value_pos,
                )
            return value
        return None

    def _kw_offset(self, option: Option) -> None:
        cd = self._positional(option)
        cd.offset_var = self._variable(option)
        if cd.offset_var is None:
            cd.offset = self._number(option, 0, MAX_OFFSET)

    def _kw_depth(self, option: Option) -> None:
        cd = self._positional(option)
        cd.depth_var = self._variable(option)
        if cd.depth_var is not None:
            return
        depth = self._number(option, 1, MAX_OFFSET)
        if depth < len(cd.pattern):
            raise RuleSyntaxError(
                f"depth {depth} is smaller than the content length {len(cd.pattern)}", option.value_pos
            )
        cd.depth = depth

    def _threshold(self, option: Option, kinds: tuple[str, ...]) -> Threshold:
        """Parse 'type T, track by_src|by_dst, count N, seconds S' (detection_filter has no
        type); any order, each once."""
        if self.threshold is not None:
            raise RuleSyntaxError("a rule may have only one threshold or detection_filter", option.name_pos)
        fields: dict[str, str] = {}
        for part in self._needs_value(option).split(","):
            words = part.split()
            if len(words) != 2:
                raise RuleSyntaxError(
                    f"'{option.name}': expected 'name value', got '{part.strip()}'", option.value_pos
                )
            name, value = words[0].lower(), words[1].lower()
            if name in fields:
                raise RuleSyntaxError(f"'{option.name}': '{name}' given twice", option.value_pos)
            fields[name] = value
        allowed = {"track", "count", "seconds"} | ({"type"} if kinds != ("detection_filter",) else set())
        missing = sorted(allowed - set(fields))
        extra = sorted(set(fields) - allowed)
        if missing or extra:
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}"
            raise RuleSyntaxError(f"'{option.name}': {what}", option.value_pos)
        kind = fields.get("type", "detection_filter")
        if kind not in kinds:
            raise RuleSyntaxError(
                f"'{option.name}': type must be one of {', '.join(kinds)}", option.value_pos
            )
        if fields["track"] in ("by_rule", "by_both"):
            raise RuleSkip(f"unsupported {option.name} track '{fields['track']}'", keyword=option.name)
        if fields["track"] not in ("by_src", "by_dst"):
            raise RuleSyntaxError(
                f"'{option.name}': track must be by_src, by_dst, by_rule or by_both", option.value_pos
            )
        numbers = {}
        for name in ("count", "seconds"):
            if not _UINT.match(fields[name]) or int(fields[name]) < 1 or int(fields[name]) > UINT32_MAX:
                raise RuleSyntaxError(f"'{option.name}': {name} must be a positive number", option.value_pos)
            numbers[name] = int(fields[name])
        return Threshold(kind, fields["track"], numbers["count"], numbers["seconds"])

    def _kw_threshold(self, option: Option) -> None:
        self.threshold = self._threshold(option, ("limit", "threshold", "both"))

    def _kw_detection_filter(self, option: Option) -> None:
        self.threshold = self._threshold(option, ("detection_filter",))

    def _kw_startswith(self, option: Option) -> None:
        cd = self._last_content(option)
        if option.value is not None:
            raise RuleSyntaxError("'startswith' takes no value", option.value_pos)
        if cd.startswith:
            raise RuleSyntaxError("'startswith' given twice for the same content", option.name_pos)
        if cd.offset is not None or cd.depth is not None or cd.relative:
            raise RuleSyntaxError(
                "'startswith' cannot be mixed with offset, depth, distance or within on the same content",
                option.name_pos,
            )
        if cd.negated and cd.fast_pattern:
            raise RuleSyntaxError(
                "'startswith' cannot modify a negated content that has fast_pattern", option.name_pos
            )
        if cd.fast_pattern_only:
            raise RuleSyntaxError(
                "'startswith' cannot modify a content with fast_pattern:only", option.name_pos
            )
        cd.offset, cd.depth = 0, len(cd.pattern)
        cd.startswith = True

    def _kw_distance(self, option: Option) -> None:
        cd = self._positional(option)
        cd.distance_var = self._variable(option)
        if cd.distance_var is None:
            cd.distance = self._number(option, INT32_MIN, INT32_MAX)

    def _kw_within(self, option: Option) -> None:
        cd = self._positional(option)
        cd.within_var = self._variable(option)
        if cd.within_var is not None:
            return
        within = self._number(option, INT32_MIN, INT32_MAX)
        if within < len(cd.pattern):
            raise RuleSyntaxError(
                f"within {within} is smaller than the content length {len(cd.pattern)}: it can never match",
                option.value_pos,
            )
        cd.within = within

    def _kw_fast_pattern(self, option: Option) -> None:
        cd = self._last_content(option)
        positional = cd.offset is not None or cd.depth is not None or cd.relative
        if cd.fast_pattern:
            raise RuleSyntaxError("'fast_pattern' given twice for the same content", option.name_pos)
        if any(c.fast_pattern for c in self.contents):
            raise RuleSyntaxError("fast_pattern can be used on only one content in a rule", option.name_pos)
        if cd.negated and positional:
            raise RuleSyntaxError(
                "fast_pattern cannot be used on a negated content with offset/depth/distance/within",
                option.name_pos,
            )
        arg = (option.value or "").strip()
        if arg == "only":
            if cd.negated or positional:
                raise RuleSyntaxError(
                    "fast_pattern:only cannot be used with negation or with offset/depth/distance/within",
                    option.value_pos,
                )
            cd.fast_pattern_only = True
        elif arg:
            m = _FAST_PATTERN_CHOP.match(arg)
            if m is None:
                raise RuleSyntaxError(
                    f"invalid fast_pattern argument '{arg}' (expected 'only' or 'offset,length')",
                    option.value_pos,
                )
            chop_offset, chop_length = int(m.group(1)), int(m.group(2))
            if chop_offset + chop_length > len(cd.pattern):
                raise RuleSyntaxError(
                    f"fast_pattern {chop_offset},{chop_length} ends past the {len(cd.pattern)}-byte content",
                    option.value_pos,
                )
            if chop_length == 0:
                raise RuleSyntaxError("fast_pattern chop length must not be 0", option.value_pos)
            cd.fast_pattern_offset, cd.fast_pattern_length = chop_offset, chop_length
        cd.fast_pattern = True

    # -- endswith, rawbytes ----------------------------------------------------------------------

    def _kw_endswith(self, option: Option) -> None:
        cd = self._last_content(option)
        if option.value is not None:
            raise RuleSyntaxError("'endswith' takes no value", option.value_pos)
        if cd.endswith:
            raise RuleSyntaxError("'endswith' given twice for the same content", option.name_pos)
        if cd.negated:
            raise RuleSyntaxError("'endswith' cannot modify a negated content", option.name_pos)
        cd.endswith = True

    def _kw_rawbytes(self, option: Option) -> None:
        # the payload and stream buffers we inspect are raw already (no telnet/HTTP decoding)
        self._last_content(option)
        if option.value is not None:
            raise RuleSyntaxError("'rawbytes' takes no value", option.value_pos)

    # -- pcre ------------------------------------------------------------------------------------

    def _kw_pcre(self, option: Option) -> None:
        value = self._needs_value(option)
        negated, i = _negation(value)
        text = value[i:]
        if len(text) < 2 or text[0] != '"' or text[-1] != '"':
            raise RuleSyntaxError('pcre needs a quoted /pattern/flags: pcre:"/.../i"', option.value_pos + i)
        body = text[1:-1]
        start = option.value_pos + i + 1
        if not body.startswith("/"):
            raise RuleSyntaxError("pcre pattern must start with '/'", start)
        close = body.rfind("/")
        if close <= 0:
            raise RuleSyntaxError("pcre pattern has no closing '/'", start)
        pattern, letters = body[1:close], body[close + 1 :]
        flags = []
        relative = False
        for k, letter in enumerate(letters):
            if letter in _PCRE_ENGINE_FLAGS:
                if letter not in flags:
                    flags.append(letter)
            elif letter == "R":
                relative = True
            elif letter in "BO":
                pass  # rawbytes (our buffers are raw) and the match-limit override
            elif letter in _PCRE_APP_LAYER_FLAGS:
                raise RuleSkip("app-layer keyword", keyword=f"pcre/{letter}")
            else:
                raise RuleSyntaxError(f"unknown pcre modifier '{letter}'", start + close + 1 + k)
        if relative and not self.payload:
            raise RuleSyntaxError("pcre with the R (relative) modifier needs a preceding match", start)
        # the rule text escapes ; and " with a backslash: PCRE reads \; and \" as the literal
        try:
            regex = compile_regex(pattern, "".join(flags))
        except RegexUnsupported as exc:
            raise RuleSkip(f"pcre: {exc.reason}", keyword="pcre") from None
        except RegexSyntaxError as exc:
            raise RuleSyntaxError(f"pcre: {exc.message}", start + 1 + max(exc.position, 0)) from None
        self.payload.append(Pcre(pattern, "".join(flags), negated, relative, regex))

    # -- byte_test, byte_jump, byte_extract, isdataat -----------------------------------------

    def _byte_keyword(self, option: Option, parse):
        try:
            item = parse(self._needs_value(option))
        except ByteKeywordError as exc:
            raise RuleSyntaxError(f"{option.name}: {exc.message}", option.value_pos + exc.index) from None
        except NotImplementedError as exc:
            raise RuleSkip(f"{option.name}: {exc}", keyword=option.name) from None
        if getattr(item, "endian", None) == "dce":
            raise RuleSkip(f"{option.name}: dce byte order (needs the DCERPC parser)", keyword=option.name)
        for attr in ("value_var", "offset_var", "size_var"):
            name = getattr(item, attr, None)
            if name is not None and name not in self.variables:
                raise RuleSyntaxError(
                    f"{option.name} names '{name}', which no earlier byte_extract defines", option.value_pos
                )
        if getattr(item, "relative", False) and not self.payload:
            raise RuleSyntaxError(f"{option.name} is relative but has no preceding match", option.value_pos)
        self.payload.append(item)
        return item

    def _kw_byte_test(self, option: Option) -> None:
        self._byte_keyword(option, byte_keywords.parse_byte_test)

    def _kw_byte_jump(self, option: Option) -> None:
        self._byte_keyword(option, byte_keywords.parse_byte_jump)

    def _kw_isdataat(self, option: Option) -> None:
        self._byte_keyword(option, byte_keywords.parse_isdataat)

    def _kw_byte_extract(self, option: Option) -> None:
        item: ByteExtract = self._byte_keyword(option, byte_keywords.parse_byte_extract)
        if item.name in self.variables:
            raise RuleSyntaxError(f"byte_extract variable '{item.name}' defined twice", option.value_pos)
        self.variables.add(item.name)

    # -- header keywords and dsize ---------------------------------------------------------------

    def _header_keyword(self, option: Option):
        try:
            return parse_header_keyword(option.name, option.value)
        except HeaderKeywordError as exc:
            raise RuleSyntaxError(exc.message, option.value_pos + exc.index) from None

    def _kw_dsize(self, option: Option) -> None:
        self._once(option)
        self.dsize = self._header_keyword(option)

    # -- flowbits --------------------------------------------------------------------------------

    def _kw_target(self, option: Option) -> None:
        self._once(option)
        value = self._needs_value(option).lower()
        if value not in ("src_ip", "dest_ip"):
            raise RuleSyntaxError("target must be src_ip or dest_ip", option.value_pos)
        self.target = value

    def _kw_noalert(self, option: Option) -> None:
        if option.value:
            raise RuleSyntaxError("'noalert' takes no value", option.value_pos)
        self.noalert = True

    def _kw_flowbits(self, option: Option) -> None:
        value = self._needs_value(option)
        command, comma, names = (part.strip() for part in value.partition(","))
        command = command.lower()
        if command == "noalert":
            if comma:
                raise RuleSyntaxError("flowbits:noalert takes no name", option.value_pos)
            self.noalert = True
            return
        if command not in _FLOWBIT_COMMANDS:
            raise RuleSyntaxError(
                f"unknown flowbits command '{command}' (set, unset, toggle, isset, isnotset, noalert)",
                option.value_pos,
            )
        if not names:
            raise RuleSyntaxError(f"flowbits:{command} needs a name", option.value_pos)
        any_of = "|" in names
        if any_of and "&" in names:
            raise RuleSyntaxError("flowbits names cannot mix '|' and '&'", option.value_pos)
        if any_of and command not in ("isset", "isnotset"):
            raise RuleSyntaxError(
                "flowbits names joined by '|' only work with isset/isnotset", option.value_pos
            )
        parts = tuple(n.strip() for n in re.split(r"[|&]", names))
        for name in parts:
            if not _FLOWBIT_NAME.match(name):
                raise RuleSyntaxError(f"invalid flowbit name '{name}'", option.value_pos)
        self.flowbits.append(Flowbit(command, parts, any_of))


def _add_header_handlers() -> None:
    """One handler per header keyword (ttl, tos, flags, ...): they share the parsing."""

    def handler(self: OptionReader, option: Option) -> None:
        self.header_checks.append(self._header_keyword(option))

    for name in HEADER_KEYWORDS:
        if name != "dsize":
            setattr(OptionReader, "_kw_" + name.replace(".", "_"), handler)


_add_header_handlers()
