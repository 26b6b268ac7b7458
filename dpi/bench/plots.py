"""PNG plots of a `dpi bench` result: each labelled with units and the machine it was measured on."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _machine(result: dict) -> str:
    m = result["machine"]
    return f"{m['cpu_model']}, one core"


def _line_rate_marks(ax, result: dict, values: list[float], links=(1, 10)) -> None:
    """Horizontal lines at the captured-byte rate of full 1 and 10 GbE links at this packet mix, on a
    log scale, so that a figure far below line rate and the line rate both show."""
    marks = [r for r in result["line_rates"] if r["link_gbps"] in links and r["line_gbps"]]
    positive = [v for v in values if v and v > 0]
    if not marks or not positive:
        return
    ax.set_yscale("log")
    ax.set_ylim(min(positive) / 2, max(r["line_gbps"] for r in marks) * 2)
    for row in marks:
        ax.axhline(row["line_gbps"], linestyle="--", linewidth=1, color="grey")
        where = (0.01, row["line_gbps"])
        text = f"{row['link_gbps']} GbE line rate"
        ax.annotate(text, where, xycoords=("axes fraction", "data"), va="bottom", fontsize=8, color="grey")


def write_plots(result: dict, out: Path) -> list[Path]:
    plt = _pyplot()
    written = []

    fig, ax = plt.subplots(figsize=(7, 4))
    names = [*result["stages"], "end_to_end"]
    values = [(result["stages"].get(n) or result["end_to_end"])["gbps"] or 0 for n in names]
    ax.barh(names[::-1], values[::-1], color=["tab:red"] + ["tab:blue"] * (len(names) - 1))
    ax.set_xscale("log")  # stages differ by orders of magnitude
    ax.set_xlabel("throughput of captured bytes (Gbps, log scale), each stage alone")
    ax.set_title(f"Where the time goes\n{_machine(result)}", fontsize=10, pad=16)
    for row in result["line_rates"]:
        if row["link_gbps"] in (1, 10, 100) and row["line_gbps"]:
            ax.axvline(row["line_gbps"], linestyle="--", linewidth=1, color="grey")
            where, text = (row["line_gbps"], 1.0), f"{row['link_gbps']} GbE"
            ax.annotate(text, where, xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8)
    written.append(out / "stages.png")
    fig.savefig(written[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    axes = {
        "rules": ("rules", "rules loaded", True),
        "size": ("payload_len", "TCP payload per data segment (bytes)", False),
        "flows": ("flows", "concurrent flows", True),
    }
    for sweep, points in result["sweeps"].items():
        if not points:
            continue
        key, label, log = axes[sweep]
        fig, ax = plt.subplots(figsize=(7, 4))
        xs = [p[key] for p in points]
        ax.plot(xs, [p["gbps"] for p in points], marker="o", label="Gbps (captured bytes)")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("end-to-end throughput (Gbps)")
        if sweep == "size":
            ax.set_ylim(bottom=0)
            mpps = ax.twinx()
            mpps.plot(xs, [p["mpps"] for p in points], marker="s", color="tab:orange", label="Mpps")
            mpps.set_ylabel("packets (Mpps)")
            mpps.set_ylim(bottom=0)
            handles = ax.get_legend_handles_labels()[0] + mpps.get_legend_handles_labels()[0]
            ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
        else:
            _line_rate_marks(ax, result, [p["gbps"] for p in points])
            ax.set_ylabel("end-to-end throughput (Gbps, log scale)")
        ax.set_title(f"End-to-end throughput by {label}\n{_machine(result)}", fontsize=10)
        written.append(out / f"sweep_{sweep}.png")
        fig.savefig(written[-1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    return written
