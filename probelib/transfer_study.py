"""Panel-level analyses of the 2025 paper: shared probe settings, transfer of probes between
models (fixed budget and fixed effect) and perturbation subspaces compared across models.

The chapters of Part II (model panel, transfer, subspaces) probe the same models at the same
images with the same settings; :func:`l2_probe_settings` and :func:`probelib.data.probe_images`
(re-exported here) define those settings once, so that :func:`probelib.pipeline.cached_probe` finds
the sweeps of one chapter in the cache of another.

Shapes: ``N`` probed images, ``U`` probed output units (ROI means or voxels), ``M`` models,
``S`` source models, ``T`` target models, ``D = 3 * H * W`` pixels, ``k`` subspace dimension.
Responses and sensitivities are in the units of the model's responses (the demo's responses are
z-scored single trials averaged over repeats); :func:`probelib.metrics.response_sd` gives the scale of the observed
responses to express sensitivities relative to it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._torch import evaluating, resolve_device
from .probes import FixedEffectResult, ProbeResult, sensitivity_of_change
from .cache import cached_call
from .geometry import perturbation_subspace, similarity_matrix
from .pipeline import PanelFit

__all__ = [
    "REFERENCE_SIZE",
    "scale_eps",
    "l2_probe_settings",
    "model_groups",
    "group_means",
    "probe_deltas",
    "fixed_effect_budget",
    "TransferResult",
    "evaluate_transfer",
    "transfer_study",
    "SubspacePanel",
    "panel_subspaces",
]

#: Side in pixels of the images the papers' budgets refer to (224 px ImageNet-size stimuli).
REFERENCE_SIZE = 224


# ----------------------------------------------------------------------------------------------
# Shared settings
# ----------------------------------------------------------------------------------------------

def scale_eps(eps, image_size: int, norm: str = "l2", reference_size: int = REFERENCE_SIZE):
    """Budget(s) on ``image_size`` px images equivalent to ``eps`` on ``reference_size`` px images.

    An L2 budget is the Euclidean norm of the whole (3, S, S) perturbation, so the same root mean
    square change per pixel needs ``eps * S / reference_size``. An L-inf budget is a per-pixel
    bound and does not depend on the image size (returned unchanged). A scalar gives a float, a
    sequence a list of floats.
    """
    if norm not in ("l2", "linf"):
        raise ValueError(f"unknown norm {norm!r}; valid: 'l2', 'linf'")
    if int(image_size) < 1 or int(reference_size) < 1:
        raise ValueError("image_size and reference_size must be positive")
    factor = int(image_size) / int(reference_size) if norm == "l2" else 1.0
    if np.ndim(eps) == 0:
        return float(eps) * factor
    return [float(e) * factor for e in eps]


def l2_probe_settings(image_size: int, eps: float = 5.0, steps: int = 5, direction: str = "abs",
                      store_perturbations: bool = True) -> dict:
    """Keyword arguments of :func:`probelib.pipeline.cached_probe` for the 2025 paper's probes.

    Iterative L2 probes (PGD) at the paper's budget ``eps`` (for 224 px images; scaled to
    ``image_size`` by :func:`scale_eps`), ``steps`` ascent steps, sensitivity ``direction``
    (paper 2: ``"abs"``), perturbations stored (the transfer analyses need them).
    Returns ``{"attack": "pgd", "eps": [eps_S], "norm": "l2", ...}``.
    """
    return {"attack": "pgd", "eps": [scale_eps(eps, image_size)], "norm": "l2", "steps": int(steps),
            "direction": direction, "store_perturbations": bool(store_perturbations)}




def model_groups(specs: Sequence[str]) -> dict[str, list[str]]:
    """Split model specs into ``"standard"``, ``"robust"`` and ``"untrained"`` (empty groups dropped).

    ``robust``: randomized-smoothing specs (``+smooth<sigma>`` with sigma > 0, the demo's stand-in)
    and adversarially trained networks (``..._l2_eps<e>`` / ``..._linf_eps<e>`` with e > 0);
    ``untrained``: ``:untrained`` specs; everything else is ``standard``.
    """
    from .zoo import is_robust, parse_spec

    out: dict[str, list[str]] = {"standard": [], "robust": [], "untrained": []}
    for spec in specs:
        if parse_spec(spec).untrained:
            out["untrained"].append(spec)
        elif is_robust(spec):
            out["robust"].append(spec)
        else:
            out["standard"].append(spec)
    return {g: v for g, v in out.items() if v}


def group_means(values, names: Sequence[str], groups: Mapping[str, Sequence[str]],
                symmetric: bool = True, include_diagonal: bool = False) -> pd.DataFrame:
    """Mean of a model-by-model matrix within and between groups of models.

    values : (M, M) matrix, or (N, M, M) one matrix per image (then the block means are taken
        per image and summarised by their mean and SEM over images).
    names : the M model names, in matrix order. groups : label -> names of that group.
    symmetric : True -> one row per unordered pair of groups; False (e.g. a transfer matrix,
        rows = source, columns = target) -> one row per ordered pair (from, to).
    include_diagonal : keep the entries ``[i, i]`` (a model with itself); default excluded.

    Returns a DataFrame with columns ``from``, ``to``, ``mean``, ``sem`` (NaN for a single
    matrix), ``n_pairs`` (model pairs averaged); pairs of groups without any pair are skipped.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    names = list(names)
    if a.ndim != 3 or a.shape[1:] != (len(names), len(names)):
        raise ValueError(f"values must be (M, M) or (N, M, M) with M = {len(names)}; got {np.shape(values)}")
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for g in groups.values() for n in g if n not in index]
    if unknown:
        raise ValueError(f"groups name models not in names: {unknown}")
    labels = list(groups)
    rows = []
    for ia, ga in enumerate(labels):
        for ib, gb in enumerate(labels):
            if symmetric and ib < ia:
                continue
            pairs = [(index[p], index[q]) for p in groups[ga] for q in groups[gb]
                     if include_diagonal or p != q]
            if symmetric and ga == gb:
                pairs = [(i, j) for i, j in pairs if i <= j]
            if not pairs:
                continue
            ii, jj = np.array(pairs).T
            per_image = a[:, ii, jj].mean(1)
            sem = per_image.std(ddof=1) / np.sqrt(len(per_image)) if len(per_image) > 1 else np.nan
            rows.append({"from": ga, "to": gb, "mean": float(per_image.mean()), "sem": float(sem),
                         "n_pairs": len(pairs)})
    return pd.DataFrame(rows, columns=["from", "to", "mean", "sem", "n_pairs"])


