import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso, LassoCV, LinearRegression, Ridge, RidgeCV
from sklearn.model_selection import KFold

from probelib.readouts import fit_readout, lasso_alpha_max, lasso_cv, lasso_cv_predictions, lasso_lars, ridge_loo


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


# ----------------------------------------------------------------------------------------------
# Degenerate inputs: every one raises a ValueError naming the parameter at fault
# ----------------------------------------------------------------------------------------------
def _small(n=12, d=5, v=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, :2] @ rng.normal(size=(2, v)) + rng.normal(size=(n, v))


_nan, _inf = float("nan"), float("inf")
DEGENERATE_OPTIONS = [  # (kind, options, n images, a pattern the message must contain)
    *[("ridge", {"alphas": a}, 12, "alphas") for a in
      ([], [_nan], [_inf], [-1.0], [0.0], [1.0, _nan], "1.0", [[1.0, 2.0]], [None], [True])],
    ("ridge", {"per_voxel": "no"}, 12, "per_voxel"),
    ("ridge", {"alphas": [1.0]}, 1, "N = 1"),
    ("ridge", {"alphas": [0.1, 1.0]}, 2, "N = 2.*alphas"),  # LOO over a grid: all alphas tie
    *[("lasso", {"alphas": a}, 12, "alphas") for a in ([], [_nan], [0.1, _nan], [_inf], [0.0], [-0.1])],
    *[("lasso", {"alphas": [0.01, 0.1], "cv": cv}, 12, "cv") for cv in (0, 1, 2.5, "5", True, 13)],
    ("lasso", {"alphas": [0.01, 0.1], "cv": 2}, 3, "cv"),  # a training fold of 1 image
    ("lasso", {"alphas": [0.1], "cv": 1}, 12, "cv"),
    *[("lasso", {"alphas": [0.1], "max_iter": m}, 12, "max_iter") for m in (0, -3, 2.5)],
    ("lasso", {"alphas": [0.1]}, 1, "N = 1"),
    ("ols", {}, 1, "N = 1"),
    ("ols", {"alphas": [1.0]}, 12, "unknown readout options"),
    *[(k, {"weight_decays": wd}, 12, "weight_decays") for k in ("mlp", "cnn")
      for wd in ([], [_nan], [_inf], [-1e-3], [1e-2, _nan], "0.1")],
    *[(k, {"epochs": e}, 12, "epochs") for k in ("mlp", "cnn") for e in (0, -1, 2.5, None)],
    *[("mlp", {"hidden": h}, 12, "hidden") for h in (0, 1.5)],
    *[("mlp", {"lr": lr}, 12, "lr") for lr in (0.0, -1e-3, _nan, _inf, "1e-3")],
    ("mlp", {"weight_decays": [1e-2]}, 1, "N = 1"),
    ("cnn", {"weight_decays": [1e-2]}, 1, "N = 1"),
    *[(k, {"weight_decays": [1e-4, 1e-2]}, n, f"N = {n}.*weight_decays")  # the validation split
      for k in ("mlp", "cnn") for n in (2, 3)],                            # left < 2 to train on
]


@pytest.mark.parametrize("kind, options, n, pattern", DEGENERATE_OPTIONS,
                         ids=[f"{k}-N{n}-" + ",".join(f"{a}={v!r}" for a, v in o.items())
                              for k, o, n, _ in DEGENERATE_OPTIONS])
def test_degenerate_options_raise_naming_the_parameter(kind, options, n, pattern):
    X, Y = _small(n=n)
    if kind == "cnn":
        X = np.repeat(X[:, :, None, None], 2, axis=2).repeat(2, axis=3)  # (N, 5, 2, 2)
    options = dict(options)
    if kind in ("mlp", "cnn"):
        options.setdefault("epochs", 2)
    with pytest.raises(ValueError, match=pattern):
        fit_readout(kind, X, Y, **options)


