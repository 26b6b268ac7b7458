"""Compile a parsed pattern into a flat Pike-VM program, and pack many programs for one kernel.

A program is three parallel int64 arrays (``ops``, ``arg_a``, ``arg_b``), one row per
instruction:

====================  =====================================================================
``OP_BYTE c``         consume one byte equal to ``c``
``OP_CLASS k``        consume one byte in class ``k`` (a 256-bit set, four int64 words)
``OP_ANY``            consume any byte
``OP_MATCH``          the end of a match (or of a lookaround body)
``OP_SPLIT x, y``     go on at ``x`` and at ``y``; ``x`` has priority (greedy/lazy order)
``OP_JMP x``          go on at ``x``
``OP_ASSERT kind``    zero-width test of the position (``parse.A_*``)
``OP_LOOK id, neg``   zero-width: the precomputed result of lookaround ``id`` here (negated)
``OP_LOOP x, y``      the back edge of a greedy loop: as ``OP_SPLIT x, y``; reached again at
                      the same position (an iteration that matched nothing), it goes on at
                      ``y``: PCRE leaves a loop after an empty iteration, with its priority
====================  =====================================================================

The main program starts at pc 0. Each lookaround body is a program of its own after it: a
lookbehind body runs forwards, a lookahead body is compiled *reversed* so that one backwards
pass over the subject finds every position where the lookahead holds (see ``vm``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dpi.regex.parse import A_SUBJECT_START, ALL_BYTES, RegexUnsupported, parse

OP_BYTE = 0
OP_CLASS = 1
OP_ANY = 2
OP_MATCH = 3
OP_SPLIT = 4
OP_JMP = 5
OP_ASSERT = 6
OP_LOOK = 7
OP_LOOP = 8

MAX_PROGRAM = 20000  # instructions per regex, lookaround bodies included

# RegexSet.arrays = (meta, ops, arg_a, arg_b, classes, looks); meta has META_STRIDE per regex
META_STRIDE = 8
M_PROG_BASE, M_PROG_LEN, M_CLASS_BASE, M_LOOK_BASE, M_LOOKS, M_ANCHORED, M_FIRST_CLASS = range(7)
LOOK_STRIDE = 2  # per lookaround: body pc, 1 if lookbehind


@dataclass(frozen=True)
class CompiledRegex:
    """One compiled pattern; equal (and hashed) by its text and flags."""

    pattern: str
    flags: str
    ops: np.ndarray = field(compare=False, repr=False)
    arg_a: np.ndarray = field(compare=False, repr=False)
    arg_b: np.ndarray = field(compare=False, repr=False)
    classes: np.ndarray = field(compare=False, repr=False)  # 4 int64 words per class
    looks: np.ndarray = field(compare=False, repr=False)  # LOOK_STRIDE per lookaround
    anchored: bool = field(compare=False, default=False)  # matches only at the subject start
    first_class: int = field(compare=False, default=-1)  # class of every possible first byte

    @property
    def size(self) -> int:
        return len(self.ops)


@dataclass
class RegexSet:
    """Many compiled regexes packed flat: ``arrays`` is one Numba-passable argument."""

    arrays: tuple
    count: int


class _Emitter:
    def __init__(self):
        self.ops: list[int] = []
        self.arg_a: list[int] = []
        self.arg_b: list[int] = []
        self.class_index: dict[int, int] = {}
        self.class_masks: list[int] = []
        self.look_index: dict[int, int] = {}
        self.look_nodes: list[tuple] = []

    def emit(self, op: int, a: int = 0, b: int = 0) -> int:
        if len(self.ops) >= MAX_PROGRAM:
            raise RegexUnsupported("program too large")
        self.ops.append(op)
        self.arg_a.append(a)
        self.arg_b.append(b)
        return len(self.ops) - 1

    def class_of(self, mask: int) -> int:
        if mask not in self.class_index:
            self.class_index[mask] = len(self.class_masks)
            self.class_masks.append(mask)
        return self.class_index[mask]

    def node(self, node: tuple, reverse: bool) -> None:
        kind = node[0]
        if kind == "set":
            mask = node[1]
            if mask == ALL_BYTES:
                self.emit(OP_ANY)
            elif mask & (mask - 1) == 0 and mask:
                self.emit(OP_BYTE, mask.bit_length() - 1)
            else:
                self.emit(OP_CLASS, self.class_of(mask))
        elif kind == "assert":
            self.emit(OP_ASSERT, node[1])
        elif kind == "cat":
            for item in reversed(node[1]) if reverse else node[1]:
                self.node(item, reverse)
        elif kind == "alt":
            self.alternation(node[1], reverse)
        elif kind == "rep":
            self.repeat(node, reverse)
        elif kind == "look":
            _, body, behind, negate, uid = node
            if uid not in self.look_index:
                self.look_index[uid] = len(self.look_nodes)
                self.look_nodes.append(node)
            self.emit(OP_LOOK, self.look_index[uid], int(negate))
        else:  # pragma: no cover - the parser makes no other kind
            raise AssertionError(kind)

    def alternation(self, branches: tuple, reverse: bool) -> None:
        jumps_to_end = []
        for k, branch in enumerate(branches):
            if k < len(branches) - 1:
                split = self.emit(OP_SPLIT, 0, 0)
                self.arg_a[split] = split + 1
                self.node(branch, reverse)
                jumps_to_end.append(self.emit(OP_JMP))
                self.arg_b[split] = len(self.ops)
            else:
                self.node(branch, reverse)
        for jump in jumps_to_end:
            self.arg_a[jump] = len(self.ops)

    def _split(self, greedy: bool, body: int, out: int) -> tuple[int, int]:
        return (body, out) if greedy else (out, body)

    def repeat(self, node: tuple, reverse: bool) -> None:
        _, body, low, high, greedy = node
        copies = low - 1 if high == -1 and low >= 1 else low
        for _ in range(copies):
            self.node(body, reverse)
        if high == -1:
            # x* is (x+)?: an iteration that matched nothing leaves the loop at once, with the
            # priority of that iteration, as in PCRE (not with the lower priority of "skip")
            entry = -1
            if low == 0:
                entry = self.emit(OP_SPLIT)
            loop = len(self.ops)
            self.node(body, reverse)
            back = self.emit(OP_LOOP if greedy else OP_SPLIT)
            out = len(self.ops)
            self.arg_a[back], self.arg_b[back] = self._split(greedy, loop, out)
            if entry >= 0:
                self.arg_a[entry], self.arg_b[entry] = self._split(greedy, loop, out)
            return
        # x{0,k} as nested options x(x(x)?)?)?: leaving one copy out leaves out the rest
        splits = []
        for _ in range(high - low):
            splits.append(self.emit(OP_SPLIT))
            self.node(body, reverse)
        out = len(self.ops)
        for split in splits:
            self.arg_a[split], self.arg_b[split] = self._split(greedy, split + 1, out)


def _class_words(masks: list[int]) -> np.ndarray:
    words = np.zeros(4 * len(masks), dtype=np.uint64)
    for k, mask in enumerate(masks):
        for w in range(4):
            words[4 * k + w] = (mask >> (64 * w)) & 0xFFFFFFFFFFFFFFFF
    return words.view(np.int64)


def _entry_closure(em: _Emitter, stop_at_subject_start: bool) -> tuple[bool, int]:
    """Walk the main program's entry closure (zero-width instructions from pc 0). Returns
    whether MATCH is reached and the union of the bytes the consuming instructions reached
    accept. With ``stop_at_subject_start``, paths end at a \\A / ^ assertion."""
    seen = set()
    stack = [0]
    first = 0
    reaches_match = False
    while stack:
        pc = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        op, a, b = em.ops[pc], em.arg_a[pc], em.arg_b[pc]
        if op in (OP_SPLIT, OP_LOOP):
            stack += [a, b]
        elif op == OP_JMP:
            stack.append(a)
        elif op == OP_ASSERT:
            if not (stop_at_subject_start and a == A_SUBJECT_START):
                stack.append(pc + 1)
        elif op == OP_LOOK:
            stack.append(pc + 1)
        elif op == OP_MATCH:
            reaches_match = True
        elif op == OP_ANY:
            first = ALL_BYTES
        elif op == OP_BYTE:
            first |= 1 << a
        else:
            first |= em.class_masks[a]
    return reaches_match, first


def _start_analysis(em: _Emitter) -> tuple[bool, int]:
    """Is every way into the program stopped by a subject-start assertion (anchored)? And
    the class of the bytes a match can begin with (-1: a match can be empty, or any byte)."""
    reaches_match, first = _entry_closure(em, stop_at_subject_start=True)
    anchored = not reaches_match and first == 0
    reaches_match, first = _entry_closure(em, stop_at_subject_start=False)
    if anchored or reaches_match or first == ALL_BYTES:
        return anchored, -1
    return anchored, em.class_of(first)


def compile_regex(pattern: str, flags: str = "") -> CompiledRegex:
    """Compile PCRE ``pattern`` with engine ``flags`` (letters from ``ismxAEG``; any other
    letter is ignored). Raises RegexSyntaxError or RegexUnsupported."""
    tree = parse(pattern, flags)
    em = _Emitter()
    em.node(tree, reverse=False)
    em.emit(OP_MATCH)
    anchored, first_class = _start_analysis(em)
    looks = []
    k = 0
    while k < len(em.look_nodes):  # bodies may add nested lookarounds as they compile
        _, body, behind, _negate, _uid = em.look_nodes[k]
        looks += [len(em.ops), int(behind)]
        em.node(body, reverse=not behind)
        em.emit(OP_MATCH)
        k += 1
    return CompiledRegex(
        pattern=pattern,
        flags=flags,
        ops=np.array(em.ops, dtype=np.int64),
        arg_a=np.array(em.arg_a, dtype=np.int64),
        arg_b=np.array(em.arg_b, dtype=np.int64),
        classes=_class_words(em.class_masks),
        looks=np.array(looks, dtype=np.int64),
        anchored=anchored or "A" in flags,
        first_class=first_class,
    )


def pack_regexes(regexes: list[CompiledRegex]) -> RegexSet:
    """Pack ``regexes`` into one RegexSet; regex ``i`` of the set is ``regexes[i]``."""
    meta = np.zeros(META_STRIDE * len(regexes), dtype=np.int64)
    prog_base = class_base = look_base = 0
    for i, rx in enumerate(regexes):
        row = meta[META_STRIDE * i : META_STRIDE * (i + 1)]
        row[M_PROG_BASE] = prog_base
        row[M_PROG_LEN] = rx.size
        row[M_CLASS_BASE] = class_base
        row[M_LOOK_BASE] = look_base
        row[M_LOOKS] = len(rx.looks) // LOOK_STRIDE
        row[M_ANCHORED] = int(rx.anchored)
        row[M_FIRST_CLASS] = rx.first_class
        prog_base += rx.size
        class_base += len(rx.classes) // 4
        look_base += len(rx.looks) // LOOK_STRIDE

    def joined(name: str) -> np.ndarray:
        parts = [getattr(rx, name) for rx in regexes]
        return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0, np.int64), np.int64)

    arrays = (meta, joined("ops"), joined("arg_a"), joined("arg_b"), joined("classes"), joined("looks"))
    return RegexSet(arrays=arrays, count=len(regexes))
