"""Settings from a suricata.yaml-layout file and --set: every key, precedence, errors."""

from __future__ import annotations

import pytest
import yaml

from dpi.defrag.config import DefragConfig
from dpi.flow.config import FlowConfig
from dpi.settings import (
    BYTES_PER_SEGMENT,
    FLOW_TIMEOUT_PROTOCOLS,
    FLOW_TIMEOUT_STATES,
    HOST_OS_KEYS,
    SETTING_KEYS,
    Settings,
    SettingsError,
    load_settings,
    stream_config,
)
from dpi.stream import StreamConfig

# A cut-down suricata.yaml: the header, sections dpi ignores, keys of known sections that
# it does not read, comments, and Suricata's own size strings.
SURICATA_YAML = """\
%YAML 1.1
---

# Suricata configuration file.
vars:
  address-groups:
    HOME_NET: "[10.0.0.0/8]"
    EXTERNAL_NET: "!$HOME_NET"
  port-groups:
    HTTP_PORTS: "80"
    ORACLE_PORTS: 1521

default-log-dir: /var/log/suricata/
outputs:
  - fast:
      enabled: yes
      filename: fast.log
  - eve-log:
      enabled: yes
      types:
        - alert:
            tagged-packets: yes
af-packet:
  - interface: eth0
    cluster-id: 99
app-layer:
  protocols:
    http:
      enabled: yes

defrag:
  memcap: 16mb
  hash-size: 65536
  trackers: 500
  max-frags: 1000
  prealloc: yes
  timeout: 30

flow:
  memcap: 64mb
  hash-size: 65536
  prealloc: 10000
  emergency-recovery: 30

flow-timeouts:
  default:
    new: 31
    established: 301
    closed: 1
    bypassed: 100
    emergency-new: 11
    emergency-established: 101
    emergency-closed: 2
    emergency-bypassed: 50
  tcp:
    new: 61
    established: 3600
    closed: 120
    emergency-new: 6
    emergency-established: 102
    emergency-closed: 12
  udp:
    new: 32
    established: 302
  icmp:
    new: 33

stream:
  memcap: 32mb
  checksum-validation: yes
  inline: auto
  midstream: true
  policy: linux
  reassembly:
    memcap: 256mb
    depth: 1.5mb
    toserver-chunk-size: 2560
    randomize-chunk-size: yes

host-os-policy:
  # Make the default policy windows.
  windows: [0.0.0.0/0]
  bsd: []
  bsd-right: []
  old-linux: []
  linux: [10.0.0.0/8, 192.168.1.100, "8762:2352:6241:7245:E000:0000:0000:0000"]
  old-solaris: []
  solaris: ["::1"]
  hpux10: []
  hpux11: []
  irix: []
  macos: []
  vista: []
  windows2k3: []
"""


def test_suricata_layout_file(tmp_path):
    path = tmp_path / "suricata.yaml"
    path.write_text(SURICATA_YAML)
    s = load_settings(str(path))
    assert s.stream.policy == "linux" and s.stream.midstream is True
    assert s.stream.max_segments == (32 << 20) // BYTES_PER_SEGMENT
    assert s.stream.arena_bytes == 256 << 20 and s.stream.depth == int(1.5 * (1 << 20))
    assert (s.defrag.memcap, s.defrag.max_fragments, s.defrag.timeout_s) == (16 << 20, 1000, 30)
    assert s.defrag.max_trackers == 500
    assert s.defrag.policy == "bsd"  # not in the file: Suricata's default
    assert s.flow.memcap == 64 << 20
    t = s.flow.timeouts
    assert (t["default"].new, t["default"].established, t["default"].closed) == (31, 301, 1)
    assert (t["default"].emergency_new, t["default"].emergency_established) == (11, 101)
    assert t["default"].emergency_closed == 2
    assert (t["tcp"].new, t["tcp"].established, t["tcp"].closed) == (61, 3600, 120)
    assert (t["tcp"].emergency_new, t["tcp"].emergency_established, t["tcp"].emergency_closed) == (6, 102, 12)
    assert (t["udp"].new, t["udp"].established, t["udp"].closed) == (32, 302, 0)
    assert t["icmp"].new == 33 and t["icmp"].established == 300
    assert s.host_os_policy["windows"] == ["0.0.0.0/0"] and s.host_os_policy["bsd"] == []
    assert s.host_os_policy["linux"][1] == "192.168.1.100"
    assert s.variables == {"HOME_NET": "[10.0.0.0/8]", "EXTERNAL_NET": "!$HOME_NET", "HTTP_PORTS": "80"} | {
        "ORACLE_PORTS": "1521"
    }