def _degenerate_data():
    X, Y = _small()
    Xn, Yi = X.copy(), Y.copy()
    Xn[2, 1] = np.nan
    Yi[4, 0] = np.inf
    return [  # (features, responses, pattern)
        (X, Y[:10], "share N"),
        (X[:10], Y, "share N"),
        (Xn, Y, "features"),
        (X, Yi, "responses"),
        (X[:, :0], Y, "features"),
        (X[:, 0], Y, "features"),
        (X, Y[:, :, None], "responses"),
        (X, Y[:, :0], "responses"),
        (X[:0], Y[:0], "N = 0"),
        (X.astype(str), Y, "features"),
        (X, Y.astype(complex), "responses"),
    ]


@pytest.mark.parametrize("kind", ["ols", "ridge", "lasso", "mlp"])
@pytest.mark.parametrize("case", range(11), ids=["X-rows", "Y-rows", "X-nan", "Y-inf", "X-no-columns",
                                                  "X-1d", "Y-3d", "Y-no-columns", "N0", "X-str", "Y-complex"])
def test_degenerate_data_raise_naming_the_input(kind, case):
    X, Y, pattern = _degenerate_data()[case]
    opts = {"ridge": {"alphas": [0.1, 1.0]}, "lasso": {"alphas": [0.01, 0.1]},
            "mlp": {"epochs": 2}}.get(kind, {})
    with pytest.raises(ValueError, match=pattern):
        fit_readout(kind, X, Y, **opts)


def test_degenerate_inputs_of_the_public_solvers():
    X, Y = _small()
    with pytest.raises(ValueError, match="alphas"):
        ridge_loo(X, Y, [])
    with pytest.raises(ValueError, match="alphas"):
        ridge_loo(X, Y, [1.0, np.nan])
    with pytest.raises(ValueError, match="per_voxel"):
        ridge_loo(X, Y, [1.0], per_voxel=None)
    with pytest.raises(ValueError, match="alpha"):
        lasso_lars(X, Y, np.nan)
    with pytest.raises(ValueError, match="alpha"):
        lasso_lars(X, Y, [0.1, 0.2])  # neither one penalty nor one per voxel (3)
    with pytest.raises(ValueError, match="max_iter"):
        lasso_lars(X, Y, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="alphas"):
        lasso_cv(X, Y, [0.1, np.nan])
    with pytest.raises(ValueError, match="cv"):
        lasso_cv(X, Y, [0.01, 0.1], cv=1)
    with pytest.raises(ValueError, match="cv"):
        lasso_cv(X[:3], Y[:3], [0.01, 0.1], cv=2)
    folds = [(np.arange(6, 12), np.arange(6)), (np.arange(6), np.arange(6, 12))]
    with pytest.raises(ValueError, match="alphas"):
        lasso_cv_predictions(X, Y, [np.nan], folds)
    with pytest.raises(ValueError, match="folds"):
        lasso_cv_predictions(X, Y, [0.1], [])
    with pytest.raises(ValueError, match="fold"):
        lasso_cv_predictions(X, Y, [0.1], [(np.arange(1), np.arange(1, 12))])
    with pytest.raises(ValueError, match="share N"):
        lasso_alpha_max(X, Y[:5])


