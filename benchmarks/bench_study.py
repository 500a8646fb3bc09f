"""Benchmarks of probelib.study: parallel speed-up of the local executor, the per-unit overhead of
the Slurm path, and the cost of each kind of unit projected to the papers' full grids on NSD.

- ``study_local``: a demo study (``study_bench``, default ``studies/paper1_demo.toml``) cold, on the
  local executor with 2 worker processes vs 1 worker process (serial; same code path and threads). Each run
  starts from an empty cache holding only the demo observer's features (a property of the demo
  data shared by every study, 10-20 s, computed once here). Checked: every unit's results are
  identical (digests). Target: >= 1.8x on 2 cores, judged on the best wall time of ``study_repeats``
  runs per side (parallelism is the point; the driver's own CPU time says nothing here, and on a
  shared machine other processes only slow a run down). The load average is recorded.
- ``study_ceiling``: what the machine allows for that study: two serial runs started together
  (separate processes and caches; nothing shared, nothing to schedule), interleaved with the runs
  above. Two processes on two cores can still slow each other down (memory bandwidth, a shared
  cache, a virtual machine's neighbours): the 2-worker target of 1.8x assumes they do not. Row: the
  2-worker wall time vs half the pair's (1.0 = the executor loses nothing to the order of its
  units, its shared work or its start-up; target >= 0.9), with the machine's ceiling
  ``2 x serial / pair`` in the notes.
- ``study_slurm``: the per-unit overhead of the Slurm path: the same finished study re-run with
  ``force=True`` (every unit rebuilds its data and models and reads its results from the cache;
  nothing is computed) through Slurm (one array task per unit, and batches of ``slurm_batch``
  units) vs the local executor. Row: seconds per unit. Skipped when no Slurm answers
  (``scripts/slurm_start.sh`` starts one).
- ``study_costs`` (informational): CPU seconds of each kind of unit measured in the serial run,
  the forward+backward cost per image of every network of the papers' panels at 224 px measured
  here (random weights: the cost does not depend on them), and the projection of both to the
  studies ``studies/paper1_nsd.toml`` and ``studies/paper2_nsd.toml``: per unit kind, units x
  projected seconds, on one CPU core here and on a GPU assumed ``gpu_speedup`` times faster per
  pass (see ``book/reproduce_on_nsd.md``). Written to ``benchmarks/results/study_costs.md``.

Run through the runner: ``python benchmarks/run.py --only study``.
"""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, ROOT, Row, log, skipped_row  # noqa: E402

OBSERVER = Path("joblib") / "probelib" / "data" / "demo" / "_stimulus_features"


def _fresh_cache(base: Path, observer: Path | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix="cache-", dir=base))
    os.chmod(path, 0o700)
    if observer is not None:
        shutil.copytree(observer, path / OBSERVER)
    return path


def _run(study, executor: str, cache: Path, **kwargs):
    from probelib.study import run_study

    os.environ["PROBELIB_CACHE"] = str(cache)
    t0 = time.perf_counter()
    report = run_study(study, executor, progress=False, **kwargs)
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise RuntimeError(report.summary())
    return seconds, report


_PAIR_CHILD = """
import os, sys
from pathlib import Path
sys.path.insert(0, {here!r})
from bench_study import _run
if __name__ == "__main__":
    _run(Path({study!r}), "local", Path(os.environ["PROBELIB_CACHE"]), workers=1)
"""


def _pair(study: Path, base: Path, observer: Path) -> float:
    """Wall seconds of two serial runs of ``study`` started together, each in its own process with
    its own cache (the same code path as the serial side: ``run_study(workers=1)``)."""
    code = _PAIR_CHILD.format(here=str(Path(__file__).resolve().parent), study=str(study))
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={**os.environ, "PROBELIB_CACHE": str(_fresh_cache(base, observer))})
             for _ in range(2)]
    outs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - t0
    for p, out in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"a serial run of the pair failed (exit {p.returncode}):\n{out[-2000:]}")
    return seconds


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _row(comparison, candidate, baseline, cand_times, base_times, target, min_ratio, check_ok, check,
         notes, params, best: bool = False) -> Row:
    pick = min if best else statistics.median
    cand_s, base_s = pick(cand_times), pick(base_times)
    ratio = base_s / cand_s if cand_s else None
    met = None if min_ratio is None or ratio is None else ratio >= min_ratio
    return Row(comparison, candidate, baseline, cand_s, base_s, ratio, target, met, check_ok, check,
               notes=notes, params=params, candidate_times=cand_times, baseline_times=base_times)


