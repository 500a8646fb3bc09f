"""Tests of FGSM sweeps of a panel with their controls (probelib.probes.cached), the sweep tables,
percentiles, example choice and the discriminability comparison of paper 1 (Fig. 3D)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from probelib import probes
from probelib.metrics import response_sd
from probelib.data.dataset import Dataset, make_split, probe_images
from probelib.metrics import normalized_variance, sparseness
from probelib.fitting import PanelFit, dataset_digest
from probelib.data.dataset import preferred_example
from probelib.metrics import compare_discriminability, percentile_of
from probelib.probes.cached import cached_control, sweep_panel
from probelib.probes.results import subset_eps
from probelib.tables import sensitivity_frame

SIDE = 6


class Linear(nn.Module):
    """r = W vec(x) + b with V outputs (float32)."""

    def __init__(self, n_units: int = 1, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_units, 3 * SIDE * SIDE, generator=g))
        self.bias = nn.Parameter(torch.zeros(n_units))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def tiny_dataset(n: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    # pixels well inside (0, 1) so that FGSM steps are never clamped by the box
    stim = (0.3 + 0.4 * rng.random((n, 3, SIDE, SIDE))).astype(np.float32)
    cats = ["face"] * 4 + ["place"] * 6 + ["object"] * (n - 10)
    resp = {"FFA": rng.normal(size=(n, 1)).astype(np.float32),
            "PPA": (2.0 * rng.normal(size=(n, 1))).astype(np.float32)}
    return Dataset(stimuli=stim, responses=resp, image_ids=np.arange(n), split=make_split(n, 10, seed),
                   categories=cats)


def tiny_fit(ds: Dataset) -> PanelFit:
    fit = PanelFit(ds, dataset_digest(ds), "ols", {})
    for s, spec in enumerate(("lin_a", "lin_b")):
        for r, roi in enumerate(ds.rois):
            fit.models[(spec, roi)] = Linear(1, seed=10 * s + r)
    return fit


# ---------------------------------------------------------------------------- probe_images

def test_probe_images_stratified_subset_of_split():
    ds = tiny_dataset(40)
    idx = probe_images(ds, 8, seed=1)
    test = set(ds.split["test"].tolist())
    assert len(idx) == 8 and len(set(idx.tolist())) == 8
    assert set(idx.tolist()) <= test
    assert np.all(np.diff(idx) > 0)
    cats = {ds.categories[i] for i in idx}
    present = {ds.categories[i] for i in test}
    assert cats == present  # every category of the split is represented
    # deterministic, and the whole split for None / large n
    np.testing.assert_array_equal(idx, probe_images(ds, 8, seed=1))
    np.testing.assert_array_equal(probe_images(ds, None), np.sort(ds.split["test"]))
    np.testing.assert_array_equal(probe_images(ds, 1000), np.sort(ds.split["test"]))
    with pytest.raises(ValueError):
        probe_images(ds, 0)


def test_probe_images_without_categories():
    ds = tiny_dataset(40)
    ds.categories = None
    idx = probe_images(ds, 5, seed=0)
    assert len(idx) == 5 and set(idx.tolist()) <= set(ds.split["test"].tolist())


# ---------------------------------------------------------------------------- sweeps

def test_sweep_panel_linear_closed_form_and_controls():
    ds = tiny_dataset()
    fit = tiny_fit(ds)
    eps = [1 / 255, 3 / 255, 8 / 255]
    index = probe_images(ds, 6)
    sweep = sweep_panel(fit, eps, index, controls={"random": None, "shuffled": [3 / 255]},
                        progress=False)
    assert set(sweep) == set(fit.models)
    for key, parts in sweep.items():
        w = fit.models[key].weight.detach().numpy()
        tgt = parts["targeted"]
        assert tgt.sensitivity.shape == (3, 6, 1)
        expected = np.array(eps)[:, None, None] * np.abs(w).sum()
        np.testing.assert_allclose(tgt.sensitivity, np.broadcast_to(expected, tgt.sensitivity.shape),
                                   rtol=1e-4)
        # controls: random at every budget, shuffled only at 3/255; both far below targeted
        assert parts["random"].sensitivity.shape == (3, 6, 1)
        assert parts["shuffled"].sensitivity.shape == (1, 6, 1)
        np.testing.assert_allclose(parts["shuffled"].eps, [3 / 255])
        assert np.abs(parts["random"].sensitivity).mean() < 0.5 * tgt.sensitivity.mean()
        assert np.abs(parts["shuffled"].sensitivity).mean() < 0.5 * tgt.sensitivity[1].mean()


def test_cached_control_is_cached_and_matches_direct_call(monkeypatch):
    ds = tiny_dataset()
    fit = tiny_fit(ds)
    eps = [2 / 255, 4 / 255]
    first = cached_control(fit, "lin_a", "FFA", "shuffled", eps, seed=3)
    direct = probes.shuffled_control(fit.models[("lin_a", "FFA")],
                                      torch.from_numpy(ds.stimuli[np.sort(ds.split["test"])]),
                                      probes.fgsm(fit.models[("lin_a", "FFA")],
                                                   torch.from_numpy(ds.stimuli[np.sort(ds.split["test"])]),
                                                   eps, store_perturbations=True), seed=3)
    np.testing.assert_allclose(first.sensitivity, direct.sensitivity, rtol=1e-5, atol=1e-6)

    calls = []
    real = probes.shuffled_control

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(probes, "shuffled_control", counting)
    again = cached_control(fit, "lin_a", "FFA", "shuffled", eps, seed=3)
    assert not calls  # served from the cache
    np.testing.assert_array_equal(again.sensitivity, first.sensitivity)
    cached_control(fit, "lin_a", "FFA", "shuffled", eps, seed=4)
    assert len(calls) == 1  # another seed is another entry
    with pytest.raises(ValueError, match="unknown control"):
        cached_control(fit, "lin_a", "FFA", "blur", eps)


def test_subset_eps_keeps_perturbations():
    lin = Linear(2)
    x = torch.full((3, 3, SIDE, SIDE), 0.5)
    res = probes.fgsm(lin, x, [1 / 255, 2 / 255, 4 / 255], store_perturbations=True)
    sub = subset_eps(res, [4 / 255, 1 / 255])
    np.testing.assert_allclose(sub.eps, [4 / 255, 1 / 255])
    np.testing.assert_array_equal(sub.sensitivity[0], res.sensitivity[2])
    np.testing.assert_array_equal(sub.perturbation(0, 1).numpy(), res.perturbation(2, 1).numpy())
    with pytest.raises(ValueError, match="not in the result"):
        subset_eps(res, 3 / 255)


# ---------------------------------------------------------------------------- tables

def test_sensitivity_frame_relative_units():
    ds = tiny_dataset()
    fit = tiny_fit(ds)
    sweep = sweep_panel(fit, [2 / 255, 5 / 255], probe_images(ds, 4), controls=("random",),
                        progress=False)
    df = sensitivity_frame(sweep, ds)
    assert set(df.columns) >= {"model", "roi", "probe", "eps", "image", "unit", "sensitivity", "relative"}
    assert len(df) == 2 * 2 * 2 * 2 * 4  # models x rois x probes x eps x images
    for roi in ds.rois:
        rows = df[df.roi == roi]
        np.testing.assert_allclose(rows.relative, rows.sensitivity / response_sd(ds.responses[roi])[0])
    # the table reproduces the ProbeResult values in order
    res = sweep[("lin_b", "PPA")]["targeted"]
    rows = df[(df.model == "lin_b") & (df.roi == "PPA") & (df.probe == "targeted")]
    np.testing.assert_allclose(rows.sensitivity.to_numpy(), res.sensitivity.ravel())
    np.testing.assert_allclose(response_sd(ds.responses["PPA"]), ds.responses["PPA"].std(0, ddof=1), rtol=1e-6)


def test_percentile_of():
    d = np.arange(10.0)  # 0..9
    assert percentile_of(-1, d) == 0.0
    assert percentile_of(100, d) == 100.0
    assert percentile_of(4.5, d) == 50.0
    assert percentile_of(4.0, d) == pytest.approx(45.0)  # 4 below, one tie counted half
    np.testing.assert_allclose(percentile_of([-1, 100], d), [0.0, 100.0])
    with pytest.raises(ValueError):
        percentile_of(1.0, [])


def test_preferred_example():
    ds = tiny_dataset()
    index = np.arange(12)  # images 0-3 faces, 4-9 places, 10-11 objects
    clean = np.array([1, 5, 2, 0, 9, 3, 3, 3, 3, 3, 20, 0], dtype=float)
    assert preferred_example(ds, index, clean, "face") == 1
    assert preferred_example(ds, index, clean, "place") == 4
    assert preferred_example(ds, index, clean, None) == 10
    assert preferred_example(ds, index, clean, "word") == 10  # no match: best overall
    with pytest.raises(ValueError):
        preferred_example(ds, index, clean[:5], "face")


# ---------------------------------------------------------------------------- discriminability

def test_compare_discriminability_paper_way():
    models = ["m1", "m2", "m3", "m4"]
    sens = pd.DataFrame({"FFA": [1.0, 4.0, 0.5, 2.0], "PPA": [2.0, 6.0, 1.0, 3.0],
                         "EBA": [1.5, 5.0, 0.4, 2.5]}, index=models)
    pred = pd.DataFrame({"FFA": [0.80, 0.82, 0.79, 0.81], "PPA": [0.70, 0.71, 0.72, 0.70],
                         "EBA": [0.75, 0.74, 0.76, 0.75]}, index=models)
    cmp = compare_discriminability(sens, pred)
    # pooled: average over replicates first, then the measures across models
    np.testing.assert_allclose(cmp.pooled.loc["sensitivity", "sparseness"],
                               sparseness(sens.mean(1).to_numpy()))
    np.testing.assert_allclose(cmp.pooled.loc["predictivity", "normalized variance"],
                               normalized_variance(pred.mean(1).to_numpy()))
    per = cmp.per_replicate
    assert len(per) == 3 * 2 * 2
    v = per[(per.replicate == "PPA") & (per.score == "sensitivity") & (per.measure == "sparseness")].value
    np.testing.assert_allclose(v, sparseness(sens["PPA"].to_numpy()))
    # spread-out sensitivities discriminate better than near-equal predictivities
    assert (cmp.pooled.loc["sensitivity"] > 10 * cmp.pooled.loc["predictivity"]).all()
    assert (cmp.tests["mean difference"] > 0).all() and (cmp.tests["p"] < 0.01).all()
    assert (cmp.tests["n"] == 3).all()


def test_compare_discriminability_single_replicate_and_errors():
    a = pd.Series([1.0, 2.0, 3.0], index=["x", "y", "z"])
    b = pd.Series([1.0, 1.0, 1.0], index=["x", "y", "z"])
    cmp = compare_discriminability(a, b)
    assert cmp.pooled.loc["predictivity", "sparseness"] == pytest.approx(0.0)
    assert np.isnan(cmp.tests.loc["sparseness", "p"])
    with pytest.raises(ValueError, match="same models"):
        compare_discriminability(a, b.rename({"z": "w"}))
    with pytest.raises(ValueError, match="at least 2 models"):
        compare_discriminability(a.iloc[:1], b.iloc[:1])


def test_stored_shuffled_control_is_a_pixel_permutation_of_the_probe():
    ds = tiny_dataset()
    fit = tiny_fit(ds)
    index = probe_images(ds, 3)
    sweep = sweep_panel(fit, [1 / 255, 3 / 255], index, controls={"shuffled": [3 / 255]},
                        store=("shuffled",), progress=False)
    parts = sweep[("lin_a", "PPA")]
    shuffled = parts["shuffled"].perturbation(0, 0).numpy()  # (N, 3, H, W)
    targeted = parts["targeted"].perturbation(1, 0).numpy()
    for k in range(len(index)):
        a = targeted[k].reshape(3, -1).T  # pixels as rows of RGB triples
        b = shuffled[k].reshape(3, -1).T
        assert not np.allclose(a, b)
        np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-7)
        np.testing.assert_allclose(np.abs(b).max(), 3 / 255, rtol=1e-5)
    # not stored by default, same values either way (same seed)
    plain = cached_control(fit, "lin_a", "PPA", "shuffled", [1 / 255, 3 / 255], index,
                           control_eps=[3 / 255])
    assert not plain.has_perturbations
    np.testing.assert_allclose(plain.sensitivity, parts["shuffled"].sensitivity)
