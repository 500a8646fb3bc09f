"""Execute every chapter notebook (jupytext percent .py) with papermill into book/generated/.

    python scripts/execute_notebooks.py                 # full demo parameters (for the book)
    python scripts/execute_notebooks.py --quick         # small parameters (what the tests run)
    python scripts/execute_notebooks.py 03 -p dataset nsd -p nsd_root /data/nsd
    python scripts/execute_notebooks.py --jobs 1        # one chapter at a time, all cores each

Chapters run ``--jobs`` at a time (default: one per CPU core, at most 4), each kernel with
``cores // jobs`` torch/BLAS threads (no more than ``$OMP_NUM_THREADS`` if set); on 2 cores two
single-threaded kernels finish the book about twice as fast as one two-threaded kernel. The
longest chapters (by the last run's timings) start first.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_DEFAULT_JOBS = 4  # each kernel holds its models and data in memory


def chapters(selection: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    if selection:
        paths = [p for p in paths if any(p.name.startswith(s) or p.stem == s for s in selection)]
        if not paths:
            raise SystemExit(f"no chapter matches {selection}; chapters: {[p.stem for p in sorted(NOTEBOOKS.glob('*.py'))]}")
    return paths


def execute(path: Path, out_dir: Path, parameters: dict) -> Path:
    """Convert ``path`` to a notebook, run it with papermill (cwd = out_dir), write out_dir/<stem>.ipynb."""
    import jupytext
    import nbformat
    import papermill

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


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _run_one(path: Path, out: Path, params: list[list[str]], quick: bool, threads: int) -> tuple[float, str]:
    """Execute one chapter in a child process with ``threads`` torch/BLAS threads; (seconds, error)."""
    cmd = [sys.executable, __file__, path.stem, "--jobs", "1", "--out", str(out)]
    cmd += ["--quick"] if quick else []
    for name, value in params:
        cmd += ["-p", name, value]
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARIABLES})
    t = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    error = "" if proc.returncode == 0 else (proc.stdout + proc.stderr)[-4000:]
    return time.time() - t, error


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapters", nargs="*", help="chapter prefixes (default: all)")
    ap.add_argument("--quick", action="store_true", help="small parameters (tests)")
    ap.add_argument("--out", type=Path, default=ROOT / "book" / "generated")
    ap.add_argument("--jobs", type=int, default=min(_cores(), MAX_DEFAULT_JOBS),
                    help=f"chapters executed at once (default: CPU cores, at most {MAX_DEFAULT_JOBS})")
    ap.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    paths = chapters(args.chapters)
    total = time.time()
    if args.jobs == 1 or len(paths) == 1:
        params = {k: _value(v) for k, v in args.p}
        if args.quick:
            params.setdefault("quick", True)
        for path in paths:
            t = time.time()
            execute(path, args.out, params)
            print(f"{path.stem}: {time.time() - t:.1f} s", flush=True)
        print(f"all chapters: {time.time() - total:.1f} s")
        return 0

    # longest first (timings of the last run with the same --quick), so no core idles at the end
    timings_file = args.out / (".timings-quick.json" if args.quick else ".timings.json")
    try:
        last = json.loads(timings_file.read_text())
    except (OSError, ValueError):
        last = {}
    paths.sort(key=lambda p: (-last.get(p.stem, 0.0), -int(p.stem[:2])))
    jobs = min(args.jobs, len(paths))
    threads = max(1, _cores() // jobs)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():  # a limit set by the user stays a limit
        threads = max(1, min(threads, int(os.environ["OMP_NUM_THREADS"])))
    print(f"{len(paths)} chapters, {jobs} at a time, {threads} thread(s) each", flush=True)
    failed = []
    with ThreadPoolExecutor(jobs) as pool:
        futures = {p: pool.submit(_run_one, p, args.out, args.p, args.quick, threads) for p in paths}
        for path, future in futures.items():
            seconds, error = future.result()
            last[path.stem] = round(seconds, 1)
            print(f"{path.stem}: {seconds:.1f} s{'  FAILED' if error else ''}", flush=True)
            if error:
                failed.append(path.stem)
                print(error, file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    timings_file.write_text(json.dumps(last, indent=1, sort_keys=True))
    print(f"all chapters: {time.time() - total:.1f} s")
    if failed:
        print(f"failed chapters: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
