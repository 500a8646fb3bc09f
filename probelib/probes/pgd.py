"""Projected gradient descent (L2 / L-inf) over a grid of budgets, best iterate kept."""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_eps, check_finite_responses, check_images, check_positive_int, check_units
from .._torch import evaluating, forward_responses, images_on, input_grad, n_outputs, resolve_device
from .._checks import check_seed
from ._common import (_bar, _check_nonneg_float, _directions, _draw_generator, _image_keys, _l2,
                      _np_dtype, _numpy, _project_box, _sensitivity, _want_store)
from .results import _VIEW, DIRECTIONS, NORMS, DeviceLike, ProbeResult, UnitsLike


def _random_start(x0: Tensor, eps: Tensor, norm: str, gens: list[torch.Generator]) -> Tensor:
    """Random point in the eps-ball of each row, row ``k`` drawn from ``gens[k]`` on the CPU (the
    same start on every device and in every batch)."""
    shape = tuple(x0.shape[1:])
    rows = []
    for gen in gens:
        if norm == "linf":
            rows.append(2.0 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1.0)
        else:
            d = torch.randn(shape, generator=gen, dtype=torch.float64)
            radius = torch.rand((), generator=gen, dtype=torch.float64)
            rows.append(d * (radius / d.norm().clamp_min(1e-12)))
    delta = torch.stack(rows).to(x0) * eps.view(_VIEW)
    return _project_box(x0, delta)



def _step(x0: Tensor, delta: Tensor, grad: Tensor, eps: Tensor, step_size: Tensor, norm: str) -> Tensor:
    """One ascent step along ``grad`` then projection onto the eps-ball and the [0, 1] box."""
    eps, step_size = eps.view(_VIEW), step_size.view(_VIEW)
    if norm == "linf":
        delta = delta + step_size * grad.sign()
        delta = torch.maximum(torch.minimum(delta, eps), -eps)
    else:
        delta = delta + step_size * grad / _l2(grad).clamp_min(1e-12).view(_VIEW)
        delta = delta * (eps / _l2(delta).clamp_min(1e-12).view(_VIEW)).clamp(max=1.0)
    return _project_box(x0, delta)



class _Start(NamedTuple):
    """The unperturbed rows: responses ``r[k, cols[k]]`` (R,) and, unless PGD starts at random
    points, their input gradient (R, 3, H, W), the first step of every budget and direction."""

    resp: Tensor
    grad: Tensor | None



def _clean_start(model: nn.Module, x0: Tensor, cols: Tensor, with_grad: bool) -> _Start:
    """One forward (+ backward if ``with_grad``) of the unperturbed rows x0 (R, 3, H, W)."""
    xa = x0.detach().requires_grad_(with_grad)
    with torch.set_grad_enabled(with_grad):
        resp = forward_responses(model, xa).gather(1, cols[:, None])[:, 0]
    check_finite_responses(resp, "clean responses")
    return _Start(resp.detach(), input_grad(resp.sum(), xa) if with_grad else None)



def _pgd_rows(model: nn.Module, x0: Tensor, cols: Tensor, eps: Tensor, step_size: Tensor, sign: int,
              norm: str, steps: int, random_start: bool, restarts: int,
              seed: int, row_keys: np.ndarray, start: _Start) -> tuple[Tensor, Tensor]:
    """PGD on rows: push ``sign * r[k, cols[k]]`` up within ``||delta_k|| <= eps[k]``.

    x0 (R, 3, H, W); cols, eps, step_size (R,); ``row_keys`` (R, 2) names each row (image key,
    unit) for its random starts, drawn from (seed, image key, unit, restart, sign);
    ``start`` = :func:`_clean_start` of these rows (its
    gradient serves the first step of a run that starts at the image). Keeps the best iterate of
    every row over all steps and restarts (including the start, so the probe never does worse
    than no change). Returns the best perturbation (R, 3, H, W) and the unit's response to it (R,).
    """
    resp0, grad0 = start.resp, start.grad
    best_obj = sign * resp0
    best_resp = resp0.clone()
    best_delta = torch.zeros_like(x0)
    for restart in range(restarts):
        from_image = not (random_start or restart > 0)
        if from_image:
            delta = torch.zeros_like(x0)
        else:
            gens = [_draw_generator(seed, image, unit, restart, sign + 1) for image, unit in row_keys]
            delta = _random_start(x0, eps, norm, gens)
        for t in range(steps + 1):
            last = t == steps
            if t == 0 and from_image and grad0 is not None:
                grad = grad0  # the response at delta = 0 is resp0, already counted in best_*
            else:
                xa = (x0 + delta).requires_grad_(not last)
                with torch.set_grad_enabled(not last):
                    resp = forward_responses(model, xa).gather(1, cols[:, None])[:, 0]
                check_finite_responses(resp, "responses to PGD iterates")
                obj = sign * resp.detach()
                better = obj > best_obj
                best_obj = torch.where(better, obj, best_obj)
                best_resp = torch.where(better, resp.detach(), best_resp)
                best_delta[better] = delta[better]
                if last:
                    break
                grad = input_grad(resp.sum(), xa)
            delta = _step(x0, delta, sign * grad, eps, step_size, norm)
    return best_delta, best_resp



