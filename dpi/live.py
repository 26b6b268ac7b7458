"""`dpi live` as a library function: an AF_PACKET ring -> the same pipeline `dpi scan` runs -> EVE.

The capture side is :class:`dpi.capture.live.LiveCapture`; everything after it is
:class:`dpi.pipeline.Scanner`, batch by batch, exactly as for a pcap file. The closing stats
event carries the kernel's ring counters (PACKET_STATISTICS) under ``stats.capture``.
"""

from __future__ import annotations

import signal
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import numpy as np

from dpi.capture import DEFAULT_BATCH_SIZE, batches_of
from dpi.capture.live import LiveCapture
from dpi.capture.ring import block_columns, index_block
from dpi.capture.writer import pcap_header, pcap_record
from dpi.output.eve import EveWriter
from dpi.pipeline import Scanner, ScanResult, build_detection, rules_summary, stats_event
from dpi.settings import Settings


@contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM set ``stop`` (the capture then ends cleanly) instead of killing us;
    the previous handlers come back afterwards. Signals reach only the main thread, so
    elsewhere this does nothing and the caller's ``stop`` is the way to end."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda _sig, _frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _udp_frame(payload: bytes) -> bytes:
    """Ethernet, IPv4 (10.0.0.1 -> 10.0.0.2) and UDP (1024 -> 53) around ``payload``."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0, b"\n\0\0\1", b"\n\0\0\2")
    udp = struct.pack("!HHHH", 1024, 53, 8 + len(payload), 0)
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + udp + payload


def warm_up(db, settings: Settings) -> float:
    """Compile (or load from Numba's cache) every kernel of the pipeline and the ring indexer
    on a small synthetic capture, through a scanner that is then thrown away, so the first
    captured batch does not wait for the JIT while the ring fills. Returns the seconds spent."""
    from dpi.gen.tcp import synthetic_tcp_pcap

    started = time.perf_counter()
    scanner = Scanner(db, settings=settings, flow_events=False)
    # payloads that hold some of the rules' patterns, so that the kernels behind a match
    # (candidate verification) are compiled too, not only the matcher's
    patterns = list(getattr(db.matcher, "patterns", None) or [])[:16]
    corpus = (b" ".join(patterns) + b" warm-up ")[:1200]
    with tempfile.TemporaryDirectory(prefix="dpi-warm-up-") as tmp:
        tcp = synthetic_tcp_pcap(
            Path(tmp) / "tcp.pcap", flows=2, segments=2, payload=np.frombuffer(corpus, dtype=np.uint8)
        )
        udp = Path(tmp) / "udp.pcap"
        udp.write_bytes(pcap_header() + pcap_record(1, 0, _udp_frame(corpus)))
        for batch in batches_of([str(tcp.path), str(udp)]):
            scanner.process_batch(batch)
    scanner.flush()
    empty_block = np.zeros(64, dtype=np.uint8)
    index_block(empty_block, 0, 64, True, *block_columns(1), 0)
    return time.perf_counter() - started


def run_live(
    iface: str,
    rule_paths: list[str],
    eve: TextIO,
    *,
    bpf: str | None = None,
    user: str | None = None,
    netns: str | None = None,
    max_packets: int | None = None,
    duration: float | None = None,
    idle_timeout: float | None = None,
    engine: str = "numba",
    settings: Settings | None = None,
    variables: dict | None = None,
    on_ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    warm: bool = True,
    ring: dict | None = None,
) -> ScanResult:
    """Capture on ``iface`` and scan with rule files until a limit (``max_packets``,
    ``duration`` seconds, ``idle_timeout`` seconds without a frame), ``stop`` being set, or
    SIGINT/SIGTERM; writes EVE alerts, flow events and a closing stats event.

    The rules are compiled and (with ``warm``) the kernels JIT-compiled first; then the
    socket opens (in namespace ``netns`` when given), privileges drop to ``user`` when
    given, and ``on_ready()`` is called: frames sent from then on are captured. ``ring``
    passes ring geometry (block_size, block_count, retire_ms, ...) to LiveCapture."""
    t0 = time.perf_counter()
    ruleset, db = build_detection(rule_paths, variables, engine)
    compile_s = time.perf_counter() - t0
    settings = settings or Settings()
    warm_s = warm_up(db, settings) if warm else 0.0
    writer = EveWriter(eve)
    scanner = Scanner(db, rules_summary(ruleset, db), settings=settings, writer=writer)
    stop = stop if stop is not None else threading.Event()
    with (
        _stop_on_signals(stop),
        LiveCapture(iface, bpf=bpf, netns=netns, batch_size=batch_size, **(ring or {})) as capture,
    ):
        if user is not None:
            capture.drop_privileges(user)
        if on_ready is not None:
            on_ready()
        for batch in capture.batches(max_packets, duration, idle_timeout, stop):
            scanner.process_batch(batch)
        scanner.flush()
        result = scanner.finish()
        kernel = capture.stats()
    result.capture_errors.extend(capture.errors)
    result.timings["rules_compile"] = compile_s
    result.timings["jit_warmup"] = warm_s
    writer.write_event(stats_event(result, capture={"interface": iface, **kernel}))
    return result
