"""Big-endian (and one little-endian) field readers for the decode kernels, and a frame's end on
the wire.

Callers check that the bytes are inside the frame before calling: these read blindly,
because Numba does not bounds-check and a check here could not know the frame's end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MAX_WIRE_LEN = 1 << 32  # wire lengths are clamped to this, so that a nonsense value cannot overflow


@njit(cache=True, inline="always")
def frame_wire_end(start, captured, wirelen):
    """Where a frame ended on the wire: it only classifies (a snap-length cut or a lying IP
    length), never bounds a read; never before the captured bytes end."""
    return start + max(captured, min(wirelen, MAX_WIRE_LEN))


@njit(cache=True, inline="always")
def be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@njit(cache=True, inline="always")
def be32(buf, p):
    return (
        (np.int64(buf[p]) << 24)
        | (np.int64(buf[p + 1]) << 16)
        | (np.int64(buf[p + 2]) << 8)
        | np.int64(buf[p + 3])
    )


@njit(cache=True, inline="always")
def le32(buf, p):
    return (
        (np.int64(buf[p + 3]) << 24)
        | (np.int64(buf[p + 2]) << 16)
        | (np.int64(buf[p + 1]) << 8)
        | np.int64(buf[p])
    )


@njit(cache=True, inline="always")
def be64(buf, p):
    """Eight bytes as an unsigned 64-bit integer (IPv6 address halves)."""
    value = np.uint64(0)
    for k in range(8):
        value = (value << np.uint64(8)) | np.uint64(buf[p + k])
    return value
