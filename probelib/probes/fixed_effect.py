"""Fixed-effect search: the smallest budget whose PGD probe reaches a target change."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_images, check_positive_int, check_units
from .._torch import clean_responses, evaluating, images_on, resolve_device
from .._checks import check_seed
from ._common import (_bar, _check_nonneg_float, _check_scalar_eps, _directions, sensitivity_of_change,
                      _image_keys, _np_dtype, _numpy, _sensitivity, _want_store)
from .pgd import _check_pgd_args, _clean_start, _pgd_both, _row_step_sizes, _Start
from .results import DeviceLike, FixedEffectResult, UnitsLike


def fixed_effect(model: nn.Module, images: Tensor, target_change: float | Sequence[float],
                 units: UnitsLike = None, norm: str = "l2", direction: str = "decrease",
                 eps_max: float | None = None, tol: float = 0.02, steps: int = 20,
                 step_size: float | None = None, max_iter: int = 30, random_start: bool = False,
                 restarts: int = 1, seed: int = 0, device: DeviceLike = None, batch_size: int = 32,
                 store_perturbations: bool | None = None,
                 progress: bool | None = None) -> FixedEffectResult:
    """Smallest budget whose PGD probe changes each unit's response by ``target_change``.

    For every (image, unit), PGD at ``eps_max`` decides whether the target is reachable; then
    bisection on eps (a PGD probe per trial) shrinks ``[eps_lower, eps]`` until
    ``eps - eps_lower <= tol * eps`` (or ``max_iter`` halvings). Assumes the achievable change
    grows with eps (true to first order). Unreachable entries get ``eps = inf`` and
    ``reached = False``.

    Parameters
    ----------
    target_change : response change to reach (> 0, in model response units), a scalar or one
        value per probed unit; measured as in ``direction`` (``"abs"``: |change|).
    eps_max : largest budget tried; default L2 ``0.25 * sqrt(3 H W)`` (RMS pixel change 0.25),
        L-inf ``64/255``.
    tol : relative width of the final bracket.
    steps, step_size, random_start, restarts, seed : PGD settings per trial (``step_size=None``
        means ``2.5 * eps / steps`` for each trial's eps).
    """
    check_images(images)
    steps, restarts, batch_size, step_size = _check_pgd_args(norm, direction, steps, restarts,
                                                             batch_size, step_size)
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = _check_nonneg_float(tol, "tol")
    if tol <= 0:
        raise ValueError("tol must be > 0")
    n_pix = int(np.prod(images.shape[1:]))
    if eps_max is None:
        eps_max = 0.25 * math.sqrt(n_pix) if norm == "l2" else 64 / 255
    eps_max = _check_scalar_eps(eps_max, "eps_max")
    if eps_max <= 0:
        raise ValueError("eps_max must be > 0")
    seed = check_seed(seed)
    dev = resolve_device(model, images, device)
    with evaluating(model, dev):
        x_all = images_on(images, model, dev)
        image_keys = _image_keys(_numpy(x_all))  # names the random starts of each image
        clean_all = clean_responses(model, x_all, batch_size)
        units = check_units(units, clean_all.shape[1])
        n, n_units = x_all.shape[0], len(units)
        target = np.asarray(target_change, dtype=np.float64)
        if target.ndim > 1 or target.size not in (1, n_units):
            raise ValueError(f"target_change must be a number or one value per unit ({n_units}); "
                             f"got shape {target.shape}")
        target = np.broadcast_to(target.reshape(-1), (n_units,)).copy()
        if not np.all(np.isfinite(target)) or np.any(target <= 0):
            raise ValueError(f"target_change must be finite and > 0; got {target.tolist()[:10]}")
        store = _want_store(n_units * x_all.numel() * x_all.element_size(), store_perturbations,
                            "fixed-effect probes")
        img_idx = np.tile(np.arange(n), n_units)
        unit_pos = np.repeat(np.arange(n_units), n)
        n_rows = len(img_idx)
        units_t = torch.as_tensor(units, device=dev)
        row_cols = units_t[torch.as_tensor(unit_pos, device=dev)]
        row_base = clean_all[torch.as_tensor(img_idx, device=dev), row_cols]
        base_np = row_base.cpu().numpy().astype(np.float64)
        row_target = target[unit_pos]
        lo, hi = np.zeros(n_rows), np.full(n_rows, eps_max)
        reached = np.zeros(n_rows, dtype=bool)
        resp_kept = np.empty(n_rows)
        delta_kept = np.empty((n_rows, *x_all.shape[1:]), dtype=_np_dtype(x_all)) if store else None
        n_dirs = len(_directions(direction))

        def trial(rows: np.ndarray, eps_rows: np.ndarray, first: bool) -> None:
            """PGD on ``rows`` at budgets ``eps_rows``; update brackets and kept probes."""
            for c0 in range(0, len(rows), batch_size):
                r = rows[c0:c0 + batch_size]
                r_t = torch.as_tensor(r, device=dev)
                x0 = x_all[torch.as_tensor(img_idx[r], device=dev)]
                eps_t = torch.as_tensor(eps_rows[c0:c0 + batch_size], device=dev, dtype=x0.dtype)
                # random starts need no gradient at the image, and its responses are known
                start = (_Start(row_base[r_t], None) if random_start
                         else _clean_start(model, x0, row_cols[r_t], with_grad=True))
                row_keys = np.stack([image_keys[img_idx[r]], units[unit_pos[r]]], axis=1)
                delta, resp, _ = _pgd_both(model, x0, row_cols[r_t], start, eps_t,
                                           _row_step_sizes(eps_t, step_size, steps), direction,
                                           norm, steps, random_start, restarts, seed, row_keys)
                resp_np = resp.cpu().numpy().astype(np.float64)
                ok = sensitivity_of_change(resp_np - base_np[r], direction) >= row_target[r]
                keep = ok | first  # at eps_max keep the best effort even when it falls short
                if first:
                    reached[r] = ok
                tried = eps_rows[c0:c0 + batch_size]
                hi[r[ok]] = tried[ok]
                lo[r[~ok]] = tried[~ok]
                resp_kept[r[keep]] = resp_np[keep]
                if delta_kept is not None:
                    delta_kept[r[keep]] = delta[torch.as_tensor(keep, device=dev)].cpu().numpy()
                bar.update(len(r))

        # progress counts PGD probes (one per row and trial); ~8 trials per row is typical
        with _bar(None, n_rows * n_dirs * restarts * (steps + 1) * 8, x_all, progress,
                  "fixed effect (PGD probes)") as bar:
            trial(np.arange(n_rows), hi.copy(), first=True)
            for _ in range(max_iter):
                active = np.flatnonzero(reached & (hi - lo > tol * hi))
                if active.size == 0:
                    break
                trial(active, 0.5 * (lo[active] + hi[active]), first=False)

    def to_nu(rows: np.ndarray) -> np.ndarray:
        """Unit-major row values (n_units * N,) -> (N, n_units)."""
        return rows.reshape(n_units, n).T.copy()

    clean = clean_all[:, units_t].cpu().numpy().astype(np.float64)
    perturbed = to_nu(resp_kept)
    change = _sensitivity(clean, perturbed[None], direction)[0]
    eps_found = np.where(reached, hi, np.inf)
    return FixedEffectResult(
        eps=to_nu(eps_found), eps_lower=to_nu(lo), reached=to_nu(reached), change=change,
        target=target, units=units, clean=clean, perturbed=perturbed, norm=norm,
        direction=direction, eps_max=eps_max, tol=tol, images=_numpy(x_all),
        deltas=None if delta_kept is None else delta_kept.reshape(n_units, n, *x_all.shape[1:]),
        params={"steps": steps, "step_size": step_size, "max_iter": max_iter,
                "random_start": random_start, "restarts": restarts, "seed": seed})
