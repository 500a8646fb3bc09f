"""The lasso: exact LARS path, K-fold choice of the penalty per voxel, fixed penalties (absolute
or in fractions of each unit's ``alpha_max``) and the papers' choice of one penalty per network.

Fixed-penalty fits (:func:`lasso_readout`) and the CV (:func:`lasso_cv`, :func:`select_lasso_alpha`)
use the exact LARS path (the same solution as scikit-learn's coordinate descent, much faster
with thousands of features). The paper's absolute grid is :data:`PAPER_LASSO_ALPHAS`; because
feature scales differ by orders of magnitude across networks (trained vs untrained), the default
grid :data:`RELATIVE_LASSO_ALPHAS` is in fractions of each unit's :func:`lasso_alpha_max`.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..cache import array_digest, cached_call
from ..metrics import pearson_r
from ._validate import _check_folds, _check_grid, _check_int, _check_max_iter, _check_n, _check_xy
from .linear import LinearReadout

#: The lasso penalties the paper tried (Methods 2.2), the best one chosen on subject 2.
PAPER_LASSO_ALPHAS: tuple[float, ...] = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1)
#: Scale-free candidates: fractions of each unit's ``alpha_max`` (see :func:`lasso_alpha_max`).
RELATIVE_LASSO_ALPHAS: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


def lasso_alpha_max(features, responses) -> np.ndarray:
    """(V,) smallest lasso penalty that sets every weight to zero, per voxel:
    ``max_j |x_j^T y| / N`` on centred features (N, D) and responses (N, V) (scikit-learn's
    scaling of ``alpha``). Penalties relative to it are comparable across networks whose features
    differ in scale by orders of magnitude (e.g. untrained vs trained networks)."""
    X, Y = _check_xy(features, responses)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    return np.abs(Xc.T @ Yc).max(0) / X.shape[0]


def _lars_coefs(Xc: np.ndarray, yc: np.ndarray, alphas: np.ndarray, max_iter: int | None = None) -> np.ndarray:
    """Lasso coefficients (D, A) of centred features Xc (N, D) and response yc (N,) at the
    penalties ``alphas`` (A,) (any order), read off the exact LARS-lasso path (piecewise linear in
    alpha, so interpolation between its kinks is exact). ``max_iter``: LARS steps (default
    ``10 * min(N, D)``); a path cut short by it raises a warning."""
    from sklearn.linear_model import lars_path

    alphas = np.asarray(alphas, dtype=np.float64)
    max_iter = _check_max_iter(max_iter)
    steps = max_iter if max_iter is not None else 10 * min(Xc.shape)
    a_path, _, coefs, n_iter = lars_path(Xc, yc, method="lasso", alpha_min=float(alphas.min()),
                                         max_iter=steps, return_n_iter=True)
    if n_iter >= steps and a_path[-1] > alphas.min():
        warnings.warn(f"the LARS path stopped after max_iter={steps} steps at alpha={a_path[-1]:.3g} "
                      f"> {alphas.min():.3g}; raise max_iter", RuntimeWarning, stacklevel=3)
    out = np.zeros((Xc.shape[1], len(alphas)))
    for j, a in enumerate(alphas):
        if a >= a_path[0]:
            continue  # at or above alpha_max: all weights zero
        k = int(np.searchsorted(-a_path, -a))  # first kink with a_path[k] <= a
        if k >= len(a_path):  # the path ended above a (e.g. N active features): its end point
            out[:, j] = coefs[:, -1]
            continue
        t = (a_path[k - 1] - a) / (a_path[k - 1] - a_path[k])
        out[:, j] = coefs[:, k - 1] + t * (coefs[:, k] - coefs[:, k - 1])
    return out


def lasso_lars(X, Y, alpha, max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lasso fit of features X (N, D) to responses Y (N, V) at the penalty ``alpha`` (a float or
    (V,) per voxel) in scikit-learn's scaling ``1/(2N) ||y - Xw - b||^2 + alpha ||w||_1`` (the
    intercept is not penalised), by LARS: the same solution as ``sklearn.linear_model.Lasso``.
    Returns ``(weight (V, D), bias (V,))``."""
    X, Y = _check_xy(X, Y)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64)
    _check_n(X.shape[0], 2, "a lasso fit with an intercept")
    a = _check_grid(alpha, "alpha (lasso penalty)")
    if a.size not in (1, Y.shape[1]):
        raise ValueError(f"alpha must be one penalty or one per voxel ({Y.shape[1]}); got {a.size}")
    a = np.broadcast_to(a, (Y.shape[1],))
    max_iter = _check_max_iter(max_iter)
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    weight = np.stack([_lars_coefs(Xc, Yc[:, v], a[v:v + 1], max_iter)[:, 0] for v in range(Y.shape[1])])
    return weight, y_mean - weight @ x_mean


