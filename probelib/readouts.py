"""Readouts: maps from encoder features to voxel responses, fitted once, then differentiable.

``fit_readout(kind, features, responses, seed=0, **options)`` returns an ``nn.Module`` mapping
features ``(N, D)`` (``(N, C, h, w)`` for ``"cnn"``) to responses ``(N, V)``. Kinds:

- ``"ols"``: least squares with intercept (minimum-norm solution when D > N).
- ``"ridge"``: L2 penalty; ``alphas`` grid, alpha chosen per voxel (``per_voxel=True``) or shared
  by exact leave-one-out cross-validation on the training images only (the same criterion as
  scikit-learn's ``RidgeCV``); ``alphas=[a]`` fixes it.
- ``"lasso"``: L1 penalty (scikit-learn coordinate descent); alpha chosen by K-fold CV.
- ``"mlp"``: one hidden layer of 128 ReLU units; weight decay chosen on a validation split.
- ``"cnn"``: one hidden 3x3 conv layer of 128 channels on spatial features, then linear.

Every readout records its hyper-parameters in ``readout.hparams``.
"""
from __future__ import annotations

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


class LinearReadout(nn.Module):
    """r = features @ weight.T + bias, with weight (V, D) and bias (V,)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, kind: str, hparams: dict):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32), requires_grad=False)
        self.bias = nn.Parameter(torch.as_tensor(bias, dtype=torch.float32), requires_grad=False)
        self.kind, self.hparams = kind, hparams

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.flatten(1) @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, V={self.weight.shape[0]}, D={self.weight.shape[1]}"


class NetReadout(nn.Module):
    """A small trained network readout (MLP or CNN) with input/output standardisation inside."""

    def __init__(self, net: nn.Module, in_mean, in_std, out_mean, out_std, kind: str, hparams: dict):
        super().__init__()
        self.net, self.kind, self.hparams = net, kind, hparams
        for name, v in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features if self.kind == "cnn" else features.flatten(1)
        return self.net((x - self.in_mean) / self.in_std) * self.out_std + self.out_mean


# ----------------------------------------------------------------------------------------------
# Ridge with exact leave-one-out CV (the efficient "GCV" identities, as in sklearn's _RidgeGCV)
# ----------------------------------------------------------------------------------------------
def ridge_loo(X: np.ndarray, Y: np.ndarray, alphas, per_voxel: bool = True):
    """Fit ridge with alpha chosen by exact leave-one-out CV on (X, Y).

    X: (N, D) features; Y: (N, V) responses. Returns ``(weight (V, D), bias (V,), alpha (V,),
    loo_mse (n_alphas, V))``. Works in the dual (N x N) so cost is O(N^2 D + N^3 + n_alphas N^2 V).
    The intercept is not penalised (the constant direction of the kernel is left unshrunk).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = np.asarray(alphas, dtype=np.float64)
    n = X.shape[0]
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    K = Xc @ Xc.T + 1.0  # + 1 1^T marks the (unpenalised) intercept direction
    lam, Q = np.linalg.eigh(K)
    ones = np.full(n, 1.0 / np.sqrt(n))
    intercept_dim = int(np.argmax(np.abs(Q.T @ ones)))
    QtY = Q.T @ Yc
    Q2 = Q * Q
    best_err = np.full(Y.shape[1], np.inf)
    best_c = np.zeros_like(Yc)
    best_alpha = np.zeros(Y.shape[1])
    loo = np.empty((len(alphas), Y.shape[1]))
    cs = []
    for a_i, alpha in enumerate(alphas):
        w = 1.0 / (lam + alpha)
        w[intercept_dim] = 0.0
        c = Q @ (w[:, None] * QtY)  # dual coefficients (N, V)
        g = Q2 @ w  # diagonal of (K + alpha I)^-1 restricted to non-intercept directions
        loo[a_i] = np.mean((c / g[:, None]) ** 2, axis=0)
        if per_voxel:
            better = loo[a_i] < best_err
            best_err[better], best_c[:, better], best_alpha[better] = loo[a_i, better], c[:, better], alpha
        else:
            cs.append(c)
    if not per_voxel:
        a_best = int(np.argmin(loo.mean(1)))
        best_c, best_alpha = cs[a_best], np.full(Y.shape[1], alphas[a_best])
    weight = (Xc.T @ best_c).T
    bias = y_mean - weight @ x_mean
    return weight, bias, best_alpha, loo


def _ols(X: np.ndarray, Y: np.ndarray):
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    x_mean, y_mean = X.mean(0), Y.mean(0)
    coef, *_ = np.linalg.lstsq(X - x_mean, Y - y_mean, rcond=None)  # minimum-norm if D > N
    weight = coef.T
    return weight, y_mean - weight @ x_mean


