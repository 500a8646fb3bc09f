"""Properties of the demo experiment (probelib.data.demo) on a stand-in backbone.

The observer's EfficientNet is replaced by a fixed 1x1 convolution (16 channels, so 64 pooled
features), which makes a whole demo dataset take a fraction of a second; the rules under test are
the demo's own: the voxel populations, the nonlinearity and its standardisation, the trial noise,
the localiser, ROI selection, subject averages, ceilings, the split, the observer's restriction
to an ROI and the features' cache key. tests/test_demo.py checks the real observer.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from probelib import cache
from probelib.data import demo
from probelib.data.demo import demo_observer, load_demo, load_demo_stimuli
from probelib.metrics import correlation_ceiling, split_half_ceiling

N_IMAGES = len(demo.stimulus_sources())


class _Stub(nn.Module):
    """images (N, 3, H, W) -> (N, 16, H, W): a fixed 1x1 convolution and a tanh."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 16, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(16, 3, 1, 1, generator=g) * 2)
            self.conv.bias.copy_(torch.randn(16, generator=g))

    def forward(self, x):
        return torch.tanh(self.conv(x))


@pytest.fixture
def stub(monkeypatch):
    built = []

    def backbone(device="cpu"):
        built.append(str(device))
        return _Stub().to(device)

    monkeypatch.setattr(demo, "_backbone", backbone)
    return built


KW = {"n_subjects": 2, "n_voxels": 16, "image_size": 96, "t_threshold": 1.0}


# ------------------------------------------------------------------------------ stimuli, features

def test_stimuli_are_copies_at_the_asked_size():
    images, categories, names = load_demo_stimuli(32)
    assert images.shape == (N_IMAGES, 3, 32, 32) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert set(categories) == {"face", "body", "place", "word", "object"} and len(names) == N_IMAGES
    images[:] = 0
    assert load_demo_stimuli(32)[0].max() > 0                       # the caller's copy, not the cache
    assert load_demo_stimuli(8)[0].shape[-1] == 8
    with pytest.raises(ValueError, match=r"^image_size must be >= 8 pixels; got 7$"):
        load_demo_stimuli(7)


def test_features_are_the_pooled_backbone_maps_keyed_by_stimuli_and_observer_settings(stub, monkeypatch):
    few = {size: tuple(part[:6] for part in demo._stimuli(size)) for size in (64, 96)}
    monkeypatch.setattr(demo, "_stimuli", few.get)                  # six images: the rule, not the size
    feats = demo.demo_features()
    images = torch.from_numpy(few[96][0].copy())
    with torch.no_grad():
        maps = _Stub()(images)
    want = torch.nn.functional.adaptive_avg_pool2d(maps, 2).flatten(1).numpy()
    assert feats.shape == (6, 64) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    events = []
    with cache.observe(events.append):
        demo.demo_features()
        demo.demo_features(device="cpu")                           # the device is not in the key
        for name, value in (("OBSERVER_SIGMA", 0.5), ("OBSERVER_N_SAMPLES", 2), ("OBSERVER_NOISE_SEED", 1),
                            ("OBSERVER_ENCODER", "other"), ("OBSERVER_LAYER", "blocks.3"),
                            ("OBSERVER_GRID", 1), ("OBSERVER_SIZE", 64)):
            with monkeypatch.context() as m:
                m.setattr(demo, name, value)
                demo.demo_features()
        with monkeypatch.context() as m:
            m.setattr(demo, "_stimuli_digest", lambda: "other stimuli")
            demo.demo_features()
    assert [e.hit for e in events] == [True, True] + [False] * 8