@pytest.mark.filterwarnings("ignore:.*edge of the grid")
def test_degenerate_one_dimensional_responses_are_one_voxel():
    """Responses (N,) are read as one voxel, by every readout and solver alike."""
    X, Y = _small(n=30)
    y = Y[:, 0]
    for kind, opts in (("ols", {}), ("ridge", {"alphas": [0.1, 1.0, 10.0]}), ("lasso", {"alphas": [0.01, 0.1]}),
                       ("mlp", {"weight_decays": [1e-2], "epochs": 3})):
        a, b = fit_readout(kind, X, y, **opts), fit_readout(kind, X, y[:, None], **opts)
        np.testing.assert_array_equal(_pred(a, X), _pred(b, X))
        assert _pred(a, X).shape == (30, 1)
    w, bias, alpha, loo = ridge_loo(X, y, [0.1, 1.0])
    assert w.shape == (1, 5) and loo.shape == (2, 1)
    assert lasso_lars(X, y, 0.1)[0].shape == (1, 5)
    # the smallest valid sizes fit
    fit_readout("ridge", X[:2], Y[:2], alphas=[1.0])
    fit_readout("ridge", X[:3], Y[:3], alphas=[0.1, 1.0])
    fit_readout("lasso", X[:4], Y[:4], alphas=[0.01, 0.1], cv=2)
    fit_readout("mlp", X[:4], Y[:4], weight_decays=[0.0, 1e-2], epochs=2)
    fit_readout("ridge", X, Y, alphas=1.0)  # a number is a grid of one


# ----------------------------------------------------------------------------------------------
# Ridge on standardised, uncorrelated features: the centred Gram matrix has the eigenvalue N
# ----------------------------------------------------------------------------------------------
def _standardized_uncorrelated_inputs():
    """(name, X, Y): features z-scored with ddof = 0 (StandardScaler) that are uncorrelated, so
    X_c X_c^T has the eigenvalue N (the value that the constant direction of X_c X_c^T + 1 1^T
    has too): an orthogonal design, and PCA followed by standardisation."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    n, v = 60, 50
    A = rng.normal(size=(n, 20))
    Q, _ = np.linalg.qr(A - A.mean(0))  # orthonormal, centred columns
    X_orth = StandardScaler().fit_transform(Q * rng.uniform(1, 5, 20) + rng.normal(size=20))
    X_pca = StandardScaler().fit_transform(PCA(30, random_state=0).fit_transform(rng.normal(size=(n, 300))))
    out = []
    for name, X in (("orthogonal", X_orth), ("pca_standardized", X_pca)):
        Y = X[:, :5] @ rng.normal(size=(5, v)) + rng.uniform(0.5, 5, v) * rng.normal(size=(n, v)) + 1.0
        out.append((name, X, Y))
    return out


@pytest.mark.parametrize("case", [0, 1], ids=["orthogonal", "pca_standardized"])
def test_ridge_standardized_uncorrelated_features_match_ridgecv(case):
    name, X, Y = _standardized_uncorrelated_inputs()[case]
    Xc = X - X.mean(0)
    lam = np.linalg.eigvalsh(Xc @ Xc.T)
    assert np.isclose(lam, len(X), rtol=1e-10).sum() >= 20  # the eigenvalue N, many times over
    alphas = np.logspace(-2, 4, 13)
    sk = RidgeCV(alphas=alphas, alpha_per_target=True).fit(X, Y)
    w, b, alpha, _ = ridge_loo(X, Y, alphas)
    np.testing.assert_array_equal(alpha, sk.alpha_)  # every voxel
    assert len(set(alpha)) > 3  # the choice varies across voxels
    assert _rel(X @ w.T + b, sk.predict(X)) < 1e-6
    # and against a direct solve at the chosen alphas
    for j in range(Y.shape[1]):
        coef = np.linalg.solve(Xc.T @ Xc + alpha[j] * np.eye(X.shape[1]), Xc.T @ (Y[:, j] - Y[:, j].mean()))
        assert _rel(X @ w[j] + b[j], Xc @ coef + Y[:, j].mean()) < 1e-6
    r = fit_readout("ridge", X, Y, alphas=alphas)
    np.testing.assert_array_equal(r.hparams["alpha"], sk.alpha_)
    assert _rel(_pred(r, X), sk.predict(X)) < 1e-5  # float32 weights
    shared = fit_readout("ridge", X, Y, alphas=alphas, per_voxel=False)
    assert shared.hparams["alpha"][0] == RidgeCV(alphas=alphas).fit(X, Y).alpha_
