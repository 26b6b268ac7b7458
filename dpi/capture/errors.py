"""Errors raised or recorded by capture readers."""

from __future__ import annotations


class CaptureError(Exception):
    """A capture file is damaged or unsupported at a known place.

    ``offset`` is the byte offset in the file where the damage starts, ``packet`` the
    1-based number of the packet that could not be read (None when not applicable).
    """

    def __init__(self, path: str, offset: int, reason: str, packet: int | None = None):
        self.path = str(path)
        self.offset = int(offset)
        self.reason = reason
        self.packet = packet
        where = f"byte offset {self.offset}"
        if packet is not None:
            where += f" (packet {packet})"
        super().__init__(f"{self.path}: {where}: {reason}")