def _check_pgd_args(norm: str, direction: str, steps: int, restarts: int, batch_size: int,
                    step_size: float | None) -> tuple[int, int, int, float | None]:
    check_choice(norm, NORMS, "norm")
    check_choice(direction, DIRECTIONS, "direction")
    steps = check_positive_int(steps, "steps")
    restarts = check_positive_int(restarts, "restarts")
    batch_size = check_positive_int(batch_size, "batch_size")
    if step_size is not None:
        step_size = _check_nonneg_float(step_size, "step_size")
    return steps, restarts, batch_size, step_size



def _row_step_sizes(eps: Tensor, step_size: float | None, steps: int) -> Tensor:
    """Per-row step sizes: ``2.5 * eps / steps`` by default (reaches the boundary in 40% of steps)."""
    return 2.5 * eps / steps if step_size is None else torch.full_like(eps, step_size)



def _pgd_both(model: nn.Module, x0: Tensor, cols: Tensor, start: _Start,
              eps: Tensor, step_size: Tensor, direction: str, norm: str, steps: int,
              random_start: bool, restarts: int, seed: int,
              row_keys: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
    """PGD in the direction(s) of ``direction``; for ``"abs"`` keep the larger |change| per row.

    Returns delta (R, 3, H, W), perturbed response (R,), direction taken (R,) in {-1, +1}.
    """
    base = start.resp
    out: tuple[Tensor, Tensor, Tensor] | None = None
    for s in _directions(direction):
        delta, resp = _pgd_rows(model, x0, cols, eps, step_size, s, norm, steps, random_start,
                                restarts, seed, row_keys, start)
        taken = torch.full_like(resp, float(s))
        if out is None:
            out = (delta, resp, taken)
        else:
            up = (resp - base).abs() > (out[1] - base).abs()
            out = (torch.where(up.view(_VIEW), delta, out[0]), torch.where(up, resp, out[1]),
                   torch.where(up, taken, out[2]))
    assert out is not None
    return out



def pgd(model: nn.Module, images: Tensor, eps: float | Sequence[float], norm: str = "l2",
        steps: int = 10, step_size: float | None = None, units: UnitsLike = None,
        direction: str = "decrease", random_start: bool = False, restarts: int = 1, seed: int = 0,
        device: DeviceLike = None, batch_size: int = 32, store_perturbations: bool | None = None,
        progress: bool | None = None) -> ProbeResult:
    """Per-unit projected-gradient-descent probes (L2 or L-inf) over a grid of budgets.

    Each step moves along the normalised gradient (L2: ``g / ||g||_2``; L-inf: ``sign(g)``) by
    ``step_size``, then projects onto the eps-ball around the image and onto the [0, 1] box.
    The best iterate over steps and restarts is kept. Rows (image, unit) are batched: each batch
    of ``batch_size`` rows costs one forward + backward per step.

    Parameters
    ----------
    images : (N, 3, H, W) in [0, 1].
    eps : budget or grid (L2: Euclidean norm of the (3, H, W) perturbation; L-inf: per pixel).
    steps : ascent steps per restart.
    step_size : absolute step length; ``None`` = ``2.5 * eps / steps`` for each budget.
    direction : ``"decrease"``, ``"increase"`` or ``"abs"`` (run both, keep larger |change|).
    random_start : start from a random point of the ball (restarts after the first always do).
    restarts : independent runs per probe; the best is kept.
    seed : seeds the random starts (deterministic, drawn on CPU whatever the device).
    store_perturbations : keep the float probes (``None``: if <= ``STORE_LIMIT_BYTES``).

    Returns
    -------
    ProbeResult with sensitivity (n_eps, N, n_units) and ``perturbation(e, j)``.
    """
    check_images(images)
    eps_grid = check_eps(eps)
    steps, restarts, batch_size, step_size = _check_pgd_args(norm, direction, steps, restarts,
                                                             batch_size, step_size)
    seed = check_seed(seed)
    dev = resolve_device(model, images, device)
    with evaluating(model, dev):
        x_all = images_on(images, model, dev)
        units = check_units(units, n_outputs(model, x_all))
        image_keys = _image_keys(_numpy(x_all))  # names the random starts of each image
        n, n_units, n_eps = x_all.shape[0], len(units), len(eps_grid)
        store = _want_store(n_eps * n_units * x_all[0].numel() * n * x_all.element_size(),
                            store_perturbations, "PGD perturbations")
        deltas = np.empty((n_eps, n_units, *x_all.shape), dtype=_np_dtype(x_all)) if store else None
        clean = np.empty((n, n_units))
        perturbed = np.empty((n_eps, n, n_units))
        taken = np.empty((n_eps, n, n_units), dtype=np.int8)
        delta_norm = np.empty((n_eps, n, n_units))
        # rows = (image, unit) pairs, unit-major so that a batch holds few distinct units
        img_idx = np.tile(np.arange(n), n_units)
        unit_pos = np.repeat(np.arange(n_units), n)
        units_t = torch.as_tensor(units, device=dev)
        n_dirs = len(_directions(direction))
        work = n_eps * len(img_idx) * n_dirs * restarts * (steps + 1)
        desc = f"pgd-{norm} (image x unit x eps)"
        with _bar(n_eps * len(img_idx), work, x_all, progress, desc) as bar:
            for c0 in range(0, len(img_idx), batch_size):
                ni, ji = img_idx[c0:c0 + batch_size], unit_pos[c0:c0 + batch_size]
                ni_t = torch.as_tensor(ni, device=dev)
                x0, cols = x_all[ni_t], units_t[torch.as_tensor(ji, device=dev)]
                # one forward (+ backward) at the image: the clean responses and the first step of
                # every budget and direction
                start = _clean_start(model, x0, cols, with_grad=not random_start)
                clean[ni, ji] = start[0].cpu().numpy()
                for e, eps_e in enumerate(eps_grid):
                    eps_rows = torch.full((len(ni),), float(eps_e), device=dev, dtype=x0.dtype)
                    delta, resp, sgn = _pgd_both(model, x0, cols, start, eps_rows,
                                                 _row_step_sizes(eps_rows, step_size, steps), direction,
                                                 norm, steps, random_start, restarts, seed,
                                                 np.stack([image_keys[ni], units[ji]], axis=1))
                    perturbed[e, ni, ji] = resp.cpu().numpy()
                    taken[e, ni, ji] = sgn.cpu().numpy().astype(np.int8)
                    delta_norm[e, ni, ji] = _l2(delta).cpu().numpy()
                    if deltas is not None:
                        deltas[e, ji, ni] = delta.cpu().numpy()
                    bar.update(len(ni))
    return ProbeResult(
        sensitivity=_sensitivity(clean, perturbed, direction), eps=eps_grid, units=units,
        clean=clean, perturbed=perturbed, direction_taken=taken, delta_norm=delta_norm,
        method="pgd", norm=norm, direction=direction, images=_numpy(x_all), deltas=deltas,
        params={"steps": steps, "step_size": step_size, "random_start": random_start,
                "restarts": restarts, "seed": seed, "batch_size": batch_size})
