"""`dpi info`: a capinfos-like summary of a capture, computed on the batch pipeline."""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from dpi.capture import DEFAULT_BATCH_SIZE, CaptureError, open_capture
from dpi.decode import decode_batch
from dpi.decode.status import count_by_status
from dpi.decode.tunnel import TUNNEL_NAMES
from dpi.output.eve import format_timestamp

LINKTYPE_NAMES = {
    0: "NULL",
    1: "EN10MB",
    12: "RAW",
    14: "RAW",
    101: "RAW",
    108: "LOOP",
    113: "LINUX_SLL",
    228: "IPV4",
    229: "IPV6",
    276: "LINUX_SLL2",
}
PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}


@dataclass
class CaptureSummary:
    path: str
    format: str = "unknown"
    packets: int = 0
    captured_bytes: int = 0
    wire_bytes: int = 0
    truncated_by_snaplen: int = 0
    linktypes: dict[str, int] = field(default_factory=dict)
    interfaces: int = 0
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    duration_s: float = 0.0
    protocols: dict[str, int] = field(default_factory=dict)
    decode_status: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    error_offset: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class _Progress:
    """A one-line progress bar on stderr, only when it is a terminal."""

    def __init__(self, total_bytes: int, enabled: bool):
        self.total = max(total_bytes, 1)
        self.enabled = enabled and sys.stderr.isatty()

    def update(self, done: int, packets: int) -> None:
        if self.enabled:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r[{bar:<30}] {frac * 100:5.1f}% {packets} packets")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 60 + "\r")


def summarize(
    path: str, reader: str = "native", batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True
) -> CaptureSummary:
    summary = CaptureSummary(path=str(path))
    bar = _Progress(os.path.getsize(path), progress)
    statuses = np.zeros(256, np.int64)
    linktypes: Counter[int] = Counter()
    protos: Counter[str] = Counter()
    first = last = None
    try:
        cap = open_capture(path, reader=reader, batch_size=batch_size)
        for batch in cap.batches():
            n = len(batch)
            summary.packets += n
            summary.captured_bytes += int(batch.caplen.sum())
            summary.wire_bytes += int(batch.wirelen.sum())
            summary.truncated_by_snaplen += int((batch.caplen < batch.wirelen).sum())
            lt, cnt = np.unique(batch.linktype & 0x03FFFFFF, return_counts=True)
            linktypes.update(dict(zip(lt.tolist(), cnt.tolist(), strict=True)))
            if n:
                lo, hi = int(batch.ts_ns.min()), int(batch.ts_ns.max())
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
            dec = decode_batch(batch)
            statuses += np.bincount(dec.status, minlength=256)
            protos["ipv4"] += int((dec.ip_version == 4).sum())
            protos["ipv6"] += int((dec.ip_version == 6).sum())
            for name, number in PROTOCOLS.items():
                protos[name] += int(((dec.ip_version != 0) & (dec.proto == number)).sum())
            protos["fragments"] += int(dec.is_fragment.sum())
            # tunnelled packets are counted above by their inner packet, and here by tunnel
            protos["tunnelled"] += int(np.count_nonzero(dec.tunnel_depth))
            for kind, count in enumerate(np.bincount(dec.tunnel_kind, minlength=len(TUNNEL_NAMES))[1:], 1):
                protos[f"tunnelled_{TUNNEL_NAMES[kind]}"] += int(count)
            if n:
                bar.update(int(batch.offset[-1] + batch.caplen[-1]), summary.packets)
        summary.format = cap.info.format
        summary.interfaces = len(cap.info.interfaces)
        if cap.error is not None:
            summary.error, summary.error_offset = str(cap.error), cap.error.offset
    except CaptureError as exc:
        summary.error, summary.error_offset = str(exc), exc.offset
    finally:
        bar.close()
    summary.linktypes = {f"{LINKTYPE_NAMES.get(k, 'LINKTYPE')}({k})": v for k, v in sorted(linktypes.items())}
    summary.protocols = dict(protos)
    summary.decode_status = {
        k: v for k, v in count_by_status(np.repeat(np.arange(256, dtype=np.uint8), statuses)).items() if v
    }
    if first is not None:
        summary.first_timestamp = format_timestamp(first)
        summary.last_timestamp = format_timestamp(last)
        summary.duration_s = (last - first) / 1e9
    return summary


def render(summary: CaptureSummary) -> str:
    rows = [
        ("File name", summary.path),
        ("File format", summary.format),
        ("Interfaces", str(summary.interfaces)),
        ("Link types", ", ".join(f"{k}: {v}" for k, v in summary.linktypes.items()) or "-"),
        ("Packets", str(summary.packets)),
        ("Captured bytes", str(summary.captured_bytes)),
        ("Wire bytes", str(summary.wire_bytes)),
        ("Cut by snaplen", str(summary.truncated_by_snaplen)),
        ("First packet", summary.first_timestamp or "-"),
        ("Last packet", summary.last_timestamp or "-"),
        ("Duration", f"{summary.duration_s:.6f} s"),
        ("Protocols", ", ".join(f"{k}: {v}" for k, v in summary.protocols.items() if v) or "-"),
        ("Decode status", ", ".join(f"{k}: {v}" for k, v in summary.decode_status.items()) or "-"),
    ]
    if summary.error:
        rows.append(("ERROR", summary.error))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in rows)
