import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, LassoCV, LinearRegression, Ridge, RidgeCV
from sklearn.model_selection import KFold

from probelib.readouts import fit_readout, lasso_alpha_max, lasso_lars


@pytest.fixture
def data(rng):
    X = rng.normal(size=(80, 300))
    Y = X[:, :10] @ rng.normal(size=(10, 12)) + 2 * rng.normal(size=(80, 12))
    Xt = rng.normal(size=(30, 300))
    return X, Y, Xt


def _pred(readout, X):
    return readout(torch.as_tensor(X, dtype=torch.float32)).numpy()


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_ridge_matches_sklearn_fixed_alpha(data):
    X, Y, Xt = data
    for alpha in (0.1, 10.0, 1e4):
        r = fit_readout("ridge", X, Y, alphas=[alpha])
        assert _rel(_pred(r, Xt), Ridge(alpha=alpha).fit(X, Y).predict(Xt)) < 1e-5


def test_ridge_cv_matches_sklearn_ridgecv(data):
    X, Y, Xt = data
    alphas = np.logspace(-2, 5, 10)
    r = fit_readout("ridge", X, Y, alphas=alphas)
    sk = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    np.testing.assert_array_equal(r.hparams["alpha"], sk.alpha_)
    assert _rel(_pred(r, Xt), sk.predict(Xt)) < 1e-5
    shared = fit_readout("ridge", X, Y, alphas=alphas, per_voxel=False)
    assert shared.hparams["alpha"][0] == RidgeCV(alphas=alphas).fit(X, Y).alpha_
    assert r.hparams["loo_mse"].shape == (10, 12)


def test_ols_matches_sklearn(data):
    X, Y, Xt = data
    r = fit_readout("ols", X, Y)
    assert _rel(_pred(r, Xt), LinearRegression().fit(X, Y).predict(Xt)) < 1e-5


def test_lasso_matches_sklearn_and_is_sparse(data):
    X, Y, Xt = data
    r = fit_readout("lasso", X, Y[:, :2], alphas=[0.1])
    sk = Lasso(alpha=0.1, max_iter=100_000, tol=1e-10).fit(X, Y[:, :2])  # converged reference
    assert _rel(_pred(r, Xt), sk.predict(Xt)) < 1e-5
    assert r.hparams["nonzero_fraction"] < 0.5
    cv = fit_readout("lasso", X, Y[:, :2], alphas=[0.01, 0.1, 1.0])
    assert len(cv.hparams["alpha"]) == 2


def _lasso_problem(n=40, d=120, v=3, seed=1):
    """Correlated features (D > N), sparse true weights, a non-zero intercept."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8)) @ rng.normal(size=(8, d)) + 0.5 * rng.normal(size=(n, d))
    Y = X[:, :5] @ rng.normal(size=(5, v)) + rng.normal(size=(n, v)) + 2.0
    return X, Y


@pytest.mark.parametrize("rel_alpha", [0.02, 0.1, 0.5])
def test_lasso_lars_equals_sklearn_lasso_coefficients(rel_alpha):
    X, Y = _lasso_problem()
    alpha = rel_alpha * lasso_alpha_max(X, Y)  # (V,) one penalty per voxel
    w, b = lasso_lars(X, Y, alpha)
    for v in range(Y.shape[1]):
        sk = Lasso(alpha=alpha[v], max_iter=1_000_000, tol=1e-14).fit(X, Y[:, v])
        np.testing.assert_allclose(w[v], sk.coef_, rtol=0, atol=1e-6)
        assert abs(b[v] - sk.intercept_) < 1e-6
    r = fit_readout("lasso", X, Y, alphas=[float(alpha[0])])  # float32 weights of the same fit
    np.testing.assert_allclose(r.weight.numpy()[0], lasso_lars(X, Y[:, 0], alpha[0])[0][0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="> 0"):
        lasso_lars(X, Y, 0.0)


def test_lasso_cv_picks_the_alpha_of_sklearn_lassocv():
    X, Y = _lasso_problem(n=50, v=4, seed=2)
    alphas = np.median(lasso_alpha_max(X, Y)) * np.logspace(-2, -0.1, 7)
    r = fit_readout("lasso", X, Y, alphas=alphas, cv=5, seed=3)
    assert r.hparams["solver"] == "lars" and r.hparams["cv_mse"].shape == (7, 4)
    for v in range(Y.shape[1]):
        sk = LassoCV(alphas=alphas, cv=KFold(5, shuffle=True, random_state=3), max_iter=1_000_000,
                     tol=1e-12).fit(X, Y[:, v])
        assert r.hparams["alpha"][v] == sk.alpha_
        order = np.argsort(-alphas)  # LassoCV's mse_path_ runs from the largest alpha down
        np.testing.assert_allclose(r.hparams["cv_mse"][order, v], sk.mse_path_.mean(1), rtol=1e-6)
        np.testing.assert_allclose(r.weight.numpy()[v], sk.coef_, rtol=0, atol=1e-5)
    assert np.any(r.hparams["alpha"] > alphas.min())  # not every voxel at the edge of the grid


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_network_readouts_learn_and_are_deterministic(kind, rng):
    X = rng.normal(size=(120, 8, 3, 3)).astype(np.float32)
    Y = np.stack([X[:, 0, 1, 1] * 2 + X[:, 3].mean((1, 2)), np.maximum(X[:, 5, 0, 0], 0)], 1)
    Xf = X if kind == "cnn" else X.reshape(120, -1)
    a = fit_readout(kind, Xf[:100], Y[:100], seed=1, weight_decays=[1e-4, 1e-2], epochs=150)
    b = fit_readout(kind, Xf[:100], Y[:100], seed=1, weight_decays=[1e-4, 1e-2], epochs=150)
    pa, pb = _pred(a, Xf[100:]), _pred(b, Xf[100:])
    np.testing.assert_array_equal(pa, pb)
    r = [np.corrcoef(pa[:, v], Y[100:, v])[0, 1] for v in range(2)]
    assert min(r) > 0.5, r
    assert a.hparams["weight_decay"] in (1e-4, 1e-2) and a.hparams["hidden"] == 128


def test_gradients_flow_through_readout(data):
    X, Y, _ = data
    r = fit_readout("ridge", X, Y, alphas=[1.0])
    x = torch.tensor(X[:3], dtype=torch.float32, requires_grad=True)
    (g,) = torch.autograd.grad(r(x)[:, 0].sum(), x)
    assert torch.allclose(g[0], r.weight[0])


def test_bad_inputs(data):
    X, Y, _ = data
    Yn = Y.copy()
    Yn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_readout("ridge", X, Yn)
    with pytest.raises(ValueError, match="unknown readout kind"):
        fit_readout("svm", X, Y)
    with pytest.raises(ValueError, match="share N"):
        fit_readout("ridge", X, Y[:10])
    with pytest.raises(ValueError, match="spatial"):
        fit_readout("cnn", X, Y)
    with pytest.raises(ValueError, match="unknown readout options"):
        fit_readout("ridge", X, Y, alpha=3)