# ----------------------------------------------------------------------------------------------
# Transfer
# ----------------------------------------------------------------------------------------------

def probe_deltas(result: ProbeResult | FixedEffectResult, eps_index: int = 0) -> np.ndarray:
    """The applied perturbations of a probe result as a float32 array (U, N, 3, H, W).

    ``ProbeResult``: the probes of budget ``eps[eps_index]`` (the result must keep its
    perturbations: ``store_perturbations=True``). ``FixedEffectResult``: the kept probes.
    ``images + deltas`` lies in [0, 1].
    """
    if isinstance(result, FixedEffectResult):
        if result.deltas is None:
            raise ValueError("this FixedEffectResult does not keep its probes; rerun with "
                             "store_perturbations=True")
        return np.asarray(result.deltas, dtype=np.float32)
    if not isinstance(result, ProbeResult):
        raise ValueError(f"expected a ProbeResult or FixedEffectResult; got {type(result).__name__}")
    if not result.has_perturbations:
        raise ValueError("this ProbeResult does not keep its perturbations; rerun the attack with "
                         "store_perturbations=True")
    n_units = result.sensitivity.shape[2]
    return np.stack([result.perturbation(eps_index, j).numpy() for j in range(n_units)]).astype(np.float32)


def fixed_effect_budget(sensitivity, eps: float, target, margin: float = 2.0,
                        cap: float | None = None) -> float:
    """Largest budget a fixed-effect search needs to try, from a fixed-budget sweep.

    sensitivity : (N, U) (or any shape) sensitivities measured at budget ``eps``.
    target : the response change to reach (scalar, or broadcastable to ``sensitivity``).

    To first order the change grows linearly with the budget, so reaching ``target`` needs about
    ``eps * target / sensitivity``; the returned ``eps_max`` is ``margin`` times the largest such
    estimate (never below ``eps * margin * 0.25``, and at most ``cap`` when given). Bisection from
    a tight ``eps_max`` needs far fewer PGD trials than from a generic large one.
    """
    s = np.asarray(sensitivity, dtype=np.float64)
    t = np.broadcast_to(np.asarray(target, dtype=np.float64), s.shape)
    if eps <= 0 or margin <= 0 or np.any(t <= 0):
        raise ValueError("eps, margin and target must be > 0")
    need = eps * t / np.maximum(s, 1e-12 * max(float(t.max()), 1e-12))
    value = max(float(margin * need.max()), 0.25 * margin * eps)
    return min(value, float(cap)) if cap is not None else value


