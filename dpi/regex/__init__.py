"""A bounded regular-expression engine for the rules' ``pcre`` keyword.

PCRE syntax (as Suricata rules use it) is parsed (``parse``), compiled into a flat program
(``program``) and run by a Pike VM in Numba (``vm``): cost O(len(subject) * len(program)),
never exponential, and every search has a step budget. Many compiled regexes are packed into
one ``RegexSet`` so that a detection kernel takes them as one argument and calls
``regex_search(set.arrays, rid, buf, start, end, budget)`` from its own ``@njit`` code.
"""

from __future__ import annotations

import numpy as np

from dpi.regex.parse import RegexSyntaxError, RegexUnsupported
from dpi.regex.program import CompiledRegex, RegexSet, compile_regex, pack_regexes
from dpi.regex.vm import regex_search, regex_search_from

__all__ = [
    "CompiledRegex",
    "RegexSet",
    "RegexSyntaxError",
    "RegexUnsupported",
    "compile_regex",
    "pack_regexes",
    "regex_search",
    "regex_search_from",
    "search",
]


def search(regex: CompiledRegex, data: bytes, budget: int = 10**6) -> tuple[int, int, int]:
    """``(match_start, match_end, steps)`` of ``regex`` in ``data``: start -1 for no match,
    -2 when the step budget ran out. A convenience for tests and Python callers."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    packed = pack_regexes([regex])
    start, end, steps = regex_search(packed.arrays, 0, buf, 0, len(buf), budget)
    return int(start), int(end), int(steps)
