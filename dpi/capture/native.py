"""The native capture reader: a read-only memory map of the file, indexed by Numba kernels.

Nothing is copied: every batch's ``buffer`` is the whole mapped file and its ``offset``
column points at each frame. The kernels index at most one batch of records per call and
return where they stopped and why, so a file of any size needs only one batch of index.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np

from dpi.capture.batch import PacketBatch
from dpi.capture.errors import CaptureError
from dpi.capture.pcap import PcapIndexer
from dpi.capture.pcapng import PcapngIndexer
from dpi.capture.reader import DEFAULT_BATCH_SIZE, CaptureInfo, CaptureReader
from dpi.capture.reference import sniff_format

_INDEXERS = {"pcap": PcapIndexer, "pcapng": PcapngIndexer}


def map_file(path: str) -> tuple[mmap.mmap | None, np.ndarray]:
    """The file's bytes as a read-only uint8 array over a memory map (no map for an empty file)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return None, np.zeros(0, dtype=np.uint8)
        mapping = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    return mapping, np.frombuffer(mapping, dtype=np.uint8)


class NativeReader(CaptureReader):
    """pcap and pcapng through a memory map and Numba indexing kernels.

    ``batches()`` parses the file header at once (raising CaptureError for a file that is
    not a capture) and fills ``self.info``; pcapng interfaces and sections found later are
    added to it as they are read.
    """

    name = "native"

    def __init__(self, path: str, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__(path, batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self._mapping: mmap.mmap | None = None

    def batches(self) -> Iterator[PacketBatch]:
        fmt = sniff_format(self.path)
        self.close()
        self._mapping, buf = map_file(self.path)
        indexer = _INDEXERS[fmt](self.path, buf)
        self.error = None
        # the indexer's interface list grows as pcapng IDBs are read
        self.info = CaptureInfo(
            path=self.path, format=fmt, interfaces=indexer.interfaces, sections=indexer.sections
        )
        return self._iterate(indexer, buf)

    def _iterate(self, indexer, buf: np.ndarray) -> Iterator[PacketBatch]:
        number = 1
        while not indexer.finished:
            # no more rows than records that can still fit in the file
            rows = min(self.batch_size, (buf.shape[0] - indexer.pos) // indexer.min_record_len + 1)
            offset = np.empty(rows, dtype=np.int64)
            caplen = np.empty(rows, dtype=np.int64)
            wirelen = np.empty(rows, dtype=np.int64)
            ts_ns = np.empty(rows, dtype=np.int64)
            linktype = np.empty(rows, dtype=np.int64)
            n = indexer.fill(offset, caplen, wirelen, ts_ns, linktype)
            self.info.sections = indexer.sections
            if indexer.damage is not None:
                where, reason = indexer.damage
                self.error = CaptureError(self.path, where, reason, packet=number + n)
            if n:
                yield PacketBatch(
                    buffer=buf,
                    offset=offset[:n],
                    caplen=caplen[:n],
                    wirelen=wirelen[:n],
                    ts_ns=ts_ns[:n],
                    linktype=linktype[:n],
                    number=np.arange(number, number + n, dtype=np.int64),
                )
                number += n

    def close(self) -> None:
        """Drop this reader's reference to the map; batches still held keep it alive."""
        # mmap.close() refuses while numpy views exist; the map is unmapped when the last
        # view (a batch's buffer) is garbage collected.
        self._mapping = None
