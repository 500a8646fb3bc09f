"""More properties of probelib.readouts: the ridge grid-edge rule, options reaching the solvers,
the scikit-learn regressor's outputs, and folding fitted scalers and foreign arrays into readouts."""
from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import Ridge
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import probelib.readouts as readouts
from probelib.readouts import NetReadout, Readout, as_readout, fit_readout
from probelib.readouts.fit import _fraction_at_edge
from probelib.readouts.nets import _corr_mean


def _data(n=12, d=5, v=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, :2] @ rng.normal(size=(2, v)) + 0.5 * rng.normal(size=(n, v))


X12, Y12 = _data()


def _predict(module, X) -> np.ndarray:
    with torch.no_grad():
        return module(torch.as_tensor(X, dtype=torch.float32)).double().numpy()


# ----------------------------------------------------------------------- ridge: the grid's edge

@pytest.mark.parametrize("err,chosen,expected", [
    ([1.0, 2.0, 3.0], 0.1, 1.0),             # falls towards the lower end, which was chosen
    ([3.0, 2.0, 1.0], 10.0, 1.0),            # falls towards the upper end, which was chosen
    ([2.0, 2.0, 2.0], 0.1, 0.0),             # a plateau: the tie went to the first alpha
    ([2.0, 2.0, 2.0], 10.0, 0.0),
    ([1.0 - 1e-12, 1.0, 3.0], 0.1, 0.0),     # a fall smaller than 1e-9 (relative) is a plateau
    ([3.0, 1.0, 1.0 - 1e-12], 10.0, 0.0),
    ([1.0 - 1e-9, 1.0, 3.0], 0.1, 0.0),      # a fall of exactly 1e-9 is not
    ([3.0, 1.0, 1.0 - 1e-9], 10.0, 0.0),
    ([1.0 - 1e-8, 1.0, 3.0], 0.1, 1.0),      # a fall larger than 1e-9 is a fall
    ([3.0, 1.0, 1.0 - 1e-8], 10.0, 1.0),
    ([1.5, 1.0, 3.0], 0.1, 0.0),             # the lower end, but the error rises towards it
    ([3.0, 1.0, 1.5], 10.0, 0.0),
    ([1.0, 2.0, 3.0], 1.0, 0.0),             # an inner alpha is never at the edge
    ([3.0, 2.0, 1.0], 1.0, 0.0),
    ([3.0, 2.0, 1.0], 0.1, 0.0),             # the lower end chosen, the fall is at the upper end
    ([1.0, 2.0, 3.0], 10.0, 0.0),
])
def test_fraction_at_edge_counts_ends_where_the_error_still_falls(err, chosen, expected):
    alphas = np.array([10.0, 0.1, 1.0])                     # not sorted: the rule sorts them
    loo = np.asarray(err)[[2, 0, 1]][:, None]               # rows in the order of alphas
    assert _fraction_at_edge(alphas, np.array([chosen]), loo) == expected
    assert _fraction_at_edge(alphas, chosen, loo) == expected          # one alpha for all voxels


def test_fraction_at_edge_is_a_fraction_of_voxels_and_zero_for_one_alpha():
    alphas = np.array([0.1, 1.0, 10.0])
    loo = np.array([[1.0, 2.0, 3.0, 1.0], [2.0, 2.0, 2.0, 0.5], [3.0, 2.0, 1.0, 2.0]])
    assert _fraction_at_edge(alphas, np.array([0.1, 0.1, 10.0, 1.0]), loo) == 0.5
    assert _fraction_at_edge(alphas, 0.1, loo) == 0.25
    assert _fraction_at_edge(np.array([1.0]), np.array([1.0, 1.0]), np.ones((1, 2))) == 0.0


# ------------------------------------------------------------------------ options reach the solvers

@pytest.mark.parametrize("kind,extra", [("ols", {"alphas": [1.0]}), ("ridge", {"cv": 3}),
                                        ("lasso", {"per_voxel": True}), ("mlp", {"seeds": 1})])
def test_every_kind_refuses_options_it_does_not_have(kind, extra):
    with pytest.raises(ValueError, match=rf"^unknown readout options: {next(iter(extra))}$"):
        fit_readout(kind, X12, Y12, **extra)


