"""Tests of probelib.metrics against scipy and analytic cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from probelib.metrics import (
    Discriminability,
    PairedTest,
    correlation_ceiling,
    discriminability,
    ncsnr_ceiling,
    normalized_variance,
    paired_test,
    pearson_r,
    sem,
    sensitivity_summary,
    sparseness,
    spearman_brown,
    split_half_ceiling,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- pearson_r


def test_pearson_r_matches_scipy_per_voxel():
    obs = _rng(0).standard_normal((40, 5))
    pred = obs + _rng(1).standard_normal((40, 5)) * np.array([0.1, 0.5, 1.0, 2.0, 10.0])
    r = pearson_r(pred, obs)
    assert r.shape == (5,)
    np.testing.assert_allclose(r, [stats.pearsonr(pred[:, v], obs[:, v])[0] for v in range(5)], atol=1e-12)
    assert pearson_r(pred[:, 0], obs[:, 0]) == pytest.approx(r[0])
    np.testing.assert_allclose(pearson_r(torch.from_numpy(pred), obs), r)  # torch accepted


def test_pearson_r_nan_input_raises_with_count():
    obs = _rng().standard_normal((10, 3))
    pred = obs.copy()
    pred[[1, 4], 2] = np.nan
    with pytest.raises(ValueError, match="2 NaN/inf"):
        pearson_r(pred, obs)


def test_pearson_r_constant_voxel_is_nan_with_warning():
    obs = _rng().standard_normal((10, 3))
    pred = obs.copy()
    pred[:, 1] = 3.0
    with pytest.warns(RuntimeWarning, match="1 of 3 voxels are constant"):
        r = pearson_r(pred, obs)
    assert np.isnan(r[1]) and r[0] == pytest.approx(1.0) and r[2] == pytest.approx(1.0)


def test_pearson_r_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        pearson_r(np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="N >= 2"):
        pearson_r(np.ones((1, 2)), np.ones((1, 2)))


# --------------------------------------------------------------------------- noise ceilings


def test_spearman_brown_formula():
    assert spearman_brown(0.5, 2) == pytest.approx(2 * 0.5 / 1.5)
    assert spearman_brown(0.25, 3) == pytest.approx(0.75 / 1.5)
    np.testing.assert_allclose(spearman_brown(np.array([0.0, 1.0]), 4), [0.0, 1.0])


def test_split_half_ceiling_of_noiseless_repeats_is_one():
    signal = _rng(0).standard_normal((30, 1, 4))
    repeats = np.repeat(signal, 4, axis=1)
    np.testing.assert_allclose(split_half_ceiling(repeats), 1.0)


def test_split_half_ceiling_of_pure_noise_is_near_zero():
    repeats = _rng(1).standard_normal((400, 4, 50))
    ceiling = split_half_ceiling(repeats)
    assert ceiling.shape == (50,)
    assert abs(np.mean(ceiling)) < 0.03 and np.all(np.abs(ceiling) < 0.3)


@pytest.mark.parametrize("n_repeats", [2, 3, 4])
def test_split_half_ceiling_recovers_spearman_brown_reliability(n_repeats):
    # signal variance 1, noise variance 1 per trial: single-trial reliability 1/2,
    # reliability of the R-trial mean R/2 / (1 + (R-1)/2) = R / (R + 1).
    rng = _rng(n_repeats)
    signal = rng.standard_normal((4000, 1, 3))
    repeats = signal + rng.standard_normal((4000, n_repeats, 3))
    np.testing.assert_allclose(split_half_ceiling(repeats), n_repeats / (n_repeats + 1), atol=0.03)
    # stepped up to a different number of repeats
    np.testing.assert_allclose(split_half_ceiling(repeats, n_target=1), 0.5, atol=0.03)


def test_split_half_ceiling_even_repeats_uses_classic_correction():
    rng = _rng(3)
    repeats = rng.standard_normal((50, 1, 2)) + rng.standard_normal((50, 2, 2))
    r = np.array([stats.pearsonr(repeats[:, 0, v], repeats[:, 1, v])[0] for v in range(2)])
    np.testing.assert_allclose(split_half_ceiling(repeats), 2 * r / (1 + r), atol=1e-12)


def test_split_half_ceiling_is_deterministic_under_seed_and_validates():
    repeats = _rng(4).standard_normal((20, 8, 3))
    a = split_half_ceiling(repeats, seed=1, n_splits=10)
    np.testing.assert_array_equal(a, split_half_ceiling(repeats, seed=1, n_splits=10))
    assert not np.array_equal(a, split_half_ceiling(repeats, seed=2, n_splits=10))
    assert isinstance(split_half_ceiling(repeats[:, :, 0]), float)
    with pytest.raises(ValueError, match="R repeats >= 2"):
        split_half_ceiling(repeats[:, :1])
    bad = repeats.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN/inf"):
        split_half_ceiling(bad)


def test_split_half_ceiling_constant_voxel_is_nan():
    repeats = _rng(5).standard_normal((20, 2, 2))
    repeats[:, :, 1] = 1.0
    with pytest.warns(RuntimeWarning, match="constant"):
        ceiling = split_half_ceiling(repeats)
    assert np.isnan(ceiling[1]) and np.isfinite(ceiling[0])


def test_ncsnr_ceiling_formula_and_correlation_ceiling():
    ncsnr = np.array([0.0, 0.5, 1.0, 2.0])
    nc = ncsnr_ceiling(ncsnr, 3)
    np.testing.assert_allclose(nc, ncsnr**2 / (ncsnr**2 + 1 / 3))
    assert ncsnr_ceiling(1.0, 1) == pytest.approx(0.5)
    np.testing.assert_allclose(correlation_ceiling(nc), np.sqrt(nc))
    with pytest.raises(ValueError, match="fraction"):
        correlation_ceiling(np.array([50.0]))
    with pytest.raises(ValueError, match=">= 0"):
        ncsnr_ceiling(np.array([-1.0]), 3)
    with pytest.raises(ValueError, match="NaN"):
        ncsnr_ceiling(np.array([np.nan]), 3)


def test_ncsnr_and_split_half_ceilings_agree_on_simulated_data():
    # ncsnr = signal sd / noise sd = 1 -> NC for 3 trials = 1 / (1 + 1/3) = 0.75
    rng = _rng(6)
    repeats = rng.standard_normal((4000, 1, 2)) + rng.standard_normal((4000, 3, 2))
    np.testing.assert_allclose(split_half_ceiling(repeats), ncsnr_ceiling(1.0, 3), atol=0.03)


# --------------------------------------------------------------------------- discriminability


def test_sparseness_known_values():
    assert sparseness(np.array([0.0, 0.0, 1.0, 0.0, 0.0])) == pytest.approx(1 - 1 / 5)
    assert sparseness(np.full(7, 0.3)) == pytest.approx(0.0)
    assert sparseness(np.array([1.0, 3.0])) == pytest.approx(1 - 4 / 5)
    assert sparseness(np.array([1.0, 3.0]) * 17) == pytest.approx(1 - 4 / 5)  # scale invariant
    x = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]])
    np.testing.assert_allclose(sparseness(x), [0.0, 2 / 3])
    np.testing.assert_allclose(sparseness(x.T, axis=0), [0.0, 2 / 3])
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert np.isnan(sparseness(np.zeros(3)))
    with pytest.warns(RuntimeWarning, match="non-negative"):
        sparseness(np.array([-1.0, 1.0]))


def test_normalized_variance_known_values():
    assert normalized_variance(np.array([1.0, 2.0, 4.0])) == pytest.approx(np.var([0.25, 0.5, 1.0]))
    assert normalized_variance(np.full(4, 2.5)) == pytest.approx(0.0)
    assert normalized_variance(np.array([0.0, 1.0])) == pytest.approx(0.25)
    assert normalized_variance(np.array([0.0, 10.0])) == pytest.approx(0.25)
    with pytest.warns(RuntimeWarning, match="positive maximum"):
        assert np.isnan(normalized_variance(np.array([-1.0, -2.0])))


def test_discriminability_from_dict_and_array():
    result = discriminability({"a": 1.0, "b": 0.0, "c": 0.0})
    assert isinstance(result, Discriminability) and result.models == ("a", "b", "c")
    assert result.sparseness == pytest.approx(2 / 3)
    assert result.normalized_variance == pytest.approx(np.var([1.0, 0.0, 0.0]))
    per_subject = {"m1": np.array([0.5, 1.0]), "m2": np.array([0.5, 0.0])}
    res = discriminability(per_subject)
    np.testing.assert_allclose(res.sparseness, [0.0, 0.5])
    arr = discriminability(np.array([[0.5, 0.5], [1.0, 0.0]]))
    np.testing.assert_allclose(arr.sparseness, [0.0, 0.5])
    assert arr.models is None
    with pytest.raises(ValueError, match="same shape"):
        discriminability({"a": np.ones(2), "b": np.ones(3)})
    with pytest.raises(ValueError, match="at least 2 models"):
        discriminability({"a": 1.0})


# --------------------------------------------------------------------------- tests and summaries


def test_paired_t_test_matches_scipy():
    a = _rng(7).standard_normal(12) + 0.5
    b = _rng(8).standard_normal(12)
    res = paired_test(a, b)
    ref = stats.ttest_rel(a, b)
    assert isinstance(res, PairedTest) and res.n == 12 and res.method == "t"
    assert res.statistic == pytest.approx(ref.statistic) and res.pvalue == pytest.approx(ref.pvalue)
    assert res.mean_difference == pytest.approx(np.mean(a - b))
    assert res.sem_difference == pytest.approx(stats.sem(a - b))
    greater = paired_test(a, b, alternative="greater")
    assert greater.pvalue == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)


def test_paired_wilcoxon_and_vectorised_axis():
    a = _rng(9).standard_normal((15, 3)) + 1.0
    b = _rng(10).standard_normal((15, 3))
    res = paired_test(a, b, method="wilcoxon")
    ref = stats.wilcoxon(a, b, axis=0)
    np.testing.assert_allclose(res.pvalue, ref.pvalue)
    np.testing.assert_allclose(res.median_difference, np.median(a - b, axis=0))
    with pytest.raises(ValueError, match="unknown method"):
        paired_test(a, b, method="anova")
    with pytest.raises(ValueError, match="same shape"):
        paired_test(a, b[:3])
    with pytest.raises(ValueError, match="NaN"):
        paired_test(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_sem_matches_scipy():
    x = _rng(11).standard_normal((9, 4))
    np.testing.assert_allclose(sem(x), stats.sem(x, axis=0))
    assert sem(x[:, 0]) == pytest.approx(stats.sem(x[:, 0]))
    with pytest.raises(ValueError, match="more than 1"):
        sem(np.array([1.0]))


def test_sensitivity_summary_over_images_and_voxels():
    s = _rng(12).exponential(size=(3, 20, 10))  # (n_eps, N, V)
    summary = sensitivity_summary(s)
    np.testing.assert_allclose(summary.mean, s.mean(axis=(1, 2)))
    np.testing.assert_allclose(summary.median, np.median(s.reshape(3, -1), axis=1))
    np.testing.assert_allclose(summary.q25, np.percentile(s.reshape(3, -1), 25, axis=1))
    assert summary.n == 200
    whole = sensitivity_summary(s[0])
    assert isinstance(whole.mean, float) and whole.median == pytest.approx(np.median(s[0]))
    per_voxel = sensitivity_summary(s[0], axis=0)
    assert per_voxel.mean.shape == (10,) and per_voxel.n == 20
    with pytest.raises(ValueError, match="out of range"):
        sensitivity_summary(s[0], axis=(0, 2))


def test_response_sd_is_the_sample_sd_across_images():
    from probelib.metrics import response_sd
    y = np.random.default_rng(0).normal(size=(30, 4)) * [1, 2, 3, 4]
    np.testing.assert_allclose(response_sd(y), y.std(0, ddof=1))
    np.testing.assert_allclose(response_sd(y, ddof=0), y.std(0))
    with pytest.raises(ValueError, match="N > 1"):
        response_sd(y[:1])
    with pytest.raises(ValueError):
        response_sd(np.array([1.0, np.nan, 2.0])[:, None])


def test_high_frequency_fraction():
    """Analytic cases: white noise, smooth and uniform changes, the Nyquist checkerboard."""
    from probelib.metrics import high_frequency_fraction
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((20, 3, 64, 64))
    frac = high_frequency_fraction(noise)
    assert frac.shape == (20,)
    assert abs(frac.mean() - (1 - np.pi * 0.25**2)) < 0.02
    assert high_frequency_fraction(noise[0]) == pytest.approx(1 - np.pi * 0.25 ** 2, abs=0.03)
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / (2 * 8.0**2))
    assert high_frequency_fraction(np.stack([blob] * 3)) < 0.01
    smooth = np.stack([np.sin(2 * np.pi * xx / 64), np.cos(2 * np.pi * yy / 64), xx * 0 + 1.0])
    assert high_frequency_fraction(smooth) < 1e-6
    assert high_frequency_fraction(np.full((3, 8, 8), 0.1)) == 0.0  # a uniform brightness change
    checker = np.stack([(-1.0) ** (yy + xx)] * 3)
    assert high_frequency_fraction(torch.tensor(checker)) == pytest.approx(1.0)
    assert np.isnan(high_frequency_fraction(np.zeros((3, 8, 8))))  # no power: no fraction
    with pytest.raises(ValueError):
        high_frequency_fraction(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="cutoff"):
        high_frequency_fraction(noise[0], cutoff=0.8)
