"""The ground-truth label file of a generated capture: JSON Lines, a ``capture`` record first, then
one ``flow`` record per flow.

A flow record names the flow as EVE does (proto, src_ip/src_port for the client, dest_ip/dest_port
for the server), its protocol, its payload and plaintext bytes, the evasions applied to it, and
``expect``: the sids that should fire on it, each with the TCP and defrag overlap policies that
still reassemble the planted bytes (``seen_by``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dpi.jsonlines import read_json_lines

FORMAT = "dpi-gen-labels"
VERSION = 1


class LabelError(ValueError):
    """A label file that cannot be read: names the file and the line."""


@dataclass
class Labels:
    capture: dict
    flows: list[dict] = field(default_factory=list)

    @property
    def expectations(self) -> Iterable[tuple[dict, dict]]:
        for flow in self.flows:
            for expect in flow.get("expect", ()):
                yield flow, expect


def write_labels(labels: Labels, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(
            json.dumps({"type": "capture", "format": FORMAT, "version": VERSION, **labels.capture}) + "\n"
        )
        for flow in labels.flows:
            fh.write(json.dumps({"type": "flow", **flow}, separators=(",", ":")) + "\n")


_FLOW_KEYS = ("flow", "proto", "src_ip", "src_port", "dest_ip", "dest_port", "expect")


def read_labels(path: str | Path) -> Labels:
    capture = None
    flows = []
    for number, record in read_json_lines(path, LabelError):
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "capture":
            if record.get("format") != FORMAT:
                raise LabelError(f"{path}:{number}: not a {FORMAT} file (format {record.get('format')!r})")
            record.pop("type")
            capture = record
        elif kind == "flow":
            missing = [k for k in _FLOW_KEYS if k not in record]
            if missing:
                raise LabelError(f"{path}:{number}: flow record without {', '.join(missing)}")
            record.pop("type")
            flows.append(record)
        else:
            raise LabelError(f"{path}:{number}: unknown record type {kind!r}")
    if capture is None:
        raise LabelError(f"{path}: no capture record")
    return Labels(capture, flows)


__all__ = ["LabelError", "Labels", "read_labels", "write_labels"]
