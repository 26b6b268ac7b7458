"""Reading unsigned integers of either byte order out of a uint8 buffer, inside Numba kernels.

The callers check that the bytes exist before they call these.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def read_u16(buf, pos, big_endian):
    b0 = np.int64(buf[pos])
    b1 = np.int64(buf[pos + 1])
    if big_endian:
        return (b0 << 8) | b1
    return (b1 << 8) | b0


@njit(cache=True, inline="always")
def read_u32(buf, pos, big_endian):
    b0 = np.int64(buf[pos])
    b1 = np.int64(buf[pos + 1])
    b2 = np.int64(buf[pos + 2])
    b3 = np.int64(buf[pos + 3])
    if big_endian:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0
