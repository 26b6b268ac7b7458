"""Which overlap policy each host gets: Suricata's ``host-os-policy`` section as a lookup
over the 128-bit address columns.

Suricata keeps the section in a radix tree and takes the most specific network that holds
the address. Here the networks, nested or disjoint as prefixes are, are flattened once into
sorted disjoint intervals each carrying the policy of the most specific network over it; a
Numba kernel then binary-searches every address of a batch. An address in no network gets
the default policy.

IPv4 and IPv6 are apart, as in Suricata's two trees: an IPv4 network (written without ':')
holds only IPv4 addresses (stored IPv4-mapped, ::ffff:a.b.c.d), and an IPv6 network never
holds an IPv4-mapped address, so ``::/0`` does not swallow IPv4 hosts.
"""

from __future__ import annotations

from collections.abc import Mapping

import numba as nb
import numpy as np

from dpi.defrag.config import DEFRAG_POLICIES
from dpi.rules.addresses import IPV4_BASE, AddressError, parse_address_atom
from dpi.stream.tcp import STREAM_POLICIES

_MASK64 = (1 << 64) - 1
_IPV4_LAST = IPV4_BASE | 0xFFFF_FFFF

# The defrag policy Suricata's defrag.c (DefragGetOsPolicy) uses for each host-os-policy
# name: the TCP-only names fold into the IP stack their fragment handling resembles.
# "first" and "last" are not host-os-policy names in Suricata (util-host-os-info.c) but are
# policies of both engines here, so they are accepted as themselves.
DEFRAG_POLICY_OF_HOST_OS: dict[str, str] = {
    "bsd": "bsd",
    "hpux10": "bsd",
    "irix": "bsd",
    "bsd-right": "bsd-right",
    "old-linux": "linux",
    "linux": "linux",
    "old-solaris": "first",
    "hpux11": "first",
    "macos": "first",
    "first": "first",
    "solaris": "solaris",
    "windows": "windows",
    "vista": "windows",
    "windows2k3": "windows",
    "last": "last",
}

# Suricata's stream-tcp.c reads old-solaris as solaris; every other name is a stream policy.
STREAM_POLICY_OF_HOST_OS: dict[str, str] = {name: name for name in STREAM_POLICIES} | {
    "old-solaris": "solaris"
}

# Every name accepted under host-os-policy: usable by both the stream and the defrag map.
HOST_OS_POLICIES: tuple[str, ...] = tuple(
    name for name in DEFRAG_POLICY_OF_HOST_OS if name in STREAM_POLICY_OF_HOST_OS
)


class HostPolicyError(ValueError):
    """A host-os-policy entry that cannot be used: unknown policy, bad address, conflict."""


def parse_host_network(text: str) -> tuple[int, int, bool]:
    """(first, last, is_ipv6) of one host-os-policy entry: an address, a CIDR network, or
    "default" (Suricata's shorthand for 0.0.0.0/0)."""
    if not isinstance(text, str):
        raise HostPolicyError(f"{text!r} is not an address or network")
    text = text.strip()
    if text.lower() == "default":
        text = "0.0.0.0/0"
    if not text or text.lower() == "any" or "-" in text:
        raise HostPolicyError(f"{text!r} is not an address or network (a.b.c.d, a.b.c.d/n, x::y/n)")
    try:
        ((first, last),) = parse_address_atom(text)
    except (AddressError, ValueError) as exc:
        raise HostPolicyError(str(exc)) from None
    return first, last, ":" in text


