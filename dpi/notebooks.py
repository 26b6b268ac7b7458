"""The evaluation notebooks: built from their percent-format sources (``notebooks/src/*.py``),
executed with nbclient, saved executed (outputs and figures in the .ipynb) and exported to HTML
with the code hidden, for readers who are not engineers.

A source is Python with ``# %%`` cell markers (``# %% [markdown]`` for text, its lines commented
out; ``# %% tags=["parameters"]`` for the cell of parameters). ``small=True`` adds a cell after the
parameters that sets ``SMALL = True``, as papermill injects parameters: CI runs every notebook that
way, on small inputs.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"  # in a source checkout
_MARKER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


class NotebookError(RuntimeError):
    """A notebook cell raised: names the notebook and the cell."""


def notebook_dir() -> Path:
    """The notebooks folder: the current directory's (a repository root), else the source checkout's
    (an installed package has none)."""
    for candidate in (Path.cwd() / "notebooks", NOTEBOOK_DIR):
        if (candidate / "src").is_dir():
            return candidate
    raise NotebookError("no notebooks/src here: run `dpi notebooks` from the repository root")


def sources(directory: Path | None = None) -> list[Path]:
    return sorted(((directory or notebook_dir()) / "src").glob("*.py"))


def build(source: Path):
    """The notebook of a percent-format source (not executed)."""
    import nbformat

    cells = []
    kind, tags, lines = None, [], []

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "markdown":
            text = "\n".join(
                line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines()
            )
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in source.read_text(encoding="utf-8").splitlines():
        m = _MARKER.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("markdown") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def inject_small(nb) -> None:
    """A cell after the parameters cell that sets SMALL = True (papermill's way)."""
    import nbformat

    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            injected = nbformat.v4.new_code_cell("SMALL = True  # injected: small inputs")
            injected.metadata["tags"] = ["injected-parameters"]
            nb.cells.insert(i + 1, injected)
            return
    raise NotebookError("the notebook has no cell tagged 'parameters'")


def execute(nb, name: str, cwd: Path, timeout: int = 1200):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        raise NotebookError(f"{name}: a cell raised:\n{exc}") from None
    return nb


def export_html(nb, path: Path) -> None:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    exporter.exclude_input = True  # readers see text, numbers and figures; the code is in the .ipynb
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    path.write_text(body, encoding="utf-8")


@dataclass
class RunResult:
    name: str
    seconds: float
    notebook: Path | None
    html: Path | None


def run_notebooks(
    names: list[str] | None = None,
    small: bool = False,
    out_dir: Path | None = None,
    html: bool = True,
    directory: Path | None = None,
) -> list[RunResult]:
    """Build and execute the notebooks (all, or those whose name starts with one of ``names``);
    write the executed .ipynb and its HTML into ``out_dir`` (default: the notebooks folder and its
    html/ folder)."""
    import nbformat

    directory = directory or notebook_dir()
    out = Path(out_dir) if out_dir is not None else directory
    results = []
    for source in sources(directory):
        name = source.stem
        if names and not any(name.startswith(n) for n in names):
            continue
        t0 = time.perf_counter()
        nb = build(source)
        if small:
            inject_small(nb)
        execute(nb, name, cwd=directory.parent)
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.ipynb"
        nbformat.write(nb, path)
        page = None
        if html:
            (out / "html").mkdir(exist_ok=True)
            page = out / "html" / f"{name}.html"
            export_html(nb, page)
        results.append(RunResult(name, time.perf_counter() - t0, path, page))
    return results


__all__ = [
    "NotebookError",
    "RunResult",
    "build",
    "execute",
    "export_html",
    "inject_small",
    "notebook_dir",
    "run_notebooks",
    "sources",
]
