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
from dpi.decode.kernel import decode_outer
from dpi.detect.compile import DetectionDatabase, compile_rules
from dpi.detect.engine import AlertBatch, Detector
from dpi.detect.threshold import ThresholdFilter
from dpi.flow.table import FLOW_STATES
from dpi.flow.tracking import FlowTracker, tracker_for
from dpi.hostos import stream_policy_map
from dpi.output.anomaly import write_overlap_anomalies
from dpi.output.eve import EveWriter, format_timestamp, tunnel_objects
from dpi.rules import RuleSet, load_rules
from dpi.settings import Settings
from dpi.stream.tcp import StreamConfig, TcpReassembler


@dataclass
class ScanResult:
    packets: int = 0
    bytes: int = 0
    alerts: int = 0
    flows: int = 0  # flows created
    decode: dict[str, int] = field(default_factory=dict)
    not_tracked: dict[str, int] = field(default_factory=dict)
    stream: dict[str, int] = field(default_factory=dict)
    detect: dict[str, int] = field(default_factory=dict)
    flow_states: dict[str, int] = field(default_factory=dict)  # flows by state at their end
    flow: dict = field(default_factory=dict)  # FlowTracker.flow_counts(): end reasons, evictions, ...
    defrag: dict[str, int] = field(default_factory=dict)
    anomalies: int = 0
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
    result.flow = tracker.flow_counts()
    result.flows = result.flow["total"]
    result.flow_states = {name: result.flow[name] for name in FLOW_STATES}
    result.decode = tracker.decode_counts()
    result.not_tracked = dict(tracker.not_tracked)
    result.defrag = tracker.defrag.stats()


class _Discard:
    def write(self, text: str) -> int:
        return len(text)


