"""Which layout of the Numba engine a pattern set gets (see database.py), and why.

From measurements with bench/test_bench_match.py (ET Open fast patterns over capture payloads and an
HTTP-like corpus, one core): the DFA is the faster layout as long as every state can have a dense
row, up to some tens of thousands of states (~2x the prefilter at 3,000 patterns); its tables then
grow with the states (32 MiB at ~3,000 ET patterns, 70 MiB at all 17,886). Squeezed into a memory
budget, its deep states go sparse and text that walks deep into the trie (HTTP) slows to the
prefilter's speed or below, while the prefilter's tables stay a few MiB whatever the set. So: the
DFA while its full tables fit the memory budget, the prefilter beyond.
"""

from __future__ import annotations

LAYOUTS = ("dfa", "prefilter")

#: Memory for a layout's tables beyond which the DFA is not chosen (bytes).
MEMORY_BUDGET = 32 * 1024 * 1024

_ENTRY_BYTES = 4  # an int32 table entry
_NODE_BYTES = 7 * 4  # a state's record (automaton.NODE_FIELDS int32)


def _trie_size(keys: set[bytes]) -> tuple[int, int]:
    """(states, input classes) of the trie of these keys."""
    prefixes = {k[:i] for k in keys for i in range(1, len(k) + 1)}
    used = len(set(b"".join(keys)))
    return len(prefixes) + 1, used + (1 if used < 256 else 0)


def full_dfa_bytes(patterns: list[bytes], nocase: list[bool] | None = None) -> int:
    """Bytes the DFA layout needs to give every state a dense row (both automata)."""
    nocase = nocase if nocase is not None else [False] * len(patterns)
    exact = {bytes(p) for p, fold in zip(patterns, nocase, strict=True) if not fold}
    folded = {bytes(p).lower() for p, fold in zip(patterns, nocase, strict=True) if fold}
    total = 0
    for keys in (exact, folded):
        states, classes = _trie_size(keys)
        total += states * ((classes + 2) * _ENTRY_BYTES + _NODE_BYTES)
    return total


def choose_layout(patterns: list[bytes], nocase: list[bool] | None = None) -> tuple[str, str]:
    """(layout, reason) for a pattern set."""
    need = full_dfa_bytes(patterns, nocase)
    mib = need / (1024 * 1024)
    if need <= MEMORY_BUDGET:
        return "dfa", f"a full DFA needs {mib:.1f} MiB, within the {MEMORY_BUDGET >> 20} MiB budget"
    return "prefilter", f"a full DFA would need {mib:.1f} MiB, over the {MEMORY_BUDGET >> 20} MiB budget"
