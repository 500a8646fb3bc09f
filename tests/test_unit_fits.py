"""Tests of fitting units (probelib.fitting), the LARS lasso and its penalty choice (probelib.readouts), cached fits and
probes, the classical robustness check, ladder positions and the probe subset."""
import time

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from probelib import probes
from probelib.metrics import response_sd
from probelib.fitting import fit_units, readout_options, response_units
from probelib.probes.cached import probe_units
from probelib.probes.classification import classification_robustness
from probelib.readouts import PAPER_LASSO_ALPHAS, fit_readout, lasso_readout, select_lasso_alpha
from probelib.tables import readout_comparison_text, unit_sensitivity_frame
from probelib.zoo import build_encoder, ladder_position
from probelib.data.dataset import Dataset, make_split, probe_images, trajectory_starts
from probelib.readouts import lasso_alpha_max


def _voxel_dataset(n=30, size=64, seed=0):
    """A tiny dataset with voxels of 2 subjects in 2 ROIs (average_subjects=False layout)."""
    rng = np.random.default_rng(seed)
    stimuli = rng.random((n, 3, size, size)).astype(np.float32)
    responses = {"FFA": rng.standard_normal((n, 5)).astype(np.float32),
                 "PPA": rng.standard_normal((n, 3)).astype(np.float32)}
    voxels = {"FFA": {"subject": np.array([1, 1, 2, 2, 2])}, "PPA": {"subject": np.array([1, 2, 2])}}
    cats = ["face"] * 10 + ["place"] * 10 + ["object"] * (n - 20)
    return Dataset(stimuli, responses, np.arange(n), make_split(n, 20, seed), voxels=voxels, categories=cats)


def test_response_units_means():
    ds = _voxel_dataset()
    u = response_units(ds, by_subject=True)
    assert u.labels == ["FFA/s1", "FFA/s2", "PPA/s1", "PPA/s2"]
    np.testing.assert_allclose(u.responses[:, 0], ds.responses["FFA"][:, :2].mean(1), rtol=1e-6)
    np.testing.assert_allclose(u.responses[:, 3], ds.responses["PPA"][:, 1:].mean(1), rtol=1e-6)
    assert u.n_voxels.tolist() == [2, 3, 1, 2]
    avg = response_units(ds)  # mean over voxels within subject, then over subjects
    expected = 0.5 * (ds.responses["FFA"][:, :2].mean(1) + ds.responses["FFA"][:, 2:].mean(1))
    np.testing.assert_allclose(avg.responses[:, 0], expected, rtol=1e-6)
    assert avg.labels == ["FFA", "PPA"] and avg.subject.tolist() == [0, 0]
    assert response_units(ds, ["PPA"], by_subject=True).select(u.subject[:2] == 2).labels == ["PPA/s2"]
    averaged = Dataset(ds.stimuli, {"FFA": avg.responses[:, :1]}, ds.image_ids, ds.split)
    with pytest.raises(ValueError, match="average_subjects=False"):
        response_units(averaged, by_subject=True)
    with pytest.raises(ValueError, match="unknown ROI"):
        response_units(ds, ["V1"])


def _sparse_problem(n=60, d=150, k=4, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2.0, d)
    w = np.zeros((d, 2))
    w[:k, 0], w[k:2 * k, 1] = 1.0, -0.7
    Y = X @ w + noise * rng.standard_normal((n, 2)) + 3.0
    return X, Y


@pytest.mark.parametrize("alpha", [0.01, 0.1, 0.5])
def test_lasso_readout_matches_sklearn(alpha):
    from sklearn.linear_model import Lasso
    X, Y = _sparse_problem()
    ro = lasso_readout(X, Y, alpha, relative=False)
    for u in range(2):
        ref = Lasso(alpha=alpha, max_iter=100_000, tol=1e-10).fit(X, Y[:, u])
        np.testing.assert_allclose(ro.weight[u].numpy(), ref.coef_, atol=2e-4)
        assert abs(float(ro.bias[u]) - ref.intercept_) < 2e-3
    with torch.no_grad():
        pred = ro(torch.as_tensor(X, dtype=torch.float32)).numpy()
    assert pred.shape == (60, 2)


