"""Suricata-style settings (`--set key=value`): the keys dpi honours so far, with
Suricata's defaults and its size syntax ("1mb", "64kb", "2gb")."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dpi.defrag.config import DefragConfig
from dpi.flow.config import FlowConfig
from dpi.stream import StreamConfig

_SIZE = re.compile(r"^\s*(\d+)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}

# key -> (StreamConfig field, parser); defaults live in StreamConfig and match Suricata's
STREAM_KEYS = {
    "stream.reassembly.depth": "depth",
    "stream.reassembly.memcap": "arena_bytes",
}


class SettingsError(ValueError):
    pass


@dataclass
class Settings:
    """Everything a run can be configured with, each part with Suricata's defaults."""

    stream: StreamConfig = field(default_factory=StreamConfig)
    defrag: DefragConfig = field(default_factory=DefragConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    # policy name -> address list (Suricata's host-os-policy section): the overlap policy
    # of the host that receives the data; addresses named nowhere get stream/defrag.policy
    host_os_policy: dict[str, list[str]] = field(default_factory=dict)


def parse_size(text: str, key: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise SettingsError(f"{key}: {text!r} is not a size (e.g. 1048576, 64kb, 1mb, 2gb)")
    return int(m.group(1)) * _UNITS[m.group(2).lower() if m.group(2) else None]


def stream_config(assignments: list[str]) -> StreamConfig:
    """A StreamConfig from ``key=value`` strings; an unknown key is an error naming it."""
    cfg = StreamConfig()
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SettingsError(f"--set expects key=value, got {item!r}")
        if key not in STREAM_KEYS:
            raise SettingsError(f"unknown setting {key!r}; supported: {', '.join(sorted(STREAM_KEYS))}")
        setattr(cfg, STREAM_KEYS[key], parse_size(value, key))
    if cfg.arena_bytes <= 0:
        raise SettingsError("stream.reassembly.memcap must be positive")
    return cfg
