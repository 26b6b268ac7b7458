"""Port sets: sorted, disjoint, inclusive intervals over 0..65535."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np

from dpi.rules.intervals import Intervals, normalize

MAX_PORT = 65535
PORT_UNIVERSE: Intervals = ((0, MAX_PORT),)


class PortError(ValueError):
    """A port literal that cannot be parsed."""


def _port(text: str, literal: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise PortError(f"invalid port '{literal}'")
    value = int(text)
    if value > MAX_PORT:
        raise PortError(f"port {value} is out of range (0-{MAX_PORT}) in '{literal}'")
    return value


def parse_port_atom(text: str) -> Intervals:
    """One port literal: any, N, N:M, N: (to 65535) or :M (from 0)."""
    if text.lower() == "any":
        return PORT_UNIVERSE
    if ":" in text:
        first, _, last = text.partition(":")
        if not first.strip() and not last.strip():
            raise PortError(f"invalid port range '{text}'")
        lo = _port(first, text) if first.strip() else 0
        hi = _port(last, text) if last.strip() else MAX_PORT
        if lo > hi:
            raise PortError(f"port range '{text}' has its first port after its last")
        return ((lo, hi),)
    value = _port(text, text)
    return ((value, value),)


class PortSet:
    """An immutable set of ports as sorted, disjoint, inclusive intervals."""

    __slots__ = ("intervals", "_starts")

    def __init__(self, intervals: Intervals | list[tuple[int, int]] = ()):
        self.intervals: Intervals = normalize(intervals)
        self._starts: tuple[int, ...] | None = None

    @classmethod
    def any(cls) -> PortSet:
        return cls(PORT_UNIVERSE)

    @classmethod
    def parse(cls, text: str, variables: dict[str, str | int] | None = None) -> PortSet:
        """Parse a port group such as ``[80:100,!99]`` or ``$HTTP_PORTS``."""
        from dpi.rules.variables import Variables

        return Variables(variables).ports(text)

    @property
    def is_any(self) -> bool:
        return self.intervals == PORT_UNIVERSE

    @property
    def is_empty(self) -> bool:
        return not self.intervals

    def contains(self, port: int) -> bool:
        if self._starts is None:
            self._starts = tuple(lo for lo, _ in self.intervals)
        i = bisect_right(self._starts, port) - 1
        return i >= 0 and port <= self.intervals[i][1]

    __contains__ = contains

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) as int32, inclusive bounds."""
        lo = np.array([a for a, _ in self.intervals], dtype=np.int32)
        hi = np.array([b for _, b in self.intervals], dtype=np.int32)
        return lo, hi

    def ranges(self) -> list[str]:
        return [str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in self.intervals]

    def __len__(self) -> int:
        return len(self.intervals)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortSet) and self.intervals == other.intervals

    def __hash__(self) -> int:
        return hash(self.intervals)

    def __repr__(self) -> str:
        if self.is_any:
            return "PortSet(any)"
        shown = self.ranges()
        if len(shown) > 8:
            shown = shown[:8] + [f"... {len(shown) - 8} more"]
        return f"PortSet({', '.join(shown)})"