def test_relative_penalty_and_alpha_max():
    X, Y = _sparse_problem()
    amax = lasso_alpha_max(X, Y)
    assert amax.shape == (2,)
    assert np.all(lasso_readout(X, Y, 1.0, relative=True).weight.numpy() == 0)  # at alpha_max: empty
    assert np.all((lasso_readout(X, Y, 0.9, relative=True).weight.numpy() != 0).sum(1) >= 1)
    rel = lasso_readout(X, Y, 0.2, relative=True)
    ab = lasso_readout(X, Y, 0.2 * amax, relative=False)
    np.testing.assert_allclose(rel.weight.numpy(), ab.weight.numpy(), atol=1e-6)
    # scale invariance: features x 1000 -> same predictions with a relative penalty
    big = lasso_readout(1000 * X, Y, 0.2, relative=True)
    x = torch.as_tensor(X, dtype=torch.float32)
    with torch.no_grad():
        np.testing.assert_allclose(big(1000 * x).numpy(), rel(x).numpy(), rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="> 0"):
        lasso_readout(X, Y, 0.0)


def test_select_lasso_alpha_prefers_sparse_fit():
    X, Y = _sparse_problem(noise=1.0)
    sel = select_lasso_alpha(X, Y, alphas=[0.001, 0.05, 0.3, 0.95], relative=True, cache=False)
    assert sel.scores.shape == (4,) and sel.scores_per_unit.shape == (4, 2)
    assert sel.alpha == sel.alphas[np.argmax(sel.scores)]
    assert sel.alpha in (0.05, 0.3)  # neither the nearly unpenalised nor the nearly empty model
    assert sel.nonzero[0] > sel.nonzero[-1]  # fewer features survive larger penalties
    assert sel.scores[np.argmax(sel.scores)] > sel.scores[0] + 0.02
    assert sel.table().chosen.sum() == 1
    absolute = select_lasso_alpha(X, Y, relative=False, cache=False)  # the paper grid by default
    assert absolute.alphas.tolist() == list(PAPER_LASSO_ALPHAS) and not absolute.relative
    with pytest.raises(ValueError, match="cv"):
        select_lasso_alpha(X, Y, cv=1)


@pytest.fixture(scope="module")
def small_ds():
    return _voxel_dataset(n=24, size=64)


def test_fit_and_probe_units_cached(small_ds):
    ds = small_ds
    units = response_units(ds, by_subject=True)
    fit = fit_units(ds, "alexnet:untrained", units, kind="ols")
    assert fit.predictivity.shape == (4,) and fit.test_predictions.shape == (4, 4)
    assert fit.summary().shape[0] == 4
    idx = ds.split["test"][:2]
    res = probe_units(fit, idx, [1 / 255, 3 / 255])
    assert res.sensitivity.shape == (2, 2, 4)
    direct = probes.fgsm(fit.model, torch.from_numpy(ds.stimuli[idx]), eps=[1 / 255, 3 / 255],
                          store_perturbations=False)
    np.testing.assert_allclose(res.sensitivity, direct.sensitivity, rtol=1e-4, atol=1e-6)
    # the second call comes from the disk cache
    t = time.time()
    again = probe_units(fit_units(ds, "alexnet:untrained", units, kind="ols"), idx, [1 / 255, 3 / 255])
    assert time.time() - t < 5
    np.testing.assert_array_equal(again.sensitivity, res.sensitivity)
    frame = unit_sensitivity_frame(fit, res, idx)
    assert len(frame) == 2 * 2 * 4
    sd = response_sd(units.responses[ds.split["test"]])
    np.testing.assert_allclose(frame.relative, frame.sensitivity / sd[frame.unit])
    assert set(frame.columns) >= {"model", "readout", "label", "roi", "subject", "eps", "image", "r"}


