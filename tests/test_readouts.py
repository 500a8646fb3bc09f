import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, LinearRegression, Ridge, RidgeCV

from probelib.readouts import fit_readout


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
    sk = Lasso(alpha=0.1, max_iter=2000).fit(X, Y[:, :2])
    assert _rel(_pred(r, Xt), sk.predict(Xt)) < 1e-4
    assert r.hparams["nonzero_fraction"] < 0.5
    cv = fit_readout("lasso", X, Y[:, :2], alphas=[0.01, 0.1, 1.0])
    assert len(cv.hparams["alpha"]) == 2


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
