"""IP address sets over one 128-bit space, IPv4 stored IPv4-mapped (::ffff:a.b.c.d).

The decoder puts IPv4 addresses into the same 128-bit columns as ``0xffff00000000 | v4`` split into two
uint64 halves, so a rule's address group is compiled to the same representation: sorted, disjoint,
inclusive intervals, exported as four uint64 arrays for Numba kernels.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_right

import numpy as np

from dpi.rules.intervals import Intervals, intersect, normalize

MAX_ADDRESS = (1 << 128) - 1
IPV4_BASE = 0xFFFF_0000_0000
IPV4_FAMILY: Intervals = ((IPV4_BASE, IPV4_BASE | 0xFFFF_FFFF),)
IPV6_FAMILY: Intervals = ((0, IPV4_BASE - 1), ((IPV4_BASE | 0xFFFF_FFFF) + 1, MAX_ADDRESS))
ADDRESS_UNIVERSE: Intervals = ((0, MAX_ADDRESS),)

_MASK64 = (1 << 64) - 1
_DOTTED_QUAD = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\Z")


class AddressError(ValueError):
    """An address literal that cannot be parsed."""


def _ipv4_int(text: str) -> int:
    m = _DOTTED_QUAD.match(text)
    if m is None:
        raise AddressError(f"invalid IPv4 address '{text}'")
    a, b, c, d = (int(g) for g in m.groups())
    if a > 255 or b > 255 or c > 255 or d > 255:
        raise AddressError(f"invalid IPv4 address '{text}'")
    return (a << 24) | (b << 16) | (c << 8) | d


def ip_to_int(address: str | int | ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """An address as the 128-bit integer used in AddressSet (IPv4 becomes IPv4-mapped)."""
    if isinstance(address, int):
        if not 0 <= address <= MAX_ADDRESS:
            raise AddressError(f"address {address} is out of the 128-bit range")
        return address
    if isinstance(address, ipaddress.IPv4Address):
        return IPV4_BASE | int(address)
    if isinstance(address, ipaddress.IPv6Address):
        return int(address)
    text = address.strip()
    if ":" in text:
        try:
            return int(ipaddress.IPv6Address(text))
        except ValueError as exc:
            raise AddressError(f"invalid IPv6 address '{text}'") from exc
    return IPV4_BASE | _ipv4_int(text)


def _network(text: str) -> tuple[int, int]:
    addr, _, mask = text.partition("/")
    if ":" in addr:
        try:
            net = ipaddress.IPv6Network(text, strict=False)
        except ValueError as exc:
            raise AddressError(f"invalid IPv6 network '{text}'") from exc
        return int(net.network_address), int(net.broadcast_address)
    base = _ipv4_int(addr)
    if mask.isdigit():
        prefix = int(mask)
        if prefix > 32:
            raise AddressError(f"invalid IPv4 prefix length in '{text}'")
        netmask = (0xFFFF_FFFF << (32 - prefix)) & 0xFFFF_FFFF
    else:
        # Suricata also accepts a dotted netmask: 10.0.0.0/255.0.0.0
        netmask = _ipv4_int(mask)
        inverted = ~netmask & 0xFFFF_FFFF
        if inverted & (inverted + 1):
            raise AddressError(f"invalid IPv4 netmask in '{text}'")
    lo = base & netmask
    hi = lo | (~netmask & 0xFFFF_FFFF)
    return IPV4_BASE | lo, IPV4_BASE | hi


def parse_address_atom(text: str) -> Intervals:
    """One address literal: any, a.b.c.d, CIDR (v4 or v6), a dotted netmask, or a range a-b."""
    if text.lower() == "any":
        return ADDRESS_UNIVERSE
    if "/" in text:
        return (_network(text),)
    if "-" in text:
        first, _, last = text.partition("-")
        lo, hi = ip_to_int(first), ip_to_int(last)
        if (":" in first.strip()) != (":" in last.strip()):
            raise AddressError(f"address range '{text}' mixes IPv4 and IPv6")
        if lo > hi:
            raise AddressError(f"address range '{text}' has its first address after its last")
        return ((lo, hi),)
    value = ip_to_int(text)
    return ((value, value),)


def format_address(value: int) -> str:
    """An address of this 128-bit space as text (IPv4-mapped ones in dotted quads)."""
    if IPV4_BASE <= value <= IPV4_BASE | 0xFFFF_FFFF:
        return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"
    return str(ipaddress.IPv6Address(value))


def split_addresses(values) -> tuple[np.ndarray, np.ndarray]:
    """128-bit addresses (Python ints) as the (high, low) uint64 columns the kernels use."""
    values = list(values)
    return (
        np.array([v >> 64 for v in values], np.uint64),
        np.array([v & _MASK64 for v in values], np.uint64),
    )


class AddressSet:
    """An immutable set of addresses: sorted, disjoint, inclusive 128-bit intervals."""

    __slots__ = ("intervals", "_starts")

    def __init__(self, intervals: Intervals | list[tuple[int, int]] = ()):
        self.intervals: Intervals = normalize(intervals)
        self._starts: tuple[int, ...] | None = None

    @classmethod
    def any(cls) -> AddressSet:
        return cls(ADDRESS_UNIVERSE)

    @classmethod
    def parse(cls, text: str, variables: dict[str, str | int] | None = None) -> AddressSet:
        """Parse an address group such as ``[10.0.0.0/8,!10.1.2.3]`` or ``!$HOME_NET``."""
        from dpi.rules.variables import Variables

        return Variables(variables).address(text)

    @property
    def is_any(self) -> bool:
        return self.intervals == ADDRESS_UNIVERSE

    @property
    def is_empty(self) -> bool:
        return not self.intervals

    @property
    def has_ipv4(self) -> bool:
        return bool(intersect(self.intervals, IPV4_FAMILY))

    @property
    def has_ipv6(self) -> bool:
        return bool(intersect(self.intervals, IPV6_FAMILY))

    def contains(self, address: str | int | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Membership of an address; an int is a 128-bit value (IPv4 as 0xffff00000000 | v4)."""
        value = ip_to_int(address)
        if self._starts is None:
            self._starts = tuple(lo for lo, _ in self.intervals)
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value <= self.intervals[i][1]

    __contains__ = contains

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lo_hi, lo_lo, hi_hi, hi_lo) as uint64: the inclusive bounds split into high and low halves."""
        n = len(self.intervals)
        lo_hi = np.empty(n, dtype=np.uint64)
        lo_lo = np.empty(n, dtype=np.uint64)
        hi_hi = np.empty(n, dtype=np.uint64)
        hi_lo = np.empty(n, dtype=np.uint64)
        for i, (lo, hi) in enumerate(self.intervals):
            lo_hi[i] = lo >> 64
            lo_lo[i] = lo & _MASK64
            hi_hi[i] = hi >> 64
            hi_lo[i] = hi & _MASK64
        return lo_hi, lo_lo, hi_hi, hi_lo

    def ranges(self) -> list[str]:
        """Human-readable ranges, e.g. ['10.0.0.0-10.255.255.255', '::-::fffe:ffff:ffff']."""
        # split at the IPv4-mapped block so each range prints in one family's notation
        pieces = sorted(intersect(self.intervals, IPV4_FAMILY) + intersect(self.intervals, IPV6_FAMILY))
        out = []
        for lo, hi in pieces:
            out.append(format_address(lo) if lo == hi else f"{format_address(lo)}-{format_address(hi)}")
        return out

    def __len__(self) -> int:
        return len(self.intervals)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddressSet) and self.intervals == other.intervals

    def __hash__(self) -> int:
        return hash(self.intervals)

    def __repr__(self) -> str:
        if self.is_any:
            return "AddressSet(any)"
        shown = self.ranges()
        if len(shown) > 4:
            shown = shown[:4] + [f"... {len(shown) - 4} more"]
        return f"AddressSet({', '.join(shown)})"
