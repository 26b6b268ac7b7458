"""The interface every capture reader shares (native, dpkt, scapy)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dpi.capture.batch import PacketBatch
from dpi.capture.errors import CaptureError

DEFAULT_BATCH_SIZE = 65536


@dataclass
class Interface:
    """One capture interface: pcap has one, pcapng one per IDB (per section)."""

    linktype: int
    snaplen: int
    tsresol_ns_num: int = 1000  # timestamp unit = num/den nanoseconds
    tsresol_ns_den: int = 1
    tsoffset_s: int = 0
    name: str = ""


@dataclass
class CaptureInfo:
    path: str
    format: str  # "pcap" | "pcapng"
    interfaces: list[Interface] = field(default_factory=list)
    sections: int = 1


class CaptureReader:
    """Yields :class:`PacketBatch` objects from a capture.

    Damage is never raised from the middle of iteration: the reader yields every packet
    before the damage, stops, and records a :class:`CaptureError` in ``self.error``; the
    caller decides the exit status. A file that is not a capture at all raises
    ``CaptureError`` when opened.
    """

    name = "abstract"

    def __init__(self, path: str, batch_size: int = DEFAULT_BATCH_SIZE):
        self.path = str(path)
        self.batch_size = int(batch_size)
        self.error: CaptureError | None = None
        self.info = CaptureInfo(path=self.path, format="unknown")

    def batches(self) -> Iterator[PacketBatch]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