def test_features_are_computed_where_asked_and_the_same_in_any_batches(stub, monkeypatch):
    few = tuple(part[:7] for part in demo._stimuli(96))
    monkeypatch.setattr(demo, "_stimuli", lambda size: few)
    one = demo._stimulus_features("d", {}, device="cpu", batch=1)
    assert stub == ["cpu"] and one.shape == (7, 64)
    np.testing.assert_allclose(one, demo._stimulus_features("d", {}, batch=3), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------ the populations

def _z(seed=0, n=60, d=64):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    return (z - z.mean(0)) / z.std(0)


def test_cohens_d_and_the_localiser_t_are_the_textbook_statistics():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4)) + np.arange(4)
    member = np.zeros(30, bool)
    member[:11] = True
    z[member] += np.array([0.0, 1.0, -2.0, 0.5])
    a, b = z[member], z[~member]
    pooled = np.sqrt(((11 - 1) * a.var(0, ddof=1) + (19 - 1) * b.var(0, ddof=1)) / 28)
    np.testing.assert_allclose(demo._cohens_d(z, member), (a.mean(0) - b.mean(0)) / pooled, rtol=1e-12)
    flat = np.zeros((30, 4))
    assert np.all(demo._cohens_d(flat, member) == 0.0)              # no spread: 0, not NaN
    trials = rng.normal(size=(30, 3, 4))
    want = scipy.stats.ttest_ind(trials[member].reshape(-1, 4), trials[~member].reshape(-1, 4)).statistic
    np.testing.assert_allclose(demo._localiser_t(trials, member), want, rtol=1e-10)


def test_populations_are_standardised_and_seeded_per_subject():
    z = _z()
    categories = np.array((["face", "body", "place", "word", "object"] * 12))
    pop = demo._population(z, categories, n_subjects=2, n_voxels=8, seed=3)
    assert pop.weights.shape == (16, 64) and (pop.weights >= 0).all()
    assert pop.subject.tolist() == [1] * 8 + [2] * 8
    assert pop.region.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] * 2
    u = z @ pop.weights.T
    assert np.allclose((u < pop.theta).mean(0), demo.THRESHOLD_QUANTILE, atol=1 / 60)
    np.testing.assert_allclose(pop.gain, demo.GAIN / u.std(0), rtol=1e-12)
    r = np.logaddexp(0.0, pop.gain * (u - pop.theta)) / pop.gain
    expected = (r - pop.offset) / pop.scale
    np.testing.assert_allclose(expected.mean(0), 0.0, atol=1e-12)          # zero mean
    np.testing.assert_allclose(expected.var(0) + pop.noise_sd ** 2, 1.0, rtol=1e-10)  # unit variance per trial
    np.testing.assert_allclose(expected.std(0) / pop.noise_sd, pop.snr, rtol=1e-10)
    assert ((0 < pop.selectivity) & (pop.selectivity < 1)).all()
    # each voxel's selective part draws from the features that best tell its category apart
    for v in range(16):
        cat = list(demo.DEMO_ROIS.values())[pop.region[v]]
        pool = np.argsort(-demo._cohens_d(z, categories == cat))[:demo.N_SELECTIVE_POOL]
        outside = np.setdiff1d(np.arange(64), pool)
        assert np.count_nonzero(pop.weights[v]) <= demo.K_SELECTIVE + demo.K_GENERIC
        assert np.count_nonzero(pop.weights[v][outside]) <= demo.K_GENERIC
    one = demo._population(z, categories, n_subjects=1, n_voxels=8, seed=3)
    np.testing.assert_array_equal(one.weights, pop.weights[:8])            # subject 1 does not depend on 2
    other = demo._population(z, categories, n_subjects=1, n_voxels=8, seed=4)
    assert not np.array_equal(other.weights, one.weights)
    assert len(demo._population(z, categories, n_subjects=1, n_voxels=4, seed=0).subject) == 4   # one per region
    for bad in (6, 0, 2):
        with pytest.raises(ValueError, match=rf"^n_voxels must be a positive multiple of 4; got {bad}$"):
            demo._population(z, categories, 1, bad, 0)


def test_roi_mean_weights_average_voxels_then_subjects():
    w = demo._roi_mean_weights(np.array([1, 1, 1, 2, 3, 3]))
    np.testing.assert_allclose(w, [1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 6, 1 / 6])


# ------------------------------------------------------------------------------ the dataset

