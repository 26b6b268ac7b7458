# %% [markdown]
# # Can commodity hardware keep up?
#
# Deep packet inspection has to read traffic as fast as it arrives. This notebook measures how
# fast `dpi` inspects traffic on the machine that ran it, compares that with the line rates of
# common network links (1 to 100 gigabit Ethernet), estimates how many processor cores a
# 10 gigabit link would need, shows where the time goes, and, where the machine allows it,
# how many packets a live capture loses as the offered load grows.

# %% tags=["parameters"]
SMALL = False  # True: small inputs, for a quick check (CI runs it so)

# %%
import io
import math
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from dpi.bench.machine import machine_info
from dpi.bench.run import BenchConfig, run_bench
from dpi.report import findings_box, machine_line, percent, show

REPO = Path.cwd()
ET_OPEN = REPO.parent / "shared" / "data" / "rules" / "et-open.rules"
if ET_OPEN.exists():
    RULES, RULE_SET = [str(ET_OPEN)], "Emerging Threats Open"
else:
    RULES, RULE_SET = ["rules/dpi-sample.rules"], "the bundled sample rule set"
MACHINE = machine_info()

bench = run_bench(
    BenchConfig(
        rule_paths=RULES,
        packets=20_000 if SMALL else 200_000,
        repeat=1 if SMALL else 2,
        sweeps=("rules",),
        rule_counts=(10, 100, 1000, None),
        progress=io.StringIO(),
    )
)
e2e = bench["end_to_end"]["gbps"]
links = {row["link_gbps"]: row for row in bench["line_rates"]}
ten = links[10]
stages = {name: row["gbps"] for name, row in bench["stages"].items() if row.get("gbps")}
slowest = min(stages, key=stages.get)
sweep = bench["sweeps"]["rules"]
for point in sweep:
    point["cores_10g"] = math.ceil(ten["line_gbps"] / point["gbps"]) if point["gbps"] else None


# the live-capture harness: a veth pair in a network namespace, tcpreplay at set rates, `dpi live`
def measure_live_loss():
    from dpi.bench.nic import TOP, NicBenchError, NicConfig, run_nic_bench
    from dpi.gen.generator import GenConfig, generate, write_generated

    if os.geteuid() != 0:
        return None, "it needs root (network namespaces and a raw socket)"
    for tool in ("tcpreplay", "ip"):
        if shutil.which(tool) is None:
            return None, f"{tool} is not installed"
    work = Path(tempfile.mkdtemp(prefix="dpi-nb-"))
    replay = work / "replay.pcap"
    write_generated(generate(GenConfig(flows=200 if SMALL else 2000, seed=1)), replay, work / "replay.labels")
    rates = [10, 100, TOP] if SMALL else [10, 100, 300, 1000, TOP]
    try:
        return run_nic_bench(NicConfig(replay=str(replay), rates=rates, loops=1 if SMALL else 3)), None
    except (NicBenchError, OSError) as exc:
        return None, str(exc).splitlines()[0]


live, live_why = measure_live_loss()
if live:
    worst = max(live["rates"], key=lambda r: r["dropped_pkts"] / max(r["offered_pkts"], 1))
    worst_loss = worst["dropped_pkts"] / max(worst["offered_pkts"], 1)
    top = max(r["sent_mbps"] or 0 for r in live["rates"])
    if worst_loss == 0:
        live_sentence = (
            f"Live capture through a virtual network interface lost no packet at any offered load, up to "
            f"{top:,.0f} Mbit/s (the fastest the sender reached)."
        )
    else:
        live_sentence = (
            f"Live capture through a virtual network interface received every packet up to "
            f"{live['max_lossless_mbps'] or 0:,.0f} Mbit/s offered; at {worst['sent_mbps']:,.0f} Mbit/s it lost "
            f"{percent(worst_loss)} of them."
        )
else:
    live_sentence = f"Packet loss on live capture was not measured on this machine: {live_why}."

small_point = sweep[0]
findings_box(
    [
        f"One processor core of this machine inspects {e2e:.2f} gigabits per second (Gbit/s) with "
        f"{bench['rules']['loaded']:,} rules of {RULE_SET}: {percent(ten['share_of_line'])} of a "
        f"fully loaded 10 gigabit link.",
        f"Keeping up with a 10 gigabit link would take about {ten['cores_needed']:,} such cores working in "
        f"parallel; with only {small_point['rules']} rules it would take about {small_point['cores_10g']:,}. "
        "The size of the rule set, not the network, sets the hardware bill.",
        f"The slowest step is '{slowest}' at {stages[slowest]:.2f} Gbit/s; reading packets from the capture "
        f"runs at {stages.get('read', float('nan')):.1f} Gbit/s and is not what limits the system.",
        live_sentence,
        machine_line(MACHINE) + ".",
    ],
    title="Findings: can commodity hardware keep up?",
)

