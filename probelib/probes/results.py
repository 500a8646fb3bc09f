"""Results of the probes: dataclasses of numpy arrays, shapes in their docstrings."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor


DIRECTIONS = ("decrease", "increase", "abs")


NORMS = ("l2", "linf")

UnitsLike = int | Sequence[int] | np.ndarray | None

DeviceLike = str | torch.device | None

_VIEW = (-1, 1, 1, 1)



@dataclass(repr=False)
class ProbeResult:
    """Per-unit probes of a set of images over a grid of budgets.

    Attributes
    ----------
    sensitivity : (n_eps, N, n_units) float64, sensitivity as defined by ``direction``
        (response units of the model).
    eps : (n_eps,) budgets (``nan`` for transferred raw perturbations without a budget).
    units : (n_units,) indices of the probed output units (voxels / ROIs).
    clean : (N, n_units) responses of the probed units to the clean images.
    perturbed : (n_eps, N, n_units) response of each probed unit to its own probe.
    direction_taken : (n_eps, N, n_units) int8, ``-1`` if the probe pushed the response down,
        ``+1`` if up (only varies for ``direction="abs"``).
    delta_norm : (n_eps, N, n_units) L2 norm of the applied (box-clamped) perturbation.
    method : ``"fgsm"``, ``"pgd"``, ``"shuffled"``, ``"random"`` or ``"transfer"``.
    norm : ``"linf"`` or ``"l2"`` (budget norm of the probe).
    direction : ``"decrease"``, ``"increase"`` or ``"abs"``.
    images : (N, 3, H, W) the clean images the probes were made for.
    sign_grad : (n_units, N, 3, H, W) int8 gradient signs (FGSM), or None.
    deltas : (n_eps, n_units, N, 3, H, W) float perturbations (PGD / controls), or None.
    params : settings of the attack (steps, step size, seed, ...).
    """

    sensitivity: np.ndarray
    eps: np.ndarray
    units: np.ndarray
    clean: np.ndarray
    perturbed: np.ndarray
    direction_taken: np.ndarray
    delta_norm: np.ndarray
    method: str
    norm: str
    direction: str
    images: np.ndarray
    sign_grad: np.ndarray | None = None
    deltas: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def change(self) -> np.ndarray:
        """Signed response change ``perturbed - clean``, shape (n_eps, N, n_units)."""
        return self.perturbed - self.clean[None]

    @property
    def has_perturbations(self) -> bool:
        return self.sign_grad is not None or self.deltas is not None

    def perturbation(self, eps_index: int, unit_index: int) -> Tensor:
        """The applied perturbation ``x_adv - x`` (N, 3, H, W) on CPU.

        ``eps_index`` indexes :attr:`eps`; ``unit_index`` indexes :attr:`units` (a position, not
        the unit id). ``images + perturbation`` lies in [0, 1].
        """
        n_eps, _, n_units = self.sensitivity.shape
        if not (-n_eps <= eps_index < n_eps and -n_units <= unit_index < n_units):
            raise IndexError(f"(eps_index, unit_index) = ({eps_index}, {unit_index}) out of range "
                             f"for {n_eps} budgets and {n_units} units")
        if self.deltas is not None:
            return torch.from_numpy(np.array(self.deltas[eps_index, unit_index]))
        if self.sign_grad is None:
            raise ValueError("this result does not keep its perturbations (too large or "
                             "store_perturbations=False); rerun with store_perturbations=True")
        x = torch.from_numpy(self.images)
        step = torch.from_numpy(self.direction_taken[eps_index, :, unit_index]).to(x.dtype)
        step = step.view(_VIEW) * float(self.eps[eps_index])
        sign = torch.from_numpy(self.sign_grad[unit_index]).to(x.dtype)
        return (x + step * sign).clamp(0.0, 1.0) - x

    def perturbed_images(self, eps_index: int, unit_index: int) -> Tensor:
        """``images + perturbation(eps_index, unit_index)``: (N, 3, H, W) in [0, 1], on CPU."""
        x = torch.from_numpy(self.images)
        return (x + self.perturbation(eps_index, unit_index)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        n_eps, n, n_units = self.sensitivity.shape
        kept = ("sign_grad" if self.sign_grad is not None
                else "deltas" if self.deltas is not None else "none")
        return (f"ProbeResult(method={self.method!r}, norm={self.norm!r}, direction={self.direction!r}, "
                f"n_eps={n_eps}, n_images={n}, n_units={n_units}, "
                f"mean_sensitivity={np.mean(self.sensitivity):.4g}, perturbations={kept})")



@dataclass(repr=False)
class FixedEffectResult:
    """Smallest budgets reaching a target response change (bisection over PGD).

    Attributes
    ----------
    eps : (N, n_units) smallest budget found to reach the target (upper end of the final
        bisection bracket); ``inf`` where even ``eps_max`` cannot reach it.
    eps_lower : (N, n_units) largest budget known to fail (lower end of the bracket).
    reached : (N, n_units) bool, whether the target was reached within ``eps_max``.
    change : (N, n_units) sensitivity (as defined by ``direction``) of the kept probe; for
        unreached entries, the best change at ``eps_max``.
    target : (n_units,) target change per unit.
    units, clean, perturbed : as in :class:`ProbeResult` (``perturbed`` is (N, n_units)).
    norm, direction, eps_max, tol : settings of the search.
    images : (N, 3, H, W) clean images.
    deltas : (n_units, N, 3, H, W) the kept probes (at ``eps``; at ``eps_max`` if unreached),
        or None when not stored.
    """

    eps: np.ndarray
    eps_lower: np.ndarray
    reached: np.ndarray
    change: np.ndarray
    target: np.ndarray
    units: np.ndarray
    clean: np.ndarray
    perturbed: np.ndarray
    norm: str
    direction: str
    eps_max: float
    tol: float
    images: np.ndarray
    deltas: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)

    def perturbation(self, unit_index: int) -> Tensor:
        """Kept probe (N, 3, H, W) on CPU for ``units[unit_index]``."""
        if self.deltas is None:
            raise ValueError("this result does not keep its perturbations; rerun with "
                             "store_perturbations=True")
        return torch.from_numpy(np.array(self.deltas[unit_index]))

    def __repr__(self) -> str:
        n, n_units = self.eps.shape
        return (f"FixedEffectResult(norm={self.norm!r}, direction={self.direction!r}, n_images={n}, "
                f"n_units={n_units}, reached={int(self.reached.sum())}/{self.reached.size}, "
                f"median_eps={np.median(self.eps):.4g})")



@dataclass(repr=False)
class OptimizationResult:
    """Trajectory of an unconstrained (box-only) or eps-bounded response optimisation.

    Attributes
    ----------
    images : (T, 3, H, W) float32 frames in [0, 1]; ``images[0]`` is the start image,
        ``images[-1]`` the final one.
    responses : (T, V) all model outputs at each frame.
    objective : (T,) objective value (the unit's response / weighted combination) at each frame.
    steps : (T,) optimisation step of each frame.
    mode : ``"maximize"`` or ``"minimize"``.
    objective_name : description of the objective.
    params : settings (steps, step size, eps, norm, jitter, smoothness, seed).
    """

    images: np.ndarray
    responses: np.ndarray
    objective: np.ndarray
    steps: np.ndarray
    mode: str
    objective_name: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def start_image(self) -> np.ndarray:
        return self.images[0]

    @property
    def final_image(self) -> np.ndarray:
        return self.images[-1]

    @property
    def delta(self) -> np.ndarray:
        """Final image minus start image, (3, H, W)."""
        return self.images[-1] - self.images[0]

    def __repr__(self) -> str:
        return (f"OptimizationResult(mode={self.mode!r}, objective={self.objective_name!r}, "
                f"frames={len(self.steps)}, "
                f"objective {self.objective[0]:.4g} -> {self.objective[-1]:.4g})")


def subset_eps(result: ProbeResult, eps: float | Iterable[float]) -> ProbeResult:
    """The budgets ``eps`` (each must be in ``result.eps``, matched to 1e-12) of a ProbeResult.

    Every per-budget array is sliced; gradient signs / perturbations are kept, so
    ``perturbation(e, j)`` and the controls still work on the subset.
    """
    wanted = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    pos = []
    for e in wanted:
        hit = np.flatnonzero(np.isclose(result.eps, e, rtol=0, atol=1e-12))
        if not len(hit):
            raise ValueError(f"eps {float(e)!r} is not in the result's grid {result.eps.tolist()}")
        pos.append(int(hit[0]))
    deltas = None if result.deltas is None else result.deltas[pos]
    return dataclasses.replace(
        result, sensitivity=result.sensitivity[pos], eps=result.eps[pos],
        perturbed=result.perturbed[pos], direction_taken=result.direction_taken[pos],
        delta_norm=result.delta_norm[pos], deltas=deltas)