def _size(sizes: dict[str, Any], key: str) -> Any:
    """A size of this module: from the runner's sizes when it knows the key, else the default."""
    return sizes.get(key, SIZES[key][0])


def _study_path(sizes) -> Path:
    p = Path(_size(sizes, "study_bench"))
    return p if p.is_absolute() else ROOT / p


# ------------------------------------------------------------------------------------------------
# Local executor: 2 workers vs serial
# ------------------------------------------------------------------------------------------------

_STATE: dict[str, Any] = {}


def run_study_local(sizes: dict[str, Any], repeats: int) -> list[Row]:
    study = _study_path(sizes)
    reps = max(1, int(_size(sizes, "study_repeats")))
    base = Path(tempfile.mkdtemp(prefix="bench-study-"))
    try:
        seed_cache = _fresh_cache(base, None)
        log("[study_local] demo observer features (once, shared by every run)")
        _run(ROOT / "studies" / "smoke_demo.toml", "local", seed_cache, workers=0, only=["dataset"])
        observer = seed_cache / OBSERVER
        serial, parallel, pair, load_before = [], [], [], _load()
        ref = par = None
        for r in range(reps):
            for name in (("serial", "parallel", "pair") if r % 2 == 0 else ("pair", "parallel", "serial")):
                if name == "pair":
                    s = _pair(study, base, observer)
                    pair.append(s)
                    log(f"[study_local] round {r + 1}/{reps}: two serial runs at once {s:.1f} s")
                    continue
                cache = _fresh_cache(base, observer)
                if name == "serial":
                    s, ref = _run(study, "local", cache, workers=1)
                    serial.append(s)
                    _STATE["serial_report"] = ref
                else:
                    s, par = _run(study, "local", cache, workers=2)
                    parallel.append(s)
                    _STATE["warm_cache"] = str(cache)
                log(f"[study_local] round {r + 1}/{reps}: {name} {s:.1f} s")
        same = ref.digests() == par.digests()
        params = {"study": study.name, "units": len(ref.plan), "load_before": load_before,
                  "load_after": _load(), "cpus": os.cpu_count()}
        # best of the repeats: on a shared machine other processes only ever slow a run down
        ceiling = 2 * min(serial) / min(pair)
        efficiency = _row("study_ceiling", f"{study.stem}: local executor, 2 workers",
                          "half the wall time of two serial runs at once (what 2 processes allow here)",
                          parallel, [s / 2 for s in pair], ">= 0.9", 0.9, same,
                          f"identical results of all {len(ref.plan)} units" if same else "RESULTS DIFFER",
                          f"the machine's ceiling for this study, 2 x serial / pair: {ceiling:.2f}x (1.8x "
                          f"needs two processes that do not slow each other down); best of {reps} runs per "
                          f"side, interleaved; load average {load_before} -> {params['load_after']}",
                          {**params, "ceiling": ceiling, "pair_times": pair}, best=True)
        return [_row("study_local", f"{study.stem}: local executor, 2 workers",
                     "local executor, 1 worker (serial)", parallel, serial, ">= 1.8x (wall) on 2 cores", 1.8, same,
                     f"identical results of all {len(ref.plan)} units" if same else "RESULTS DIFFER",
                     f"cold cache (demo observer features pre-filled); best of {reps} runs per side; load "
                     f"average {load_before} -> {params['load_after']}; CPU seconds of the units: serial "
                     f"{sum(o.cpu_seconds for o in ref.outcomes.values()):.1f}, 2 workers "
                     f"{sum(o.cpu_seconds for o in par.outcomes.values()):.1f}", params, best=True), efficiency]
    finally:
        _STATE["tmp"] = base


