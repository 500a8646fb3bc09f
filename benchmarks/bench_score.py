"""Benchmark of ``probelib score``: one network scored on the demo, cold and warm.

Times the command ``probelib score --model <model> --layer <layer> --weights none --dataset demo
--image-size <px> --out <tmp>`` (run in-process through its click entry point, so the time is the
command's work, not the interpreter's start): predictivity, FGSM / PGD sensitivity with both
controls, transfer to the observer, subspaces against the default reference panel, and the
tables, figures and HTML report written to disk.

- **cold**: an empty cache holding only the simulated demo data (made once, outside the timing:
  the demo's own one-time cost, shared by every chapter of the book), so the network's and the
  reference panel's features, fits, probes and subspaces are all computed;
- **warm**: the same command again on a filled cache (the whole report is read back; the figures
  and the report are drawn again).

Both run in-process after one untimed cold run (which fills the warm side's cache and pays the
process's one-time kernel set-up; its time is reported in the notes and ``params``).

Ratio = cold / warm. Target: warm at least 10x faster. Checked: both write the same table.

Run through the runner: ``python benchmarks/run.py --only score`` (once registered there), or
directly: ``python benchmarks/bench_score.py [--repeats R]``.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Baseline, Check, Row, Side, Target, compare, log  # noqa: E402

DEFAULT_MODEL = "timm:resnet18@layer3"


def _command(model: str, layer: str, px: int, out: Path) -> list[str]:
    return ["score", "--model", model, "--layer", layer, "--weights", "none", "--dataset", "demo",
            "--image-size", str(px), "--out", str(out), "--quiet"]


def _run(cache: Path, args: list[str]) -> Any:
    """The command in this process with ``PROBELIB_CACHE=cache``; returns its table."""
    import pandas as pd

    from probelib.cli import main

    previous = os.environ.get("PROBELIB_CACHE")
    os.environ["PROBELIB_CACHE"] = str(cache)
    try:
        main.main(args, standalone_mode=False)
    finally:
        if previous is None:
            os.environ.pop("PROBELIB_CACHE", None)
        else:
            os.environ["PROBELIB_CACHE"] = previous
    return pd.read_csv(Path(args[args.index("--out") + 1]) / "score.csv")


def _demo_only_cache(root: Path, px: int) -> Path:
    """A cache directory holding the simulated demo (at ``px``) and nothing else."""
    from probelib.data import load_dataset

    template = root / "demo_only"
    template.mkdir(mode=0o700)
    previous = os.environ.get("PROBELIB_CACHE")
    os.environ["PROBELIB_CACHE"] = str(template)
    try:
        load_dataset("demo", image_size=px)
        load_dataset("demo", image_size=px, average_subjects=False)
    finally:
        if previous is None:
            os.environ.pop("PROBELIB_CACHE", None)
        else:
            os.environ["PROBELIB_CACHE"] = previous
    return template


def run_score(sizes: dict[str, Any], repeats: int) -> list[Row]:
    model, _, layer = str(sizes.get("score_model", DEFAULT_MODEL)).rpartition("@")
    px = int(sizes.get("px", 64))
    root = Path(tempfile.mkdtemp(prefix="bench_score_"))
    try:
        template = _demo_only_cache(root, px)
        counter = iter(range(10_000))

        def cold():
            run_dir = root / f"cold{next(counter)}"
            shutil.copytree(template, run_dir / "cache")
            os.chmod(run_dir / "cache", 0o700)
            return _run(run_dir / "cache", _command(model, layer, px, run_dir / "out"))

        warm_cache = root / "warm_cache"
        shutil.copytree(template, warm_cache)
        os.chmod(warm_cache, 0o700)

        def warm():
            return _run(warm_cache, _command(model, layer, px, root / "warm_out"))

        # fill the warm cache (not timed as a side): the first cold run of this process, which also
        # pays the one-time set-up of the compute kernels for every layer and input shape
        wall0, cpu0 = time.perf_counter(), time.process_time()
        warm()
        first_wall, first_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        log(f"[score] first cold run of the process: {first_wall:.1f} s wall, {first_cpu:.1f} s CPU")

        def check(cand, base) -> Check:
            import numpy as np

            same = list(cand.columns) == list(base.columns) and len(cand) == len(base)
            numeric = cand.select_dtypes("number").columns
            same = same and np.allclose(cand[numeric].to_numpy(float), base[numeric].to_numpy(float),
                                        rtol=1e-6, atol=1e-9, equal_nan=True)
            return Check(bool(same), f"same table from a cold and a warm run ({len(cand)} rows x "
                                     f"{len(cand.columns)} columns)")

        log(f"[score] {model} @ {layer}, {px} px, default reference panel and observer")
        return compare(
            "score", Side(f"probelib score {model} (warm cache)", warm),
            [Baseline(Side("the same, cold (empty cache but the demo data)", cold, check_run_counts=True,
                           max_runs=1), check, Target(10.0, ">= 10x (warm < 1/10 of cold)"),
                      notes=("cold: features, readouts, FGSM/PGD with controls, transfer to the observer "
                             "and subspaces of the network and of the reference panel; warm: the report "
                             "read back, figures and HTML drawn again. In-process: interpreter start and "
                             "imports not counted. The first cold run of the process (kernel set-up "
                             f"included) took {first_wall:.1f} s wall, {first_cpu:.1f} s CPU."))],
            repeats, {"model": model, "layer": layer, "px": px, "first_cold_wall_s": round(first_wall, 2),
                      "first_cold_cpu_s": round(first_cpu, 2)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


COMPARISONS = {"score": run_score}

if __name__ == "__main__":
    import run as runner

    if "score" in runner.COMPARISONS:
        sys.exit(runner.main(["--only", *COMPARISONS, *sys.argv[1:]]))
    # not registered in benchmarks/run.py yet: run here, one thread as the runner does
    from common import format_table, set_threads

    set_threads(1)
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    print(format_table(run_score({}, repeats)))
