"""Input validation shared by every module: clear errors, nothing silently coerced."""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


def check_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Check a float image batch (N, 3, H, W) with pixels in [0, 1]; return it unchanged.

    Raises ``ValueError`` naming the problem (wrong type, rank, channel count, range, NaN).
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (N, 3, H, W); got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{name} must have rank 4 (N, 3, H, W); got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (N = 0, shape {tuple(images.shape)}): nothing to compute")
    if images.shape[1] != 3:
        raise ValueError(f"{name} must have 3 colour channels in dim 1 (NCHW); got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point with pixels in [0, 1]; got dtype {images.dtype}")
    with torch.no_grad():
        if not torch.isfinite(images).all():
            raise ValueError(f"{name} contain NaN or infinite pixels")
        lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must have pixels in [0, 1]; got range [{lo:.4g}, {hi:.4g}] "
                         "(did you pass 0-255 values or normalised images?)")
    return images


def check_eps(eps: float | Iterable[float], name: str = "eps") -> np.ndarray:
    """Return a 1-D float array of budgets; raise ``ValueError`` if any is negative or non-finite."""
    arr = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a number or a 1-D grid of numbers; got {eps!r}")
    bad = [float(e) for e in arr if not math.isfinite(float(e)) or e < 0]
    if bad:
        raise ValueError(f"{name} must be finite and >= 0; got {bad}")
    return arr


def check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    """``value`` as an int; ``ValueError`` naming ``name`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_seed(seed, nonnegative: bool = False) -> int:
    """``seed`` as an int (numpy integers accepted, bools refused); ``>= 0`` with ``nonnegative``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or (nonnegative and seed < 0):
        raise ValueError(f"seed must be an integer{' >= 0' if nonnegative else ''}; got {seed!r}")
    return int(seed)


def check_choice(value: str, choices: Iterable[str], name: str) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, choices))}")
    return value


def check_units(units, n_outputs: int) -> np.ndarray:
    """Indices of output units (voxels / ROIs) to probe; ``None`` means all ``n_outputs``."""
    if units is None:
        return np.arange(n_outputs)
    idx = np.atleast_1d(np.asarray(units))
    if idx.dtype.kind not in "iu" or idx.ndim != 1:
        raise ValueError(f"units must be integer indices; got {units!r}")
    if idx.size == 0:
        raise ValueError("units is empty: give at least one output unit (or None for all)")
    big = [int(i) for i in idx.tolist() if not -n_outputs <= int(i) < n_outputs]
    if big:
        raise ValueError(f"units out of range for a model with {n_outputs} outputs: {big[:10]}")
    return idx.astype(np.int64) % n_outputs


def check_finite_responses(r: np.ndarray | torch.Tensor, name: str = "responses") -> None:
    """Raise ``ValueError`` reporting how many NaN/inf entries (and in which columns) ``r`` has."""
    arr = r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.unique(np.nonzero(bad)[-1]) if arr.ndim > 1 else np.array([])
        raise ValueError(f"{name} contain {int(bad.sum())} NaN/inf values"
                         + (f" in columns {cols[:20].tolist()}" if cols.size else ""))


def as_float32_array(x) -> np.ndarray:
    """A C-contiguous float32 numpy copy (or view) of an array or tensor (e.g. images (N, 3, H, W))."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.ascontiguousarray(arr, dtype=np.float32)