@dataclass
class TransferResult:
    """Response changes of target models under the probes of source models.

    Attributes
    ----------
    names : the T target model names.
    sources : the S source model names (a subset of ``names``, in their order).
    change : (S, T, N, U) sensitivity of target ``t`` to the probe that source ``s`` made for
        unit ``units[u]`` at image ``n`` (definition of ``direction``; ``[s, s]`` is the
        source's own sensitivity).
    signed_change : (S, T, N, U) ``perturbed - clean`` response of the target.
    control : (S, T, N, U) sensitivity of target ``t`` to a random direction with the same L2
        norm as the source's probe (Gaussian direction, clamped to [0, 1]): the negative control.
    probe_norm : (S, N, U) L2 norm of the applied probes of each source.
    clean : (T, N, U) clean responses of each target.
    units : (U,) output units; direction : sensitivity definition; roi : label.
    """

    names: list[str]
    sources: list[str]
    change: np.ndarray
    signed_change: np.ndarray
    control: np.ndarray
    probe_norm: np.ndarray
    clean: np.ndarray
    units: np.ndarray
    direction: str
    roi: str = ""

    @property
    def matrix(self) -> np.ndarray:
        """(S, T) mean sensitivity over images and units."""
        return self.change.mean((2, 3))

    @property
    def control_matrix(self) -> np.ndarray:
        """(S, T) mean sensitivity to the norm-matched random directions."""
        return self.control.mean((2, 3))

    @property
    def own(self) -> np.ndarray:
        """(T,) each target's mean sensitivity to its own probes (NaN if it is not a source)."""
        m = self.matrix
        return np.array([m[self.sources.index(t), i] if t in self.sources else np.nan
                         for i, t in enumerate(self.names)])

    @property
    def relative(self) -> np.ndarray:
        """(S, T) ``matrix`` divided column-wise by the target's own sensitivity (1 = the probe
        moves the target as much as the target's own probe does)."""
        return self.matrix / self.own[None, :]

    @property
    def per_image(self) -> np.ndarray:
        """(N, S, T) mean over units, one matrix per image."""
        return self.change.mean(3).transpose(2, 0, 1)

    def table(self) -> pd.DataFrame:
        """Long table: source, target, image (position), unit, change, control, probe_norm."""
        s, t, n, u = self.change.shape
        grid = np.meshgrid(np.arange(s), np.arange(t), np.arange(n), np.arange(u), indexing="ij")
        return pd.DataFrame({
            "source": np.asarray(self.sources, dtype=object)[grid[0].ravel()],
            "target": np.asarray(self.names, dtype=object)[grid[1].ravel()],
            "image": grid[2].ravel(), "unit": np.asarray(self.units)[grid[3].ravel()],
            "change": self.change.ravel(), "control": self.control.ravel(),
            "probe_norm": np.broadcast_to(self.probe_norm[:, None], self.change.shape).ravel(),
        })


