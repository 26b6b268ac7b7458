"""Content literals pulled from Suricata/Snort rule text, as a pattern corpus for the matcher.

This is deliberately not a rule parser (dpi/rules/ is): it reads only the `content` option of active
`alert` rules, decodes `|hex|` runs and backslash escapes, and notes whether a `nocase` modifier follows
before the next content. Negated contents (`content:!"..."`) are left out: they never feed a prefilter.
"""

from __future__ import annotations

from pathlib import Path


def split_options(body: str) -> list[tuple[str, str]]:
    """(keyword, raw value) pairs of a rule's option body, split on unescaped ';' outside quotes."""
    options: list[tuple[str, str]] = []
    current: list[str] = []
    in_quotes = False
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            current.append(body[i : i + 2])
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == ";" and not in_quotes:
            text = "".join(current).strip()
            if text:
                keyword, _, value = text.partition(":")
                options.append((keyword.strip(), value.strip()))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    return options


def decode_content(value: str) -> bytes:
    """Bytes of a quoted content value: `|41 42|` hex runs and `\\x` escapes of one character."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        raise ValueError(f"content value is not quoted: {value!r}")
    text = value[1:-1]
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "|":
            end = text.find("|", i + 1)
            if end < 0:
                raise ValueError(f"unterminated hex run in {value!r}")
            out += bytes.fromhex(text[i + 1 : end])
            i = end + 1
        elif ch == "\\" and i + 1 < len(text):
            out += text[i + 1].encode("latin-1")
            i += 2
        else:
            out += ch.encode("utf-8")
            i += 1
    return bytes(out)


def rule_contents(line: str) -> list[tuple[bytes, bool]]:
    """(content bytes, nocase) of every non-negated content of one rule line."""
    start = line.find("(")
    end = line.rfind(")")
    if start < 0 or end < start:
        return []
    contents: list[tuple[bytes, bool]] = []
    current: list | None = None
    for keyword, value in split_options(line[start + 1 : end]):
        if keyword == "content":
            current = None
            if value.startswith("!"):
                continue
            current = [decode_content(value), False]
            contents.append(current)
        elif keyword == "nocase" and current is not None:
            current[1] = True
    return [(pattern, nocase) for pattern, nocase in contents if pattern]


def load_contents(path: str | Path, limit: int | None = None) -> tuple[list[bytes], list[bool]]:
    """Content literals of the active `alert` rules of a rules file, in file order (duplicates kept)."""
    patterns: list[bytes] = []
    nocase: list[bool] = []
    with open(path, encoding="utf-8", errors="replace") as rules:
        for line in rules:
            if not line.startswith("alert "):
                continue
            try:
                found = rule_contents(line)
            except ValueError:
                continue  # a malformed content is the rule parser's business, not the corpus's
            for pattern, flag in found:
                patterns.append(pattern)
                nocase.append(flag)
            if limit is not None and len(patterns) >= limit:
                return patterns[:limit], nocase[:limit]
    return patterns, nocase


def unique_contents(patterns: list[bytes], nocase: list[bool], limit: int | None = None):
    """First `limit` distinct (pattern, nocase) pairs, in order of first appearance."""
    seen: set[tuple[bytes, bool]] = set()
    out_patterns: list[bytes] = []
    out_nocase: list[bool] = []
    for pattern, flag in zip(patterns, nocase, strict=True):
        key = (pattern.lower() if flag else pattern, flag)
        if key in seen:
            continue
        seen.add(key)
        out_patterns.append(pattern)
        out_nocase.append(flag)
        if limit is not None and len(out_patterns) >= limit:
            break
    return out_patterns, out_nocase
