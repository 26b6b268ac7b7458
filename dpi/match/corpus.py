"""Content literals pulled from Suricata/Snort rule text, as a pattern corpus for the matcher.

This is deliberately not a rule parser (dpi/rules/ is): it reads only the `content` option of active
`alert` rules, decodes `|hex|` runs and backslash escapes, and notes whether a `nocase` modifier follows
before the next content. Negated contents (`content:!"..."`) are left out: they never feed a prefilter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dpi.rules.content import pattern_strength


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


def _positive_contents(line: str) -> list[list]:
    """[bytes, nocase, fast_pattern value (None without the keyword)] of every non-empty,
    non-negated content of one rule line, in rule order."""
    start = line.find("(")
    end = line.rfind(")")
    if start < 0 or end < start:
        return []
    contents: list[list] = []
    current: list | None = None
    for keyword, value in split_options(line[start + 1 : end]):
        if keyword == "content":
            current = None
            if value.startswith("!"):
                continue
            current = [decode_content(value), False, None]
            contents.append(current)
        elif current is not None and keyword == "nocase":
            current[1] = True
        elif current is not None and keyword == "fast_pattern":
            current[2] = value
    return [c for c in contents if c[0]]


def rule_contents(line: str) -> list[tuple[bytes, bool]]:
    """(content bytes, nocase) of every non-negated content of one rule line."""
    return [(c[0], c[1]) for c in _positive_contents(line)]


def rule_fast_pattern(line: str) -> tuple[bytes, bool] | None:
    """(bytes, nocase) the matcher would look for on behalf of one rule line, or None without one.

    As dpi.rules.content.choose_fast_pattern, Suricata's choice within one buffer: the content marked
    ``fast_pattern`` (its ``N,M`` chop applied), else the longest positive content, then the strongest,
    then the first.
    """
    contents = _positive_contents(line)
    if not contents:
        return None
    marked = [c for c in contents if c[2] is not None]
    if marked:
        pattern, nocase, value = marked[0]
        if "," in value:  # fast_pattern:N,M, the chop
            offset, length = (int(v) for v in value.split(","))
            pattern = pattern[offset : offset + length] or pattern
        return pattern, nocase
    best = max(contents, key=lambda c: (len(c[0]), pattern_strength(c[0]), -contents.index(c)))
    return best[0], best[1]


def _alert_rules(path: str | Path, read):
    """``read(line)`` of each active ``alert`` rule line of a rules file, in file order; a line whose
    content does not decode is left out (a malformed content is the rule parser's business)."""
    with open(path, encoding="utf-8", errors="replace") as rules:
        for line in rules:
            if not line.startswith("alert "):
                continue
            try:
                yield read(line)
            except ValueError:
                continue


def load_fast_patterns(path: str | Path) -> tuple[list[bytes], list[bool]]:
    """The distinct fast patterns of a rules file's active ``alert`` rules, in order of first appearance.

    This is the pattern set a detection engine hands its matcher when it loads every rule of the file.
    """
    found = [fp for fp in _alert_rules(path, rule_fast_pattern) if fp is not None]
    return unique_contents([fp[0] for fp in found], [fp[1] for fp in found])


def load_contents(path: str | Path, limit: int | None = None) -> tuple[list[bytes], list[bool]]:
    """Content literals of the active `alert` rules of a rules file, in file order (duplicates kept)."""
    patterns: list[bytes] = []
    nocase: list[bool] = []
    for found in _alert_rules(path, rule_contents):
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


def transport_payloads(decoded) -> np.ndarray:
    """Mask of the decoded packets that carry a TCP or UDP payload of their own (fragments left
    out: their bytes belong to the datagram)."""
    keep = (decoded.payload_len > 0) & ((decoded.proto == 6) | (decoded.proto == 17))
    return keep & (decoded.is_fragment == 0)


def capture_payloads(paths) -> tuple[np.ndarray, np.ndarray]:
    """The TCP and UDP payloads of captures (fragments left out), concatenated in capture order:
    (bytes, lengths); payload i starts at ``lengths[:i].sum()``. A damaged record ends its capture."""
    from dpi.capture import batches_of
    from dpi.decode import decode_batch

    datas: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for batch in batches_of([str(p) for p in paths]):
        decoded = decode_batch(batch)
        keep = transport_payloads(decoded)
        starts = decoded.payload_offset[keep]
        sizes = decoded.payload_len[keep]
        if starts.shape[0]:
            # Index of every payload byte in the batch's buffer: one gather, no loop per packet.
            first = np.repeat(starts - np.cumsum(sizes) + sizes, sizes)
            datas.append(batch.buffer[first + np.arange(int(sizes.sum()))])
            lengths.append(sizes)
    if not datas:
        return np.zeros(0, np.uint8), np.zeros(0, np.int64)
    return np.concatenate(datas), np.concatenate(lengths).astype(np.int64)


def http_like_corpus(n_bytes: int, seed: int = 0) -> np.ndarray:
    """``n_bytes`` of HTTP/1.1-like traffic from a fixed seed: requests with common headers, and
    responses with text, HTML and binary bodies, as a clear-text web capture's payloads look."""
    rng = np.random.default_rng(seed)
    methods = [b"GET", b"GET", b"GET", b"POST", b"HEAD"]
    words = b"index images api v1 login static js css search user update download cgi-bin wp-content".split()
    exts = [b".html", b".php", b".js", b".css", b".png", b".jpg", b".json", b"", b".aspx"]
    hosts = [b"www.example.com", b"cdn.example.net", b"api.example.org", b"static.test", b"10.0.0.5"]
    agents = [
        b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
        b"Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        b"curl/8.4.0",
        b"Microsoft-CryptoAPI/10.0",
    ]
    types = [b"text/html; charset=utf-8", b"application/json", b"image/png", b"application/javascript"]
    text = (
        b'<html><head><title>Example page</title></head><body><div class="content"><p>Lorem ipsum '
        b'dolor sit amet, consectetur adipiscing elit.</p><a href="/news/index.html">more</a></div>'
        b'<script src="/static/js/app.js"></script></body></html>\n'
    )
    out = bytearray()
    while len(out) < n_bytes:
        path = b"/" + b"/".join(words[i] for i in rng.integers(0, len(words), rng.integers(1, 4)))
        path += exts[rng.integers(0, len(exts))]
        if rng.random() < 0.3:
            path += b"?q=" + rng.integers(0, 1 << 30).tobytes().hex().encode()
        out += methods[rng.integers(0, len(methods))] + b" " + path + b" HTTP/1.1\r\n"
        out += b"Host: " + hosts[rng.integers(0, len(hosts))] + b"\r\n"
        out += b"User-Agent: " + agents[rng.integers(0, len(agents))] + b"\r\n"
        out += b"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n"
        kind = int(rng.integers(0, len(types)))
        size = int(rng.integers(64, 4096))
        if kind == 2:  # binary body
            body = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        else:
            body = (text * (size // len(text) + 1))[:size]
        out += b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Type: " + types[kind] + b"\r\n"
        out += b"Content-Length: " + str(size).encode() + b"\r\n\r\n" + body
    return np.frombuffer(bytes(out[:n_bytes]), dtype=np.uint8).copy()
