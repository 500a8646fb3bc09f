"""Unconstrained (box-only) or budget-bounded optimisation of a unit's response: maximally
exciting and inhibiting images."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice, check_finite_responses, check_images, check_positive_int, check_units
from .._torch import evaluating, forward_responses, images_on, input_grad, n_outputs, resolve_device
from .._checks import check_seed
from ._common import _bar, _check_nonneg_float, _check_scalar_eps
from .pgd import _step
from .results import NORMS, DeviceLike, OptimizationResult


ObjectiveLike = int | Sequence[int] | Sequence[float] | np.ndarray | Callable[[Tensor], Tensor]



def _objective(unit: ObjectiveLike, n_outputs: int) -> tuple[Callable[[Tensor], Tensor], str]:
    """Objective (B, V) responses -> (B,) values, and a description of it."""
    if callable(unit):
        def custom(r: Tensor) -> Tensor:
            out = unit(r)
            if not isinstance(out, Tensor) or out.numel() != r.shape[0]:
                raise ValueError("a callable objective must map responses (B, V) to a tensor of "
                                 f"B = {r.shape[0]} values")
            return out.reshape(r.shape[0])
        return custom, getattr(unit, "__name__", "custom objective")
    arr = np.asarray(unit)
    if arr.dtype.kind in "iu":
        idx = check_units(arr, n_outputs)
        if idx.size == 1:
            u = int(idx[0])
            return (lambda r: r[:, u]), f"unit {u}"
        cols = torch.as_tensor(idx)
        return (lambda r: r[:, cols.to(r.device)].mean(dim=1)), f"mean of units {idx.tolist()}"
    if arr.dtype.kind == "f" and arr.shape == (n_outputs,) and np.all(np.isfinite(arr)):
        w = torch.as_tensor(arr)
        return (lambda r: r @ w.to(r)), "weighted sum of units"
    raise ValueError(f"unit must be an int, integer indices, a float weight vector of length "
                     f"{n_outputs} or a callable; got {unit!r}")



def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of images (N, 3, H, W): mean |vertical neighbour difference|
    + mean |horizontal neighbour difference| (pixel units), shape (N,). The smoothness penalty of
    :func:`maximize` / :func:`minimize`."""
    dv = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(dim=1)
    dh = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(dim=1)
    return dv + dh



def _optimize(model: nn.Module, image: Tensor, unit: ObjectiveLike, sign: int, steps: int,
              step_size: float | None, eps: float | None, norm: str, jitter: int,
              smoothness: float, record_every: int, seed: int, device: DeviceLike,
              progress: bool | None) -> OptimizationResult:
    if not isinstance(image, Tensor):
        raise ValueError("image must be a torch.Tensor (3, H, W) or (1, 3, H, W); "
                         f"got {type(image).__name__}")
    x0 = image[None] if image.ndim == 3 else image
    check_images(x0, "image")
    if x0.shape[0] != 1:
        raise ValueError(f"optimise one image at a time; got a batch of {x0.shape[0]}")
    check_choice(norm, NORMS, "norm")
    steps = check_positive_int(steps, "steps", minimum=0)
    record_every = check_positive_int(record_every, "record_every")
    jitter = check_positive_int(jitter, "jitter", minimum=0)
    smoothness = _check_nonneg_float(smoothness, "smoothness")
    eps = None if eps is None else _check_scalar_eps(eps)
    if step_size is None:
        if eps is not None:
            step_size = 2.5 * eps / max(steps, 1)
        else:  # RMS pixel change of 0.01 per L2 step; 2/255 per pixel per L-inf step
            step_size = 0.01 * math.sqrt(x0[0].numel()) if norm == "l2" else 2 / 255
    step_size = _check_nonneg_float(step_size, "step_size")
    gen = torch.Generator().manual_seed(check_seed(seed))
    dev = resolve_device(model, image, device)
    frames: list[np.ndarray] = []
    responses: list[np.ndarray] = []
    values: list[float] = []
    recorded: list[int] = []
    with evaluating(model, dev):
        start = images_on(x0, model, dev)
        objective, name = _objective(unit, n_outputs(model, start))
        eps_t = torch.full((1,), math.inf if eps is None else eps, device=dev, dtype=start.dtype)
        step_t = torch.full((1,), step_size, device=dev, dtype=start.dtype)
        x = start.clone()

        def record(t: int, r: Tensor) -> None:
            check_finite_responses(r, "responses during optimisation")
            frames.append(x[0].cpu().numpy().astype(np.float32))
            responses.append(r[0].cpu().numpy().astype(np.float64))
            values.append(float(objective(r)[0]))
            recorded.append(t)

        with _bar(steps, steps, x, progress, f"{'maximize' if sign > 0 else 'minimize'} {name}") as bar:
            for t in range(steps + 1):
                due = t % record_every == 0 or t == steps
                if t == steps:
                    if due:
                        with torch.no_grad():
                            record(t, forward_responses(model, x))
                    break
                xg = x.clone().requires_grad_(True)
                shifts = (0, 0)
                if jitter:
                    roll = torch.randint(-jitter, jitter + 1, (2,), generator=gen)
                    shifts = (int(roll[0]), int(roll[1]))
                with torch.enable_grad():
                    r = forward_responses(model, torch.roll(xg, shifts, dims=(2, 3)) if jitter else xg)
                    loss = sign * objective(r).sum()
                    if smoothness:
                        loss = loss - smoothness * total_variation(xg).sum()
                if due:
                    if shifts == (0, 0):
                        record(t, r.detach())
                    else:
                        with torch.no_grad():
                            record(t, forward_responses(model, x))
                grad = input_grad(loss, xg)
                x = start + _step(start, x - start, grad, eps_t, step_t, norm)
                bar.update(1)
    return OptimizationResult(
        images=np.stack(frames), responses=np.stack(responses), objective=np.asarray(values),
        steps=np.asarray(recorded), mode="maximize" if sign > 0 else "minimize",
        objective_name=name,
        params={"steps": steps, "step_size": step_size, "eps": eps, "norm": norm, "jitter": jitter,
                "smoothness": smoothness, "record_every": record_every, "seed": seed})