def lasso_cv_predictions(X, Y, alphas, folds, relative: bool = False,
                         max_iter: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold lasso predictions of Y (N, V) from X (N, D) at every penalty of ``alphas`` (A,).

    ``folds``: (train, validation) index pairs that partition the N images. Per fold and voxel,
    one LARS path gives every penalty; the features and responses are centred on the training
    part. ``relative=True`` reads ``alphas`` as fractions of each voxel's :func:`lasso_alpha_max`
    on the training part of the fold. Returns ``(predictions (A, N, V), nonzero (A, V))``, the
    latter the number of non-zero weights averaged over folds.
    """
    X, Y = _check_xy(X, Y)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = _check_grid(alphas, "alphas")
    max_iter = _check_max_iter(max_iter)
    folds = [(np.asarray(tr), np.asarray(va)) for tr, va in folds]
    if not folds:
        raise ValueError("folds must hold at least one (train, validation) pair; got none")
    for tr, va in folds:
        if len(tr) < 2 or len(va) < 1:
            raise ValueError(f"every fold needs >= 2 training and >= 1 validation images; got a fold "
                             f"with {len(tr)} and {len(va)}")
    pred = np.zeros((len(alphas), *Y.shape))
    nonzero = np.zeros((len(alphas), Y.shape[1]))
    for tr, va in folds:
        xm, ym = X[tr].mean(0), Y[tr].mean(0)
        Xtr, Xva = X[tr] - xm, X[va] - xm
        scale = lasso_alpha_max(X[tr], Y[tr]) if relative else np.ones(Y.shape[1])
        for v in range(Y.shape[1]):
            coefs = _lars_coefs(Xtr, Y[tr, v] - ym[v], alphas * scale[v], max_iter)  # (D, A)
            pred[:, va, v] = (Xva @ coefs + ym[v]).T
            nonzero[:, v] += (coefs != 0).sum(0) / len(folds)
    return pred, nonzero


def lasso_cv(X, Y, alphas, cv: int = 5, seed: int = 0, max_iter: int | None = None):
    """Lasso with the penalty chosen per voxel by K-fold CV, as ``sklearn.linear_model.LassoCV``
    with ``cv=KFold(cv, shuffle=True, random_state=seed)`` (mean over folds of the validation
    mean squared error; ties go to the larger penalty), then refitted on all N images by LARS.

    X: (N, D); Y: (N, V); alphas: (A,) candidate penalties. Returns ``(weight (V, D), bias (V,),
    alpha (V,), cv_mse (A, V))``, ``cv_mse`` in the order of ``alphas``.
    """
    from sklearn.model_selection import KFold

    X, Y = _check_xy(X, Y)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = _check_grid(alphas, "alphas")
    cv = _check_int(cv, "cv", 2)
    _check_folds(X.shape[0], cv)
    folds = list(KFold(cv, shuffle=True, random_state=seed).split(X))
    pred, _ = lasso_cv_predictions(X, Y, alphas, folds, max_iter=max_iter)
    cv_mse = np.mean([((pred[:, va] - Y[va]) ** 2).mean(1) for _, va in folds], axis=0)  # (A, V)
    order = np.argsort(-alphas, kind="stable")  # largest first: a tie goes to the larger penalty
    best = alphas[order[np.argmin(cv_mse[order], axis=0)]]
    weight, bias = lasso_lars(X, Y, best, max_iter)
    return weight, bias, best, cv_mse


def lasso_readout(features, responses, alpha, relative: bool = True) -> LinearReadout:
    """Fit a lasso readout (features (N, D) -> responses (N, U)) with a fixed penalty, by LARS.

    ``alpha``: a float or (U,) penalties in scikit-learn's scaling
    (``1/(2N) ||y - Xw - b||^2 + alpha ||w||_1``); ``relative=True`` multiplies it by each unit's
    :func:`~probelib.readouts.lasso_alpha_max`. Returns a :class:`probelib.readouts.LinearReadout`
    (kind ``"lasso"``), the same solution as ``sklearn.linear_model.Lasso`` (intercept unpenalised),
    computed by :func:`probelib.readouts.lasso_lars`.
    """
    X = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    Y = np.asarray(responses, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, U) must share N; got {X.shape}, {Y.shape}")
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (Y.shape[1],)).copy()
    if np.any(a <= 0):
        raise ValueError(f"lasso penalties must be > 0; got {alpha}")
    if relative:
        a = a * lasso_alpha_max(X, Y)
    weight, bias = lasso_lars(X, Y, a)
    hp = {"kind": "lasso", "n_train": int(X.shape[0]), "n_features": int(X.shape[1]), "alpha": a,
          "relative_alpha": float(np.asarray(alpha).ravel()[0]) if relative else None,
          "solver": "lars", "nonzero_fraction": float((weight != 0).mean()),
          "nonzero_per_unit": (weight != 0).sum(1)}
    return LinearReadout(weight, bias, "lasso", hp)


@dataclass
class AlphaSelection:
    """Cross-validated choice of a lasso penalty.

    alpha : the chosen penalty (largest mean CV Pearson r); a fraction of each unit's
    :func:`lasso_alpha_max` if ``relative``, else an absolute penalty.
    alphas : (A,) candidates; scores : (A,) mean over units of the CV Pearson r (a constant CV
    prediction counts as r = 0); scores_per_unit : (A, U); nonzero : (A,) mean number of non-zero
    weights per unit over folds; at_edge : the choice is the smallest or largest candidate.
    """

    alpha: float
    alphas: np.ndarray
    scores: np.ndarray
    scores_per_unit: np.ndarray
    nonzero: np.ndarray
    at_edge: bool
    relative: bool = True

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"alpha": self.alphas, "cv_r": self.scores, "nonzero_weights": self.nonzero,
                             "chosen": self.alphas == self.alpha})


def _cv_lasso_scores(key, X, Y, alphas, relative, cv, seed):
    """(A, U) cross-validated Pearson r per penalty and unit, and (A,) mean non-zero weights."""
    del key  # part of the cache key only
    from sklearn.model_selection import KFold

    folds = KFold(cv, shuffle=True, random_state=seed).split(np.asarray(X))
    pred, nonzero = lasso_cv_predictions(X, Y, alphas, folds, relative=relative)
    scores = np.zeros((len(alphas), Y.shape[1]))
    for a in range(len(alphas)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = np.atleast_1d(np.asarray(pearson_r(pred[a], Y), dtype=np.float64))
        scores[a] = np.nan_to_num(r, nan=0.0)
    return scores, nonzero.mean(1)


def select_lasso_alpha(features, responses, alphas: Sequence[float] | None = None, relative: bool = True,
                       cv: int = 5, seed: int = 0, cache: bool = True) -> AlphaSelection:
    """Choose one lasso penalty for a set of units by K-fold cross-validated predictive accuracy.

    features : (N, D) (or (N, C, h, w), flattened) training features; responses : (N, U) training
    responses of the units of one subject (the paper: subject 2), N = training images only.
    alphas : candidates; ``relative=True`` (default; grid :data:`RELATIVE_LASSO_ALPHAS`) reads them
    as fractions of each unit's :func:`lasso_alpha_max` (computed within each training fold), so
    that one grid suits networks whose features differ in scale; ``relative=False`` takes them as
    absolute penalties (the paper's grid :data:`PAPER_LASSO_ALPHAS` is the default then).
    For each fold and unit the exact lasso path is computed (LARS); the held-out predictions of all
    folds are pooled and correlated with the observed responses (Pearson r per unit, averaged over
    units). Returns an :class:`AlphaSelection`; then fit every subject with
    ``fit_units(..., kind="lasso", alpha=sel.alpha, relative=sel.relative)``, as the paper did.
    """
    if alphas is None:
        alphas = RELATIVE_LASSO_ALPHAS if relative else PAPER_LASSO_ALPHAS
    alphas = np.asarray(list(alphas), dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or np.any(alphas <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive penalties; got {alphas}")
    Y = np.asarray(responses, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    X = np.asarray(features)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, U) must share N; got {X.shape}, {Y.shape}")
    if not 2 <= cv <= X.shape[0]:
        raise ValueError(f"cv must be in [2, N={X.shape[0]}]; got {cv}")
    key = {"X": array_digest(np.asarray(X, dtype=np.float32)), "Y": array_digest(Y), "alphas": alphas.tolist(),
           "relative": bool(relative), "cv": int(cv), "seed": int(seed)}
    per_unit, nonzero = cached_call(_cv_lasso_scores, key if cache else None, X, Y, alphas, bool(relative),
                                    int(cv), int(seed), ignore=("X", "Y"),
                                    check=lambda r: (isinstance(r, tuple) and len(r) == 2
                                                     and np.shape(r[0])[0] == len(alphas)))
    scores = per_unit.mean(1)
    best = int(np.argmax(scores))
    at_edge = len(alphas) > 1 and alphas[best] in (alphas.min(), alphas.max())
    return AlphaSelection(float(alphas[best]), alphas, scores, per_unit, nonzero, bool(at_edge), bool(relative))
