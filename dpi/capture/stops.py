"""Why an indexing kernel stopped, as small integer codes, and their messages.

Kernels return (rows filled, position, stop code, detail); codes below STOP_DAMAGE are
ordinary stops, the others mean the record or block at the position is damaged and the
detail is the offending value.
"""

from __future__ import annotations

STOP_BATCH_FULL = 0  # the output columns are full; continue from the position
STOP_END = 1  # the file ended exactly on a record boundary
STOP_SECTION_HEADER = 2  # pcapng: a section header block is at the position (parsed in Python)
STOP_INTERFACE_BLOCK = 3  # pcapng: an interface description block is at the position

STOP_DAMAGE = 16
STOP_TRUNCATED_HEADER = 16  # detail: bytes left, fewer than a record/block header
STOP_TRUNCATED_DATA = 17  # detail: captured length that runs past the end of the file
STOP_CAPLEN_INSANE = 18  # detail: captured length above the sane limit
STOP_BAD_BLOCK_LENGTH = 19  # detail: block total length (too small or not a multiple of 4)
STOP_TRUNCATED_BLOCK = 20  # detail: block total length that runs past the end of the file
STOP_TRAILER_MISMATCH = 21  # detail: the trailing copy of the block length
STOP_CAPLEN_OVER_BLOCK = 22  # detail: captured length larger than the block's data space
STOP_NO_SUCH_INTERFACE = 23  # detail: interface id not described in this section

_MESSAGES = {
    STOP_TRUNCATED_HEADER: "file ends inside a record header ({} bytes left)",
    STOP_TRUNCATED_DATA: "captured length {} runs past the end of the file",
    STOP_CAPLEN_INSANE: "captured length {} is larger than the snapshot length allows",
    STOP_BAD_BLOCK_LENGTH: "block total length {} is too small for its type or not a multiple of 4",
    STOP_TRUNCATED_BLOCK: "block total length {} runs past the end of the file",
    STOP_TRAILER_MISMATCH: "trailing block length {} differs from the leading one",
    STOP_CAPLEN_OVER_BLOCK: "captured length {} is larger than the block's packet data",
    STOP_NO_SUCH_INTERFACE: "interface id {} is not described in this section",
}


def is_damage(stop: int) -> bool:
    return stop >= STOP_DAMAGE


def damage_message(stop: int, detail: int) -> str:
    return _MESSAGES.get(stop, "damaged record (stop code " + str(stop) + ", detail {})").format(detail)
