"""Adversarial probes of encoding models in pixel space.

Every function takes any ``torch.nn.Module`` mapping images ``(N, 3, H, W)`` (float, pixels in
[0, 1], NCHW) to responses ``(N, V)`` (voxels or ROIs; a 1-D output is read as ``V = 1``).
Perturbed images are always clamped to the box [0, 1].

Sensitivity of unit ``i`` at image ``x`` for a perturbation ``d`` with ``||d|| <= eps``:

- ``"decrease"`` (paper 1): ``s_i = r_i(x) - r_i(x + d)``, ``d`` chosen to lower the response;
- ``"increase"``: ``s_i = r_i(x + d) - r_i(x)``, ``d`` chosen to raise it;
- ``"abs"`` (paper 2): both directions are probed and the one with the larger absolute change
  is kept, ``s_i = |r_i(x + d) - r_i(x)|`` (the signed change is ``perturbed - clean``).

Norms: ``"linf"`` (``eps`` = max change of any pixel, e.g. ``3/255``) and ``"l2"`` (``eps`` =
Euclidean norm of the whole ``(3, H, W)`` perturbation, pixels in [0, 1] units).

Models are put in eval mode and their parameters are frozen for the duration of a call (training
flags, ``requires_grad`` flags and the model's device are restored afterwards); gradients are
taken with respect to the input only. ``device=None`` means the device of the model's first
parameter (or buffer), else the device of the images. Results are dataclasses of numpy arrays.
Images in a batch must be processed independently by the model (true for eval-mode networks).
"""
from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ._checks import (check_choice, check_eps, check_finite_responses, check_images,
                      check_positive_int, check_units)
from ._torch import evaluating, resolve_device

__all__ = [
    "DIRECTIONS",
    "NORMS",
    "ProbeResult",
    "FixedEffectResult",
    "OptimizationResult",
    "TransferMatrix",
    "fgsm",
    "pgd",
    "shuffled_control",
    "random_control",
    "fixed_effect",
    "maximize",
    "minimize",
    "transfer",
    "transfer_matrix",
]

DIRECTIONS = ("decrease", "increase", "abs")
NORMS = ("l2", "linf")

UnitsLike = int | Sequence[int] | np.ndarray | None
DeviceLike = str | torch.device | None

#: Perturbations are kept in results (for ``perturbation()``, controls and transfer) when
#: ``store_perturbations=None`` and they take at most this many bytes.
STORE_LIMIT_BYTES = 512 * 2**20
#: ``progress=None`` shows a progress bar when a call needs at least this many pixel passes
#: (image passes x pixels per image; ~160 passes of 224 px images).
_AUTO_PROGRESS_PIXELS = 25_000_000