@torch.no_grad()
def _responses(model: nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    out = []
    for i in range(0, x.shape[0], batch_size):
        r = model(x[i:i + batch_size])
        out.append((r[:, None] if r.ndim == 1 else r).double().cpu().numpy())
    return np.concatenate(out)


def evaluate_transfer(models: Mapping[str, nn.Module], images, deltas: Mapping[str, np.ndarray],
                      units: Sequence[int] | np.ndarray, direction: str = "abs", seed: int = 0,
                      batch_size: int = 32, device: str | torch.device | None = None,
                      roi: str = "") -> TransferResult:
    """Apply every source's probes to every target model, with norm-matched random controls.

    models : target name -> model (images (B, 3, H, W) in [0, 1] -> responses (B, V)); every
        source of ``deltas`` must be one of them, and all must share the output ``units``.
    images : (N, 3, H, W) the images the probes were made for (numpy or tensor, in [0, 1]).
    deltas : source name -> (U, N, 3, H, W) probe of unit ``units[u]`` at image ``n``
        (sources are taken in the order of ``models``)
        (see :func:`probe_deltas`); ``images + delta`` is clamped to [0, 1].
    units : (U,) output units the probes target; direction : sensitivity definition
        (``"abs"``, ``"decrease"`` or ``"increase"``), as in :mod:`probelib.probes`.
    seed : seeds the random control directions (one per source, unit and image, shared by all
        targets so that every target sees the same noise).
    device : where each target runs (moved there for the call, then back); ``None`` = where it
        lives (as in :mod:`probelib.probes`).

    Cost: for each target, ``(1 + 2 * S * U) * N`` forward passes without gradients.
    """
    if direction not in ("abs", "decrease", "increase"):
        raise ValueError(f"unknown direction {direction!r}; valid: 'abs', 'decrease', 'increase'")
    names = list(models)
    missing = [s for s in deltas if s not in models]
    if missing or not deltas:
        raise ValueError(f"deltas must map source names among the models {names}; unknown: {missing}")
    sources = [n for n in names if n in deltas]
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))  # CPU; batches go to each target
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    n, u_count = x.shape[0], len(units)
    gen = torch.Generator().manual_seed(int(seed))
    applied, noise = {}, {}
    probe_norm = np.empty((len(sources), n, u_count))
    for si, s in enumerate(sources):
        d = torch.as_tensor(np.asarray(deltas[s], dtype=np.float32))
        if tuple(d.shape) != (u_count, *x.shape):
            raise ValueError(f"deltas[{s!r}] must have shape (U, N, 3, H, W) = "
                             f"{(u_count, *tuple(x.shape))}; got {tuple(d.shape)}")
        xa = (x[None] + d).clamp(0.0, 1.0)
        dd = xa - x[None]
        norms = dd.flatten(2).norm(dim=2)                                   # (U, N)
        probe_norm[si] = norms.T.double().numpy()
        g = torch.randn(dd.shape, generator=gen)
        g = g / g.flatten(2).norm(dim=2).clamp_min(1e-12)[..., None, None, None]
        applied[s] = xa
        noise[s] = (x[None] + g * norms[..., None, None, None]).clamp(0.0, 1.0)
    shape = (len(sources), len(names), n, u_count)
    perturbed, control_resp = np.empty(shape), np.empty(shape)
    clean = np.empty((len(names), n, u_count))
    for ti, t in enumerate(names):
        dev = resolve_device(models[t], x, device)
        with evaluating(models[t], dev) as model:  # eval mode, on dev; restored afterwards
            clean[ti] = _responses(model, x.to(dev), batch_size)[:, units]
            for si, s in enumerate(sources):
                for j in range(u_count):
                    perturbed[si, ti, :, j] = _responses(model, applied[s][j].to(dev), batch_size)[:, units[j]]
                    control_resp[si, ti, :, j] = _responses(model, noise[s][j].to(dev), batch_size)[:, units[j]]
    return TransferResult(
        names=names, sources=sources, change=sensitivity_of_change(perturbed - clean[None], direction),
        signed_change=perturbed - clean[None], control=sensitivity_of_change(control_resp - clean[None], direction),
        probe_norm=probe_norm, clean=clean, units=units, direction=direction, roi=roi)