def test_linear_readouts_are_named_by_their_kind():
    for kind, opts in (("ols", {}), ("ridge", {"alphas": [1.0]}), ("lasso", {"alphas": [0.1]}),
                       ("lasso", {"alphas": [0.01, 0.1], "cv": 3})):
        r = fit_readout(kind, X12, Y12, **opts)
        assert r.kind == kind and r.hparams["kind"] == kind


def test_lasso_cv_honours_max_iter():
    with pytest.warns(RuntimeWarning, match="raise max_iter"):
        short = fit_readout("lasso", X12, Y12, alphas=[1e-4, 1e-3], cv=3, max_iter=1)
    full = fit_readout("lasso", X12, Y12, alphas=[1e-4, 1e-3], cv=3)
    assert (short.weight != 0).sum(1).max() <= 1 < (full.weight != 0).sum(1).max()


def test_net_readouts_keep_float32_buffers_and_use_the_learning_rate():
    slow = fit_readout("mlp", X12, Y12, weight_decays=[0.0], hidden=4, epochs=5, lr=1e-3)
    fast = fit_readout("mlp", X12, Y12, weight_decays=[0.0], hidden=4, epochs=5, lr=0.1)
    assert isinstance(slow, NetReadout)
    assert {b.dtype for b in slow.buffers()} == {torch.float32}
    assert fast.hparams["lr"] == 0.1 and fast.hparams["final_train_mse"] < slow.hparams["final_train_mse"]


def test_weight_decay_reaches_the_optimiser():
    free = fit_readout("mlp", X12, Y12, weight_decays=[0.0], hidden=4, epochs=30, lr=0.05)
    decayed = fit_readout("mlp", X12, Y12, weight_decays=[1.0], hidden=4, epochs=30, lr=0.05)
    norm = lambda r: sum(float(p.abs().sum()) for p in r.net.parameters())  # noqa: E731
    assert norm(decayed) < 0.9 * norm(free)


def test_the_regressor_passes_the_network_options_to_cnn_readouts_too():
    spatial = np.random.default_rng(1).normal(size=(12, 2, 3, 3))
    est = Readout("cnn", weight_decays=[0.0], hidden=3, epochs=2, lr=0.01).fit(spatial, Y12)
    assert {k: est.hparams_[k] for k in ("hidden", "epochs", "lr", "weight_decay")} == {
        "hidden": 3, "epochs": 2, "lr": 0.01, "weight_decay": 0.0}


def test_readout_is_looked_up_lazily_once(monkeypatch):
    monkeypatch.delitem(vars(readouts), "Readout", raising=False)
    assert readouts.__getattr__("Readout") is Readout
    assert vars(readouts)["Readout"] is Readout                            # an ordinary attribute from now on
    with pytest.raises(AttributeError, match=r"^module 'probelib.readouts' has no attribute 'readout'$"):
        readouts.__getattr__("readout")


def test_the_cnn_readout_is_not_affine():
    spatial = np.random.default_rng(1).normal(size=(12, 2, 3, 3))
    r = fit_readout("cnn", spatial, Y12, weight_decays=[0.0], hidden=4, epochs=20, lr=0.05)
    a, b = spatial[:4], spatial[4:8]
    gap = _predict(r, a) + _predict(r, b) - 2 * _predict(r, (a + b) / 2)
    assert np.abs(gap).max() > 1e-3                      # a ReLU between the convolution and the output


