"""Tests of comparing candidate models with a reference (model wrappers, gradients, transfer tables,
rankings) on tiny models (no weights, no demo data)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probelib.metrics import gradient_agreement, sensitivity_agreement
from probelib.model import ProbeModels, SelectUnits, observer_for_rois, stack_rois, with_noise_samples
from probelib.probes.cached import cached_optimize, cached_responses, input_gradients
from probelib.probes.optimize import total_variation, tv_weight
from probelib.tables import rank_candidates, transfer_table, winners
from probelib.zoo import robustness_level, select_robust
from probelib.probes import pgd
from probelib.encoders import load_encoder, smooth
from probelib.model import EncodingModel
from probelib.probes.cached import (cached_control_of, cached_fgsm, cached_pgd, cached_transfer_with_control,
                                    transfer_with_control)
from probelib.readouts import fit_readout

SHAPE = (3, 8, 8)
D = 3 * 8 * 8


class Linear(nn.Module):
    """r = W vec(x): the gradient of unit u is W[u] everywhere."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.4 + 0.2 * torch.rand((n, *SHAPE), generator=g)  # away from the box edges


# ------------------------------------------------------------------------------- choosing models

def test_robustness_level():
    assert robustness_level("mobilenet_v2") == 0.0
    assert robustness_level("mobilenet_v2+smooth0.25") == 0.25
    assert robustness_level("alexnet:untrained+smooth0.1") == 0.1
    assert robustness_level("resnet50_l2_eps3") == 3.0
    assert robustness_level("resnet50_linf_eps4") == 4.0
    assert robustness_level("resnet50_l2_eps0") == 0.0


def test_select_robust_prefers_most_robust_that_predicts():
    r = {"alexnet": 0.80, "alexnet+smooth0.1": 0.86, "alexnet+smooth0.25": 0.85, "alexnet+smooth0.5": 0.70}
    assert select_robust(r, 0.95) == "alexnet+smooth0.25"   # 0.5 falls below 0.95 * 0.86
    assert select_robust(r, 0.80) == "alexnet+smooth0.5"
    # untrained models never count as robust candidates
    r2 = {"alexnet": 0.8, "vgg16:untrained+smooth0.5": 0.9, "alexnet+smooth0.1": 0.5}
    assert select_robust(r2, 0.95) == "alexnet+smooth0.1"   # fallback: best robust predictor
    with pytest.raises(ValueError, match="no robust"):
        select_robust({"alexnet": 0.8})
    with pytest.raises(ValueError, match="min_relative"):
        select_robust(r, 1.5)


@pytest.fixture(scope="module")
def smoothed_model():
    enc = smooth(load_encoder("mobilenet_v2", weights=None, layer="features.4"), sigma=0.1,
                 n_samples=2, seed=3)
    x = _images(6, seed=1)
    with torch.no_grad():
        feats = enc(x).numpy()
    y = feats[:, :2] + 0.01 * np.random.default_rng(0).standard_normal((6, 2))
    return EncodingModel(enc, fit_readout("ols", feats, y)), x


def test_with_noise_samples(smoothed_model):
    model, x = smoothed_model
    same = with_noise_samples(model, 2)
    more = with_noise_samples(model, 5, seed=7)
    assert same.readout is model.readout and more.readout is model.readout
    assert more.encoder.n_samples == 5 and more.encoder.sigma == model.encoder.sigma
    assert more.encoder.seed == 7 and same.encoder.seed == model.encoder.seed
    with torch.no_grad():
        torch.testing.assert_close(same(x), model(x))      # same draws -> same function
        assert not torch.allclose(more(x), model(x))       # other draws -> another estimate
    plain = EncodingModel(model.encoder.encoder, model.readout)
    with pytest.raises(ValueError, match="smoothed"):
        with_noise_samples(plain, 4)


# ------------------------------------------------------------------------------- stacking

def test_stack_rois_matches_the_separate_models():
    enc = nn.Sequential(nn.Flatten(), nn.Linear(D, 5))
    ra, rb = nn.Linear(5, 1), nn.Linear(5, 2)
    fit = SimpleNamespace(models={("m", "A"): EncodingModel(enc, ra), ("m", "B"): EncodingModel(enc, rb)})
    stacked = stack_rois(fit, "m", ["B", "A"])
    x = _images(4)
    with torch.no_grad():
        out = stacked(x)
        expected = torch.cat([fit.models[("m", "B")](x), fit.models[("m", "A")](x)], dim=1)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out, expected)
    assert stacked.columns == [slice(0, 2), slice(2, 3)] and stacked.names == ["B", "A"]
    other = nn.Sequential(nn.Flatten(), nn.Linear(D, 5))
    fit.models[("m", "C")] = EncodingModel(other, ra)
    with pytest.raises(ValueError, match="share an encoder"):
        stack_rois(fit, "m", ["A", "C"])


