"""Properties of probelib.readouts: closed forms, boundaries, tie rules and full error messages.

Ridge's leave-one-out error is checked against refitting without each image; ties go to the first
alpha (ridge) or the larger penalty (lasso CV); network readouts standardise inputs and outputs
inside and record their settings; every validation message names the parameter at fault.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from probelib.readouts import (fit_readout, lasso_alpha_max, lasso_cv, lasso_cv_predictions, lasso_lars,
                               ridge_loo)


def _data(n=12, d=5, v=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, :2] @ rng.normal(size=(2, v)) + 0.5 * rng.normal(size=(n, v))


X12, Y12 = _data()
SPATIAL = np.random.default_rng(1).normal(size=(12, 2, 2, 2))


@pytest.mark.parametrize("call,message", [
    (lambda: fit_readout("ridge", X12, Y12, alphas=[]),
     r"^alphas must not be empty: give at least one value > 0$"),
    (lambda: fit_readout("ridge", X12, Y12, alphas=[1.0, 0.0]), r"^alphas must be finite and > 0; got \[0\.0\]$"),
    (lambda: fit_readout("ridge", X12, Y12, alphas="1"),
     r"^alphas must be a number or a 1-D sequence of numbers > 0; got '1'$"),
    (lambda: fit_readout("mlp", X12, Y12, weight_decays=[-1.0]),
     r"^weight_decays must be finite and >= 0; got \[-1\.0\]$"),
    (lambda: fit_readout("mlp", X12, Y12, weight_decays=[]),
     r"^weight_decays must not be empty: give at least one value >= 0$"),
    (lambda: fit_readout("ridge", X12, Y12, per_voxel=1), r"^per_voxel must be True or False; got 1$"),
    (lambda: fit_readout("lasso", X12, Y12, alphas=[0.1, 0.2], cv=1), r"^cv must be an integer >= 2; got 1$"),
    (lambda: fit_readout("lasso", X12, Y12, alphas=[0.1], max_iter=0), r"^max_iter must be an integer >= 1; got 0$"),
    (lambda: fit_readout("mlp", X12, Y12, hidden=0), r"^hidden must be an integer >= 1; got 0$"),
    (lambda: fit_readout("mlp", X12, Y12, epochs=True), r"^epochs must be an integer >= 1; got True$"),
    (lambda: fit_readout("mlp", X12, Y12, lr=0.0), r"^lr must be a finite number > 0; got 0\.0$"),
    (lambda: fit_readout("mlp", X12, Y12, lr=True), r"^lr must be a finite number > 0; got True$"),
    (lambda: fit_readout("ols", X12[:1], Y12[:1]),
     r"^too few images: features and responses have N = 1 rows; an ols fit with an intercept needs N >= 2$"),
    (lambda: fit_readout("ridge", X12[:1], Y12[:1], alphas=[1.0]),
     r"^too few images: features and responses have N = 1 rows; a ridge fit with an intercept needs N >= 2$"),
    (lambda: fit_readout("ridge", X12[:2], Y12[:2], alphas=[1.0, 2.0]),
     r"^too few images: features and responses have N = 2 rows; ridge's leave-one-out choice among several "
     r"alphas needs N >= 3$"),
    (lambda: fit_readout("lasso", X12[:1], Y12[:1], alphas=[0.1]),
     r"^too few images: features and responses have N = 1 rows; a lasso fit with an intercept needs N >= 2$"),
    (lambda: fit_readout("mlp", X12[:1], Y12[:1], weight_decays=[0.1], epochs=1),
     r"^too few images: features and responses have N = 1 rows; a mlp readout \(inputs and outputs are "
     r"standardised\) needs N >= 2$"),
    (lambda: fit_readout("mlp", X12[:3], Y12[:3], weight_decays=[0.1, 1.0], epochs=1),
     r"^too few images: features and responses have N = 3 rows; choosing among several weight_decays holds "
     r"out 2 for validation, leaving 1 to train on; needs N >= 4 \(or give a single weight decay\)$"),
    (lambda: fit_readout("lasso", X12, Y12, alphas=[0.1, 0.2], cv=13),
     r"^cv must be in \[2, N=12\] \(at least one image per fold\); got cv=13$"),
    (lambda: fit_readout("lasso", X12[:3], Y12[:3], alphas=[0.1, 0.2], cv=2),
     r"^cv=2 folds of N=3 images leave 1 image\(s\) to fit on in some fold; lasso cross-validation needs 2 "
     r"\(more images, or another cv\)$"),
    (lambda: fit_readout("ridge", X12, Y12, alpha=3), r"^unknown readout options: alpha$"),
    (lambda: fit_readout("svm", X12, Y12), r"^unknown readout kind 'svm'; valid: 'ols', 'ridge', 'lasso'"),
    (lambda: fit_readout("cnn", X12, Y12), r"^the cnn readout needs spatial features \(N, C, h, w\); got \(12, 5\)"),
    (lambda: fit_readout("ols", X12.astype(str), Y12), r"^features must be a real numeric array; got dtype <U"),
    (lambda: fit_readout("ols", X12, Y12.astype(complex)), r"^responses must be a real numeric array; got dtype"),
    (lambda: fit_readout("ols", X12[:, 0], Y12), r"^features must have shape \(N, D\) or \(N, C, h, w\); got shape"),
    (lambda: fit_readout("ols", X12, Y12[:, :, None]), r"^responses must have shape \(N, V\), or \(N,\) for one"),
    (lambda: fit_readout("ols", X12, Y12[:5]), r"^features \(N, \.\.\.\) and responses \(N, V\) must share N"),
    (lambda: fit_readout("ols", X12[:0], Y12[:0]), r"^features and responses have no rows \(N = 0\)"),
    (lambda: fit_readout("ols", X12[:, :0], Y12), r"^features have no feature columns; got shape \(12, 0\)$"),
    (lambda: fit_readout("ols", X12, Y12[:, :0]), r"^responses have no voxel columns; got shape \(12, 0\)$"),
    (lambda: fit_readout("ols", np.where(np.eye(12, 5) > 0, np.nan, X12), Y12),
     r"^features contain 5 NaN/inf values in columns \[0, 1, 2, 3, 4\]$"),
    (lambda: fit_readout("ols", X12, np.where(np.eye(12, 3) > 0, np.inf, Y12)),
     r"^responses contain 3 NaN/inf values in columns \[0, 1, 2\]$"),
    (lambda: lasso_lars(X12, Y12, [0.1, 0.2]), r"^alpha must be one penalty or one per voxel \(3\); got 2$"),
    (lambda: lasso_lars(X12, Y12, 0.0), r"^alpha \(lasso penalty\) must be finite and > 0; got \[0\.0\]$"),
    (lambda: lasso_cv_predictions(X12, Y12, [0.1], []),
     r"^folds must hold at least one \(train, validation\) pair; got none$"),
    (lambda: lasso_cv_predictions(X12, Y12, [0.1], [(np.arange(1), np.arange(1, 12))]),
     r"^every fold needs >= 2 training and >= 1 validation images; got a fold with 1 and 11$"),
    (lambda: lasso_cv_predictions(X12, Y12, [0.1], [(np.arange(12), np.arange(0))]),
     r"^every fold needs >= 2 training and >= 1 validation images; got a fold with 12 and 0$"),
])
def test_errors_name_the_parameter_at_fault(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_readouts_check_the_features_they_were_fitted_on():
    lin = fit_readout("ols", X12, Y12)
    with pytest.raises(ValueError, match=r"^this readout was fitted on 5 features per image; got features of "
                                         r"shape \(6,\) \(6 per image\): features of another encoder"):
        lin(torch.zeros(2, 6))
    mlp = fit_readout("mlp", X12, Y12, weight_decays=[0.0], epochs=1, hidden=2)
    with pytest.raises(ValueError, match=r"^this readout was fitted on 5 features per image; got"):
        mlp(torch.zeros(2, 4))
    cnn = fit_readout("cnn", SPATIAL, Y12, weight_decays=[0.0], epochs=1, hidden=2)
    with pytest.raises(ValueError, match=r"^this cnn readout was fitted on features of shape \(2, 2, 2\) per "
                                         r"image; got \(2, 4, 1\)"):
        cnn(torch.zeros(2, 2, 4, 1))
    assert cnn(torch.zeros(3, 2, 2, 2)).shape == (3, 3)
    assert mlp(torch.zeros(3, 5)).shape == (3, 3)


# --------------------------------------------------------------------------- boundaries

def test_smallest_valid_inputs_are_accepted():
    for kind, opts in (("ols", {}), ("ridge", {"alphas": [1.0]}), ("lasso", {"alphas": [0.01]})):
        r = fit_readout(kind, X12[:2], Y12[:2], **opts)           # N = 2
        assert r(torch.as_tensor(X12[:2], dtype=torch.float32)).shape == (2, 3)
    with pytest.warns(UserWarning, match="edge of the grid"):
        fit_readout("ridge", X12[:3], Y12[:3], alphas=[0.1, 1.0])     # several alphas: N = 3
    w, b, alpha, mse = lasso_cv(X12[:6], Y12[:6], [0.01, 0.1], cv=3)   # cv folds leave 4 >= 2 to train
    assert alpha.shape == (3,)
    lasso_cv(X12[:4], Y12[:4], [0.01, 0.1], cv=2)                 # N - ceil(N / cv) = 2
    lasso_cv(X12[:3], Y12[:3], [0.01, 0.1], cv=3)                 # cv = N: leave-one-out, 2 to train
    r = fit_readout("mlp", X12[:4], Y12[:4], weight_decays=[0.0, 0.1], epochs=1, hidden=2)   # N = 4
    assert set(r.hparams["validation_r"]) == {0.0, 0.1}
    fit_readout("mlp", X12[:2], Y12[:2], weight_decays=[0.0], epochs=1, hidden=2)            # one decay
    with pytest.warns(RuntimeWarning, match=r"^the LARS path stopped after max_iter=1 steps at alpha=\S+ > 0\.1; "
                                            r"raise max_iter$"):
        fit_readout("lasso", X12, Y12, alphas=[0.1], max_iter=1)
    fit_readout("mlp", X12, Y12, weight_decays=0.0, epochs=1, hidden=1, lr=1e-9)


# --------------------------------------------------------------------------- ridge

def _loo_by_refitting(X, Y, alpha):
    """Leave-one-out squared error of ridge with an unpenalised intercept, by refitting N times."""
    n = len(X)
    err = np.zeros(Y.shape[1])
    for i in range(n):
        keep = np.arange(n) != i
        xm, ym = X[keep].mean(0), Y[keep].mean(0)
        Xc, Yc = X[keep] - xm, Y[keep] - ym
        W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ Yc)
        err += ((X[i] - xm) @ W + ym - Y[i]) ** 2
    return err / n


def test_ridge_loo_error_is_refitting_without_each_image():
    X, Y = _data(n=9, d=4, v=2, seed=3)
    alphas = [0.01, 1.0, 30.0]
    w, b, alpha, loo = ridge_loo(X, Y, alphas)
    for a_i, a in enumerate(alphas):
        np.testing.assert_allclose(loo[a_i], _loo_by_refitting(X, Y, a), rtol=1e-8)
    np.testing.assert_array_equal(alpha, np.asarray(alphas)[np.argmin(loo, axis=0)])
    ref = fit_readout("ridge", X, Y, alphas=[alpha[0]])
    np.testing.assert_allclose(w[0], ref.weight.numpy()[0].astype(np.float64), rtol=1e-5)
    # the intercept is exact: the fitted responses have the responses' mean
    np.testing.assert_allclose((X @ w.T + b).mean(0), Y.mean(0), atol=1e-10)
    # a shared alpha minimises the voxel-averaged LOO error
    _, _, shared, _ = ridge_loo(X, Y, alphas, per_voxel=False)
    assert np.all(shared == alphas[int(np.argmin(loo.mean(1)))])


def test_ridge_ties_go_to_the_first_alpha():
    """A constant voxel has zero LOO error at every alpha: the first alpha of the grid is kept."""
    X, Y = _data(n=8, d=3, v=2, seed=4)
    Y[:, 1] = 2.0
    for alphas in ([0.1, 1.0, 10.0], [10.0, 1.0, 0.1]):
        _, b, alpha, loo = ridge_loo(X, Y, alphas)
        np.testing.assert_allclose(loo[:, 1], 0.0, atol=1e-20)
        assert alpha[1] == alphas[0]
        assert b[1] == pytest.approx(2.0)
        _, _, shared, _ = ridge_loo(X, np.repeat(Y[:, 1:], 2, axis=1), alphas, per_voxel=False)
        assert np.all(shared == alphas[0])


def test_ridge_hparams_and_the_edge_warning():
    X, Y = _data(n=20, d=4, v=2, seed=5)
    with pytest.warns(UserWarning, match="edge of the grid"):
        r = fit_readout("ridge", X, Y, alphas=[1e-3, 1e-2])
    assert r.kind == "ridge" and r.hparams["kind"] == "ridge"
    assert r.hparams["n_train"] == 20 and r.hparams["n_features"] == 4
    assert r.hparams["alphas"] == [1e-3, 1e-2] and r.hparams["per_voxel"] is True
    assert r.hparams["loo_mse"].shape == (2, 2) and r.hparams["alpha"].shape == (2,)
    with warnings.catch_warnings(record=True) as caught:          # every voxel at an edge of the grid
        warnings.simplefilter("always")
        fit_readout("ridge", X, Y, alphas=[1e-3, 1e-2])
    assert [str(w.message) for w in caught] == [
        "100% of voxels chose an alpha at the edge of the grid [0.001, 0.01]; consider widening it"]
    with warnings.catch_warnings():                               # one alpha: no grid, no edge
        warnings.simplefilter("error")
        fit_readout("ridge", X, Y, alphas=[1e-3])


def test_ols_is_least_squares_with_an_intercept():
    X, Y = _data(n=10, d=3, v=2, seed=6)
    r = fit_readout("ols", X, Y)
    A = np.column_stack([X, np.ones(10)])
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    np.testing.assert_allclose(r.weight.numpy(), coef[:3].T, rtol=1e-5)
    np.testing.assert_allclose(r.bias.numpy(), coef[3], rtol=1e-5, atol=1e-6)
    assert r.hparams == {"kind": "ols", "n_train": 10, "n_features": 3}


# --------------------------------------------------------------------------- lasso

def test_lasso_alpha_max_is_where_every_weight_vanishes():
    X, Y = _data(n=15, d=6, v=2, seed=7)
    amax = lasso_alpha_max(X, Y)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(amax, np.abs(Xc.T @ Yc).max(0) / 15)
    for v in range(2):
        at, _ = lasso_lars(X, Y[:, v], amax[v])
        below, _ = lasso_lars(X, Y[:, v], amax[v] * 0.99)
        assert np.all(at == 0) and np.count_nonzero(below) == 1
    w, b = lasso_lars(X, Y, amax * 2)
    assert np.all(w == 0)
    np.testing.assert_allclose(b, Y.mean(0))
    w, _ = lasso_lars(X, Y, amax * np.array([2.0, 0.5]))            # one penalty per voxel
    assert np.all(w[0] == 0) and np.any(w[1] != 0)


def test_lasso_cv_ties_go_to_the_larger_penalty_and_relative_alphas_scale():
    X, Y = _data(n=12, d=4, v=2, seed=8)
    amax = lasso_alpha_max(X, Y)
    big = [10 * amax.max(), 20 * amax.max()]                       # both zero every weight: a tie
    _, _, alpha, mse = lasso_cv(X, Y, big, cv=3)
    assert np.all(alpha == max(big))
    np.testing.assert_allclose(mse[0], mse[1])
    _, _, alpha, _ = lasso_cv(X, Y, big[::-1], cv=3)
    assert np.all(alpha == max(big))
    folds = [(np.arange(6, 12), np.arange(6)), (np.arange(6), np.arange(6, 12))]
    pred_rel, nz_rel = lasso_cv_predictions(X, Y, [1.001, 0.5], folds, relative=True)
    assert pred_rel.shape == (2, 12, 2) and nz_rel.shape == (2, 2)
    assert np.all(nz_rel[0] == 0) and np.all(nz_rel[1] > 0)        # at alpha_max: nothing survives
    for tr, va in folds:                                            # at alpha_max: the training mean
        np.testing.assert_allclose(pred_rel[0][va], np.broadcast_to(Y[tr].mean(0), (len(va), 2)))
    pred_abs, _ = lasso_cv_predictions(X, Y, [1e-6], folds)
    for tr, va in folds:
        w, b = lasso_lars(X[tr], Y[tr], 1e-6)
        np.testing.assert_allclose(pred_abs[0][va], X[va] @ w.T + b, rtol=1e-6, atol=1e-8)


def test_lasso_hparams():
    X, Y = _data(n=12, d=4, v=2, seed=9)
    r = fit_readout("lasso", X, Y, alphas=[0.05, 0.5], cv=3)
    w = r.weight.numpy()
    assert r.hparams["solver"] == "lars" and r.hparams["cv"] == "3-fold on training images"
    assert r.hparams["cv_mse"].shape == (2, 2) and r.hparams["alphas"] == [0.05, 0.5]
    assert r.hparams["nonzero_fraction"] == pytest.approx(float((w != 0).mean()))
    np.testing.assert_array_equal(r.hparams["nonzero_per_unit"], (w != 0).sum(1))
    one = fit_readout("lasso", X, Y, alphas=0.05)
    np.testing.assert_array_equal(one.hparams["alpha"], [0.05, 0.05])
    ref_w, ref_b = lasso_lars(X, Y, 0.05)
    np.testing.assert_allclose(one.weight.numpy(), ref_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(one.bias.numpy(), ref_b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- network readouts

@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_network_readouts_standardise_inside_and_record_their_settings(kind):
    X = SPATIAL * 3.0 + 5.0 if kind == "cnn" else X12 * 3.0 + 5.0
    Y = Y12 * 10.0 - 4.0
    r = fit_readout(kind, X, Y, seed=2, weight_decays=[0.0, 0.5], epochs=3, hidden=3, lr=1e-2)
    dims = (0, 2, 3) if kind == "cnn" else (0,)
    Xt = torch.as_tensor(X, dtype=torch.float32)
    torch.testing.assert_close(r.in_mean, Xt.mean(dims, keepdim=True)[0])
    torch.testing.assert_close(r.in_std, Xt.std(dims, keepdim=True)[0])
    Yt = torch.as_tensor(Y, dtype=torch.float32)
    torch.testing.assert_close(r.out_mean, Yt.mean(0))
    torch.testing.assert_close(r.out_std, Yt.std(0))
    with torch.no_grad():
        inner = r.net(((Xt if kind == "cnn" else Xt.flatten(1)) - r.in_mean) / r.in_std)
        torch.testing.assert_close(r(Xt), inner * r.out_std + r.out_mean)
    hp = r.hparams
    assert hp["hidden"] == 3 and hp["epochs"] == 3 and hp["lr"] == 1e-2 and hp["seed"] == 2
    assert hp["weight_decay"] in (0.0, 0.5) and hp["weight_decays"] == [0.0, 0.5]
    assert set(hp["validation_r"]) == {0.0, 0.5}
    assert hp["weight_decay"] == max(hp["validation_r"], key=hp["validation_r"].get)
    assert hp["kind"] == kind and hp["n_train"] == 12 and np.isfinite(hp["final_train_mse"])
    assert all(not p.requires_grad for p in r.parameters())
    assert not r.net.training
    again = fit_readout(kind, X, Y, seed=2, weight_decays=[0.0, 0.5], epochs=3, hidden=3, lr=1e-2)
    torch.testing.assert_close(again(Xt), r(Xt))
    other = fit_readout(kind, X, Y, seed=3, weight_decays=[0.0, 0.5], epochs=3, hidden=3, lr=1e-2)
    assert not torch.allclose(other(Xt), r(Xt))
    if kind == "mlp":
        assert r.net[0].out_features == 3 and r.net[0].in_features == 5
    else:
        assert r.net[0].out_channels == 3 and r.net[0].kernel_size == (3, 3) and r.net[0].padding == (1, 1)


def test_network_readouts_train_with_adam_on_the_standardised_data():
    """More epochs lower the training error; one decay needs no validation split."""
    X, Y = _data(n=30, d=4, v=2, seed=10)
    short = fit_readout("mlp", X, Y, weight_decays=[0.0], epochs=1, hidden=8, lr=1e-2)
    long = fit_readout("mlp", X, Y, weight_decays=[0.0], epochs=10, hidden=8, lr=3e-2)
    assert long.hparams["final_train_mse"] < short.hparams["final_train_mse"]
    assert short.hparams["validation_r"] == {}
    assert short.hparams["final_train_mse"] < 2.0                  # standardised targets: about 1 at start


# --------------------------------------------------------------------------- precision and shapes

def test_solvers_compute_in_float64_whatever_the_input_dtype():
    """float32 inputs give exactly the results of the same values given as float64 (the solvers
    convert first; nothing is computed in single precision)."""
    X, Y = _data(n=10, d=4, v=2, seed=11)
    X32, Y32 = X.astype(np.float32) + np.float32(3.0), Y.astype(np.float32) - np.float32(2.0)
    X64, Y64 = X32.astype(np.float64), Y32.astype(np.float64)
    for a, b in zip(ridge_loo(X32, Y32, [0.1, 1.0, 10.0]), ridge_loo(X64, Y64, [0.1, 1.0, 10.0])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lasso_alpha_max(X32, Y32), lasso_alpha_max(X64, Y64))
    for a, b in zip(lasso_lars(X32, Y32, 0.05), lasso_lars(X64, Y64, 0.05)):
        np.testing.assert_array_equal(a, b)
    folds = [(np.arange(5, 10), np.arange(5)), (np.arange(5), np.arange(5, 10))]
    for a, b in zip(lasso_cv_predictions(X32, Y32, [0.01, 0.1], folds),
                    lasso_cv_predictions(X64, Y64, [0.01, 0.1], folds)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(lasso_cv(X32, Y32, [0.01, 0.1], cv=2), lasso_cv(X64, Y64, [0.01, 0.1], cv=2)):
        np.testing.assert_array_equal(a, b)
    for kind in ("ols", "ridge", "lasso"):
        opts = {} if kind == "ols" else {"alphas": [0.05]}
        r32, r64 = fit_readout(kind, X32, Y32, **opts), fit_readout(kind, X64, Y64, **opts)
        torch.testing.assert_close(r32.weight, r64.weight, rtol=0, atol=0)
        torch.testing.assert_close(r32.bias, r64.bias, rtol=0, atol=0)


def test_spatial_features_are_flattened_by_the_linear_solvers():
    Y = Y12[:, :2]
    flat = SPATIAL.reshape(12, -1)
    for a, b in zip(ridge_loo(SPATIAL, Y, [0.1, 1.0]), ridge_loo(flat, Y, [0.1, 1.0])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(lasso_alpha_max(SPATIAL, Y), lasso_alpha_max(flat, Y))
    for a, b in zip(lasso_lars(SPATIAL, Y, 0.05), lasso_lars(flat, Y, 0.05)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(lasso_cv(SPATIAL, Y, [0.01, 0.1], cv=3), lasso_cv(flat, Y, [0.01, 0.1], cv=3)):
        np.testing.assert_array_equal(a, b)
    r = fit_readout("ols", SPATIAL, Y)
    assert r.weight.shape == (2, 8) and r.hparams["n_features"] == 8
    torch.testing.assert_close(r(torch.as_tensor(SPATIAL, dtype=torch.float32)),
                               r(torch.as_tensor(flat, dtype=torch.float32)))


def test_linear_readout_repr_names_kind_and_shape():
    r = fit_readout("ols", X12, Y12)
    assert "kind='ols', V=3, D=5" in repr(r)
    assert "kind='ridge', V=2, D=8" in repr(fit_readout("ridge", SPATIAL, Y12[:, :2], alphas=[1.0]))


def _validation_predictions(X, Y, seed, weight_decay, opts):
    """An MLP readout refitted by hand on the documented training split (all but the first
    max(2, N // 5) images of default_rng(seed).permutation(N)); its predictions for the held-out
    fifth (float64) and their indices."""
    perm = np.random.default_rng(seed).permutation(len(X))
    n_val = max(2, len(X) // 5)
    val, tr = perm[:n_val], perm[n_val:]
    m = fit_readout("mlp", X[tr], Y[tr], seed=seed, weight_decays=[weight_decay], **opts)
    with torch.no_grad():
        pred = m(torch.as_tensor(X[val], dtype=torch.float32)).numpy().astype(np.float64)
    return pred, val


def test_weight_decay_is_chosen_by_mean_validation_r_on_a_seeded_fifth():
    """The validation split: max(2, N // 5) images of default_rng(seed).permutation(N); each decay's
    score is the mean over voxels of the Pearson r of a net trained on the rest."""
    X, Y = _data(n=15, d=4, v=2, seed=12)
    opts = dict(epochs=4, hidden=3, lr=1e-2)
    r = fit_readout("mlp", X, Y, seed=5, weight_decays=[0.0, 3.0], **opts)
    for wd, score in r.hparams["validation_r"].items():
        pred, val = _validation_predictions(X, Y, 5, wd, opts)
        r_vox = [np.corrcoef(pred[:, v], Y[val, v])[0, 1] for v in range(2)]
        assert score == pytest.approx(np.mean(r_vox), rel=1e-5)
    small = fit_readout("mlp", X[:9], Y[:9], seed=5, weight_decays=[0.0, 3.0], **opts)   # 9 // 5 = 1 -> 2
    perm = np.random.default_rng(5).permutation(9)
    m = fit_readout("mlp", X[:9][perm[2:]], Y[:9][perm[2:]], seed=5, weight_decays=[0.0], **opts)
    with torch.no_grad():
        pred = m(torch.as_tensor(X[:9][perm[:2]], dtype=torch.float32)).numpy().astype(np.float64)
    # two validation images: each voxel's r is +-1
    expected = np.mean([np.sign((pred[1, v] - pred[0, v]) * (Y[perm[1], v] - Y[perm[0], v])) for v in range(2)])
    assert small.hparams["validation_r"][0.0] == pytest.approx(expected, abs=1e-6)


# --------------------------------------------------------------------------- defaults and the edge warning

def test_edge_warning_needs_more_than_half_of_the_voxels_at_an_edge():
    X, Y = _data(n=20, d=4, v=1, seed=13)
    _, _, _, loo = ridge_loo(X, Y, np.logspace(-3, 4, 50))
    best = np.logspace(-3, 4, 50)[int(np.argmin(loo[:, 0]))]
    grid = [best / 1e3, best, best * 1e3]                       # the middle alpha wins for this voxel
    noise = np.random.default_rng(5).normal(size=(20, 2))       # unpredictable voxels: the error falls
    const = np.full((20, 2), 3.0)                                # constant voxels: a tie, the first alpha
    half = np.hstack([Y, noise[:, :1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = fit_readout("ridge", X, half, alphas=grid)           # 1 of 2 voxels at an edge: 50 %, no warning
    np.testing.assert_array_equal(r.hparams["alpha"], [best, best * 1e3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_readout("ridge", X, np.hstack([Y, noise]), alphas=grid)
    assert [str(w.message) for w in caught] == [
        f"67% of voxels chose an alpha at the edge of the grid [{best / 1e3:g}, {best * 1e3:g}]; consider widening it"]
    with warnings.catch_warnings():                              # an end chosen on a plateau (a tie) is no
        warnings.simplefilter("error")                           # sign that the grid is too narrow
        r = fit_readout("ridge", X, np.hstack([Y, const]), alphas=grid)
    np.testing.assert_array_equal(r.hparams["alpha"], [best, best / 1e3, best / 1e3])


def test_fit_readout_defaults_are_the_documented_ones():
    X, Y = _data(n=15, d=4, v=2, seed=14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)             # the default grid may put voxels at its edge
        ridge = fit_readout("ridge", X, Y)
    assert ridge.hparams["alphas"] == pytest.approx(np.logspace(-10, 10, 21).tolist(), rel=1e-12)
    assert ridge.hparams["per_voxel"] is True and ridge.hparams["cv"] == "leave-one-out on training images"
    lasso = fit_readout("lasso", X, Y)
    assert lasso.hparams["alphas"] == pytest.approx(np.logspace(-4, 1, 6).tolist(), rel=1e-12)
    assert lasso.hparams["cv"] == "5-fold on training images"
    ref = lasso_cv(X, Y, np.logspace(-4, 1, 6), cv=5, seed=0)
    np.testing.assert_array_equal(lasso.hparams["alpha"], ref[2])
    np.testing.assert_array_equal(lasso.hparams["cv_mse"], ref[3])
    assert fit_readout("lasso", X, Y, alphas=[0.01, 0.1], cv=3, seed=1).hparams["cv_mse"].tolist() == lasso_cv(
        X, Y, [0.01, 0.1], cv=3, seed=1)[3].tolist()
    # the network's defaults, seen by the trainer (trained for one epoch here: 300 take seconds)
    from probelib.readouts import fit as fit_module
    seen = []

    def spy(kind, X, Y, weight_decay, hidden, epochs, lr, seed, device):
        seen.append((weight_decay, hidden, epochs, lr, seed, device))
        return real(kind, X, Y, weight_decay, 2, 1, lr, seed, device)

    real = fit_module._train_net
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_module, "_train_net", spy)
        decays = fit_readout("mlp", X, Y)
    assert [s[0] for s in seen] == [1e-4, 1e-2, 1.0, decays.hparams["weight_decay"]]
    assert {s[1:] for s in seen} == {(128, 300, 1e-3, 0, "cpu")}
    assert decays.hparams["weight_decays"] == [1e-4, 1e-2, 1.0]
    assert set(decays.hparams["validation_r"]) == {1e-4, 1e-2, 1.0}
    mlp = fit_readout("mlp", X, Y, weight_decays=[0.1], epochs=1)
    assert mlp.hparams["hidden"] == 128 and mlp.net[0].out_features == 128 and mlp.hparams["lr"] == 1e-3


# --------------------------------------------------------------------------- argument checks

@pytest.mark.parametrize("alphas", [{1.0: "a"}, {1.0}, b"1", [True, False], np.array([True]), [[1.0, 2.0]],
                                    None, [1.0, np.inf], [1.0, -np.inf], np.array(["1"])])
def test_grids_must_be_real_numbers(alphas):
    with pytest.raises(ValueError, match=r"^alphas must be"):
        fit_readout("ridge", X12, Y12, alphas=alphas)


def test_grids_accept_numbers_arrays_and_tensors():
    for alphas in (2, 2.0, np.float32(2.0), np.int64(2), [2], (2.0,), np.array([2.0]), torch.tensor([2.0]),
                   range(2, 3), torch.tensor(2.0)):
        hp = fit_readout("ridge", X12, Y12, alphas=alphas).hparams
        assert hp["alphas"] == [2.0] and all(type(a) is float for a in hp["alphas"]), alphas
    hp = fit_readout("mlp", X12, Y12, weight_decays=np.array([0, 1]), epochs=1, hidden=1).hparams
    assert hp["weight_decays"] == [0.0, 1.0] and all(type(w) is float for w in hp["weight_decays"])


@pytest.mark.parametrize("options,message", [
    ({"hidden": np.True_}, r"^hidden must be an integer >= 1; got "),
    ({"hidden": 2.0}, r"^hidden must be an integer >= 1; got 2\.0$"),
    ({"hidden": "2"}, r"^hidden must be an integer >= 1; got '2'$"),
    ({"epochs": -1}, r"^epochs must be an integer >= 1; got -1$"),
    ({"lr": np.True_}, r"^lr must be a finite number > 0; got "),
    ({"lr": np.inf}, r"^lr must be a finite number > 0; got inf$"),
    ({"lr": np.nan}, r"^lr must be a finite number > 0; got nan$"),
    ({"lr": -1e-3}, r"^lr must be a finite number > 0; got -0\.001$"),
    ({"lr": "1e-3"}, r"^lr must be a finite number > 0; got '1e-3'$"),
])
def test_network_options_are_checked(options, message):
    with pytest.raises(ValueError, match=message):
        fit_readout("mlp", X12, Y12, weight_decays=[0.0], **{"epochs": 1, **options})


def test_numpy_scalars_of_the_right_kind_are_accepted():
    r = fit_readout("mlp", X12, Y12, weight_decays=[0.0], epochs=np.int64(1), hidden=np.int32(2), lr=np.float32(0.01))
    assert r.hparams["epochs"] == 1 and type(r.hparams["epochs"]) is int and type(r.hparams["hidden"]) is int
    assert type(r.hparams["lr"]) is float and r.hparams["lr"] == pytest.approx(0.01)
    assert fit_readout("ridge", X12, Y12, alphas=[1.0], per_voxel=np.False_).hparams["per_voxel"] is False
    assert fit_readout("lasso", X12, Y12, alphas=[0.01, 0.1], cv=np.int64(3)).hparams["cv"] == "3-fold on training images"


def test_one_feature_one_voxel_and_boolean_features_fit():
    r = fit_readout("ols", X12[:, :1], Y12[:, :1])
    assert r.weight.shape == (1, 1)
    A = np.column_stack([X12[:, 0], np.ones(12)])
    coef = np.linalg.lstsq(A, Y12[:, 0], rcond=None)[0]
    assert float(r.weight[0, 0]) == pytest.approx(coef[0], rel=1e-6)
    B = X12 > 0                                               # booleans are numbers (0 / 1)
    rb = fit_readout("ols", B, Y12)
    torch.testing.assert_close(rb.weight, fit_readout("ols", B.astype(float), Y12).weight, rtol=0, atol=0)


# --------------------------------------------------------------------------- network training

def test_network_readouts_clamp_the_scale_of_constant_columns():
    X = X12.copy()
    X[:, 1] = 4.0                                             # a constant feature
    Y = Y12.copy()
    Y[:, 2] = -1.5                                            # a constant voxel
    r = fit_readout("mlp", X, Y, weight_decays=[0.0], epochs=2, hidden=2)
    assert float(r.in_std[1]) == pytest.approx(1e-6) and float(r.out_std[2]) == pytest.approx(1e-6)
    assert float(r.in_std[0]) == pytest.approx(X[:, 0].std(ddof=1), rel=1e-5)
    with torch.no_grad():
        out = r(torch.as_tensor(X, dtype=torch.float32))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:, 2], torch.full((12,), -1.5), rtol=0, atol=1e-4)


def test_first_loss_is_the_mse_of_the_seeded_initial_net_on_standardised_data():
    """epochs=1: the recorded loss is that of the network as initialised with torch.manual_seed(seed),
    before the single Adam step, on z-scored inputs and outputs (sample s.d.)."""
    X, Y = X12 * 2.0 + 1.0, Y12 - 3.0
    r = fit_readout("mlp", X, Y, seed=7, weight_decays=[0.0], epochs=1, hidden=4)
    torch.manual_seed(7)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    Xt, Yt = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(Y, dtype=torch.float32)
    Xs = (Xt - Xt.mean(0)) / Xt.std(0)
    Ys = (Yt - Yt.mean(0)) / Yt.std(0)
    with torch.no_grad():
        expected = float(((net(Xs) - Ys) ** 2).mean())
    assert r.hparams["final_train_mse"] == pytest.approx(expected, rel=1e-5)
    # and the seed of the fit leaves the global random state alone
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    fit_readout("mlp", X, Y, seed=7, weight_decays=[0.0], epochs=1, hidden=4)
    torch.testing.assert_close(torch.rand(3), before)


# --------------------------------------------------------------------------- the LARS path

def test_lasso_below_the_end_of_the_path_is_the_end_point():
    """D > N: the path ends (zero residual) at an alpha above a tiny penalty; the fit there is the
    path's end point, which interpolates the training responses."""
    rng = np.random.default_rng(15)
    X, y = rng.normal(size=(6, 10)), rng.normal(size=6)
    w, b = lasso_lars(X, y, 1e-12)
    np.testing.assert_allclose(X @ w[0] + b[0], y, atol=1e-8)
    assert 0 < np.count_nonzero(w) <= 5
    # penalties in any order: one below the end of a path cut short (max_iter) gets the end point
    # and does not cut the others short
    X, Y = _data(n=12, d=5, v=1, seed=24)
    folds = [(np.arange(12), np.arange(12))]
    near_max = 0.99 * lasso_alpha_max(X, Y)[0]
    with pytest.warns(RuntimeWarning, match=r"^the LARS path stopped after max_iter=1 steps"):
        both, nonzero = lasso_cv_predictions(X, Y, [1e-6, near_max], folds, max_iter=1)
    alone, _ = lasso_cv_predictions(X, Y, [near_max], folds, max_iter=1)
    np.testing.assert_array_equal(both[1], alone[0])
    assert np.ptp(both[1]) > 0 and nonzero[1, 0] == 1            # one feature has entered at near_max
    assert nonzero[0, 0] == 1 and not np.allclose(both[0], both[1])   # the end point of the one step


def test_lars_steps_default_and_the_stop_warning():
    from sklearn import linear_model
    from sklearn.linear_model import lars_path
    X, Y = _data(n=12, d=5, v=1, seed=16)
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["max_iter"])
        return lars_path(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(linear_model, "lars_path", spy)
        lasso_lars(X, Y, 0.01)
        lasso_lars(X[:, :3], Y, 0.01)
        lasso_lars(X[:4], Y[:4], 0.01)
        lasso_lars(X, Y, 0.01, max_iter=7)
    assert seen == [50, 30, 40, 7]                            # 10 * min(N, D) unless given
    Xc, yc = X - X.mean(0), Y[:, 0] - Y[:, 0].mean()
    _, _, _, n_iter = lars_path(Xc, yc, method="lasso", alpha_min=0.01, return_n_iter=True)
    with warnings.catch_warnings():                           # exactly enough steps to reach alpha: no warning
        warnings.simplefilter("error")
        w_exact, _ = lasso_lars(X, Y, 0.01, max_iter=n_iter)
        w_free, _ = lasso_lars(X, Y, 0.01)
    np.testing.assert_allclose(w_exact, w_free, rtol=1e-12)
    assert n_iter >= 4
    a_path = lars_path(Xc, yc, method="lasso", alpha_min=0.01, max_iter=n_iter - 1)[0]
    with pytest.warns(RuntimeWarning) as caught:
        lasso_lars(X, Y, 0.01, max_iter=n_iter - 1)
    assert [str(w.message) for w in caught] == [f"the LARS path stopped after max_iter={n_iter - 1} steps at "
                                                f"alpha={a_path[-1]:.3g} > 0.01; raise max_iter"]


def test_cv_nonzero_counts_are_averaged_over_folds():
    X, Y = _data(n=12, d=5, v=2, seed=17)
    folds = [(np.arange(4, 12), np.arange(4)), (np.r_[0:4, 8:12], np.arange(4, 8)), (np.arange(8), np.arange(8, 12))]
    alphas = [0.02, 0.2]
    pred, nonzero = lasso_cv_predictions(X, Y, alphas, folds)
    expected = np.zeros((2, 2))
    for tr, va in folds:
        for a_i, a in enumerate(alphas):
            w, b = lasso_lars(X[tr], Y[tr], a)
            expected[a_i] += (w != 0).sum(1) / 3
            np.testing.assert_allclose(pred[a_i][va], X[va] @ w.T + b, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nonzero, expected, rtol=1e-12)
    with pytest.warns(RuntimeWarning, match=r"^the LARS path stopped after max_iter=1 steps"):
        cut, cut_nonzero = lasso_cv_predictions(X, Y, alphas, folds, max_iter=1)
    assert not np.allclose(cut[0], pred[0]) and np.all(cut_nonzero <= 1)


# --------------------------------------------------------------------------- fixed penalties and the papers' choice

def test_lasso_readout_is_lasso_lars_at_the_absolute_or_relative_penalty():
    from probelib.readouts import lasso_readout
    X, Y = _data(n=14, d=6, v=3, seed=18)
    X32 = (X + 2.0).astype(np.float32)
    amax = lasso_alpha_max(X32.astype(np.float64), Y)
    rel = lasso_readout(X32, Y, 0.3)                                  # relative by default
    w, b = lasso_lars(X32.astype(np.float64), Y, 0.3 * amax)
    torch.testing.assert_close(rel.weight, torch.as_tensor(w, dtype=torch.float32), rtol=0, atol=0)
    torch.testing.assert_close(rel.bias, torch.as_tensor(b, dtype=torch.float32), rtol=0, atol=0)
    hp = rel.hparams
    assert rel.kind == "lasso" and hp["kind"] == "lasso" and hp["solver"] == "lars"
    assert hp["n_train"] == 14 and hp["n_features"] == 6 and hp["relative_alpha"] == 0.3
    np.testing.assert_allclose(hp["alpha"], 0.3 * amax, rtol=1e-15)
    assert hp["nonzero_fraction"] == float((w != 0).mean())
    np.testing.assert_array_equal(hp["nonzero_per_unit"], (w != 0).sum(1))
    per_unit = lasso_readout(X, Y, [0.05, 0.1, 0.2], relative=False)   # absolute, one penalty per unit
    w, b = lasso_lars(X, Y, [0.05, 0.1, 0.2])
    torch.testing.assert_close(per_unit.weight, torch.as_tensor(w, dtype=torch.float32), rtol=0, atol=0)
    assert per_unit.hparams["relative_alpha"] is None
    np.testing.assert_array_equal(per_unit.hparams["alpha"], [0.05, 0.1, 0.2])
    one = lasso_readout(SPATIAL, Y12[:, 0], 0.2)                       # (N,) responses, spatial features
    assert one.weight.shape == (1, 8) and one.hparams["n_features"] == 8
    with pytest.raises(ValueError, match=r"^lasso penalties must be > 0; got \[0\.1, 0\.0, 0\.1\]$"):
        lasso_readout(X, Y, [0.1, 0.0, 0.1])
    with pytest.raises(ValueError, match=r"^lasso penalties must be > 0; got -1$"):
        lasso_readout(X, Y, -1)
    with pytest.raises(ValueError, match=r"^features \(N, \.\.\.\) and responses \(N, U\) must share N; "
                                         r"got \(14, 6\), \(13, 3\)$"):
        lasso_readout(X, Y[:13], 0.1)


def _pooled_cv_r(X, Y, alphas, relative, cv, seed):
    from sklearn.model_selection import KFold
    folds = list(KFold(cv, shuffle=True, random_state=seed).split(X))
    pred, nonzero = lasso_cv_predictions(X, Y, alphas, folds, relative=relative)
    r = np.array([[np.corrcoef(pred[a][:, u], Y[:, u])[0, 1] if pred[a][:, u].std() > 0 else 0.0
                   for u in range(Y.shape[1])] for a in range(len(alphas))])
    return r, nonzero.mean(1)


def test_select_lasso_alpha_is_the_best_pooled_cv_correlation():
    from probelib.readouts import PAPER_LASSO_ALPHAS, RELATIVE_LASSO_ALPHAS, select_lasso_alpha
    X, Y = _data(n=20, d=6, v=2, seed=19)
    Y[:, 1] = 5.0                                                      # a constant unit: constant CV predictions
    alphas = [0.02, 0.2, 0.6, 1.5]
    sel = select_lasso_alpha(X, Y, alphas=alphas, cv=4, seed=2, cache=False)
    r, nonzero = _pooled_cv_r(X, Y, np.array(alphas), True, 4, 2)
    np.testing.assert_allclose(sel.scores_per_unit, r, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(sel.scores_per_unit[:, 1], 0.0)       # constant CV prediction: r = 0
    np.testing.assert_allclose(sel.scores, r.mean(1), rtol=1e-10)
    np.testing.assert_allclose(sel.nonzero, nonzero, rtol=1e-12)
    assert sel.alpha == alphas[int(np.argmax(r.mean(1)))] and type(sel.alpha) is float
    assert sel.relative is True and sel.at_edge == (sel.alpha in (0.02, 1.5))
    np.testing.assert_array_equal(sel.alphas, alphas)
    table = sel.table()
    assert list(table.columns) == ["alpha", "cv_r", "nonzero_weights", "chosen"]
    np.testing.assert_array_equal(table.chosen, np.asarray(alphas) == sel.alpha)
    np.testing.assert_array_equal(table.cv_r, sel.scores)
    np.testing.assert_array_equal(table.nonzero_weights, sel.nonzero)
    # absolute penalties and the default grids
    ab = select_lasso_alpha(X, Y, alphas=[0.01, 0.1], relative=False, cv=3, cache=False)
    r, _ = _pooled_cv_r(X, Y, np.array([0.01, 0.1]), False, 3, 0)
    np.testing.assert_allclose(ab.scores_per_unit, r, rtol=1e-10)
    assert ab.relative is False
    assert select_lasso_alpha(X, Y, cv=3, cache=False).alphas.tolist() == list(RELATIVE_LASSO_ALPHAS)
    paper = select_lasso_alpha(X, Y, relative=False, cv=3, cache=False)
    assert paper.alphas.tolist() == list(PAPER_LASSO_ALPHAS)
    default_cv = select_lasso_alpha(X, Y, alphas=[0.1, 0.3], cache=False)   # 5 folds, seed 0
    np.testing.assert_allclose(default_cv.scores_per_unit, _pooled_cv_r(X, Y, np.array([0.1, 0.3]), True, 5, 0)[0],
                               rtol=1e-10)


def test_select_lasso_alpha_edges_ties_and_errors():
    from probelib.readouts import select_lasso_alpha
    X, Y = _data(n=12, d=4, v=2, seed=20)
    one = select_lasso_alpha(X, Y, alphas=[0.1], cv=3, cache=False)
    assert one.alpha == 0.1 and one.at_edge is False                  # one candidate: no edge
    tie = select_lasso_alpha(X, Y, alphas=[2.0, 3.0, 0.1], cv=3, cache=False)   # above alpha_max: a tie
    assert tie.scores[0] == tie.scores[1]
    low = select_lasso_alpha(X, Y, alphas=[3.0, 2.0], cv=3, cache=False)
    assert low.alpha == 3.0 and low.at_edge is True                   # ties: the first candidate
    one_unit = select_lasso_alpha(X, Y[:, 0], alphas=[0.1, 0.3], cv=3, cache=False)
    assert one_unit.scores_per_unit.shape == (2, 1)
    for bad in ([], [0.1, 0.0], [-0.1], [[0.1, 0.2]]):
        with pytest.raises(ValueError, match=r"^alphas must be a non-empty list of positive penalties; got"):
            select_lasso_alpha(X, Y, alphas=bad, cache=False)
    with pytest.raises(ValueError, match=r"^features \(N, \.\.\.\) and responses \(N, U\) must share N; "
                                         r"got \(12, 4\), \(11, 2\)$"):
        select_lasso_alpha(X, Y[:11], cache=False)
    for cv in (1, 13):
        with pytest.raises(ValueError, match=rf"^cv must be in \[2, N=12\]; got {cv}$"):
            select_lasso_alpha(X, Y, cv=cv, cache=False)
    assert select_lasso_alpha(X, Y, alphas=[0.1, 0.3], cv=12, cache=False).scores.shape == (2,)   # cv = N
    assert select_lasso_alpha(X[:4], Y[:4], alphas=[0.1, 0.3], cv=2, cache=False).scores.shape == (2,)


def test_select_lasso_alpha_cache_is_keyed_by_every_argument():
    """A cached choice is returned only for the same features, responses, grid, scaling, folds and
    seed: each change gives the uncached answer, and a repeat comes back without a warning."""
    from probelib.readouts import select_lasso_alpha
    X, Y = _data(n=15, d=5, v=2, seed=21)
    base = dict(alphas=[0.05, 0.3], relative=True, cv=3, seed=0)
    calls = [base, {**base, "alphas": [0.05, 0.31]}, {**base, "relative": False}, {**base, "cv": 4},
             {**base, "seed": 1}]
    for args in calls:
        cached = select_lasso_alpha(X, Y, **args)
        np.testing.assert_array_equal(cached.scores_per_unit,
                                      select_lasso_alpha(X, Y, cache=False, **args).scores_per_unit)
    for Xi, Yi in ((X * 1.5, Y), (X, Y + np.eye(15, 2))):
        np.testing.assert_array_equal(select_lasso_alpha(Xi, Yi, **base).scores_per_unit,
                                      select_lasso_alpha(Xi, Yi, cache=False, **base).scores_per_unit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = select_lasso_alpha(X, Y, **base)                       # from the cache, vetted silently
    np.testing.assert_array_equal(again.scores_per_unit, select_lasso_alpha(X, Y, cache=False, **base).scores_per_unit)



@pytest.mark.parametrize("bad", ["list", "three", "short_scores"])
def test_select_lasso_alpha_repairs_a_malformed_cache_entry(bad):
    """A cache entry that is not (scores (A, U), non-zero counts (A,)) is recomputed, with a
    warning, and replaced: never returned, never a crash."""
    import joblib

    from probelib.cache import cache_dir
    from probelib.readouts import select_lasso_alpha
    X, Y = _data(n=15, d=5, v=2, seed=22)
    args = dict(alphas=[0.05, 0.3, 0.6], relative=True, cv=3, seed=0)
    good = select_lasso_alpha(X, Y, **args)
    entries = list(cache_dir().glob("**/_cv_lasso_scores/*/output.pkl"))
    assert len(entries) == 1
    scores, nonzero = joblib.load(entries[0])
    planted = {"list": [scores, nonzero], "three": (scores, nonzero, nonzero),
               "short_scores": (scores[:2], nonzero)}[bad]
    joblib.dump(planted, entries[0])
    with pytest.warns(UserWarning, match="not what it returns"):
        again = select_lasso_alpha(X, Y, **args)
    np.testing.assert_array_equal(again.scores_per_unit, good.scores_per_unit)
    assert again.alpha == good.alpha
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(select_lasso_alpha(X, Y, **args).scores_per_unit, good.scores_per_unit)


# --------------------------------------------------------------------------- scikit-learn estimators

def test_readout_estimator_defaults_options_and_outputs():
    from probelib.readouts import Readout
    est = Readout()
    assert est.get_params() == {"kind": "ridge", "alphas": None, "per_voxel": True, "cv": 5, "max_iter": None,
                                "weight_decays": None, "hidden": 128, "epochs": 300, "lr": 1e-3,
                                "device": "cpu", "seed": 0}
    assert Readout.__module__ == "probelib.readouts" and Readout.__qualname__ == "Readout"
    tags = est.__sklearn_tags__()
    assert tags.target_tags.multi_output and tags.target_tags.single_output and tags.input_tags.two_d_array
    assert Readout("cnn").__sklearn_tags__().input_tags.two_d_array is False
    # every option reaches fit_readout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)             # a grid of two: every choice is at an edge
        ridge = Readout("ridge", alphas=[0.5, 5.0], per_voxel=False).fit(X12, Y12)
        ref = fit_readout("ridge", X12, Y12, alphas=[0.5, 5.0], per_voxel=False)
    assert torch.equal(ridge.module_.weight, ref.weight) and ridge.hparams_["per_voxel"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        default_grid = Readout("ridge").fit(X12, Y12)
    assert default_grid.hparams_["alphas"] == pytest.approx(list(np.logspace(-10, 10, 21)), rel=1e-12)
    lasso = Readout("lasso", alphas=[0.01, 0.1], cv=3, max_iter=50, seed=2).fit(X12, Y12)
    ref = fit_readout("lasso", X12, Y12, alphas=[0.01, 0.1], cv=3, max_iter=50, seed=2)
    assert torch.equal(lasso.module_.weight, ref.weight) and lasso.hparams_["cv"] == "3-fold on training images"
    np.testing.assert_array_equal(lasso.hparams_["cv_mse"], ref.hparams["cv_mse"])
    mlp = Readout("mlp", weight_decays=[0.5], hidden=3, epochs=2, lr=0.02, seed=4).fit(X12, Y12)
    hp = mlp.hparams_
    assert (hp["weight_decay"], hp["hidden"], hp["epochs"], hp["lr"], hp["seed"]) == (0.5, 3, 2, 0.02, 4)
    assert not hasattr(mlp, "coef_")
    pred = mlp.predict(X12)
    with torch.no_grad():
        np.testing.assert_allclose(pred, mlp.module_(torch.as_tensor(X12, dtype=torch.float32)).numpy(), rtol=1e-6)
    assert pred.dtype == np.float64 and pred.shape == (12, 3)
    assert mlp.n_features_in_ == 5
    assert Readout("mlp", hidden=3, epochs=1, weight_decays=[0.0]).fit(X12, Y12[:, 0]).predict(X12).shape == (12,)
    with pytest.raises(ValueError, match=r"^unknown readout kind 'svm'"):
        Readout("svm").fit(X12, Y12)


def test_readout_estimator_linear_coefficients_and_predictions():
    from sklearn.exceptions import NotFittedError
    from probelib.readouts import Readout
    est = Readout("ols").fit(X12, Y12)
    w = est.module_.weight.double().numpy()
    np.testing.assert_array_equal(est.coef_, w)
    np.testing.assert_array_equal(est.intercept_, est.module_.bias.double().numpy())
    np.testing.assert_allclose(est.predict(X12), X12 @ w.T + est.intercept_, rtol=1e-12)
    one = Readout("ols").fit(X12, Y12[:, 1])
    assert one.coef_.shape == (5,) and type(one.intercept_) is float
    np.testing.assert_allclose(one.predict(X12), X12 @ one.coef_ + one.intercept_, rtol=1e-12)
    column = Readout("ols").fit(X12, Y12[:, 1:2])                     # (N, 1) stays two-dimensional
    assert column.coef_.shape == (1, 5) and column.predict(X12).shape == (12, 1)
    from sklearn.metrics import r2_score
    assert est.score(X12, Y12) == pytest.approx(r2_score(Y12, est.predict(X12)), rel=1e-12)   # R²
    cnn = Readout("cnn", hidden=2, epochs=1, weight_decays=[0.0]).fit(SPATIAL, Y12)
    assert cnn.predict(SPATIAL).shape == (12, 3)
    with pytest.raises(ValueError, match=r"^kind='cnn' needs spatial features \(N, C, h, w\); got shape \(12, 5\)$"):
        Readout("cnn", epochs=1).fit(X12, Y12)
    with pytest.raises(ValueError):
        Readout("ols").fit(X12[:1], Y12[:1])                           # one sample
    with pytest.raises(NotFittedError):
        Readout("ols").predict(X12)
    with pytest.raises(ValueError):
        est.predict(X12[:, :4])                                        # another number of features


def test_as_readout_folds_scaling_and_reads_every_layout():
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.multioutput import MultiOutputRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from probelib.readouts import as_readout
    X = X12 * np.array([1.0, 2.0, 0.5, 3.0, 1.5]) + 4.0
    x = torch.as_tensor(X, dtype=torch.float32)

    def same(readout, est, **tol):
        with torch.no_grad():
            np.testing.assert_allclose(readout(x).numpy(), est.predict(X).reshape(12, -1), **(tol or {"rtol": 1e-5, "atol": 1e-5}))

    ridge = Ridge(alpha=1.0).fit(X, Y12)
    r = as_readout(ridge)
    np.testing.assert_array_equal(r.weight.numpy(), ridge.coef_.astype(np.float32))
    assert r.kind == "wrapped:sklearn.Ridge" and r.hparams == {"kind": "wrapped sklearn.Ridge", "n_features": 5,
                                                               "pipeline": ["sklearn.Ridge"]}
    for scaler in (StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False)):
        pipe = Pipeline([("scale", scaler), ("skip", "passthrough"), ("none", None), ("fit", Ridge(alpha=2.0))]).fit(X, Y12)
        wrapped = as_readout(pipe)
        same(wrapped, pipe)
        assert wrapped.hparams["pipeline"] == ["StandardScaler", "sklearn.Ridge"]
    two = Pipeline([("a", StandardScaler()), ("b", StandardScaler()), ("fit", LinearRegression())]).fit(X, Y12)
    same(as_readout(two), two)
    search = GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=3).fit(X, Y12)
    same(as_readout(search), search)
    multi = MultiOutputRegressor(Ridge()).fit(X, Y12)
    wrapped = as_readout(multi)
    same(wrapped, multi)
    assert wrapped.kind == "wrapped:MultiOutputRegressor(sklearn.Ridge)"
    single = Ridge().fit(X, Y12[:, 0])                                 # coef_ (D,): one output
    assert as_readout(single).weight.shape == (1, 5)
    same(as_readout(single), single)


class _Fitted:
    """A stand-in for a fitted estimator of another library."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)


def test_as_readout_of_other_libraries_and_its_errors():
    from probelib.readouts import as_readout
    w = np.arange(10.0).reshape(2, 5)
    r = as_readout(_Fitted(coef_=w, intercept_=None))                  # no intercept: zeros
    np.testing.assert_array_equal(r.bias.numpy(), [0.0, 0.0])
    assert r.kind == f"wrapped:{_Fitted.__module__.split('.')[0]}._Fitted"
    r = as_readout(_Fitted(coef_=torch.tensor(w), intercept_=1.5))     # a scalar intercept is broadcast
    np.testing.assert_array_equal(r.bias.numpy(), [1.5, 1.5])
    np.testing.assert_array_equal(as_readout(_Fitted(coef_=w)).bias.numpy(), [0.0, 0.0])   # none at all
    primal = _Fitted(intercept_=np.zeros(2))
    primal.get_primal_coef = lambda: w
    np.testing.assert_array_equal(as_readout(primal).weight.numpy(), w)
    assert as_readout(_Fitted(coef_=w, n_features_in_=np.int64(5))).weight.shape == (2, 5)
    with pytest.raises(ValueError, match=r"has no coef_: not a fitted linear estimator"):
        as_readout(_Fitted())
    with pytest.raises(ValueError, match=r"\.coef_ must be 1-D or 2-D; got shape \(1, 2, 5\)$"):
        as_readout(_Fitted(coef_=w[None]))
    with pytest.raises(ValueError, match=r"\.coef_ has shape \(2, 5\), which does not match n_features_in_ = 4 "
                                         r"\(expected \(V, 4\)\)$"):
        as_readout(_Fitted(coef_=w, n_features_in_=4))
    with pytest.raises(ValueError, match=r"^the estimator's coef_ contains NaN or infinite values$"):
        as_readout(_Fitted(coef_=np.where(w > 3, np.nan, w)))
    with pytest.raises(ValueError, match=r"^the estimator's intercept_ contains NaN or infinite values$"):
        as_readout(_Fitted(coef_=w, intercept_=np.array([0.0, np.inf])))


def test_as_readout_refuses_scalers_that_do_not_fit():
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from probelib.readouts import Readout, as_readout
    unfitted = Pipeline([("scale", StandardScaler()), ("fit", Ridge())])
    unfitted.steps[1] = ("fit", Ridge().fit(X12, Y12))
    with pytest.raises(ValueError, match=r"^pipeline step 'scale' \(StandardScaler\) is not a fitted StandardScaler"):
        as_readout(unfitted)
    with pytest.raises(ValueError, match=r"^pipeline step 'mm' \(MinMaxScaler\) is not a fitted StandardScaler"):
        as_readout(Pipeline([("mm", MinMaxScaler()), ("fit", Ridge())]).fit(X12, Y12))
    wrong = Pipeline([("scale", StandardScaler().fit(X12[:, :4])), ("fit", Ridge().fit(X12, Y12))])
    with pytest.raises(ValueError, match=r"^the scaler was fitted on 4 features, the estimator on 5$"):
        as_readout(wrong)
    with pytest.raises(ValueError, match=r"^the Readout is not fitted: call fit\(X, y\) first$"):
        as_readout(Readout())
    with pytest.raises(ValueError, match=r"^a 'mlp' Readout is not linear: use est.module_ directly$"):
        as_readout(Readout("mlp", epochs=1, hidden=1, weight_decays=[0.0]).fit(X12, Y12))
    fitted = Readout("ridge", alphas=[1.0]).fit(X12, Y12)
    wrapped = as_readout(fitted)
    assert wrapped.kind == "wrapped:Readout(ridge)"
    assert torch.equal(wrapped.weight, fitted.module_.weight) and torch.equal(wrapped.bias, fitted.module_.bias)


def test_tensor_inputs_and_frozen_linear_weights():
    Xt = torch.tensor(X12, requires_grad=True)                        # a tensor that needs grad is read too
    r = fit_readout("ols", Xt, torch.tensor(Y12))
    ref = fit_readout("ols", X12, Y12)
    assert torch.equal(r.weight, ref.weight) and torch.equal(r.bias, ref.bias)
    assert r.weight.dtype == torch.float32 and not r.weight.requires_grad and not r.bias.requires_grad
    cnn = fit_readout("cnn", torch.tensor(SPATIAL), Y12, weight_decays=[0.0], epochs=1, hidden=2)
    assert cnn.hparams["n_features"] == 8 and cnn.feature_shape == (2, 2, 2)


def test_a_constant_validation_voxel_scores_zero():
    X, Y = _data(n=15, d=4, v=2, seed=12)
    Y[:, 1] = 2.0
    opts = dict(epochs=3, hidden=3, lr=1e-2)
    r = fit_readout("mlp", X, Y, seed=5, weight_decays=[0.0, 1.0], **opts)
    for wd, score in r.hparams["validation_r"].items():
        pred, val = _validation_predictions(X, Y, 5, wd, opts)
        assert score == pytest.approx(np.corrcoef(pred[:, 0], Y[val, 0])[0, 1] / 2, rel=1e-5)


@pytest.mark.parametrize("call,message", [
    (lambda: ridge_loo(X12, Y12, []), r"^alphas must not be empty: give at least one value > 0$"),
    (lambda: ridge_loo(X12, Y12, [1.0], per_voxel=None), r"^per_voxel must be True or False; got None$"),
    (lambda: lasso_cv(X12, Y12, [0.1, -1.0]), r"^alphas must be finite and > 0; got \[-1\.0\]$"),
    (lambda: lasso_cv(X12, Y12, [0.1], cv=1.5), r"^cv must be an integer >= 2; got 1\.5$"),
    (lambda: lasso_cv_predictions(X12, Y12, [0.0], [(np.arange(6), np.arange(6, 12))]),
     r"^alphas must be finite and > 0; got \[0\.0\]$"),
    (lambda: lasso_cv_predictions(X12, Y12, [0.1], [(np.arange(6), np.arange(6, 12))], max_iter=0),
     r"^max_iter must be an integer >= 1; got 0$"),
    (lambda: lasso_lars(X12, Y12, 0.1, max_iter=0.5), r"^max_iter must be an integer >= 1; got 0\.5$"),
    (lambda: lasso_alpha_max(X12, Y12[:5]), r"^features \(N, \.\.\.\) and responses \(N, V\) must share N"),
    (lambda: fit_readout("ridge", X12, Y12, alpha=3, beta=4), r"^unknown readout options: alpha, beta$"),
    (lambda: fit_readout("lasso", X12, Y12, alphas=[]), r"^alphas must not be empty: give at least one value > 0$"),
    (lambda: fit_readout("cnn", X12, Y12), r"^the cnn readout needs spatial features \(N, C, h, w\); got \(12, 5\) "
                                           r"\(load the encoder with spatial=True\)$"),
])
def test_public_solvers_name_the_argument_at_fault(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_lasso_cv_defaults_and_max_iter_reach_every_path():
    X, Y = _data(n=12, d=5, v=2, seed=22)
    default = lasso_cv(X, Y, [0.01, 0.1])
    for a, b in zip(default, lasso_cv(X, Y, [0.01, 0.1], cv=5, seed=0)):   # 5 folds, seed 0
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(default[3], lasso_cv(X, Y, [0.01, 0.1], cv=6, seed=0)[3])
    assert not np.array_equal(default[3], lasso_cv(X, Y, [0.01, 0.1], cv=5, seed=1)[3])
    # max_iter cuts the CV paths and the refit alike
    from sklearn.model_selection import KFold
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w, b, alpha, mse = lasso_cv(X, Y, [0.001, 0.01], cv=3, max_iter=1)
        folds = list(KFold(3, shuffle=True, random_state=0).split(X))
        pred, _ = lasso_cv_predictions(X, Y, [0.001, 0.01], folds, max_iter=1)
        ref_w, ref_b = lasso_lars(X, Y, alpha, max_iter=1)
    np.testing.assert_array_equal(mse, np.mean([((pred[:, va] - Y[va]) ** 2).mean(1) for _, va in folds], axis=0))
    np.testing.assert_array_equal(w, ref_w)
    np.testing.assert_array_equal(b, ref_b)


def test_each_voxel_path_runs_to_its_own_penalty():
    """Per-voxel penalties: each voxel's LARS path stops at its own alpha, so a step limit that
    suffices for each voxel's own penalty raises no warning."""
    from sklearn.linear_model import lars_path
    rng = np.random.default_rng(23)
    X = rng.normal(size=(15, 5))
    Y = np.column_stack([X @ rng.normal(size=5) + rng.normal(size=15), X[:, 0]])
    amax = lasso_alpha_max(X, Y)
    a = np.array([0.5 * amax[0], 1e-6])
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    steps = [lars_path(Xc, Yc[:, v], method="lasso", alpha_min=a[v], return_n_iter=True)[3] for v in range(2)]
    longer = lars_path(Xc, Yc[:, 0], method="lasso", alpha_min=1e-6, return_n_iter=True)[3]
    assert longer > max(steps)                                 # voxel 0's path to 1e-6 would need more
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w, _ = lasso_lars(X, Y, a, max_iter=max(steps))
    np.testing.assert_allclose(w, lasso_lars(X, Y, a)[0], rtol=1e-12)


def test_select_lasso_alpha_caches_by_default_and_only_then():
    from probelib.cache import observe
    from probelib.readouts import select_lasso_alpha
    X, Y = _data(n=15, d=5, v=3, seed=25)                  # 3 units, 2 candidates: shapes that differ
    events = []
    with observe(events.append):
        select_lasso_alpha(X, Y, alphas=[0.05, 0.3], cv=3, cache=False)
    assert events == []                                     # cache=False: the cache is not touched
    with observe(events.append):
        first = select_lasso_alpha(X, Y, alphas=[0.05, 0.3], cv=3)
        with warnings.catch_warnings():
            warnings.simplefilter("error")                  # the cached value passes its check silently
            again = select_lasso_alpha(X, Y, alphas=[0.05, 0.3], cv=3)
    assert [e.hit for e in events] == [False, True] and all("_cv_lasso_scores" in e.function for e in events)
    np.testing.assert_array_equal(first.scores_per_unit, again.scores_per_unit)
    assert again.scores_per_unit.shape == (2, 3)


def test_select_lasso_alpha_reads_candidates_as_floats():
    from probelib.readouts import select_lasso_alpha
    X, Y = _data(n=12, d=4, v=2, seed=26)
    sel = select_lasso_alpha(X, Y, alphas=(1, 2), relative=False, cv=3, cache=False)
    assert sel.alphas.dtype == np.float64 and sel.alphas.tolist() == [1.0, 2.0] and type(sel.alpha) is float


def test_lasso_readout_records_float_penalties():
    from probelib.readouts import lasso_readout
    r = lasso_readout(X12, Y12, 1, relative=False)                 # an integer penalty is a float penalty
    assert r.hparams["alpha"].dtype == np.float64 and r.hparams["alpha"].tolist() == [1.0, 1.0, 1.0]
