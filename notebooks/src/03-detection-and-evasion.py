# %% [markdown]
# # Detection quality and evasion
#
# How often is deep packet inspection right, and can it be fooled? This notebook plants known
# attack content from a real rule set into generated traffic, applies the classic ways of hiding
# from an intrusion detection system (cutting content into tiny pieces, sending them out of order,
# twice, or overlapping with decoys), scans every capture, and scores the alerts against the known
# answers: *precision* (of the alerts raised, the share that were right) and *recall* (of the
# attacks present, the share that were found).
#
# Overlap tricks rely on hosts reassembling overlapping data differently (each operating system
# has its "policy"). The attacks here are aimed at hosts with the BSD policy; the scanner is run
# once per policy it could have been configured with.

# %% tags=["parameters"]
SMALL = False  # True: small inputs, for a quick check (CI runs it so)

# %%
import io
import json
import random
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from dpi.bench.machine import machine_info
from dpi.evaluation import evaluate
from dpi.gen.evasion import EVASIONS
from dpi.gen.generator import GenConfig, generate, write_generated
from dpi.gen.plant import unplantable_reason
from dpi.hostos import DEFRAG_POLICY_OF_HOST_OS
from dpi.pipeline import scan
from dpi.report import findings_box, percent, show
from dpi.rules import load_rules
from dpi.settings import load_settings

REPO = Path.cwd()
ET_OPEN = REPO.parent / "shared" / "data" / "rules" / "et-open.rules"
MACHINE = machine_info()
TARGET = "bsd"
FLOWS = 150 if SMALL else 600
POLICIES = ["bsd", "last"] if SMALL else ["bsd", "linux", "windows", "solaris", "first", "last"]
CHAINS = ["none", "tcp-seg", "tcp-overlap", "ip-frag-overlap"] if SMALL else ["none", *EVASIONS]
work = Path(tempfile.mkdtemp(prefix="dpi-nb-"))

# the rules: a seeded sample of Emerging Threats Open's plantable rules when the shared data is
# there (real attack content), else the bundled sample rules
if ET_OPEN.exists():
    plantable = [r for r in load_rules(str(ET_OPEN)) if unplantable_reason(r) is None]
    chosen = sorted(random.Random(1).sample(plantable, 40 if SMALL else 200), key=lambda r: r.sid)
    wanted = {(r.file, r.line) for r in chosen}
    lines = Path(ET_OPEN).read_text(encoding="latin-1").splitlines()
    rules_path = work / "planted.rules"
    rules_path.write_text("\n".join(lines[line - 1] for _, line in sorted(wanted)) + "\n", encoding="latin-1")
    RULES, RULE_SET = str(rules_path), f"{len(chosen)} rules drawn from Emerging Threats Open"
else:
    RULES, RULE_SET = str(REPO / "rules" / "dpi-sample.rules"), "the bundled sample rules"

scores = {}
for chain in CHAINS:
    evasions = () if chain == "none" else tuple(chain.split(","))
    generated = generate(
        GenConfig(flows=FLOWS, seed=3, rules=[RULES], evasions=evasions, target_policy=TARGET)
    )
    pcap, labels = work / f"{chain}.pcap", work / f"{chain}.labels"
    write_generated(generated, pcap, labels)
    for policy in POLICIES:
        settings = load_settings(
            None, [f"stream.policy={policy}", f"defrag.policy={DEFRAG_POLICY_OF_HOST_OS[policy]}"]
        )
        out = io.StringIO()
        scan([str(pcap)], [RULES], out, settings=settings)
        alerts = [e for e in map(json.loads, out.getvalue().splitlines()) if e["event_type"] == "alert"]
        report = evaluate(generated.labels, alerts, policy).report
        group = report["per_evasion"].get(chain, report["per_evasion"].get("none"))
        scores[chain, policy] = {
            "precision": report["precision"],
            "recall_all": report["recall"],
            "recall": group["recall"],
            "expected": group["expected"],
            "visible": group["visible_to_ids_policy"],
        }

