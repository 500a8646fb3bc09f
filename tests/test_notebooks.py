"""Execute every chapter with small parameters (quick=True), then render them as a book.

A broken chapter, a chapter that saves no figure, or a book that does not render fails the tests.
The chapters share one cache directory (as in a real build) that starts empty.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import chapters, execute  # noqa: E402
from conftest import build_warnings, stage_book  # noqa: E402

CHAPTERS = chapters()


@pytest.fixture(scope="session")
def quick_book(tmp_path_factory):
    book = tmp_path_factory.mktemp("quickbook")
    (book / "generated").mkdir()
    return book


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("nbcache")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_runs(path, quick_book, shared_cache, monkeypatch):
    figures = quick_book / "figures" / path.stem
    monkeypatch.setenv("PROBELIB_FIGURES", str(figures))
    monkeypatch.setenv("PROBELIB_CACHE", str(shared_cache))
    out = execute(path, quick_book / "generated", {"quick": True})
    assert out.exists()
    assert list(figures.glob("*.png")), "the chapter saved no figure"


def test_book_renders_every_chapter(quick_book):
    """jupyter-book renders the executed chapters; each chapter page shows its figures."""
    toc = (ROOT / "_toc.yml").read_text()
    listed = [n for n in re.findall(r"file:\s*generated/(\S+)", toc) if n != "findings"]
    assert sorted(listed) == sorted(p.stem for p in CHAPTERS), "the _toc.yml and notebooks/ disagree"
    if not all((quick_book / "generated" / f"{name}.ipynb").exists() for name in listed):
        pytest.skip("some chapters failed to execute (reported above)")
    stage_book(quick_book)  # writes the page "Findings at a glance" from the chapters' records
    assert "| P1-4B |" in (quick_book / "generated" / "findings.md").read_text()
    jb = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jb), "build", str(quick_book)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    citation_problems = [w for w in build_warnings(proc.stdout + proc.stderr)
                         if "bibtex" in w.lower() or "citation" in w.lower()]
    assert not citation_problems, "\n".join(citation_problems)
    html = quick_book / "_build" / "html"
    for name in listed:
        page = (html / "generated" / f"{name}.html").read_text()
        assert "<img" in page, f"{name}.html shows no figure"


def test_parallel_execution_writes_every_chapter_and_timings(tmp_path, monkeypatch):
    """``execute_notebooks.py --jobs 2`` runs chapters in child processes, one thread each."""
    from execute_notebooks import main

    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PROBELIB_FIGURES", str(tmp_path / "figures"))
    out = tmp_path / "generated"
    assert main(["01", "02", "--quick", "--jobs", "2", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.ipynb")) == ["01_encoding_models.ipynb", "02_predictivity.ipynb"]
    timings = json.loads((out / ".timings-quick.json").read_text())
    assert set(timings) == {"01_encoding_models", "02_predictivity"}
    assert all(t > 0 for t in timings.values())
