"""`dpi scan` as a library function: capture -> decode -> flow -> stream -> match -> detect -> EVE.

Python here runs once per batch; every per-packet loop is a Numba kernel in a stage module.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from dpi.capture import DEFAULT_BATCH_SIZE, CaptureError, batches_of
from dpi.detect.compile import DetectionDatabase, compile_rules
from dpi.detect.engine import AlertBatch, Detector
from dpi.flow.table import FLOW_STATES, FlowTable, flow_states
from dpi.flow.tracking import FlowTracker
from dpi.output.eve import EveWriter, format_timestamp
from dpi.rules import RuleSet, load_rules
from dpi.settings import Settings
from dpi.stream.tcp import StreamConfig, TcpReassembler


@dataclass
class ScanResult:
    packets: int = 0
    bytes: int = 0
    alerts: int = 0
    flows: int = 0
    decode: dict[str, int] = field(default_factory=dict)
    not_tracked: dict[str, int] = field(default_factory=dict)
    stream: dict[str, int] = field(default_factory=dict)
    detect: dict[str, int] = field(default_factory=dict)
    flow_states: dict[str, int] = field(default_factory=dict)
    rules: dict = field(default_factory=dict)
    capture_errors: list[CaptureError] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None

    @property
    def ok(self) -> bool:
        return not self.capture_errors


def fill_capture_counts(result: ScanResult, tracker: FlowTracker) -> None:
    result.packets, result.bytes = tracker.packets, tracker.bytes
    result.first_ts, result.last_ts = tracker.first_ts, tracker.last_ts
    result.flows = tracker.table.n_flows
    result.decode = tracker.decode_counts()
    result.not_tracked = dict(tracker.not_tracked)


class Scanner:
    """Holds the state that lives across batches and files: flows, streams, detection."""

    def __init__(
        self,
        db: DetectionDatabase,
        rules_summary: dict | None = None,
        settings: Settings | None = None,
        max_flows: int = 1_000_000,
    ):
        self.db = db
        self.settings = settings or Settings()
        self.tracker = FlowTracker(max_flows=max_flows)
        self.flows = self.tracker.table
        self.streams = TcpReassembler(self.settings.stream)
        self.detector = Detector(db)
        self.result = ScanResult(rules=rules_summary or {})
        self.timings: Counter[str] = Counter()

    def _tick(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.timings[stage] += t1 - t0
        return t1

    def process_batch(self, batch) -> AlertBatch:
        t = time.perf_counter()
        decoded = self.tracker.decode(batch)
        t = self._tick("decode", t)
        eligible, flow, direction, established = self.tracker.track(batch, decoded)
        t = self._tick("flow", t)
        self.streams.reserve(self.flows.capacity)
        chunks = self.streams.process(
            batch.buffer, eligible, decoded, batch.ts_ns, batch.number, flow, direction
        )
        t = self._tick("stream", t)
        stream_alerts = self.detector.detect_chunks(
            batch.buffer, chunks, self.streams.next_slot, self.flows, established
        )
        t = self._tick("match+detect", t)
        header = self.detector.detect_headers(eligible, flow, direction, established, decoded, self.flows)
        alerts = self.detector.finish_batch(stream_alerts, header, batch.ts_ns, batch.number, flow, direction)
        self._tick("detect-headers", t)
        return alerts

    def flush(self) -> AlertBatch:
        """End of input: deliver data still held behind holes, and detect on it."""
        chunks = self.streams.flush(self.flows.n_flows)
        if len(chunks) == 0:
            return AlertBatch.empty()
        empty = np.zeros(0, np.uint8)
        alerts = self.detector.detect_chunks(empty, chunks, self.streams.next_slot, self.flows, empty)
        return self.detector.finish_batch(alerts, None, None, None, None, None)

    def finish(self) -> ScanResult:
        res = self.result
        fill_capture_counts(res, self.tracker)
        res.stream = self.streams.stats()
        res.detect = {
            "candidate_checks": int(self.detector.counters[0]),
            "verify_steps": int(self.detector.counters[1]),
            "verify_limit_hits": int(self.detector.counters[2]),
            "alerts_over_packet_cap": self.detector.alerts_capped,
            "history_records_dropped": self.detector.history_dropped,
        }
        res.timings = dict(self.timings)
        return res


def build_detection(
    rule_paths: list[str], variables: dict | None = None, engine: str = "numba"
) -> tuple[RuleSet, DetectionDatabase]:
    ruleset = load_rules(rule_paths, variables=variables)
    db = compile_rules(ruleset.rules, engine=engine)
    return ruleset, db


def rules_summary(ruleset: RuleSet, db: DetectionDatabase) -> dict:
    reasons = Counter(ruleset.skip_reasons())
    for _rule, reason in db.report.skipped:
        reasons[reason] += 1
    return {
        "rules_loaded": db.report.compiled,
        "rules_skipped": len(ruleset.skipped) + len(db.report.skipped),
        "rules_failed": len(ruleset.errors),
        "header_only_rules": db.report.header_only,
        "patterns": db.n_patterns,
        "skip_reasons": dict(reasons.most_common()),
        # each names file:line:column and the reason; the first 100 travel in the stats event
        "rule_errors": [str(e) for e in ruleset.errors[:100]],
    }


def scan(
    pcaps: list[str],
    rule_paths: list[str],
    eve: TextIO,
    reader: str = "native",
    batch_size: int = DEFAULT_BATCH_SIZE,
    variables: dict | None = None,
    engine: str = "numba",
    stream_config: StreamConfig | None = None,
    flow_events: bool = True,
    settings: Settings | None = None,
) -> ScanResult:
    """Scan captures with rule files; writes EVE alerts and a closing stats event.
    ``stream_config`` is a shorthand that replaces ``settings.stream``."""
    t0 = time.perf_counter()
    ruleset, db = build_detection(rule_paths, variables, engine)
    compile_s = time.perf_counter() - t0
    settings = settings or Settings()
    if stream_config is not None:
        settings.stream = stream_config
    scanner = Scanner(db, rules_summary(ruleset, db), settings=settings)
    writer = EveWriter(eve)
    for batch in batches_of(pcaps, reader, batch_size, scanner.result.capture_errors):
        writer.write_alerts(scanner.process_batch(batch), db.rules, scanner.flows)
    writer.write_alerts(scanner.flush(), db.rules, scanner.flows)
    result = scanner.finish()
    result.alerts = writer.alerts
    result.timings["rules_compile"] = compile_s
    if flow_events:
        write_flow_events(writer, scanner.flows, writer.alerted_flows, result)
    writer.write_event(stats_event(result))
    return result


def write_flow_events(writer: EveWriter, flows: FlowTable, alerted_flows, result: ScanResult) -> None:
    """End of capture: one EVE flow event per flow (reason "shutdown": flow timeouts come
    later), and the flow counts by state for the stats event."""
    states = flow_states(flows)
    alerted = np.zeros(flows.n_flows, dtype=bool)
    alerted[list(alerted_flows)] = True
    writer.write_flows(flows, states, alerted)
    counts = np.bincount(states, minlength=len(FLOW_STATES))
    result.flow_states = {name: int(counts[i]) for i, name in enumerate(FLOW_STATES)}


def flows_only(
    pcaps: list[str], eve: TextIO, reader: str = "native", batch_size: int = DEFAULT_BATCH_SIZE
) -> ScanResult:
    """`dpi flows`: decode and flow tracking only; writes flow events and a stats event."""
    tracker = FlowTracker()
    result = ScanResult()
    for batch in batches_of(pcaps, reader, batch_size, result.capture_errors):
        tracker.track(batch, tracker.decode(batch))
    fill_capture_counts(result, tracker)
    writer = EveWriter(eve)
    write_flow_events(writer, tracker.table, (), result)
    writer.write_event(stats_event(result))
    return result


def stats_event(result: ScanResult) -> dict:
    decode = {name: count for name, count in result.decode.items() if count}
    ts = result.last_ts if result.last_ts is not None else time.time_ns()
    return {
        "timestamp": format_timestamp(ts),
        "event_type": "stats",
        "stats": {
            "capture": {
                "packets": result.packets,
                "bytes": result.bytes,
                "errors": [str(e) for e in result.capture_errors],
            },
            "decoder": {"pkts": result.packets, "bytes": result.bytes, "status": decode},
            "flow": {"total": result.flows, **result.flow_states, "not_tracked": result.not_tracked},
            "tcp": result.stream,
            "detect": {"alert": result.alerts, **result.detect, **result.rules},
        },
    }
