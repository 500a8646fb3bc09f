"""Run probelib's benchmarks (what ``make bench`` runs) and report medians and ratios.

    python benchmarks/run.py                          # every default comparison (a few minutes)
    python benchmarks/run.py --only fgsm ridge        # a selection
    python benchmarks/run.py --with-book              # defaults + the (slow) demo-book build
    python benchmarks/run.py --repeats 5 px=96 ridge_sizes=2000x100,20000x1000 nsd=full
    python benchmarks/run.py --list                   # comparisons and sizes
    python benchmarks/run.py --report                 # re-print / re-render the latest results

The comparisons of each benchmark module run in one subprocess (``--worker NAME ...``; a
comparison that raises becomes an error row) with ``--threads`` torch/BLAS threads (default 1:
on a shared 2-core machine one thread per process gives stable timings);
both sides are checked to give the same result before they are timed, then timed in
interleaved repeats. The table of medians and ratios (baseline / candidate, > 1 = probelib is
faster) is printed and written to ``benchmarks/results/latest.json`` and ``latest.md`` (which keep
the previous rows of comparisons not run this time, marked as such); the rows of each
comparison also go to ``benchmarks/results/<name>.json``.

Sizes are ``KEY=VALUE`` arguments (tuples as comma lists); see ``--list``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, RESULTS_DIR, Check, Row, error_row, format_table, log, machine_info,  # noqa: E402
                    median, merge_with_previous, set_threads, write_results)

BENCH_DIR = Path(__file__).resolve().parent

#: comparison name -> (module in benchmarks/, function(sizes, repeats) -> rows, description)
COMPARISONS: dict[str, tuple[str, str, str]] = {
    "fgsm": ("bench_attacks", "run_fgsm", "FGSM of V units over an eps grid vs the naive loop"),
    "pgd": ("bench_attacks", "run_pgd", "L2 PGD vs bare forward+backward and vs torchattacks PGDL2"),
    "subspace": ("bench_geometry", "run_subspace", "exact perturbation subspace vs jacobian + svd"),
    "subspace_curve": ("bench_geometry", "run_curve", "matrix-free subspace methods: similarity / time"),
    "ridge": ("bench_readouts", "run_ridge", "per-voxel ridge LOO vs sklearn RidgeCV"),
    "cache_key": ("bench_cache", "run_cache_key", "content key of a network vs the extraction it keys"),
    "score": ("bench_score", "run_score", "probelib score of one network on the demo: cold vs warm cache"),
    "study": ("bench_study", "run_study_all", "demo study: 2 workers vs 1, Slurm overhead, NSD projection"),
    "nsd": ("run", "run_nsd", "NSD ROI extraction vs whole-volume load (benchmarks/bench_nsd.py)"),
    "book": ("bench_book", "run_book", "cold / warm build of the demo book (opt-in, slow)"),
}
DEFAULT = [name for name in COMPARISONS if name != "book"]

#: Sizes (KEY=VALUE on the command line): default value and meaning.
SIZES: dict[str, tuple[Any, str]] = {
    "px": (64, "image side (pixels) for attacks and geometry"),
    "fgsm_images": (2, "images in the FGSM batch"),
    "fgsm_units": (64, "V: readout outputs probed by FGSM (also the PGD model's V)"),
    "fgsm_eps": (5, "size of the FGSM eps grid (1/255, 2/255, 4/255, ...)"),
    "pgd_images": (4, "images in the PGD batch"),
    "pgd_steps": (10, "PGD steps"),
    "pgd_rounds": (9, "minimum interleaved repeats of the PGD comparison (short runs, close calls)"),
    "pgd_eps": (1.0, "PGD L2 budget (pixels in [0, 1])"),
    "subspace_units": (100, "V for the exact subspace vs jacobian + svd"),
    "subspace_k": (10, "subspace dimension k"),
    "curve_units": ((100, 1000), "V values of the matrix-free accuracy/time curve"),
    "curve_k": (10, "subspace dimension k of the curve"),
    "power_iters": ((3, 10), "n_iter caps of method='power' on the curve (30 = its default)"),
    "randomized_iters": ((0, 2, 4), "power iterations of method='randomized' on the curve"),
    "curve_repeats": (1, "cap on the timed runs per curve point (informational; each costs seconds)"),
    "study_bench": ("studies/paper1_demo.toml", "study of the study_local / study_slurm rows"),
    "study_repeats": (2, "cold runs of each side of study_local (best of them; each takes under a minute)"),
    "slurm_batch": ((1, 8), "units per Slurm array task in the study_slurm rows"),
    "gpu_speedup": (40.0, "assumed GPU speed-up per forward+backward pass over one CPU thread here"),
    "score_model": ("timm:resnet18@layer3", "network@layer of the score row (untrained)"),
    "cache_images": (64, "images of the feature extraction that a network's cache key is timed against"),
    "ridge_n": (400, "training images N of the ridge fit"),
    "ridge_sizes": (("2000x100", "10000x1000"),
                    "DxV (features x voxels) of the ridge fits"),
    "ridge_alphas": (10, "size of the alpha grid (1e-2..1e7)"),
    "nsd": ("small", "NSD benchmark size: 'small' (150 trials, 2 sessions) or 'full' (bench_nsd defaults)"),
    "nsd_repeats": (1, "bench_nsd.py --repeats (one process per configuration and run)"),
    "book_quick": (0, "1: build the book with the small test parameters (--quick)"),
    "book_repeats": (1, "cold + warm build pairs"),
}


# ------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------

def _convert(key: str, text: str) -> Any:
    default = SIZES[key][0]
    if isinstance(default, tuple):
        kind = type(default[0])
        return tuple(kind(v) for v in text.split(",") if v)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    return type(default)(text)


def parse_sizes(items: list[str]) -> dict[str, Any]:
    """Default sizes updated by ``KEY=VALUE`` items."""
    sizes = {key: default for key, (default, _) in SIZES.items()}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SIZES:
            raise SystemExit(f"unknown size {item!r}; expected KEY=VALUE with KEY in: {', '.join(SIZES)}")
        try:
            sizes[key] = _convert(key, value)
        except ValueError:
            raise SystemExit(f"bad value for {key}: {value!r} (default {SIZES[key][0]!r})") from None
    if sizes["nsd"] not in ("small", "full"):
        raise SystemExit(f"nsd must be 'small' or 'full'; got {sizes['nsd']!r}")
    return sizes


# ------------------------------------------------------------------------------------------------
# NSD (wraps benchmarks/bench_nsd.py, which is run as is)
# ------------------------------------------------------------------------------------------------

def _nsd_equality_check(formats: list[str]) -> Check:
    """probelib's ROI readers return exactly the ROI voxels of a whole-volume load (tiny session)."""
    import h5py
    import nibabel as nib
    import numpy as np

    import bench_nsd
    from probelib.data import nsd

    shape, trials = (20, 24, 18), 40
    saved = nsd.TRIALS_PER_SESSION
    nsd.TRIALS_PER_SESSION = trials
    try:
        with tempfile.TemporaryDirectory(prefix="bench_nsd_check_") as tmp:
            files = bench_nsd.write_sessions(Path(tmp), shape, trials, 1, formats)
            ijk = bench_nsd.roi_voxels(shape, 300)
            i, j, k = ijk.T
            worst = 0.0
            for fmt in formats:
                path = files[fmt][0]
                if fmt == "hdf5":
                    roi = nsd._read_hdf5_voxels(path, ijk, shape, bench_nsd.TRIAL_BLOCK)
                    with h5py.File(path, "r") as f:
                        whole = f["betas"][()][:, k, j, i].T.astype(np.float64)
                else:
                    roi = nsd._read_nifti_voxels(path, ijk, shape, bench_nsd.TRIAL_BLOCK)
                    whole = nib.load(path).get_fdata()[i, j, k]
                if roi.shape != whole.shape:
                    return Check(False, f"{fmt}: ROI reader shape {roi.shape} vs whole {whole.shape}")
                worst = max(worst, float(np.max(np.abs(roi - whole))))
    finally:
        nsd.TRIALS_PER_SESSION = saved
    return Check(worst == 0.0, f"ROI reader == whole-volume selection (max |d| = {worst:g}, "
                               f"{shape} x {trials} test sessions)")