def test_observer_for_rois_combines_roi_readouts(monkeypatch):
    """The observer's per-ROI readouts are placed block-diagonally over the ROIs' columns."""
    calls = {}

    class FakeObserver:
        def for_roi(self, dataset, roi):
            k = len(dataset.voxels[roi]["observer_index"])
            return SimpleNamespace(readout=torch.full((k, 1), 1.0 / k))

        def restrict(self, columns, weights):
            calls["columns"], calls["weights"] = columns, weights
            return nn.Identity()

    import probelib.data.demo as demo
    monkeypatch.setattr(demo, "demo_observer", lambda **kw: FakeObserver())
    ds = SimpleNamespace(voxels={"FFA": {"observer_index": np.array([4, 9])},
                                 "PPA": {"observer_index": np.array([1, 2, 3, 7])}})
    observer_for_rois(ds, ["FFA", "PPA"])
    np.testing.assert_array_equal(calls["columns"], [4, 9, 1, 2, 3, 7])
    expected = np.zeros((6, 2))
    expected[:2, 0] = 0.5
    expected[2:, 1] = 0.25
    np.testing.assert_allclose(calls["weights"], expected)
    with pytest.raises(ValueError, match="demo"):
        observer_for_rois(SimpleNamespace(voxels={}), ["FFA"])


# ------------------------------------------------------------------------------- perturbations


def test_input_gradients_and_agreement(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, D, generator=g, dtype=torch.float64).float()
    x = _images(3)
    grads = input_gradients(Linear(w), x)
    assert grads.shape == (3, 2, D)
    np.testing.assert_allclose(grads, np.broadcast_to(w.numpy(), (3, 2, D)), rtol=1e-5, atol=1e-6)
    cached = input_gradients(Linear(w), x, key={"model": "w"})
    again = input_gradients(Linear(w), x, key={"model": "w"})  # same model: cache hit
    np.testing.assert_array_equal(cached, again)
    # the same description with other weights is another computation: never the cached answer
    other = input_gradients(Linear(-w), x, key={"model": "w"})
    np.testing.assert_allclose(other, -cached, rtol=1e-6)
    one = input_gradients(Linear(w), x, units=[1])
    assert one.shape == (3, 1, D)

    same = gradient_agreement(grads, grads)
    np.testing.assert_allclose(same.cosine, 1.0, atol=1e-6)
    np.testing.assert_allclose(same.subspace, 1.0, atol=1e-6)
    assert same.chance == pytest.approx(2 / D)
    flipped = gradient_agreement(-grads, grads)
    np.testing.assert_allclose(flipped.cosine, -1.0, atol=1e-6)
    np.testing.assert_allclose(flipped.subspace, 1.0, atol=1e-6)   # a subspace has no sign
    # directions orthogonal to both gradients
    q, _ = np.linalg.qr(np.concatenate([w.numpy().T, rng_matrix(D, 2)], axis=1))
    ortho = np.broadcast_to(q[:, 2:].T, (3, 2, D))
    none = gradient_agreement(ortho, grads)
    np.testing.assert_allclose(none.cosine, 0.0, atol=1e-5)
    np.testing.assert_allclose(none.subspace, 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        gradient_agreement(grads, grads[:, :1])


def rng_matrix(n, k):
    return np.random.default_rng(1).standard_normal((n, k))


# ------------------------------------------------------------------------------- sensitivities

def test_sensitivity_agreement():
    rng = np.random.default_rng(0)
    ref = np.exp(rng.standard_normal((12, 3)))
    double = sensitivity_agreement(2 * ref, ref)
    assert double["level_ratio"] == pytest.approx(2.0)
    assert double["log_level_error"] == pytest.approx(math.log(2))
    assert double["profile_r"] == pytest.approx(1.0)
    half = sensitivity_agreement(ref / 2, ref)
    assert half["log_level_error"] == pytest.approx(math.log(2))   # symmetric
    other = sensitivity_agreement(np.exp(rng.standard_normal((12, 3))), ref)
    assert abs(other["profile_r"]) < 0.8
    assert sensitivity_agreement(ref[:, 0], ref[:, 0])["profile_r"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="> 0"):
        sensitivity_agreement(ref - 10, ref)
    with pytest.raises(ValueError, match="shape"):
        sensitivity_agreement(ref[:, :2], ref)


def test_rank_candidates_and_winners():
    table = pd.DataFrame({"model": ["a", "b", "c"], "r": [0.8, 0.9, np.nan],
                          "error": [0.1, 0.5, 0.05]})
    criteria = {"r": True, "error": False}
    ranked = rank_candidates(table, criteria)
    assert ranked["rank_r"].tolist() == [2, 1, 3]          # NaN ranks last
    assert ranked["rank_error"].tolist() == [2, 3, 1]
    assert winners(table, criteria) == {"r": "b", "error": "c"}
    with pytest.raises(ValueError, match="no column"):
        rank_candidates(table, {"missing": True})


def test_transfer_table_separates_aligned_and_orthogonal_targets():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, D, generator=g)
    w_orth = torch.randn(1, D, generator=g)
    w_orth = w_orth - (w_orth @ w.T) / (w @ w.T) * w          # orthogonal to the source gradient
    source, aligned, orth = Linear(w), Linear(2 * w), Linear(w_orth)
    x = _images(5)
    probe = pgd(source, x, eps=0.5, norm="l2", steps=3, direction="abs", store_perturbations=True,
                progress=False)
    table = transfer_table({"pgd": probe}, x, {"self": source, "aligned": aligned,
                                                       "orth": orth}, scale=2.0)
    by = table.set_index("target")
    white_box = float(np.mean(probe.sensitivity)) / 2.0
    assert by.loc["self", "change"] == pytest.approx(white_box, rel=1e-4)
    assert by.loc["aligned", "change"] == pytest.approx(2 * white_box, rel=1e-4)
    assert by.loc["orth", "change"] < 1e-3 * white_box
    assert by.loc["self", "gain"] > 5            # the worst case beats a random direction
    assert by.loc["orth", "gain"] < 0.1
    assert set(table.columns) == {"attack", "target", "change", "control", "gain"}