def test_fit_units_lasso_fixed_penalty_and_smoothing_key(small_ds):
    ds = small_ds
    units = response_units(ds)
    las = fit_units(ds, "alexnet:untrained", units, kind="lasso", alpha=0.3, relative=True)
    assert las.hparams["solver"] == "lars" and las.hparams["relative_alpha"] == 0.3
    with pytest.raises(ValueError, match="unknown options"):
        fit_units(ds, "alexnet:untrained", units, kind="lasso", alpha=0.3, cv=3)
    # two smoothed versions that differ only in their noise draws must not share a cache entry
    a = fit_units(ds, "alexnet:untrained+smooth0.1", units, kind="ols", n_samples=2)
    b = fit_units(ds, "alexnet:untrained+smooth0.1", units, kind="ols", n_samples=3)
    assert a.key != b.key
    idx = ds.split["test"][:2]
    sa, sb = probe_units(a, idx, 3 / 255), probe_units(b, idx, 3 / 255)
    assert not np.allclose(sa.sensitivity, sb.sensitivity)


class _LinearClassifier(nn.Module):
    """logits = W x (flattened pixels): FGSM on it is exactly computable."""

    def __init__(self, d, n_classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(n_classes, d, generator=g) * 0.05, requires_grad=False)
        self.name, self.layer, self.weights_source = "toy", "logits", "test"

    def classify(self, x):
        return x.flatten(1) @ self.w.T


def test_classification_robustness_on_a_linear_classifier():
    x = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    clf = _LinearClassifier(3 * 8 * 8)
    res = classification_robustness(clf, x.numpy(), [0.0, 0.01, 0.2], cache=False)
    assert res.survival[0] == 1.0
    np.testing.assert_array_equal(res.clean_label, clf.classify(x).argmax(1).numpy())
    assert np.all(np.diff(res.label_prob.mean(1)) < 0)  # a larger budget removes more of the label
    assert res.survival[-1] < 1.0
    # FGSM step by hand for the middle budget
    with torch.enable_grad():
        xx = x.clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(clf.classify(xx), torch.as_tensor(res.clean_label), reduction="sum")
        g = torch.autograd.grad(loss, xx)[0]
    p = clf.classify((x + 0.01 * g.sign()).clamp(0, 1)).softmax(1)
    np.testing.assert_allclose(res.label_prob[1], p.gather(1, torch.as_tensor(res.clean_label)[:, None])[:, 0].numpy(),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="classifier"):
        classification_robustness(nn.Identity(), x.numpy(), 0.01)


def test_ladder_position_and_probe_images():
    assert ladder_position("mobilenet_v2", ladder="smoothing") == ("mobilenet_v2", 0.0, "smoothing sigma")
    assert ladder_position("efficientnet_lite0+smooth0.5", ladder="smoothing")[:2] == ("efficientnet_lite0", 0.5)
    assert ladder_position("resnet50_l2_eps3")[:2] == ("resnet50_l2", 3.0)
    with pytest.raises(ValueError):
        ladder_position("not_a_net")
    ds = _voxel_dataset(n=60)
    test = set(ds.split["test"].tolist())
    for n in (3, 7, 40):
        idx = probe_images(ds, n)
        assert len(idx) == min(n, len(test)) and set(idx.tolist()) <= test
        assert np.all(np.diff(idx) > 0)
    cats = np.asarray(ds.categories)
    idx = probe_images(ds, 6)
    present = set(cats[ds.split["test"]])
    assert set(cats[idx]) == present  # every category of the test split is probed


class _OnDevice(nn.Module):
    """An encoder on another device (here "meta", standing in for a GPU): inputs elsewhere raise,
    as on CUDA; returns zero features (N, 4) on the CPU."""

    def __init__(self):
        super().__init__()
        self.register_buffer("w", torch.zeros(1))
        self.name, self.seen = "ondevice", []

    def forward(self, x):
        if x.device != self.w.device:
            raise RuntimeError(f"input on {x.device}, module on {self.w.device}")
        self.seen.append(x.device.type)
        return torch.zeros(x.shape[0], 4)