def test_a_voxel_dataset_is_the_observer_plus_trial_noise_in_the_selected_voxels(stub):
    ds = load_demo(average_subjects=False, **KW)
    obs = demo_observer(n_subjects=2, n_voxels=16)
    with torch.no_grad():
        expected = obs(torch.from_numpy(ds.stimuli)).numpy().astype(np.float64)     # (N, 32)
    assert ds.stimuli.shape == (N_IMAGES, 3, 96, 96) and list(ds.responses) == list(demo.DEMO_ROIS)
    for roi, cat in demo.DEMO_ROIS.items():
        meta, rep = ds.voxels[roi], ds.repeats[roi]
        cols = meta["observer_index"]
        assert rep.shape == (N_IMAGES, demo.N_REPEATS, len(cols)) and rep.dtype == np.float32
        np.testing.assert_array_equal(ds.responses[roi], rep.mean(1))
        assert (obs.region[cols] == list(demo.DEMO_ROIS).index(roi)).all()
        np.testing.assert_array_equal(meta["subject"], obs.subject[cols])
        assert (meta["t"] > 1.0).all() and (meta["preferred_category"] == cat).all()
        np.testing.assert_array_equal(meta["selectivity"], obs.pop.selectivity[cols].astype(np.float32))
        np.testing.assert_array_equal(meta["snr"], obs.pop.snr[cols].astype(np.float32))
        noise = rep - expected[:, None, cols]
        # trial noise: zero mean and the voxel's s.d. (N x 3 draws per voxel)
        np.testing.assert_allclose(noise.std(axis=(0, 1)), obs.pop.noise_sd[cols], rtol=0.15)
        assert np.abs(noise.mean(axis=(0, 1))).max() < 4 * obs.pop.noise_sd[cols].max() / np.sqrt(3 * N_IMAGES)
        rho = split_half_ceiling(rep.astype(np.float64))
        np.testing.assert_allclose(meta["split_half_reliability"], rho.astype(np.float32), rtol=1e-5)
        np.testing.assert_allclose(ds.noise_ceiling[roi], correlation_ceiling(np.clip(rho, 0, 1)), rtol=1e-5)
        with torch.no_grad():
            restricted = demo_observer(n_subjects=2, n_voxels=16, dataset=ds, roi=roi)(torch.from_numpy(ds.stimuli))
        np.testing.assert_allclose(restricted.numpy(), expected[:, cols], rtol=1e-5, atol=1e-5)


def test_subject_averages_are_means_of_voxel_means_and_the_observer_follows(stub):
    vox = load_demo(average_subjects=False, **KW)
    avg = load_demo(average_subjects=True, **KW)
    obs = demo_observer(n_subjects=2, n_voxels=16)
    x = torch.from_numpy(avg.stimuli[:5])
    for roi in demo.DEMO_ROIS:
        subj = vox.voxels[roi]["subject"]
        want = np.mean([vox.repeats[roi][:, :, subj == s].mean(2) for s in np.unique(subj)], axis=0)
        np.testing.assert_allclose(avg.repeats[roi][:, :, 0], want, rtol=1e-5, atol=1e-6)
        assert avg.responses[roi].shape == (N_IMAGES, 1)
        rho = split_half_ceiling(avg.repeats[roi].astype(np.float64))
        np.testing.assert_allclose(avg.noise_ceiling[roi], correlation_ceiling(np.clip(rho, 0, 1)), rtol=1e-5)
        with torch.no_grad():
            mean_obs = obs.for_roi(avg, roi)(x).numpy()[:, 0]
            full = obs(x).numpy()[:, vox.voxels[roi]["observer_index"]]
        np.testing.assert_allclose(mean_obs, full @ demo._roi_mean_weights(subj), rtol=1e-5, atol=1e-6)


