"""Transfer: probes made on a source model applied to target models."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_images, check_positive_int, check_units
from .._torch import evaluating, images_on, n_outputs, resolve_device
from ._common import _check_same_images, _evaluate_deltas, _sensitivity
from .results import DIRECTIONS, DeviceLike, ProbeResult, UnitsLike


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
    return ProbeResult(
        sensitivity=zeros, eps=np.array([np.nan]), units=idx, clean=zeros[0], perturbed=zeros,
        direction_taken=zeros.astype(np.int8), delta_norm=zeros, method="raw", norm="none",
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
    targets = {"target": target_models} if single else dict(target_models)
    if not targets or not all(isinstance(m, nn.Module) for m in targets.values()):
        raise ValueError("target_models must be an nn.Module or a non-empty mapping name -> nn.Module")
    out: dict[str, ProbeResult] = {}
    for name, model in targets.items():
        source = probes if isinstance(probes, ProbeResult) else _raw_probe(
            probes, images, units, direction, _output_count(model, images, device))
        out[name] = _transfer_one(source, images, model, device, batch_size, progress)
    return out["target"] if single else out
