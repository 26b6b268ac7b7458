"""Parse PCRE pattern text (the part between the slashes of a rule's ``pcre``) into a small tree.

The tree has five kinds of node, all plain tuples so that they are cheap and hashable:

- ``("set", mask)``: one subject byte whose value has its bit set in ``mask`` (a 256-bit int);
  literals, ``.``, classes and ``\\d``-style escapes all become sets, with caseless folding
  already applied;
- ``("assert", kind)``: a zero-width test of the position (``^``, ``$``, ``\\b``, ...);
- ``("cat", items)`` and ``("alt", branches)``;
- ``("rep", node, low, high, greedy)`` with ``high == -1`` for no upper bound;
- ``("look", node, behind, negate, uid)``: a lookaround; ``uid`` tells occurrences apart.

Capturing is irrelevant to us (only the match span is reported), so groups of every kind are
just their content. Atomic groups and possessive quantifiers are read as plain (greedy)
groups: an approximation that can only accept more than PCRE does.

Semantics follow PCRE2 in its 8-bit, non-UTF mode with the default character tables: ``\\d``,
``\\w``, ``\\s`` and caseless matching are ASCII; ``\\v`` is the vertical-space class, not the
vertical-tab character.
"""

from __future__ import annotations

ALL_BYTES = (1 << 256) - 1

# assertion kinds (shared with the VM)
A_SUBJECT_START = 0  # \A, ^ without m
A_LINE_START = 1  # ^ with m
A_END_OR_FINAL_NL = 2  # \Z, $ without m
A_LINE_END = 3  # $ with m
A_SUBJECT_END = 4  # \z, $ with E
A_WORD_BOUNDARY = 5  # \b
A_NOT_WORD_BOUNDARY = 6  # \B

MAX_REPEAT = 65535
MAX_NESTING = 120  # parentheses; the parser recurses about five frames per level


class RegexSyntaxError(ValueError):
    """A malformed pattern; ``position`` is the index into the pattern text."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at position {position}")
        self.message = message
        self.position = position


class RegexUnsupported(ValueError):
    """Valid PCRE that this engine does not implement; ``reason`` is a short skip reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _bits(values) -> int:
    mask = 0
    for v in values:
        mask |= 1 << v
    return mask


def _range(lo: int, hi: int) -> int:
    return ((1 << (hi + 1)) - 1) ^ ((1 << lo) - 1)


DIGIT = _range(0x30, 0x39)
UPPER = _range(0x41, 0x5A)
LOWER = _range(0x61, 0x7A)
WORD = DIGIT | UPPER | LOWER | _bits([0x5F])
SPACE = _bits([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20])
HSPACE = _bits([0x09, 0x20, 0xA0])
VSPACE = _bits([0x0A, 0x0B, 0x0C, 0x0D, 0x85])
NEWLINE = _bits([0x0A])

POSIX_CLASSES = {
    "alpha": UPPER | LOWER,
    "digit": DIGIT,
    "alnum": UPPER | LOWER | DIGIT,
    "upper": UPPER,
    "lower": LOWER,
    "space": SPACE,
    "blank": _bits([0x09, 0x20]),
    "punct": _range(0x21, 0x2F) | _range(0x3A, 0x40) | _range(0x5B, 0x60) | _range(0x7B, 0x7E),
    "print": _range(0x20, 0x7E),
    "graph": _range(0x21, 0x7E),
    "cntrl": _range(0x00, 0x1F) | _bits([0x7F]),
    "xdigit": DIGIT | _range(0x41, 0x46) | _range(0x61, 0x66),
    "word": WORD,
    "ascii": _range(0x00, 0x7F),
}

# escapes that stand for a class of bytes, inside and outside [...]
CLASS_ESCAPES = {
    "d": DIGIT,
    "D": ALL_BYTES ^ DIGIT,
    "w": WORD,
    "W": ALL_BYTES ^ WORD,
    "s": SPACE,
    "S": ALL_BYTES ^ SPACE,
    "h": HSPACE,
    "H": ALL_BYTES ^ HSPACE,
    "v": VSPACE,
    "V": ALL_BYTES ^ VSPACE,
}
SIMPLE_ESCAPES = {"a": 0x07, "e": 0x1B, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09}
UNSUPPORTED_ESCAPES = {
    "p": "unicode property",
    "P": "unicode property",
    "X": "unicode property",
    "C": "\\C",
    "G": "\\G",
    "K": "\\K",
    "k": "backreference",
}
PCRE2_REJECTS = "LlUuF"  # Perl case-changing escapes: PCRE2 refuses them
EXTENDED_SPACE = " \t\n\x0b\x0c\r"
HEX = "0123456789abcdefABCDEF"


