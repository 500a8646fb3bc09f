"""Readouts as scikit-learn estimators (probelib.readouts.Readout) and fitted linear estimators of
scikit-learn / himalaya as differentiable readouts (probelib.readouts.as_readout)."""
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from probelib.readouts import LinearReadout, Readout, as_readout, fit_readout

pytestmark = pytest.mark.filterwarnings("ignore:.*alpha at the edge of the grid:UserWarning")

# Checks that do not apply, and why (scikit-learn's check_estimator(expected_failed_checks=...)).
NO_N_ITER = ("Readout has a max_iter parameter (the lasso's cap on LARS steps per voxel path), so the check "
             "expects n_iter_; the steps taken differ per voxel and are not recorded")
SHORT_MLP = ("the MLP is run with 10 epochs to keep the test short; it does not reach the R^2 of 0.5 that the "
             "check asks for (the full-length fit does: test_mlp_readout_learns)")


@pytest.fixture
def xy(rng):
    X = rng.standard_normal((60, 12))
    W = rng.standard_normal((12, 3))
    return X, X @ W + 0.1 * rng.standard_normal((60, 3))


@pytest.mark.parametrize("kind", ["ols", "ridge", "lasso"])
def test_check_estimator_linear_kinds(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(Readout(kind), expected_failed_checks={
            "check_non_transformer_estimators_n_iter": NO_N_ITER})


def test_check_estimator_mlp_subset():
    """Every check but the accuracy one on a 10-epoch MLP (``cnn`` takes (N, C, h, w) features,
    outside scikit-learn's 2-D convention, so check_estimator does not apply to it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(Readout("mlp", epochs=10, hidden=8, weight_decays=(1e-4,)), expected_failed_checks={
            "check_non_transformer_estimators_n_iter": NO_N_ITER, "check_regressors_train": SHORT_MLP})


def test_mlp_readout_learns(xy):
    X, Y = xy
    est = Readout("mlp", epochs=300, weight_decays=(1e-4,)).fit(X[:45], Y[:45])
    assert est.score(X[45:], Y[45:]) > 0.5


def test_same_fit_as_fit_readout(xy):
    X, Y = xy
    est = Readout("ridge", alphas=[0.1, 1.0, 10.0]).fit(X, Y)
    mod = fit_readout("ridge", X, Y, alphas=[0.1, 1.0, 10.0])
    assert torch.equal(est.module_.weight, mod.weight) and torch.equal(est.module_.bias, mod.bias)
    assert est.coef_.shape == (3, 12) and est.intercept_.shape == (3,)
    assert est.predict(X).dtype == np.float64
    np.testing.assert_allclose(est.predict(X), mod(torch.as_tensor(X, dtype=torch.float32)).detach().numpy(),
                               rtol=1e-5, atol=1e-5)
    assert np.array_equal(est.hparams_["alpha"], mod.hparams["alpha"])
    one = Readout("ols").fit(X, Y[:, 0])
    assert one.coef_.shape == (12,) and isinstance(one.intercept_, float) and one.predict(X).shape == (60,)


def test_sklearn_tools_work(xy):
    X, Y = xy
    scores = cross_val_score(Readout("ridge"), X, Y[:, 0], cv=3)
    assert scores.shape == (3,) and (scores > 0.9).all()
    pipe = make_pipeline(StandardScaler(), Readout("ridge"))
    assert pipe.fit(X, Y).score(X, Y) > 0.9
    search = GridSearchCV(Readout(), {"kind": ["ols", "ridge"], "alphas": [None, [1.0]]}, cv=3).fit(X, Y)
    assert search.best_params_["kind"] in ("ols", "ridge")
    est = Readout("lasso", alphas=[0.01])
    assert est.get_params()["alphas"] == [0.01]
    assert est.set_params(kind="ridge", alphas=[2.0]).get_params()["kind"] == "ridge"
    fitted = clone(est).fit(X, Y)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.predict(X), fitted.predict(X))
    with pytest.raises(ValueError, match="unknown readout kind"):
        Readout("svm").fit(X, Y)


# ---------------------------------------------------------------------------- wrapping fitted models

def _predict(readout, X):
    with torch.no_grad():
        return readout(torch.as_tensor(X, dtype=torch.float32)).numpy()


def test_wrap_fitted_sklearn_ridge(xy):
    X, Y = xy
    est = Ridge(alpha=1.0).fit(X, Y)
    readout = as_readout(est)
    assert isinstance(readout, LinearReadout) and readout.kind == "wrapped:sklearn.Ridge"
    np.testing.assert_allclose(_predict(readout, X), est.predict(X), rtol=1e-5, atol=1e-5)
    # differentiable: gradients reach the features, and equal the coefficients
    f = torch.as_tensor(X[:2], dtype=torch.float32).requires_grad_(True)
    readout(f)[:, 1].sum().backward()
    np.testing.assert_allclose(f.grad[0].numpy(), est.coef_[1], rtol=1e-5)
    # copied: refitting the estimator does not change the readout
    w = readout.weight.clone()
    est.fit(X, -Y)
    assert torch.equal(readout.weight, w)
    # one response: (N,) targets give one output
    single = Ridge().fit(X, Y[:, 0])
    np.testing.assert_allclose(_predict(as_readout(single), X)[:, 0], single.predict(X), rtol=1e-5, atol=1e-5)


def test_wrapped_ridge_probes_like_any_readout(xy):
    """A Ridge fitted on encoder features, wrapped, makes an EncodingModel that the probes accept."""
    from probelib import fgsm
    from probelib.encoders import load_encoder
    from probelib.model import EncodingModel, extract_features

    enc = load_encoder("timm:resnet10t", "layer1", weights=None)
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    feats = extract_features(enc, images, cache=False)
    y = feats @ np.random.default_rng(0).standard_normal((feats.shape[1], 2)) / 100
    model = EncodingModel(enc, as_readout(Ridge(alpha=1.0).fit(feats, y)))
    res = fgsm(model, images[:2], eps=[2 / 255])
    assert res.sensitivity.shape == (1, 2, 2) and (res.sensitivity > 0).all()


@pytest.mark.parametrize("make", [
    lambda: make_pipeline(StandardScaler(), Ridge(alpha=3.0)),
    lambda: make_pipeline(StandardScaler(with_std=False), LinearRegression()),
    lambda: RidgeCV(alphas=[0.1, 1.0, 10.0]),
    lambda: GridSearchCV(Ridge(), {"alpha": [0.1, 10.0]}, cv=3),
    lambda: MultiOutputRegressor(Ridge()),
    lambda: Readout("ridge"),
])
def test_wrap_other_fitted_estimators(xy, make):
    X, Y = xy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X, Y)
    np.testing.assert_allclose(_predict(as_readout(est), X), est.predict(X), rtol=1e-4, atol=1e-4)


def test_wrap_refuses_what_is_not_a_fitted_linear_model(xy):
    from sklearn.neighbors import KNeighborsRegressor

    X, Y = xy
    with pytest.raises(ValueError, match="no coef_"):
        as_readout(Ridge())
    with pytest.raises(ValueError, match="no coef_"):
        as_readout(KNeighborsRegressor().fit(X, Y))
    with pytest.raises(ValueError, match="not a fitted StandardScaler"):
        from sklearn.decomposition import PCA
        as_readout(make_pipeline(PCA(4), Ridge()).fit(X, Y))
    with pytest.raises(ValueError, match="not fitted"):
        as_readout(Readout())
    with pytest.raises(ValueError, match="not linear"):
        as_readout(Readout("mlp", epochs=2, weight_decays=(0.0,)).fit(X, Y))


def test_wrap_himalaya_layout(xy, monkeypatch):
    """himalaya stores coef_ as (D, V), possibly a torch tensor: read in its layout (a stand-in
    class from a module named himalaya.*; test_wrap_real_himalaya runs where himalaya is installed)."""
    X, Y = xy
    fake = types.ModuleType("himalaya.ridge._fake")
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    fitted = Ridge(alpha=1.0).fit(X, Y)

    class HimalayaRidge:
        pass

    HimalayaRidge.__module__ = fake.__name__
    est = HimalayaRidge()
    est.coef_ = torch.as_tensor(fitted.coef_.T.copy())  # (D, V)
    est.intercept_ = torch.as_tensor(fitted.intercept_)
    np.testing.assert_allclose(_predict(as_readout(est), X), fitted.predict(X), rtol=1e-5, atol=1e-5)


def test_wrap_real_himalaya(xy):
    himalaya_ridge = pytest.importorskip("himalaya.ridge")
    himalaya_kernel = pytest.importorskip("himalaya.kernel_ridge")
    X, Y = xy
    for est in (himalaya_ridge.RidgeCV(alphas=[0.1, 1.0, 10.0]), himalaya_kernel.KernelRidge(alpha=1.0)):
        est.fit(X, Y)
        np.testing.assert_allclose(_predict(as_readout(est), X), np.asarray(est.predict(X)), rtol=1e-4, atol=1e-4)