def test_split_name_seed_and_determinism(stub):
    ds = load_demo(**KW)
    assert len(ds.split["train"]) == round(0.75 * N_IMAGES) and len(ds.split["test"]) == N_IMAGES - round(0.75 * N_IMAGES)
    assert sorted(np.concatenate([ds.split["train"], ds.split["test"]]).tolist()) == list(range(N_IMAGES))
    assert ds.name == (f"demo ({N_IMAGES} photographs, 2 simulated subjects, seed 0): ROI means averaged "
                       "over subjects, localiser t > 1")
    assert ds.categories == load_demo_stimuli(8)[1] and ds.image_ids.tolist() == list(range(N_IMAGES))
    assert len(load_demo(n_train=100, **KW).split["train"]) == 100
    again = load_demo(**KW)
    for roi in demo.DEMO_ROIS:
        np.testing.assert_array_equal(again.repeats[roi], ds.repeats[roi])
    other = load_demo(seed=1, **KW)
    assert not np.array_equal(other.split["train"], ds.split["train"])
    assert not np.array_equal(other.responses["FFA"], ds.responses["FFA"])
    vox = load_demo(average_subjects=False, **KW)
    assert vox.name.endswith("seed 0): voxels, localiser t > 1")


def test_trial_noise_and_localiser_draws_are_independent_per_subject(stub):
    """Subject 1's trials do not change when a second subject is added."""
    one = load_demo(average_subjects=False, **{**KW, "n_subjects": 1})
    two = load_demo(average_subjects=False, **KW)
    for roi in demo.DEMO_ROIS:
        first = two.voxels[roi]["subject"] == 1
        np.testing.assert_array_equal(two.repeats[roi][:, :, first], one.repeats[roi])
        np.testing.assert_array_equal(two.voxels[roi]["t"][first], one.voxels[roi]["t"])


