"""Protocol mixes as flow and message tables: HTTP/1.1 with bodies, DNS over UDP and TCP, TLS
handshakes with encrypted records, SMTP, and plain TCP and UDP noise.

Python writes the small per-flow parts (request lines, headers, DNS messages, TLS handshake
records); every body, certificate and ciphertext is a slice of one of two shared pools (text and
random bytes), so the bulk of the bytes is never copied per flow. The tables then go to
``dpi.gen.session`` and ``dpi.gen.frames``, which write the packets as columns.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass

import numpy as np

from dpi.gen.session import TO_CLIENT, TO_SERVER, Messages

APPS = ("http", "dns-udp", "dns-tcp", "tls", "smtp", "tcp-noise", "udp-noise", "planted")
(HTTP, DNS_UDP, DNS_TCP, TLS, SMTP, TCP_NOISE, UDP_NOISE, PLANTED) = range(len(APPS))
UDP_APPS = frozenset((DNS_UDP, UDP_NOISE))
SERVER_PORT = {HTTP: 80, DNS_UDP: 53, DNS_TCP: 53, TLS: 443, SMTP: 25}
# the share of flows of each kind when the caller gives none (TLS's share is --tls-share's to set)
DEFAULT_MIX = {
    "http": 0.35,
    "dns-udp": 0.2,
    "dns-tcp": 0.03,
    "tls": 0.25,
    "smtp": 0.05,
    "tcp-noise": 0.07,
    "udp-noise": 0.05,
}
POOL_BYTES = 1 << 20  # each pool; bodies longer than this are cut to it

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have "
    "an had they you were their one all we can her has there been if more when will would who so no "
    "report data network policy service system user time year people information public state page "
    "home search contact about news price market world city school music video travel health free"
).split()
_HOSTS = (
    "www.example.com",
    "cdn.example.net",
    "api.example.org",
    "static.example.com",
    "mail.example.net",
    "news.example.org",
    "shop.example.com",
    "img.example.net",
)
_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Safari/537.36",
    "curl/8.5.0",
    "Wget/1.21.4",
)
_TYPES = ("text/html; charset=utf-8", "text/plain; charset=utf-8", "text/css")  # the bodies are text


def mix_weights(mix: dict[str, float] | None = None, tls_share: float | None = None) -> np.ndarray:
    """The probability of each app (PLANTED excluded), with TLS's share forced when given."""
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(mix) - set(APPS[:PLANTED])
    if unknown:
        raise ValueError(f"unknown protocol(s) in the mix: {', '.join(sorted(unknown))}")
    w = np.array([float(mix.get(name, 0.0)) for name in APPS[:PLANTED]])
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("the protocol mix needs non-negative weights, some positive")
    w = w / w.sum()
    if tls_share is not None:
        if not 0.0 <= tls_share <= 1.0:
            raise ValueError(f"--tls-share is a fraction in [0, 1], got {tls_share}")
        rest = np.delete(w, TLS)
        rest = rest / rest.sum() * (1.0 - tls_share) if rest.sum() > 0 else rest
        w = np.insert(rest, TLS, tls_share)
    return w


