"""``dpi eval``: detection accuracy of an EVE alert log against a generator's label file.

Scoring is per (flow, rule): a labelled expectation that some alert of that rule on that flow
meets is a true positive; an expectation no alert meets is missed (a false negative); an
alert's (flow, rule) that no label expects is spurious (a false positive), counted once however
many alerts repeat it. Flows are matched by protocol and their two endpoints, in either order,
as EVE writes them (Suricata's and ours alike). Precision, recall and F1 are given overall, per
sid and per evasion chain; where a ratio has no denominator it is null.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from dpi.gen.labels import Labels, read_labels
from dpi.hostos import DEFRAG_POLICY_OF_HOST_OS, STREAM_POLICY_OF_HOST_OS
from dpi.jsonlines import read_json_lines


class EveError(ValueError):
    """An EVE file that cannot be read: names the file and the line."""


def _address(text: str) -> str:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def flow_key(proto, src_ip, src_port, dest_ip, dest_port) -> tuple:
    a = (_address(str(src_ip)), int(src_port or 0))
    b = (_address(str(dest_ip)), int(dest_port or 0))
    return (str(proto).upper(), min(a, b), max(a, b))


def read_alerts(path: str | Path) -> tuple[list[dict], int]:
    """The alert events of an EVE JSON file and the number of lines read."""
    alerts = []
    lines = 0
    for number, event in read_json_lines(path, EveError):
        lines = number
        if not isinstance(event, dict) or event.get("event_type") != "alert":
            continue
        alert = event.get("alert")
        if not isinstance(alert, dict) or "signature_id" not in alert:
            raise EveError(f"{path}:{number}: alert event without alert.signature_id")
        alerts.append(event)
    return alerts, lines


def visible_to(expect: dict, stream_policy: str, defrag_policy: str) -> bool:
    """Can an engine reassembling with these policies see the expectation's content at all?"""
    keeps = expect.get("keeps_real")
    if keeps is None:
        seen = expect.get("seen_by", {})
        return stream_policy in seen.get("stream", [stream_policy]) and defrag_policy in seen.get(
            "defrag", [defrag_policy]
        )
    stream_real = stream_policy in keeps.get("stream", [stream_policy])
    defrag_real = defrag_policy in keeps.get("defrag", [defrag_policy])
    decoys = expect.get("visible_with_decoys", {})
    if stream_real and defrag_real:
        return True
    if defrag_real:
        return bool(decoys.get("stream_decoy", True))
    if stream_real:
        return bool(decoys.get("defrag_decoy", True))
    return bool(decoys.get("both_decoy", True))


def _ratios(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if precision == 0 or recall == 0 else None)
    )
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


@dataclass
class Evaluation:
    report: dict

    def to_json(self) -> str:
        return json.dumps(self.report, indent=2)