def test_dataset_errors_and_warnings(stub, monkeypatch):
    with pytest.raises(ValueError, match=r"^n_subjects must be >= 1; got 0$"):
        load_demo(n_subjects=0)
    with pytest.raises(ValueError, match=r"^ROI 'FFA' has no voxels with localiser t > 1000; lower t_threshold$"):
        load_demo(**{**KW, "t_threshold": 1000.0})
    real_t = demo._localiser_t
    calls = []

    def only_subject_2(trials, member):                    # subject 1's voxels come first in every region
        calls.append(1)
        t = real_t(trials, member)
        t[: len(t) // 2] = -5.0
        t[len(t) // 2:] = 50.0
        return t

    monkeypatch.setattr(demo, "_localiser_t", only_subject_2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_demo(**KW)
    assert [str(w.message) for w in caught] == [
        f"ROI {roi!r}: subjects [1] have no voxels with t > 1; the subject average uses [2]" for roi in demo.DEMO_ROIS]
    assert all((ds.voxels[roi]["subject"] == 2).all() for roi in demo.DEMO_ROIS)


def test_observer_restriction_errors(stub):
    ds = load_demo(average_subjects=False, **KW)
    obs = demo_observer(n_subjects=2, n_voxels=16)
    with pytest.raises(ValueError, match=r"^pass both dataset and roi to restrict the observer to one ROI$"):
        demo_observer(n_subjects=2, n_voxels=16, dataset=ds)
    with pytest.raises(ValueError, match=r"^pass both dataset and roi to restrict the observer to one ROI$"):
        demo_observer(n_subjects=2, n_voxels=16, roi="FFA")
    with pytest.raises(ValueError, match=r"^dataset was not generated by this observer"):
        demo_observer(n_subjects=1, n_voxels=16).for_roi(ds, "FFA")
    with pytest.raises(ValueError, match=r"^weights must have 2 rows; got shape \(3, 1\)$"):
        obs.restrict([0, 1], np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"^restrict\(\) an unrestricted observer \(call demo_observer\(\) again\)$"):
        obs.restrict([0, 1]).restrict([0])
    two = obs.restrict([3, 5], np.array([[1.0, 0.0], [1.0, 2.0]]))
    x = torch.from_numpy(ds.stimuli[:3])
    with torch.no_grad():
        full = obs(x).numpy()
        np.testing.assert_allclose(two(x).numpy(), full[:, [3, 5]] @ np.array([[1.0, 0.0], [1.0, 2.0]]),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(obs.restrict([3])(x).numpy(), full[:, [3]], rtol=1e-6)
    assert two.subject.tolist() == obs.subject[[3, 5]].tolist() and two.region.tolist() == obs.region[[3, 5]].tolist()


def test_the_backbone_is_the_encoder_and_smoothing_the_observer_names(monkeypatch):
    import probelib.encoders as encoders

    calls = {}

    def load_encoder(name, **kwargs):
        calls["load"] = (name, kwargs)
        return nn.Identity()

    def smooth(model, **kwargs):
        calls["smooth"] = (type(model).__name__, kwargs)
        return model

    monkeypatch.setattr(encoders, "load_encoder", load_encoder)
    monkeypatch.setattr(encoders, "smooth", smooth)
    assert isinstance(demo._backbone("meta"), nn.Identity)
    assert calls == {"load": ("efficientnet_lite0", {"layer": "blocks.4", "device": "meta", "spatial": True}),
                     "smooth": ("Identity", {"sigma": 0.25, "n_samples": 4, "seed": 20240917})}


def test_observer_features_are_standardised_with_the_feature_statistics(stub):
    z, mean, std, _ = demo._observer_parts(1, 8, 0, None, "cpu")
    feats = demo.demo_features().astype(np.float64)
    np.testing.assert_array_equal(mean, feats.mean(0))
    np.testing.assert_array_equal(std, feats.std(0) + 1e-6)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-10)
    np.testing.assert_allclose(z.std(0), feats.std(0) / (feats.std(0) + 1e-6), rtol=1e-12)
    obs = demo_observer(n_subjects=1, n_voxels=8)
    assert {b.dtype for b in obs.buffers()} == {torch.float32}
    assert obs(torch.from_numpy(load_demo_stimuli(32)[0][:2])).dtype == torch.float32
    assert obs.name == ("demo observer: efficientnet_lite0 blocks.4 +smooth0.25 (n=4, seed=20240917), 2x2 pooling, "
                        "sparse non-negative readout, softplus")


def test_the_feature_cache_is_the_one_asked_for(stub, tmp_path):
    events = []
    with cache.observe(events.append):
        load_demo(cache_dir=tmp_path, **KW)
        demo_observer(n_subjects=2, n_voxels=16, cache_dir=tmp_path)
    assert len(events) == 2 and all(e.entry.resolve().is_relative_to(tmp_path.resolve()) for e in events)
    assert [e.hit for e in events] == [False, True]


def test_default_observer_is_the_default_datasets_and_the_papers_threshold():
    import inspect

    data, observer = inspect.signature(load_demo).parameters, inspect.signature(demo_observer).parameters
    assert [data[p].default for p in ("n_subjects", "n_voxels", "seed")] == [3, 400, 0]
    assert [observer[p].default for p in ("n_subjects", "n_voxels", "seed")] == [3, 400, 0]
    assert data["t_threshold"].default == 7.0 and data["average_subjects"].default is True


def test_the_localiser_draws_its_own_noise(stub, monkeypatch):
    """The localiser's trials are the observer's responses plus noise independent of the main
    experiment's (selecting voxels on the same noise would bias their responses)."""
    seen = []
    real_t = demo._localiser_t

    def capture(trials, member):
        seen.append(trials.copy())
        return real_t(trials, member)

    monkeypatch.setattr(demo, "_localiser_t", capture)
    ds = load_demo(average_subjects=False, **{**KW, "t_threshold": -100.0})      # keep every voxel
    obs = demo_observer(n_subjects=2, n_voxels=16)
    with torch.no_grad():
        expected = obs(torch.from_numpy(ds.stimuli)).numpy().astype(np.float64)
    for region, (roi, trials) in enumerate(zip(demo.DEMO_ROIS, seen)):
        cols = np.flatnonzero(obs.region == region)
        assert trials.shape == (N_IMAGES, demo.N_LOCALISER_REPEATS, len(cols))
        noise = trials - expected[:, None, cols]
        np.testing.assert_allclose(noise.std(axis=(0, 1)), obs.pop.noise_sd[cols], rtol=0.2)
        main = ds.repeats[roi][:, :2] - expected[:, None, ds.voxels[roi]["observer_index"]]
        order = np.argsort(ds.voxels[roi]["observer_index"])
        np.testing.assert_array_equal(ds.voxels[roi]["observer_index"][order], cols)
        main = main[:, :, order]
        assert abs(np.corrcoef(noise.ravel(), main.ravel())[0, 1]) < 0.1    # independent draws,
        assert np.abs(noise[0] - main[0]).min() > 1e-6                     # not one stream read twice


def test_observer_restriction_takes_columns_of_any_integer_like_type_and_checks_their_range(stub):
    ds = load_demo(average_subjects=False, **KW)
    obs = demo_observer(n_subjects=2, n_voxels=16)
    x = torch.from_numpy(ds.stimuli[:2])
    with torch.no_grad():
        np.testing.assert_array_equal(obs.restrict(np.array([3.0, 5.0]))(x).numpy(), obs.restrict([3, 5])(x).numpy())
    meta = ds.voxels["FFA"]
    ds.voxels["FFA"] = {**meta, "observer_index": np.array([len(obs.subject)]), "subject": np.array([2])}
    with pytest.raises(ValueError, match=r"^dataset was not generated by this observer"):
        obs.for_roi(ds, "FFA")


def test_the_simulation_is_pinned():
    """Regression values of the populations drawn from fixed features (a change of a distribution,
    a seed or a formula of the simulation changes them; update them only on purpose)."""
    pop = demo._population(_z(), np.array(["face", "body", "place", "word", "object"] * 12), 2, 8, 3)
    np.testing.assert_allclose(pop.weights.sum(1)[:4], [2.89339013, 3.75273975, 3.6178044, 3.2007608], rtol=1e-7)
    np.testing.assert_allclose(pop.snr[:4], [0.91635038, 0.54383337, 0.72969901, 0.75653374], rtol=1e-7)
    np.testing.assert_allclose(pop.theta[:3], [-0.7009058, -0.47960488, -0.53770028], rtol=1e-7)
    assert np.flatnonzero(pop.weights[0])[:8].tolist() == [0, 1, 4, 5, 7, 8, 9, 10]


def test_the_pinned_dataset_of_the_stand_in(stub):
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                       # no subject without voxels here
        ds = load_demo(**KW)
    got = {roi: float(ds.responses[roi][:5, 0].sum()) for roi in ds.responses}
    want = {"FFA": -0.13192975521087646, "EBA": -0.15014472603797913, "PPA": -1.7224794626235962,
            "VWFA": -0.34192681312561035}
    assert got == pytest.approx(want, rel=1e-5)
    assert all(m["split_half_reliability"].dtype == np.float32 for m in ds.voxels.values())


def test_images_of_other_sizes_are_resized_for_the_observer_as_documented(stub):
    x = torch.from_numpy(load_demo_stimuli(128)[0][:3])
    net = _Stub()
    with torch.no_grad():
        small = torch.nn.functional.interpolate(x, size=(96, 96), mode="bilinear", align_corners=False,
                                                antialias=True).clamp(0, 1)
        want = torch.nn.functional.adaptive_avg_pool2d(net(small), 2).flatten(1)
        np.testing.assert_allclose(demo._pooled(net, x).numpy(), want.numpy(), rtol=1e-6, atol=1e-7)
        at96 = torch.from_numpy(load_demo_stimuli(96)[0][:3])
        np.testing.assert_array_equal(demo._pooled(net, at96).numpy(),
                                      torch.nn.functional.adaptive_avg_pool2d(net(at96), 2).flatten(1).numpy())


def test_the_feature_key_holds_the_observer_settings_and_the_stimuli_digest():
    assert demo._observer_settings() == {"encoder": "efficientnet_lite0", "layer": "blocks.4", "sigma": 0.25,
                                         "n_samples": 4, "noise_seed": 20240917, "size": 96, "grid": 2}
    import hashlib

    h = hashlib.sha256()
    for row in demo.stimulus_sources():
        h.update(row["file"].encode())
        h.update((demo.STIMULI_DIR / row["file"]).read_bytes())
    assert demo._stimuli_digest() == h.hexdigest()[:16]
    import inspect

    assert inspect.signature(load_demo).parameters["image_size"].default == 128
    assert inspect.signature(load_demo_stimuli).parameters["image_size"].default == 128
