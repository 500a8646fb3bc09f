"""Tests of transfer across a panel (probelib.probes.transfer, probes.cached.panel_transfer), budgets and subspaces on tiny models (3 x 8 x 8 images), with analytic answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probelib.probes import fixed_effect, pgd
from probelib.data.dataset import Dataset, probe_images
from probelib.model import EncodingModel
from probelib.fitting import PanelFit, dataset_digest
from probelib.probes.cached import panel_fixed_effect, panel_pgd
from probelib.probes.budgets import fixed_effect_budget, l2_probe_settings, scale_eps
from probelib.probes.cached import panel_subspaces, panel_transfer
from probelib.probes.transfer import evaluate_transfer, probe_deltas
from probelib.tables import group_means, model_groups

SHAPE = (3, 8, 8)
D = 3 * 8 * 8


class Linear(nn.Module):
    """r = W vec(x) + b (V outputs)."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone().float())

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Tanh(nn.Module):
    """A small nonlinear encoder: tanh of a fixed random projection (name for cache keys)."""

    def __init__(self, seed: int, width: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(width, D, generator=g) / np.sqrt(D) * 4)
        self.name = f"tanh{seed}"

    def forward(self, x):
        return torch.tanh(x.flatten(1) @ self.proj.T)


def _dataset(n: int = 10, v: int = 6, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    stimuli = rng.uniform(0.2, 0.8, (n, *SHAPE)).astype(np.float32)
    responses = {"FFA": rng.normal(size=(n, v)).astype(np.float32),
                 "PPA": rng.normal(size=(n, 1)).astype(np.float32) * 3}
    return Dataset(stimuli=stimuli, responses=responses, image_ids=np.arange(n),
                   split={"train": np.arange(6), "test": np.arange(6, n)})


def _panel(ds: Dataset, seeds=(1, 2, 3), v: int = 6) -> PanelFit:
    fit = PanelFit(ds, dataset_digest(ds), "ridge", {})
    for s in seeds:
        g = torch.Generator().manual_seed(100 + s)
        readout = nn.Linear(16, v)
        with torch.no_grad():
            readout.weight.copy_(torch.randn(v, 16, generator=g))
            readout.bias.zero_()
        fit.models[(f"m{s}", "FFA")] = EncodingModel(Tanh(s), readout, name=f"m{s}")
    return fit


def test_scale_eps_keeps_rms_per_pixel():
    assert scale_eps(5.0, 224) == pytest.approx(5.0)
    assert scale_eps(5.0, 96) == pytest.approx(5 * 96 / 224)
    assert scale_eps([1, 2], 112) == pytest.approx([0.5, 1.0])
    assert scale_eps(3 / 255, 64, norm="linf") == pytest.approx(3 / 255)
    # same RMS per pixel: eps / sqrt(3 S^2) does not depend on S
    rms = [scale_eps(5.0, s) / np.sqrt(3 * s * s) for s in (64, 96, 224)]
    assert np.allclose(rms, rms[0])
    with pytest.raises(ValueError):
        scale_eps(1.0, 96, norm="l1")


def test_probe_images_is_a_seeded_subset_of_the_test_split():
    ds = _dataset(n=30)
    ds.split = {"train": np.arange(10), "test": np.arange(10, 30)}
    a, b = probe_images(ds, 5, seed=3), probe_images(ds, 5, seed=3)
    assert np.array_equal(a, b) and len(a) == 5 and np.all(np.diff(a) > 0)
    assert set(a) <= set(range(10, 30))
    assert not np.array_equal(a, probe_images(ds, 5, seed=4))
    assert np.array_equal(probe_images(ds, None), np.arange(10, 30))
    assert np.array_equal(probe_images(ds, 100), np.arange(10, 30))


def test_l2_probe_settings():
    kw = l2_probe_settings(96)
    assert "attack" not in kw and kw["norm"] == "l2" and kw["direction"] == "abs"
    assert kw["eps"] == [pytest.approx(5 * 96 / 224)] and kw["store_perturbations"]


def test_model_groups():
    groups = model_groups(["mobilenet_v2", "mobilenet_v2+smooth0.25", "alexnet:untrained",
                           "resnet50_l2_eps0", "resnet50_l2_eps3", "resnet50_linf_eps4"])
    assert groups == {"standard": ["mobilenet_v2", "resnet50_l2_eps0"],
                      "robust": ["mobilenet_v2+smooth0.25", "resnet50_l2_eps3", "resnet50_linf_eps4"],
                      "untrained": ["alexnet:untrained"]}
    assert "untrained" not in model_groups(["mobilenet_v2"])


def test_group_means_blocks():
    names = ["a", "b", "c", "d"]
    m = np.array([[1, 2, 5, 5], [2, 1, 5, 5], [5, 5, 1, 9], [5, 5, 9, 1]], dtype=float)
    groups = {"g1": ["a", "b"], "g2": ["c", "d"]}
    t = group_means(m, names, groups).set_index(["from", "to"])
    assert t.loc[("g1", "g1"), "mean"] == 2 and t.loc[("g2", "g2"), "mean"] == 9
    assert t.loc[("g1", "g2"), "mean"] == 5 and t.loc[("g1", "g2"), "n_pairs"] == 4
    assert ("g2", "g1") not in t.index and np.isnan(t.loc[("g1", "g1"), "sem"])
    # asymmetric (transfer): ordered pairs; per-image matrices give a SEM over images
    a = np.stack([m, m + np.triu(np.ones((4, 4)), 1)])
    t2 = group_means(a, names, groups, symmetric=False).set_index(["from", "to"])
    assert t2.loc[("g1", "g2"), "mean"] == pytest.approx(5.5)
    assert t2.loc[("g2", "g1"), "mean"] == pytest.approx(5.0)
    assert t2.loc[("g1", "g2"), "sem"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        group_means(m, names, {"g": ["a", "z"]})


def test_fixed_effect_budget_first_order():
    s = np.array([[1.0, 2.0], [4.0, 0.5]])
    # need eps * target / s = 2 * 1 / 0.5 = 4 at most -> margin 2 -> 8
    assert fixed_effect_budget(s, eps=2.0, target=1.0) == pytest.approx(8.0)
    assert fixed_effect_budget(s, eps=2.0, target=1.0, cap=5.0) == pytest.approx(5.0)
    assert fixed_effect_budget(s * 100, eps=2.0, target=1.0) == pytest.approx(0.25 * 2 * 2)
    with pytest.raises(ValueError):
        fixed_effect_budget(s, eps=2.0, target=0.0)


def test_evaluate_transfer_linear_models_analytic():
    """Linear models: a unit-norm probe along w_s changes target t by eps * |w_t . w_s| / |w_s|."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 1, D, generator=g, dtype=torch.float64)
    w[1] = 0.8 * w[0] + 0.2 * w[1]                      # model b shares a's direction largely
    models = {n: Linear(w[i]) for i, n in enumerate("abc")}
    x = torch.full((4, *SHAPE), 0.5)
    eps = 0.5                                           # no clamping: |delta| << 0.5 per pixel
    deltas = {n: (eps * w[i, 0] / w[i, 0].norm()).float().reshape(1, 1, *SHAPE).expand(1, 4, *SHAPE).numpy()
              for i, n in enumerate("abc")}
    res = evaluate_transfer(models, x, deltas, units=[0], direction="abs", seed=0)
    expected = np.array([[eps * abs(float(w[t, 0] @ w[s, 0])) / float(w[s, 0].norm())
                          for t in range(3)] for s in range(3)])
    assert res.change.shape == (3, 3, 4, 1)
    assert np.allclose(res.matrix, expected, rtol=1e-4)
    assert np.allclose(res.probe_norm, eps, rtol=1e-5)
    assert np.allclose(np.diag(res.relative), 1.0)
    assert res.relative[1, 0] > 0.9 and res.relative[2, 0] < 0.2   # b's probe moves a; c's does not
    # the random control of the same norm moves a linear model by eps * |w . g| ~ eps |w| / sqrt(D)
    assert np.all(res.control_matrix < 0.25 * np.diag(res.matrix)[None, :])
    assert np.allclose(res.signed_change[0, 0], eps * float(w[0, 0].norm()), rtol=1e-4)
    tab = res.table()
    assert len(tab) == 3 * 3 * 4 and set(tab.columns) >= {"source", "target", "change", "control"}
    # a subset of sources: every model is still a target; no own sensitivity for non-sources
    sub = evaluate_transfer(models, x, {"c": deltas["c"], "a": deltas["a"]}, units=[0])
    assert sub.sources == ["a", "c"] and sub.change.shape == (2, 3, 4, 1)
    assert np.allclose(sub.matrix, expected[[0, 2]], rtol=1e-4)
    assert np.isnan(sub.own[1]) and np.allclose(sub.relative[:, [0, 2]], res.relative[[0, 2]][:, [0, 2]])
    with pytest.raises(ValueError):
        evaluate_transfer(models, x, {"z": deltas["a"]}, units=[0])


def test_panel_transfer_with_cached_probes_and_fixed_effect():
    ds = _dataset()
    fit = _panel(ds)
    idx = np.array([6, 7, 8])
    kw = {k: v for k, v in l2_probe_settings(8, eps=28.0, steps=4).items() if k != "attack"}
    probes = {s: panel_pgd(fit, s, "FFA", image_index=idx, units=[0, 3], **kw)
              for s in fit.specs}
    res = panel_transfer(fit, "FFA", probes, idx)
    assert res.change.shape == (3, 3, 3, 2)
    # the diagonal is each source's own sensitivity as computed by the attack
    for i, s in enumerate(fit.specs):
        assert np.allclose(res.change[i, i], probes[s].sensitivity[0], rtol=1e-4, atol=1e-6)
    # targeted probes beat random directions of the same norm on their own model
    assert np.all(np.diag(res.matrix) > 2 * np.diag(res.control_matrix))
    again = panel_transfer(fit, "FFA", probes, idx)           # cached, identical
    assert np.array_equal(again.change, res.change)
    # fixed-effect probes transfer the same way
    fe = {s: panel_fixed_effect(fit, s, "FFA", image_index=idx, units=[0],
                          target_change=0.2, norm="l2", direction="abs", eps_max=2.0, steps=4,
                          store_perturbations=True) for s in ["m3", "m1"]}
    res_fe = panel_transfer(fit, "FFA", fe, idx, targets=fit.specs)
    assert res_fe.sources == ["m1", "m3"] and res_fe.names == ["m1", "m2", "m3"]
    for i, s in enumerate(res_fe.sources):
        reached = fe[s].reached[:, 0]
        assert reached.any()
        own = res_fe.change[i, res_fe.names.index(s), :, 0]
        assert np.all(own[reached] >= 0.2 * (1 - 1e-6))
        assert np.allclose(res_fe.probe_norm[i, :, 0][reached], fe[s].eps[reached, 0], rtol=1e-3)
    # the first target need not be a source (a model that only receives probes)
    only_m3 = panel_transfer(fit, "FFA", {"m3": fe["m3"]}, idx, targets=["m2", "m3"])
    assert only_m3.sources == ["m3"] and only_m3.names == ["m2", "m3"]
    assert np.allclose(only_m3.change[0], res_fe.change[res_fe.sources.index("m3"), 1:])
    with pytest.raises(ValueError):
        panel_transfer(fit, "FFA", probes, np.array([6, 7, 9]))
    with pytest.raises(ValueError, match="empty"):
        panel_transfer(fit, "FFA", {}, idx, targets=["m1"])


def test_probe_deltas_shapes_and_errors():
    model = Linear(torch.randn(2, D))
    x = torch.rand(3, *SHAPE) * 0.5 + 0.25
    res = pgd(model, x, [0.1, 0.3], steps=3, direction="abs", store_perturbations=True)
    d = probe_deltas(res, eps_index=1)
    assert d.shape == (2, 3, *SHAPE) and d.dtype == np.float32
    assert np.allclose(np.linalg.norm(d.reshape(2, 3, -1), axis=2), 0.3, rtol=1e-3)
    fe = fixed_effect(model, x, 0.05, units=[1], eps_max=1.0, store_perturbations=True)
    assert probe_deltas(fe).shape == (1, 3, *SHAPE)
    with pytest.raises(ValueError):
        probe_deltas(pgd(model, x, 0.1, steps=2, store_perturbations=False))


def test_panel_subspaces_similarity():
    ds = _dataset()
    fit = _panel(ds, seeds=(1, 2))
    fit.models[("m1copy", "FFA")] = fit.models[("m1", "FFA")]   # the same model twice
    idx = np.array([6, 7])
    panel = panel_subspaces(fit, ["m1", "m1copy", "m2"], "FFA", idx, k=3, progress=False)
    assert panel.bases.shape == (3, 2, D, 3) and panel.singular_values.shape == (3, 2, 3)
    gram = np.einsum("dk,dl->kl", panel.bases[0, 0], panel.bases[0, 0])
    assert np.allclose(gram, np.eye(3), atol=1e-4)
    assert np.all(np.diff(panel.singular_values, axis=2) <= 1e-6)
    sim = panel.similarity()
    assert sim.shape == (2, 3, 3)
    assert np.allclose(sim[:, 0, 1], 1.0, atol=1e-4)             # identical models
    assert np.all(sim[:, 0, 2] < 0.5)                            # unrelated random models: near chance
    assert panel.chance == pytest.approx(3 / D)
    assert panel.directions("m2", 1).shape == (3, *SHAPE)
    # the top singular value is the norm of J restricted to its top direction: check against autograd
    x = torch.from_numpy(ds.stimuli[7])[None].requires_grad_(True)
    r = fit.models[("m2", "FFA")](x)[0]
    jac = torch.stack([torch.autograd.grad(r[i], x, retain_graph=True)[0].flatten() for i in range(6)])
    assert panel.singular_values[2, 1, 0] == pytest.approx(float(torch.linalg.svdvals(jac)[0]), rel=1e-3)
    with pytest.raises(ValueError):
        panel_subspaces(fit, ["m1"], "FFA", idx, k=7, progress=False)


def test_similarity_by_dimension_matches_subspace_similarity():
    from probelib.geometry import subspace_similarity
    ds = _dataset()
    fit = _panel(ds, seeds=(1, 2))
    panel = panel_subspaces(fit, ["m1", "m2"], "FFA", np.array([6, 7]), k=4, progress=False)
    by_dim = panel.similarity_by_dimension("m1", "m2")
    assert by_dim.shape == (2, 4)
    for n in range(2):
        for j in (1, 3, 4):
            assert by_dim[n, j - 1] == pytest.approx(
                subspace_similarity(panel.bases[0, n, :, :j], panel.bases[1, n, :, :j]), rel=1e-5)
    assert np.allclose(panel.similarity_by_dimension("m1", "m1"), 1.0, atol=1e-4)
    assert by_dim[:, -1] == pytest.approx(panel.similarity()[:, 0, 1], rel=1e-5)


def test_evaluate_transfer_runs_each_target_where_it_lives(monkeypatch):
    """Targets run through probelib.probes (transfer, random_control), which resolve the device:
    ``device=None`` is where each target lives, an explicit device is passed on."""
    import sys

    transfer_module = sys.modules["probelib.probes.transfer"]  # (probelib.probes.transfer is also the function)

    seen = []
    real = transfer_module.resolve_device
    monkeypatch.setattr(transfer_module, "resolve_device",
                        lambda model, images, device: seen.append(device) or real(model, images, device))
    x = torch.full((2, *SHAPE), 0.5)
    deltas = {"a": np.zeros((1, 2, *SHAPE), np.float32)}
    lin = nn.Sequential(nn.Flatten(), nn.Linear(D, 1))
    res = evaluate_transfer({"a": lin}, x, deltas, units=[0])
    assert res.change.shape == (1, 1, 2, 1) and seen and set(seen) == {None}
    seen.clear()
    evaluate_transfer({"a": lin}, x, deltas, units=[0], device="cpu")
    assert seen and set(seen) == {"cpu"}