def _lasso(X, Y, alphas, cv: int, seed: int, max_iter: int):
    from sklearn.linear_model import Lasso, LassoCV
    from sklearn.model_selection import KFold

    X = np.asarray(X, dtype=np.float64)
    weights, biases, chosen = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        from sklearn.exceptions import ConvergenceWarning
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        for v in range(Y.shape[1]):
            if len(alphas) == 1:
                m = Lasso(alpha=alphas[0], max_iter=max_iter).fit(X, Y[:, v])
                chosen.append(alphas[0])
            else:
                m = LassoCV(alphas=list(alphas), cv=KFold(cv, shuffle=True, random_state=seed),
                            max_iter=max_iter).fit(X, Y[:, v])
                chosen.append(float(m.alpha_))
            weights.append(m.coef_)
            biases.append(m.intercept_)
    return np.stack(weights), np.asarray(biases), np.asarray(chosen)


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
    return NetReadout(net.cpu(), in_mean, in_std, out_mean, out_std, kind, hp)


def _corr_mean(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    r = np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), 0.0)
    return float(r.mean())


def fit_readout(kind: str, features, responses, seed: int = 0, **options) -> nn.Module:
    """Fit a readout of ``kind`` from training features ``(N, D)`` to responses ``(N, V)``.

    Options by kind: ridge ``alphas`` (grid; default 13 values 1e-2..1e10), ``per_voxel`` (True);
    lasso ``alphas`` (default 6 values 1e-4..10), ``cv`` (5), ``max_iter``; mlp/cnn
    ``weight_decays`` (grid; chosen by mean Pearson r on a seeded 20% validation split),
    ``hidden`` (128), ``epochs`` (300), ``lr`` (1e-3), ``device``.
    Responses with NaN/inf raise ``ValueError``; nothing is silently dropped.
    """
    check_choice(kind, KINDS, "readout kind")
    X, Y = _np(features), _np(responses)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, V) must share N; got {X.shape} and {Y.shape}")
    check_finite_responses(Y)
    check_finite_responses(X, "features")
    if kind == "cnn" and X.ndim != 4:
        raise ValueError(f"the cnn readout needs spatial features (N, C, h, w); got {X.shape} "
                         "(load the encoder with spatial=True)")
    if kind != "cnn":
        X = X.reshape(X.shape[0], -1)
    hp: dict = {"kind": kind, "n_train": int(X.shape[0]), "n_features": int(np.prod(X.shape[1:]))}
    if kind == "ols":
        w, b = _ols(X, Y)
        return LinearReadout(w, b, kind, hp)
    if kind == "ridge":
        alphas = np.asarray(options.pop("alphas", DEFAULT_RIDGE_ALPHAS), dtype=np.float64)
        per_voxel = bool(options.pop("per_voxel", True))
        _no_extra(options)
        if (alphas <= 0).any():
            raise ValueError(f"ridge alphas must be > 0; got {alphas}")
        w, b, alpha, loo = ridge_loo(X, Y, alphas, per_voxel)
        at_edge = float(np.isin(alpha, [alphas.min(), alphas.max()]).mean()) if len(alphas) > 1 else 0.0
        if at_edge > 0.5:
            warnings.warn(f"{at_edge:.0%} of voxels chose an alpha at the edge of the grid "
                          f"[{alphas.min():g}, {alphas.max():g}]; consider widening it")
        hp.update(alphas=alphas.tolist(), per_voxel=per_voxel, alpha=alpha, loo_mse=loo,
                  cv="leave-one-out on training images")
        return LinearReadout(w, b, kind, hp)
    if kind == "lasso":
        alphas = list(options.pop("alphas", DEFAULT_LASSO_ALPHAS))
        cv, max_iter = int(options.pop("cv", 5)), int(options.pop("max_iter", 2000))
        _no_extra(options)
        w, b, alpha = _lasso(X, Y, alphas, cv, seed, max_iter)
        hp.update(alphas=alphas, alpha=alpha, cv=f"{cv}-fold on training images",
                  nonzero_fraction=float((w != 0).mean()))
        return LinearReadout(w, b, kind, hp)
    # mlp / cnn
    decays = list(options.pop("weight_decays", DEFAULT_WEIGHT_DECAYS))
    hidden, epochs = int(options.pop("hidden", 128)), int(options.pop("epochs", 300))
    lr, device = float(options.pop("lr", 1e-3)), options.pop("device", "cpu")
    _no_extra(options)
    val_scores = {}
    if len(decays) > 1:
        perm = np.random.default_rng(seed).permutation(X.shape[0])
        n_val = max(2, X.shape[0] // 5)
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
