"""EVE ``anomaly`` events, as Suricata's anomaly logger writes them: here the stream
engine's overlap events (``stream.reassembly_overlap_different_data``)."""

from __future__ import annotations

import json

import numpy as np

from dpi.output.eve import endpoint_fields, format_timestamp

OVERLAP_DIFFERENT_DATA = "stream.reassembly_overlap_different_data"


def overlap_anomalies(events, flows) -> list[dict]:
    """One anomaly event per segment whose overlap with held data carried different bytes
    (overlaps with identical bytes are only counted, as Suricata does)."""
    sel = np.nonzero(events.different)[0]
    if len(sel) == 0:
        return []
    flow = events.flow[sel]
    direction = events.direction[sel]
    ends = endpoint_fields(flows, flow, direction)
    flow_ids = flows.flow_id[flow].tolist()
    out = []
    for k, (ts, num, d, pos, length) in enumerate(
        zip(
            events.ts_ns[sel].tolist(),
            events.number[sel].tolist(),
            direction.tolist(),
            events.stream_pos[sel].tolist(),
            events.length[sel].tolist(),
            strict=True,
        )
    ):
        out.append(
            {
                "timestamp": format_timestamp(ts),
                "flow_id": flow_ids[k],
                "pcap_cnt": num,
                "event_type": "anomaly",
                **ends[k],
                "direction": "to_server" if d == 0 else "to_client",
                # dpi's extra fields say where in the stream and how many bytes conflicted
                "anomaly": {
                    "type": "stream",
                    "event": OVERLAP_DIFFERENT_DATA,
                    "stream_offset": pos,
                    "overlap_bytes": length,
                },
            }
        )
    return out


def write_overlap_anomalies(fh, events, flows) -> int:
    lines = [json.dumps(e, separators=(",", ":")) for e in overlap_anomalies(events, flows)]
    if lines:
        fh.write("\n".join(lines) + "\n")
    return len(lines)