def text_pool(rng: np.random.Generator, size: int = POOL_BYTES) -> bytes:
    """Readable filler: words, sentences and paragraph tags."""
    words = np.array(_WORDS + ["</p>\n<p>", "."], dtype=object)
    weights = np.r_[np.full(len(_WORDS), 1.0), 0.5, 3.0]
    picks = rng.choice(len(words), size // 4, p=weights / weights.sum())
    text = " ".join(words[picks]).encode()
    return (text * (size // len(text) + 1))[:size]


class MessageWriter:
    """Accumulates messages flow by flow; pool slices are referenced, not copied."""

    def __init__(self, rng: random.Random, text: bytes, binary: bytes):
        self.rng = rng
        self.text, self.binary = text, binary
        self.parts: list[bytes] = []
        self.size = 0
        self.flow: list[int] = []
        self.direction: list[int] = []
        self.offset: list[int] = []
        self.length: list[int] = []
        self.pool: list[int] = []  # 0: own bytes, 1: text pool, 2: binary pool
        self.encrypted: list[bool] = []

    def _row(self, flow, direction, offset, length, pool, encrypted):
        self.flow.append(flow)
        self.direction.append(direction)
        self.offset.append(offset)
        self.length.append(length)
        self.pool.append(pool)
        self.encrypted.append(encrypted)

    def add(self, flow: int, direction: int, data: bytes, encrypted: bool = False) -> None:
        self._row(flow, direction, self.size, len(data), 0, encrypted)
        self.parts.append(data)
        self.size += len(data)

    def add_slice(
        self, flow: int, direction: int, length: int, binary: bool, encrypted: bool = False
    ) -> None:
        """``length`` bytes from a random place in the text or binary pool."""
        pool = self.binary if binary else self.text
        length = min(length, len(pool))
        self._row(
            flow, direction, self.rng.randrange(len(pool) - length + 1), length, 2 if binary else 1, encrypted
        )

    def pool_bytes(self, length: int, binary: bool) -> bytes:
        pool = self.binary if binary else self.text
        length = min(length, len(pool))
        at = self.rng.randrange(len(pool) - length + 1)
        return pool[at : at + length]

    def messages(self) -> Messages:
        own = b"".join(self.parts)
        data = np.frombuffer(own + self.text + self.binary, dtype=np.uint8)
        pool = np.array(self.pool, dtype=np.int64)
        base = np.array([0, len(own), len(own) + len(self.text)], dtype=np.int64)
        return Messages(
            flow=np.array(self.flow, dtype=np.int64),
            direction=np.array(self.direction, dtype=np.int64),
            data=data,
            offset=np.array(self.offset, dtype=np.int64) + base[pool],
            length=np.array(self.length, dtype=np.int64),
            encrypted=np.array(self.encrypted, dtype=np.bool_),
        )


@dataclass
class Sizes:
    """Flow-size distribution: bodies (HTTP responses, TLS application data, SMTP mail, noise) are
    lognormal around ``body_median`` bytes."""

    body_median: float = 2000.0
    body_sigma: float = 1.0
    max_exchanges: int = 3  # request/response pairs of a keep-alive HTTP or TLS flow

    def body(self, r: random.Random) -> int:
        return max(1, min(POOL_BYTES, int(r.lognormvariate(np.log(self.body_median), self.body_sigma))))


def _http(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    host = r.choice(_HOSTS)
    for _ in range(r.randint(1, sizes.max_exchanges)):
        path = "/" + "/".join(r.choice(_WORDS) for _ in range(r.randint(1, 3)))
        if r.random() < 0.2:
            body = w.pool_bytes(r.randint(20, 400), binary=False)
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {r.choice(_AGENTS)}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            w.add(f, TO_SERVER, head.encode() + body)
        else:
            head = (
                f"GET {path}.html HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {r.choice(_AGENTS)}\r\n"
                "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: keep-alive\r\n\r\n"
            )
            w.add(f, TO_SERVER, head.encode())
        n = sizes.body(r)
        w.add(
            f,
            TO_CLIENT,
            (
                f"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: {r.choice(_TYPES)}\r\n"
                f"Content-Length: {n}\r\nCache-Control: max-age=3600\r\n\r\n"
            ).encode(),
        )
        w.add_slice(f, TO_CLIENT, n, binary=False)


def _dns_name(r: random.Random) -> tuple[str, bytes]:
    name = f"{r.choice(_WORDS)}{r.randint(1, 999)}.{r.choice(_HOSTS).split('.', 1)[1]}"
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
    return name, wire


def dns_messages(r: random.Random) -> tuple[bytes, bytes]:
    """A query for an A record and its answer (two addresses, name compression)."""
    ident = r.randrange(65536)
    _, qname = _dns_name(r)
    question = qname + struct.pack("!HH", 1, 1)
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question
    answers = b"".join(
        struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes([203, 0, 113, r.randint(1, 254)])
        for _ in range(2)
    )
    response = struct.pack("!HHHHHH", ident, 0x8180, 1, 2, 0, 0) + question + answers
    return query, response


def _dns_udp(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    for _ in range(r.randint(1, 2)):
        query, response = dns_messages(r)
        w.add(f, TO_SERVER, query)
        w.add(f, TO_CLIENT, response)


def _dns_tcp(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    query, response = dns_messages(r)
    w.add(f, TO_SERVER, struct.pack("!H", len(query)) + query)
    w.add(f, TO_CLIENT, struct.pack("!H", len(response)) + response)


def _tls_record(kind: int, body: bytes) -> bytes:
    return struct.pack("!BHH", kind, 0x0303, len(body)) + body


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def _client_hello(w: MessageWriter, r: random.Random) -> bytes:
    host = r.choice(_HOSTS).encode()
    extensions = (
        _extension(0, struct.pack("!HBH", len(host) + 3, 0, len(host)) + host)  # server_name
        + _extension(10, b"\x00\x02\x00\x1d")  # supported_groups: x25519
        + _extension(13, b"\x00\x04\x04\x03\x08\x04")  # signature_algorithms
        + _extension(43, b"\x02\x03\x04")  # supported_versions: TLS 1.3
        + _extension(51, b"\x00\x24\x00\x1d\x00\x20" + w.pool_bytes(32, binary=True))  # key_share
    )
    suites = b"\x13\x01\x13\x02\x13\x03"
    body = (
        b"\x03\x03"
        + w.pool_bytes(32, binary=True)
        + b"\x20"
        + w.pool_bytes(32, binary=True)
        + struct.pack("!H", len(suites))
        + suites
        + b"\x01\x00"
        + struct.pack("!H", len(extensions))
        + extensions
    )
    return _tls_record(22, _handshake(1, body))


def _tls(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    """A TLS 1.3 handshake: the two hellos are the only plaintext (the server's certificate and
    everything after travel as encrypted records), then application data both ways."""
    client_hello = _client_hello(w, r)
    w.add(f, TO_SERVER, client_hello)
    session = client_hello[5 + 4 + 2 + 32 + 1 : 5 + 4 + 2 + 32 + 1 + 32]  # echoed, as TLS 1.3 servers do
    extensions = _extension(43, b"\x03\x04") + _extension(
        51, b"\x00\x1d\x00\x20" + w.pool_bytes(32, binary=True)
    )
    server_hello = _handshake(
        2,
        b"\x03\x03" + w.pool_bytes(32, binary=True) + b"\x20" + session + b"\x13\x01\x00"
        + struct.pack("!H", len(extensions)) + extensions,
    )  # fmt: skip
    w.add(f, TO_CLIENT, _tls_record(22, server_hello))
    # change_cipher_spec (compatibility) then the encrypted extensions, certificate, verify, finished
    flight = r.randint(700, 2600)
    w.add(f, TO_CLIENT, _tls_record(20, b"\x01") + struct.pack("!BHH", 23, 0x0303, flight), encrypted=True)
    w.add_slice(f, TO_CLIENT, flight, binary=True, encrypted=True)
    w.add(
        f,
        TO_SERVER,
        _tls_record(20, b"\x01") + _tls_record(23, w.pool_bytes(53, binary=True)),
        encrypted=True,
    )
    for _ in range(r.randint(1, sizes.max_exchanges)):
        request = r.randint(150, 700)
        w.add(f, TO_SERVER, struct.pack("!BHH", 23, 0x0303, request), encrypted=True)
        w.add_slice(f, TO_SERVER, request, binary=True, encrypted=True)
        left = sizes.body(r)
        while left > 0:
            n = min(left, 16384)
            w.add(f, TO_CLIENT, struct.pack("!BHH", 23, 0x0303, n), encrypted=True)
            w.add_slice(f, TO_CLIENT, n, binary=True, encrypted=True)
            left -= n


def _smtp(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    user, domain = r.choice(_WORDS), r.choice(_HOSTS).split(".", 1)[1]
    steps = (
        (TO_CLIENT, f"220 mail.{domain} ESMTP Postfix\r\n"),
        (TO_SERVER, f"EHLO client{r.randint(1, 99)}.{domain}\r\n"),
        (TO_CLIENT, f"250-mail.{domain}\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"),
        (TO_SERVER, f"MAIL FROM:<{user}@{domain}>\r\n"),
        (TO_CLIENT, "250 2.1.0 Ok\r\n"),
        (TO_SERVER, f"RCPT TO:<{r.choice(_WORDS)}@{domain}>\r\n"),
        (TO_CLIENT, "250 2.1.5 Ok\r\n"),
        (TO_SERVER, "DATA\r\n"),
        (TO_CLIENT, "354 End data with <CR><LF>.<CR><LF>\r\n"),
    )
    for direction, line in steps:
        w.add(f, direction, line.encode())
    w.add(
        f,
        TO_SERVER,
        f"From: <{user}@{domain}>\r\nSubject: {r.choice(_WORDS)} {r.choice(_WORDS)}\r\n\r\n".encode(),
    )
    w.add_slice(f, TO_SERVER, sizes.body(r), binary=False)
    w.add(f, TO_SERVER, b"\r\n.\r\n")
    w.add(f, TO_CLIENT, b"250 2.0.0 Ok: queued\r\n")
    w.add(f, TO_SERVER, b"QUIT\r\n")
    w.add(f, TO_CLIENT, b"221 2.0.0 Bye\r\n")


def _noise(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    for _ in range(r.randint(1, sizes.max_exchanges)):
        w.add_slice(f, TO_SERVER, r.randint(20, 600), binary=True)
        w.add_slice(f, TO_CLIENT, sizes.body(r) if r.random() < 0.5 else r.randint(20, 600), binary=True)


def _udp_noise(w: MessageWriter, f: int, r: random.Random, sizes: Sizes) -> None:
    for _ in range(r.randint(1, 4)):
        w.add_slice(f, TO_SERVER, r.randint(20, 1200), binary=True)
        w.add_slice(f, TO_CLIENT, r.randint(20, 1200), binary=True)


WRITERS = {
    HTTP: _http,
    DNS_UDP: _dns_udp,
    DNS_TCP: _dns_tcp,
    TLS: _tls,
    SMTP: _smtp,
    TCP_NOISE: _noise,
    UDP_NOISE: _udp_noise,
}


def write_app(w: MessageWriter, app: int, f: int, r: random.Random, sizes: Sizes) -> None:
    WRITERS[app](w, f, r, sizes)


def random_server_port(app: int, r: random.Random) -> int:
    return SERVER_PORT.get(app) or r.randint(1024, 49151)


__all__ = [
    "APPS",
    "DEFAULT_MIX",
    "MessageWriter",
    "PLANTED",
    "Sizes",
    "TO_CLIENT",
    "TO_SERVER",
    "UDP_APPS",
    "mix_weights",
    "random_server_port",
    "text_pool",
    "write_app",
]