def run_nsd(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """Check the ROI readers, then run benchmarks/bench_nsd.py and turn its result into rows."""
    formats = ["nii", "hdf5"]
    check = _nsd_equality_check(formats)
    log(f"[nsd] check: {check.detail}")
    if check.passed is False:
        return [Row("nsd", "roi reader", "whole-volume load", None, None, None, "-", False, False,
                    check.detail)]
    if sizes["nsd"] == "full":
        args, out = [], RESULTS_DIR / "bench_nsd.json"
    else:
        args = ["--trials", "150", "--sessions", "2"]
        out = RESULTS_DIR / "bench_nsd_small.json"
    cmd = [sys.executable, str(BENCH_DIR / "bench_nsd.py"), *args, "--formats", *formats,
           "--repeats", str(sizes["nsd_repeats"]), "--out", str(out)]
    log(f"[nsd] {' '.join(cmd[1:])}")
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        return [error_row("nsd", f"bench_nsd.py exited with {proc.returncode}")]
    result = json.loads(out.read_text())
    p = result["params"]
    rows = []
    for fmt in formats:
        roi = [r for r in result["rows"] if r["format"] == fmt and r["method"] == "roi"]
        whole = [r for r in result["rows"] if r["format"] == fmt and r["method"] == "whole"]
        if not roi or not whole:
            continue
        roi_s = median([r["median_s_per_session"] for r in roi])
        whole_s = whole[0]["median_s_per_session"]
        peaks = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in roi)
        rows.append(Row(
            f"nsd_{fmt}", "roi reader (s/session)", "whole-volume load + select (s/session)", roi_s, whole_s,
            whole_s / roi_s if roi_s > 0 else None, "-", None, check.passed, check.detail,
            notes=(f"{p['shape']} x {p['trials']} int16 sessions, {p['voxels']} ROI voxels, "
                   f"{p['repeats']} run(s) per config; peak RSS whole {whole[0]['peak_rss_mb']:.0f} MB vs "
                   f"roi {peaks} MB with 1..{len(roi)} sessions (ratio "
                   f"{whole[0]['peak_rss_mb'] / max(roi[0]['peak_rss_mb'], 1.0):.0f}x)."),
            params={**p, "source": str(out.relative_to(ROOT))}))
    return rows