# ------------------------------------------------------------------------------------------------
# Slurm path: per-unit overhead
# ------------------------------------------------------------------------------------------------

def _slurm_usable() -> str | None:
    import subprocess
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (bash scripts/slurm_start.sh)"
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in out.stdout.split()):
        return "no usable Slurm node (bash scripts/slurm_start.sh)"
    return None


def run_study_slurm(sizes: dict[str, Any], repeats: int) -> list[Row]:
    why = _slurm_usable()
    if why:
        return [skipped_row("study_slurm", why)]
    study = _study_path(sizes)
    warm = _STATE.get("warm_cache")
    tmp = None
    if warm is None or not Path(warm).exists():
        tmp = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
        warm = str(_fresh_cache(tmp, None))
        log("[study_slurm] filling a cache with the study (local executor)")
        _run(study, "local", Path(warm), workers=2)
    try:
        local_s, report = _run(study, "local", Path(warm), workers=2, force=True)
        n = len(report.plan)
        rows = []
        for batch in _size(sizes, "slurm_batch"):
            s, rep = _run(study, "slurm", Path(warm), force=True, batch_size=int(batch))
            log(f"[study_slurm] batch {batch}: slurm {s:.1f} s, local {local_s:.1f} s for {n} units")
            same = rep.digests() == report.digests()
            rows.append(_row("study_slurm", "local executor, 2 workers: s/unit",
                             f"slurm (submitit arrays, {batch} unit(s) per task): s/unit",
                             [local_s / n], [s / n], "- (overhead)", None, same,
                             "same digests" if same else "RESULTS DIFFER",
                             f"{n} units re-run with force=True (all results from the cache: pure overhead); "
                             f"ratio = slurm / local per unit; 2 CPUs in the Slurm partition",
                             {"units": n, "batch": int(batch), "load": _load()}))
        return rows
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Cost of each kind of unit, projected to NSD
# ------------------------------------------------------------------------------------------------

def pass_cost(spec: str, px: int, batch: int = 4, repeats: int = 2) -> float:
    """Seconds per image of one forward + backward (input gradient) pass of ``spec``'s encoder
    truncated at its default layer, summed features as the output, one thread, ``px`` images."""
    import torch
    from probelib.zoo import build_encoder, parse_model

    name, _, sigma = parse_model(spec)
    base = name
    enc = build_encoder(base + ":untrained").eval()
    x = torch.rand(batch, 3, px, px)
    times = []
    for _ in range(repeats + 1):
        xx = x.clone().requires_grad_(True)
        t0 = time.perf_counter()
        enc(xx).sum().backward()
        times.append(time.perf_counter() - t0)
    per = statistics.median(times[1:]) / batch
    return per


def _projection(plan, demo_costs: dict[str, float], demo_pass: float, demo_images: dict[str, float],
                nsd_pass: dict[str, float], gpu_speedup: float) -> list[dict]:
    """Projected seconds per unit kind of an NSD plan from the demo's measured unit costs.

    A unit's cost scales with the forward+backward cost per image of its network(s) at 224 px
    relative to the demo's MobileNet-v2 at 64 px, with its number of images, and (voxel units) with
    its number of output units."""
    rows: dict[str, dict] = {}
    n_test = 115  # NSD: 515 shared images, 400 train / 115 test
    for unit in plan.units.values():
        kind = unit.kind
        if kind not in demo_costs or kind == "dataset":
            continue
        p = unit.parameters
        n_img = {"fit": 515 / demo_images["all"]}.get(kind)
        if n_img is None:
            n = p.get("n_images", 6)
            n = n_test if n == "all" else int(n)
            if p.get("first_images"):
                n = min(n, int(p["first_images"]))
            if kind == "fixed_effect" or (kind == "transfer" and p.get("probes") == "fixed_effect"):
                n = min(n, int(p.get("n_images_fe", n)))
            n_img = n / demo_images[kind]
        outputs = 1.0
        if kind == "voxel_probes":
            outputs = p["n_voxels"] / demo_images["voxel_units"]
        if kind == "subspaces":
            outputs = p["n_units"] / demo_images["subspace_units"]
        models = unit.models or ("resnet50",)
        ratio = statistics.mean(nsd_pass.get(m, nsd_pass["resnet50"]) for m in models) / demo_pass
        secs = demo_costs[kind] * ratio * n_img * outputs
        r = rows.setdefault(kind, {"kind": kind, "units": 0, "cpu_s": 0.0})
        r["units"] += 1
        r["cpu_s"] += secs
    out = []
    for r in rows.values():
        r["per_unit_cpu_s"] = r["cpu_s"] / r["units"]
        r["gpu_s"] = r["cpu_s"] / gpu_speedup
        out.append(r)
    return out


