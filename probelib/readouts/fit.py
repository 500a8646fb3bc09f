"""``fit_readout``: one entry point for every kind of readout."""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn as nn

from .._checks import check_choice
from ._validate import (_check_bool, _check_folds, _check_grid, _check_int, _check_max_iter, _check_n,
                        _check_positive_float, _check_xy)
from .lasso import lasso_cv, lasso_lars
from .linear import LinearReadout, _ols, ridge_loo
from .nets import _corr_mean, _train_net

KINDS = ("ols", "ridge", "lasso", "mlp", "cnn")
# Absolute penalties, so the grid must span the features' scales: untrained networks' features
# are orders of magnitude smaller than trained ones'. On the demo (both papers' panels, 4 ROIs)
# the grid 1e-2..1e10 left all voxels of 6 fits at its lower edge; with 1e-10..1e10 no voxel of
# any fit chooses an edge, and no mean held-out r moves by 5e-5 or more.
DEFAULT_RIDGE_ALPHAS = tuple(np.logspace(-10, 10, 21))
DEFAULT_LASSO_ALPHAS = tuple(np.logspace(-4, 1, 6))
DEFAULT_WEIGHT_DECAYS = (1e-4, 1e-2, 1.0)


def _fraction_at_edge(alphas: np.ndarray, alpha: np.ndarray, loo: np.ndarray) -> float:
    """Fraction of voxels whose chosen ``alpha`` is an end of the grid where the leave-one-out
    error (``loo``, (n_alphas, V)) still falls towards that end: their best penalty may lie beyond
    the grid. An end chosen on a plateau (a tie, decided for the first alpha) does not count."""
    if len(alphas) < 2:
        return 0.0
    order = np.argsort(alphas)
    err = np.asarray(loo, dtype=np.float64).reshape(len(alphas), -1)[order]
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64).reshape(-1), (err.shape[1],))
    lo, hi = alphas[order[0]], alphas[order[-1]]
    falling_lo = err[0] < err[1] * (1 - 1e-9)
    falling_hi = err[-1] < err[-2] * (1 - 1e-9)
    return float(np.mean(((a == lo) & falling_lo) | ((a == hi) & falling_hi)))


def fit_readout(kind: str, features, responses, seed: int = 0, **options) -> nn.Module:
    """Fit a readout of ``kind`` from training features ``(N, D)`` to responses ``(N, V)``.

    Options by kind: ridge ``alphas`` (grid; default 21 values 1e-10..1e10), ``per_voxel`` (True);
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
        at_edge = _fraction_at_edge(alphas, alpha, loo)
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
