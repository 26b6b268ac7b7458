"""`dpi streams`: the reassembled bytes of every TCP direction, one file each, named as
tcpflow names them, with an ``index.json`` of what each file holds and where its holes are.
A later flow on the same tuple (after a timeout or an eviction) gets its own files, with
tcpflow's connection suffix (``c1``, ``c2``, ...).

Per batch, a Numba kernel gathers the chunks of each direction into one contiguous run, so
Python writes once per direction and batch, never once per packet.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numba as nb
import numpy as np

from dpi.capture import DEFAULT_BATCH_SIZE, CaptureError, batches_of
from dpi.flow.table import FlowTable, endpoints
from dpi.flow.tracking import tracker_for
from dpi.hostos import stream_policy_map
from dpi.output.eve import endpoint_fields, format_timestamp
from dpi.settings import Settings
from dpi.stream import SRC_CAPTURE, ChunkTable, StreamConfig, TcpReassembler


def endpoint_name(hi: int, lo: int, ip_version: int, port: int) -> str:
    """tcpflow's spelling of an endpoint: zero-padded IPv4 octets (IPv6 in its compressed
    text form) and a five-digit port, e.g. ``192.168.001.002.00080``."""
    value = (int(hi) << 64) | int(lo)
    if ip_version == 4:
        text = ".".join(f"{int(o):03d}" for o in str(ipaddress.IPv4Address(value & 0xFFFFFFFF)).split("."))
    else:
        text = str(ipaddress.IPv6Address(value))
    return f"{text}.{int(port):05d}"


@nb.njit(cache=True)
def gather_chunks(buf, side, src, offset, length, order, out):
    """Copy the chunks, in ``order``, one after another into ``out``."""
    at = 0
    for k in range(order.shape[0]):
        c = order[k]
        ln = length[c]
        data = buf if src[c] == SRC_CAPTURE else side
        out[at : at + ln] = data[offset[c] : offset[c] + ln]
        at += ln
    return at


@dataclass
class StreamFile:
    file: str
    flow_id: int
    src_ip: str
    src_port: int
    dest_ip: str
    dest_port: int
    direction: str
    first_timestamp: str
    bytes: int = 0
    next_pos: int = 0  # stream position just past the last byte written
    gaps: list[dict] = field(default_factory=list)
    # segments that overlapped held data: where, how many bytes, and whether they differed
    # (the policy chose whose bytes the file holds)
    overlaps: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "next_pos"}
        d["gap_bytes"] = sum(g["length"] for g in self.gaps)
        return d


class StreamWriter:
    def __init__(self, out_dir: Path, flows: FlowTable):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.flows = flows
        self.files: dict[str, StreamFile] = {}  # every direction written, by file name
        self.open: dict[tuple[int, int], StreamFile] = {}  # (flow slot, direction) of live flows

    def end_flows(self, flows: np.ndarray) -> None:
        """These flows ended (their held data already written): their slots will hold
        other flows, whose bytes go to files of their own."""
        for f in np.asarray(flows).tolist():
            self.open.pop((f, 0), None)
            self.open.pop((f, 1), None)

    def _unique_name(self, name: str) -> str:
        k, unique = 0, name
        while unique in self.files:
            k += 1
            unique = f"{name}c{k}"
        return unique

    def _describe(self, f: int, d: int, ts_ns: int) -> StreamFile:
        fl = self.flows
        flow, direction = np.array([f]), np.array([d])
        s_hi, s_lo, sp, d_hi, d_lo, dp = (int(c[0]) for c in endpoints(fl, flow, direction))
        ver = int(fl.ip_version[f])
        ends = endpoint_fields(fl, flow, direction)[0]
        return StreamFile(
            file=self._unique_name(
                f"{endpoint_name(s_hi, s_lo, ver, sp)}-{endpoint_name(d_hi, d_lo, ver, dp)}"
            ),
            flow_id=int(fl.flow_id[f]),
            src_ip=ends["src_ip"],
            src_port=sp,
            dest_ip=ends["dest_ip"],
            dest_port=dp,
            direction="to_server" if d == 0 else "to_client",
            first_timestamp=format_timestamp(ts_ns),
        )

    def _file(self, f: int, d: int, ts_ns: int) -> StreamFile:
        sf = self.open.get((f, d))
        if sf is None:
            sf = self.open[(f, d)] = self._describe(f, d, ts_ns)
            self.files[sf.file] = sf
            (self.out_dir / sf.file).write_bytes(b"")
        return sf

    def add_overlaps(self, events) -> None:
        """The overlap events of a batch (TcpReassembler.events), into each file's entry."""
        for f, d, pos, ln, diff, ts in zip(
            events.flow.tolist(),
            events.direction.tolist(),
            events.stream_pos.tolist(),
            events.length.tolist(),
            events.different.tolist(),
            events.ts_ns.tolist(),
            strict=True,
        ):
            self._file(f, d, ts).overlaps.append({"offset": pos, "length": ln, "different_data": bool(diff)})

    def write(self, buf: np.ndarray, chunks: ChunkTable) -> None:
        tcp = chunks.stream >= 0  # datagrams are no streams
        idx = np.nonzero(tcp)[0]
        if len(idx) == 0:
            return
        key = chunks.flow[idx] * 2 + chunks.direction[idx]
        order = idx[np.argsort(key, kind="stable")]  # stream order is kept within a direction
        out = np.empty(int(chunks.length[order].sum()), np.uint8)
        gather_chunks(buf, chunks.side, chunks.src, chunks.offset, chunks.length, order, out)
        key = key[np.argsort(key, kind="stable")]
        starts = np.r_[0, np.nonzero(np.diff(key))[0] + 1]
        ends = np.r_[starts[1:], len(key)]
        length = chunks.length[order]
        pos = chunks.stream_pos[order]
        byte_ends = np.cumsum(length)
        byte_starts = byte_ends - length
        # holes inside this batch: a chunk starting past the end of the one before it
        prev_end = np.r_[-1, (pos + length)[:-1]]
        inner_gap = pos > prev_end
        inner_gap[starts] = False
        gap_rows = np.nonzero(inner_gap)[0]
        gap_group = np.searchsorted(starts, gap_rows, side="right") - 1
        gaps_by_group: dict[int, list[dict]] = {}
        for g, at, ln in zip(
            gap_group.tolist(), prev_end[gap_rows].tolist(), (pos - prev_end)[gap_rows].tolist(), strict=True
        ):
            gaps_by_group.setdefault(g, []).append({"offset": at, "length": ln})
        for g, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            f, d = divmod(int(key[s]), 2)
            first = int(pos[s])
            sf = self._file(f, d, int(chunks.ts_ns[order[s]]))
            if first > sf.next_pos:  # a hole between the last batch and this one
                sf.gaps.append({"offset": sf.next_pos, "length": first - sf.next_pos})
            sf.gaps.extend(gaps_by_group.get(g, ()))
            data = out[int(byte_starts[s]) : int(byte_ends[e - 1])]
            with open(self.out_dir / sf.file, "ab") as fh:
                fh.write(data.tobytes())
            sf.bytes += len(data)
            sf.next_pos = int(pos[e - 1] + length[e - 1])

    def write_index(self, extra: dict) -> Path:
        path = self.out_dir / "index.json"
        doc = {"streams": [sf.to_dict() for sf in sorted(self.files.values(), key=lambda x: x.file)], **extra}
        path.write_text(json.dumps(doc, indent=2))
        return path


