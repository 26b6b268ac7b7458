# %% [markdown]
# # Proportionality and privacy
#
# To inspect traffic, a DPI system reads all of it; what it keeps is a choice. This notebook
# measures what `dpi` keeps by default (an alert: who talked to whom, when, and which rule
# matched) against what it keeps when asked to log payloads (the content of the matching packet),
# sets the bytes kept against the bytes inspected, and shows how long the record of each
# connection lives in memory.

# %% tags=["parameters"]
SMALL = False  # True: small inputs, for a quick check (CI runs it so)

# %%
import io
import json
import tempfile
from datetime import datetime
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dpi.bench.machine import machine_info
from dpi.gen.generator import GenConfig, generate, write_generated
from dpi.pipeline import scan
from dpi.report import findings_box, percent, show
from dpi.settings import Settings

REPO = Path.cwd()
SAMPLE = str(REPO / "rules" / "dpi-sample.rules")
MACHINE = machine_info()
work = Path(tempfile.mkdtemp(prefix="dpi-nb-"))
generated = generate(GenConfig(flows=300 if SMALL else 5000, seed=4, rules=[SAMPLE], duration_s=60.0))
capture = work / "traffic.pcap"
write_generated(generated, capture, work / "traffic.labels")
inspected = sum(f["payload_bytes"] for f in generated.labels.flows)


def run(log_payload: bool):
    out = io.StringIO()
    result = scan([str(capture)], [SAMPLE], out, log_payload=log_payload)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = [e for e in events if e["event_type"] == "alert"]
    flows = [e for e in events if e["event_type"] == "flow"]
    alert_bytes = sum(len(json.dumps(a, separators=(",", ":"))) + 1 for a in alerts)
    payload = sum(len(a.get("payload_printable", "")) for a in alerts)
    return result, alerts, flows, alert_bytes, payload


result, alerts, flows, default_bytes, _ = run(False)
_, alerts_lp, _, payload_log_bytes, payload_bytes = run(True)
sample = alerts[0] if alerts else {}
fields = sorted(k for k in sample if k not in ("alert",)) + [
    f"alert.{k}" for k in sorted(sample.get("alert", {}))
]
content_fields = ["payload", "payload_printable"]
timeouts = Settings().flow.timeouts


