"""Negative controls of a probe: the same perturbation shuffled, or a random one of its size."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_positive_int, check_units
from .._torch import evaluating, images_on, n_outputs, resolve_device
from .._checks import check_seed
from ._common import (_check_same_images, _draw_generator, _eps_word, _evaluate_deltas, _image_keys,
                      _l2, _sensitivity, _want_store)
from .results import _VIEW, DeviceLike, ProbeResult


def _control(model: nn.Module, images: Tensor, result: ProbeResult, method: str,
             delta_fn: Callable[[Tensor, int, int], Tensor], seed: int, device: DeviceLike,
             batch_size: int, store_perturbations: bool | None, progress: bool | None) -> ProbeResult:
    _check_same_images(images, result)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = resolve_device(model, images, device)
    n_eps, n, n_units = result.sensitivity.shape
    with evaluating(model, dev):
        x_all = images_on(images, model, dev)
        check_units(result.units, n_outputs(model, x_all))
        store = _want_store(n_eps * n_units * x_all.numel() * x_all.element_size(),
                            store_perturbations, f"{method} control perturbations")
        keep = np.empty((n_eps, n_units, *x_all.shape), dtype=result.images.dtype) if store else None
        clean, perturbed, norms = _evaluate_deltas(
            model, x_all, result.units, n_eps, lambda e, j: delta_fn(x_all, e, j), batch_size,
            progress, f"{method} control", keep)
    return ProbeResult(
        sensitivity=_sensitivity(clean, perturbed, result.direction), eps=result.eps.copy(),
        units=result.units.copy(), clean=clean, perturbed=perturbed,
        direction_taken=np.sign(perturbed - clean[None]).astype(np.int8), delta_norm=norms,
        method=method, norm=result.norm, direction=result.direction, images=result.images,
        deltas=keep, params={"seed": seed, "source": result.method, "batch_size": batch_size})



def _control_generators(seed: int, image_keys: np.ndarray, result: ProbeResult, e: int,
                        j: int) -> list[torch.Generator]:
    """One generator per image for the control of budget ``e`` and unit position ``j``, named by
    (seed, image key, unit, budget): the same draw however the images and units are grouped."""
    unit, eps = int(result.units[j]), _eps_word(result.eps[e])
    return [_draw_generator(seed, key, unit, eps) for key in image_keys]



def shuffled_control(model: nn.Module, images: Tensor, result: ProbeResult, seed: int = 0,
                     device: DeviceLike = None, batch_size: int = 32,
                     store_perturbations: bool | None = None,
                     progress: bool | None = None) -> ProbeResult:
    """Negative control: each probe with its pixel positions randomly permuted (per image).

    The (3,)-vector of a pixel moves as a whole, so every norm of the perturbation is kept;
    the shuffled image is clamped to [0, 1]. Sensitivity uses the definition of
    ``result.direction`` so it is directly comparable with ``result.sensitivity``
    (same shape (n_eps, N, n_units)). Needs ``result`` to keep its perturbations.
    """
    if not result.has_perturbations:
        raise ValueError("shuffled_control needs the probes' perturbations; rerun the attack with "
                         "store_perturbations=True")
    seed = check_seed(seed)
    keys = _image_keys(result.images)

    def shuffled(x: Tensor, e: int, j: int) -> Tensor:
        delta = result.perturbation(e, j).to(x)
        n, c, h, w = delta.shape
        gens = _control_generators(seed, keys, result, e, j)
        perm = torch.argsort(torch.stack([torch.rand(h * w, generator=g) for g in gens]),
                             dim=1).to(x.device)
        flat = delta.reshape(n, c, h * w)
        return flat.gather(2, perm[:, None, :].expand(n, c, h * w)).reshape(n, c, h, w)

    return _control(model, images, result, "shuffled", shuffled, seed, device, batch_size,
                    store_perturbations, progress)



def random_control(model: nn.Module, images: Tensor, result: ProbeResult, seed: int = 0,
                   device: DeviceLike = None, batch_size: int = 32,
                   store_perturbations: bool | None = None, progress: bool | None = None) -> ProbeResult:
    """Negative control: a random direction of the probe's size, clamped to [0, 1].

    L-inf probes: a random sign pattern of the same ``eps`` (``eps * ±1`` per pixel).
    L2 probes: a Gaussian direction scaled to the L2 norm of the applied probe (per image and
    unit). Same shape and sensitivity definition as ``result``.
    """
    seed = check_seed(seed)
    keys = _image_keys(result.images)

    def random_direction(x: Tensor, e: int, j: int) -> Tensor:
        shape = tuple(x.shape[1:])
        gens = _control_generators(seed, keys, result, e, j)
        if result.norm == "linf":
            signs = torch.stack([torch.randint(0, 2, shape, generator=g, dtype=torch.int8) for g in gens])
            return (signs * 2 - 1).to(x) * float(result.eps[e])
        d = torch.stack([torch.randn(shape, generator=g, dtype=torch.float64) for g in gens])
        d = d / _l2(d).clamp_min(1e-12).view(_VIEW)
        size = torch.as_tensor(result.delta_norm[e, :, j], dtype=torch.float64)
        return (d * size.view(_VIEW)).to(x)

    return _control(model, images, result, "random", random_direction, seed, device, batch_size,
                    store_perturbations, progress)