def evaluate(labels: Labels, alerts: list[dict], ids_policy: str | None = None) -> Evaluation:
    """Score the alerts against the labels. ``ids_policy`` (a host-os-policy name; default the
    label file's target) is the policy the scanner reassembled with: each group then also says how
    many expectations that policy could see at all."""
    capture = labels.capture
    target = capture.get("target_policy", {})
    ids_policy = ids_policy or target.get("host_os", "bsd")
    stream_policy = STREAM_POLICY_OF_HOST_OS[ids_policy]
    defrag_policy = DEFRAG_POLICY_OF_HOST_OS[ids_policy]

    by_key = {}
    for flow in labels.flows:
        by_key[
            flow_key(flow["proto"], flow["src_ip"], flow["src_port"], flow["dest_ip"], flow["dest_port"])
        ] = flow
    flows = {flow["flow"]: flow for flow in labels.flows}

    def group(flow) -> str:
        return "+".join(flow.get("evasions") or ()) or "none"

    expected = {}
    for flow, exp in labels.expectations:
        expected[(flow["flow"], exp.get("gid", 1), exp["sid"])] = exp
    alerted: dict[tuple, dict] = {}
    unknown_flows = 0
    for event in alerts:
        a = event["alert"]
        key = flow_key(
            event.get("proto", ""),
            event.get("src_ip", ""),
            event.get("src_port"),
            event.get("dest_ip", ""),
            event.get("dest_port"),
        )
        flow = by_key.get(key)
        ident = flow["flow"] if flow is not None else key
        if flow is None:
            unknown_flows += 1
        alerted.setdefault((ident, a.get("gid", 1), a["signature_id"]), {"event": event, "flow": flow})

    # (flow, sid) pairs whose verdict the generator could not decide are left out of the scores
    undecided = {(flow["flow"], sid) for flow in labels.flows for sid in flow.get("undecided", ())}
    tp = [k for k in expected if k in alerted]
    fn = [k for k in expected if k not in alerted]
    fp = [k for k in alerted if k not in expected and (k[0], k[2]) not in undecided]
    not_scored = sum(1 for k in alerted if k not in expected and (k[0], k[2]) in undecided)

    per_sid: dict[int, Counter] = defaultdict(Counter)
    per_group: dict[str, Counter] = defaultdict(Counter)
    msgs: dict[int, str] = {}
    for k in tp:
        per_sid[k[2]]["tp"] += 1
        per_group[group(flows[k[0]])]["tp"] += 1
    for k in fn:
        per_sid[k[2]]["fn"] += 1
        per_group[group(flows[k[0]])]["fn"] += 1
    for k in fp:
        per_sid[k[2]]["fp"] += 1
        flow = alerted[k]["flow"]
        per_group[group(flow) if flow is not None else "unlabelled-flow"]["fp"] += 1
        msgs.setdefault(k[2], alerted[k]["event"]["alert"].get("signature", ""))
    for (f, _, sid), exp in expected.items():
        msgs[sid] = exp.get("msg", msgs.get(sid, ""))
        visible = visible_to(exp, stream_policy, defrag_policy)
        per_group[group(flows[f])]["visible"] += int(visible)
        per_group[group(flows[f])]["expected"] += 1

    def flow_view(flow, fallback_key=None) -> dict:
        if flow is None:
            proto, a, b = fallback_key
            return {"flow": None, "proto": proto, "endpoints": [f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"]}
        return {
            "flow": flow["flow"],
            "proto": flow["proto"],
            "src_ip": flow["src_ip"],
            "src_port": flow["src_port"],
            "dest_ip": flow["dest_ip"],
            "dest_port": flow["dest_port"],
            "app": flow.get("app"),
            "evasions": flow.get("evasions", []),
        }

    missed = [
        {
            **flow_view(flows[k[0]]),
            "gid": k[1],
            "sid": k[2],
            "msg": expected[k].get("msg", ""),
            "seen_by": expected[k].get("seen_by"),
        }
        for k in sorted(fn, key=lambda k: (k[2], k[0]))
    ]
    spurious = [
        {
            **flow_view(alerted[k]["flow"], k[0] if alerted[k]["flow"] is None else None),
            "gid": k[1],
            "sid": k[2],
            "msg": msgs.get(k[2], ""),
        }
        for k in sorted(fp, key=lambda k: (k[2], str(k[0])))
    ]

    total_payload = sum(flow.get("payload_bytes", 0) for flow in labels.flows)
    plaintext = sum(flow.get("plaintext_bytes", 0) for flow in labels.flows)
    by_app: dict[str, Counter] = defaultdict(Counter)
    for flow in labels.flows:
        c = by_app[flow.get("app", "?")]
        c["flows"] += 1
        c["payload_bytes"] += flow.get("payload_bytes", 0)
        c["plaintext_bytes"] += flow.get("plaintext_bytes", 0)

    overall = _ratios(len(tp), len(fp), len(fn))
    report = {
        **{k: overall[k] for k in ("precision", "recall", "f1")},
        "counts": {k: overall[k] for k in ("tp", "fp", "fn")},
        "expected": len(expected),
        "alerts": len(alerts),
        "alerts_on_unlabelled_flows": unknown_flows,
        "undecided_pairs": len(undecided),
        "alerted_undecided_pairs": not_scored,
        "ids_policy": {"host_os": ids_policy, "stream": stream_policy, "defrag": defrag_policy},
        "target_policy": target,
        "per_sid": {
            str(sid): {**_ratios(c["tp"], c["fp"], c["fn"]), "msg": msgs.get(sid, "")}
            for sid, c in sorted(per_sid.items())
        },
        "per_evasion": {
            name: {
                **_ratios(c["tp"], c["fp"], c["fn"]),
                "expected": c["expected"],
                "visible_to_ids_policy": c["visible"],
            }
            for name, c in sorted(per_group.items())
        },
        "missed": missed,
        "spurious": spurious,
        "inspectable": {
            "payload_bytes": total_payload,
            "plaintext_bytes": plaintext,
            "encrypted_bytes": total_payload - plaintext,
            "plaintext_share": plaintext / total_payload if total_payload else None,
            "by_app": {app: dict(c) for app, c in sorted(by_app.items())},
        },
        "capture": {
            k: capture.get(k) for k in ("seed", "flows", "packets", "evasions", "tls_share", "rules")
        },
    }
    return Evaluation(report)


def evaluate_files(labels_path, eve_path, ids_policy: str | None = None) -> Evaluation:
    alerts, _ = read_alerts(eve_path)
    return evaluate(read_labels(labels_path), alerts, ids_policy)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_report(report: dict, limit: int = 20) -> str:
    """The report as text for a person: overall, per evasion, per sid, then the missed and spurious flows."""
    lines = []
    c = report["counts"]
    lines.append(
        f"overall: precision {_fmt(report['precision'])}  recall {_fmt(report['recall'])}  "
        f"F1 {_fmt(report['f1'])}  (tp {c['tp']}, fp {c['fp']}, fn {c['fn']}; "
        f"{report['expected']} expected, {report['alerts']} alerts)"
    )
    ins = report["inspectable"]
    share = ins["plaintext_share"]
    lines.append(
        f"inspectable: {ins['plaintext_bytes']:,} of {ins['payload_bytes']:,} payload bytes are plaintext"
        f" ({'-' if share is None else f'{100 * share:.1f}%'}); {ins['encrypted_bytes']:,} encrypted"
    )
    pol = report["ids_policy"]
    lines.append(f"\nper evasion (IDS policy: stream {pol['stream']}, defrag {pol['defrag']})")
    lines.append(
        f"  {'evasions':<34} {'precision':>9} {'recall':>7} {'F1':>6} "
        f"{'tp':>5} {'fp':>5} {'fn':>5} {'visible':>8}"
    )
    for name, g in report["per_evasion"].items():
        lines.append(
            f"  {name:<34} {_fmt(g['precision']):>9} {_fmt(g['recall']):>7} {_fmt(g['f1']):>6} "
            f"{g['tp']:>5} {g['fp']:>5} {g['fn']:>5} {g['visible_to_ids_policy']:>4}/{g['expected']:<3}"
        )
    lines.append("\nper sid")
    lines.append(f"  {'sid':>10} {'precision':>9} {'recall':>7} {'F1':>6} {'tp':>5} {'fp':>5} {'fn':>5}  msg")
    for sid, s in report["per_sid"].items():
        lines.append(
            f"  {sid:>10} {_fmt(s['precision']):>9} {_fmt(s['recall']):>7} {_fmt(s['f1']):>6} "
            f"{s['tp']:>5} {s['fp']:>5} {s['fn']:>5}  {s['msg'][:60]}"
        )
    for title, rows in (("missed", report["missed"]), ("spurious", report["spurious"])):
        lines.append(f"\n{title}: {len(rows)}")
        for row in rows[:limit]:
            where = (
                f"{row['src_ip']}:{row['src_port']} -> {row['dest_ip']}:{row['dest_port']}"
                if row.get("flow") is not None
                else " <-> ".join(row["endpoints"])
            )
            lines.append(
                f"  sid {row['sid']} flow {row.get('flow')} {row['proto']} {where} "
                f"{'+'.join(row.get('evasions') or []) or ''}".rstrip()
            )
        if len(rows) > limit:
            lines.append(f"  ... {len(rows) - limit} more (--json lists them all)")
    return "\n".join(lines)


__all__ = ["EveError", "Evaluation", "evaluate", "evaluate_files", "flow_key", "format_report", "read_alerts"]
