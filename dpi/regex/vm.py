"""The Pike VM: a Thompson-NFA simulation whose threads keep PCRE's priority order.

At each subject position the VM holds a list of threads (program counter, start of match),
ordered by priority. A thread that reaches MATCH records its span and removes every thread of
lower priority; a new thread starts at each position, with the lowest priority, until a match
is found. This gives PCRE's leftmost-first answer (the same end position that greedy and lazy
quantifiers choose in a backtracking engine) in O(len(subject) * len(program)) steps, without
recursion and without backtracking.

Lookarounds are computed before the search, once per lookaround and for every position of the
subject: a lookbehind body runs forwards from every start and marks the positions where it
ends; a lookahead body, compiled reversed, runs backwards and marks where it would begin.
Innermost lookarounds are computed first, so the outer ones read their results like any
assertion. Each pass costs O(len(subject) * len(body)). The passes run only when needed: a
first search treats every lookaround as holding (accepting more than the pattern); when
that finds nothing, nothing is the answer; otherwise the passes run and the search is redone
from the first search's match start.

Every instruction a thread executes is a step; past ``budget`` steps the search stops and
returns -2. The first-byte skip (jumping to a byte that can begin a match when no thread is
alive) is not counted: it is one table lookup per byte.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from dpi.regex.parse import (
    A_END_OR_FINAL_NL,
    A_LINE_END,
    A_LINE_START,
    A_SUBJECT_END,
    A_SUBJECT_START,
    A_WORD_BOUNDARY,
)
from dpi.regex.program import (
    LOOK_STRIDE,
    M_ANCHORED,
    M_CLASS_BASE,
    M_FIRST_CLASS,
    M_LOOK_BASE,
    M_LOOKS,
    M_PROG_BASE,
    M_PROG_LEN,
    META_STRIDE,
    OP_ANY,
    OP_ASSERT,
    OP_BYTE,
    OP_CLASS,
    OP_JMP,
    OP_LOOK,
    OP_LOOP,
    OP_MATCH,
    OP_SPLIT,
)

NO_MATCH = -1
ABORTED = -2
LOOK_UNKNOWN = 0
LOOK_HOLDS = 1
LOOK_FAILS = 2


@nb.njit(cache=True, inline="always")
def _is_word(c) -> bool:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 95


@nb.njit(cache=True)
def _assert_holds(kind, buf, start, end, p) -> bool:
    if kind == A_SUBJECT_START:
        return p == start
    if kind == A_LINE_START:
        # PCRE: after an internal newline, not after a newline that ends the subject
        return p == start or (buf[p - 1] == 10 and p < end)
    if kind == A_END_OR_FINAL_NL:
        return p == end or (p == end - 1 and buf[p] == 10)
    if kind == A_LINE_END:
        return p == end or buf[p] == 10
    if kind == A_SUBJECT_END:
        return p == end
    before = p > start and _is_word(buf[p - 1])
    after = p < end and _is_word(buf[p])
    if kind == A_WORD_BOUNDARY:
        return before != after
    return before == after


@nb.njit(cache=True, inline="always")
def _in_class(classes, k, c) -> bool:
    return ((classes[4 * k + (c >> 6)] >> (c & 63)) & 1) != 0


@nb.njit(cache=True, inline="always")
def _consumes(op, arg, classes, cbase, c) -> bool:
    if op == OP_BYTE:
        return arg == c
    if op == OP_ANY:
        return True
    if op == OP_CLASS:
        return _in_class(classes, cbase + arg, c)
    return False


@nb.njit(cache=True)
def _closure(arrays, pbase, cbase, pc0, p, buf, start, end, memo, span, marks, gen, stack, out, n_out, steps):
    """Follow the zero-width instructions from ``pc0`` at position ``p`` depth-first, in
    priority order; append the consuming and MATCH instructions reached to ``out``. An
    instruction already reached at this position (``marks[pc] == gen``) is not followed again:
    a thread of higher priority got there first."""
    ops = arrays[1]
    arg_a = arrays[2]
    arg_b = arrays[3]
    stack[0] = pc0
    depth = 1
    while depth > 0:
        depth -= 1
        pc = stack[depth]
        if marks[pc] == gen:
            if ops[pbase + pc] == OP_LOOP:  # an empty iteration: leave the loop
                stack[depth] = arg_b[pbase + pc]
                depth += 1
            continue
        marks[pc] = gen
        steps += 1
        op = ops[pbase + pc]
        if op == OP_SPLIT or op == OP_LOOP:
            stack[depth] = arg_b[pbase + pc]  # the lower priority waits below
            stack[depth + 1] = arg_a[pbase + pc]
            depth += 2
        elif op == OP_JMP:
            stack[depth] = arg_a[pbase + pc]
            depth += 1
        elif op == OP_ASSERT:
            if _assert_holds(arg_a[pbase + pc], buf, start, end, p):
                stack[depth] = pc + 1
                depth += 1
        elif op == OP_LOOK:
            # 0: not computed yet, assumed to hold either way (the optimistic first search)
            known = memo[arg_a[pbase + pc] * span + (p - start)]
            if known == LOOK_UNKNOWN or (known == LOOK_HOLDS) != (arg_b[pbase + pc] == 1):
                stack[depth] = pc + 1
                depth += 1
        else:
            out[n_out] = pc
            n_out += 1
    return n_out, steps


@nb.njit(cache=True)
def _look_pass(
    arrays, pbase, cbase, body, behind, look, buf, start, end, memo, span, marks, gen, stack, cur, nxt, steps
):
    """Mark in ``memo`` every position where lookaround ``look`` (body at pc ``body``) holds,
    before negation. Threads carry no priority here: only reachability matters."""
    ops = arrays[1]
    arg_a = arrays[2]
    classes = arrays[4]
    row = look * span
    n_cur = 0
    for k in range(span):
        p = start + k if behind else end - k
        gen += 1
        n_cur, steps = _closure(
            arrays, pbase, cbase, body, p, buf, start, end, memo, span, marks, gen, stack, cur, n_cur, steps
        )
        n_next = 0
        for i in range(n_cur):
            pc = cur[i]
            op = ops[pbase + pc]
            steps += 1
            if op == OP_MATCH:
                memo[row + (p - start)] = LOOK_HOLDS
            elif behind:
                if p < end and _consumes(op, arg_a[pbase + pc], classes, cbase, buf[p]):
                    n_next, steps = _closure(
                        arrays,
                        pbase,
                        cbase,
                        pc + 1,
                        p + 1,
                        buf,
                        start,
                        end,
                        memo,
                        span,
                        marks,
                        gen + 1,
                        stack,
                        nxt,
                        n_next,
                        steps,
                    )
            elif p > start and _consumes(op, arg_a[pbase + pc], classes, cbase, buf[p - 1]):
                n_next, steps = _closure(
                    arrays,
                    pbase,
                    cbase,
                    pc + 1,
                    p - 1,
                    buf,
                    start,
                    end,
                    memo,
                    span,
                    marks,
                    gen + 1,
                    stack,
                    nxt,
                    n_next,
                    steps,
                )
        cur, nxt = nxt, cur
        n_cur = n_next
    for k in range(span):
        if memo[row + k] == LOOK_UNKNOWN:
            memo[row + k] = LOOK_FAILS
    return steps, gen + 1


@nb.njit(cache=True)
def _pike_search(
    arrays,
    pbase,
    cbase,
    anchored,
    first_class,
    buf,
    start,
    end,
    search_from,
    memo,
    span,
    scratch,
    gen,
    steps,
    budget,
):
    """The prioritised search proper, from ``search_from`` on; ``scratch`` = (marks, stack,
    cur_pc, cur_start, next_pc, next_start). Returns (match_start, match_end, steps, gen)."""
    ops = arrays[1]
    arg_a = arrays[2]
    classes = arrays[4]
    marks, stack, cur_pc, cur_start, next_pc, next_start = scratch
    match_start = NO_MATCH
    match_end = NO_MATCH
    n_cur = 0
    p = search_from
    while True:
        gen += 1
        if match_start < 0 and (not anchored or p == start):
            if n_cur == 0 and first_class >= 0 and not anchored:
                while p < end and not _in_class(classes, cbase + first_class, buf[p]):
                    p += 1
                if p >= end:
                    break  # a match needs at least one byte from the first set
            seeded = n_cur
            n_cur, steps = _closure(
                arrays,
                pbase,
                cbase,
                0,
                p,
                buf,
                start,
                end,
                memo,
                span,
                marks,
                gen,
                stack,
                cur_pc,
                n_cur,
                steps,
            )
            for i in range(seeded, n_cur):
                cur_start[i] = p
        if n_cur == 0:
            if match_start >= 0 or anchored or p >= end:
                break
            if steps > budget:
                return ABORTED, ABORTED, steps, gen
            p += 1
            continue
        n_next = 0
        for i in range(n_cur):
            pc = cur_pc[i]
            op = ops[pbase + pc]
            steps += 1
            if op == OP_MATCH:
                match_start = cur_start[i]
                match_end = p
                break  # the threads after this one have lower priority
            if p < end and _consumes(op, arg_a[pbase + pc], classes, cbase, buf[p]):
                before = n_next
                n_next, steps = _closure(
                    arrays,
                    pbase,
                    cbase,
                    pc + 1,
                    p + 1,
                    buf,
                    start,
                    end,
                    memo,
                    span,
                    marks,
                    gen + 1,
                    stack,
                    next_pc,
                    n_next,
                    steps,
                )
                for j in range(before, n_next):
                    next_start[j] = cur_start[i]
        cur_pc, next_pc = next_pc, cur_pc
        cur_start, next_start = next_start, cur_start
        n_cur = n_next
        if p >= end or (n_cur == 0 and match_start >= 0):
            break
        if steps > budget:
            return ABORTED, ABORTED, steps, gen
        p += 1
    return match_start, match_end, steps, gen + 1


@nb.njit(cache=True)
def regex_search(arrays, rid, buf, start, end, budget):
    """Leftmost-first match of regex ``rid`` of a packed RegexSet (``arrays``) in the subject
    ``buf[start:end]`` (a uint8 array). ^ and \\A match at ``start``, $ and \\z relate to
    ``end``, a lookbehind cannot see before ``start``. Returns ``(match_start, match_end,
    steps)`` as absolute positions into ``buf``; match_start is -1 when there is no match and
    -2 when more than ``budget`` steps were needed before a decision."""
    return regex_search_from(arrays, rid, buf, start, end, start, budget)


@nb.njit(cache=True)
def regex_search_from(arrays, rid, buf, start, end, search_from, budget):
    """As :func:`regex_search`, but the match may only start at ``search_from`` or later,
    the subject staying ``buf[start:end]`` (PCRE's start offset: ^ still means ``start``).
    Suricata retries a pcre this way, from one byte after its previous match start."""
    meta = arrays[0]
    looks = arrays[5]
    row = rid * META_STRIDE
    pbase = meta[row + M_PROG_BASE]
    plen = meta[row + M_PROG_LEN]
    cbase = meta[row + M_CLASS_BASE]
    lbase = meta[row + M_LOOK_BASE]
    n_looks = meta[row + M_LOOKS]
    anchored = meta[row + M_ANCHORED] != 0
    first_class = meta[row + M_FIRST_CLASS]
    if start < 0:
        start = 0
    if end > len(buf):
        end = len(buf)
    if start > end:
        return NO_MATCH, NO_MATCH, 0
    span = end - start + 1
    marks = np.zeros(plen, np.int64)
    stack = np.empty(4 * plen + 2, np.int64)
    cur_pc = np.empty(plen, np.int64)
    next_pc = np.empty(plen, np.int64)
    scratch = (marks, stack, cur_pc, np.empty(plen, np.int64), next_pc, np.empty(plen, np.int64))
    memo = np.zeros(n_looks * span if n_looks > 0 else 1, np.int8)
    if search_from < start:
        search_from = start
    if search_from > end:
        return NO_MATCH, NO_MATCH, 0
    ms, me, steps, gen = _pike_search(
        arrays, pbase, cbase, anchored, first_class, buf, start, end, search_from, memo, span, scratch, 0, 0,
        budget,
    )  # fmt: skip
    if n_looks == 0 or ms < 0:
        # with lookarounds, that first search assumed every one of them holds: it accepts
        # more than the pattern, so "no match" is final; a match must be confirmed
        return ms, me, steps
    # inner lookarounds have higher ids than the ones around them: compute them first
    for look in range(n_looks - 1, -1, -1):
        body = looks[(lbase + look) * LOOK_STRIDE]
        behind = looks[(lbase + look) * LOOK_STRIDE + 1] != 0
        steps, gen = _look_pass(
            arrays,
            pbase,
            cbase,
            body,
            behind,
            look,
            buf,
            start,
            end,
            memo,
            span,
            marks,
            gen,
            stack,
            cur_pc,
            next_pc,
            steps,
        )
        if steps > budget:
            return ABORTED, ABORTED, steps
    # the true match starts no earlier than the optimistic one
    ms, me, steps, gen = _pike_search(
        arrays,
        pbase,
        cbase,
        anchored,
        first_class,
        buf,
        start,
        end,
        ms,
        memo,
        span,
        scratch,
        gen,
        steps,
        budget,
    )
    return ms, me, steps