recall = np.array([[scores[c, p]["recall"] for p in POLICIES] for c in CHAINS], dtype=float)
precision = [scores[c, p]["precision"] for c in CHAINS for p in POLICIES]
clean = scores["none", TARGET]
survives = [c for c in CHAINS if c != "none" and scores[c, TARGET]["recall"] == 1.0]
hurt = {
    c: min(scores[c, p]["recall"] for p in POLICIES)
    for c in CHAINS
    if min(scores[c, p]["recall"] for p in POLICIES) < 1
}
worst_chain = min(hurt, key=hurt.get) if hurt else None

points = [
    f"With no evasion, dpi found {percent(clean['recall'], 0)} of the planted attacks ({clean['expected']} "
    f"expected alerts from {RULE_SET}) with a precision of {percent(clean['precision'], 0)}: no false alarm.",
    f"Cutting content into tiny segments or fragments, reordering or duplicating them did not hide anything "
    f"when the scanner reassembles like the target host: {len(survives)} of {len(CHAINS) - 1} evasions were "
    "fully detected.",
]
if worst_chain:
    wrong = [p for p in POLICIES if scores[worst_chain, p]["recall"] < 1]
    points.append(
        f"Overlapping decoys did hide attacks from a scanner set for another operating system: with "
        f"'{worst_chain}', recall fell to {percent(hurt[worst_chain], 0)} for scanners using the "
        f"{', '.join(wrong)} policy. Telling the scanner which systems it protects (host-os-policy) is not optional."
    )
points.append(
    f"Precision stayed at {percent(min(p for p in precision if p is not None), 0)} or above in every run: "
    "evasions made dpi miss attacks, never invent them."
)
findings_box(points, title="Findings: detection quality and evasion")

# %% [markdown]
# ## 1. Recall for each evasion and each scanner policy
#
# Each cell is the share of the planted attacks found, for captures with that evasion applied,
# scanned with the scanner set to that reassembly policy. The attacks were aimed at BSD hosts.

# %%
fig, ax = plt.subplots(figsize=(8, 0.45 * len(CHAINS) + 1.6))
image = ax.imshow(recall, cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
ax.set_xticks(range(len(POLICIES)), [f"scanner: {p}" for p in POLICIES], rotation=30, ha="right")
ax.set_yticks(range(len(CHAINS)), CHAINS)
for i in range(len(CHAINS)):
    for j in range(len(POLICIES)):
        ax.text(j, i, f"{recall[i, j]:.2f}", ha="center", va="center", fontsize=8)
fig.colorbar(image, ax=ax, label="recall (share of attacks found)")
ax.set_title(f"Recall by evasion and scanner policy (target hosts: {TARGET})")
show(fig, MACHINE)

# %% [markdown]
# ## 2. The numbers behind the figure
#
# "Visible" is how many of the expected alerts a scanner with that policy could see at all,
# according to the generator's labels; a scanner that finds all it can see is working correctly,
# and the rest is the evasion's success.

# %%
print(f"{'evasion':<18} {'scanner':<9} {'precision':>9} {'recall':>7} {'visible':>9}")
for (chain, policy), s in scores.items():
    p = "-" if s["precision"] is None else f"{s['precision']:.2f}"
    r = "-" if s["recall"] is None else f"{s['recall']:.2f}"
    print(f"{chain:<18} {policy:<9} {p:>9} {r:>7} {s['visible']:>4}/{s['expected']:<4}")

# %% [markdown]
# ## Method and limits
#
# * **Traffic and answers** come from `dpi gen`: a realistic protocol mix in which a tenth of the
#   connections carry the content of a rule; the label file records which rule should fire on which
#   connection, worked out by a reference matcher over the generated content (so a rule that rightly
#   fires on ordinary traffic counts as expected, not as a false alarm).
# * **Scores** come from `dpi eval`, per connection and rule: several alerts for the same attack on
#   the same connection count once.
# * **Evasions** follow fragroute and Ptacek and Newsham (1998): tiny TCP segments, small windows,
#   out-of-order and duplicate segments, overlapping segments with decoy data, tiny IPv4 and IPv6
#   fragments, out-of-order and overlapping fragments. Only rules made of plain content strings can
#   be planted; rules with regular expressions or byte tests are not part of this measurement.
# * **Policies**: the scanner's reassembly policy is set with `--set stream.policy=...` and
#   `defrag.policy=...`; Suricata's host-os-policy sets it per host in the same way.
# * The same evasions against another system (Suricata, commercial products) can be scored with
#   the same captures and `dpi eval` on that system's EVE output.