# ------------------------------------------------------------------------------- caching

def test_cached_optimize_and_responses():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, D, generator=g)
    x = _images(2)
    up = cached_optimize(Linear(w), x[0], 1, "maximize", key={"m": "w"}, steps=3)
    assert up.objective[-1] > up.objective[0] and up.images.shape == (4, *SHAPE)
    hit = cached_optimize(Linear(w), x[0], 1, "maximize", key={"m": "w"}, steps=3)
    np.testing.assert_array_equal(hit.images, up.images)          # same model and settings: cached
    flipped = cached_optimize(Linear(-w), x[0], 1, "maximize", key={"m": "w"}, steps=3)
    assert flipped.objective[-1] > flipped.objective[0]           # other weights: its own result
    assert not np.array_equal(flipped.images, up.images)
    down = cached_optimize(Linear(w), x[0], 1, "minimize", key={"m": "w"}, steps=3)
    assert down.objective[-1] < down.objective[0]
    other = cached_optimize(Linear(w), x[0], 1, "maximize", key={"m": "w"}, steps=2)
    assert len(other.steps) == 3                                  # settings are part of the key
    with pytest.raises(ValueError, match="mode"):
        cached_optimize(Linear(w), x[0], 1, "up")
    r = cached_responses(Linear(w), x, key={"m": "w"})
    np.testing.assert_allclose(r, (x.flatten(1) @ w.T).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(cached_responses(Linear(w), x, key={"m": "w"}), r)
    np.testing.assert_allclose(cached_responses(Linear(-w), x, key={"m": "w"}), -r, rtol=1e-6)


def test_tv_weight_balances_gradients():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, D, generator=g)
    x = _images(1)[0]
    x_req = x[None].clone().requires_grad_(True)
    (g_tv,) = torch.autograd.grad(total_variation(x_req).sum(), x_req)
    weight = tv_weight(Linear(w), x, 0, relative=0.5)
    assert weight * float(g_tv.norm()) == pytest.approx(0.5 * float(w.norm()), rel=1e-4)
    # a model 10 x steeper gets a 10 x larger weight: the same relative regularisation
    assert tv_weight(Linear(10 * w), x, 0, 0.5) == pytest.approx(10 * weight, rel=1e-4)
    assert tv_weight(Linear(w), x, 0, 0.0) == 0.0
    with pytest.raises(ValueError, match="constant"):
        tv_weight(Linear(w), torch.full(SHAPE, 0.5), 0, 0.5)


