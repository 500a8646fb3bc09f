"""Benchmark of probelib.readouts: ridge with a per-voxel alpha chosen by leave-one-out CV.

``fit_readout("ridge", X, Y, alphas=grid)`` (exact LOO in the dual, one N×N eigendecomposition
shared by every alpha and voxel) vs scikit-learn's ``RidgeCV(alphas=grid,
alpha_per_target=True)`` (the same criterion via its GCV/"eigen" path), on N training images ×
D features and V voxels, for every ``DxV`` in ``ridge_sizes``. Checked:
predictions on held-out features agree (relative max difference <= 1e-4; probelib stores its
weights in float32) and the fraction of voxels choosing the same alpha is reported.

Data: features with a decaying spectrum (like CNN features), responses = a sparse-ish random
linear map of them plus noise whose level varies across voxels, so the chosen alpha varies.

Run through the runner: ``python benchmarks/run.py --only ridge``.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Baseline, Check, Row, Side, Target, compare  # noqa: E402

from probelib.readouts import fit_readout  # noqa: E402


def ridge_data(n_train: int, n_test: int, dim: int, n_voxels: int,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training features (N, D) float32, responses (N, V) float64 and test features (n_test, D)."""
    rng = np.random.default_rng(seed)
    rank = min(dim, 200)
    latent = rng.standard_normal((n_train + n_test, rank)) * (1.0 / np.arange(1, rank + 1)) ** 0.5
    feats = latent @ rng.standard_normal((rank, dim)) + 0.1 * rng.standard_normal((n_train + n_test, dim))
    feats = np.maximum(feats, 0).astype(np.float32)                      # ReLU-like, non-negative
    weights = rng.standard_normal((dim, n_voxels)) * (rng.random((dim, n_voxels)) < 0.05)
    signal = feats[:n_train] @ weights
    noise = signal.std(0) * rng.uniform(0.2, 5.0, n_voxels) * rng.standard_normal((n_train, n_voxels))
    return feats[:n_train], signal + noise, feats[n_train:]


def ridge_rows(n_train: int, dim: int, n_voxels: int, alphas: np.ndarray, repeats: int) -> list[Row]:
    """One (D, V) size: fit_readout("ridge") vs sklearn RidgeCV(alpha_per_target=True)."""
    from sklearn.linear_model import RidgeCV

    X, Y, X_test = ridge_data(n_train, 100, dim, n_voxels)

    def candidate() -> tuple[np.ndarray, np.ndarray]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")           # alphas at the grid edge are expected
            readout = fit_readout("ridge", X, Y, alphas=alphas, per_voxel=True)
        with torch.no_grad():
            pred = readout(torch.from_numpy(X_test)).double().numpy()
        return pred, np.asarray(readout.hparams["alpha"])

    def baseline() -> tuple[np.ndarray, np.ndarray]:
        model = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
        return model.predict(X_test), np.asarray(model.alpha_)

    def check(cand: tuple[np.ndarray, np.ndarray], base: tuple[np.ndarray, np.ndarray]) -> Check:
        diff = float(np.max(np.abs(cand[0] - base[0])))
        rel = diff / (float(np.max(np.abs(base[0]))) or 1.0)
        same_alpha = float(np.mean(np.isclose(cand[1], base[1])))
        return Check(rel <= 1e-4, f"test predictions max |d| = {rel:.1e} of max; "
                                  f"same alpha for {same_alpha:.1%} of voxels")

    return compare("ridge", Side(f"fit_readout ridge D={dim} V={n_voxels}", candidate),
                   [Baseline(Side("sklearn RidgeCV(alpha_per_target=True)", baseline), check,
                             Target(1.0, ">= 1.0x"),
                             notes=f"N={n_train}, {len(alphas)} alphas 1e-2..1e7, per-voxel alpha by "
                                   "exact LOO; times include predicting 100 test rows.")],
                   repeats, {"n": n_train, "D": dim, "V": n_voxels, "alphas": len(alphas)})


def run_ridge(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """fit_readout("ridge") vs sklearn RidgeCV(alpha_per_target=True) at each ``DxV`` size."""
    alphas = np.logspace(-2, 7, sizes["ridge_alphas"])
    rows: list[Row] = []
    for size in sizes["ridge_sizes"]:
        dim, n_voxels = (int(v) for v in size.lower().split("x"))
        rows += ridge_rows(sizes["ridge_n"], dim, n_voxels, alphas, repeats)
    return rows


COMPARISONS = {"ridge": run_ridge}

if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", *COMPARISONS, *sys.argv[1:]]))