# %% [markdown]
# ## 1. Throughput against line rates
#
# The bar for `dpi` is its measured end-to-end speed on one core; the other bars are what a fully
# loaded link delivers, for the same mix of packet sizes. A system keeps up only if its bar reaches
# the link's.

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
names = ["dpi, one core"] + [f"{g} GbE link" for g in links]
values = [e2e] + [row["line_gbps"] for row in links.values()]
colors = ["#1b6e3a"] + ["#9aa5b1"] * len(links)
ax.barh(names, values, color=colors)
ax.set_xscale("log")
ax.set_xlabel("Gbit/s of captured traffic (log scale)")
ax.set_title(f"Inspection speed with {bench['rules']['loaded']:,} rules against link line rates")
for y, v in enumerate(values):
    ax.text(v, y, f" {v:.2f}", va="center", fontsize=9)
ax.invert_yaxis()
show(fig, MACHINE)

# %% [markdown]
# ## 2. Cores needed for 10 Gbit/s, by rule-set size
#
# The same traffic inspected with the first 10, 100, 1,000 and all loadable rules of the set. The
# number of cores is the 10 GbE line rate divided by the speed of one core, rounded up; it assumes
# the work divides perfectly between cores, which real systems only approach.

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
labels = [f"{p['rules']:,} rules" for p in sweep]
ax.bar(labels, [p["cores_10g"] for p in sweep], color="#3b6ea8")
ax.set_ylabel("cores for one 10 GbE link")
ax.set_title("More rules, more cores: processor cores needed for 10 Gbit/s")
for x, p in enumerate(sweep):
    ax.text(
        x, p["cores_10g"], f"{p['cores_10g']:,}\n({p['gbps']:.2f} Gbit/s per core)", ha="center", va="bottom"
    )
ax.set_ylim(0, max(p["cores_10g"] for p in sweep) * 1.3)
show(fig, MACHINE)

# %% [markdown]
# ## 3. Where the time goes, stage by stage
#
# Each stage measured alone on the same input: reading the capture, decoding headers, tracking
# flows, reassembling TCP streams, multi-pattern matching, verifying the candidate rules
# (detect) and writing alerts (output). The slowest stage bounds the whole.

# %%
fig, ax = plt.subplots(figsize=(8, 3.6))
ax.bar(list(stages), list(stages.values()), color=["#c0392b" if s == slowest else "#7f8c8d" for s in stages])
ax.set_yscale("log")
ax.set_ylabel("Gbit/s, one core (log scale)")
ax.axhline(ten["line_gbps"], color="#1b6e3a", linestyle="--", label="10 GbE line rate")
ax.set_title("Speed of each stage of the pipeline")
ax.legend()
show(fig, MACHINE)

# %% [markdown]
# ## 4. Packet loss on live capture against offered load
#
# A generated capture is sent with `tcpreplay` at set rates through a virtual Ethernet pair in a
# private network namespace (nothing leaves the machine) while `dpi live` captures and inspects it.
# Lost packets are those offered but never seen by `dpi`.

# %%
if live:
    rows = live["rates"]
    fig, ax = plt.subplots(figsize=(8, 3.6))
    sent = [r["sent_mbps"] for r in rows]
    loss = [100 * r["dropped_pkts"] / max(r["offered_pkts"], 1) for r in rows]
    ax.plot(sent, loss, marker="o", color="#c0392b")
    ax.set_xscale("log")
    ax.set_xlabel("offered load, Mbit/s (log scale)")
    ax.set_ylabel("packets lost, %")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Live capture loss on {live['interface']}")
    show(fig, MACHINE)
else:
    print(f"Not measured here: {live_why}. `dpi bench nic` runs this measurement as root.")

# %% [markdown]
# ## Method and limits
#
# * **What was measured.** `dpi bench` (the library function `dpi.bench.run.run_bench`) generated
#   a capture of TCP conversations with realistic text payloads and timed each stage and the whole
#   pipeline on one core, best of repeated runs, after a separate warm-up that compiles the Numba
#   kernels (reported apart, not counted).
# * **Line rates** are computed for the same packet sizes, counting Ethernet's preamble, frame gap
#   and checksum, so a link's number is what the wire really carries.
# * **Cores needed** divide the line rate by one core's speed. Real systems lose some of that to
#   distributing flows between cores and to memory bandwidth; treat the figure as a lower bound.
# * **The rule set matters most.** Only the rules `dpi` can load count (application-layer rules
#   such as HTTP- or TLS-specific ones are skipped and reported); a full Suricata deployment
#   evaluates more rules, and would be slower for it.
# * **Live capture** ran over a virtual interface on one machine: it shows the software's limit,
#   not that of a physical network card, whose drivers and offloads behave differently.
# * With `SMALL = True` (as in CI) the inputs are ten times smaller and the numbers noisier.