def fold_case(mask: int) -> int:
    """Add the other ASCII case of every letter in ``mask``."""
    upper = (mask >> 0x41) & ((1 << 26) - 1)
    lower = (mask >> 0x61) & ((1 << 26) - 1)
    both = upper | lower
    return mask | (both << 0x41) | (both << 0x61)


def parse(pattern: str, flags: str = "") -> tuple:
    """The tree of ``pattern`` under the rule's engine flags (letters from ``ismxEG``; others
    are ignored here)."""
    return _Parser(pattern, flags).parse()


class _Parser:
    def __init__(self, pattern: str, flags: str):
        self.text = pattern
        self.pos = 0
        self.caseless = "i" in flags
        self.dotall = "s" in flags
        self.multiline = "m" in flags
        self.extended = "x" in flags
        self.ungreedy = "G" in flags
        self.dollar_end_only = "E" in flags
        self.captures = 0  # capturing groups opened so far: decides \12 backreference vs octal
        self.depth = 0
        self.looks = 0
        self.quoting = False  # inside \Q...\E
        if any(ord(ch) > 0xFF for ch in pattern):
            raise RegexUnsupported("non-latin1 character")

    # -- helpers -----------------------------------------------------------------------------

    def _error(self, message: str, position: int | None = None):
        raise RegexSyntaxError(message, self.pos if position is None else position)

    def _peek(self, offset: int = 0) -> str:
        k = self.pos + offset
        return self.text[k] if k < len(self.text) else ""

    def _flags(self) -> tuple:
        return (self.caseless, self.dotall, self.multiline, self.extended, self.ungreedy)

    def _restore(self, saved: tuple) -> None:
        self.caseless, self.dotall, self.multiline, self.extended, self.ungreedy = saved

    def _skip_extended(self) -> None:
        """In x mode, whitespace and # comments between items are not part of the pattern."""
        if not self.extended or self.quoting:
            return
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch in EXTENDED_SPACE:
                self.pos += 1
            elif ch == "#":
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            else:
                return

    def _literal(self, code: int) -> tuple:
        mask = 1 << code
        return ("set", fold_case(mask) if self.caseless else mask)

    # -- structure ---------------------------------------------------------------------------

    def parse(self) -> tuple:
        node = self._alternation()
        if self.pos < len(self.text):  # only a ')' stops the top level early
            self._error("unmatched closing parenthesis")
        return node

    def _alternation(self) -> tuple:
        saved = self._flags()
        branches = [self._sequence()]
        while self._peek() == "|":
            self.pos += 1
            branches.append(self._sequence())
        self._restore(saved)  # inline flags end with their group (but cross its branches)
        return branches[0] if len(branches) == 1 else ("alt", tuple(branches))

    def _sequence(self) -> tuple:
        items = []
        while True:
            self._skip_extended()
            if self.pos >= len(self.text):
                break
            if not self.quoting and self.text[self.pos] in "|)":
                break
            atom_pos = self.pos
            atom = self._atom()
            if atom is None:
                continue
            items.append(self._quantified(atom, atom_pos))
        return items[0] if len(items) == 1 else ("cat", tuple(items))

    def _read_braces(self, at: int):
        """``(low, high, end)`` if a {n}, {n,}, {n,m} or {,m} quantifier starts at ``at``."""
        text = self.text
        close = text.find("}", at)
        if close < 0:
            return None
        body = text[at + 1 : close]
        low_text, comma, high_text = body.partition(",")
        if not comma:
            if not low_text.isdigit() or not low_text.isascii():
                return None
            low = high = int(low_text)
        else:
            if low_text and not (low_text.isdigit() and low_text.isascii()):
                return None
            if high_text and not (high_text.isdigit() and high_text.isascii()):
                return None
            if not low_text and not high_text:
                return None
            low = int(low_text) if low_text else 0
            high = int(high_text) if high_text else -1
        if low > MAX_REPEAT or high > MAX_REPEAT:
            self._error("number too big in {} quantifier", at)
        if high != -1 and high < low:
            self._error("numbers out of order in {} quantifier", at)
        return low, high, close + 1

    def _quantified(self, atom: tuple, atom_pos: int) -> tuple:
        counted = False
        while True:
            if self.quoting:
                if not self.text.startswith("\\E", self.pos):
                    return atom
                self.quoting = False  # \Qab\E+ repeats the b
                self.pos += 2
            self._skip_extended()
            ch = self._peek()
            if ch == "*":
                low, high, end = 0, -1, self.pos + 1
            elif ch == "+":
                low, high, end = 1, -1, self.pos + 1
            elif ch == "?":
                low, high, end = 0, 1, self.pos + 1
            elif ch == "{" and (braces := self._read_braces(self.pos)) is not None:
                low, high, end = braces
            else:
                return atom
            if counted:
                self._error("quantifier does not follow a repeatable item")
            counted = True
            self.pos = end
            greedy = not self.ungreedy
            mode = self._peek()
            if mode == "?":
                greedy = not greedy
                self.pos += 1
            elif mode == "+":  # possessive: approximated as greedy
                greedy = True
                self.pos += 1
            atom = ("rep", atom, low, high, greedy)

    def _atom(self):
        text = self.text
        ch = text[self.pos]
        if self.quoting:
            if text.startswith("\\E", self.pos):
                self.quoting = False
                self.pos += 2
                return None
            self.pos += 1
            return self._literal(ord(ch))
        if ch == "(":
            return self._group()
        if ch == "[":
            return self._class()
        if ch == "\\":
            return self._escape_outside()
        self.pos += 1
        if ch == ".":
            return ("set", ALL_BYTES if self.dotall else ALL_BYTES ^ NEWLINE)
        if ch == "^":
            return ("assert", A_LINE_START if self.multiline else A_SUBJECT_START)
        if ch == "$":
            if self.multiline:
                return ("assert", A_LINE_END)
            return ("assert", A_SUBJECT_END if self.dollar_end_only else A_END_OR_FINAL_NL)
        if ch in "*+?" or (ch == "{" and self._read_braces(self.pos - 1) is not None):
            self._error("quantifier does not follow a repeatable item", self.pos - 1)
        return self._literal(ord(ch))

    # -- groups ------------------------------------------------------------------------------

    def _group(self):
        text = self.text
        open_pos = self.pos
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise RegexUnsupported("nesting too deep")
        try:
            if text.startswith("(*", open_pos):
                raise RegexUnsupported("backtracking verb")
            if not text.startswith("(?", open_pos):
                self.pos += 1
                self.captures += 1
                return self._group_body(open_pos)
            self.pos += 2
            ch = self._peek()
            look = {"=": (False, False), "!": (False, True)}.get(ch)
            if ch == "<" and self._peek(1) in ("=", "!"):
                look = (True, self._peek(1) == "!")
                self.pos += 1
            if look is not None:
                self.pos += 1
                body = self._group_body(open_pos)
                self.looks += 1
                return ("look", body, look[0], look[1], self.looks)
            if ch == "#":
                close = text.find(")", self.pos)
                if close < 0:
                    self._error("missing ) after (?# comment", open_pos)
                self.pos = close + 1
                return None
            if ch in (":", ">", "|"):  # plain, atomic (approximated), branch reset
                self.pos += 1
                return self._group_body(open_pos)
            if ch == "P" and self._peek(1) == "<" or ch == "<" or ch == "'":
                self.pos += 2 if ch == "P" else 1
                self._group_name("'" if ch == "'" else ">")
                self.captures += 1
                return self._group_body(open_pos)
            if ch == "P" and self._peek(1) == "=":
                raise RegexUnsupported("backreference")
            if ch == "P" and self._peek(1) == ">" or ch in "R&+-0123456789" and self._is_call():
                raise RegexUnsupported("recursion")
            if ch == "(":
                raise RegexUnsupported("conditional")
            if ch == "C":
                raise RegexUnsupported("callout")
            return self._option_setting(open_pos)
        finally:
            self.depth -= 1

    def _is_call(self) -> bool:
        """(?R), (?1), (?-1), (?+1), (?&name): a subroutine call, not an option setting."""
        ch = self._peek()
        if ch in "R&":
            return True
        k = self.pos + (1 if ch in "+-" else 0)
        return k < len(self.text) and self.text[k].isdigit()

    def _group_name(self, terminator: str) -> None:
        start = self.pos
        end = self.text.find(terminator, start)
        name = self.text[start:end] if end >= 0 else ""
        if not name or not all(c.isalnum() or c == "_" for c in name) or name[0].isdigit():
            self._error("invalid group name", start)
        self.pos = end + 1

    def _group_body(self, open_pos: int) -> tuple:
        body = self._alternation()
        if self._peek() != ")":
            self._error("missing closing parenthesis", open_pos)
        self.pos += 1
        return body

    def _option_setting(self, open_pos: int):
        """(?imsx-imsx) changes the flags for the rest of the group; (?imsx:...) for its body."""
        on = True
        changes = {}
        letters = {"i": "caseless", "s": "dotall", "m": "multiline", "x": "extended", "U": "ungreedy"}
        while True:
            ch = self._peek()
            if ch == "":
                self._error("missing closing parenthesis", open_pos)
            self.pos += 1
            if ch in letters:
                changes[letters[ch]] = on
            elif ch in "nJ":
                pass  # no-auto-capture, duplicate names: nothing to do without captures
            elif ch == "-" and on:
                on = False
            elif ch == "^" and on and self.pos == open_pos + 3:
                changes.update(caseless=False, dotall=False, multiline=False, extended=False, ungreedy=False)
            elif ch == ")":
                for name, value in changes.items():
                    setattr(self, name, value)
                return None
            elif ch == ":":
                saved = self._flags()
                for name, value in changes.items():
                    setattr(self, name, value)
                body = self._group_body(open_pos)
                self._restore(saved)
                return body
            else:
                self._error("unrecognized character after (? or (?-", self.pos - 1)

    # -- escapes -----------------------------------------------------------------------------

    def _escape_outside(self):
        """An escape outside a class: a literal, a class of bytes, an assertion or \\Q."""
        start = self.pos
        if start + 1 >= len(self.text):
            self._error("\\ at end of pattern", start)
        ch = self.text[start + 1]
        assertions = {
            "A": A_SUBJECT_START,
            "z": A_SUBJECT_END,
            "Z": A_END_OR_FINAL_NL,
            "b": A_WORD_BOUNDARY,
            "B": A_NOT_WORD_BOUNDARY,
        }
        if ch in assertions:
            self.pos += 2
            return ("assert", assertions[ch])
        if ch == "Q":
            self.pos += 2
            self.quoting = True
            return None
        if ch == "E":
            self.pos += 2
            return None
        if ch == "R":
            self.pos += 2
            crlf = ("cat", (("set", 1 << 0x0D), ("set", 1 << 0x0A)))
            return ("alt", (crlf, ("set", VSPACE)))
        if ch == "N":
            if self._peek(2) == "{":
                raise RegexUnsupported("unicode property")
            self.pos += 2
            return ("set", ALL_BYTES ^ NEWLINE)
        if ch == "g":
            follow = self._peek(2)
            raise RegexUnsupported("recursion" if follow in ("<", "'") else "backreference")
        if ch in "123456789":
            k = start + 1
            while k < len(self.text) and self.text[k] in "0123456789":
                k += 1
            number = int(self.text[start + 1 : k])
            if number < 10 or ch in "89" or number <= self.captures:
                raise RegexUnsupported("backreference")
        value = self._escape_common(in_class=False)
        if isinstance(value, int):
            return self._literal(value)
        return ("set", value[0])

    def _escape_common(self, in_class: bool):
        """The escapes shared by both contexts: an int is one byte value, a 1-tuple holds the
        mask of a class escape (\\d and friends). ``self.pos`` is at the backslash."""
        text = self.text
        start = self.pos
        if start + 1 >= len(text):
            self._error("\\ at end of pattern", start)
        ch = text[start + 1]
        self.pos = start + 2
        if ch in CLASS_ESCAPES:
            return (CLASS_ESCAPES[ch],)
        if ch in SIMPLE_ESCAPES:
            return SIMPLE_ESCAPES[ch]
        if ch in UNSUPPORTED_ESCAPES:
            raise RegexUnsupported(UNSUPPORTED_ESCAPES[ch])
        if ch in PCRE2_REJECTS:
            self._error(f"PCRE2 does not support \\{ch}", start)
        if ch == "x":
            return self._hex_escape(start)
        if ch == "o":
            if self._peek() != "{":
                self._error("missing opening brace after \\o", start)
            close = text.find("}", self.pos)
            digits = text[self.pos + 1 : close] if close >= 0 else ""
            if not digits or any(c not in "01234567" for c in digits):
                self._error("malformed \\o{...} escape", start)
            self.pos = close + 1
            return self._byte_value(int(digits, 8))
        if ch == "c":
            if self.pos >= len(text) or not (0x20 <= ord(text[self.pos]) <= 0x7E):
                self._error("\\c must be followed by a printable ASCII character", start)
            value = ord(text[self.pos].upper()) ^ 0x40
            self.pos += 1
            return value
        if ch in "89":
            return ord(ch)  # inside a class (outside, the caller already made it a backreference)
        if ch in "01234567":
            k = self.pos - 1
            end = k
            while end < len(text) and end < k + 3 and text[end] in "01234567":
                end += 1
            self.pos = end
            value = int(text[k:end], 8)
            if value > 0xFF:
                self._error("octal value greater than \\377 in 8-bit non-UTF mode", start)
            return value
        if ch.isalnum():
            self._error(f"unrecognized character follows \\: \\{ch}", start)
        return ord(ch)

    def _hex_escape(self, start: int) -> int:
        text = self.text
        if self._peek() == "{":
            close = text.find("}", self.pos)
            digits = text[self.pos + 1 : close] if close >= 0 else ""
            if not digits or any(c not in HEX for c in digits):
                self._error("malformed \\x{...} escape", start)
            self.pos = close + 1
            return self._byte_value(int(digits, 16))
        end = self.pos
        while end < len(text) and end < self.pos + 2 and text[end] in HEX:
            end += 1
        value = int(text[self.pos : end], 16) if end > self.pos else 0
        self.pos = end
        return value

    @staticmethod
    def _byte_value(value: int) -> int:
        if value > 0xFF:
            raise RegexUnsupported("non-latin1 character")
        return value

    # -- classes -----------------------------------------------------------------------------

    def _class(self) -> tuple:
        text = self.text
        open_pos = self.pos
        self.pos += 1
        negate = self._peek() == "^"
        if negate:
            self.pos += 1
        mask = 0
        first = True
        quoting = False
        while True:
            if self.pos >= len(text):
                self._error("missing terminating ] for character class", open_pos)
            ch = text[self.pos]
            if quoting:
                if text.startswith("\\E", self.pos):
                    quoting = False
                    self.pos += 2
                else:
                    self.pos += 1
                    mask |= 1 << ord(ch)
                continue
            if ch == "]" and not first:
                self.pos += 1
                break
            first = False
            if ch == "\\" and self._peek(1) in ("Q", "E"):
                quoting = self._peek(1) == "Q"
                self.pos += 2
                continue
            if ch == "[" and self._peek(1) in (":", ".", "="):
                posix = self._posix_class()
                if posix is not None:
                    mask |= posix
                    continue
            item = self._class_item()
            if isinstance(item, int):
                mask |= self._class_range(item)
            else:
                mask |= item[0]
                if self._peek() == "-" and self._peek(1) not in ("]", ""):
                    self._error("invalid range in character class", self.pos)
        if self.caseless:
            mask = fold_case(mask)
        return ("set", ALL_BYTES ^ mask if negate else mask)

    def _class_item(self):
        """One member of a class: an int (byte value) or a 1-tuple (mask of a class escape)."""
        ch = self.text[self.pos]
        if ch != "\\":
            self.pos += 1
            return ord(ch)
        follow = self._peek(1)
        if follow == "b":
            self.pos += 2
            return 0x08
        if follow in ("B", "A", "z", "Z", "R", "N", "G", "K", "X", "g", "k"):
            if follow in UNSUPPORTED_ESCAPES and follow not in "GKk":
                raise RegexUnsupported(UNSUPPORTED_ESCAPES[follow])
            self._error("escape sequence is invalid in character class", self.pos)
        return self._escape_common(in_class=True)

    def _class_range(self, low: int) -> int:
        """``low`` alone, or the range low-high when a '-' and an end byte follow."""
        text = self.text
        if self._peek() == "-" and self._peek(1) not in ("]", ""):
            dash = self.pos
            if self._peek(1) == "[" and self._peek(2) in (":", ".", "="):
                return 1 << low  # '-' before a POSIX class is a literal; the class is read next
            self.pos += 1
            if text.startswith("\\Q", self.pos) or text.startswith("\\E", self.pos):
                self.pos = dash
                return 1 << low
            high = self._class_item()
            if not isinstance(high, int):
                self._error("invalid range in character class", dash)
            if high < low:
                self._error("range out of order in character class", dash)
            return _range(low, high)
        return 1 << low

    def _posix_class(self):
        text = self.text
        kind = text[self.pos + 1]
        close = text.find(kind + "]", self.pos + 2)
        if close < 0:
            return None
        if kind != ":":
            self._error("POSIX collating elements are not supported", self.pos)
        name = text[self.pos + 2 : close]
        negate = name.startswith("^")
        if negate:
            name = name[1:]
        if not (name.isascii() and name.isalpha()):
            return None  # not a POSIX class after all: '[' is a literal member
        if name not in POSIX_CLASSES:
            self._error("unknown POSIX class name", self.pos)
        self.pos = close + 2
        mask = POSIX_CLASSES[name]
        return ALL_BYTES ^ mask if negate else mask