# ------------------------------------------------------------------------------------------------
# Runner
# ------------------------------------------------------------------------------------------------

def _function(name: str) -> Callable[[dict[str, Any], int], list[Row]]:
    module, func, _ = COMPARISONS[name]
    return getattr(importlib.import_module(module), func)


def worker(names: list[str], sizes: dict[str, Any], repeats: int, threads: int, rows_out: Path,
           started: str) -> None:
    """Run comparisons in this process; write ``{name: {"rows": [...], "seconds": s}}`` to ``rows_out``.

    A comparison that raises becomes an error row; the others still run.
    """
    import traceback

    set_threads(threads)
    out: dict[str, Any] = {}
    for name in names:
        log(f"=== {name}: {COMPARISONS[name][2]}")
        load_before, t0 = os.getloadavg(), time.perf_counter()
        try:
            rows = _function(name)(sizes, repeats)
        except Exception as exc:  # noqa: BLE001 - reported as a row, the run goes on
            traceback.print_exc()
            rows = [error_row(name, f"{type(exc).__name__}: {exc}")]
        load_after = os.getloadavg()
        for row in rows:
            row.bench, row.measured = name, started
            row.params["load_average_1min"] = [round(load_before[0], 2), round(load_after[0], 2)]
        seconds = time.perf_counter() - t0
        out[name] = {"rows": [r.to_dict() for r in rows], "seconds": seconds}
        log(format_table(rows))
        log(f"=== {name}: {seconds:.0f} s\n")
        rows_out.write_text(json.dumps(out, default=str))


