"""Capture readers: native (mmap + Numba index), and the dpkt/scapy reference readers."""

from __future__ import annotations

from dpi.capture.batch import PacketBatch
from dpi.capture.errors import CaptureError
from dpi.capture.reader import DEFAULT_BATCH_SIZE, CaptureInfo, CaptureReader, Interface

READERS = ("native", "dpkt", "scapy")


def open_capture(path: str, reader: str = "native", batch_size: int = DEFAULT_BATCH_SIZE) -> CaptureReader:
    """A reader for ``path``; ``reader`` is one of READERS."""
    if reader == "native":
        from dpi.capture.native import NativeReader

        return NativeReader(path, batch_size=batch_size)
    if reader == "dpkt":
        from dpi.capture.reference import DpktReader

        return DpktReader(path, batch_size=batch_size)
    if reader == "scapy":
        from dpi.capture.reference import ScapyReader

        return ScapyReader(path, batch_size=batch_size)
    raise ValueError(f"unknown reader {reader!r}; choose one of {', '.join(READERS)}")


def batches_of(
    paths: list[str],
    reader: str = "native",
    batch_size: int = DEFAULT_BATCH_SIZE,
    errors: list[CaptureError] | None = None,
):
    """Every batch of every capture, in order. Damage never stops the loop: each capture's
    error (after the packets before it) is appended to ``errors``."""
    for path in paths:
        try:
            cap = open_capture(path, reader=reader, batch_size=batch_size)
            yield from cap.batches()
            if cap.error is not None and errors is not None:
                errors.append(cap.error)
        except CaptureError as exc:
            if errors is not None:
                errors.append(exc)


__all__ = [
    "batches_of",
    "CaptureError",
    "CaptureInfo",
    "CaptureReader",
    "DEFAULT_BATCH_SIZE",
    "Interface",
    "PacketBatch",
    "READERS",
    "open_capture",
]
