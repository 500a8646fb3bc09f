"""Linear readouts: the differentiable :class:`LinearReadout`, least squares and ridge
(exact leave-one-out choice of the penalty)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ._validate import _check_bool, _check_feature_count, _check_grid, _check_n, _check_xy



class LinearReadout(nn.Module):
    """r = features @ weight.T + bias, with weight (V, D) and bias (V,)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, kind: str, hparams: dict):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32), requires_grad=False)
        self.kind, self.hparams = kind, hparams

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.flatten(1)
        _check_feature_count(x.shape[1], self.weight.shape[1], features)
        return x @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, V={self.weight.shape[0]}, D={self.weight.shape[1]}"


def ridge_loo(X: np.ndarray, Y: np.ndarray, alphas, per_voxel: bool = True):
    """Fit ridge with alpha chosen by exact leave-one-out CV on (X, Y).

    X: (N, D) features; Y: (N, V) responses ((N,): one voxel). Returns ``(weight (V, D),
    bias (V,), alpha (V,), loo_mse (n_alphas, V))``. Works in the dual (N x N) so cost is
    O(N^2 D + N^3 + n_alphas N^2 V). The intercept is not penalised: X and Y are centred (which
    makes the intercept exact) and its share of the hat matrix, ``1 1^T / N``, is taken out of the
    leave-one-out denominators analytically, as scikit-learn's ``RidgeCV`` does. (No eigenvector
    is singled out as "the intercept direction": with standardised uncorrelated features that
    direction is not unique.) Ties between alphas go to the first in ``alphas``, as in ``RidgeCV``.
    """
    X, Y = _check_xy(X, Y)
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = _check_grid(alphas, "alphas")
    per_voxel = _check_bool(per_voxel, "per_voxel")
    n = X.shape[0]
    if len(alphas) > 1:  # with N = 2 every leave-one-out fit has one image: all alphas tie
        _check_n(n, 3, "ridge's leave-one-out choice among several alphas")
    _check_n(n, 2, "a ridge fit with an intercept")
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    # G = Xc Xc^T + alpha I. The hat matrix of ridge with an unpenalised intercept is
    # H = 1 1^T / N + Xc Xc^T G^-1, so the residuals are alpha c (c = G^-1 Yc, the dual
    # coefficients) and 1 - H_ii = alpha (G^-1_ii - (G^-1 1)_i / N) (G^-1 1 = 1 / alpha, since
    # Xc^T 1 = 0): the LOO residual is c_i / (G^-1_ii - (G^-1 1)_i / N). G^-1 1 is computed from the
    # same eigendecomposition as G^-1_ii, so the (numerically not quite zero) eigenvalue of the
    # constant direction cancels, whatever eigenvectors span it.
    lam, Q = np.linalg.eigh(Xc @ Xc.T)
    QtY = Q.T @ Yc
    Qt1 = Q.sum(0)  # Q^T 1
    Q2 = Q * Q
    n_vox = Y.shape[1]
    best_err = np.full(n_vox, np.inf)
    best_c = np.zeros_like(Yc)
    best_alpha = np.zeros(n_vox)
    loo = np.empty((len(alphas), n_vox))
    cs = []
    for a_i, alpha in enumerate(alphas):
        w = 1.0 / (lam + alpha)
        c = Q @ (w[:, None] * QtY)  # dual coefficients (N, V)
        g = Q2 @ w - (Q @ (w * Qt1)) / n  # diag of G^-1 less the intercept's share
        loo[a_i] = np.mean((c / g[:, None]) ** 2, axis=0)
        if per_voxel:
            better = loo[a_i] < best_err  # strict: a tie keeps the earlier alpha (as RidgeCV)
            best_err[better], best_c[:, better], best_alpha[better] = loo[a_i, better], c[:, better], alpha
        else:
            cs.append(c)
    if not per_voxel:
        a_best = int(np.argmin(loo.mean(1)))
        best_c, best_alpha = cs[a_best], np.full(n_vox, alphas[a_best])
    weight = (Xc.T @ best_c).T
    bias = y_mean - weight @ x_mean
    return weight, bias, best_alpha, loo


def _ols(X: np.ndarray, Y: np.ndarray):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    _check_n(X.shape[0], 2, "an ols fit with an intercept")
    x_mean, y_mean = X.mean(0), Y.mean(0)
    coef, *_ = np.linalg.lstsq(X - x_mean, Y - y_mean, rcond=None)  # minimum-norm if D > N
    weight = coef.T
    return weight, y_mean - weight @ x_mean