def run_group(names: list[str], size_args: list[str], repeats: int, threads: int,
              started: str) -> dict[str, list[Row]]:
    """Run comparisons of one benchmark module in a worker subprocess; failures become error rows."""
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        rows_out, err_path = Path(tmp) / "rows.json", Path(tmp) / "stderr.txt"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *names, "--repeats", str(repeats),
               "--threads", str(threads), "--rows-out", str(rows_out), "--started", started, *size_args]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "PYTHONWARNINGS": "ignore"}
        with open(err_path, "w") as err:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stderr=err)
        done = json.loads(rows_out.read_text()) if rows_out.exists() else {}
        errors = err_path.read_text().strip().splitlines()
        if any(line.startswith("Traceback") for line in errors) or proc.returncode != 0:
            print("\n".join(errors[-20:]), file=sys.stderr)
        result = {name: [Row.from_dict(d) for d in done[name]["rows"]] for name in names if name in done}
        for name in names:
            if name not in result:
                last = errors[-1][-200:] if errors else ""
                result[name] = [error_row(name, f"worker exited with {proc.returncode}: {last}")]
                result[name][0].bench, result[name][0].measured = name, started
        return result


def groups(names: list[str]) -> list[list[str]]:
    """Selected comparisons grouped by benchmark module (one worker process per module), in order."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(COMPARISONS[name][0], []).append(name)
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("sizes", nargs="*", metavar="KEY=VALUE", help="size overrides (see --list)")
    ap.add_argument("--only", nargs="+", choices=list(COMPARISONS), metavar="NAME",
                    help=f"comparisons to run (default: {' '.join(DEFAULT)})")
    ap.add_argument("--with-book", action="store_true", help="also run the (slow) book build")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per side (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per benchmark (default 1)")
    ap.add_argument("--list", action="store_true", help="list comparisons and sizes, then exit")
    ap.add_argument("--report", action="store_true",
                    help="only re-render results/latest.md (and print the table) from latest.json")
    ap.add_argument("--worker", nargs="+", choices=list(COMPARISONS), help=argparse.SUPPRESS)
    ap.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--started", default="", help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else list(argv)
    # KEY=VALUE items may come anywhere (also right after --only NAME ...): take them out first
    size_items = [a for a in argv if "=" in a and not a.startswith("-")]
    args = ap.parse_args([a for a in argv if a not in size_items])
    args.sizes = size_items + args.sizes
    sizes = parse_sizes(args.sizes)
    if args.repeats < 1 or args.threads < 1:
        raise SystemExit("--repeats and --threads must be >= 1")
    if args.worker:
        worker(args.worker, sizes, args.repeats, args.threads, args.rows_out, args.started)
        return 0
    if args.report:
        data = json.loads((RESULTS_DIR / "latest.json").read_text())
        rows = [Row.from_dict(d) for d in data["rows"]]
        write_results(rows, data["meta"])
        print(format_table(rows))
        return 0
    if args.list:
        for name, (_, _, text) in COMPARISONS.items():
            print(f"{name:15s} {text}{'' if name in DEFAULT else '  [opt-in]'}")
        print()
        for key, (default, text) in SIZES.items():
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            print(f"{key + '=' + str(shown):34s} {text}")
        return 0
    names = args.only or DEFAULT + (["book"] if args.with_book else [])
    if args.with_book and "book" not in names:
        names.append("book")
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    meta = {"started": started, "repeats": args.repeats, "sizes": sizes, "comparisons": names,
            "machine": machine_info(args.threads)}
    rows: list[Row] = []
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for group in groups(names):
        results = run_group(group, args.sizes, args.repeats, args.threads, started)
        for name in group:
            (RESULTS_DIR / f"{name}.json").write_text(json.dumps(
                {"meta": {**meta, "comparisons": [name]}, "rows": [r.to_dict() for r in results[name]]},
                indent=2, default=str))
            rows += results[name]
    meta["elapsed_s"] = time.perf_counter() - t0
    meta["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    json_path, md_path = write_results(merge_with_previous(rows, names, list(COMPARISONS)), meta)
    print(f"\nThis run ({meta['elapsed_s']:.0f} s; ratio = baseline s / candidate s, "
          f"> 1 means probelib is faster):\n")
    print(format_table(rows))
    print(f"\nwrote {json_path.relative_to(ROOT)} and {md_path.relative_to(ROOT)} (with the latest rows "
          "of comparisons not run this time)")
    return 1 if any(r.status in ("CHECK FAILED", "ERROR") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