_VIEW = (-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------

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


@dataclass
class TransferMatrix:
    """Mean response change of the target models under probes made on the source models.

    ``matrix[s, t]`` is the mean (over images and units) sensitivity of model ``names[t]`` to
    the probes of ``names[s]``; the diagonal is each model's own sensitivity.
    """

    names: list[str]
    matrix: np.ndarray
    eps: float
    units: np.ndarray
    attack: str
    direction: str

    @property
    def relative(self) -> np.ndarray:
        """``matrix`` divided column-wise by the diagonal (1 = transfers as well as self-attack)."""
        return self.matrix / np.diag(self.matrix)[None, :]


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def _model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


def _forward(model: nn.Module, x: Tensor) -> Tensor:
    """Model responses (B, V); a 1-D output is read as one unit."""
    r = model(x)
    if not isinstance(r, Tensor):
        raise ValueError(f"model must return a tensor of responses (N, V); got {type(r).__name__}")
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != x.shape[0]:
        raise ValueError(f"model must map images (N, 3, H, W) to responses (N, V); for N={x.shape[0]} "
                         f"it returned shape {tuple(r.shape)}")
    return r


def _clean_responses(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """No-grad responses (N, V) on the device of ``x``; raises on NaN/inf."""
    with torch.no_grad():
        r = torch.cat([_forward(model, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    check_finite_responses(r, "clean responses")
    return r


def _check_nonneg_float(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def _check_scalar_eps(eps: float, name: str = "eps") -> float:
    arr = check_eps(eps, name)
    if arr.size != 1:
        raise ValueError(f"{name} must be a single budget here; got {arr.size} values")
    return float(arr[0])


def _directions(direction: str) -> tuple[int, ...]:
    """Signs of the response change each direction pushes for (-1 down, +1 up)."""
    return {"decrease": (-1,), "increase": (1,), "abs": (-1, 1)}[direction]


def _from_change(change: np.ndarray, direction: str) -> np.ndarray:
    """Sensitivity from the signed response change ``r(x + d) - r(x)``."""
    if direction == "decrease":
        return -change
    if direction == "increase":
        return change
    return np.abs(change)


def _sensitivity(clean: np.ndarray, perturbed: np.ndarray, direction: str) -> np.ndarray:
    """Sensitivity from clean (N, U) and perturbed (n_eps, N, U) responses."""
    return _from_change(perturbed - clean[None], direction)


def _np_dtype(x: Tensor) -> np.dtype:
    """Numpy dtype matching a tensor's dtype."""
    return torch.empty(0, dtype=x.dtype).numpy().dtype


def _want_store(n_bytes: int, store: bool | None, what: str) -> bool:
    if store is not None:
        return bool(store)
    if n_bytes <= STORE_LIMIT_BYTES:
        return True
    warnings.warn(f"not keeping the {what} ({n_bytes / 2**20:.1f} MiB > STORE_LIMIT_BYTES = {STORE_LIMIT_BYTES / 2**20:.1f} MiB); "
                  "perturbation(), shuffled_control() and transfer() need them: pass "
                  "store_perturbations=True to keep them anyway", stacklevel=3)
    return False


def _bar(total: int | None, passes: int, x: Tensor, progress: bool | None, desc: str) -> tqdm:
    """Progress bar; ``progress=None`` shows it when ``passes`` image passes of ``x`` are costly."""
    show = passes * x[0].numel() >= _AUTO_PROGRESS_PIXELS if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, disable=not show, leave=False)


def _numpy(t: Tensor) -> np.ndarray:
    """A CPU numpy copy of ``t`` (never a view of the caller's tensor)."""
    return t.detach().cpu().numpy().copy()


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    return int(seed)


def _image_keys(images: np.ndarray) -> np.ndarray:
    """A content key per image (N, 3, H, W) -> (N,) int64: random draws follow the image, not its
    position in a call or a batch."""
    return np.array([int.from_bytes(hashlib.blake2b(np.ascontiguousarray(img).tobytes(),
                                                    digest_size=8).digest(), "little") >> 2
                     for img in images], dtype=np.int64)


def _draw_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator for one draw, derived from ``seed`` and integers naming the draw (image key,
    unit, restart, ...): the same draw whatever else the call holds and however it is batched."""
    words = [int(seed) % 2**64, *(int(p) % 2**64 for p in parts)]
    state = np.random.SeedSequence(words).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


def _eps_word(eps: float) -> int:
    """The bits of a budget, to name a draw made for it."""
    return int(np.float64(eps).view(np.uint64))


def _images_on(images: Tensor, model: nn.Module, device: torch.device) -> Tensor:
    return images.detach().to(device=device, dtype=_model_dtype(model, images.dtype))


def _n_outputs(model: nn.Module, x: Tensor) -> int:
    """Number of response units: ``model.n_outputs`` (EncodingModel) or a forward of one image."""
    known = getattr(model, "n_outputs", None)
    if isinstance(known, int):
        return known
    with torch.no_grad():
        return int(_forward(model, x[:1]).shape[1])


def _project_box(x0: Tensor, delta: Tensor) -> Tensor:
    """Perturbation such that ``x0 + delta`` lies in [0, 1] (never increases any |delta_k|)."""
    return (x0 + delta).clamp(0.0, 1.0) - x0


def _input_grad(value: Tensor, x: Tensor, retain_graph: bool = False) -> Tensor:
    """Gradient of the scalar ``value`` with respect to the images ``x`` only."""
    if not value.requires_grad:
        raise ValueError("the model's responses are not differentiable with respect to the images "
                         "(detached output, or torch.no_grad inside the model)")
    (grad,) = torch.autograd.grad(value, x, retain_graph=retain_graph, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def _l2(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1)


class _BatchedReadout:
    """Queue perturbed images with the unit to read from each; run the model in batches.

    ``add(x, cols, out, index)`` queues rows ``x`` (B, 3, H, W); the response of unit
    ``cols[k]`` to row ``k`` is written to ``out[index]`` (B values) at the next flush.
    """

    def __init__(self, model: nn.Module, batch_size: int, what: str = "responses to perturbed images"):
        self.model, self.batch_size, self.what = model, batch_size, what
        self._x: list[Tensor] = []
        self._cols: list[Tensor] = []
        self._sinks: list[tuple[np.ndarray, tuple, int]] = []
        self._rows = 0

    def add(self, x: Tensor, cols: Tensor, out: np.ndarray, index: tuple) -> None:
        if self._rows and self._rows + x.shape[0] > self.batch_size:
            self.flush()
        self._x.append(x)
        self._cols.append(cols)
        self._sinks.append((out, index, x.shape[0]))
        self._rows += x.shape[0]

    def flush(self) -> None:
        if not self._x:
            return
        x, cols = torch.cat(self._x), torch.cat(self._cols)
        with torch.no_grad():
            r = _forward(self.model, x)
        check_finite_responses(r, self.what)
        vals = r.gather(1, cols[:, None])[:, 0].cpu().numpy()
        pos = 0
        for out, index, n in self._sinks:
            out[index] = vals[pos:pos + n]
            pos += n
        self._x, self._cols, self._sinks, self._rows = [], [], [], 0


def _evaluate_deltas(model: nn.Module, x: Tensor, units: np.ndarray, n_eps: int,
                     delta_fn: Callable[[int, int], Tensor], batch_size: int, progress: bool | None,
                     desc: str, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``delta_fn(e, j)`` (N, 3, H, W) to the images; read unit ``units[j]``.

    Returns clean (N, U), perturbed (n_eps, N, U) and applied L2 norms (n_eps, N, U); writes
    the clamped perturbations into ``keep`` (n_eps, U, N, 3, H, W) when given.
    """
    n, n_units = x.shape[0], len(units)
    clean = _clean_responses(model, x, batch_size)[:, torch.as_tensor(units, device=x.device)]
    perturbed = np.empty((n_eps, n, n_units))
    norms = torch.empty((n_eps, n, n_units), device=x.device, dtype=x.dtype)
    readout = _BatchedReadout(model, batch_size)
    with _bar(n_eps * n_units, n_eps * n_units * n, x, progress, desc) as bar:
        for e in range(n_eps):
            for j, unit in enumerate(units):
                delta = delta_fn(e, j).to(device=x.device, dtype=x.dtype)
                for b0 in range(0, n, batch_size):
                    xb = x[b0:b0 + batch_size]
                    x_adv = (xb + delta[b0:b0 + batch_size]).clamp(0.0, 1.0)
                    applied = x_adv - xb
                    norms[e, b0:b0 + xb.shape[0], j] = _l2(applied)
                    if keep is not None:
                        keep[e, j, b0:b0 + xb.shape[0]] = applied.cpu().numpy()
                    cols = torch.full((xb.shape[0],), int(unit), device=x.device, dtype=torch.long)
                    readout.add(x_adv, cols, perturbed, (e, slice(b0, b0 + xb.shape[0]), j))
                bar.update(1)
        readout.flush()
    return _numpy(clean).astype(np.float64), perturbed, _numpy(norms).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# FGSM
# ----------------------------------------------------------------------------------------------

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
        x_all = _images_on(images, model, dev)
        units = check_units(units, _n_outputs(model, x_all))
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
                    r = _forward(model, x)
                check_finite_responses(r, "clean responses")
                clean[rows] = r.detach()[:, units_t].cpu().numpy()
                for j, unit in enumerate(units):
                    sign = _input_grad(r[:, unit].sum(), x, retain_graph=j < n_units - 1).sign()
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


def _pick_direction(clean: np.ndarray, pert: list[np.ndarray], norms: list[np.ndarray],
                    direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturbed responses, direction taken (int8) and norms, choosing per entry for ``"abs"``."""
    if direction != "abs":
        sign = -1 if direction == "decrease" else 1
        return pert[0], np.full(pert[0].shape, sign, dtype=np.int8), norms[0]
    up = np.abs(pert[1] - clean[None]) > np.abs(pert[0] - clean[None])
    return (np.where(up, pert[1], pert[0]), np.where(up, 1, -1).astype(np.int8),
            np.where(up, norms[1], norms[0]))


# ----------------------------------------------------------------------------------------------
# PGD
# ----------------------------------------------------------------------------------------------

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
        resp = _forward(model, xa).gather(1, cols[:, None])[:, 0]
    check_finite_responses(resp, "clean responses")
    return _Start(resp.detach(), _input_grad(resp.sum(), xa) if with_grad else None)


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
                    resp = _forward(model, xa).gather(1, cols[:, None])[:, 0]
                check_finite_responses(resp, "responses to PGD iterates")
                obj = sign * resp.detach()
                better = obj > best_obj
                best_obj = torch.where(better, obj, best_obj)
                best_resp = torch.where(better, resp.detach(), best_resp)
                best_delta[better] = delta[better]
                if last:
                    break
                grad = _input_grad(resp.sum(), xa)
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
    seed = _check_seed(seed)
    dev = resolve_device(model, images, device)
    with evaluating(model, dev):
        x_all = _images_on(images, model, dev)
        units = check_units(units, _n_outputs(model, x_all))
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


# ----------------------------------------------------------------------------------------------
# Controls
# ----------------------------------------------------------------------------------------------

def _check_same_images(images: Tensor, result: ProbeResult | FixedEffectResult) -> None:
    check_images(images)
    ref = result.images
    if tuple(images.shape) != ref.shape or not np.allclose(
            images.detach().cpu().numpy().astype(ref.dtype), ref, atol=1e-6):
        raise ValueError(f"images (shape {tuple(images.shape)}) are not the images the probes were "
                         f"made for (shape {ref.shape})")


def _control(model: nn.Module, images: Tensor, result: ProbeResult, method: str,
             delta_fn: Callable[[Tensor, int, int], Tensor], seed: int, device: DeviceLike,
             batch_size: int, store_perturbations: bool | None, progress: bool | None) -> ProbeResult:
    _check_same_images(images, result)
    batch_size = check_positive_int(batch_size, "batch_size")
    dev = resolve_device(model, images, device)
    n_eps, n, n_units = result.sensitivity.shape
    with evaluating(model, dev):
        x_all = _images_on(images, model, dev)
        check_units(result.units, _n_outputs(model, x_all))
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
    seed = _check_seed(seed)
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
    seed = _check_seed(seed)
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


# ----------------------------------------------------------------------------------------------
# Fixed effect
# ----------------------------------------------------------------------------------------------

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
    seed = _check_seed(seed)
    dev = resolve_device(model, images, device)
    with evaluating(model, dev):
        x_all = _images_on(images, model, dev)
        image_keys = _image_keys(_numpy(x_all))  # names the random starts of each image
        clean_all = _clean_responses(model, x_all, batch_size)
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
                ok = _from_change(resp_np - base_np[r], direction) >= row_target[r]
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



# ----------------------------------------------------------------------------------------------
# Maximise / minimise
# ----------------------------------------------------------------------------------------------

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


def _total_variation(x: Tensor) -> Tensor:
    """Anisotropic TV: mean |vertical difference| + mean |horizontal difference| (per image)."""
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
    gen = torch.Generator().manual_seed(_check_seed(seed))
    dev = resolve_device(model, image, device)
    frames: list[np.ndarray] = []
    responses: list[np.ndarray] = []
    values: list[float] = []
    recorded: list[int] = []
    with evaluating(model, dev):
        start = _images_on(x0, model, dev)
        objective, name = _objective(unit, _n_outputs(model, start))
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
                            record(t, _forward(model, x))
                    break
                xg = x.clone().requires_grad_(True)
                shifts = (0, 0)
                if jitter:
                    roll = torch.randint(-jitter, jitter + 1, (2,), generator=gen)
                    shifts = (int(roll[0]), int(roll[1]))
                with torch.enable_grad():
                    r = _forward(model, torch.roll(xg, shifts, dims=(2, 3)) if jitter else xg)
                    loss = sign * objective(r).sum()
                    if smoothness:
                        loss = loss - smoothness * _total_variation(xg).sum()
                if due:
                    if shifts == (0, 0):
                        record(t, r.detach())
                    else:
                        with torch.no_grad():
                            record(t, _forward(model, x))
                grad = _input_grad(loss, xg)
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


# ----------------------------------------------------------------------------------------------
# Transfer
# ----------------------------------------------------------------------------------------------

def _transfer_one(source: ProbeResult, images: Tensor, model: nn.Module, device: DeviceLike,
                  batch_size: int, progress: bool | None) -> ProbeResult:
    dev = resolve_device(model, images, device)
    n_eps = source.sensitivity.shape[0]
    with evaluating(model, dev):
        x_all = _images_on(images, model, dev)
        check_units(source.units, _n_outputs(model, x_all))
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
        return _n_outputs(model, _images_on(images[:1], model, dev))


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


def transfer_matrix(models: Mapping[str, nn.Module], images: Tensor, eps: float,
                    units: UnitsLike = None, attack: str | Callable[..., ProbeResult] = "fgsm",
                    attack_kwargs: Mapping[str, Any] | None = None, direction: str = "decrease",
                    device: DeviceLike = None, batch_size: int = 32,
                    progress: bool | None = None) -> TransferMatrix:
    """Probe every model at budget ``eps`` and apply its probes to every model.

    ``attack`` is ``"fgsm"``, ``"pgd"`` or a function with the signature of :func:`fgsm`;
    ``attack_kwargs`` are passed to it (e.g. ``{"norm": "l2", "steps": 20}`` for PGD).
    All models must share their output units (same voxels). Entry ``[s, t]`` is the mean
    sensitivity over images and units of target ``t`` under the probes of source ``s``.
    """
    check_images(images)
    eps_value = _check_scalar_eps(eps)
    check_choice(direction, DIRECTIONS, "direction")
    if isinstance(attack, str):
        attack_fn = {"fgsm": fgsm, "pgd": pgd}.get(check_choice(attack, ("fgsm", "pgd"), "attack"))
        attack_name = attack
    elif callable(attack):
        attack_fn, attack_name = attack, getattr(attack, "__name__", "custom")
    else:
        raise ValueError(f"attack must be 'fgsm', 'pgd' or a callable; got {attack!r}")
    names = list(models)
    if not names:
        raise ValueError("models must be a non-empty mapping name -> nn.Module")
    matrix = np.empty((len(names), len(names)))
    probe_units = None
    for s, source_name in enumerate(names):
        probe = attack_fn(models[source_name], images, eps_value, units=units, direction=direction,
                          device=device, batch_size=batch_size, store_perturbations=True,
                          progress=progress, **dict(attack_kwargs or {}))
        probe_units = probe.units
        for t, target_name in enumerate(names):
            result = probe if t == s else _transfer_one(probe, images, models[target_name], device,
                                                        batch_size, progress)
            check_finite_responses(result.sensitivity, f"sensitivity of {target_name!r}")
            matrix[s, t] = float(np.mean(result.sensitivity))
    return TransferMatrix(names=names, matrix=matrix, eps=eps_value, units=probe_units,
                          attack=attack_name, direction=direction)
