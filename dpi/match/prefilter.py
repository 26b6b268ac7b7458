"""The prefilter layout: window filters probed with independent loads, then exact verification.

A byte-serial DFA pays one dependent table load per byte; on a large pattern set that load misses the
cache. Here positions are tested with independent loads from small tables instead (in the manner of
DFC, Choi et al., NSDI 2016), and only the positions that pass are verified. Patterns are split by
length:

* 1 byte: a per-byte key list, flagged in the 64K-entry ``pair`` table (indexed by the last two bytes);
* 2 and 3 bytes: flagged in the ``pair`` table by their last two bytes, then looked up in a bucket;
* 4 to 10 bytes: their last 4 bytes, hashed into a bit filter probed at every position;
* 11 bytes and more: any of their last four 8-byte windows, hashed into a second bit filter that is
  probed at one position in four. A pattern of 11 bytes or more ending at e contains the 8-byte
  window ending at the one probed position among e-3..e, so each of its four windows is a filter key,
  with its distance r from the pattern's end; at the first three positions of a chunk (whose probed
  position would lie in the previous chunk) the filter is probed too, for r = 0 only.

Windows are taken over case-folded bytes (A-Z as a-z), so one probe serves exact and nocase patterns;
verification then compares exact patterns byte for byte. A position that passes a class's probe looks
up the class's bucket (same hash, fewer bits) and checks each entry: its folded window in one 64-bit
compare, and up to 8 bytes before it in a second, masked one (many keys share a window such as
".com"); only then the whole pattern, byte by byte.

In a streaming scan the bytes before a chunk come from the stream's history (its last
``max_length - 1`` bytes), kept in the stream state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Classes of patterns by length [low, high]: the window bytes each is found by, and the sampling step
# (a class with step s is probed at one position in s; see the module docstring).
CLASS_NAMES = ("2", "3", "4-10", "11+")
CLASS_LOW = (2, 3, 4, 11)
CLASS_HIGH = (2, 3, 10, 1 << 30)
CLASS_WINDOWS = (2, 3, 4, 8)
# Bytes before the window that each entry also checks in one masked compare, so that many keys
# sharing a window (".com", "</title>") cost one compare each, not a byte loop each.
CLASS_PRE = (0, 0, 4, 8)
LONG_STEP = 4  # the long class is probed at one position in four
N_CLASSES = len(CLASS_WINDOWS)
C_TWO, C_THREE, C_MID, C_LONG = range(N_CLASSES)

# Bits of a ``pair`` table entry, and of the candidate flags the scan derives from it.
PAIR_ONE = 1  # a 1-byte pattern ends here (by the folded last byte)
PAIR_TWO = 2  # a 2-byte pattern's folded bytes are the last two
PAIR_THREE = 4  # a 3-byte pattern ends in these two folded bytes
FLAG_MID = 8  # the 4-10 class's filter passed
FLAG_LONG = 16  # the 11+ class's filter passed

HASH_MULTIPLIER = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd: a multiplicative hash
_MIN_FILTER_BITS = 12
_MAX_FILTER_BITS = 20  # 128 KiB of bits per filter at most
_FILL = 64  # filter bits per key: about 1.5% of random windows pass a filter
_FOLD = np.arange(256, dtype=np.uint8)
_FOLD[ord("A") : ord("Z") + 1] += 32


def fold_table() -> np.ndarray:
    return _FOLD.copy()


@dataclass(frozen=True)
class PrefilterTables:
    """Everything the prefilter kernels read; built once, never written."""

    fold: np.ndarray  # uint8[256]: byte -> folded byte
    pair: np.ndarray  # uint8[65536]: PAIR_* bits by the last two folded bytes (first byte high)
    one_ptr: np.ndarray  # int32[257]: byte b matches 1-byte keys one_keys[one_ptr[b]:one_ptr[b + 1]]
    one_keys: np.ndarray  # int32: unique key ids, already checked (exact or nocase) against b
    filters: np.ndarray  # uint8: the bit filters of the mid and long classes, back to back
    class_params: np.ndarray  # int64[N_CLASSES, PARAM_FIELDS]
    bucket_ptr: np.ndarray  # int32: every class's bucket starts, back to back (each with one extra end)
    entries: np.ndarray  # uint64[n_entries, ENTRY_FIELDS]: one record (half a cache line) per entry
    key_bytes: np.ndarray  # uint8: every unique key, as written (folded keys lower-case)
    key_ptr: np.ndarray  # int64[n_keys + 1]
    key_nocase: np.ndarray  # uint8[n_keys]

    @property
    def nbytes(self) -> int:
        return sum(
            a.nbytes
            for a in (
                self.fold, self.pair, self.one_ptr, self.one_keys, self.filters, self.class_params,
                self.bucket_ptr, self.entries, self.key_bytes, self.key_ptr,
                self.key_nocase,
            )
        )  # fmt: skip


# Fields of an entry record: its folded window; the folded key bytes just before the window (last
# byte lowest) and which of them the key has; unique key id | (bytes from the window's end to the
# key's end) << 32.
ENTRY_FIELDS = 4
E_WINDOW, E_PRE, E_PRE_MASK, E_KEY_SHIFT = range(ENTRY_FIELDS)

# Columns of class_params: window bytes, window mask, filter offset (bytes) and bits (0: no filter),
# bucket-table offset and bits, wide bucket-table offset and bits (0: none).
PARAM_FIELDS = 8
P_WINDOW, P_MASK, P_FILTER_OFF, P_FILTER_BITS, P_BUCKET_OFF, P_BUCKET_BITS, P_WIDE_OFF, P_WIDE_BITS = range(
    PARAM_FIELDS
)


def window_value(key: bytes) -> int:
    """The integer a window of these (folded) bytes has in the scan: last byte lowest."""
    return int.from_bytes(key, "big")


def hash_slot(value: int, bits: int) -> int:
    """The slot of a window value in a table of 2**bits slots (same arithmetic as the kernels)."""
    return ((value * HASH_MULTIPLIER) & 0xFFFFFFFFFFFFFFFF) >> (64 - bits)


def _bits_for(n_keys: int, per_key: int, low: int, high: int) -> int:
    need = max(1, n_keys * per_key)
    return int(min(high, max(low, int(np.ceil(np.log2(need))))))


def build_prefilter(keys: list[bytes], nocase: list[bool]) -> PrefilterTables:
    """Tables for unique keys (key i is unique key id i; nocase keys already lower-case)."""
    fold = fold_table()
    folded = [bytes(fold[np.frombuffer(k, dtype=np.uint8)]) for k in keys]
    pair = np.zeros(1 << 16, dtype=np.uint8)

    one_lists: list[list[int]] = [[] for _ in range(256)]
    by_class: list[list[int]] = [[] for _ in range(N_CLASSES)]
    for u, f in enumerate(folded):
        if len(f) == 1:
            one_lists[f[0]].append(u)
            continue
        for c in range(N_CLASSES):
            if CLASS_LOW[c] <= len(f) <= CLASS_HIGH[c]:
                by_class[c].append(u)
                break
    for b, lst in enumerate(one_lists):
        if lst:
            pair[b::256] |= PAIR_ONE  # every first byte, this last byte
    # Listed by raw byte, so that the scan emits them with no compare: an exact key under its own
    # byte only, a nocase key under both cases of its letter.
    by_byte = [[u for u in one_lists[fold[b]] if nocase[u] or keys[u][0] == b] for b in range(256)]
    one_ptr = np.zeros(257, dtype=np.int32)
    np.cumsum([len(lst) for lst in by_byte], out=one_ptr[1:])
    one_keys = np.array([u for lst in by_byte for u in lst], dtype=np.int32)
    for u in by_class[C_TWO]:
        pair[window_value(folded[u])] |= PAIR_TWO
    for u in by_class[C_THREE]:
        pair[window_value(folded[u][-2:])] |= PAIR_THREE

    params = np.zeros((N_CLASSES, PARAM_FIELDS), dtype=np.int64)
    filters: list[np.ndarray] = []
    bucket_parts: list[np.ndarray] = []
    entries: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    filter_off = bucket_off = n_entries = 0
    for c, window in enumerate(CLASS_WINDOWS):
        # (key, window value, distance of the window's end from the key's end, bytes before the
        # window, their mask) of each entry
        rows = []
        for u in by_class[c]:
            f = folded[u]
            for r in range(LONG_STEP if c == C_LONG else 1):
                w_start = len(f) - r - window
                pre = f[max(0, w_start - CLASS_PRE[c]) : w_start]
                rows.append(
                    (
                        u,
                        window_value(f[w_start : len(f) - r]),
                        r,
                        window_value(pre),
                        (1 << (8 * len(pre))) - 1,
                    )
                )
        rows = list(dict.fromkeys(rows))
        key = np.array([row[0] for row in rows], dtype=np.int64)
        value = np.array([row[1] for row in rows], dtype=np.uint64)
        shift = np.array([row[2] for row in rows], dtype=np.int64)
        pre_value = np.array([row[3] for row in rows], dtype=np.uint64)
        pre_mask = np.array([row[4] for row in rows], dtype=np.uint64)
        params[c, P_WINDOW] = window
        params[c, P_MASK] = np.int64(-1) if window == 8 else (1 << (8 * window)) - 1
        if c in (C_MID, C_LONG):  # classes 2 and 3 are pre-tested through the pair table
            distinct = np.unique(value)
            bits = _bits_for(distinct.shape[0], _FILL, _MIN_FILTER_BITS, _MAX_FILTER_BITS)
            bitmap = np.zeros(1 << (bits - 3), dtype=np.uint8)
            slots = _slots(distinct, bits)
            np.bitwise_or.at(bitmap, slots >> 3, (1 << (slots & 7)).astype(np.uint8))
            params[c, P_FILTER_OFF] = filter_off
            params[c, P_FILTER_BITS] = bits
            filters.append(bitmap)
            filter_off += bitmap.shape[0]
        # Buckets: about one entry per slot (the filter already rejects most positions). Entries
        # that have all CLASS_PRE bytes before their window go in a second table keyed by window and
        # those bytes together, so that keys sharing a common window are spread out.
        wide = (
            pre_mask == np.uint64((1 << (8 * CLASS_PRE[c])) - 1)
            if CLASS_PRE[c]
            else np.zeros(len(rows), bool)
        )
        for part, columns in ((0, (P_BUCKET_OFF, P_BUCKET_BITS)), (1, (P_WIDE_OFF, P_WIDE_BITS))):
            take = np.nonzero(wide if part else ~wide)[0]
            if part and take.shape[0] == 0:
                continue  # P_WIDE_BITS stays 0: no wide table
            hashed = wide_key(value[take], pre_value[take]) if part else value[take]
            bucket_bits = _bits_for(take.shape[0], 1, 4, 20)
            slots = _slots(hashed, bucket_bits)
            order = take[np.lexsort((shift[take], key[take], slots))]
            ptr = np.zeros((1 << bucket_bits) + 1, dtype=np.int64)
            np.cumsum(np.bincount(slots, minlength=1 << bucket_bits), out=ptr[1:])
            params[c, columns[0]] = bucket_off
            params[c, columns[1]] = bucket_bits
            bucket_parts.append(ptr + n_entries)
            bucket_off += ptr.shape[0]
            entries.append((key[order], value[order], shift[order], pre_value[order], pre_mask[order]))
            n_entries += take.shape[0]

    key_ptr = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(k) for k in keys], out=key_ptr[1:])
    return PrefilterTables(
        fold=fold,
        pair=pair,
        one_ptr=one_ptr,
        one_keys=one_keys,
        filters=np.concatenate(filters),
        class_params=params,
        bucket_ptr=np.concatenate(bucket_parts).astype(np.int32),
        entries=np.stack(
            [
                np.concatenate([e[1] for e in entries]),
                np.concatenate([e[3] for e in entries]),
                np.concatenate([e[4] for e in entries]),
                np.concatenate([e[0] | (e[2] << 32) for e in entries]).astype(np.uint64),
            ],
            axis=1,
        ),
        key_bytes=np.frombuffer(b"".join(keys), dtype=np.uint8).copy() if keys else np.zeros(0, np.uint8),
        key_ptr=key_ptr,
        key_nocase=np.array(nocase, dtype=np.uint8),
    )


PRE_MULTIPLIER = 0xC2B2AE3D27D4EB4F  # odd: mixes the bytes before a window into a wide bucket key


def wide_key(value: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """The wide-bucket key of windows and the bytes before them (same arithmetic as the kernels)."""
    with np.errstate(over="ignore"):
        return value.astype(np.uint64) ^ (pre.astype(np.uint64) * np.uint64(PRE_MULTIPLIER))


def _slots(values: np.ndarray, bits: int) -> np.ndarray:
    """hash_slot of each window value, vectorised (uint64 arithmetic wraps as in the kernels)."""
    with np.errstate(over="ignore"):
        return ((values.astype(np.uint64) * np.uint64(HASH_MULTIPLIER)) >> np.uint64(64 - bits)).astype(
            np.int64
        )


def co_match_bound(keys: list[bytes], nocase: list[bool], ids_per_key: np.ndarray) -> int:
    """Most pattern ids that can end at one position: over keys, the ids of every key whose folded
    bytes are a suffix of this key's folded bytes (itself included)."""
    fold = fold_table()
    weight: dict[bytes, int] = {}
    folded = [bytes(fold[np.frombuffer(k, dtype=np.uint8)]) for k in keys]
    for f, n in zip(folded, ids_per_key.tolist(), strict=True):
        weight[f] = weight.get(f, 0) + int(n)
    best = 0
    for f in set(folded):
        best = max(best, sum(weight.get(f[i:], 0) for i in range(len(f))))
    return best