def _seconds(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


# each connection's duration, first packet to last (EVE's "age" is whole seconds), in the bundled
# real capture: the generator compresses time, real traffic does not
REAL = str(REPO / "pcaps" / "wikipedia.pcap")
real_out = io.StringIO()
scan([REAL], [SAMPLE], real_out)
real_flows = [e for e in map(json.loads, real_out.getvalue().splitlines()) if e["event_type"] == "flow"]
ages = [_seconds(f["flow"]["end"]) - _seconds(f["flow"]["start"]) for f in real_flows]


def _duration(seconds: float) -> str:
    return f"{seconds:,.1f} s" if seconds >= 1 else f"{seconds * 1000:,.0f} ms"


tcp, udp = timeouts["tcp"], timeouts["udp"]

findings_box(
    [
        f"dpi read {inspected / 1e6:,.1f} MB of traffic content in {generated.flows:,} connections and raised "
        f"{len(alerts):,} alerts. By default it kept {default_bytes / 1e3:,.1f} kB of alerts: "
        f"{percent(default_bytes / inspected, 2)} of what it read, and not one byte of the content.",
        "A default alert reveals who talked to whom (addresses and ports), when, over which protocol, and which "
        "rule matched; that is personal data when an address points to a person, and it is all that is kept.",
        f"With --log-payload each alert also keeps the content of the packet that matched: {payload_bytes / 1e3:,.1f}"
        f" kB of content here, and the alert log grows {payload_log_bytes / max(default_bytes, 1):.1f} times. "
        "Content can include passwords, messages and documents: it should be switched on only where the law allows.",
        f"A connection's record stays in memory until it has been idle for its timeout: {tcp.established:,} s "
        f"(TCP) or {udp.established:,} s (UDP) once established, {tcp.new} s while a TCP connection is opening. "
        f"In the bundled real capture, {sum(a == 0 for a in ages)} of {len(ages)} connections were a single packet"
        f" and the longest lasted {_duration(max(ages, default=0.0))}: every record outlives its connection by"
        " far, for the timeout, then is written out as one flow event and dropped.",
    ],
    title="Findings: proportionality and privacy",
)

# %% [markdown]
# ## 1. What one alert reveals
#
# The fields of an alert as written by default, and the two that `--log-payload` adds. Addresses
# and ports identify the endpoints; the payload fields carry the content itself.

# %%
print("By default an alert holds:")
for name in fields:
    print(f"  {name}")
print("--log-payload adds:")
for name in content_fields:
    print(f"  {name}")
if alerts_lp:
    example = next((a for a in alerts_lp if "payload_printable" in a), alerts_lp[0])
    print("\nFor example, the content kept for one alert:")
    print("  " + example.get("payload_printable", "")[:160].replace("\r\n", " | "))

# %% [markdown]
# ## 2. Bytes inspected against bytes kept
#
# Everything `dpi` read, against what each logging choice writes to disk (log scale).

# %%
fig, ax = plt.subplots(figsize=(8, 3.4))
names = ["content inspected", "alerts kept (default)", "alerts kept (--log-payload)", "of which content"]
values = [inspected, default_bytes, payload_log_bytes, payload_bytes]
ax.barh(names, values, color=["#7f8c8d", "#1b6e3a", "#c0392b", "#e67e22"])
ax.set_xscale("log")
ax.set_xlabel("bytes (log scale)")
for y, v in enumerate(values):
    ax.text(v, y, f" {v / 1e3:,.1f} kB", va="center", fontsize=9)
ax.set_title("What is read and what is kept")
ax.invert_yaxis()
show(fig, MACHINE)

# %% [markdown]
# ## 3. How long connection records live
#
# Each connection's duration in the bundled real capture (a few minutes of a home network's
# traffic; single-packet connections are drawn at 1 ms), and the idle time after which its record
# is closed and dropped (Suricata's default timeouts, which `dpi` shares). A record lives for the
# connection's duration plus the timeout.

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
ax.hist([max(a, 1e-3) for a in ages], bins=np.logspace(-3, 3.5, 40), color="#3b6ea8")
ax.set_xlabel("connection duration, seconds")
ax.set_ylabel("connections")
for value, label, style in (
    (tcp.new, f"TCP opening timeout ({tcp.new} s)", ":"),
    (udp.established, f"UDP timeout ({udp.established} s)", "--"),
    (tcp.established, f"TCP established timeout ({tcp.established} s)", "-"),
):
    ax.axvline(value, color="#c0392b", linestyle=style, label=label)
ax.set_xscale("log")
ax.legend(fontsize=8)
ax.set_title("Connection durations (bundled real capture) against how long records are kept")
show(fig, MACHINE)

# %% [markdown]
# ## Method and limits
#
# * **Traffic** comes from `dpi gen` (web, mail, name lookups, TLS and other traffic, with planted
#   rule content), scanned twice with the bundled sample rules through `dpi.pipeline.scan`: once by
#   default and once with `log_payload=True` (`dpi scan --log-payload`).
# * **Bytes kept** are the sizes of the alert events as written to the EVE file. Flow events (one
#   per connection, also metadata only) and the closing statistics are not counted as alerts.
# * **Record lifetimes** use the default timeouts; `--set flow-timeouts.tcp.established=...` and the
#   `flow-timeouts` section of a suricata.yaml change them. Records also end early under memory
#   pressure (emergency timeouts, then eviction of the least recently active).
# * What is kept is only part of the privacy question: inspection itself reads every byte, and
#   who may read the alerts, for how long they are stored, and under what authority, are decisions
#   this notebook cannot make.
