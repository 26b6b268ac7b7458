"""Where the time goes: each pipeline stage timed alone over one capture, and the whole pipeline.

Every stage's figure is in Gbps of *captured* bytes and Mpps of the whole capture, so each says how
fast a link that stage alone could keep up with. The isolated passes feed each stage what the stage
before it produced (held in memory, outside the timer):

- ``read``: index the capture into batches (memory-mapped file, Numba record walk);
- ``decode``: link, IP and transport headers into columns;
- ``flow``: flow table look-up and update (flow tracking decodes as it goes in the pipeline; here the
  decoded columns are given);
- ``reassembly``: TCP stream reassembly into chunks;
- ``match``: the rule set's multi-pattern matcher over every TCP and UDP payload, packet by packet;
- ``detect``, ``output``: from the end-to-end run's own stage clock (matching on the reassembled
  streams, rule verification and header rules; writing EVE JSON);
- ``end_to_end``: the whole `dpi scan` pipeline from the capture file, wall clock, EVE JSON to
  /dev/null.

Each is the best of ``repeat`` rounds.
"""

from __future__ import annotations

import os
import time

import numpy as np

from dpi.capture import batches_of, open_capture
from dpi.decode import decode_batch
from dpi.flow.tracking import tracker_for
from dpi.match.corpus import transport_payloads
from dpi.output.eve import EveWriter
from dpi.pipeline import Scanner
from dpi.settings import Settings
from dpi.stream.tcp import TcpReassembler

STAGES = ("read", "decode", "flow", "reassembly", "match", "detect", "output", "end_to_end")


def _rate(seconds: float | None, captured_bytes: int, packets: int) -> dict:
    if not seconds or seconds <= 0:
        return {"seconds": seconds, "gbps": None, "mpps": None}
    return {
        "seconds": round(seconds, 6),
        "gbps": round(captured_bytes * 8 / seconds / 1e9, 4),
        "mpps": round(packets / seconds / 1e6, 4),
    }


def _best(fn, repeat: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def _payload_chunks(decoded):
    """Chunk columns of a batch's TCP and UDP payloads (unfragmented), one chunk per packet."""
    keep = transport_payloads(decoded)
    offset = decoded.payload_offset[keep].astype(np.int64)
    length = decoded.payload_len[keep].astype(np.int64)
    return np.zeros(offset.shape[0], np.int8), offset, length, np.full(offset.shape[0], -1, np.int64)


def end_to_end(path: str, db, settings: Settings | None = None) -> tuple[float, dict, object]:
    """(wall seconds, the scanner's stage clock, ScanResult) of one full scan of a capture."""
    settings = settings or Settings()
    with open(os.devnull, "w") as sink:
        start = time.perf_counter()
        scanner = Scanner(db, settings=settings, writer=EveWriter(sink))
        for batch in batches_of([path]):
            scanner.process_batch(batch)
        scanner.flush()
        result = scanner.finish()
        seconds = time.perf_counter() - start
    return seconds, dict(scanner.timings), result


def best_end_to_end(path: str, db, settings: Settings | None = None, repeat: int = 2):
    """The fastest of ``repeat`` full scans: (wall seconds, stage clock, ScanResult)."""
    best = None
    for _ in range(max(1, repeat)):
        run = end_to_end(path, db, settings)
        if best is None or run[0] < best[0]:
            best = run
    return best


def measure_stages(path: str, db, settings: Settings | None = None, repeat: int = 2) -> dict:
    """Every stage of STAGES over the capture at ``path`` with the compiled rules ``db``."""
    settings = settings or Settings()
    path = str(path)

    read_s, batches = _best(lambda: list(open_capture(path).batches()), repeat)
    packets = sum(len(b) for b in batches)
    captured = sum(b.captured_bytes for b in batches)
    wirelen = np.concatenate([b.wirelen for b in batches]) if batches else np.zeros(0, np.int64)

    decode_s, decoded = _best(lambda: [decode_batch(b) for b in batches], repeat)

    def track():
        fresh = tracker_for(settings)
        return fresh, [fresh.track(b, d) for b, d in zip(batches, decoded, strict=True)]

    flow_s, (tracker, tracked) = _best(track, repeat)

    def reassemble():
        streams = TcpReassembler(settings.stream)
        streams.reserve(tracker.table.capacity)
        delivered = 0
        for b, d, (eligible, flow, direction, _) in zip(batches, decoded, tracked, strict=True):
            chunks = streams.process(b.buffer, eligible, d, b.ts_ns, b.number, flow, direction)
            delivered += int(chunks.length.sum())
        return delivered

    reassembly_s, delivered = _best(reassemble, repeat)

    match_s, matches = None, 0
    if db.matcher is not None:
        columns = [(b.buffer, _payload_chunks(d)) for b, d in zip(batches, decoded, strict=True)]

        def match():
            found = 0
            states = db.matcher.new_states(0)
            for buf, chunk in columns:
                found += len(db.matcher.scan_chunks(buf, buf, *chunk, states)[0])
            return found

        match_s, matches = _best(match, repeat)

    best_wall, clock, result = best_end_to_end(path, db, settings, repeat)

    stages = {
        "read": _rate(read_s, captured, packets),
        "decode": _rate(decode_s, captured, packets),
        "flow": _rate(flow_s, captured, packets),
        "reassembly": _rate(reassembly_s, captured, packets),
        "match": _rate(match_s, captured, packets),
        "detect": _rate(clock.get("match+detect", 0.0) + clock.get("detect-headers", 0.0), captured, packets),
        "output": _rate(clock.get("output", 0.0), captured, packets),
    }
    return {
        "packets": packets,
        "captured_bytes": captured,
        "wirelen": wirelen,
        "stages": stages,
        "end_to_end": _rate(best_wall, captured, packets),
        "pipeline_clock_s": {name: round(s, 6) for name, s in clock.items()},
        "stream_bytes": delivered,
        "payload_matches": matches,
        "alerts": result.alerts,
        "flows": result.flows,
    }