class Scanner:
    """Holds the state that lives across batches and files: flows, streams, detection.

    Alerts and flow events go to ``writer`` as they happen: a flow's events must be
    written before its slot holds another flow. Without a writer they are discarded."""

    def __init__(
        self,
        db: DetectionDatabase,
        rules_summary: dict | None = None,
        settings: Settings | None = None,
        max_flows: int | None = None,
        writer: EveWriter | None = None,
        flow_events: bool = True,
    ):
        self.db = db
        self.settings = settings or Settings()
        self.writer = writer if writer is not None else EveWriter(_Discard())
        self.flow_events = flow_events
        self.tracker = tracker_for(self.settings, max_flows=max_flows, on_end=self._end_flows)
        self.flows = self.tracker.table
        self.streams = TcpReassembler(self.settings.stream)
        # the overlap policy of each packet's receiving host, when host-os-policy names any
        self.stream_policy = stream_policy_map(self.settings) if self.settings.host_os_policy else None
        self.detector = Detector(db)
        self.thresholds = ThresholdFilter(db.rules)
        self.result = ScanResult(rules=rules_summary or {})
        self.timings: Counter[str] = Counter()

    def _tick(self, stage: str, t0: float) -> float:
        t1 = time.perf_counter()
        self.timings[stage] += t1 - t0
        return t1

    def process_batch(self, batch) -> AlertBatch:
        """One batch through every stage (and then the datagrams its fragments completed);
        writes its alerts, then ends the flows idle past their timeouts. Returns the
        batch's alerts (already written)."""
        parts = []
        t = time.perf_counter()
        # flows evicted to make room for a batch are finalized inside the tracker
        for packets, decoded, eligible, flow, direction, established in self.tracker.stages(batch):
            t = self._tick("decode+flow", t)
            parts.append(self._inspect(packets, decoded, eligible, flow, direction, established))
            t = time.perf_counter()
        self.tracker.end_idle()
        self._tick("flow-end", t)
        return parts[0] if len(parts) == 1 else AlertBatch.concat(parts)

    def _inspect(self, packets, decoded, eligible, flow, direction, established) -> AlertBatch:
        t = time.perf_counter()
        self.streams.reserve(self.flows.capacity)
        policy = None
        if self.stream_policy is not None:
            policy = self.stream_policy.lookup(decoded.dst_hi, decoded.dst_lo)
        buf = packets.buffer
        chunks = self.streams.process(
            buf, eligible, decoded, packets.ts_ns, packets.number, flow, direction, policy
        )
        retired = self.streams.retired
        if len(self.streams.events):
            self.result.anomalies += write_overlap_anomalies(self.writer.fh, self.streams.events, self.flows)
        t = self._tick("stream", t)
        stream_alerts = self.detector.detect_chunks(
            buf, chunks, self.streams.next_slot, self.flows, established, decoded
        )
        self._recycle(retired)
        t = self._tick("match+detect", t)
        header = self.detector.detect_headers(
            eligible, flow, direction, established, decoded, self.flows, buf
        )
        alerts = self.detector.finish_batch(
            stream_alerts, header, packets.ts_ns, packets.number, flow, direction
        )
        alerts = self.detector.cap_per_packet(self.thresholds.filter(alerts, self.flows))
        t = self._tick("detect-headers", t)
        rows = self._alert_rows(alerts, packets)
        payloads = self._payloads(alerts, rows, packets, decoded) if self.writer.log_payload else None
        icmp = self._icmp_fields(alerts, rows, decoded)
        tunnels = self._tunnel_fields(alerts, rows, packets, decoded)
        self.writer.write_alerts(alerts, self.db.rules, self.flows, payloads, icmp, tunnels)
        self._tick("output", t)
        return alerts

    @staticmethod
    def _alert_rows(alerts, packets) -> tuple[np.ndarray, np.ndarray]:
        """Each alert's row among this batch's packets, and whether its packet is one of them
        (data flushed at the end of a flow has no packet)."""
        number = np.asarray(packets.number)
        if len(number) == 0:
            return np.zeros(len(alerts), np.int64), np.zeros(len(alerts), bool)
        at = np.minimum(np.searchsorted(number, alerts.number), len(number) - 1)
        return at, number[at] == alerts.number

    @staticmethod
    def _payloads(alerts, rows, packets, decoded) -> list[bytes | None]:
        """Each alert's packet payload, where its packet is in this batch (rows: _alert_rows)."""
        at, here = rows
        start = decoded.payload_offset[at].tolist()
        end = (decoded.payload_offset[at] + decoded.payload_len[at]).tolist()
        buf = packets.buffer
        return [bytes(buf[start[k] : end[k]]) if ok else None for k, ok in enumerate(here.tolist())]

    @staticmethod
    def _icmp_fields(alerts, rows, decoded) -> list[tuple[int, int] | None] | None:
        """Each alert's (icmp_type, icmp_code) where its packet is an ICMP or ICMPv6 packet of this
        batch, as Suricata writes them in the alert; None when no alert has one."""
        if len(alerts) == 0:
            return None
        at, here = rows
        icmp = here & np.isin(decoded.proto[at], (1, 58)) & (decoded.l4_offset[at] >= 0)
        if not icmp.any():
            return None
        kinds = decoded.icmp_type[at].tolist()
        codes = decoded.icmp_code[at].tolist()
        return [(kinds[k], codes[k]) if ok else None for k, ok in enumerate(icmp.tolist())]

    @staticmethod
    def _tunnel_fields(alerts, rows, packets, decoded) -> list[dict | None] | None:
        """Each alert's EVE ``tunnel`` object where its packet came out of a tunnel, as Suricata
        writes it: the outermost packet's addresses, ports and protocol, and the depth."""
        if len(alerts) == 0 or not decoded.tunnel_depth.any():
            return None
        at, here = rows
        tunnelled = here & (decoded.tunnel_depth[at] > 0)
        if not tunnelled.any():
            return None
        packet_rows = at[tunnelled]
        outer = decode_outer(packets, decoded, packet_rows)
        objects = tunnel_objects(outer, decoded.tunnel_depth[packet_rows], alerts.number[tunnelled])
        out: list[dict | None] = [None] * len(alerts)
        for k, obj in zip(np.flatnonzero(tunnelled).tolist(), objects, strict=True):
            out[k] = obj
        return out

    def _end_flows(self, flows: np.ndarray, states: np.ndarray, reasons: np.ndarray) -> None:
        """Finalize ended flows before their slots are reused: deliver the stream data
        they still hold and detect on it, write their flow events, forget their alerts."""
        chunks = self.streams.flush_flows(flows)
        retired = self.streams.retired
        if len(chunks):
            empty = np.zeros(0, np.uint8)
            alerts = self.detector.detect_chunks(empty, chunks, self.streams.next_slot, self.flows, empty)
            alerts = self.detector.finish_batch(alerts, None, None, None, None, None)
            alerts = self.detector.cap_per_packet(self.thresholds.filter(alerts, self.flows))
            self.writer.write_alerts(alerts, self.db.rules, self.flows)
        self._recycle(retired)
        self.detector.forget_flows(flows)
        if self.flow_events:
            self.writer.write_flows(self.flows, flows, states, reasons)
        self.writer.forget_flows(flows)

    def _recycle(self, slots: np.ndarray) -> None:
        """Streams that ended or skipped a hole, their last chunks inspected: their matcher
        slots go back for reuse."""
        if len(slots):
            self.detector.forget_streams(slots)
            self.streams.recycle(slots)

    def flush(self) -> None:
        """End of input: every remaining flow ends ("shutdown"), with its held data."""
        t = time.perf_counter()
        self.tracker.end_all()
        self._tick("flow-end", t)

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
            "threshold_suppressed": self.thresholds.suppressed,
            "payload_programs_run": int(self.detector.payload_counters[0]),
            "payload_steps": int(self.detector.payload_counters[1]),
            # verifications stopped by the step budget (pcre on hostile data and the like)
            "payload_aborted": int(self.detector.payload_counters[2]),
            "flowbits_unmet": int(self.detector.state_counters[0]),
            "alerts_after_pass": int(self.detector.state_counters[1]),
            "noalert_matches": int(self.detector.state_counters[2]),
            "passed_flow_matches": int(self.detector.state_counters[3]),
        }
        res.alerts = self.writer.alerts
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
    max_flows: int | None = None,
    log_payload: bool = False,
) -> ScanResult:
    """Scan captures with rule files; writes EVE alerts, a flow event per flow when it ends
    (timeout, eviction, end of capture) and a closing stats event. ``stream_config`` is a
    shorthand that replaces ``settings.stream``; ``max_flows`` caps the flow table below
    what flow.memcap allows; ``log_payload`` writes each alert's packet payload (Suricata's
    payload and payload-printable; off by default: data minimisation)."""
    t0 = time.perf_counter()
    ruleset, db = build_detection(rule_paths, variables, engine)
    compile_s = time.perf_counter() - t0
    settings = settings or Settings()
    if stream_config is not None:
        settings.stream = stream_config
    writer = EveWriter(eve, log_payload=log_payload)
    scanner = Scanner(
        db,
        rules_summary(ruleset, db),
        settings=settings,
        max_flows=max_flows,
        writer=writer,
        flow_events=flow_events,
    )
    for batch in batches_of(pcaps, reader, batch_size, scanner.result.capture_errors):
        scanner.process_batch(batch)
    scanner.flush()
    result = scanner.finish()
    result.timings["rules_compile"] = compile_s
    writer.write_event(stats_event(result))
    return result


