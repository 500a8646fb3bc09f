"""End-to-end benchmark: cold and warm build time of the demo book (opt-in: slow).

Times ``python scripts/execute_notebooks.py --out <tmp>`` (every chapter executed with papermill)
with ``PROBELIB_CACHE`` pointing to a new empty directory (cold: features, readouts and sweeps
are computed), then again with the same, now filled, cache (warm). The ratio is cold / warm.
Checked: both builds succeed and produce the same notebooks; the text outputs (streams and
``text/plain`` results, tqdm progress bars removed and printed durations such as "in 3 s"
masked) of every code cell are compared and the number of identical cells is reported (a
difference is reported, not fatal).

If the script or the chapters are not usable yet, the row says so instead of failing the run.

Run: ``python benchmarks/run.py --only book`` (or ``--with-book``); ``book_quick=1`` builds with
the small test parameters, ``book_repeats=R`` repeats the cold + warm pair.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Check, Row, error_row, log, median, skipped_row, timed  # noqa: E402

SCRIPT = ROOT / "scripts" / "execute_notebooks.py"
NOTEBOOKS = ROOT / "notebooks"


def _build(out_dir: Path, cache_dir: Path, quick: bool) -> tuple[float, subprocess.CompletedProcess]:
    """Execute every chapter into ``out_dir`` with ``PROBELIB_CACHE=cache_dir``; (seconds, process)."""
    cmd = [sys.executable, str(SCRIPT), "--out", str(out_dir)] + (["--quick"] if quick else [])
    env = {**os.environ, "PROBELIB_CACHE": str(cache_dir), "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0",
           "PYTHONPATH": str(ROOT)}
    return timed(lambda: subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True))


#: A tqdm progress bar ("desc:  50%|█████     | 1/2 [00:00<00:00,  1.50it/s]"): its timings differ
#: between any two runs, so bars are removed before outputs are compared.
_PROGRESS_BAR = re.compile(r"[^\n\r|]*\d+%\|[^|\n]*\|\s*\d+/\d+\s*\[[^\]\n]*\]")
#: A printed duration ("fitted in 3 s", "run time: 12.5 s"): masked before outputs are compared.
_DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?s\b")


def _text_outputs(path: Path) -> list[str]:
    """Per code cell, the stream and text/plain outputs of an executed notebook.

    Progress bars are removed and printed durations masked: they differ between any two runs.
    """
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        parts = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out and "text/plain" in out["data"]:
                parts.append(out["data"]["text/plain"])
            elif out.get("output_type") == "error":
                parts.append(f"{out.get('ename')}: {out.get('evalue')}")
        cells.append(_DURATION.sub("<t> s", _PROGRESS_BAR.sub("", "".join(parts))).strip())
    return cells


def compare_builds(cold: Path, warm: Path) -> Check:
    """Same notebooks, and how many code cells have identical text outputs in both builds."""
    cold_nbs = sorted(p.name for p in cold.glob("*.ipynb"))
    warm_nbs = sorted(p.name for p in warm.glob("*.ipynb"))
    if not cold_nbs or cold_nbs != warm_nbs:
        return Check(False, f"different notebooks: cold {cold_nbs}, warm {warm_nbs}")
    same = total = 0
    differing: list[str] = []
    for name in cold_nbs:
        a, b = _text_outputs(cold / name), _text_outputs(warm / name)
        if len(a) != len(b):
            return Check(False, f"{name}: {len(a)} vs {len(b)} code cells")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            total += 1
            if x == y:
                same += 1
            else:
                differing.append(f"{Path(name).stem}[{i}]")
    detail = f"{len(cold_nbs)} notebooks; {same}/{total} code cells with identical text output"
    if differing:
        return Check(None, detail + f" (differ: {', '.join(differing[:6])}{'...' if len(differing) > 6 else ''})")
    return Check(True, detail)


def _chapter_times(stdout: str) -> dict[str, float]:
    """``{chapter: seconds}`` from the ``<stem>: <t> s`` lines execute_notebooks.py prints."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(\d\d_\S+): ([0-9.]+) s$", stdout, flags=re.MULTILINE)}


def run_book(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """Cold (empty cache) and warm (filled cache) builds of every chapter, ``book_repeats`` times."""
    quick, n_pairs = bool(sizes["book_quick"]), max(1, sizes["book_repeats"])
    params = {"quick": quick, "pairs": n_pairs}
    if not SCRIPT.exists():
        return [skipped_row("book", f"{SCRIPT.relative_to(ROOT)} does not exist yet", params)]
    chapters = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if not chapters:
        return [skipped_row("book", "no chapters (notebooks/NN_*.py) yet", params)]
    params["chapters"] = [p.stem for p in chapters]
    cold_times, warm_times, check, per_chapter = [], [], None, {}
    for r in range(n_pairs):
        with tempfile.TemporaryDirectory(prefix="bench_book_") as tmp:
            tmp_path = Path(tmp)
            cache = tmp_path / "cache"
            cache.mkdir()
            for kind, times in (("cold", cold_times), ("warm", warm_times)):
                log(f"[book] {kind} build {r + 1}/{n_pairs} ({len(chapters)} chapters, quick={quick})")
                seconds, proc = _build(tmp_path / kind, cache, quick)
                if proc.returncode != 0:
                    done = _chapter_times(proc.stdout)
                    failed = next((c.stem for c in chapters if c.stem not in done), "?")
                    lines = (proc.stderr or proc.stdout).strip().splitlines()
                    error = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
                    built = ", ".join(f"{stem} {t:.0f} s" for stem, t in done.items()) or "none"
                    params["chapter_seconds"] = {kind: [done]}
                    return [error_row("book", f"{kind} build failed after {seconds:.0f} s in chapter {failed}: "
                                              f"{error.strip()[-200:]} (built before it: {built})", params)]
                times.append(seconds)
                per_chapter.setdefault(kind, []).append(_chapter_times(proc.stdout))
                log(f"[book]   {seconds:.1f} s")
            if check is None:
                check = compare_builds(tmp_path / "cold", tmp_path / "warm")
                log(f"[book] check: {check.detail}")
            # the size of what warm builds reuse
            cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
            params.setdefault("cache_mb", round(cache_bytes / 2**20, 1))
    assert check is not None
    cold_s, warm_s = median(cold_times), median(warm_times)
    chapter_notes = "; ".join(f"{stem} {per_chapter['cold'][0].get(stem, float('nan')):.0f}/"
                              f"{per_chapter['warm'][0].get(stem, float('nan')):.0f} s"
                              for stem in params["chapters"])
    params["chapter_seconds"] = per_chapter
    return [Row("book", "warm build (cache filled)", "cold build (empty PROBELIB_CACHE)", warm_s, cold_s,
                cold_s / warm_s if warm_s > 0 else None, "-", None, check.passed, check.detail,
                notes=f"scripts/execute_notebooks.py{' --quick' if quick else ''}; per chapter cold/warm: "
                      f"{chapter_notes}; cache {params['cache_mb']} MB.",
                params=params, candidate_times=warm_times, baseline_times=cold_times)]


COMPARISONS = {"book": run_book}

if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", *COMPARISONS, *sys.argv[1:]]))