def test_select_units_and_cached_probes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, D, generator=g)
    x = _images(2)
    sel = SelectUnits(Linear(w), [2, 0])
    with torch.no_grad():
        torch.testing.assert_close(sel(x), Linear(w)(x)[:, [2, 0]])
    a = cached_pgd(sel, x, key={"m": "sel"}, eps=0.3, norm="l2", steps=2,
                               direction="abs", units=[1])
    assert a.sensitivity.shape == (1, 2, 1) and np.all(a.sensitivity > 0)
    b = cached_pgd(SelectUnits(Linear(w), [2, 0]), x, key={"m": "sel"},
                      eps=0.3, norm="l2", steps=2, direction="abs", units=[1])
    np.testing.assert_array_equal(a.sensitivity, b.sensitivity)    # the same model: cached
    c = cached_pgd(SelectUnits(Linear(-5 * w), [2, 0]), x, key={"m": "sel"},
                      eps=0.3, norm="l2", steps=2, direction="abs", units=[1])
    np.testing.assert_allclose(c.sensitivity, 5 * a.sensitivity, rtol=1e-4)  # other weights
    f = cached_fgsm(sel, x, eps=[0.01], direction="abs")
    # a linear unit's FGSM change is eps * ||w||_1 exactly (no clamping away from the box edges)
    np.testing.assert_allclose(f.sensitivity[0, :, 0], 0.01 * w[2].abs().sum().item(), rtol=1e-4)


def test_transfer_table_cache_is_keyed_by_probe_content():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(1, D, generator=g)
    x = _images(3)
    probe = pgd(Linear(w), x, eps=0.5, norm="l2", steps=2, direction="abs", store_perturbations=True,
                progress=False)
    t1 = transfer_table({"p": probe}, x, {"t": Linear(w)}, key={"t": "w"})
    t2 = transfer_table({"p": probe}, x, {"t": Linear(w)}, key={"t": "w"})
    pd.testing.assert_frame_equal(t1, t2)                          # same targets and probes: cached
    t4 = transfer_table({"p": probe}, x, {"t": Linear(3 * w)}, key={"t": "w"})
    assert t4.loc[0, "change"] == pytest.approx(3 * t1.loc[0, "change"], rel=1e-4)  # other target
    other = pgd(Linear(-w), x, eps=0.25, norm="l2", steps=2, direction="abs", store_perturbations=True,
                progress=False)
    t3 = transfer_table({"p": other}, x, {"t": Linear(w)}, key={"t": "w"})
    assert t3.loc[0, "change"] < 0.75 * t1.loc[0, "change"]      # other probes: recomputed


def test_probe_models_resample_smoothed_models_only(smoothed_model):
    model, x = smoothed_model
    plain = EncodingModel(nn.Sequential(nn.Flatten(), nn.Linear(D, 2)), nn.Linear(2, 1))
    fit = SimpleNamespace(models={("m+smooth0.1", "A"): model, ("m+smooth0.1", "B"): model, ("p", "A"): plain})
    probing = ProbeModels(fit, n_samples=2, probe_samples=5, digest="d", seed=3)
    a, b = probing.model("m+smooth0.1", "A"), probing.model("m+smooth0.1", "B")
    assert a.encoder is b.encoder and a.encoder.n_samples == 5 and a.readout is model.readout
    assert probing.model("p", "A") is plain
    assert probing.key("m+smooth0.1", "A") == {"dataset": "d", "spec": "m+smooth0.1", "roi": "A",
                                               "n_samples": 5, "seed": 3}
    assert probing.key("p", "A")["n_samples"] == 2
    same = ProbeModels(fit, n_samples=2, probe_samples=2, digest="d")
    assert same.model("m+smooth0.1", "A") is model


def test_transfer_with_control_and_cached_control_of(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, D, generator=g)
    source, target = Linear(w), Linear(2 * w)
    x = _images(3)
    probe = pgd(source, x, eps=[0.3], norm="l2", steps=2, direction="abs", store_perturbations=True)
    moved, noise = transfer_with_control(probe, x, target, seed=1)
    # a target twice as steep moves twice as much under the same perturbations
    np.testing.assert_allclose(moved.sensitivity, 2 * probe.sensitivity, rtol=1e-4)
    assert noise.sensitivity.shape == probe.sensitivity.shape and (noise.sensitivity < moved.sensitivity).all()
    s_moved, s_noise = cached_transfer_with_control(source, probe, x, target, key={"t": 1}, seed=1)
    np.testing.assert_array_equal(s_moved, moved.sensitivity)
    np.testing.assert_array_equal(s_noise, noise.sensitivity)
    shuffled = cached_control_of(source, x, probe, "shuffled", key={"probe": "pgd"}, seed=2)
    again = cached_control_of(source, x, probe, "shuffled", key={"probe": "pgd"}, seed=2)
    np.testing.assert_array_equal(shuffled.sensitivity, again.sensitivity)
    assert shuffled.sensitivity.shape == probe.sensitivity.shape
    with pytest.raises(ValueError, match="unknown control"):
        cached_control_of(source, x, probe, "blur")
