"""FGSM (L-inf): one gradient per unit serves a whole grid of budgets."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_eps, check_finite_responses, check_images, check_positive_int, check_units
from .._torch import evaluating, forward_responses, images_on, input_grad, n_outputs, resolve_device
from ._common import _bar, _BatchedReadout, _directions, _l2, _numpy, _pick_direction, _sensitivity, _want_store
from .results import DIRECTIONS, DeviceLike, ProbeResult, UnitsLike


def fgsm(model: nn.Module, images: Tensor, eps: float | Sequence[float], units: UnitsLike = None,
         direction: str = "decrease", device: DeviceLike = None, batch_size: int = 32,
         store_perturbations: bool | None = None, progress: bool | None = None) -> ProbeResult:
    """Per-unit FGSM (L-inf) probes: ``x_adv = clamp(x ± eps * sign(grad r_i(x)), 0, 1)``.

    One forward pass per image batch and one backward pass per unit (vector-Jacobian products
    of the same graph) give the gradient signs; the whole ``eps`` grid reuses them, and the
    perturbed images of all budgets / units are evaluated in batches of ``batch_size``.

    Parameters
    ----------
    model : maps images (N, 3, H, W) in [0, 1] to responses (N, V).
    images : (N, 3, H, W) float tensor, pixels in [0, 1].
    eps : budget or 1-D grid of budgets (max per-pixel change, e.g. ``3/255``), each >= 0.
    units : output units to probe (default all V).
    direction : ``"decrease"``, ``"increase"`` or ``"abs"`` (both signs, larger |change| kept).
    store_perturbations : keep the int8 gradient signs (``None``: if <= ``STORE_LIMIT_BYTES``).

    Returns
    -------
    ProbeResult with sensitivity (n_eps, N, n_units); ``perturbation(e, j)`` regenerates probes.
    """
    check_images(images)
    eps_grid = check_eps(eps)
    check_choice(direction, DIRECTIONS, "direction")
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = resolve_device(model, images, device)
    signs_dir = _directions(direction)
    with evaluating(model, dev):
        x_all = images_on(images, model, dev)
        units = check_units(units, n_outputs(model, x_all))
        n, n_units, n_eps = x_all.shape[0], len(units), len(eps_grid)
        store = _want_store(n_units * x_all[0].numel() * n, store_perturbations, "FGSM gradient signs")
        sign_grad = np.empty((n_units, *x_all.shape), dtype=np.int8) if store else None
        clean = np.empty((n, n_units))
        pert = [np.empty((n_eps, n, n_units)) for _ in signs_dir]
        norms = [torch.empty((n_eps, n, n_units), device=dev, dtype=x_all.dtype) for _ in signs_dir]
        readout = _BatchedReadout(model, batch_size)
        units_t = torch.as_tensor(units, device=dev)
        work = n * n_units * (1 + n_eps * len(signs_dir))
        with _bar(n * n_units, work, x_all, progress, "fgsm (image x unit)") as bar:
            for b0 in range(0, n, batch_size):
                xb = x_all[b0:b0 + batch_size]
                rows = slice(b0, b0 + xb.shape[0])
                x = xb.clone().requires_grad_(True)
                with torch.enable_grad():
                    r = forward_responses(model, x)
                check_finite_responses(r, "clean responses")
                clean[rows] = r.detach()[:, units_t].cpu().numpy()
                for j, unit in enumerate(units):
                    sign = input_grad(r[:, unit].sum(), x, retain_graph=j < n_units - 1).sign()
                    if sign_grad is not None:
                        sign_grad[j, rows] = sign.to(torch.int8).cpu().numpy()
                    cols = torch.full((xb.shape[0],), int(unit), device=dev, dtype=torch.long)
                    for e, eps_e in enumerate(eps_grid):
                        for d, s in enumerate(signs_dir):
                            x_adv = (xb + (s * float(eps_e)) * sign).clamp_(0.0, 1.0)
                            norms[d][e, rows, j] = _l2(x_adv - xb)
                            readout.add(x_adv, cols, pert[d], (e, rows, j))
                    bar.update(xb.shape[0])
                del r, x
            readout.flush()
    norms_np = [_numpy(t).astype(np.float64) for t in norms]
    perturbed, taken, delta_norm = _pick_direction(clean, pert, norms_np, direction)
    return ProbeResult(
        sensitivity=_sensitivity(clean, perturbed, direction), eps=eps_grid, units=units,
        clean=clean, perturbed=perturbed, direction_taken=taken, delta_norm=delta_norm,
        method="fgsm", norm="linf", direction=direction, images=_numpy(x_all),
        sign_grad=sign_grad, params={"batch_size": batch_size})
