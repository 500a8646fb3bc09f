"""Model recovery and probe diagnostics (Part II of the book: semantic probes and objections).

The demo's responses come from a known generative model, the hidden observer
(:func:`probelib.data.demo.demo_observer`). That makes a question answerable that the papers
cannot answer on real fMRI data: *do predictivity and adversarial sensitivity point at the model
family that really generated the responses?* This module holds the analysis pieces:

- choosing models: :func:`robustness_level` of a model spec and :func:`select_robust`, the most
  robust model of a ladder that still predicts well; :func:`with_noise_samples`, the same smoothed
  model with more Monte-Carlo noise draws (a better estimate of its gradient);
- one model per spec with all ROIs as outputs: :func:`stack_rois` (one encoder pass for every
  ROI), the observer restricted to the same ROI means, :func:`observer_for_rois`, and
  :class:`SelectUnits` to take some outputs of a model (one ROI of a stacked model);
- comparing a candidate with the observer: :func:`input_gradients` (cached on disk),
  :func:`gradient_agreement` (cosine of each ROI's gradient and similarity of the perturbation
  subspaces), :func:`sensitivity_agreement` (level and image-by-image profile of sensitivities),
  :func:`rank_candidates` and :func:`winners`;
- regularising response maximisation: :func:`total_variation` and :func:`tv_weight` (a
  smoothness weight comparable across models whose gradients differ by orders of magnitude);
- probes: :func:`probelib.metrics.high_frequency_fraction` (how noise-like a perturbation is) and
  :func:`transfer_table` (what probes made on one model do to other models, next to a
  random-direction control of the same size);
- caching: :func:`cached_optimize` (response maximisation / minimisation trajectories),
  :func:`cached_responses` (batched predictions), keyed on disk like the probe sweeps of
  :mod:`probelib.pipeline`, and :func:`probelib.pipeline.cached_attack` (FGSM / PGD on any model,
  e.g. the observer; re-exported here).

Conventions as in the rest of probelib: images (N, 3, H, W) with pixels in [0, 1]; responses
(N, V); perturbations in pixel units; sensitivities in the response units of the model.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from .probes import OptimizationResult, ProbeResult, maximize, minimize, random_control, transfer
from ._checks import as_float32_array
from .cache import cached_call, module_key
from .geometry import jacobian, subspace_similarity
from .model import EncodingModel
from .zoo import parse_spec, robust_checkpoint

__all__ = [
    "robustness_level",
    "select_robust",
    "with_noise_samples",
    "StackedModel",
    "SelectUnits",
    "stack_rois",
    "observer_for_rois",
    "input_gradients",
    "GradientAgreement",
    "gradient_agreement",
    "sensitivity_agreement",
    "rank_candidates",
    "winners",
    "transfer_table",
    "total_variation",
    "tv_weight",
    "cached_optimize",
    "cached_responses",
]



# ----------------------------------------------------------------------------------------------
# Choosing models
# ----------------------------------------------------------------------------------------------

def robustness_level(spec: str) -> float:
    """Robustness of a model spec: the smoothing sigma of ``"...+smooth<sigma>"`` (pixel units),
    the L-inf budget of ``"...+adv<k>"`` (k/255, pixel units), the training budget of an
    adversarially trained ``"resnet50_l2_eps<eps>"``, else 0.

    >>> robustness_level("mobilenet_v2+smooth0.25"), robustness_level("resnet50_l2_eps3")
    (0.25, 3.0)
    """
    p = parse_spec(spec)
    if p.sigma > 0:
        return p.sigma
    if p.adv > 0:
        return p.adv / 255  # an L-inf training budget in pixel units
    robust = robust_checkpoint(p.name)
    return robust[1] if robust else 0.0


def select_robust(predictivity: Mapping[str, float], min_relative: float = 0.95) -> str:
    """The most robust trained model that still predicts well.

    predictivity : model spec -> one held-out accuracy (e.g. Pearson r averaged over ROIs).
    min_relative : a model "predicts well" if its accuracy is at least this fraction of the
        best accuracy among all the given models.

    Returns the spec with the largest :func:`robustness_level` > 0 among trained models
    (no ``":untrained"``) that predict well; ties go to the better predictor. If no robust
    model predicts well, the best-predicting robust model; raises ``ValueError`` if none is robust.
    """
    if not 0 < min_relative <= 1:
        raise ValueError(f"min_relative must be in (0, 1]; got {min_relative!r}")
    scores = {str(k): float(v) for k, v in predictivity.items()}
    if not scores or not all(math.isfinite(v) for v in scores.values()):
        raise ValueError(f"predictivity must map specs to finite numbers; got {predictivity!r}")
    robust = [s for s in scores if robustness_level(s) > 0 and ":untrained" not in s]
    if not robust:
        raise ValueError(f"no robust (smoothed or adversarially trained) model among {list(scores)}")
    best = max(scores.values())
    good = [s for s in robust if scores[s] >= min_relative * best]
    if not good:
        return max(robust, key=lambda s: scores[s])
    return max(good, key=lambda s: (robustness_level(s), scores[s]))


def with_noise_samples(model: EncodingModel, n_samples: int, seed: int | None = None) -> EncodingModel:
    """The same smoothed encoding model evaluated with ``n_samples`` noise draws.

    A smoothed encoder averages its network over a fixed set of noise images
    (:class:`probelib.encoders.SmoothedEncoder`); its expected features, and hence the fitted
    readout, do not depend on how many draws estimate them, but its input gradient does: with few
    draws the gradient carries the high-frequency imprint of those particular noise images. The
    returned model shares ``model``'s readout (not copied) and wraps the same network.
    ``seed`` defaults to the original smoothing seed.
    """
    enc = model.encoder
    if not hasattr(enc, "sigma") or not hasattr(enc, "encoder"):
        raise ValueError(f"{getattr(model, 'name', model)!r} has no smoothed encoder; only smoothed "
                         "models have noise draws")
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples!r}")
    from .encoders import smooth
    new = smooth(enc.encoder, sigma=enc.sigma, n_samples=int(n_samples),
                 seed=enc.seed if seed is None else int(seed))
    new.name = f"{getattr(enc, 'name', 'smoothed')} (n={int(n_samples)})"
    return EncodingModel(new, model.readout, name=f"{model.name} (n={int(n_samples)})")


# ----------------------------------------------------------------------------------------------
# Several ROIs as the outputs of one model
# ----------------------------------------------------------------------------------------------

class StackedModel(nn.Module):
    """One encoder, several readouts: images (N, 3, H, W) -> (N, sum of readout outputs).

    ``names[i]`` labels the columns ``columns[i]`` (a slice) produced by ``readouts[i]``.
    """

    def __init__(self, encoder: nn.Module, readouts: Sequence[nn.Module], names: Sequence[str],
                 n_outputs: Sequence[int], name: str = "stacked") -> None:
        super().__init__()
        if not (len(readouts) == len(names) == len(n_outputs)) or not readouts:
            raise ValueError("need one name and one output count per readout (at least one)")
        self.encoder = encoder
        self.readouts = nn.ModuleList(readouts)
        self.names = list(names)
        starts = np.cumsum([0, *n_outputs])
        self.columns = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        self.name = name
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(images)
        return torch.cat([r(feats) for r in self.readouts], dim=1)


class SelectUnits(nn.Module):
    """``model`` restricted to some of its output units: (N, V) -> (N, len(units)).

    E.g. one ROI of a :class:`StackedModel` or of :func:`observer_for_rois`, as a target for
    :func:`probelib.probes.transfer` of probes made on a single-ROI model (unit 0).
    """

    def __init__(self, model: nn.Module, units: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.units = [int(u) for u in np.atleast_1d(units)]
        if not self.units:
            raise ValueError("units must name at least one output")
        self.name = f"{getattr(model, 'name', 'model')}[{self.units}]"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[:, self.units]


def stack_rois(fit, spec: str, rois: Sequence[str]) -> StackedModel:
    """The models ``fit.models[(spec, roi)]`` of a :class:`~probelib.pipeline.PanelFit` as one
    model whose outputs are the ROIs' units side by side (ROI order of ``rois``).

    The encoder runs once per batch for all ROIs, so a Jacobian over all ROIs costs one forward
    pass. The per-ROI models must share an encoder (as :func:`~probelib.pipeline.fit_panel`
    builds them) or named encoders with identical descriptions.
    """
    rois = list(rois)
    models = [fit.models[(spec, r)] for r in rois]
    first = models[0].encoder
    key = module_key(first)
    for roi, m in zip(rois, models):
        if m.encoder is not first and module_key(m.encoder) != key:
            raise ValueError(f"the models of {spec!r} do not share an encoder ({roi!r} differs)")
    return StackedModel(first, [m.readout for m in models], rois, [m.n_outputs for m in models],
                        name=f"{spec}/{'+'.join(rois)}")


def observer_for_rois(dataset, rois: Sequence[str], n_subjects: int = 3, n_voxels: int = 400,
                      seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """The demo's hidden observer with the columns of ``dataset.responses[roi]`` for each ROI
    side by side: (N, sum of V_roi) noiseless expected responses (ROI means for a subject-averaged
    dataset), the "ground-truth brain" against which candidate models are compared.

    ``dataset`` must be a :func:`probelib.data.demo.load_demo` result made with the same
    ``n_subjects``, ``n_voxels`` and ``seed`` (checked).
    """
    from .data.demo import demo_observer

    if not dataset.voxels or any("observer_index" not in dataset.voxels.get(r, {}) for r in rois):
        raise ValueError("the observer exists only for the demo dataset (dataset='demo')")
    obs = demo_observer(n_subjects=n_subjects, n_voxels=n_voxels, seed=seed, device=device)
    columns, blocks = [], []
    for roi in rois:
        part = obs.for_roi(dataset, roi)  # checks that the dataset came from this observer
        columns.append(np.asarray(dataset.voxels[roi]["observer_index"]))
        blocks.append(part.readout.detach().cpu().double().numpy())
    out = obs.restrict(np.concatenate(columns), _block_diagonal(blocks)).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _block_diagonal(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Block-diagonal matrix of 2-D blocks (K_i, M_i) -> (sum K_i, sum M_i)."""
    weights = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
    r0 = c0 = 0
    for b in blocks:
        weights[r0:r0 + b.shape[0], c0:c0 + b.shape[1]] = b
        r0, c0 = r0 + b.shape[0], c0 + b.shape[1]
    return weights