def _reference_costs(report, kinds) -> dict[str, list[float]]:
    """CPU seconds of the units of ``report`` that use only the demo's reference network."""
    out: dict[str, list[float]] = {}
    for uid, o in report.outcomes.items():
        unit = report.plan.units[uid]
        if unit.kind in kinds and unit.models and set(unit.models) == {REFERENCE} and o.computed:
            out.setdefault(unit.kind, []).append(o.cpu_seconds)
    return out


REFERENCE = "mobilenet_v2"


def run_study_costs(sizes: dict[str, Any], repeats: int) -> list[Row]:
    from probelib.study import load_study, plan_study

    base = Path(tempfile.mkdtemp(prefix="bench-costs-"))
    try:
        report = _STATE.get("serial_report")
        if report is None or "fgsm_sweep" not in report.plan.counts():
            _, report = _run(ROOT / "studies" / "paper1_demo.toml", "local", _fresh_cache(base, None), workers=1,
                             overrides=[f'panel.models=["{REFERENCE}"]'])
        costs = _reference_costs(report, {"fit", "fgsm_sweep"})
        log("[study_costs] the paper-2 demo study's units with MobileNet-v2 only (serial)")
        _, p2 = _run(ROOT / "studies" / "paper2_demo.toml", "local", _fresh_cache(base, None), workers=1,
                     overrides=[f'panel.models=["{REFERENCE}"]', f'analysis.linf_vs_l2.models=["{REFERENCE}"]'])
        for kind, values in _reference_costs(p2, {"fit", "l2_probe", "voxel_probes", "fixed_effect",
                                                  "transfer", "subspaces"}).items():
            costs.setdefault(kind, []).extend(values)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    demo_costs = {k: statistics.median(v) for k, v in costs.items()}
    log("[study_costs] forward+backward cost per image of every network (224 px, random weights)")
    specs = sorted(set(load_study(ROOT / "studies" / "paper1_nsd.toml").models)
                   | set(load_study(ROOT / "studies" / "paper2_nsd.toml").models))
    nsd_pass: dict[str, float] = {}
    for spec in specs:
        base_name = spec.split("_l2_eps")[0].split("_linf_eps")[0]
        if base_name not in nsd_pass:
            nsd_pass[base_name] = pass_cost(base_name, 224)
            log(f"[study_costs]   {base_name}: {nsd_pass[base_name]:.3f} s/image")
        nsd_pass[spec] = nsd_pass[base_name]
    demo_pass = pass_cost(REFERENCE, 64, batch=8, repeats=4)
    # the demo studies' images per unit (their defaults), voxels and Jacobian rows
    demo_images = {"all": 169, "fgsm_sweep": 12, "l2_probe": 6, "voxel_probes": 6, "fixed_effect": 6,
                   "transfer": 6, "subspaces": 6, "voxel_units": 16, "subspace_units": 32}
    gpu = float(_size(sizes, "gpu_speedup"))
    lines = ["# Cost of the units of work, measured on the demo and projected to NSD", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {os.cpu_count()} CPUs (load average {_load()}), "
             f"one thread per unit, units of the demo studies with {REFERENCE} at 64 px "
             f"({demo_pass * 1000:.1f} ms per image and forward+backward pass). Projected: the NSD studies' units "
             f"(224 px, 115 test images, their networks); GPU: {gpu:g}x the per-pass speed of one CPU thread "
             f"here (an assumption, see book/reproduce_on_nsd.md). Dataset units (reading the betas) are I/O "
             f"and not projected here (see the nsd rows).",
             "", "| unit kind | demo: median CPU s per unit (units) |", "|---|---|"]
    lines += [f"| {k} | {demo_costs[k]:.2f} ({len(costs[k])}) |" for k in sorted(demo_costs)]
    lines += ["", "| network | forward+backward s per image, 224 px, 1 thread |", "|---|---|"]
    lines += [f"| {s} | {nsd_pass[s]:.3f} |" for s in sorted({s.split('_l2_eps')[0].split('_linf_eps')[0]
                                                                for s in specs})]
    rows = []
    for name in ("paper1_nsd", "paper2_nsd"):
        plan = plan_study(ROOT / "studies" / f"{name}.toml")
        proj = _projection(plan, demo_costs, demo_pass, demo_images, nsd_pass, gpu)
        total_cpu = sum(r["cpu_s"] for r in proj)
        total_gpu = sum(r["gpu_s"] for r in proj)
        lines += ["", f"**studies/{name}.toml** ({len(plan)} units)", "",
                  "| unit kind | units | projected per unit: CPU thread here | per unit: GPU | "
                  "all units: CPU hours | all units: GPU hours |", "|---|---|---|---|---|---|"]
        for r in sorted(proj, key=lambda r: -r["cpu_s"]):
            lines.append(f"| {r['kind']} | {r['units']} | {_human(r['per_unit_cpu_s'])} | "
                         f"{_human(r['per_unit_cpu_s'] / gpu)} | {r['cpu_s'] / 3600:.1f} | {r['gpu_s'] / 3600:.2f} |")
        lines.append(f"| **all but the dataset units** | {sum(r['units'] for r in proj)} | | | "
                     f"**{total_cpu / 3600:.0f}** | "
                     f"**{total_gpu / 3600:.1f}** |")
        rows.append(Row("study_costs", f"{name}: projected GPU hours ({gpu:g}x per pass)",
                        f"{name}: projected CPU-thread hours here", total_gpu / 3600, total_cpu / 3600,
                        total_cpu / total_gpu, "-", None, None, "projection (benchmarks/results/study_costs.md)",
                        notes=f"the seconds columns hold hours; {len(plan)} units",
                        params={"units": len(plan), "by_kind": proj, "demo_costs": demo_costs,
                                "pass_cost_224": nsd_pass, "demo_pass_64": demo_pass}))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "study_costs.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    tmp = _STATE.pop("tmp", None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _human(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def run_study_all(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """Every comparison of this module, in order (the Slurm row reuses the local run's cache)."""
    rows = run_study_local(sizes, repeats)
    rows += run_study_slurm(sizes, repeats)
    rows += run_study_costs(sizes, repeats)
    return rows


#: Sizes this module adds to the runner's (``KEY=VALUE``): default and meaning.
SIZES = {
    "study_bench": ("studies/paper1_demo.toml", "study of the study_local / study_slurm rows"),
    "study_repeats": (2, "cold runs of each side of study_local (best of them; each takes under a minute)"),
    "slurm_batch": ((1, 8), "units per Slurm array task in the study_slurm rows"),
    "gpu_speedup": (40.0, "assumed GPU speed-up per forward+backward pass over one CPU thread here"),
}

COMPARISONS = {"study": run_study_all}


def main(argv: list[str]) -> int:
    """``python benchmarks/bench_study.py [KEY=VALUE ...]``: this module's rows, printed and written
    to ``benchmarks/results/study.json`` (``benchmarks/run.py --only study`` runs them too)."""
    import json

    from common import format_table, set_threads

    sizes = {k: v for k, (v, _) in SIZES.items()}
    for item in argv:
        key, _, value = item.partition("=")
        if key not in SIZES:
            raise SystemExit(f"unknown size {item!r}; valid: {', '.join(SIZES)}")
        default = SIZES[key][0]
        sizes[key] = (tuple(type(default[0])(v) for v in value.split(",")) if isinstance(default, tuple)
                      else type(default)(value))
    set_threads(1)
    rows = run_study_all(sizes, 1)
    print(format_table(rows))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "study.json").write_text(json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    return 0 if all(r.status != "CHECK FAILED" and r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
