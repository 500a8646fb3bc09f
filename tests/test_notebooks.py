"""Execute every chapter with small parameters (quick=True): a broken chapter fails the tests."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from execute_notebooks import chapters, execute  # noqa: E402


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_chapter_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_FIGURES", str(tmp_path / "figures"))
    out = execute(path, tmp_path, {"quick": True})
    assert out.exists()
    assert list((tmp_path / "figures").glob("*.png")), "the chapter saved no figure"