def test_defaults_are_suricatas(tmp_path):
    s = load_settings()
    assert s == Settings()
    assert s.stream.depth == 1 << 20 and s.stream.policy == "bsd"
    assert s.stream.midstream == StreamConfig().midstream  # unset: each command's own default
    # stream.memcap's default (64mb) is the default segment cap
    assert (64 << 20) // BYTES_PER_SEGMENT == StreamConfig().max_segments
    assert s.defrag == DefragConfig() and s.defrag.timeout_s == 60 and s.defrag.max_fragments == 65535
    assert s.flow == FlowConfig() and s.flow.timeouts["tcp"].established == 600
    empty = tmp_path / "empty.yaml"
    empty.write_text("%YAML 1.1\n---\n")
    assert load_settings(str(empty)) == Settings()


def _timeout(proto, state):
    return lambda s: getattr(s.flow.timeouts[proto], state.replace("-", "_"))


# key, value as typed, what it becomes
CASES = [
    ("stream.policy", "windows", lambda s: s.stream.policy, "windows"),
    ("stream.midstream", "yes", lambda s: s.stream.midstream, True),
    ("stream.memcap", "1mb", lambda s: s.stream.max_segments, (1 << 20) // BYTES_PER_SEGMENT),
    ("stream.reassembly.memcap", "2gb", lambda s: s.stream.arena_bytes, 2 << 30),
    ("stream.reassembly.depth", "64kb", lambda s: s.stream.depth, 64 << 10),
    ("defrag.policy", "solaris", lambda s: s.defrag.policy, "solaris"),
    ("defrag.memcap", "5mb", lambda s: s.defrag.memcap, 5 << 20),
    ("defrag.timeout", "7", lambda s: s.defrag.timeout_s, 7),
    ("defrag.max-frags", "99", lambda s: s.defrag.max_fragments, 99),
    ("defrag.trackers", "77", lambda s: s.defrag.max_trackers, 77),
    ("flow.memcap", "3MB", lambda s: s.flow.memcap, 3 << 20),
] + [
    (f"flow-timeouts.{p}.{st}", str(5 + i), _timeout(p, st), 5 + i)
    for i, (p, st) in enumerate((p, st) for p in FLOW_TIMEOUT_PROTOCOLS for st in FLOW_TIMEOUT_STATES)
]


def test_the_cases_cover_every_key():
    assert {key for key, *_ in CASES} | set(HOST_OS_KEYS) == set(SETTING_KEYS)


@pytest.mark.parametrize("key, value, get, expected", CASES, ids=[c[0] for c in CASES])
def test_every_key_via_set(key, value, get, expected):
    s = load_settings(None, [f"{key}={value}"])
    assert get(s) == expected
    assert get(Settings()) != expected  # the setting changed something


def _nested(key: str, value) -> dict:
    doc: dict = {}
    node = doc
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return doc


@pytest.mark.parametrize("key, value, get, expected", CASES, ids=[c[0] for c in CASES])
def test_every_key_via_yaml(tmp_path, key, value, get, expected):
    path = tmp_path / "s.yaml"
    # YAML's own scalars: 'yes' becomes a boolean, '7' a number, '1mb' stays a string
    path.write_text("%YAML 1.1\n---\n" + yaml.safe_dump(_nested(key, yaml.safe_load(value))))
    assert get(load_settings(str(path))) == expected


@pytest.mark.parametrize("name", [k.removeprefix("host-os-policy.") for k in HOST_OS_KEYS])
def test_every_host_os_policy_via_set_and_yaml(tmp_path, name):
    s = load_settings(None, [f"host-os-policy.{name}=[10.0.0.0/8, 2001:db8::/32,192.168.0.1]"])
    assert s.host_os_policy == {name: ["10.0.0.0/8", "2001:db8::/32", "192.168.0.1"]}
    assert load_settings(None, [f"host-os-policy.{name}=10.0.0.1"]).host_os_policy == {name: ["10.0.0.1"]}
    path = tmp_path / "h.yaml"
    path.write_text(f"host-os-policy:\n  {name}: [10.0.0.0/8, '2001:db8::/32']\n")
    assert load_settings(str(path)).host_os_policy == {name: ["10.0.0.0/8", "2001:db8::/32"]}


def test_booleans_and_sizes_in_suricatas_forms():
    for text, value in [("yes", True), ("no", False), ("true", True), ("FALSE", False), ("on", True)]:
        assert load_settings(None, [f"stream.midstream={text}"]).stream.midstream is value
    for text, value in [("1024", 1024), ("10 kb", 10 << 10), ("10.5kb", 10752), (" 2GB ", 2 << 30)]:
        assert load_settings(None, [f"stream.reassembly.depth={text}"]).stream.depth == value
    assert load_settings(None, ["stream.reassembly.depth=0"]).stream.depth == 0  # no limit


def test_command_line_wins(tmp_path):
    path = tmp_path / "suricata.yaml"
    path.write_text(SURICATA_YAML)
    s = load_settings(
        str(path),
        [
            "stream.reassembly.depth=2kb",
            "flow-timeouts.tcp.new=5",
            "host-os-policy.vista=10.0.0.0/8",
            "stream.midstream=no",
        ],
    )
    assert s.stream.depth == 2048 and s.flow.timeouts["tcp"].new == 5 and s.stream.midstream is False
    assert s.stream.arena_bytes == 256 << 20  # the file's, untouched
    # the network moves from linux (file) to vista (command line)
    assert s.host_os_policy["vista"] == ["10.0.0.0/8"]
    assert "10.0.0.0/8" not in s.host_os_policy["linux"] and "192.168.1.100" in s.host_os_policy["linux"]
    # the last of two --set of one key wins
    assert load_settings(None, ["defrag.timeout=5", "defrag.timeout=9"]).defrag.timeout_s == 9


def test_stream_config_still_reads_stream_keys():
    cfg = stream_config(["stream.reassembly.depth=200", "stream.reassembly.memcap=1mb"])
    assert isinstance(cfg, StreamConfig) and (cfg.depth, cfg.arena_bytes) == (200, 1 << 20)


# -- errors ------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("%YAML 1.1\n---\nstream:\n  memcap: 64mb\n  reassembly: [1, 2\nflow:\n  memcap: 1mb\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(str(path))
    msg = str(exc.value)
    assert msg.startswith(f"{path}:6:") and "YAML syntax error" in msg


def test_tab_indentation_is_a_syntax_error_with_place(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("stream:\n\tmemcap: 64mb\n")
    with pytest.raises(SettingsError, match=rf"{path}:2:1: YAML syntax error"):
        load_settings(str(path))


@pytest.mark.parametrize(
    "text, line, key, value",
    [
        ("stream:\n  reassembly:\n    depth: lots\n", 3, "stream.reassembly.depth", "'lots'"),
        ("stream:\n  memcap: 0\n", 2, "stream.memcap", "0"),
        ("stream:\n  midstream: maybe\n", 2, "stream.midstream", "'maybe'"),
        ("stream:\n  policy: plan9\n", 2, "stream.policy", "'plan9'"),
        ("defrag:\n  policy: vista\n", 2, "defrag.policy", "'vista'"),
        ("defrag:\n  timeout: 1.5\n", 2, "defrag.timeout", "1.5"),
        ("defrag:\n  max-frags: -1\n", 2, "defrag.max-frags", "-1"),
        ("flow:\n  memcap: [1]\n", 2, "flow.memcap", "[1]"),
        ("flow-timeouts:\n  tcp:\n    new: soon\n", 3, "flow-timeouts.tcp.new", "'soon'"),
        ("host-os-policy:\n  linux: [10.0.0.0/33]\n", 2, "host-os-policy.linux", "10.0.0.0/33"),
        ("host-os-policy:\n  plan9: [10.0.0.0/8]\n", 2, "host-os-policy.plan9", "'plan9'"),
        ("stream: 5\n", 1, "stream", "5"),
        ("vars:\n  address-groups:\n    HOME_NET: [1]\n", 3, "vars.address-groups.HOME_NET", "[1]"),
    ],
)
def test_bad_value_in_file_names_file_line_key_and_value(tmp_path, text, line, key, value):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as exc:
        load_settings(str(path))
    msg = str(exc.value)
    assert msg.startswith(f"{path}:{line}: {key}:") and value in msg


@pytest.mark.parametrize(
    "item, expect",
    [
        ("stream.reassembly.depth=lots", "stream.reassembly.depth: bad value 'lots'"),
        ("stream.policy=plan9", "expected one of first, last"),
        ("defrag.policy=macos", "defrag.policy: bad value 'macos'"),
        ("host-os-policy.linux=[10.0.0.0/8, 300.1.1.1]", "300.1.1.1"),
        ("host-os-policy.plan9=10.0.0.1", "unknown policy 'plan9'"),
        ("stream.reassembly.depth", "expects key=value"),
        ("stream.bogus=1", "unknown setting 'stream.bogus'; supported: stream.policy"),
    ],
)
def test_bad_set_items(item, expect):
    with pytest.raises(SettingsError) as exc:
        load_settings(None, [item])
    assert expect in str(exc.value)


def test_unknown_key_error_lists_the_supported_ones():
    with pytest.raises(SettingsError) as exc:
        load_settings(None, ["nope=1"])
    msg = str(exc.value)
    for key in ("stream.midstream", "defrag.max-frags", "flow.memcap", "emergency-established", "windows2k3"):
        assert key in msg


def test_one_network_under_two_policies_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("host-os-policy:\n  linux: [10.0.0.0/8]\n  windows: [10.0.0.0/8]\n")
    with pytest.raises(SettingsError, match="both 'linux' and 'windows'"):
        load_settings(str(path))


def test_missing_file_and_non_mapping_top(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_settings(str(tmp_path / "absent.yaml"))
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="expected a mapping"):
        load_settings(str(path))


def test_unknown_tags_and_sections_are_ignored(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("include: other.yaml\noutputs: !include outputs.yaml\nstream:\n  memcap: 1mb\n")
    assert load_settings(str(path)).stream.max_segments == (1 << 20) // BYTES_PER_SEGMENT
