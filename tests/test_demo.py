"""The embedded demo: curated photographs, simulated observer, localiser ROIs (no network)."""
from __future__ import annotations

import csv
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from probelib.data import demo as D
from probelib.data.demo import DEMO_ROIS, demo_observer, load_demo, load_demo_stimuli, stimulus_sources

FREE_LICENCE = re.compile(r"^(public-domain|CC0-1\.0|CC-BY(-SA)?-\d\.\d|GPL-[23](\.0)?\+?|GFDL-1\.2\+|BSD-3-Clause"
                          r"|Apache-2\.0 AND BSD-3-Clause|MIT)(?=$| )")


@pytest.fixture(scope="module", autouse=True)
def _no_network():
    """Every test of this module runs with outgoing connections refused."""
    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in test_demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    """One cache for the module: the observer's features are computed once (10-30 s)."""
    return tmp_path_factory.mktemp("demo_cache")


@pytest.fixture(scope="module")
def voxels(demo_cache):
    return load_demo(image_size=96, average_subjects=False, cache_dir=demo_cache)


@pytest.fixture(scope="module")
def observer(demo_cache):
    return demo_observer(cache_dir=demo_cache)


@pytest.fixture(scope="module")
def roi_means(demo_cache):
    return load_demo(image_size=96, average_subjects=True, cache_dir=demo_cache)


# ------------------------------------------------------------------------------------------ stimuli
@pytest.mark.parametrize("size", [64, 160])
def test_stimuli_load_in_unit_range(size):
    images, categories, names = load_demo_stimuli(size)
    assert images.dtype == np.float32 and images.shape == (len(names), 3, size, size)
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.1
    assert len(names) >= 150 and len(set(names)) == len(names) and len(categories) == len(names)
    counts = {c: categories.count(c) for c in D.CATEGORIES}
    assert set(categories) == set(D.CATEGORIES)
    assert all(counts[c] >= 15 for c in DEMO_ROIS.values()), counts


