"""Transfer: probes made on a source model applied to target models."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_images, check_positive_int, check_units
from .._torch import evaluating, images_on, n_outputs, resolve_device
from ._common import _check_same_images, _evaluate_deltas, _sensitivity, sensitivity_of_change
from .controls import random_control
from .results import DIRECTIONS, DeviceLike, FixedEffectResult, ProbeResult, UnitsLike


def _transfer_one(source: ProbeResult, images: Tensor, model: nn.Module, device: DeviceLike,
                  batch_size: int, progress: bool | None) -> ProbeResult:
    dev = resolve_device(model, images, device)
    n_eps = source.sensitivity.shape[0]
    with evaluating(model, dev):
        x_all = images_on(images, model, dev)
        check_units(source.units, n_outputs(model, x_all))
        clean, perturbed, norms = _evaluate_deltas(model, x_all, source.units, n_eps,
                                                   source.perturbation, batch_size, progress,
                                                   "transfer", None)
    return ProbeResult(
        sensitivity=_sensitivity(clean, perturbed, source.direction), eps=source.eps.copy(),
        units=source.units.copy(), clean=clean, perturbed=perturbed,
        direction_taken=np.sign(perturbed - clean[None]).astype(np.int8), delta_norm=norms,
        method="transfer", norm=source.norm, direction=source.direction, images=source.images,
        sign_grad=source.sign_grad, deltas=source.deltas,
        params={"source": source.method, "source_params": dict(source.params)})



def _raw_probe(deltas: Tensor | np.ndarray, images: Tensor, units: UnitsLike, direction: str,
               n_outputs: int) -> ProbeResult:
    """Raw perturbations as a one-budget ProbeResult (``eps = nan``) for :func:`transfer`.

    ``deltas`` (N, 3, H, W) serves every unit; (n_units, N, 3, H, W) serves ``units[j]`` each.
    """
    d = torch.as_tensor(deltas).detach().cpu()
    if not d.is_floating_point() or not bool(torch.isfinite(d).all()):
        raise ValueError("perturbations must be finite floating-point values")
    shape = tuple(images.shape)
    shared = tuple(d.shape) == shape
    if not shared and not (d.ndim == 5 and tuple(d.shape[1:]) == shape):
        raise ValueError(f"perturbations must have shape (N, 3, H, W) = {shape} or "
                         f"(n_units, N, 3, H, W); got {tuple(d.shape)}")
    if not shared and units is None:
        raise ValueError("per-unit perturbations (n_units, N, 3, H, W) need the units they target")
    idx = check_units(units, n_outputs)
    if not shared and len(idx) != d.shape[0]:
        raise ValueError(f"{d.shape[0]} per-unit perturbations for {len(idx)} units")
    x = images.detach().cpu().to(d.dtype)
    applied = ((x + d).clamp(0.0, 1.0) - x).numpy()
    if shared:  # the same perturbation for every unit: a broadcast view, no copies
        applied = np.broadcast_to(applied, (len(idx), *shape))
    zeros = np.zeros((1, shape[0], len(idx)))
    norms = np.sqrt((np.asarray(applied, dtype=np.float64).reshape(len(idx), shape[0], -1) ** 2).sum(2)).T
    return ProbeResult(
        sensitivity=zeros, eps=np.array([np.nan]), units=idx, clean=zeros[0], perturbed=zeros,
        direction_taken=zeros.astype(np.int8), delta_norm=norms[None], method="raw", norm="none",
        direction=direction, images=x.numpy(), deltas=applied[None])



def _output_count(model: nn.Module, images: Tensor, device: DeviceLike) -> int:
    dev = resolve_device(model, images, device)
    with evaluating(model, dev):
        return n_outputs(model, images_on(images[:1], model, dev))



def transfer(probes: ProbeResult | Tensor | np.ndarray, images: Tensor,
             target_models: nn.Module | Mapping[str, nn.Module], units: UnitsLike = None,
             direction: str = "decrease", device: DeviceLike = None, batch_size: int = 32,
             progress: bool | None = None) -> ProbeResult | dict[str, ProbeResult]:
    """Apply probes made on a source model to target models; measure the same units' change.

    Parameters
    ----------
    probes : a :class:`ProbeResult` that keeps its perturbations (its units, eps grid and
        direction are used), or raw perturbations: (N, 3, H, W) applied for every unit, or
        (n_units, N, 3, H, W) one per unit (then ``units`` is required). Raw perturbations get
        one budget with ``eps = nan``; ``images + delta`` is clamped to [0, 1].
    images : (N, 3, H, W) the images the probes were made for.
    target_models : one model, or a mapping name -> model.
    units, direction : only for raw perturbations (default all units of each target).

    Returns
    -------
    ProbeResult (one model) or dict name -> ProbeResult, each with sensitivity
    (n_eps, N, n_units) of the target under the source's definition of ``direction``.
    """
    check_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(probes, ProbeResult):
        if units is not None:
            raise ValueError("units are taken from the ProbeResult; pass units only with raw "
                             "perturbations")
        _check_same_images(images, probes)
        if not probes.has_perturbations:
            raise ValueError("transfer needs the probes' perturbations; rerun the attack with "
                             "store_perturbations=True")
    else:
        check_choice(direction, DIRECTIONS, "direction")
    single = isinstance(target_models, nn.Module)
    targets = {"target": target_models} if single else (
        dict(target_models) if isinstance(target_models, Mapping) else {})
    if not targets or not all(isinstance(m, nn.Module) for m in targets.values()):
        raise ValueError("target_models must be an nn.Module or a non-empty mapping name -> nn.Module")
    out: dict[str, ProbeResult] = {}
    for name, model in targets.items():
        source = probes if isinstance(probes, ProbeResult) else _raw_probe(
            probes, images, units, direction, _output_count(model, images, device))
        out[name] = _transfer_one(source, images, model, device, batch_size, progress)
    return out["target"] if single else out


# ----------------------------------------------------------------------------------------------
# Transfer across a panel of models, with norm-matched random controls
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
    seed : seeds the random control directions (:func:`probelib.probes.random_control`: one
        Gaussian direction per image and unit, named by the seed and the image content, the same
        for every source and target).
    device : where each target runs (moved there for the call, then back); ``None`` = where it
        lives (as in :mod:`probelib.probes`).

    Each target's change is :func:`transfer` of the source's probes and its control
    :func:`probelib.probes.random_control` of the same size: the one transfer and the one random
    control of probelib. Cost: for each target, ``S * (2 + 2 * U) * N`` forward passes without
    gradients.
    """
    check_choice(direction, DIRECTIONS, "direction")
    names = list(models)
    missing = [s for s in deltas if s not in models]
    if missing or not deltas:
        raise ValueError(f"deltas must map source names among the models {names}; unknown: {missing}")
    sources = [n for n in names if n in deltas]
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))  # CPU; batches go to each target
    units = np.asarray(units, dtype=np.int64).reshape(-1)
    n, u_count = x.shape[0], len(units)
    n_out = _output_count(models[names[0]], x, device)
    raw = {}
    for s in sources:
        d = np.asarray(deltas[s], dtype=np.float32)
        if d.shape != (u_count, *x.shape):
            raise ValueError(f"deltas[{s!r}] must have shape (U, N, 3, H, W) = "
                             f"{(u_count, *tuple(x.shape))}; got {d.shape}")
        raw[s] = _raw_probe(d, x, units, direction, n_out)
    shape = (len(sources), len(names), n, u_count)
    perturbed, control_resp = np.empty(shape), np.empty(shape)
    clean = np.empty((len(names), n, u_count))
    for ti, t in enumerate(names):
        for si, s in enumerate(sources):
            moved = _transfer_one(raw[s], x, models[t], device, batch_size, False)
            ctrl = random_control(models[t], x, raw[s], seed=seed, device=device, batch_size=batch_size,
                                  store_perturbations=False, progress=False)
            clean[ti] = moved.clean
            perturbed[si, ti] = moved.perturbed[0]
            control_resp[si, ti] = ctrl.perturbed[0]
    return TransferResult(
        names=names, sources=sources, change=sensitivity_of_change(perturbed - clean[None], direction),
        signed_change=perturbed - clean[None], control=sensitivity_of_change(control_resp - clean[None], direction),
        probe_norm=np.stack([raw[s].delta_norm[0] for s in sources]), clean=clean, units=units,
        direction=direction, roi=roi)