def split_host_list(value) -> list[str]:
    """A host list as YAML gives it (a list, or one string) or as the command line does
    ("a,b", "[a, b]"), as a list of entries; Suricata also splits an entry at commas."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise HostPolicyError(f"{item!r} is not an address or network")
        text = item.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        out.extend(part.strip() for part in text.split(",") if part.strip())
    return out


def _without_ipv4(first: int, last: int) -> list[tuple[int, int]]:
    """An IPv6 network less the IPv4-mapped block (pieces stay nested or disjoint)."""
    pieces = []
    if first < IPV4_BASE:
        pieces.append((first, min(last, IPV4_BASE - 1)))
    if last > _IPV4_LAST:
        pieces.append((max(first, _IPV4_LAST + 1), last))
    return pieces


@nb.njit(cache=True)
def _lookup(hi, lo, start_hi, start_lo, end_hi, end_lo, policy, default, out):
    n = start_hi.shape[0]
    for i in range(hi.shape[0]):
        h = hi[i]
        l = lo[i]
        # the last interval starting at or before the address
        a = 0
        b = n
        while a < b:
            m = (a + b) >> 1
            if start_hi[m] < h or (start_hi[m] == h and start_lo[m] <= l):
                a = m + 1
            else:
                b = m
        k = a - 1
        if k >= 0 and (h < end_hi[k] or (h == end_hi[k] and l <= end_lo[k])):
            out[i] = policy[k]
        else:
            out[i] = default


class HostPolicyMap:
    """Address -> policy index into ``names`` for a host-os-policy section.

    ``host_os_policy`` maps a policy name to its addresses/networks; ``translate`` optionally
    maps each of those names to one of ``names`` first (e.g. hpux11 -> first for defrag)."""

    def __init__(
        self,
        host_os_policy: Mapping[str, list[str]],
        default: str,
        names: tuple[str, ...],
        translate: Mapping[str, str] | None = None,
    ):
        self.names = tuple(names)
        if len(self.names) > 255:
            raise HostPolicyError("at most 255 policies fit the uint8 index")
        if default not in self.names:
            raise HostPolicyError(f"unknown policy {default!r}; known: {', '.join(self.names)}")
        self.default = default
        networks: dict[tuple[int, int, bool], tuple[int, str]] = {}
        for name, entries in host_os_policy.items():
            target = translate.get(name, name) if translate is not None else name
            if target not in self.names:
                raise HostPolicyError(f"unknown policy {name!r}; known: {', '.join(self.names)}")
            index = self.names.index(target)
            for text in split_host_list(entries):
                net = parse_host_network(text)
                seen = networks.get(net)
                if seen is not None and seen[0] != index:
                    raise HostPolicyError(f"{text} is listed under both {seen[1]!r} and {name!r}")
                networks[net] = (index, name)
        self.networks = len(networks)
        self._build([(first, last, is_v6, index) for (first, last, is_v6), (index, _) in networks.items()])

    def _build(self, networks: list[tuple[int, int, bool, int]]) -> None:
        blocks = []
        for first, last, is_v6, index in networks:
            for a, b in _without_ipv4(first, last) if is_v6 else [(first, last)]:
                # the network's own width breaks ties between equal pieces (::/0 and ::/1
                # both start with ::-::fffe:ffff:ffff): the narrower network is the inner one
                blocks.append((a, b, index, last - first))
        # prefixes nest or are disjoint: sweep them widest-first with a stack of the open ones
        blocks.sort(key=lambda blk: (blk[0], -blk[1], -blk[3]))
        segments: list[tuple[int, int, int]] = []

        def emit(a: int, b: int, index: int) -> None:
            if a > b:
                return
            if segments and segments[-1][2] == index and segments[-1][1] + 1 == a:
                segments[-1] = (segments[-1][0], b, index)
            else:
                segments.append((a, b, index))

        stack: list[tuple[int, int, int]] = []
        pos = 0
        for a, b, index, _ in blocks:
            while stack and stack[-1][1] < a:
                top = stack.pop()
                emit(pos, top[1], top[2])
                pos = top[1] + 1
            if stack:
                emit(pos, a - 1, stack[-1][2])
            pos = a
            stack.append((a, b, index))
        while stack:
            top = stack.pop()
            emit(pos, top[1], top[2])
            pos = top[1] + 1
        self._start_hi = np.array([s[0] >> 64 for s in segments], dtype=np.uint64)
        self._start_lo = np.array([s[0] & _MASK64 for s in segments], dtype=np.uint64)
        self._end_hi = np.array([s[1] >> 64 for s in segments], dtype=np.uint64)
        self._end_lo = np.array([s[1] & _MASK64 for s in segments], dtype=np.uint64)
        self._policy = np.array([s[2] for s in segments], dtype=np.uint8)

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The policy index (into ``names``) of each address given as (hi, lo) uint64 halves."""
        hi = np.asarray(hi, dtype=np.uint64)
        lo = np.asarray(lo, dtype=np.uint64)
        if hi.shape != lo.shape:
            raise ValueError(f"hi and lo differ in shape: {hi.shape} vs {lo.shape}")
        default = np.uint8(self.names.index(self.default))
        if self._policy.size == 0:
            return np.full(hi.shape, default, dtype=np.uint8)
        out = np.empty(hi.size, dtype=np.uint8)
        _lookup(
            np.ascontiguousarray(hi).reshape(-1),
            np.ascontiguousarray(lo).reshape(-1),
            self._start_hi,
            self._start_lo,
            self._end_hi,
            self._end_lo,
            self._policy,
            default,
            out,
        )
        return out.reshape(hi.shape)

    def policy_of(self, address: str) -> str:
        """The policy name of one address (for people and tests; batches use ``lookup``)."""
        from dpi.rules.addresses import ip_to_int

        value = ip_to_int(address)
        index = self.lookup(np.array([value >> 64], np.uint64), np.array([value & _MASK64], np.uint64))
        return self.names[int(index[0])]

    def __repr__(self) -> str:
        return f"HostPolicyMap({self.networks} networks, default {self.default!r})"


def stream_policy_map(settings) -> HostPolicyMap:
    """The TCP overlap policy of each receiving host: host-os-policy over stream.policy."""
    return HostPolicyMap(
        settings.host_os_policy, settings.stream.policy, STREAM_POLICIES, STREAM_POLICY_OF_HOST_OS
    )


def defrag_policy_map(settings) -> HostPolicyMap:
    """The fragment overlap policy of each receiving host: host-os-policy, with Suricata's
    TCP-only names folded into defrag policies, over defrag.policy."""
    return HostPolicyMap(
        settings.host_os_policy, settings.defrag.policy, DEFRAG_POLICIES, DEFRAG_POLICY_OF_HOST_OS
    )