def test_sources_csv_lists_every_file_with_a_free_licence():
    rows = stimulus_sources()
    with open(D.STIMULI_DIR / "SOURCES.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["file", "category", "package", "original_path", "licence", "notes"]
    files = sorted(p.name for p in D.STIMULI_DIR.glob("*.jpg"))
    assert sorted(r["file"] for r in rows) == files
    for r in rows:
        assert FREE_LICENCE.match(r["licence"]), (r["file"], r["licence"])
        assert r["package"] and r["original_path"] and r["category"] in D.CATEGORIES
        assert r["file"].startswith(r["category"] + "_")
        assert "lena" not in r["original_path"].lower()
    crops = [r for r in rows if "CROP" in r["notes"]]
    assert all("crop" in r["file"] for r in crops)
    assert len(rows) - len(crops) >= 150  # distinct photographs, crops of one photo not counted
    assert sum((D.STIMULI_DIR / f).stat().st_size for f in files) < 5e6


# ------------------------------------------------------------------------------------------ dataset
def test_rois_are_category_selective(voxels):
    cats = np.asarray(voxels.categories)
    assert voxels.rois == list(DEMO_ROIS)
    for roi, cat in DEMO_ROIS.items():
        resp, meta = voxels.responses[roi], voxels.voxels[roi]
        n_vox = resp.shape[1]
        assert n_vox >= 10, roi
        assert voxels.repeats[roi].shape == (voxels.n_images, 3, n_vox)
        np.testing.assert_allclose(voxels.repeats[roi].mean(1), resp, atol=1e-6)
        assert np.all(meta["t"] > 7.0) and np.all(meta["preferred_category"] == cat)
        assert set(np.unique(meta["subject"])) == {1, 2, 3}
        preferred = resp[cats == cat].mean()
        for other in set(D.CATEGORIES) - {cat}:
            assert preferred > resp[cats == other].mean() + 0.3, (roi, other)
        nc = voxels.noise_ceiling[roi]
        assert nc.shape == (n_vox,) and np.all((nc > 0) & (nc <= 1))


def test_threshold_selects_fewer_voxels(demo_cache, voxels):
    strict = load_demo(image_size=32, average_subjects=False, t_threshold=8.0, cache_dir=demo_cache)
    for roi in DEMO_ROIS:
        assert 0 < strict.responses[roi].shape[1] < voxels.responses[roi].shape[1]
        assert np.all(strict.voxels[roi]["t"] > 8.0)
    with pytest.raises(ValueError, match="no voxels with localiser t"):
        load_demo(image_size=32, t_threshold=1e6, cache_dir=demo_cache)


def test_subject_average_is_the_mean_of_subject_roi_means(voxels, roi_means):
    for roi in DEMO_ROIS:
        assert roi_means.responses[roi].shape == (roi_means.n_images, 1)
        assert roi_means.repeats[roi].shape == (roi_means.n_images, 3, 1)
        assert roi_means.noise_ceiling[roi].shape == (1,)
        subj = voxels.voxels[roi]["subject"]
        expected = np.mean([voxels.responses[roi][:, subj == s].mean(1) for s in (1, 2, 3)], axis=0)
        np.testing.assert_allclose(roi_means.responses[roi][:, 0], expected, atol=1e-5)
        assert roi_means.noise_ceiling[roi][0] > np.median(voxels.noise_ceiling[roi])
    n = roi_means.n_images
    assert len(roi_means.split["train"]) == round(0.75 * n) and len(roi_means.split["test"]) == n - round(0.75 * n)


def test_deterministic_under_seed(demo_cache, voxels):
    again = load_demo(image_size=96, average_subjects=False, cache_dir=demo_cache)
    other = load_demo(image_size=96, average_subjects=False, seed=1, cache_dir=demo_cache)
    for roi in DEMO_ROIS:
        np.testing.assert_array_equal(again.repeats[roi], voxels.repeats[roi])
        np.testing.assert_array_equal(again.voxels[roi]["observer_index"], voxels.voxels[roi]["observer_index"])
    np.testing.assert_array_equal(again.split["test"], voxels.split["test"])
    assert not np.array_equal(other.split["test"], voxels.split["test"])
    assert not np.array_equal(other.voxels["FFA"]["observer_index"], voxels.voxels["FFA"]["observer_index"])


def _held_out_r(feats: np.ndarray, y: np.ndarray, alpha: float, fit: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Pearson r (V,) on images ``test`` of a ridge readout fitted on images ``fit``."""
    from sklearn.linear_model import Ridge

    from probelib.metrics import pearson_r
    pred = Ridge(alpha=alpha).fit(feats[fit], y[fit]).predict(feats[test]).reshape(len(test), -1)
    return np.atleast_1d(pearson_r(pred, y[test]))


def test_mobilenet_ridge_predicts_held_out_responses_below_the_ceiling(voxels, roi_means):
    from probelib import load_encoder

    enc = load_encoder("mobilenet_v2")
    with torch.no_grad():
        feats = torch.cat([enc(torch.from_numpy(voxels.stimuli[i:i + 64]))
                           for i in range(0, voxels.n_images, 64)]).numpy()
    tr, te = voxels.split["train"], voxels.split["test"]
    # alpha chosen on the training images only (inner split), as a ridge readout would
    inner = np.random.default_rng(0).permutation(tr)
    fit_i, val_i = inner[: int(0.8 * len(tr))], inner[int(0.8 * len(tr)):]
    for ds in (voxels, roi_means):
        for roi in DEMO_ROIS:
            y = ds.responses[roi]
            scores = {a: np.nanmean(_held_out_r(feats, y, a, fit_i, val_i)) for a in 10.0 ** np.arange(0, 6)}
            r = _held_out_r(feats, y, max(scores, key=scores.get), tr, te)
            ceiling = ds.noise_ceiling[roi]
            assert np.median(r) > 0.3, (roi, np.median(r))
            assert np.median(r) < np.median(ceiling), (roi, np.median(r), np.median(ceiling))


# ------------------------------------------------------------------------------------------ observer
def test_observer_reproduces_the_noiseless_roi_means(observer, roi_means):
    idx = np.arange(0, roi_means.n_images, 14)
    x = torch.from_numpy(roi_means.stimuli[idx])
    for roi in ("FFA", "PPA"):
        obs = observer.for_roi(roi_means, roi)
        with torch.no_grad():
            pred = obs(x).numpy()
        assert pred.shape == (len(idx), 1)
        # the repeat- and voxel-averaged noise left in the ROI mean is small
        assert np.abs(pred - roi_means.responses[roi][idx]).max() < 0.2


def test_observer_is_differentiable_and_voxelwise(demo_cache, observer, voxels):
    assert len(observer.subject) == 3 * 400 and set(np.unique(observer.region)) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="not generated by this observer"):
        demo_observer(n_subjects=1, cache_dir=demo_cache).for_roi(voxels, "FFA")
    sub = observer.for_roi(voxels, "EBA")
    x = torch.from_numpy(voxels.stimuli[:2].copy()).requires_grad_(True)
    out = sub(x)
    assert out.shape == (2, voxels.responses["EBA"].shape[1])
    out[:, 0].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_observer_is_not_a_candidate_encoder():
    from probelib.encoders import REGISTRY
    from probelib.zoo import DEMO_MODELS, DEMO_SIGMAS, demo_ladder, parse_model, smoothing_ladder

    candidates = set(DEMO_MODELS) | set(demo_ladder("mobilenet_v2")) | set(demo_ladder("efficientnet_lite0"))
    candidates |= set(smoothing_ladder("mobilenet_v2")) | set(smoothing_ladder("efficientnet_lite0"))
    assert D.OBSERVER_SIGMA in DEMO_SIGMAS  # same family as the smoothing ladder ...
    for spec in candidates:
        name, untrained, sigma = parse_model(spec)
        same = (name == D.OBSERVER_ENCODER and not untrained and sigma == D.OBSERVER_SIGMA
                and REGISTRY[name].default_layer == D.OBSERVER_LAYER)
        assert not same, spec  # ... but not one of its members
    assert REGISTRY[D.OBSERVER_ENCODER].default_layer != D.OBSERVER_LAYER
    assert D.OBSERVER_NOISE_SEED != 0  # candidates draw their smoothing noise from seed 0


def test_corrupt_feature_cache_is_recomputed(tmp_path, monkeypatch):
    images, categories, names = D._stimuli(D.OBSERVER_SIZE)
    monkeypatch.setattr(D, "_stimuli", lambda size: (images[:2], categories[:2], names[:2]))
    monkeypatch.setattr(D, "_stimuli_digest", lambda: "two-images")
    first = D.demo_features(cache_dir=tmp_path)
    outputs = list(tmp_path.rglob("output.pkl"))
    assert first.shape == (2, 448) and len(outputs) == 1
    outputs[0].write_bytes(b"\x80\x04garbage")  # joblib reports the unreadable entry and recomputes it
    again = D.demo_features(cache_dir=tmp_path)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(D.demo_features(cache_dir=tmp_path), first, rtol=1e-5, atol=1e-6)