def flows_only(
    pcaps: list[str],
    eve: TextIO,
    reader: str = "native",
    batch_size: int = DEFAULT_BATCH_SIZE,
    settings: Settings | None = None,
    max_flows: int | None = None,
) -> ScanResult:
    """`dpi flows`: decode and flow tracking only; writes a flow event per flow when it
    ends, and a stats event."""
    settings = settings or Settings()
    writer = EveWriter(eve)
    tracker: FlowTracker

    def end_flows(flows: np.ndarray, states: np.ndarray, reasons: np.ndarray) -> None:
        writer.write_flows(tracker.table, flows, states, reasons)

    tracker = tracker_for(settings, max_flows=max_flows, on_end=end_flows)
    result = ScanResult()
    for batch in batches_of(pcaps, reader, batch_size, result.capture_errors):
        for _ in tracker.stages(batch):
            pass  # each stage's flows are tracked as the generator runs
        tracker.end_idle()
    tracker.end_all()
    fill_capture_counts(result, tracker)
    writer.write_event(stats_event(result))
    return result


def stats_event(result: ScanResult, capture: dict | None = None) -> dict:
    """The closing EVE stats event; ``capture`` adds fields to ``stats.capture`` (a live
    capture's interface and kernel counters)."""
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
                **(capture or {}),
            },
            "decoder": {"pkts": result.packets, "bytes": result.bytes, "status": decode},
            "flow": {**result.flow, "not_tracked": result.not_tracked},
            "tcp": result.stream,
            "defrag": result.defrag,
            "anomaly": {"stream.reassembly_overlap_different_data": result.anomalies},
            "detect": {"alert": result.alerts, **result.detect, **result.rules},
        },
    }