def test_corr_mean_gives_zero_for_a_constant_column():
    a = np.array([[1.0, 2.0], [2.0, 2.0], [3.0, 2.0]])
    b = np.array([[2.0, 1.0], [4.0, 5.0], [6.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _corr_mean(a, b) == pytest.approx(0.5)    # r = 1 and a constant column (0)


# ------------------------------------------------------------------------ the regressor

def test_readout_is_defined_once_and_other_names_are_missing():
    assert readouts.Readout is readouts.Readout is Readout and vars(readouts)["Readout"] is Readout
    with pytest.raises(AttributeError, match=r"^module 'probelib.readouts' has no attribute 'Readouts'$"):
        readouts.Readouts


@pytest.mark.parametrize("kind", ["ols", "ridge", "lasso"])
def test_linear_regressors_expose_the_module_weights_and_predict_with_them(kind):
    opts = {"alphas": [0.1]} if kind != "ols" else {}
    est = Readout(kind, **opts).fit(X12, Y12)
    np.testing.assert_array_equal(est.coef_, est.module_.weight.double().numpy())
    np.testing.assert_array_equal(est.intercept_, est.module_.bias.double().numpy())
    pred = est.predict(X12)
    assert pred.dtype == np.float64 and pred.shape == (12, 3)
    np.testing.assert_allclose(pred, X12 @ est.coef_.T + est.intercept_, rtol=1e-12)
    one = Readout(kind, **opts).fit(X12, Y12[:, 1])
    assert one.coef_.shape == (5,) and isinstance(one.intercept_, float)
    np.testing.assert_array_equal(one.coef_, one.module_.weight[0].double().numpy())
    assert one.intercept_ == float(one.module_.bias[0])
    np.testing.assert_allclose(one.predict(X12), X12 @ one.coef_ + one.intercept_, rtol=1e-12)


def test_regressor_passes_its_options_and_checks_its_input():
    lasso = Readout("lasso", alphas=[1e-4, 1e-3], cv=3, max_iter=1)
    with pytest.warns(RuntimeWarning, match="raise max_iter"):
        lasso.fit(X12, Y12)
    assert (lasso.coef_ != 0).sum(1).max() <= 1
    with pytest.raises(ValueError, match=r"^kind='cnn' needs spatial features \(N, C, h, w\); got shape \(12, 5\)$"):
        Readout("cnn").fit(X12, Y12)
    spatial = np.random.default_rng(1).normal(size=(12, 2, 2, 2))
    with pytest.raises(ValueError, match="Found array with dim 4"):
        Readout("mlp").fit(spatial, Y12)                        # only the cnn takes spatial features
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        Readout("ols").fit(X12[:1], Y12[:1])
    with pytest.raises(ValueError, match="could not convert string to float"):
        Readout("ols").fit(X12, np.array(["a"] * 12))
    est = Readout("ols").fit(X12.astype(np.float32), Y12.astype(np.float32))
    assert est.coef_.dtype == np.float64 and est.predict(X12.astype(np.float32)).dtype == np.float64
    with pytest.raises(ValueError, match="X has 4 features, but Readout is expecting 5 features"):
        est.predict(X12[:, :4])


# ------------------------------------------------------------------------ wrapping fitted estimators

def test_scalers_without_centring_or_scaling_fold_as_they_transform():
    for scaler in (StandardScaler(with_mean=False), StandardScaler(with_std=False), StandardScaler()):
        pipe = make_pipeline(scaler, Ridge(alpha=1.0)).fit(X12 * 3 + 1, Y12)
        np.testing.assert_allclose(_predict(as_readout(pipe), X12 * 3 + 1), pipe.predict(X12 * 3 + 1),
                                   rtol=1e-4, atol=1e-4)


def test_a_scaler_fitted_on_other_features_is_refused():
    pipe = make_pipeline(StandardScaler(with_mean=False), Ridge()).fit(X12, Y12)
    other = StandardScaler(with_mean=False).fit(X12[:, :4])
    pipe.steps[0] = ("standardscaler", other)               # mean: none; scale: 4 features, Ridge: 5
    with pytest.raises(ValueError, match=r"^the scaler was fitted on 4 features, the estimator on 5$"):
        as_readout(pipe)


@pytest.mark.parametrize("where", ["scale_", "mean_", "coef_", "intercept_"])
def test_non_finite_values_are_refused_naming_the_attribute(where):
    pipe = make_pipeline(StandardScaler(), Ridge()).fit(X12, Y12)
    owner = pipe[0] if where in ("scale_", "mean_") else pipe[-1]
    getattr(owner, where)[0] = np.nan
    with pytest.raises(ValueError, match=rf"^the estimator's {where} contains NaN or infinite values$"):
        as_readout(pipe)


@pytest.mark.parametrize("where", ["weight", "bias"])
def test_a_fitted_regressor_with_non_finite_weights_is_refused(where):
    est = Readout("ridge", alphas=[1.0]).fit(X12, Y12)
    with torch.no_grad():
        getattr(est.module_, where)[0] = float("inf")
    with pytest.raises(ValueError, match=rf"^the estimator's {where} contains NaN or infinite values$"):
        as_readout(est)


def test_linear_regressors_of_every_kind_wrap_and_others_are_refused():
    for kind in ("ols", "ridge", "lasso"):
        est = Readout(kind, alphas=[0.1]).fit(X12, Y12)
        wrapped = as_readout(est)
        assert wrapped.kind == f"wrapped:Readout({kind})"
        np.testing.assert_allclose(_predict(wrapped, X12), est.predict(X12), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"^a 'mlp' Readout is not linear: use est.module_ directly$"):
        as_readout(Readout("mlp", epochs=1, weight_decays=[0.0], hidden=2).fit(X12, Y12))
    with pytest.raises(ValueError, match=r"^sklearn.Ridge has no coef_: not a fitted linear estimator "
                                         r"\(fit it first; kernel models need a linear kernel\)$"):
        as_readout(Ridge())


def test_arrays_of_other_libraries_are_read_by_value(monkeypatch):
    """cupy arrays (``.get()`` copies to the host; a stand-in class from a module named cupy.*) and
    pandas objects (which also have ``.get``, but are not cupy) as coefficients and intercepts."""
    fitted = Ridge(alpha=1.0).fit(X12, Y12)
    fake = types.ModuleType("cupy._core.fake")
    monkeypatch.setitem(sys.modules, fake.__name__, fake)

    class CupyArray:
        def __init__(self, a):
            self._a = np.asarray(a)

        def get(self):
            return self._a.copy()

    CupyArray.__module__ = fake.__name__

    class Fitted:
        pass

    est = Fitted()
    est.coef_, est.intercept_ = CupyArray(fitted.coef_), pd.Series(fitted.intercept_, index=list("abc"))
    np.testing.assert_allclose(_predict(as_readout(est), X12), fitted.predict(X12), rtol=1e-5, atol=1e-5)
    est.coef_ = pd.DataFrame(fitted.coef_)
    np.testing.assert_allclose(_predict(as_readout(est), X12), fitted.predict(X12), rtol=1e-5, atol=1e-5)
    est.coef_ = fitted.coef_.astype(np.float16)
    assert as_readout(est).weight.dtype == torch.float32


def test_multi_output_regressors_are_named_after_their_first_estimator():
    multi = MultiOutputRegressor(Ridge(alpha=1.0)).fit(X12, Y12)
    wrapped = as_readout(multi)
    assert wrapped.kind == "wrapped:MultiOutputRegressor(sklearn.Ridge)"
    one = MultiOutputRegressor(Ridge(alpha=1.0)).fit(X12, Y12[:, :1])       # a single response
    assert as_readout(one).kind == "wrapped:MultiOutputRegressor(sklearn.Ridge)"
    np.testing.assert_allclose(_predict(wrapped, X12), multi.predict(X12), rtol=1e-5, atol=1e-5)


def test_ragged_or_non_numeric_grids_are_refused_by_name():
    for bad in ([1.0, [2.0, 3.0]], object()):
        with pytest.raises(ValueError, match=r"^alphas must be a number or a 1-D sequence of numbers > 0; got "):
            fit_readout("ridge", X12, Y12, alphas=bad)
    with pytest.raises(ValueError, match=r"^features must have shape \(N, D\) or \(N, C, h, w\); got shape \(12,\) "
                                         r"\(for a single feature use features.reshape\(-1, 1\)\)$"):
        fit_readout("ols", X12[:, 0], Y12)


def test_passthrough_steps_are_skipped_and_the_scalers_after_them_folded():
    pipe = make_pipeline("passthrough", StandardScaler(), Ridge(alpha=1.0)).fit(X12 * 3 + 1, Y12)
    np.testing.assert_allclose(_predict(as_readout(pipe), X12 * 3 + 1), pipe.predict(X12 * 3 + 1),
                               rtol=1e-4, atol=1e-4)
    assert as_readout(pipe).hparams["pipeline"] == ["StandardScaler", "sklearn.Ridge"]