def _transfer_impl(key: dict, models, images, deltas, units, direction, seed, batch_size, device, roi):
    return evaluate_transfer(models, images, deltas, units, direction, seed, batch_size, device, roi)


def _fit_key(fit: PanelFit, specs: Sequence[str], roi: str) -> dict:
    return {"roi": roi, "models": {s: fit.key(s, roi) for s in specs}}


def transfer_study(fit: PanelFit, roi: str, probes: Mapping[str, ProbeResult | FixedEffectResult],
                   image_index, targets: Sequence[str] | None = None, seed: int = 0,
                   eps_index: int = 0, batch_size: int = 32,
                   device: str | torch.device | None = None) -> TransferResult:
    """:func:`evaluate_transfer` for the models ``(spec, roi)`` of a fitted panel, cached on disk.

    probes : source spec -> result of :func:`probelib.pipeline.cached_probe` (``"pgd"``/``"fgsm"``
        at one budget ``eps[eps_index]``, or ``"fixed_effect"``) made at the images
        ``image_index`` with ``store_perturbations=True``; all must probe the same units with one
        direction. targets : target specs (default: the sources; sources not listed are added).
    """
    specs = list(dict.fromkeys(list(targets) + list(probes))) if targets is not None else list(probes)
    missing = [s for s in specs if (s, roi) not in fit.models]
    if missing:
        raise ValueError(f"no fitted model for {missing} in ROI {roi!r}")
    first = probes[specs[0]]
    units, direction = np.asarray(first.units), first.direction
    for s in probes:
        if not np.array_equal(probes[s].units, units) or probes[s].direction != direction:
            raise ValueError("all probes must target the same units with the same direction")
    index = np.asarray(image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    for s in probes:
        if probes[s].images.shape != images.shape or not np.allclose(probes[s].images, images, atol=1e-6):
            raise ValueError(f"the probes of {s!r} were not made for the images image_index")
    deltas = {s: probe_deltas(probes[s], eps_index) for s in probes}
    key = _fit_key(fit, specs, roi) | {"images": index.tolist()}
    models = {s: fit.models[(s, roi)] for s in specs}
    return cached_call(_transfer_impl, key, models, images, deltas, units, direction, int(seed),
                       batch_size, None if device is None else str(device), roi,
                       ignore=("models", "images", "batch_size", "device"),
                       check=lambda r: isinstance(r, TransferResult))


# ----------------------------------------------------------------------------------------------
# Perturbation subspaces
# ----------------------------------------------------------------------------------------------

@dataclass
class SubspacePanel:
    """Top-k perturbation subspaces of M models at N images (same output units for all).

    Attributes
    ----------
    names : the M model names.
    bases : (M, N, D, k) float32 orthonormal columns (top right singular vectors of J at each
        image; ``D = 3 * H * W`` in the C order of (3, H, W)).
    singular_values : (M, N, k) descending; first-order response change (L2 over the units)
        per unit L2 norm of pixel perturbation.
    units : (U,) output units of the Jacobian; image_index : (N,) images (dataset indices);
    image_shape : (3, H, W); roi : label.
    """

    names: list[str]
    bases: np.ndarray
    singular_values: np.ndarray
    units: np.ndarray
    image_index: np.ndarray
    image_shape: tuple[int, int, int]
    roi: str = ""

    @property
    def k(self) -> int:
        return int(self.bases.shape[-1])

    @property
    def chance(self) -> float:
        """Expected similarity of two random k-dimensional subspaces of R^D: ``k / D``."""
        return self.k / self.bases.shape[2]

    def similarity(self) -> np.ndarray:
        """(N, M, M) mean squared cosine of the principal angles between models, per image."""
        return np.stack([similarity_matrix([self.bases[m, i] for m in range(len(self.names))])
                         for i in range(self.bases.shape[1])])

    def directions(self, model: str, image_position: int) -> np.ndarray:
        """The k directions of ``model`` at the ``image_position``-th image: (k, 3, H, W)."""
        m = self.names.index(model)
        return self.bases[m, image_position].T.reshape(self.k, *self.image_shape)

    def similarity_by_dimension(self, a: str, b: str) -> np.ndarray:
        """(N, k) similarity of the top-j subspaces of models ``a`` and ``b`` for j = 1..k.

        The bases are nested (ordered singular vectors), so ``[:, j-1]`` is
        ``subspace_similarity`` of the first j columns; chance is ``j / D``.
        """
        pa = self.bases[self.names.index(a)].astype(np.float64)      # (N, D, k)
        pb = self.bases[self.names.index(b)].astype(np.float64)
        cross = np.einsum("ndi,ndj->nij", pa, pb) ** 2               # (N, k, k)
        dims = np.arange(1, self.k + 1)
        return np.stack([cross[:, :j, :j].sum((1, 2)) / j for j in dims], axis=1)


def _subspaces_impl(key: dict, model, images, k, units, method, device):
    bases, values = [], []
    for img in images:
        sub = perturbation_subspace(model, torch.from_numpy(img), k, method=method, units=units,
                                    device=device)
        if sub.k < k:
            raise ValueError(f"the Jacobian of {key['spec']!r} has rank {sub.k} < k = {k} at an image")
        bases.append(sub.basis.numpy().astype(np.float32))
        values.append(sub.singular_values.numpy().astype(np.float64))
    return np.stack(bases), np.stack(values)


def panel_subspaces(fit: PanelFit, specs: Sequence[str], roi: str, image_index, k: int,
                    units: Sequence[int] | np.ndarray | None = None, method: str = "exact",
                    device: str | torch.device | None = None, progress: bool = True) -> SubspacePanel:
    """Top-k perturbation subspace (:func:`probelib.geometry.perturbation_subspace`) of each
    model ``(spec, roi)`` of ``fit`` at each image of ``image_index``; cached on disk per model.

    units : outputs of the readout spanning the Jacobian (default all V of the ROI; k <= U).
    Cost per model and image: one forward and U backward passes (``method="exact"``).
    """
    from ._progress import progress_bar

    index = np.asarray(image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    n_out = fit.dataset.responses[roi].shape[1]
    units_arr = np.arange(n_out) if units is None else np.asarray(units, dtype=np.int64).reshape(-1)
    if int(k) < 1 or int(k) > len(units_arr):
        raise ValueError(f"k must be in [1, U = {len(units_arr)}] (the Jacobian has U rows); got {k}")
    bases, values = [], []
    for spec in progress_bar(list(specs), desc=f"subspaces {roi}", disable=not progress):
        if (spec, roi) not in fit.models:
            raise ValueError(f"no fitted model for {spec!r} in ROI {roi!r}")
        key = _fit_key(fit, [spec], roi) | {"spec": spec, "images": index.tolist()}
        b, s = cached_call(_subspaces_impl, key, fit.models[(spec, roi)], images, int(k),
                           units_arr.tolist(), method, None if device is None else str(device),
                           ignore=("model", "images", "device"),
                           check=lambda r: (isinstance(r, tuple) and len(r) == 2
                                            and len(r[0]) == len(r[1]) == len(index)))
        bases.append(b)
        values.append(s)
    return SubspacePanel(names=list(specs), bases=np.stack(bases), singular_values=np.stack(values),
                         units=units_arr, image_index=index, image_shape=tuple(images.shape[1:]), roi=roi)