def test_fit_units_moves_a_given_encoder_and_passes_the_device_to_net_readouts(small_ds, monkeypatch):
    seen_options = []
    real = fit_readout

    def spy_fit(kind, features, responses, seed=0, **options):
        seen_options.append(options)
        return real("ols", features, responses)  # (an mlp cannot train on the meta device)

    import probelib.fitting as fitting
    monkeypatch.setattr(fitting, "fit_readout", spy_fit)
    units = response_units(small_ds, by_subject=True)
    enc = _OnDevice()
    fit = fit_units(small_ds, "alexnet", units, kind="mlp", device="meta", encoder=enc, cache=False)
    assert set(enc.seen) == {"meta"} and fit.model.readout.weight.device.type == "meta"
    assert seen_options[-1].get("device") == "meta"
    fit_units(small_ds, "alexnet", units, kind="mlp", device="cpu", encoder=_OnDevice(), cache=False)
    assert "device" not in seen_options[-1]  # the CPU default: the hashed options are unchanged


def test_readout_options_and_describe_hparams(small_ds):
    ds = small_ds
    units = response_units(ds)
    enc = build_encoder("alexnet:untrained")
    train = ds.split["train"]
    opts, sel = readout_options("lasso", enc, ds, units.responses[train], lasso_alphas=[0.01, 0.1], seed=0)
    assert opts == {"alpha": sel.alpha, "relative": True} and sel.alpha in (0.01, 0.1)
    assert readout_options("mlp", enc, ds, units.responses[train], net_options={"epochs": 2}) == ({"epochs": 2}, None)
    assert readout_options("ols", enc, ds, units.responses[train]) == ({}, None)
    lasso = fit_units(ds, "alexnet:untrained", units, kind="lasso", encoder=enc, **opts)
    text = lasso.describe_hparams()
    assert text.startswith(f"alpha = {sel.alpha:g} x alpha_max") and "non-zero weights per unit" in text
    ridge = fit_units(ds, "alexnet:untrained", units, kind="ridge", encoder=enc)
    assert ridge.describe_hparams().startswith("alpha per unit: ")
    assert fit_units(ds, "alexnet:untrained", units, kind="ols", encoder=enc).describe_hparams() == "none"


def test_trajectory_starts():
    ds = _voxel_dataset(n=40)
    pool = np.arange(40)
    lo, hi = trajectory_starts(ds, "FFA", "face", 3, index=pool)
    y = ds.responses["FFA"].mean(1)
    faces = pool[np.asarray(ds.categories) == "face"]
    np.testing.assert_array_equal(lo, faces[np.argsort(-y[faces])][:3])
    objects = pool[np.asarray(ds.categories) == "object"]
    order = objects[np.argsort(y[objects])]
    np.testing.assert_array_equal(hi, order[len(order) // 2 - 1:][:3])
    lo2, _ = trajectory_starts(ds, "FFA", "no such category", 2, index=pool)
    np.testing.assert_array_equal(lo2, pool[np.argsort(-y)][:2])  # no match: the whole pool


def test_readout_comparison_text():
    summary = pd.DataFrame({"model": ["m"] * 3, "readout": ["ols", "lasso", "ridge"],
                            "rel_mean": [2.0, 1.0, 2.0], "r": [0.5, 0.45, 0.5]})
    text = readout_comparison_text(summary, ["m"], {"ols": "OLS", "lasso": "L1", "ridge": "L2"})
    assert text.startswith("m: lowest sensitivity with L1 (1.00), highest with OLS (2.00)")
    assert "L1 / OLS sensitivity ratio: 0.50 (the sparse readout is less sensitive; the paper: 0.61" in text
    assert text.endswith("predictivity change of -0.050.")