def maximize(model: nn.Module, image: Tensor, unit: ObjectiveLike, steps: int = 100,
             step_size: float | None = None, eps: float | None = None, norm: str = "l2",
             jitter: int = 0, smoothness: float = 0.0, record_every: int = 1, seed: int = 0,
             device: DeviceLike = None, progress: bool | None = None) -> OptimizationResult:
    """Gradient ascent on a unit's response from ``image``, recording the trajectory.

    Parameters
    ----------
    image : (3, H, W) or (1, 3, H, W) start image in [0, 1].
    unit : an output index; integer indices (their mean, e.g. an ROI); a float weight vector
        of length V (weighted sum); or a callable mapping responses (B, V) to (B,) values.
    steps : number of ascent steps.
    step_size : length of each step: L2 norm of the step (``norm="l2"``, normalised gradient)
        or per-pixel change (``"linf"``, gradient sign). Default ``2.5 * eps / steps`` with a
        budget, else ``0.01 * sqrt(3 H W)`` (L2) or ``2/255`` (L-inf).
    eps : optional budget around ``image`` in ``norm``; ``None`` = only the [0, 1] box.
    jitter : regulariser; each step evaluates the model on the image rolled (circularly) by a
        random shift of up to ``jitter`` pixels in each spatial direction (seeded by ``seed``).
    smoothness : regulariser weight; the ascent objective is
        ``objective - smoothness * TV(x)`` with ``TV`` = mean |vertical neighbour difference|
        + mean |horizontal neighbour difference| (pixel units).
    record_every : keep a frame every this many steps (the first and last are always kept).

    Returns
    -------
    OptimizationResult with frames (T, 3, H, W), responses (T, V) and objective values (T,).
    """
    return _optimize(model, image, unit, 1, steps, step_size, eps, norm, jitter, smoothness,
                     record_every, seed, device, progress)



def minimize(model: nn.Module, image: Tensor, unit: ObjectiveLike, steps: int = 100,
             step_size: float | None = None, eps: float | None = None, norm: str = "l2",
             jitter: int = 0, smoothness: float = 0.0, record_every: int = 1, seed: int = 0,
             device: DeviceLike = None, progress: bool | None = None) -> OptimizationResult:
    """Gradient descent on a unit's response: :func:`maximize` with the sign flipped.

    The recorded ``objective`` is the objective itself (it goes down), and the smoothness
    penalty is still subtracted (it keeps the image smooth in both modes).
    """
    return _optimize(model, image, unit, -1, steps, step_size, eps, norm, jitter, smoothness,
                     record_every, seed, device, progress)


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
