"""What the evaluation notebooks share: the findings box, the machine line under every plot, and
plain-language number formatting."""

from __future__ import annotations

import html
from datetime import UTC, datetime

from dpi.bench.machine import machine_info

FINDINGS_STYLE = (
    "border:2px solid #1b6e3a;border-radius:6px;padding:0.8em 1.2em;background:#f3faf5;"
    "font-size:1.05em;line-height:1.45"
)


def findings_box(points: list[str], title: str = "Findings"):
    """The box each notebook opens with: a few sentences in plain language, with the numbers."""
    from IPython.display import HTML

    items = "".join(f"<li>{html.escape(p)}</li>" for p in points)
    return HTML(
        f'<div class="findings" style="{FINDINGS_STYLE}"><b>{html.escape(title)}</b><ul>{items}</ul></div>'
    )


def machine_line(info: dict | None = None) -> str:
    """'Measured on <CPU>, <n> cores, <m> GiB, <date>': the caption every plot carries."""
    info = info or machine_info()
    memory = info.get("memory_bytes")
    mem = f", {memory / 2**30:.0f} GiB" if memory else ""
    cores = info.get("usable_cores") or info.get("cores")
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    return f"Measured on {info.get('cpu_model') or info.get('machine')}, {cores} cores{mem}, {when}"


def caption(fig, info: dict | None = None) -> None:
    """Put the machine line at the foot of a matplotlib figure."""
    fig.text(0.01, 0.005, machine_line(info), fontsize=8, color="#555555", ha="left", va="bottom")


def show(fig, info: dict | None = None) -> None:
    """Lay the figure out with room for the machine caption at its foot, caption it, show it."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=(0, 0.04, 1, 1))
    caption(fig, info)
    plt.show()


def percent(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


__all__ = ["caption", "findings_box", "machine_line", "percent", "show"]
