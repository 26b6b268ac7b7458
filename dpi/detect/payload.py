"""The payload inspection interpreter: one rule's program (see :mod:`dpi.detect.program`)
run over one contiguous buffer, as Suricata's content inspection engine does.

Ops run in rule order. Each keeps the end of the previous match (``prev``), from which
relative keywords count. A content or pcre followed by a relative keyword is a choice
point: when something after it fails, its next match is tried (Suricata retries from one
byte after the previous match start; a pcre keeps its subject, as PCRE's start offset).
Work is bounded: every op evaluation and every compared byte position counts as a step,
and past the budget the verification aborts (counted by the caller) instead of stalling
the scan on hostile data.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from dpi.detect.byte_ops import (
    apply_bitmask,
    compare,
    extract_number_consumed,
    isdataat_match,
    jump_target,
    read_position,
    scale_and_align,
)
from dpi.detect.program import (
    F_ALIGN,
    F_BITMASK,
    F_ENDSWITH,
    F_FROM_BEGINNING,
    F_FROM_END,
    F_NEGATED,
    F_NOCASE,
    F_RELATIVE,
    F_RETRY,
    OP_BYTE_EXTRACT,
    OP_BYTE_JUMP,
    OP_BYTE_TEST,
    OP_CONTENT,
    OP_ISDATAAT,
    OP_PCRE,
    UNSET,
)
from dpi.regex import regex_search_from

MATCH = 1
NO_MATCH = 0
ABORTED = -1
_FRESH = -1
_EXHAUSTED = -2


@nb.njit(cache=True, inline="always")
def _value(const, slot, values):
    return values[slot] if slot >= 0 else const


@nb.njit(cache=True)
def _find(buf, bstart, patterns, pstart, plen, nocase, lo, last_start, steps):
    """First start s in [lo, last_start] where the pattern occurs (positions relative to
    bstart); returns (s or -1, steps)."""
    for s in range(lo, last_start + 1):
        steps += 1
        ok = True
        for j in range(plen):
            c = buf[bstart + s + j]
            if nocase and 65 <= c <= 90:
                c += 32
            if c != patterns[pstart + j]:
                ok = False
                break
        if ok:
            return s, steps
    return -1, steps


@nb.njit(cache=True)
def run_program(ps, pe, kind, flags, param, var, patterns, rx, buf, bstart, bend, budget, values):
    """Run ops [ps, pe) on buf[bstart:bend]. Returns (MATCH | NO_MATCH | ABORTED, steps)."""
    n = pe - ps
    blen = bend - bstart
    lvl_prev = np.zeros(n + 1, np.int64)
    lvl_retry = np.full(n + 1, _FRESH, np.int64)
    steps = 0
    k = 0
    while k >= 0:
        steps += 1
        if steps > budget:
            return ABORTED, steps
        if k == n:
            return MATCH, steps
        if lvl_retry[k] == _EXHAUSTED:
            lvl_retry[k] = _FRESH
            k -= 1
            continue
        o = ps + k
        f = flags[o]
        prev = lvl_prev[k]
        ok = False
        new_prev = prev
        retry = _EXHAUSTED
        kd = kind[o]
        if kd == OP_CONTENT:
            plen = param[o, 1]
            if f & F_RELATIVE:
                dist = _value(param[o, 4], var[o, 2], values)
                if dist == UNSET:
                    dist = 0
                lo = max(prev + dist, 0)
                hi = blen
                within = _value(param[o, 5], var[o, 3], values)
                if within != UNSET:
                    hi = min(hi, prev + dist + within)
            else:
                off = _value(param[o, 2], var[o, 0], values)
                lo = off if off != UNSET else 0
                hi = blen
                dep = _value(param[o, 3], var[o, 1], values)
                if dep != UNSET:
                    hi = min(hi, lo + dep)
            if lvl_retry[k] >= 0:
                lo = max(lo, lvl_retry[k])
            last_start = hi - plen
            if f & F_ENDSWITH:
                if hi < blen or blen - plen < lo:
                    last_start = -1
                else:
                    lo = blen - plen
                    last_start = lo
            found = -1
            if last_start >= lo and lo >= 0:
                found, steps = _find(
                    buf, bstart, patterns, param[o, 0], plen, f & F_NOCASE, lo, last_start, steps
                )
            if f & F_NEGATED:
                ok = found < 0
            elif found >= 0:
                ok = True
                new_prev = found + plen
                if f & F_RETRY:
                    retry = found + 1
        elif kd == OP_PCRE:
            subject = prev if f & F_RELATIVE else 0
            # a retry keeps the subject and starts one byte after the previous match start
            search_from = max(lvl_retry[k], subject)
            ms, me, used = regex_search_from(
                rx, param[o, 0], buf, bstart + subject, bend, bstart + search_from, budget - steps
            )
            steps += used
            if ms == -2:
                return ABORTED, steps
            if f & F_NEGATED:
                ok = ms < 0
            elif ms >= 0:
                ok = True
                new_prev = me - bstart
                if f & F_RETRY:
                    retry = ms - bstart + 1
        elif kd == OP_ISDATAAT:
            size = _value(param[o, 0], var[o, 0], values)
            ok = isdataat_match(blen, prev, size, (f & F_RELATIVE) != 0, (f & F_NEGATED) != 0)
        else:  # byte_test, byte_jump, byte_extract read a number first
            nbytes = param[o, 0]
            got, pos = read_position(
                blen, prev, _value(param[o, 2], var[o, 0], values), f & F_RELATIVE, nbytes, kd == OP_BYTE_JUMP
            )
            used = 0
            number = 0
            if got:
                got, number, used = extract_number_consumed(buf, bstart + pos, bend, nbytes, param[o, 1])
            if got:
                if f & F_BITMASK:
                    number = apply_bitmask(number, param[o, 5])
                if kd == OP_BYTE_TEST:
                    ok = compare(
                        number, param[o, 3], _value(param[o, 4], var[o, 1], values), param[o, 6] != 0
                    )
                elif kd == OP_BYTE_JUMP:
                    ok, new_prev = jump_target(
                        blen, pos, used, number, param[o, 3], f & F_ALIGN, param[o, 4],
                        f & F_FROM_BEGINNING, f & F_FROM_END,
                    )  # fmt: skip
                elif kd == OP_BYTE_EXTRACT:
                    values[param[o, 6]] = scale_and_align(number, param[o, 3], param[o, 4])
                    ok = True
                    new_prev = pos + used
        if ok:
            lvl_retry[k] = retry
            lvl_prev[k + 1] = new_prev
            lvl_retry[k + 1] = _FRESH
            k += 1
        else:
            lvl_retry[k] = _FRESH
            k -= 1
    return NO_MATCH, steps
