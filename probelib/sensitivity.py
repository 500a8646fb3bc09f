"""Panel-level adversarial sensitivity, the 2024 paper's way: FGSM sweeps with their controls,
sensitivities relative to the spread of the data, and how well a score discriminates models.

Everything expensive goes through :func:`probelib.pipeline.cached_probe` (the targeted FGSM
probes), the on-disk cache of this module (the controls) or the feature cache
(:func:`probelib.pipeline.fit_panel`), so the chapters that share a panel share the fits and the
sweeps.

Shapes and units
----------------
- A *sweep* (:func:`sweep_panel`) is a dict ``(model spec, ROI) -> {"targeted": ProbeResult,
  "shuffled": ProbeResult, "random": ProbeResult}``; each :class:`~probelib.probes.ProbeResult`
  holds ``sensitivity`` (n_eps, N images, n_units) in response units (the demo's responses are
  z-scored single-trial units; NSD's are z-scored betas).
- :func:`sensitivity_frame` turns a sweep into a long table; its ``relative`` column divides
  each sensitivity by the s.d. across all images of the observed responses of the same unit
  (:func:`probelib.metrics.response_sd`), so that models and ROIs can be compared in units of the data's spread.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from ._progress import progress_bar

from . import probes
from .probes import ProbeResult
from .cache import cached_call
from .data.dataset import Dataset
from .metrics import discriminability, paired_test, response_sd
from .pipeline import PanelFit, cached_probe

__all__ = [
    "CONTROLS",
    "subset_eps",
    "cached_control",
    "sweep_panel",
    "sensitivity_frame",
    "percentile_of",
    "preferred_example",
    "DiscriminabilityComparison",
    "compare_discriminability",
]

CONTROLS = ("shuffled", "random")


# ----------------------------------------------------------------------------------------------
# Sweeps with controls
# ----------------------------------------------------------------------------------------------

def subset_eps(result: ProbeResult, eps: float | Iterable[float]) -> ProbeResult:
    """The budgets ``eps`` (each must be in ``result.eps``, matched to 1e-12) of a ProbeResult.

    Every per-budget array is sliced; gradient signs / perturbations are kept, so
    ``perturbation(e, j)`` and the controls still work on the subset.
    """
    wanted = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    pos = []
    for e in wanted:
        hit = np.flatnonzero(np.isclose(result.eps, e, rtol=0, atol=1e-12))
        if not len(hit):
            raise ValueError(f"eps {e!r} is not in the result's grid {result.eps.tolist()}")
        pos.append(int(hit[0]))
    deltas = None if result.deltas is None else result.deltas[pos]
    return dataclasses.replace(
        result, sensitivity=result.sensitivity[pos], eps=result.eps[pos],
        perturbed=result.perturbed[pos], direction_taken=result.direction_taken[pos],
        delta_norm=result.delta_norm[pos], deltas=deltas)


def _control_impl(key: dict, model, images: np.ndarray, probe: ProbeResult, control: str,
                  seed: int, store: bool) -> ProbeResult:
    fn = {"shuffled": probes.shuffled_control, "random": probes.random_control}[control]
    return fn(model, torch.from_numpy(images), probe, seed=seed, store_perturbations=store,
              progress=False)


def cached_control(fit: PanelFit, spec: str, roi: str, control: str, eps, image_index=None,
                   control_eps=None, seed: int = 0, direction: str = "decrease",
                   store_perturbations: bool = False) -> ProbeResult:
    """A negative control (``"shuffled"`` or ``"random"``) of the FGSM probes of ``(spec, roi)``.

    The targeted probes are :func:`~probelib.pipeline.cached_probe` ``(fit, spec, roi, "fgsm",
    image_index, eps=eps, direction=direction, store_perturbations=True)`` (the same call
    :func:`sweep_panel` makes, so it is shared); the control is run at the budgets
    ``control_eps`` (a subset of ``eps``; default all) and cached on disk. The control's
    perturbations are kept only with ``store_perturbations`` (float32, n_eps x N x 3 x H x W per
    unit: keep it for the few probes a figure shows). The same ``seed`` gives the same control
    with or without storing. Returns a ProbeResult with sensitivity
    (n_control_eps, N, n_units) under the same definition (``direction``) as the probes.
    """
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    eps_grid = [float(e) for e in np.atleast_1d(eps)]
    probe = cached_probe(fit, spec, roi, "fgsm", image_index=image_index, eps=eps_grid,
                         direction=direction, store_perturbations=True)
    if control_eps is not None:
        probe = subset_eps(probe, control_eps)
    index = np.asarray(fit.dataset.split["test"] if image_index is None else image_index)
    key = {**fit.key(spec, roi), "images": index.tolist(), "eps": eps_grid,
           "control_eps": probe.eps.tolist(), "direction": direction, "control": control,
           "seed": int(seed), "store": bool(store_perturbations)}
    images = np.ascontiguousarray(probe.images)
    return cached_call(_control_impl, key, fit.models[(spec, roi)], images, probe, control,
                       int(seed), bool(store_perturbations), ignore=("model", "images", "probe"),
                       check=lambda r: (isinstance(r, ProbeResult)
                                        and r.sensitivity.shape == probe.sensitivity.shape))


def sweep_panel(fit: PanelFit, eps, image_index=None,
                controls: Mapping[str, object] | Sequence[str] = CONTROLS,
                seed: int = 0, direction: str = "decrease", store: Sequence[str] = (),
                progress: bool = True) -> dict[tuple[str, str], dict[str, ProbeResult]]:
    """FGSM (L-inf) probes of every (model, ROI) of ``fit`` over the grid ``eps``, with controls.

    controls : names in :data:`CONTROLS` (each run at every budget), or a mapping name ->
        budgets (a subset of ``eps``; ``None`` = all), e.g. ``{"random": None, "shuffled": [3/255]}``.
    store : names of the controls whose perturbations are kept (e.g. ``("shuffled",)`` to show
        them); the targeted probes always keep their gradient signs.
    Returns ``{(spec, roi): {"targeted": ProbeResult, <control>: ProbeResult, ...}}``; all parts
    are cached on disk (a warm re-run costs a few seconds).
    """
    plan = dict(controls) if isinstance(controls, Mapping) else {c: None for c in controls}
    eps_grid = [float(e) for e in np.atleast_1d(eps)]
    out: dict[tuple[str, str], dict[str, ProbeResult]] = {}
    for spec, roi in progress_bar(list(fit.models), desc="FGSM + controls", disable=not progress):
        entry = {"targeted": cached_probe(fit, spec, roi, "fgsm", image_index=image_index,
                                          eps=eps_grid, direction=direction,
                                          store_perturbations=True)}
        for name, budgets in plan.items():
            entry[name] = cached_control(fit, spec, roi, name, eps_grid, image_index=image_index,
                                         control_eps=budgets, seed=seed, direction=direction,
                                         store_perturbations=name in store)
        out[(spec, roi)] = entry
    return out


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------



def sensitivity_frame(sweep: Mapping[tuple[str, str], Mapping[str, ProbeResult]],
                      ds: Dataset) -> pd.DataFrame:
    """Long table of a :func:`sweep_panel` result.

    Columns: ``model``, ``roi``, ``probe`` (``"targeted"`` or a control), ``eps`` (budget,
    pixel units in [0, 1]), ``image`` (position in the probed set), ``unit`` (output index),
    ``sensitivity`` (response units) and ``relative`` (sensitivity / :func:`~probelib.metrics.response_sd` of the
    unit, i.e. in s.d. of the observed responses across images).
    """
    rows = []
    for (spec, roi), parts in sweep.items():
        sd = response_sd(ds.responses[roi])
        for probe, res in parts.items():
            s = res.sensitivity
            n_eps, n, u = s.shape
            units = np.asarray(res.units)
            rel = s / sd[units][None, None, :]
            rows.append(pd.DataFrame({
                "model": spec, "roi": roi, "probe": probe,
                "eps": np.repeat(res.eps, n * u),
                "image": np.tile(np.repeat(np.arange(n), u), n_eps),
                "unit": np.tile(units, n_eps * n),
                "sensitivity": s.ravel(), "relative": rel.ravel()}))
    return pd.concat(rows, ignore_index=True)


def percentile_of(values, distribution) -> np.ndarray | float:
    """Percentile (0-100) of each value within ``distribution`` (fraction of it strictly below,
    plus half the ties), e.g. where a perturbed prediction falls among the observed responses."""
    d = np.sort(np.asarray(distribution, dtype=np.float64).ravel())
    if d.size == 0:
        raise ValueError("distribution is empty")
    v = np.asarray(values, dtype=np.float64)
    below = np.searchsorted(d, v, side="left")
    upto = np.searchsorted(d, v, side="right")
    pct = 100.0 * (below + 0.5 * (upto - below)) / d.size
    return float(pct) if pct.ndim == 0 else pct


def preferred_example(ds: Dataset, image_index, clean: np.ndarray, category: str | None) -> int:
    """Position (into ``image_index``) of the example image for a targeted-probe figure: the
    image of ``category`` (e.g. ``"face"`` for FFA) with the highest clean prediction, or the
    highest clean prediction overall when categories are unknown / none match.

    clean : (N,) clean predictions of the probed unit for the images ``image_index``.
    """
    clean = np.asarray(clean, dtype=np.float64).ravel()
    index = np.asarray(image_index)
    if clean.shape[0] != index.shape[0]:
        raise ValueError(f"clean has {clean.shape[0]} values for {index.shape[0]} images")
    candidates = np.arange(len(index))
    if category is not None and ds.categories is not None:
        match = np.asarray(ds.categories)[index] == category
        if match.any():
            candidates = candidates[match]
    return int(candidates[np.argmax(clean[candidates])])


# ----------------------------------------------------------------------------------------------
# Discriminability: sensitivity vs predictivity (paper 1, Fig. 3D)
# ----------------------------------------------------------------------------------------------

@dataclass
class DiscriminabilityComparison:
    """Sparseness and normalised variance across models of two scores.

    pooled : DataFrame (score x measure): the paper's way, each model's score averaged over all
        replicates (ROIs, subjects) first, then the measure across models.
    per_replicate : long DataFrame (replicate, score, measure, value): the measure across models
        within each replicate (the spread behind error bars and the paired tests).
    tests : DataFrame (measure -> mean difference, t, p, n): paired t test across replicates of
        the first score against the second (NaN with fewer than 2 replicates).
    scores : the two names, in order.
    """

    pooled: pd.DataFrame
    per_replicate: pd.DataFrame
    tests: pd.DataFrame
    scores: tuple[str, str]


def _as_model_table(scores, name: str) -> pd.DataFrame:
    """A (models x replicates) frame from a frame, a Series (models) or a mapping."""
    if isinstance(scores, pd.Series):
        scores = scores.to_frame("all")
    elif not isinstance(scores, pd.DataFrame):
        scores = pd.DataFrame({k: np.atleast_1d(v) for k, v in dict(scores).items()}).T
    if scores.shape[0] < 2:
        raise ValueError(f"{name}: need scores of at least 2 models (rows); got {scores.shape[0]}")
    if not np.isfinite(scores.to_numpy(dtype=np.float64)).all():
        raise ValueError(f"{name}: scores must be finite")
    return scores.astype(np.float64)


def compare_discriminability(a, b, names: tuple[str, str] = ("sensitivity", "predictivity")
                             ) -> DiscriminabilityComparison:
    """How well two scores separate the same models (sparseness, normalised variance).

    a, b : (models x replicates) DataFrames of the same shape and labels (e.g. mean sensitivity
        and mean predictivity of each model in each ROI), or Series over models (one replicate).
        Both measures assume non-negative scores (Pearson r of good models, decrease
        sensitivities); they are scale invariant, so ``a`` may be in any units.
    """
    ta, tb = _as_model_table(a, names[0]), _as_model_table(b, names[1])
    if ta.shape != tb.shape or list(ta.index) != list(tb.index) or list(ta.columns) != list(tb.columns):
        raise ValueError(f"the two scores need the same models and replicates; got {ta.shape} "
                         f"{list(ta.index)} / {list(ta.columns)} and {tb.shape} {list(tb.index)} / "
                         f"{list(tb.columns)}")
    pooled, rows, per = {}, [], {}
    for name, t in zip(names, (ta, tb)):
        d_all = discriminability(t.mean(axis=1).to_numpy(), axis=0)
        pooled[name] = {"sparseness": float(d_all.sparseness),
                        "normalized variance": float(d_all.normalized_variance)}
        d_rep = discriminability(t.to_numpy(), axis=0)
        sp = np.atleast_1d(d_rep.sparseness)
        nv = np.atleast_1d(d_rep.normalized_variance)
        per[name] = {"sparseness": sp, "normalized variance": nv}
        for rep, s_val, v_val in zip(t.columns, sp, nv):
            rows.append({"replicate": rep, "score": name, "measure": "sparseness", "value": float(s_val)})
            rows.append({"replicate": rep, "score": name, "measure": "normalized variance",
                         "value": float(v_val)})
    tests = []
    for measure in ("sparseness", "normalized variance"):
        x, y = per[names[0]][measure], per[names[1]][measure]
        if len(x) >= 2:
            res = paired_test(x, y, method="t")
            tests.append({"measure": measure, "mean difference": float(res.mean_difference),
                          "t": float(res.statistic), "p": float(res.pvalue), "n": res.n})
        else:
            tests.append({"measure": measure, "mean difference": float(x[0] - y[0]),
                          "t": np.nan, "p": np.nan, "n": len(x)})
    return DiscriminabilityComparison(
        pooled=pd.DataFrame(pooled).T.rename_axis("score"),
        per_replicate=pd.DataFrame(rows), tests=pd.DataFrame(tests).set_index("measure"),
        scores=tuple(names))
