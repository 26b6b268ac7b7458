"""Suricata-style settings: a suricata.yaml-layout file (``--config``) and ``--set key=value``
on top of it, with Suricata's defaults, its size syntax ("1mb", "64kb", "1.5gb") and its
booleans (yes/no/true/false/on/off/1/0).

Only the keys in ``SETTING_KEYS`` are read from a file; every other section or key of a
suricata.yaml is ignored, as dpi has nothing that it would configure. A supported key with
a bad value is an error that names the file, the line, the key and the value. On the
command line an unknown key is an error, since it can only be a typo.

``stream.memcap`` has no byte pool here to bound: what it caps in Suricata, the segments
held out of order, is bounded by ``StreamConfig.max_segments``, so it is mapped to
``memcap // BYTES_PER_SEGMENT`` segments. ``stream.policy`` is not a Suricata key: it is
the overlap policy of the hosts that ``host-os-policy`` does not name (Suricata's is bsd).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dpi.defrag.config import DEFRAG_POLICIES, DefragConfig
from dpi.flow.config import FlowConfig
from dpi.hostos import (
    HOST_OS_POLICIES,
    HostPolicyError,
    defrag_policy_map,
    parse_host_network,
    split_host_list,
    stream_policy_map,
)
from dpi.stream import StreamConfig
from dpi.stream.tcp import STREAM_POLICIES

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?\s*$", re.IGNORECASE)
_UNITS = {None: 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}
_TRUE = {"yes", "true", "on", "1"}
_FALSE = {"no", "false", "off", "0"}

# Bytes of stream.memcap per held segment: a segment's bookkeeping in Suricata (its
# TcpSegment, pool and tree overhead) is of this order, and it makes Suricata's default
# stream.memcap of 64mb the default StreamConfig.max_segments of 262144.
BYTES_PER_SEGMENT = 256

FLOW_TIMEOUT_PROTOCOLS = ("default", "tcp", "udp", "icmp")
FLOW_TIMEOUT_STATES = (
    "new",
    "established",
    "closed",
    "emergency-new",
    "emergency-established",
    "emergency-closed",
)


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
    # rule variables from the file's vars.address-groups and vars.port-groups
    variables: dict[str, str] = field(default_factory=dict)


class _BadValue(ValueError):
    """A value a parser refuses; the caller adds where it came from."""


def _as_number(value, what: str) -> float:
    if isinstance(value, bool):
        raise _BadValue(f"expected {what}")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2).lower() if m.group(2) else None]
    raise _BadValue(f"expected {what}")


def _size(minimum: int) -> Callable[[object], int]:
    def parse(value) -> int:
        n = int(_as_number(value, "a size (e.g. 1048576, 64kb, 1mb, 2gb)"))
        if n < minimum:
            raise _BadValue(f"must be at least {minimum}")
        return n

    return parse


def _count(minimum: int) -> Callable[[object], int]:
    def parse(value) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _BadValue("expected a whole number")
        if value < minimum:
            raise _BadValue(f"must be at least {minimum}")
        return value

    return parse


def _boolean(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _BadValue("expected yes/no/true/false")


def _choice(names: tuple[str, ...]) -> Callable[[object], str]:
    def parse(value) -> str:
        if isinstance(value, str) and value.strip() in names:
            return value.strip()
        raise _BadValue(f"expected one of {', '.join(names)}")

    return parse


def _setter(part: str, attr: str) -> Callable[[Settings, object], None]:
    def apply(settings: Settings, value) -> None:
        setattr(getattr(settings, part), attr, value)

    return apply


def _timeout_setter(proto: str, attr: str) -> Callable[[Settings, object], None]:
    def apply(settings: Settings, value) -> None:
        setattr(settings.flow.timeouts[proto], attr, value)

    return apply


def _max_segments(settings: Settings, memcap: int) -> None:
    settings.stream.max_segments = max(1, memcap // BYTES_PER_SEGMENT)


# key -> (parser, what to set); host-os-policy.<name> keys are handled apart (lists)
_KEYS: dict[str, tuple[Callable[[object], object], Callable[[Settings, object], None]]] = {
    "stream.policy": (_choice(STREAM_POLICIES), _setter("stream", "policy")),
    "stream.midstream": (_boolean, _setter("stream", "midstream")),
    "stream.memcap": (_size(1), _max_segments),
    "stream.reassembly.memcap": (_size(1), _setter("stream", "arena_bytes")),
    "stream.reassembly.depth": (_size(0), _setter("stream", "depth")),
    "defrag.policy": (_choice(DEFRAG_POLICIES), _setter("defrag", "policy")),
    "defrag.memcap": (_size(1), _setter("defrag", "memcap")),
    "defrag.timeout": (_count(1), _setter("defrag", "timeout_s")),
    "defrag.max-frags": (_count(1), _setter("defrag", "max_fragments")),
    "defrag.trackers": (_count(1), _setter("defrag", "max_trackers")),
    "flow.memcap": (_size(1), _setter("flow", "memcap")),
}
for _proto in FLOW_TIMEOUT_PROTOCOLS:
    for _state in FLOW_TIMEOUT_STATES:
        _KEYS[f"flow-timeouts.{_proto}.{_state}"] = (
            _count(0),
            _timeout_setter(_proto, _state.replace("-", "_")),
        )

HOST_OS_KEYS = tuple(f"host-os-policy.{name}" for name in HOST_OS_POLICIES)
# every key that --config reads and --set accepts
SETTING_KEYS: tuple[str, ...] = tuple(_KEYS) + HOST_OS_KEYS
STREAM_KEYS: tuple[str, ...] = tuple(k for k in SETTING_KEYS if k.startswith("stream."))


def _key_patterns() -> list[str]:
    plain = [k for k in _KEYS if not k.startswith("flow-timeouts.")]
    return plain + [
        f"flow-timeouts.{{{','.join(FLOW_TIMEOUT_PROTOCOLS)}}}.{{{','.join(FLOW_TIMEOUT_STATES)}}}",
        f"host-os-policy.{{{','.join(HOST_OS_POLICIES)}}}",
    ]


def keys_summary() -> str:
    """SETTING_KEYS in a compact form, for error messages."""
    return ", ".join(_key_patterns())


def _human_size(n: int) -> str:
    for unit, shift in (("gb", 30), ("mb", 20), ("kb", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{unit}"
    return str(n)


def _yes_no(value: bool | None) -> str:
    return "the command's own" if value is None else "yes" if value else "no"


def settings_help() -> str:
    """The supported keys, one a line with what it sets and its default, for --help."""
    stream, defrag, flow = StreamConfig(), DefragConfig(), FlowConfig()
    what = {
        "stream.policy": f"TCP overlap policy of hosts host-os-policy does not name ({stream.policy})",
        "stream.midstream": f"pick up sessions without their handshake ({_yes_no(stream.midstream)})",
        "stream.memcap": f"held out-of-order segments, memcap/{BYTES_PER_SEGMENT} of them "
        f"({_human_size(stream.max_segments * BYTES_PER_SEGMENT)})",
        "stream.reassembly.memcap": "bytes held (unacknowledged or behind a hole), all streams "
        f"({_human_size(stream.arena_bytes)})",
        "stream.reassembly.depth": "bytes of each direction reassembled, 0 = all "
        f"({_human_size(stream.depth)})",
        "defrag.policy": f"fragment overlap policy of hosts host-os-policy does not name ({defrag.policy})",
        "defrag.memcap": f"fragment bytes held ({_human_size(defrag.memcap)})",
        "defrag.timeout": f"seconds a datagram waits for its fragments ({defrag.timeout_s})",
        "defrag.max-frags": f"fragments held ({defrag.max_fragments})",
        "defrag.trackers": f"datagrams in reassembly at once ({defrag.max_trackers})",
        "flow.memcap": f"bytes of flow state ({_human_size(flow.memcap)})",
    }
    lines = [
        "settings (--config FILE in suricata.yaml layout, --set KEY=VALUE over it; defaults in parentheses):"
    ]
    for pattern in _key_patterns():
        if pattern.startswith("flow-timeouts."):
            text = "seconds, per protocol and flow state (Suricata's)"
        elif pattern.startswith("host-os-policy."):
            text = "addresses/networks of hosts with that policy; on the command line [10.0.0.0/8,::1]"
        else:
            text = what[pattern]
        lines.append(f"  {pattern}\n      {text}")
    lines.append("sizes take kb/mb/gb (1024-based); booleans yes/no/true/false")
    return "\n".join(lines)


def parse_size(text: str, key: str) -> int:
    try:
        return _size(0)(text)
    except _BadValue as exc:
        raise SettingsError(f"{key}: {text!r}: {exc}") from None


class _Loader(yaml.SafeLoader):
    """Safe YAML with Suricata's tags (e.g. !include) read as plain values: dpi does not
    follow includes, and the sections they fill are ones it ignores."""


_Loader.add_multi_constructor(
    "!",
    lambda loader, suffix, node: (
        loader.construct_scalar(node)
        if isinstance(node, yaml.ScalarNode)
        else loader.construct_sequence(node)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node)
    ),
)


def _read_yaml(path: str) -> tuple[dict, yaml.Node | None]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read: {exc}") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise SettingsError(f"{where}: YAML syntax error: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data, node


def _line_of(node: yaml.Node | None, parts: list[str]) -> int | None:
    for part in parts:
        if not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                node = value_node
                break
        else:
            return None
    return node.start_mark.line + 1 if node is not None else None


class _Source:
    """Where values come from, for error messages: a file (with lines) or the command line."""

    def __init__(self, path: str | None = None, root: yaml.Node | None = None):
        self.path, self.root = path, root

    def error(self, key: str, value, reason: str) -> SettingsError:
        if self.path is None:
            return SettingsError(f"--set: {key}: bad value {value!r}: {reason}")
        line = _line_of(self.root, key.split("."))
        where = f"{self.path}:{line}" if line else self.path
        return SettingsError(f"{where}: {key}: bad value {value!r}: {reason}")


def _section(data: dict, parts: list[str], source: _Source):
    """The value at a dotted path, or None where the file does not set it."""
    node = data
    for i, part in enumerate(parts):
        if node is None:
            return None
        if not isinstance(node, dict):
            raise source.error(".".join(parts[:i]), node, "expected a mapping")
        node = node.get(part)
    return node


def _apply(settings: Settings, key: str, value, source: _Source) -> None:
    parse, apply = _KEYS[key]
    try:
        apply(settings, parse(value))
    except _BadValue as exc:
        raise source.error(key, value, str(exc)) from None


def _host_list(key: str, value, source: _Source) -> list[str]:
    try:
        entries = split_host_list(value)
        for entry in entries:
            parse_host_network(entry)
    except HostPolicyError as exc:
        raise source.error(key, value, str(exc)) from None
    return entries


def _apply_file(settings: Settings, path: str) -> None:
    data, root = _read_yaml(path)
    source = _Source(path, root)
    for key in _KEYS:
        value = _section(data, key.split("."), source)
        if value is not None:  # an empty value leaves the default, as in Suricata
            _apply(settings, key, value, source)
    hosts = _section(data, ["host-os-policy"], source)
    if hosts is not None:
        if not isinstance(hosts, dict):
            raise source.error("host-os-policy", hosts, "expected a mapping of policy names to addresses")
        for name, value in hosts.items():
            key = f"host-os-policy.{name}"
            if name not in HOST_OS_POLICIES:
                raise source.error(
                    key, value, f"unknown policy {name!r}; known: {', '.join(HOST_OS_POLICIES)}"
                )
            settings.host_os_policy[name] = _host_list(key, value, source)
    for group in ("address-groups", "port-groups"):
        variables = _section(data, ["vars", group], source)
        if variables is None:
            continue
        if not isinstance(variables, dict):
            raise source.error(f"vars.{group}", variables, "expected a mapping of names to values")
        for name, value in variables.items():
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise source.error(f"vars.{group}.{name}", value, "expected an address or port group")
            settings.variables[str(name)] = str(value)


def _apply_assignment(settings: Settings, item: str) -> None:
    key, sep, value = item.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise SettingsError(f"--set expects key=value, got {item!r}")
    if key in _KEYS:
        _apply(settings, key, value, _Source())
    elif key in HOST_OS_KEYS:
        name = key.removeprefix("host-os-policy.")
        entries = _host_list(key, value, _Source())
        # the command line wins: a network it names leaves every other policy's list
        named = {parse_host_network(e) for e in entries}
        for other, others in settings.host_os_policy.items():
            if other != name:
                settings.host_os_policy[other] = [e for e in others if parse_host_network(e) not in named]
        settings.host_os_policy[name] = entries
    elif key.startswith("host-os-policy."):
        raise SettingsError(
            f"--set: {key}: unknown policy {key.removeprefix('host-os-policy.')!r}; "
            f"known: {', '.join(HOST_OS_POLICIES)}"
        )
    else:
        raise SettingsError(f"unknown setting {key!r}; supported: {keys_summary()}")


def load_settings(config_path: str | None = None, assignments: Iterable[str] = ()) -> Settings:
    """Settings from a suricata.yaml-layout file (optional), then ``key=value`` items on top:
    the command line wins. Raises SettingsError naming the file, key and value at fault."""
    settings = Settings()
    if config_path is not None:
        _apply_file(settings, str(config_path))
    for item in assignments:
        _apply_assignment(settings, item)
    try:
        stream_policy_map(settings)
        defrag_policy_map(settings)
    except HostPolicyError as exc:
        where = config_path if config_path is not None else "--set"
        raise SettingsError(f"{where}: host-os-policy: {exc}") from None
    return settings


def stream_config(assignments: Iterable[str]) -> StreamConfig:
    """A StreamConfig from ``key=value`` strings (the stream part of ``load_settings``)."""
    return load_settings(None, assignments).stream
