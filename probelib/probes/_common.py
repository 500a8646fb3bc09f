"""What the probes share: sensitivity definitions, seeded draws, batched evaluation, progress."""
from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from .._progress import progress_bar

from .._checks import check_eps, check_finite_responses, check_images
from .._torch import clean_responses, forward_responses
from .results import FixedEffectResult, ProbeResult


#: Perturbations are kept in results (for ``perturbation()``, controls and transfer) when
#: ``store_perturbations=None`` and they take at most this many bytes.
STORE_LIMIT_BYTES = 512 * 2**20


#: ``progress=None`` shows a progress bar when a call needs at least this many pixel passes
#: (image passes x pixels per image; ~160 passes of 224 px images).
_AUTO_PROGRESS_PIXELS = 25_000_000



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



def sensitivity_of_change(change: np.ndarray, direction: str) -> np.ndarray:
    """Sensitivity from the signed response change ``r(x + d) - r(x)`` (any shape) under the
    definition of ``direction``: ``-change`` (decrease), ``change`` (increase), ``|change|`` (abs)."""
    if direction == "decrease":
        return -change
    if direction == "increase":
        return change
    return np.abs(change)



def _sensitivity(clean: np.ndarray, perturbed: np.ndarray, direction: str) -> np.ndarray:
    """Sensitivity from clean (N, U) and perturbed (n_eps, N, U) responses."""
    return sensitivity_of_change(perturbed - clean[None], direction)



def _pick_direction(clean: np.ndarray, pert: list[np.ndarray], norms: list[np.ndarray],
                    direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Perturbed responses, direction taken (int8) and norms, choosing per entry for ``"abs"``."""
    if direction != "abs":
        sign = -1 if direction == "decrease" else 1
        return pert[0], np.full(pert[0].shape, sign, dtype=np.int8), norms[0]
    up = np.abs(pert[1] - clean[None]) > np.abs(pert[0] - clean[None])
    return (np.where(up, pert[1], pert[0]), np.where(up, 1, -1).astype(np.int8),
            np.where(up, norms[1], norms[0]))



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



def _bar(total: int | None, passes: int, x: Tensor, progress: bool | None, desc: str) -> object:
    """Progress bar; ``progress=None`` shows it when ``passes`` image passes of ``x`` are costly."""
    show = passes * x[0].numel() >= _AUTO_PROGRESS_PIXELS if progress is None else bool(progress)
    return progress_bar(total=total, desc=desc, disable=not show, leave=False)



def _numpy(t: Tensor) -> np.ndarray:
    """A CPU numpy copy of ``t`` (never a view of the caller's tensor)."""
    return t.detach().cpu().numpy().copy()






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



def _project_box(x0: Tensor, delta: Tensor) -> Tensor:
    """Perturbation such that ``x0 + delta`` lies in [0, 1] (never increases any |delta_k|)."""
    return (x0 + delta).clamp(0.0, 1.0) - x0



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
            r = forward_responses(self.model, x)
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
    clean = clean_responses(model, x, batch_size)[:, torch.as_tensor(units, device=x.device)]
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



def _check_same_images(images: Tensor, result: ProbeResult | FixedEffectResult) -> None:
    check_images(images)
    ref = result.images
    if tuple(images.shape) != ref.shape or not np.allclose(
            images.detach().cpu().numpy().astype(ref.dtype), ref, atol=1e-6):
        raise ValueError(f"images (shape {tuple(images.shape)}) are not the images the probes were "
                         f"made for (shape {ref.shape})")
