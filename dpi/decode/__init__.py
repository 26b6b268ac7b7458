"""Packet decoding: link, IP and transport headers of a whole PacketBatch into DecodedBatch columns.

``decode_batch(batch)`` runs one Numba kernel over the batch; ``DecodedBatch.status``
holds a :class:`Status` code per packet (see :mod:`dpi.decode.status` for what each means
and which ones are errors).
"""

from dpi.decode.columns import DecodedBatch
from dpi.decode.kernel import decode_batch
from dpi.decode.status import (
    CATEGORIES,
    STATUS_CATEGORY,
    STATUS_NAMES,
    Status,
    category,
    count_by_category,
    count_by_status,
    is_error,
    status_name,
)

__all__ = [
    "CATEGORIES",
    "DecodedBatch",
    "STATUS_CATEGORY",
    "STATUS_NAMES",
    "Status",
    "category",
    "count_by_category",
    "count_by_status",
    "decode_batch",
    "is_error",
    "status_name",
]