# ----------------------------------------------------------------------------------------------
# Perturbations and gradients
# ----------------------------------------------------------------------------------------------



def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of images (N, 3, H, W): mean |vertical neighbour difference|
    + mean |horizontal neighbour difference| (pixel units), shape (N,). This is the smoothness
    penalty of :func:`probelib.probes.maximize` / :func:`~probelib.probes.minimize`."""
    dv = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dh = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dv + dh


def tv_weight(model: nn.Module, image: torch.Tensor, unit: int, relative: float) -> float:
    """Smoothness weight for :func:`probelib.probes.maximize` that is comparable across models.

    Models differ by orders of magnitude in how steeply their responses change with the pixels,
    so one fixed weight of the total-variation penalty regularises a robust model far more than a
    standard one. This returns ``relative * ||grad r_unit(image)|| / ||grad TV(image)||``: the
    weight at which the penalty's gradient is ``relative`` times the objective's gradient at the
    start image (image (3, H, W) or (1, 3, H, W) in [0, 1]). 0 when ``relative`` is 0.
    """
    if not relative >= 0:
        raise ValueError(f"relative must be >= 0; got {relative!r}")
    if relative == 0:
        return 0.0
    x = (image[None] if image.ndim == 3 else image).detach().clone()
    dev = next(iter(list(model.parameters()) + list(model.buffers())), x).device
    x = x.to(dev).requires_grad_(True)
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            (g_obj,) = torch.autograd.grad(model(x)[0, int(unit)], x)
            (g_tv,) = torch.autograd.grad(total_variation(x).sum(), x)
    finally:
        for m, f in flags:
            m.training = f
    n_tv = float(g_tv.norm())
    if n_tv == 0:
        raise ValueError("the image is constant: the total variation has no gradient; start from "
                         "an image with some texture (e.g. grey plus a little noise)")
    return float(relative) * float(g_obj.norm()) / n_tv


def _images(images) -> np.ndarray:
    """Images (N, 3, H, W) as a C-contiguous float32 numpy array (from numpy or torch)."""
    x = as_float32_array(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W); got {x.shape}")
    return x


def _gradients_impl(key: dict, model: nn.Module, images: np.ndarray, units, device) -> np.ndarray:
    del key  # cache key only
    out = []
    for img in images:
        out.append(jacobian(model, torch.from_numpy(np.ascontiguousarray(img)), units=units,
                            device=device).numpy())
    return np.stack(out).astype(np.float32)


def input_gradients(model: nn.Module, images, units=None, key: Mapping | None = None,
                    device=None) -> np.ndarray:
    """Input gradients of the model's units at each image: (N, U, D) float32, D = 3·H·W.

    Row ``[n, u]`` is ``d r_u / d vec(x_n)`` (:func:`probelib.geometry.jacobian`, one forward
    and U backward passes per image). With ``key`` (a JSON-able description of the model, e.g.
    the dataset digest and the model spec) the result is cached on disk keyed by ``key``, the
    units and the image content.
    """
    x = _images(images)
    u = None if units is None else [int(i) for i in np.atleast_1d(units)]
    return cached_call(_gradients_impl, None if key is None else dict(key), model, x, u, device,
                       ignore=("model", "device"),
                       check=lambda g: isinstance(g, np.ndarray) and g.ndim == 3 and len(g) == len(x))


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


# ----------------------------------------------------------------------------------------------
# Sensitivity profiles and rankings
# ----------------------------------------------------------------------------------------------

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


def rank_candidates(table: pd.DataFrame, criteria: Mapping[str, bool]) -> pd.DataFrame:
    """Add a rank column ``rank_<criterion>`` (1 = best) for every column in ``criteria``.

    table : one row per candidate model. criteria : column -> True if higher is better.
    Ties share the best rank; NaN ranks last. Returns a copy.
    """
    out = table.copy()
    for col, higher in criteria.items():
        if col not in out:
            raise ValueError(f"no column {col!r} in the table; columns: {list(out.columns)}")
        out[f"rank_{col}"] = out[col].rank(ascending=not higher, method="min",
                                           na_option="bottom").astype(int)
    return out


def winners(table: pd.DataFrame, criteria: Mapping[str, bool], name_column: str = "model") -> dict[str, str]:
    """The best candidate (value of ``name_column``) under each criterion (see :func:`rank_candidates`)."""
    out = {}
    for col, higher in criteria.items():
        values = table[col]
        if values.isna().all():
            out[col] = "n/a"
            continue
        best = values.idxmax() if higher else values.idxmin()
        out[col] = str(table.loc[best, name_column])
    return out


# ----------------------------------------------------------------------------------------------
# Transfer of probes, next to a random control
# ----------------------------------------------------------------------------------------------

def _transfer_rows(key: dict, probes: Mapping[str, ProbeResult], images: np.ndarray,
                   targets: Mapping[str, nn.Module], scale: float, eps_index: int, control_seed: int,
                   device) -> list[dict]:
    del key  # cache key only (with the probes and images, which joblib hashes)
    x = torch.from_numpy(images)
    rows = []
    for attack, probe in probes.items():
        for name, model in targets.items():
            moved = transfer(probe, x, model, device=device, progress=False)
            ctrl = random_control(model, x, probe, seed=control_seed, device=device,
                                          store_perturbations=False, progress=False)
            change = float(np.mean(moved.sensitivity[eps_index])) / scale
            control = float(np.mean(ctrl.sensitivity[eps_index])) / scale
            rows.append({"attack": attack, "target": name, "change": change, "control": control,
                         "gain": change / control if control > 0 else np.nan})
    return rows


def transfer_table(probes: Mapping[str, ProbeResult], images: torch.Tensor,
                   targets: Mapping[str, nn.Module], scale: float = 1.0, eps_index: int = 0,
                   control_seed: int = 0, device=None, key: Mapping | None = None) -> pd.DataFrame:
    """What probes made on a source model do to target models, next to random controls.

    probes : attack name -> :class:`~probelib.probes.ProbeResult` made on the source (kept
        perturbations, same images and units for every attack).
    images : (N, 3, H, W) the images the probes were made for.
    targets : target name -> model whose units correspond to the probes' units (include the
        source itself to get its white-box effect).
    scale : sensitivities are divided by this (e.g. the s.d. of the observed responses).
    eps_index : which budget of the probes' grid to use.
    key : a JSON-able description of the targets; with it the table is cached on disk, keyed
        by ``key``, the probes' content (perturbations included), the images and the settings.

    Returns one row per (attack, target): ``change`` = mean sensitivity of the target to the
    probes (definition of the probes' ``direction``, divided by ``scale``), ``control`` = the
    same for a random perturbation of the same size (:func:`probelib.probes.random_control`),
    and ``gain`` = change / control (1 = no better than random noise).
    """
    if not probes or not targets:
        raise ValueError("need at least one probe and one target")
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}")
    x = as_float32_array(images)
    full = None if key is None else {"key": dict(key), "targets": list(targets)}
    return pd.DataFrame(cached_call(_transfer_rows, full, dict(probes), x, dict(targets), float(scale),
                                    int(eps_index), int(control_seed), device,
                                    ignore=("targets", "device"),
                                    check=lambda rows: (isinstance(rows, list)
                                                        and all(isinstance(r, dict) for r in rows))))


# ----------------------------------------------------------------------------------------------
# Cached trajectories and predictions
# ----------------------------------------------------------------------------------------------

def _optimize_impl(key: dict, model: nn.Module, image: np.ndarray, unit, mode: str,
                   kwargs: dict) -> OptimizationResult:
    del key  # cache key only
    fn = maximize if mode == "maximize" else minimize
    return fn(model, torch.from_numpy(np.ascontiguousarray(image)), unit, **kwargs)


def cached_optimize(model: nn.Module, image, unit, mode: str = "maximize", key: Mapping | None = None,
                    **kwargs) -> OptimizationResult:
    """:func:`probelib.probes.maximize` (``mode="maximize"``) or :func:`~probelib.probes.minimize`
    of ``unit`` from ``image`` (3, H, W), cached on disk.

    ``key`` is a JSON-able description of the model (e.g. dataset digest, spec, ROI, noise draws):
    the cache is keyed by it, the image content, ``unit``, ``mode`` and every keyword argument
    (``steps``, ``eps``, ``step_size``, ``jitter``, ``smoothness``, ``record_every``, ``seed`` ...).
    Without ``key`` nothing is cached.
    """
    if mode not in ("maximize", "minimize"):
        raise ValueError(f"mode must be 'maximize' or 'minimize'; got {mode!r}")
    x = as_float32_array(image)
    kwargs = {"progress": False, **kwargs}
    settings = {k: v for k, v in kwargs.items() if k not in ("device", "progress")}
    full = None if key is None else {"key": dict(key), "settings": settings}
    return cached_call(_optimize_impl, full, model, x, unit, mode, kwargs, ignore=("model", "kwargs"),
                       check=lambda r: isinstance(r, OptimizationResult))


def _responses_impl(key: dict, model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    del key
    from .model import batched
    return batched(model, torch.from_numpy(images), batch_size, progress=False)


def cached_responses(model: nn.Module, images, key: Mapping | None = None,
                     batch_size: int = 16) -> np.ndarray:
    """Responses (N, V) float32 of ``model`` to ``images`` (N, 3, H, W), without gradients;
    cached on disk by ``key`` (a JSON-able description of the model) and the image content."""
    x = _images(images)
    return cached_call(_responses_impl, None if key is None else dict(key), model, x, batch_size,
                       ignore=("model", "batch_size"),
                       check=lambda r: isinstance(r, np.ndarray) and r.ndim == 2 and len(r) == len(x))
