"""Every figure a chapter saves is a numbered figure of the book, with a caption, referenced from the text.

A chapter draws a figure in a code cell that calls ``savefig(fig, "NN_name")``; the cell's header
carries myst-nb's figure metadata (``mystnb={"figure": {"name": "fig-NN-name", "caption": ...}}``),
which makes the cell's image a numbered figure with that label and caption. Checked on the jupytext
sources, without executing or building anything.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
SAVEFIG = re.compile(r'savefig\(fig, "(\d\d)_([^"]+)"\)')
NUMREF = re.compile(r"\{numref\}`([^`]+)`")


def figure_cells(path):
    import jupytext

    cells = jupytext.read(path).cells
    return cells, [c for c in cells if c.cell_type == "code" and SAVEFIG.search(c.source)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_saved_figure_is_a_numbered_figure_referenced_in_the_text(path):
    cells, drawn = figure_cells(path)
    prose = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    for cell in drawn:
        names = SAVEFIG.findall(cell.source)
        assert len(names) == 1, f"one figure per cell, so that it gets one label: {names}"
        label = "fig-{}-{}".format(*names[0])
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        assert figure.get("name") == label, f"{label}: no figure metadata with this name in the cell header"
        assert len(figure.get("caption", "")) > 40, f"{label}: no caption"
        assert label in NUMREF.findall(prose), f"{label} is not referenced from the text with {{numref}}"


def test_how_computed_links_every_figure():
    labels = {"fig-{}-{}".format(*m) for path in CHAPTERS for cell in figure_cells(path)[1]
              for m in SAVEFIG.findall(cell.source)}
    linked = set(NUMREF.findall((ROOT / "book" / "how_computed.md").read_text()))
    assert labels == linked, f"missing: {sorted(labels - linked)}; unknown: {sorted(linked - labels)}"
