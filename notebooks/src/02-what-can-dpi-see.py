# %% [markdown]
# # What can DPI still see?
#
# Deep packet inspection reads the content of traffic. Encryption (TLS, the "s" in https) hides
# that content. This notebook generates traffic with a growing share of TLS connections, measures
# how much of it `dpi` can still read as plaintext and how many alerts it still raises, and sorts a
# real rule set by what each rule needs to see: readable content, or only addresses, ports and the
# unencrypted start of a TLS connection.

# %% tags=["parameters"]
SMALL = False  # True: small inputs, for a quick check (CI runs it so)

# %%
import io
import json
import tempfile
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

from dpi.bench.machine import machine_info
from dpi.evaluation import evaluate
from dpi.gen.generator import GenConfig, generate, write_generated
from dpi.pipeline import scan
from dpi.report import findings_box, percent, show
from dpi.rules import load_rules

REPO = Path.cwd()
SAMPLE = str(REPO / "rules" / "dpi-sample.rules")
ET_OPEN = REPO.parent / "shared" / "data" / "rules" / "et-open.rules"
MACHINE = machine_info()
FLOWS = 300 if SMALL else 3000
SHARES = [0.0, 0.5, 0.9] if SMALL else [0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.99]
work = Path(tempfile.mkdtemp(prefix="dpi-nb-"))

rows = []
for share in SHARES:
    generated = generate(GenConfig(flows=FLOWS, seed=2, rules=[SAMPLE], tls_share=share, planted=0))
    pcap = work / f"tls-{share}.pcap"
    write_generated(generated, pcap, work / f"tls-{share}.labels")
    out = io.StringIO()
    result = scan([str(pcap)], [SAMPLE], out)
    alerts = [e for e in map(json.loads, out.getvalue().splitlines()) if e["event_type"] == "alert"]
    report = evaluate(generated.labels, alerts).report
    alerted_flows = {(a["src_ip"], a["src_port"], a["dest_ip"], a["dest_port"]) for a in alerts}
    rows.append(
        {
            "tls_share": share,
            "plaintext_share": report["inspectable"]["plaintext_share"],
            "alerted_flows_share": len(alerted_flows) / FLOWS,
            "alerts": len(alerts),
            "recall": report["recall"],
            "tls_plaintext": report["inspectable"]["by_app"].get("tls", {}),
        }
    )
clear, dark = rows[0], rows[-1]
tls_bytes = dark["tls_plaintext"]
tls_visible = tls_bytes.get("plaintext_bytes", 0) / max(tls_bytes.get("payload_bytes", 1), 1)

# what each rule of a real rule set needs to see
rules_file = str(ET_OPEN) if ET_OPEN.exists() else SAMPLE
rule_set = "Emerging Threats Open" if ET_OPEN.exists() else "the bundled sample rule set"
ruleset = load_rules(rules_file)
kinds = Counter()
for rule in ruleset:
    if rule.payload:
        kinds["reads payload bytes"] += 1
    else:
        kinds["addresses, ports and flags only"] += 1
for skipped in ruleset.skipped:
    reason = skipped.reason.lower()
    keyword = (skipped.keyword or "").lower()
    if "'tls'" in reason or keyword.startswith(("tls", "ja3", "ja4", "ssl_")):
        kinds["TLS handshake metadata (name, certificate)"] += 1
    elif "protocol" in reason or "app-layer" in reason:
        kinds["decoded application data (HTTP, DNS, ...)"] += 1
    else:
        kinds["other (not loadable here)"] += 1
total_rules = sum(kinds.values())
content_rules = kinds["reads payload bytes"] + kinds["decoded application data (HTTP, DNS, ...)"]
metadata_rules = kinds["TLS handshake metadata (name, certificate)"]
header_rules = kinds["addresses, ports and flags only"]

findings_box(
    [
        f"With no encrypted traffic, {percent(clear['plaintext_share'])} of payload bytes are readable; when "
        f"{percent(dark['tls_share'], 0)} of connections use TLS, only {percent(dark['plaintext_share'])} are.",
        f"The share of connections on which the sample rules raise an alert falls from "
        f"{percent(clear['alerted_flows_share'])} to {percent(dark['alerted_flows_share'])} over the same range: "
        "what cannot be read cannot be matched.",
        f"Within a TLS connection, {percent(tls_visible)} of the bytes stay readable: the opening handshake, "
        "which names the server being contacted. Everything after it is ciphertext.",
        f"Of the {total_rules:,} rules of {rule_set}, {content_rules:,} need readable content (payload bytes, or "
        f"decoded HTTP, DNS and other application fields) and go blind on encrypted traffic; {metadata_rules:,} look only at TLS handshake metadata such as the server name "
        f"(not inspected by this version of dpi); {header_rules:,} look only at addresses, ports and flags and see "
        "encrypted traffic as well as any other.",
    ],
    title="Findings: what can DPI still see?",
)

# %% [markdown]
# ## 1. Readable bytes as encryption grows
#
# Each point is a generated capture of the same protocol mix (web, mail, name lookups, other
# traffic) in which a given share of connections is TLS. "Readable" counts the payload bytes that
# are not ciphertext: everything of unencrypted protocols, and the handshake of TLS connections.

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
x = [100 * r["tls_share"] for r in rows]
ax.plot(
    x, [100 * r["plaintext_share"] for r in rows], marker="o", label="payload bytes readable as plaintext"
)
ax.plot(x, [100 * r["alerted_flows_share"] for r in rows], marker="s", label="connections with an alert")
ax.set_xlabel("connections using TLS, %")
ax.set_ylabel("%")
ax.set_ylim(0, 105)
ax.set_title("What DPI can read, and match, as encryption grows")
ax.legend()
show(fig, MACHINE)

# %% [markdown]
# ## 2. What the rules of a real rule set need to see
#
# Rules are sorted by the data they inspect. Rules on readable payload bytes are blind once the
# payload is encrypted. Rules on TLS handshake metadata still work, because the handshake is not
# encrypted (this version of `dpi` does not decode it and skips them, saying so). Rules on
# addresses, ports and flags are unaffected by encryption.

# %%
fig, ax = plt.subplots(figsize=(8, 3.8))
names = list(kinds)
ax.barh(names, [kinds[n] for n in names], color="#3b6ea8")
for y, n in enumerate(names):
    ax.text(kinds[n], y, f" {kinds[n]:,}", va="center", fontsize=9)
ax.set_xlabel("rules")
ax.set_title(f"{rule_set}: what each rule inspects")
ax.invert_yaxis()
show(fig, MACHINE)

# %% [markdown]
# ## Method and limits
#
# * **Traffic** comes from `dpi gen` (`dpi.gen.generator.generate`): HTTP/1.1, DNS over UDP and TCP,
#   TLS 1.3, SMTP and other TCP and UDP traffic, with a fixed seed; only the TLS share changes
#   between captures. TLS 1.3 encrypts everything after the two "hello" messages, including the
#   server's certificate; older TLS versions leave the certificate readable too.
# * **Readable bytes** are counted by the generator, which knows which bytes it encrypted; the
#   alerts come from scanning each capture with the bundled sample rules (`dpi scan`).
# * **Rule categories** follow what `dpi rules check` reports: rules that load, with or without
#   payload keywords, and rules skipped because they inspect application-layer fields. A rule on
#   payload bytes may still match the unencrypted handshake; few are written to.
# * Real networks differ in their mix; the direction of the result does not: every point of
#   encrypted share removes content from inspection.
