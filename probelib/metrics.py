"""Scores for encoding models: predictivity, noise ceilings, discriminability, paired tests.

Everything is numpy in, numpy out (torch tensors are accepted and converted), vectorised over
voxels. Conventions: responses are (N images, V voxels); repeated measurements are
(N images, R repeats, V voxels). Non-finite inputs raise ``ValueError`` with a count;
degenerate cases (a constant voxel) give NaN with a ``RuntimeWarning`` instead of crashing.
"""
from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ._checks import check_choice, check_finite_responses

__all__ = [
    "pearson_r",
    "spearman_brown",
    "split_half_ceiling",
    "ncsnr_ceiling",
    "correlation_ceiling",
    "sparseness",
    "normalized_variance",
    "Discriminability",
    "discriminability",
    "PairedTest",
    "paired_test",
    "sem",
    "response_sd",
    "high_frequency_fraction",
    "SensitivitySummary",
    "sensitivity_summary",
]


def _as_array(x, name: str) -> np.ndarray:
    """Float64 numpy copy of an array-like or torch tensor; raise if it has NaN/inf."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric; got {type(x).__name__}") from err
    check_finite_responses(a, name)
    return a


def _scalar_or_array(a: np.ndarray) -> float | np.ndarray:
    return float(a) if np.ndim(a) == 0 else a


def _column_corr(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """Pearson r of matching columns of x, y (N, ...) over axis 0; NaN (and a count) where constant."""
    constant = (x.max(0) == x.min(0)) | (y.max(0) == y.min(0))
    xc, yc = x - x.mean(0), y - y.mean(0)
    num = (xc * yc).sum(0)
    den = np.sqrt((xc**2).sum(0) * (yc**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(constant, np.nan, num / np.where(constant, 1.0, den))
    return np.clip(r, -1.0, 1.0), int(np.sum(constant))


def pearson_r(pred, obs) -> float | np.ndarray:
    """Voxel-wise Pearson correlation between predicted and observed responses across images.

    pred, obs : (N, V) (or (N,) for one voxel), N >= 2. Returns (V,) (or a float).
    A voxel that is constant in either input gets NaN, with a ``RuntimeWarning`` giving the count.
    """
    p, o = _as_array(pred, "pred"), _as_array(obs, "obs")
    if p.shape != o.shape:
        raise ValueError(f"pred and obs must have the same shape (N, V); got {p.shape} and {o.shape}")
    if p.ndim not in (1, 2) or p.shape[0] < 2:
        raise ValueError(f"pred and obs must have shape (N, V) or (N,) with N >= 2 images; got {p.shape}")
    r, n_constant = _column_corr(p, o)
    if n_constant:
        warnings.warn(f"{n_constant} of {r.size} voxels are constant across images: their correlation is NaN",
                      RuntimeWarning, stacklevel=2)
    return _scalar_or_array(r)


def spearman_brown(r, factor: float):
    """Spearman-Brown prophecy: reliability of a measure ``factor`` times as long, ``m·r / (1 + (m-1)·r)``.

    ``factor=2`` gives the classic split-half correction ``2r / (1 + r)``.
    """
    if not factor > 0:
        raise ValueError(f"factor must be > 0; got {factor!r}")
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar_or_array(factor * r / (1.0 + (factor - 1.0) * r))


def _half_splits(n_repeats: int, half: int, n_splits: int, rng: np.random.Generator) -> list[tuple[list[int], list[int]]]:
    """All distinct splits into two disjoint halves of ``half`` repeats if there are at most
    ``n_splits`` of them, else ``n_splits`` random ones."""
    n_distinct = math.comb(n_repeats, half) * math.comb(n_repeats - half, half) // 2
    if n_distinct <= n_splits:
        splits = []
        for a in itertools.combinations(range(n_repeats), half):
            rest = [i for i in range(n_repeats) if i not in a]
            splits += [(list(a), list(b)) for b in itertools.combinations(rest, half) if a < b]
        return splits
    perms = [rng.permutation(n_repeats) for _ in range(n_splits)]
    return [(list(p[:half]), list(p[half:2 * half])) for p in perms]


def split_half_ceiling(repeats, seed: int = 0, n_splits: int = 100, n_target: int | None = None) -> float | np.ndarray:
    """Spearman-Brown corrected split-half reliability of each voxel: the noise ceiling.

    repeats : (N images, R repeats, V voxels) single-trial responses (or (N, R) for one voxel), R >= 2.

    Procedure: the R repeats are split into two disjoint halves of ``h = R // 2`` repeats (for odd
    R one repeat is left out of each split); each half is averaged, and the Pearson correlation
    ``r_h`` of the two half-means across images is taken per voxel. ``r_h`` is averaged over splits
    (all distinct splits when there are at most ``n_splits``, e.g. 3 for R = 3 or 4; otherwise
    ``n_splits`` random ones drawn with ``seed``), and stepped up with Spearman-Brown to the mean of
    ``n_target`` repeats (default R): ``rho = m·r_h / (1 + (m-1)·r_h)`` with ``m = n_target / h``.
    For even R and the default, ``m = 2``: the classic ``2r / (1 + r)``.

    Returns ``rho`` (V,): the reliability of the mean of ``n_target`` repeats, i.e. the fraction of
    its variance across images that is stimulus-driven (same scale as :func:`ncsnr_ceiling`). The
    papers report this value ("Spearman-Brown corrected split-half correlation") as the ceiling for
    a model's Pearson r; the expected r of a noiseless perfect model with the noisy mean is
    ``sqrt(rho)`` (:func:`correlation_ceiling`), so comparing r with ``rho`` is conservative.
    A voxel with ``r_h <= 0`` has no reliable signal and Spearman-Brown is not meaningful there:
    its uncorrected ``r_h`` is returned. Voxels constant in a half get NaN (``RuntimeWarning``).
    """
    a = _as_array(repeats, "repeats")
    single = a.ndim == 2
    if single:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[0] < 3 or a.shape[1] < 2:
        raise ValueError(f"repeats must have shape (N images >= 3, R repeats >= 2, V voxels); got {a.shape}")
    n_splits = int(n_splits)
    if n_splits < 1:
        raise ValueError(f"n_splits must be >= 1; got {n_splits}")
    n_repeats = a.shape[1]
    half = n_repeats // 2
    n_target = n_repeats if n_target is None else n_target
    if not n_target >= 1:
        raise ValueError(f"n_target must be >= 1 repeats; got {n_target!r}")
    splits = _half_splits(n_repeats, half, n_splits, np.random.default_rng(seed))
    r_h = np.empty((len(splits), a.shape[2]))
    n_bad = 0
    for i, (ia, ib) in enumerate(splits):
        r_h[i], n_constant = _column_corr(a[:, ia].mean(1), a[:, ib].mean(1))
        n_bad = max(n_bad, n_constant)
    if n_bad:
        warnings.warn(f"{n_bad} voxels are constant within a half of the repeats: their ceiling is NaN",
                      RuntimeWarning, stacklevel=2)
    r = r_h.mean(0)
    rho = np.where(r > 0, spearman_brown(np.where(r > 0, r, 0.0), n_target / half), r)
    return float(rho[0]) if single else rho


def ncsnr_ceiling(ncsnr, n_trials) -> float | np.ndarray:
    """NSD noise ceiling from the noise-ceiling SNR: ``NC = ncsnr² / (ncsnr² + 1/n)`` (a fraction).

    ncsnr : (V,) non-negative, from ``ncsnr.nii.gz``. n_trials : trials averaged per image (NSD
    shared images: 3); scalar or broadcastable to ncsnr. NSD's ``NC(%)`` is 100 times this value;
    it is the fraction of the variance of the n-trial mean that is stimulus-driven
    (:func:`correlation_ceiling` converts it to a ceiling on Pearson r).
    """
    snr = _as_array(ncsnr, "ncsnr")
    n = _as_array(n_trials, "n_trials")
    if np.any(snr < 0):
        raise ValueError(f"ncsnr must be >= 0; got {int(np.sum(snr < 0))} negative values")
    if np.any(n <= 0):
        raise ValueError("n_trials must be > 0")
    snr2 = snr**2
    return _scalar_or_array(snr2 / (snr2 + 1.0 / n))


def correlation_ceiling(noise_ceiling) -> float | np.ndarray:
    """Ceiling on Pearson r from a variance-fraction noise ceiling: ``sqrt(max(nc, 0))``.

    noise_ceiling : fraction in [0, 1] (from :func:`ncsnr_ceiling` or :func:`split_half_ceiling`),
    not percent.
    """
    nc = _as_array(noise_ceiling, "noise_ceiling")
    if np.any(nc > 1.0 + 1e-9):
        raise ValueError("noise_ceiling must be a fraction <= 1 (divide NSD percentages by 100)")
    return _scalar_or_array(np.sqrt(np.clip(nc, 0.0, 1.0)))


def sparseness(x, axis: int = -1) -> float | np.ndarray:
    """Sparseness ``S = 1 - E[x]² / E[x²]`` of non-negative scores along ``axis`` (default: last).

    0 when all values are equal, ``1 - 1/n`` for a single non-zero among n; scale invariant.
    Negative inputs give a ``RuntimeWarning`` (the measure assumes x >= 0); all-zero gives NaN.
    """
    a = _as_array(x, "x")
    if np.any(a < 0):
        warnings.warn("sparseness expects non-negative scores; got negative values", RuntimeWarning, stacklevel=2)
    m1, m2 = a.mean(axis), (a**2).mean(axis)
    if np.any(m2 == 0):
        warnings.warn("sparseness of all-zero scores is undefined: NaN", RuntimeWarning, stacklevel=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _scalar_or_array(np.where(m2 == 0, np.nan, 1.0 - m1**2 / np.where(m2 == 0, 1.0, m2)))


def normalized_variance(x, axis: int = -1, ddof: int = 0) -> float | np.ndarray:
    """Variance of ``x / max(x)`` along ``axis`` (paper 1): scale-free spread of model scores.

    A non-positive maximum leaves the normalisation undefined: NaN with a ``RuntimeWarning``.
    """
    a = _as_array(x, "x")
    peak = a.max(axis, keepdims=True)
    if np.any(peak <= 0):
        warnings.warn("normalized variance needs a positive maximum: NaN", RuntimeWarning, stacklevel=2)
    scaled = a / np.where(peak > 0, peak, np.nan)
    return _scalar_or_array(np.var(scaled, axis=axis, ddof=ddof))


@dataclass
class Discriminability:
    """How well a score separates models: ``sparseness`` and ``normalized_variance`` across models
    (floats, or arrays over the remaining axes, e.g. per subject), plus the model names if known."""

    sparseness: float | np.ndarray
    normalized_variance: float | np.ndarray
    models: tuple[str, ...] | None = None


def discriminability(scores_by_model, axis: int = -1) -> Discriminability:
    """Sparseness and normalised variance of a score (predictivity, sensitivity) across models.

    scores_by_model : dict model name -> score (a float, or an array of equal shape, e.g. one value
        per subject or ROI: the measures are then computed across models for each entry), or an
        array with models along ``axis``. Paper 1 (Fig. 3D) compares these for sensitivity vs
        predictivity: larger values mean the score discriminates models better.
    """
    models = None
    if isinstance(scores_by_model, Mapping):
        models = tuple(str(m) for m in scores_by_model)
        values = [_as_array(v, f"scores_by_model[{m!r}]") for m, v in scores_by_model.items()]
        if len({v.shape for v in values}) > 1:
            raise ValueError(f"every model needs a score of the same shape; got {[v.shape for v in values]}")
        a, axis = np.stack(values, axis=-1) if values else np.empty(0), -1
    else:
        a = _as_array(scores_by_model, "scores_by_model")
    if a.ndim == 0 or a.shape[axis] < 2:
        raise ValueError(f"need scores of at least 2 models along axis {axis}; got shape {a.shape}")
    return Discriminability(sparseness(a, axis), normalized_variance(a, axis), models)


@dataclass
class PairedTest:
    """Result of a paired test of a against b (``statistic``, ``pvalue`` as from scipy).

    ``mean_difference`` / ``median_difference`` are of ``a - b``; ``sem_difference`` is its
    standard error; ``n`` the number of pairs.
    """

    statistic: float | np.ndarray
    pvalue: float | np.ndarray
    mean_difference: float | np.ndarray
    median_difference: float | np.ndarray
    sem_difference: float | np.ndarray
    n: int
    method: str
    alternative: str


def paired_test(a, b, method: str = "t", alternative: str = "two-sided", axis: int = 0) -> PairedTest:
    """Paired test of a against b along ``axis`` (the pairs, e.g. subjects or ROIs).

    method : ``"t"`` (``scipy.stats.ttest_rel``) or ``"wilcoxon"`` (signed-rank, ``scipy.stats.wilcoxon``).
    alternative : ``"two-sided"``, ``"greater"`` (a > b) or ``"less"``.
    """
    check_choice(method, ("t", "wilcoxon"), "method")
    check_choice(alternative, ("two-sided", "greater", "less"), "alternative")
    x, y = _as_array(a, "a"), _as_array(b, "b")
    if x.shape != y.shape or x.ndim == 0:
        raise ValueError(f"a and b must be paired arrays of the same shape; got {x.shape} and {y.shape}")
    n = x.shape[axis]
    if n < 2:
        raise ValueError(f"need at least 2 pairs along axis {axis}; got {n}")
    if method == "t":
        res = stats.ttest_rel(x, y, axis=axis, alternative=alternative)
    else:
        res = stats.wilcoxon(x, y, axis=axis, alternative=alternative)
    d = x - y
    return PairedTest(
        statistic=_scalar_or_array(np.asarray(res.statistic, dtype=np.float64)),
        pvalue=_scalar_or_array(np.asarray(res.pvalue, dtype=np.float64)),
        mean_difference=_scalar_or_array(d.mean(axis)),
        median_difference=_scalar_or_array(np.median(d, axis)),
        sem_difference=sem(d, axis),
        n=int(n),
        method=method,
        alternative=alternative,
    )


def sem(x, axis: int = 0, ddof: int = 1) -> float | np.ndarray:
    """Standard error of the mean along ``axis``: ``std(ddof) / sqrt(n)``."""
    a = _as_array(x, "x")
    if a.ndim == 0 or a.shape[axis] <= ddof:
        raise ValueError(f"need more than {ddof} values along axis {axis}; got shape {a.shape}")
    return _scalar_or_array(a.std(axis, ddof=ddof) / np.sqrt(a.shape[axis]))


def response_sd(responses, ddof: int = 1) -> np.ndarray:
    """S.d. (V,) of each unit's observed responses (N, V) across the N images (sample s.d.,
    ``ddof=1``): the scale in which a change of predicted response (a sensitivity) is reported,
    comparable across ROIs and datasets."""
    a = _as_array(responses, "responses")
    if a.ndim != 2 or a.shape[0] <= ddof:
        raise ValueError(f"responses must be (N, V) with N > {ddof}; got shape {a.shape}")
    return a.std(0, ddof=ddof)


def high_frequency_fraction(x, cutoff: float = 0.25) -> float | np.ndarray:
    """Fraction of the spatial power of ``x`` (..., C, H, W) at radial frequencies above ``cutoff``
    cycles per pixel (Nyquist = 0.5): how noise-like an image or a perturbation (pixel units) is.

    The power spectrum is the 2-D FFT over (H, W) per channel, summed over channels; the mean
    (frequency 0) counts as low-frequency power, so a uniform brightness change scores 0. White
    noise gives about ``1 - pi cutoff^2`` (0.80 for 0.25). Returns ``x.shape[:-3]`` values (a float
    for one image); NaN for an all-zero input. Non-finite entries raise ``ValueError``.
    """
    d = _as_array(x, "x")
    if d.ndim < 3:
        raise ValueError(f"x must have shape (..., C, H, W); got {d.shape}")
    if not 0 < cutoff < 0.5 * np.sqrt(2):
        raise ValueError(f"cutoff must be in (0, 0.707) cycles per pixel; got {cutoff!r}")
    power = np.abs(np.fft.fft2(d)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(d.shape[-2]), np.fft.fftfreq(d.shape[-1]), indexing="ij")
    total = power.sum(axis=(-3, -2, -1))
    high = (power * (np.hypot(fy, fx) > cutoff)).sum(axis=(-3, -2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, high / np.where(total > 0, total, 1.0), np.nan)
    return _scalar_or_array(frac)


@dataclass
class SensitivitySummary:
    """Summary of sensitivities over the reduced axes: floats, or arrays over the kept axes."""

    mean: float | np.ndarray
    median: float | np.ndarray
    std: float | np.ndarray
    q25: float | np.ndarray
    q75: float | np.ndarray
    n: int


def sensitivity_summary(sensitivity, axis: int | tuple[int, ...] = (-2, -1)) -> SensitivitySummary:
    """Mean, median, standard deviation and quartiles of sensitivities over ``axis``.

    sensitivity : e.g. (N images, V voxels) or (n_eps, N, V) response changes (response units).
    axis : axes to pool (default the last two: images and voxels), e.g. giving one summary per eps.
    """
    s = _as_array(sensitivity, "sensitivity")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if s.ndim == 0 or any(not -s.ndim <= ax < s.ndim for ax in axes):
        raise ValueError(f"axis {axis} out of range for sensitivity of shape {s.shape}")
    axes = tuple(sorted({ax % s.ndim for ax in axes}))
    n = int(np.prod([s.shape[ax] for ax in axes]))
    if n == 0:
        raise ValueError(f"no values to summarise along axis {axis} (shape {s.shape})")
    q25, med, q75 = np.percentile(s, [25, 50, 75], axis=axes)
    return SensitivitySummary(
        mean=_scalar_or_array(s.mean(axes)),
        median=_scalar_or_array(med),
        std=_scalar_or_array(s.std(axes)),
        q25=_scalar_or_array(q25),
        q75=_scalar_or_array(q75),
        n=n,
    )


def percentile_of(values, distribution) -> np.ndarray | float:
    """Percentile (0-100) of each value within ``distribution`` (fraction of it strictly below,
    plus half the ties), e.g. where a perturbed prediction falls among the observed responses.
    Non-finite values or distribution entries raise ``ValueError``."""
    d = np.sort(_as_array(distribution, "distribution").ravel())
    if d.size == 0:
        raise ValueError("distribution is empty")
    v = _as_array(values, "values")
    below = np.searchsorted(d, v, side="left")
    upto = np.searchsorted(d, v, side="right")
    pct = 100.0 * (below + 0.5 * (upto - below)) / d.size
    return float(pct) if pct.ndim == 0 else pct


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


@dataclass
class GradientAgreement:
    """How a candidate's local coding directions line up with a reference's (e.g. the observer).

    cosine : (N, U) signed cosine between the candidate's and the reference's gradient of each
        unit at each image (+1: same direction, 0: orthogonal, -1: opposite).
    subspace : (N,) :func:`probelib.geometry.subspace_similarity` between the spans of the U
        gradients (the U-dimensional perturbation subspaces) at each image; 1 = same subspace.
    chance : expected ``subspace`` (and ``cosine**2``) for random directions, ``U / D``.
    """

    cosine: np.ndarray
    subspace: np.ndarray
    chance: float


def gradient_agreement(grads, ref_grads) -> GradientAgreement:
    """Compare input gradients (N, U, D) of a candidate with those of a reference, image by image.

    Both arrays come from :func:`input_gradients` on the same images and corresponding units
    (the candidate's unit ``u`` models the reference's unit ``u``).
    """
    from .geometry import subspace_similarity  # here, not at the top: geometry imports torch

    g = np.asarray(grads, dtype=np.float64)
    r = np.asarray(ref_grads, dtype=np.float64)
    if g.ndim != 3 or g.shape != r.shape:
        raise ValueError(f"gradients must both have shape (N, U, D); got {g.shape} and {r.shape}")
    n, n_units, dim = g.shape
    gn, rn = np.linalg.norm(g, axis=2), np.linalg.norm(r, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where((gn > 0) & (rn > 0), (g * r).sum(2) / (gn * rn), np.nan)
    sub = np.array([subspace_similarity(g[i].T, r[i].T) if (gn[i] > 0).any() and (rn[i] > 0).any()
                    else np.nan for i in range(n)])
    return GradientAgreement(cosine=cos, subspace=sub, chance=n_units / dim)


def sensitivity_agreement(sens, ref_sens) -> dict[str, float]:
    """How close a candidate's sensitivities are to a reference's (same images and units).

    sens, ref_sens : (N, U) positive sensitivities (e.g. ``ProbeResult.sensitivity[e]``, U units or
        ROIs), in comparable units (divide each unit by the s.d. of its observed responses).

    Returns ``level_ratio``: geometric mean of ``sens / ref_sens`` (1 = same overall sensitivity);
    ``log_level_error``: ``|log level_ratio|`` (0 = same level; symmetric in over- and
    under-sensitivity); ``profile_r``: Pearson correlation across images of ``log sens`` and
    ``log ref_sens``, averaged over units (which images a model finds fragile, regardless of the
    level; NaN with fewer than 3 images).
    """
    s = np.asarray(sens, dtype=np.float64)
    r = np.asarray(ref_sens, dtype=np.float64)
    if s.ndim == 1 and r.ndim == 1:
        s, r = s[:, None], r[:, None]
    if s.shape != r.shape or s.ndim != 2:
        raise ValueError(f"sens and ref_sens must have the same shape (N, U); got {s.shape} and {r.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(r))) or np.any(s <= 0) or np.any(r <= 0):
        raise ValueError("sensitivities must be finite and > 0")
    ls, lr = np.log(s), np.log(r)
    ratio = float(np.exp(np.mean(ls - lr)))
    prof = np.nan
    if s.shape[0] >= 3:
        rs = []
        for u in range(s.shape[1]):
            a, b = ls[:, u] - ls[:, u].mean(), lr[:, u] - lr[:, u].mean()
            den = math.sqrt(float((a**2).sum() * (b**2).sum()))
            if den > 0:
                rs.append(float((a * b).sum()) / den)
        prof = float(np.mean(rs)) if rs else np.nan
    return {"level_ratio": ratio, "log_level_error": abs(math.log(ratio)), "profile_r": prof}
