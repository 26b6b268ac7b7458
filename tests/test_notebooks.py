"""The evaluation notebooks: the committed ones are executed, in step with their sources, open with
a findings box, hold a figure and end with their method and limits; and every notebook executes
with small parameters (a cell that raises fails the test)."""

from __future__ import annotations

import pytest

from dpi.notebooks import NOTEBOOK_DIR, build, run_notebooks, sources

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

SOURCES = sources()
NAMES = [s.stem for s in SOURCES]


def _outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.get("outputs", [])


def _check_report(nb, name):
    outputs = list(_outputs(nb))
    assert not [o for o in outputs if o.output_type == "error"], name
    rich = [o for o in outputs if "data" in o]
    assert rich, f"{name}: no output"
    # the first thing a reader sees is the findings box, with numbers in it
    first = rich[0]["data"].get("text/html", "")
    assert 'class="findings"' in first, f"{name}: does not open with a findings box"
    assert any(ch.isdigit() for ch in first.split("</b>", 1)[-1]), f"{name}: findings without numbers"
    assert any("image/png" in o["data"] for o in rich), f"{name}: no figure"
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[0].source.startswith("# "), f"{name}: no title"
    last = markdown[-1].source
    assert last.startswith("## Method and limits"), f"{name}: does not end with method and limits"


def test_there_are_four_notebooks():
    assert len(SOURCES) == 4


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_committed_notebooks_are_executed_and_current(source):
    path = NOTEBOOK_DIR / f"{source.stem}.ipynb"
    assert path.is_file(), f"{path} is missing: run `dpi notebooks`"
    nb = nbformat.read(path, as_version=4)
    built = build(source)
    assert [c.source for c in nb.cells] == [c.source for c in built.cells], (
        f"{path.name} is stale: its source changed; run `dpi notebooks --only {source.stem}`"
    )
    _check_report(nb, source.stem)
    page = NOTEBOOK_DIR / "html" / f"{source.stem}.html"
    text = page.read_text(encoding="utf-8")
    assert 'class="findings"' in text and "data:image/png;base64" in text
    assert "import matplotlib" not in text  # the HTML is for readers: the code is hidden


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_with_small_parameters(tmp_path, name):
    (result,) = run_notebooks([name], small=True, out_dir=tmp_path)
    nb = nbformat.read(result.notebook, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    _check_report(nb, name)
    assert result.html is not None and result.html.is_file()
