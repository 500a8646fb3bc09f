"""Readouts: maps from encoder features to voxel responses, fitted once, then differentiable.

``fit_readout(kind, features, responses, seed=0, **options)`` returns an ``nn.Module`` mapping
features ``(N, D)`` (``(N, C, h, w)`` for ``"cnn"``) to responses ``(N, V)``. Kinds:

- ``"ols"``: least squares with intercept (minimum-norm solution when D > N).
- ``"ridge"``: L2 penalty; ``alphas`` grid, alpha chosen per voxel (``per_voxel=True``) or shared
  by exact leave-one-out cross-validation on the training images only (the same criterion as
  scikit-learn's ``RidgeCV``); ``alphas=[a]`` fixes it.
- ``"lasso"``: L1 penalty, solved exactly by LARS (:func:`lasso_lars`, the same solution as
  scikit-learn's ``Lasso``, far faster when features >> images); with several ``alphas`` the
  alpha is chosen per voxel by K-fold CV (:func:`lasso_cv`, the criterion of ``LassoCV``).
- ``"mlp"``: one hidden layer of 128 ReLU units; weight decay chosen on a validation split.
- ``"cnn"``: one hidden 3x3 conv layer of 128 channels on spatial features, then linear.

Every readout records its hyper-parameters in ``readout.hparams``.

The same readouts as scikit-learn estimators: :class:`Readout` (``fit`` / ``predict`` / ``score``,
``get_params`` / ``set_params``); a linear estimator fitted with scikit-learn or himalaya becomes a
differentiable readout with :func:`as_readout`.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np
import torch
import torch.nn as nn

from ._checks import check_choice, check_finite_responses

KINDS = ("ols", "ridge", "lasso", "mlp", "cnn")
DEFAULT_RIDGE_ALPHAS = tuple(np.logspace(-2, 10, 13))
DEFAULT_LASSO_ALPHAS = tuple(np.logspace(-4, 1, 6))
DEFAULT_WEIGHT_DECAYS = (1e-4, 1e-2, 1.0)


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ----------------------------------------------------------------------------------------------
# Input validation: every degenerate input raises a ValueError naming the parameter
# ----------------------------------------------------------------------------------------------
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


class NetReadout(nn.Module):
    """A small trained network readout (MLP or CNN) with input/output standardisation inside."""

    def __init__(self, net: nn.Module, in_mean, in_std, out_mean, out_std, kind: str, hparams: dict,
                 feature_shape: tuple):
        super().__init__()
        self.net, self.kind, self.hparams = net, kind, hparams
        self.feature_shape = tuple(int(d) for d in feature_shape)  # one image's features
        for name, v in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            if tuple(features.shape[1:]) != self.feature_shape:
                raise ValueError(f"this cnn readout was fitted on features of shape {self.feature_shape} "
                                 f"per image; got {tuple(features.shape[1:])}: features of another "
                                 f"encoder, layer or image size?")
            x = features
        else:
            x = features.flatten(1)
            _check_feature_count(x.shape[1], int(np.prod(self.feature_shape)), features)
        return self.net((x - self.in_mean) / self.in_std) * self.out_std + self.out_mean


# ----------------------------------------------------------------------------------------------
# Ridge with exact leave-one-out CV (the efficient "GCV" identities, as in sklearn's _RidgeGCV)
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# Lasso by LARS: the exact regularisation path, piecewise linear in alpha (fast when D >> N)
# ----------------------------------------------------------------------------------------------
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


def _make_net(kind: str, in_shape: tuple, n_out: int, hidden: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(int(np.prod(in_shape)), hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    c, h, w = in_shape
    return nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(hidden * h * w, n_out))


def _train_net(kind, X, Y, weight_decay, hidden, epochs, lr, seed, device):
    """Full-batch Adam on standardised inputs/outputs; returns a NetReadout."""
    X = torch.as_tensor(X, dtype=torch.float32)
    Y = torch.as_tensor(Y, dtype=torch.float32)
    dims = (0, 2, 3) if kind == "cnn" else (0,)
    in_mean = X.mean(dims, keepdim=True)[0]
    in_std = X.std(dims, keepdim=True)[0].clamp_min(1e-6)
    out_mean, out_std = Y.mean(0), Y.std(0).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _make_net(kind, tuple(X.shape[1:]), Y.shape[1], hidden)
    net = net.to(device)
    Xs = ((X - in_mean) / in_std).to(device)
    Ys = ((Y - out_mean) / out_std).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((net(Xs) - Ys) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    hp = {"weight_decay": weight_decay, "hidden": hidden, "epochs": epochs, "lr": lr, "seed": seed,
          "final_train_mse": float(loss.detach())}
    return NetReadout(net.cpu(), in_mean, in_std, out_mean, out_std, kind, hp, tuple(X.shape[1:]))


def _corr_mean(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    r = np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), 0.0)
    return float(r.mean())


def fit_readout(kind: str, features, responses, seed: int = 0, **options) -> nn.Module:
    """Fit a readout of ``kind`` from training features ``(N, D)`` to responses ``(N, V)``.

    Options by kind: ridge ``alphas`` (grid; default 13 values 1e-2..1e10), ``per_voxel`` (True);
    lasso ``alphas`` (default 6 values 1e-4..10; one value fixes alpha), ``cv`` (5 folds),
    ``max_iter`` (LARS steps per path, default ``10 * min(N, D)``); mlp/cnn
    ``weight_decays`` (grid; chosen by mean Pearson r on a seeded 20% validation split),
    ``hidden`` (128), ``epochs`` (300), ``lr`` (1e-3), ``device``.

    Every input is checked and a ``ValueError`` names the one at fault: features and responses
    must be real, finite and share N (responses ``(N,)`` are taken as one voxel; features need
    at least one column, and ``(N, C, h, w)`` for ``"cnn"``); a grid (``alphas``,
    ``weight_decays``; a single number is a grid of one) must be non-empty and finite, with
    penalties > 0 (weight decays >= 0); ``cv``, ``max_iter``, ``hidden``, ``epochs`` are integers
    >= 2, 1, 1, 1; ``lr`` > 0; ``per_voxel`` a bool. Too few images raise too: every fit needs
    N >= 2; ridge choosing among several alphas N >= 3; lasso CV 2 training images in every fold;
    mlp/cnn choosing among several weight decays N >= 4 (the validation split holds out
    ``max(2, N // 5)``). Nothing is silently dropped.
    """
    check_choice(kind, KINDS, "readout kind")
    X, Y = _check_xy(features, responses)
    if kind == "cnn" and X.ndim != 4:
        raise ValueError(f"the cnn readout needs spatial features (N, C, h, w); got {X.shape} "
                         "(load the encoder with spatial=True)")
    if kind != "cnn":
        X = X.reshape(X.shape[0], -1)
    n = X.shape[0]
    hp: dict = {"kind": kind, "n_train": int(n), "n_features": int(np.prod(X.shape[1:]))}
    if kind == "ols":
        _no_extra(options)
        w, b = _ols(X, Y)
        return LinearReadout(w, b, kind, hp)
    if kind == "ridge":
        alphas = _check_grid(options.pop("alphas", DEFAULT_RIDGE_ALPHAS), "alphas")
        per_voxel = _check_bool(options.pop("per_voxel", True), "per_voxel")
        _no_extra(options)
        w, b, alpha, loo = ridge_loo(X, Y, alphas, per_voxel)
        at_edge = float(np.isin(alpha, [alphas.min(), alphas.max()]).mean()) if len(alphas) > 1 else 0.0
        if at_edge > 0.5:
            warnings.warn(f"{at_edge:.0%} of voxels chose an alpha at the edge of the grid "
                          f"[{alphas.min():g}, {alphas.max():g}]; consider widening it")
        hp.update(alphas=alphas.tolist(), per_voxel=per_voxel, alpha=alpha, loo_mse=loo,
                  cv="leave-one-out on training images")
        return LinearReadout(w, b, kind, hp)
    if kind == "lasso":
        alphas = _check_grid(options.pop("alphas", DEFAULT_LASSO_ALPHAS), "alphas").tolist()
        cv = _check_int(options.pop("cv", 5), "cv", 2)
        max_iter = _check_max_iter(options.pop("max_iter", None))
        _no_extra(options)
        if len(alphas) == 1:
            w, b = lasso_lars(X, Y, alphas[0], max_iter)
            alpha = np.full(Y.shape[1], alphas[0])
        else:
            _check_folds(n, cv)
            w, b, alpha, cv_mse = lasso_cv(X, Y, alphas, cv, seed, max_iter)
            hp.update(cv=f"{cv}-fold on training images", cv_mse=cv_mse)
        hp.update(alphas=alphas, alpha=alpha, solver="lars", nonzero_fraction=float((w != 0).mean()),
                  nonzero_per_unit=(w != 0).sum(1))
        return LinearReadout(w, b, kind, hp)
    # mlp / cnn
    decays = _check_grid(options.pop("weight_decays", DEFAULT_WEIGHT_DECAYS), "weight_decays",
                         positive=False).tolist()
    hidden = _check_int(options.pop("hidden", 128), "hidden", 1)
    epochs = _check_int(options.pop("epochs", 300), "epochs", 1)
    lr = _check_positive_float(options.pop("lr", 1e-3), "lr")
    device = options.pop("device", "cpu")
    _no_extra(options)
    _check_n(n, 2, f"a {kind} readout (inputs and outputs are standardised)")
    val_scores = {}
    if len(decays) > 1:
        n_val = max(2, n // 5)
        if n - n_val < 2:
            raise ValueError(f"too few images: features and responses have N = {n} rows; choosing among "
                             f"several weight_decays holds out {n_val} for validation, leaving "
                             f"{n - n_val} to train on; needs N >= 4 (or give a single weight decay)")
        perm = np.random.default_rng(seed).permutation(n)
        val, tr = perm[:n_val], perm[n_val:]
        for wd in decays:
            m = _train_net(kind, X[tr], Y[tr], wd, hidden, epochs, lr, seed, device)
            with torch.no_grad():
                pred = m(torch.as_tensor(X[val], dtype=torch.float32)).numpy()
            val_scores[wd] = _corr_mean(pred, Y[val])
        best = max(val_scores, key=val_scores.get)
    else:
        best = decays[0]
    readout = _train_net(kind, X, Y, best, hidden, epochs, lr, seed, device)
    readout.hparams.update(hp, weight_decays=decays, validation_r=val_scores)
    return readout


def _no_extra(options: dict) -> None:
    if options:
        raise ValueError(f"unknown readout options: {', '.join(options)}")


# ----------------------------------------------------------------------------------------------
# scikit-learn estimator API
# ----------------------------------------------------------------------------------------------
def _readout_class() -> type:
    """Define :class:`Readout` on first use (scikit-learn's base classes cost a second to import)."""
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import RegressorMixin as _RegressorMixin

    class Readout(_RegressorMixin, _BaseEstimator):
        """A readout as a scikit-learn regressor: ``fit(X, y)``, ``predict(X)``, ``score(X, y)`` (R²),
        ``get_params`` / ``set_params``, so ``cross_val_score``, ``Pipeline`` and ``GridSearchCV``
        work. :func:`fit_readout` is the functional form; this class calls it.

        Parameters are those of :func:`fit_readout` (``None`` = its default): ``kind``; ridge
        ``alphas``, ``per_voxel``; lasso ``alphas``, ``cv``, ``max_iter``; mlp / cnn
        ``weight_decays``, ``hidden``, ``epochs``, ``lr``, ``device``; ``seed``. Options of the other
        kinds are ignored.

        ``X``: features (N, D) (``(N, C, h, w)`` for ``kind="cnn"``); ``y``: responses (N,) or (N, V).
        After ``fit``: ``module_`` (the differentiable ``nn.Module`` readout, e.g. for
        ``EncodingModel(encoder, est.module_)``), ``hparams_`` (what was chosen, e.g. ridge
        ``alpha``), ``n_features_in_``, and for the linear kinds ``coef_`` (V, D) or (D,) and
        ``intercept_`` (V,) or a float, as in scikit-learn's linear models. Predictions are float64.
        """

        _LINEAR = ("ols", "ridge", "lasso")

        def __init__(self, kind: str = "ridge", alphas=None, per_voxel: bool = True, cv: int = 5,
                     max_iter: int | None = None, weight_decays=None, hidden: int = 128, epochs: int = 300,
                     lr: float = 1e-3, device: str = "cpu", seed: int = 0):
            self.kind = kind
            self.alphas = alphas
            self.per_voxel = per_voxel
            self.cv = cv
            self.max_iter = max_iter
            self.weight_decays = weight_decays
            self.hidden = hidden
            self.epochs = epochs
            self.lr = lr
            self.device = device
            self.seed = seed

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.target_tags.multi_output = True
            tags.target_tags.single_output = True
            if self.kind == "cnn":
                tags.input_tags.two_d_array = False
            return tags

        def _options(self) -> dict:
            check_choice(self.kind, KINDS, "readout kind")
            opts: dict = {}
            if self.kind in ("ridge", "lasso") and self.alphas is not None:
                opts["alphas"] = self.alphas
            if self.kind == "ridge":
                opts["per_voxel"] = self.per_voxel
            if self.kind == "lasso":
                opts.update(cv=self.cv, max_iter=self.max_iter)
            if self.kind in ("mlp", "cnn"):
                if self.weight_decays is not None:
                    opts["weight_decays"] = self.weight_decays
                opts.update(hidden=self.hidden, epochs=self.epochs, lr=self.lr, device=self.device)
            return opts

        def _validate(self, X, y=None, reset: bool = True):
            from sklearn.utils.validation import validate_data

            common = dict(reset=reset, dtype=np.float64, allow_nd=self.kind == "cnn")
            if y is None and not reset:
                return validate_data(self, X, **common)
            return validate_data(self, X, y, multi_output=True, y_numeric=True, ensure_min_samples=2, **common)

        def fit(self, X, y):
            """Fit the readout to features ``X`` (N, D) and responses ``y`` (N,) or (N, V); returns self."""
            opts = self._options()
            X, y = self._validate(X, y)
            if self.kind == "cnn" and X.ndim != 4:
                raise ValueError(f"kind='cnn' needs spatial features (N, C, h, w); got shape {X.shape}")
            y = np.asarray(y, dtype=np.float64)
            self._single_output = y.ndim == 1
            self.module_ = fit_readout(self.kind, X, y, seed=self.seed, **opts)
            self.hparams_ = self.module_.hparams
            if self.kind in self._LINEAR:
                w = self.module_.weight.detach().double().cpu().numpy()
                b = self.module_.bias.detach().double().cpu().numpy()
                self.coef_, self.intercept_ = (w[0], float(b[0])) if self._single_output else (w, b)
            return self

        def predict(self, X) -> np.ndarray:
            """Predicted responses (N,) (a single response was fitted) or (N, V), float64."""
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(self, "module_")
            X = self._validate(X, reset=False)
            if self.kind in self._LINEAR:
                out = X.reshape(len(X), -1) @ np.atleast_2d(self.coef_).T + self.intercept_
            else:
                with torch.no_grad():
                    out = self.module_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
            return out[:, 0] if self._single_output and out.ndim == 2 else out

    Readout.__module__, Readout.__qualname__ = __name__, "Readout"  # pickled as probelib.readouts.Readout
    return Readout


def _get_readout_class() -> type:
    return globals().get("Readout") or __getattr__("Readout")


def __getattr__(name: str):
    if name == "Readout":  # PEP 562: defined on first use, then an ordinary module attribute
        cls = globals()["Readout"] = _readout_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_numpy(value, what: str) -> np.ndarray:
    """numpy, torch (any device) or cupy array -> float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        value = value.get()
    arr = np.asarray(value, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"the estimator's {what} contains NaN or infinite values")
    return arr


def _linear_parts(est) -> tuple[np.ndarray, np.ndarray, str]:
    """(weight (V, D), bias (V,), description) of one fitted linear estimator."""
    if isinstance(est, _get_readout_class()):
        if not hasattr(est, "module_"):
            raise ValueError("the Readout is not fitted: call fit(X, y) first")
        if est.kind not in ("ols", "ridge", "lasso"):
            raise ValueError(f"a {est.kind!r} Readout is not linear: use est.module_ directly")
        m = est.module_
        return _as_numpy(m.weight, "weight"), _as_numpy(m.bias, "bias"), f"Readout({est.kind})"
    name = f"{type(est).__module__.split('.')[0]}.{type(est).__name__}"
    coef = getattr(est, "coef_", None)
    if coef is None and hasattr(est, "get_primal_coef"):  # himalaya kernel ridge, linear kernel
        coef = est.get_primal_coef()
    if coef is None:
        raise ValueError(f"{name} has no coef_: not a fitted linear estimator (fit it first; kernel "
                         "models need a linear kernel)")
    w = _as_numpy(coef, "coef_")
    transposed = type(est).__module__.startswith("himalaya")  # himalaya: coef_ (D,) or (D, V)
    if w.ndim == 1:
        w = w[None, :]
    elif w.ndim == 2 and transposed:
        w = w.T
    elif w.ndim != 2:
        raise ValueError(f"{name}.coef_ must be 1-D or 2-D; got shape {w.shape}")
    n_in = getattr(est, "n_features_in_", None)
    if isinstance(n_in, (int, np.integer)) and w.shape[1] != n_in:
        raise ValueError(f"{name}.coef_ has shape {w.shape}, which does not match n_features_in_ = "
                         f"{n_in} (expected (V, {n_in}))")
    b = getattr(est, "intercept_", 0.0)
    b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(_as_numpy(b, "intercept_"), (w.shape[0],))
    return w, np.array(b, dtype=np.float64), name


def _fold_scaler(step, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``x -> (x - mean) / scale`` (a fitted StandardScaler) into ``w x + b``."""
    n = w.shape[1]
    mean = getattr(step, "mean_", None) if getattr(step, "with_mean", True) else None
    scale = getattr(step, "scale_", None) if getattr(step, "with_std", True) else None
    scale = np.ones(n) if scale is None else _as_numpy(scale, "scale_")
    mean = np.zeros(n) if mean is None else _as_numpy(mean, "mean_")
    if scale.shape != (n,) or mean.shape != (n,):
        raise ValueError(f"the scaler was fitted on {mean.size} features, the estimator on {n}")
    w2 = w / scale
    return w2, b - w2 @ mean


def as_readout(estimator) -> LinearReadout:
    """A fitted linear estimator as a differentiable readout (``nn.Module``, features (N, D) ->
    responses (N, V)), so that a fit made with scikit-learn or himalaya can be probed:
    ``EncodingModel(encoder, as_readout(est))``.

    Accepts anything with ``coef_`` and ``intercept_`` (``Ridge``, ``RidgeCV``, ``Lasso``,
    ``LinearRegression``, himalaya's ``Ridge`` / ``RidgeCV`` / ``GroupRidgeCV`` whose ``coef_`` is
    (D, V), numpy, torch or cupy), himalaya kernel ridge with a linear kernel
    (``get_primal_coef()``), a fitted :class:`Readout`, a ``Pipeline`` of ``StandardScaler`` steps
    followed by one of these (the scaling is folded into the weights), a fitted search
    (``GridSearchCV``: its ``best_estimator_``) and ``MultiOutputRegressor`` (one estimator per
    response). The weights are copied (float32); later changes to the estimator do not reach
    the readout.
    """
    est = getattr(estimator, "best_estimator_", estimator)
    steps = getattr(est, "steps", None)
    scalers = []
    if steps is not None:  # a Pipeline: scalers, then the linear estimator
        *pre, (_, est) = steps
        from sklearn.preprocessing import StandardScaler

        for label, step in pre:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            if not isinstance(step, StandardScaler) or not hasattr(step, "n_features_in_"):
                raise ValueError(f"pipeline step {label!r} ({type(step).__name__}) is not a fitted "
                                 "StandardScaler; only standard scaling can be folded into a linear readout")
            scalers.append(step)
    if hasattr(est, "estimators_") and not hasattr(est, "coef_"):  # MultiOutputRegressor
        parts = [_linear_parts(e) for e in est.estimators_]
        w = np.concatenate([p[0] for p in parts])
        b = np.concatenate([p[1] for p in parts])
        name = f"MultiOutputRegressor({parts[0][2]})"
    else:
        w, b, name = _linear_parts(est)
    for step in reversed(scalers):
        w, b = _fold_scaler(step, w, b)
    hp = {"kind": f"wrapped {name}", "n_features": int(w.shape[1]),
          "pipeline": [type(s).__name__ for s in scalers] + [name]}
    return LinearReadout(w, b, f"wrapped:{name}", hp)
