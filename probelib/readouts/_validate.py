"""Argument checks shared by the readouts (features, responses, grids, fold counts)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .._checks import check_finite_responses



def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _real_array(x, name: str) -> np.ndarray:
    arr = _np(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    return arr


def _check_xy(features, responses) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, D) or (N, C, h, w) and responses (N, V) or (N,) (one voxel, returned as
    (N, 1)), both finite, with N >= 1, at least one feature and one voxel. Dtypes are kept."""
    X, Y = _real_array(features, "features"), _real_array(responses, "responses")
    if X.ndim < 2:
        raise ValueError(f"features must have shape (N, D) or (N, C, h, w); got shape {X.shape} "
                         "(for a single feature use features.reshape(-1, 1))")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"responses must have shape (N, V), or (N,) for one voxel; got shape {Y.shape}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, V) must share N; got {X.shape} and {Y.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"features and responses have no rows (N = 0); got {X.shape} and {Y.shape}")
    if X[0].size == 0:
        raise ValueError(f"features have no feature columns; got shape {X.shape}")
    if Y.shape[1] == 0:
        raise ValueError(f"responses have no voxel columns; got shape {Y.shape}")
    check_finite_responses(Y)
    check_finite_responses(X, "features")
    return X, Y


def _check_n(n: int, minimum: int, what: str) -> None:
    if n < minimum:
        raise ValueError(f"too few images: features and responses have N = {n} rows; {what} needs "
                         f"N >= {minimum}")


def _check_grid(values, name: str, positive: bool = True) -> np.ndarray:
    """A number or a non-empty 1-D sequence of finite numbers, > 0 (``positive``) or >= 0;
    returned as a float64 array (1-D)."""
    rule = "> 0" if positive else ">= 0"
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, (str, bytes, dict, set)) or values is None:
        arr = None
    elif isinstance(values, (numbers.Number, np.ndarray, np.generic)):
        arr = np.asarray(values)
    else:
        try:
            arr = np.asarray(list(values))
        except (TypeError, ValueError):
            arr = None
    if arr is None or arr.dtype.kind not in "iuf" or arr.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence of numbers {rule}; got {values!r}")
    arr = np.atleast_1d(arr.astype(np.float64))
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty: give at least one value {rule}")
    bad = ~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0))
    if bad.any():
        raise ValueError(f"{name} must be finite and {rule}; got {arr[bad].tolist()}")
    return arr


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_positive_float(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_max_iter(max_iter) -> int | None:
    return None if max_iter is None else _check_int(max_iter, "max_iter", 1)


def _check_folds(n: int, cv: int) -> None:
    """K-fold CV of N images: every training part (N - ceil(N / cv) images at least) needs 2."""
    if cv > n:
        raise ValueError(f"cv must be in [2, N={n}] (at least one image per fold); got cv={cv}")
    smallest_train = n - -(-n // cv)
    if smallest_train < 2:
        raise ValueError(f"cv={cv} folds of N={n} images leave {smallest_train} image(s) to fit on in "
                         "some fold; lasso cross-validation needs 2 (more images, or another cv)")


def _check_feature_count(got: int, expected: int, features: torch.Tensor) -> None:
    if got != expected:
        raise ValueError(f"this readout was fitted on {expected} features per image; got features of "
                         f"shape {tuple(features.shape[1:])} ({got} per image): features of another "
                         f"encoder, layer or image size?")
