"""Budgets of the probes: the papers' L2 budgets scaled to the image size, the 2025 paper's PGD
settings, and the largest budget a fixed-effect search needs.

Budgets are in pixel units of images in [0, 1]: an L-inf ``eps`` is the largest change of any
pixel (``3/255`` = three grey levels), an L2 ``eps`` the Euclidean norm of the whole (3, H, W)
perturbation.
"""
from __future__ import annotations

import numpy as np

__all__ = ["REFERENCE_SIZE", "scale_eps", "l2_probe_settings", "fixed_effect_budget"]

#: Side in pixels of the images the papers' budgets refer to (224 px ImageNet-size stimuli).
REFERENCE_SIZE = 224


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
    """Keyword arguments of :func:`probelib.probes.cached.panel_pgd` for the 2025 paper's probes.

    Iterative L2 probes (PGD) at the paper's budget ``eps`` (for 224 px images; scaled to
    ``image_size`` by :func:`scale_eps`), ``steps`` ascent steps, sensitivity ``direction``
    (paper 2: ``"abs"``), perturbations stored (the transfer analyses need them).
    Returns ``{"eps": [eps_S], "norm": "l2", ...}``.
    """
    return {"eps": [scale_eps(eps, image_size)], "norm": "l2", "steps": int(steps),
            "direction": direction, "store_perturbations": bool(store_perturbations)}


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