def write_streams(
    pcaps: list[str],
    out_dir: str,
    reader: str = "native",
    batch_size: int = DEFAULT_BATCH_SIZE,
    config: StreamConfig | None = None,
    settings: Settings | None = None,
    max_flows: int | None = None,
) -> tuple[StreamWriter, list[CaptureError]]:
    """Reassemble every TCP direction of the captures into files under ``out_dir``. A
    flow's files are complete when it ends (timeout, eviction, end of capture), before
    its slot holds another flow. ``config`` is a shorthand that replaces ``settings.stream``.
    Sessions picked up without their handshake are reassembled unless stream.midstream
    says otherwise (tcpflow writes them too; `dpi scan` follows Suricata's default, off)."""
    settings = settings or Settings()
    stream_config = replace(config if config is not None else settings.stream)
    if stream_config.midstream is None:
        stream_config.midstream = True
    streams = TcpReassembler(stream_config)
    writer: StreamWriter
    empty = np.zeros(0, np.uint8)

    def end_flows(ended: np.ndarray, states: np.ndarray, reasons: np.ndarray) -> None:
        writer.write(empty, streams.flush_flows(ended))
        streams.recycle(streams.retired)
        writer.end_flows(ended)

    tracker = tracker_for(replace(settings, stream=stream_config), max_flows=max_flows, on_end=end_flows)
    policy_of = stream_policy_map(settings) if settings.host_os_policy else None
    flows = tracker.table
    writer = StreamWriter(Path(out_dir), flows)
    errors: list[CaptureError] = []
    for batch in batches_of(pcaps, reader, batch_size, errors):
        for packets, decoded, eligible, flow, direction, _ in tracker.stages(batch):
            streams.reserve(flows.capacity)
            policy = policy_of.lookup(decoded.dst_hi, decoded.dst_lo) if policy_of is not None else None
            chunks = streams.process(
                packets.buffer, eligible, decoded, packets.ts_ns, packets.number, flow, direction, policy
            )
            writer.add_overlaps(streams.events)
            writer.write(packets.buffer, chunks)
            streams.recycle(streams.retired)
        tracker.end_idle()
    tracker.end_all()
    writer.write_index(
        {
            "tcp": streams.stats(),
            "flow": tracker.flow_counts(),
            "defrag": tracker.defrag.stats(),
            "capture_errors": [str(e) for e in errors],
        }
    )
    return writer, errors
