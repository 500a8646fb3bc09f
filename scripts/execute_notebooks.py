"""Execute every chapter notebook (jupytext percent .py) with papermill into book/generated/.

    python scripts/execute_notebooks.py                 # full demo parameters (for the book)
    python scripts/execute_notebooks.py --quick         # small parameters (what the tests run)
    python scripts/execute_notebooks.py 03 -p dataset nsd -p nsd_root /data/nsd
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def chapters(selection: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
        if not paths:
            raise SystemExit(f"no chapter matches {selection}; chapters: {[p.stem for p in sorted(NOTEBOOKS.glob('*.py'))]}")
    return paths


def execute(path: Path, out_dir: Path, parameters: dict) -> Path:
    """Convert ``path`` to a notebook, run it with papermill (cwd = out_dir), write out_dir/<stem>.ipynb."""
    out_dir.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = out_dir / f"{path.stem}.ipynb"
    # the kernel must draw figures into the notebook (inline), whatever backend the caller uses
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars inside the rendered book
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{path.stem}.ipynb"
        nbformat.write(nb, src)
        papermill.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3",
                                   cwd=str(out_dir), progress_bar=False)
    return out


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter prefixes (default: all)")
    ap.add_argument("--quick", action="store_true", help="small parameters (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "book" / "generated")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args(argv)
    params = {k: _value(v) for k, v in args.p}
    if args.quick:
        params.setdefault("quick", True)
    total = time.time()
    for path in chapters(args.chapters):
        t = time.time()
        execute(path, args.out, params)
        print(f"{path.stem}: {time.time() - t:.1f} s", flush=True)
    print(f"all chapters: {time.time() - total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
