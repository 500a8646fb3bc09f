"""Properties of probelib.metrics: documented promises, boundaries, axes and error reports.

Each test pins a rule the docstrings state: errors name the argument at fault (the message starts
with it), each documented warning is the only warning, the boundaries of every
check (``N >= 2``, ``n_splits >= 1``, ``noise_ceiling <= 1``, ...), every ``axis`` argument, the
choice between all half splits and random ones, and results that stay within [-1, 1].
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

import probelib as pl
from probelib.metrics import (correlation_ceiling, discriminability, ncsnr_ceiling, normalized_variance,
                              paired_test, pearson_r, sem, sensitivity_summary, sparseness, spearman_brown,
                              split_half_ceiling)

GOOD = np.array([[1.0, 2.0], [2.0, 1.0], [4.0, 5.0]])
NAN = np.array([[1.0, 2.0], [2.0, np.nan], [4.0, 5.0]])
REPEATS = np.random.default_rng(0).standard_normal((6, 2, 2))
NAN_REPEATS = REPEATS.copy()
NAN_REPEATS[1, 0, 1] = np.nan


@pytest.mark.parametrize("call,message", [
    (lambda: pearson_r(NAN, GOOD), r"^pred contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: pearson_r(GOOD, NAN), r"^obs contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: split_half_ceiling(NAN_REPEATS), r"^repeats contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: ncsnr_ceiling([0.5, np.nan], 3), r"^ncsnr contain 1 NaN/inf values$"),
    (lambda: ncsnr_ceiling([0.5], np.inf), r"^n_trials contain 1 NaN/inf values$"),
    (lambda: correlation_ceiling([np.nan]), r"^noise_ceiling contain 1 NaN/inf values$"),
    (lambda: sparseness([1.0, np.nan]), r"^x contain 1 NaN/inf values$"),
    (lambda: normalized_variance([1.0, np.nan]), r"^x contain 1 NaN/inf values$"),
    (lambda: sem([1.0, np.nan]), r"^x contain 1 NaN/inf values$"),
    (lambda: discriminability({"m1": [np.nan], "m2": [1.0]}), r"^scores_by_model\['m1'\] contain 1 NaN/inf"),
    (lambda: discriminability(np.array([np.nan, 1.0])), r"^scores_by_model contain 1 NaN/inf values$"),
    (lambda: paired_test([np.nan, 1.0], [1.0, 2.0]), r"^a contain 1 NaN/inf values$"),
    (lambda: paired_test([0.0, 1.0], [1.0, np.inf]), r"^b contain 1 NaN/inf values$"),
    (lambda: sensitivity_summary(NAN), r"^sensitivity contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: pl.metrics.response_sd(NAN), r"^responses contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: pearson_r(["a", "b", "c"], [1.0, 2.0, 3.0]), r"^pred must be numeric; got list$"),
    (lambda: spearman_brown(0.5, 0), r"^factor must be > 0; got 0$"),
    (lambda: split_half_ceiling(REPEATS, n_splits=0), r"^n_splits must be >= 1; got 0$"),
    (lambda: split_half_ceiling(REPEATS, n_target=0), r"^n_target must be >= 1 repeats; got 0$"),
    (lambda: split_half_ceiling(REPEATS[None]), r"^repeats must have shape \(N images >= 3, R repeats >= 2"),
    (lambda: split_half_ceiling(REPEATS[:2]), r"^repeats must have shape \(N images >= 3"),
    (lambda: ncsnr_ceiling([-1.0, 0.0, 2.0, -0.5], 3), r"^ncsnr must be >= 0; got 2 negative values$"),
    (lambda: ncsnr_ceiling([1.0], 0), r"^n_trials must be > 0$"),
    (lambda: correlation_ceiling([0.5, 1.5]),
     r"^noise_ceiling must be a fraction <= 1 \(divide NSD percentages by 100\)$"),
    (lambda: correlation_ceiling(2.5), r"^noise_ceiling must be a fraction"),
    (lambda: discriminability({}), r"^need scores of at least 2 models along axis -1; got shape \(0,\)$"),
    (lambda: discriminability({"a": [1.0], "b": [1.0, 2.0], "c": [1.0]}),
     r"^every model needs a score of the same shape"),
    (lambda: paired_test([1.0], [2.0]), r"^need at least 2 pairs along axis 0; got 1$"),
    (lambda: paired_test([1.0, 2.0], [2.0, 3.0], alternative="up"),
     r"^unknown alternative 'up'; valid: 'two-sided', 'greater', 'less'$"),
    (lambda: paired_test([1.0, 2.0], [2.0, 3.0], method="z"), r"^unknown method 'z'; valid: 't', 'wilcoxon'$"),
    (lambda: sem([1.0]), r"^need more than 1 values along axis 0; got shape \(1,\)$"),
    (lambda: sensitivity_summary(np.ones((0, 3)), axis=0), r"^no values to summarise along axis 0"),
    (lambda: sensitivity_summary(np.ones(3), axis=(0, 1)), r"^axis \(0, 1\) out of range"),
])
def test_errors_name_the_argument_at_fault(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _one_warning(call, message):
    """Run ``call``; it must emit exactly one warning, a RuntimeWarning with ``message``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    assert [str(w.message) for w in caught] == [message]
    assert caught[0].category is RuntimeWarning
    return out


def _no_warning(call):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return call()


def test_warnings_are_the_documented_ones():
    x = np.array([[1.0, 3.0, 2.0], [2.0, 3.0, 1.0], [3.0, 3.0, 5.0]])
    y = np.array([[1.0, 2.0, 7.0], [0.0, 1.0, 7.0], [5.0, 4.0, 7.0]])
    r = _one_warning(lambda: pearson_r(x, y), "2 of 3 voxels are constant across images: their correlation is NaN")
    assert np.isnan(r[1]) and np.isnan(r[2]) and np.isfinite(r[0])
    r = _one_warning(lambda: pearson_r(y, x), "2 of 3 voxels are constant across images: their correlation is NaN")
    r = _one_warning(lambda: pearson_r(x[:, :2], y[:, :2]),
                     "1 of 2 voxels are constant across images: their correlation is NaN")
    reps = np.stack([x, x + y], axis=1)  # (3 images, 2 repeats, 3 voxels): voxel 1 constant in a half
    _one_warning(lambda: split_half_ceiling(reps),
                 "1 voxels are constant within a half of the repeats: their ceiling is NaN")
    assert _one_warning(lambda: sparseness([-1.0, 2.0]),
                        "sparseness expects non-negative scores; got negative values") == pytest.approx(1 - 0.25 / 2.5)
    assert np.isnan(_one_warning(lambda: sparseness([0.0, 0.0]), "sparseness of all-zero scores is undefined: NaN"))
    out = _one_warning(lambda: normalized_variance([[0.0, 0.0], [1.0, 3.0]]),
                       "normalized variance needs a positive maximum: NaN")
    assert np.isnan(out[0]) and out[1] == pytest.approx(np.var([1 / 3, 1.0]))
    assert np.isnan(_one_warning(lambda: normalized_variance([-1.0, -2.0]),
                                 "normalized variance needs a positive maximum: NaN"))


def test_no_warning_where_none_is_due():
    rng = np.random.default_rng(1)
    _no_warning(lambda: pearson_r(rng.standard_normal((5, 3)), rng.standard_normal((5, 3))))
    _no_warning(lambda: split_half_ceiling(rng.standard_normal((6, 3, 2))))
    assert _no_warning(lambda: sparseness([0.0, 0.0, 1.0])) == pytest.approx(1 - 1 / 3)   # zeros are fine
    assert _no_warning(lambda: sparseness([0.5, 0.25])) == pytest.approx(1 - 0.375**2 / 0.15625)
    assert _no_warning(lambda: normalized_variance([0.5, 0.25])) == pytest.approx(np.var([1.0, 0.5]))
    # Spearman-Brown where the denominator vanishes: -inf / nan, silently (vectorised use)
    assert _no_warning(lambda: spearman_brown(-1.0, 2)) == -np.inf
    assert np.isnan(_no_warning(lambda: spearman_brown(np.inf, 2)))


# --------------------------------------------------------------------------- boundaries

def test_smallest_valid_inputs_are_accepted():
    assert pearson_r([1.0, 2.0], [3.0, 5.0]) == pytest.approx(1.0)          # N = 2
    assert isinstance(pearson_r([1.0, 2.0, 4.0], [3.0, 5.0, 1.0]), float)   # one voxel: a float
    assert type(sparseness([1.0, 2.0])) is float and type(normalized_variance([1.0, 2.0])) is float
    assert type(sem([1.0, 2.0])) is float and type(ncsnr_ceiling(1.0, 3)) is float
    res = paired_test([1.0, 2.0], [0.0, 0.5])                               # 2 pairs
    assert res.n == 2 and res.mean_difference == pytest.approx(1.25)
    reps = np.random.default_rng(2).standard_normal((3, 2, 2))               # N = 3 images
    assert split_half_ceiling(reps).shape == (2,)
    assert split_half_ceiling(reps, n_splits=1).shape == (2,)
    assert sem([1.0, 3.0]) == pytest.approx(1.0)                            # n = ddof + 1
    s = sensitivity_summary(np.array([[2.0]]))                              # one value
    assert s.n == 1 and s.mean == 2.0 and s.std == 0.0
    s = sensitivity_summary(np.array([1.0, 2.0, 3.0, 4.0]), axis=0)         # 1-D
    assert s.n == 4 and s.median == 2.5
    assert ncsnr_ceiling(0.0, 3) == 0.0
    assert ncsnr_ceiling(1.0, 1e-12) == pytest.approx(1e-12, rel=1e-6)


def test_noise_ceiling_tolerance_and_clipping():
    assert correlation_ceiling(1.0) == 1.0
    assert correlation_ceiling(1.0 + 1e-9) == 1.0          # at the tolerance: accepted, clipped to 1
    assert correlation_ceiling(1.0 + 5e-10) == 1.0
    assert correlation_ceiling(-0.2) == 0.0                # sqrt(max(nc, 0))
    np.testing.assert_array_equal(correlation_ceiling([0.25, -1.0, 1.0]), [0.5, 0.0, 1.0])
    with pytest.raises(ValueError):
        correlation_ceiling(1.0 + 3e-9)


def test_correlations_stay_within_minus_one_and_one():
    """Rounding can push the raw ratio past +-1 (these inputs do); the result is clipped."""
    x = np.random.default_rng(5).standard_normal(5)
    assert pearson_r(x, 3 * x + 1) == 1.0
    x = np.random.default_rng(6).standard_normal(5)
    assert pearson_r(x, -3 * x + 1) == -1.0


def test_inputs_are_read_as_float64_from_any_array_like():
    x = torch.tensor([1.0, 2.0, 4.0, 3.0], requires_grad=True)
    y = np.array([2.0, 1.0, 5.0, 3.0], dtype=np.float32)
    assert pearson_r(x, y) == pytest.approx(stats.pearsonr([1, 2, 4, 3], [2, 1, 5, 3])[0], abs=1e-12)
    r32 = float(np.float32(0.3))          # computed in float64, not float32
    assert spearman_brown(np.float32(0.3), 2) == 2 * r32 / (1 + r32)
    assert sparseness(torch.tensor([1.0, 0.0])) == pytest.approx(0.5)


# --------------------------------------------------------------------------- half splits

def _reference_ceiling(reps, splits, n_target):
    half = len(splits[0][0])
    rs = []
    for a, b in splits:
        ma, mb = reps[:, list(a)].mean(1), reps[:, list(b)].mean(1)
        rs.append([stats.pearsonr(ma[:, v], mb[:, v])[0] for v in range(reps.shape[2])])
    r = np.mean(rs, axis=0)
    m = n_target / half
    return np.where(r > 0, m * r / (1 + (m - 1) * r), r)


def _all_splits(n_repeats, half):
    out = []
    for a in itertools.combinations(range(n_repeats), half):
        rest = [i for i in range(n_repeats) if i not in a]
        out += [(a, b) for b in itertools.combinations(rest, half) if a < b]
    return out


def test_all_distinct_splits_are_used_when_there_are_at_most_n_splits():
    """R = 5: 15 distinct pairs of disjoint halves of 2. With n_splits >= 15 all are used (the
    seed does not matter); with fewer, n_splits random ones drawn with the seed."""
    rng = np.random.default_rng(7)
    reps = rng.standard_normal((12, 1, 3)) + rng.standard_normal((12, 5, 3))
    splits = _all_splits(5, 2)
    assert len(splits) == 15
    exhaustive = _reference_ceiling(reps, splits, 5)
    for n_splits, seed in ((15, 0), (15, 3), (100, 1)):
        np.testing.assert_allclose(split_half_ceiling(reps, seed=seed, n_splits=n_splits), exhaustive, rtol=1e-10)
    few = [split_half_ceiling(reps, seed=s, n_splits=12) for s in (0, 1)]
    assert not np.allclose(few[0], few[1])
    # the random splits: permutations drawn with default_rng(seed), halves p[:h] and p[h:2h]
    gen = np.random.default_rng(4)
    perms = [gen.permutation(5) for _ in range(6)]
    random_splits = [(tuple(p[:2]), tuple(p[2:4])) for p in perms]
    np.testing.assert_allclose(split_half_ceiling(reps, seed=4, n_splits=6),
                               _reference_ceiling(reps, random_splits, 5), rtol=1e-10)


def test_split_half_defaults_are_seed_0_and_100_splits():
    reps = np.random.default_rng(8).standard_normal((10, 10, 2))   # 126 distinct splits > 100
    np.testing.assert_array_equal(split_half_ceiling(reps), split_half_ceiling(reps, seed=0, n_splits=100))
    assert not np.array_equal(split_half_ceiling(reps), split_half_ceiling(reps, seed=0, n_splits=101))
    assert not np.array_equal(split_half_ceiling(reps), split_half_ceiling(reps, seed=1, n_splits=100))


# --------------------------------------------------------------------------- axes

def test_axis_arguments_select_the_axis():
    rng = np.random.default_rng(9)
    a = rng.random((3, 4)) + 0.1          # 3 models x 4 subjects
    d = discriminability(a, axis=0)
    np.testing.assert_allclose(d.sparseness, [sparseness(a[:, j]) for j in range(4)])
    np.testing.assert_allclose(d.normalized_variance, [normalized_variance(a[:, j]) for j in range(4)])
    np.testing.assert_allclose(normalized_variance(a), [np.var(row / row.max()) for row in a])
    np.testing.assert_allclose(normalized_variance(a, ddof=1), [np.var(row / row.max(), ddof=1) for row in a])
    np.testing.assert_allclose(sparseness(a, axis=0), [sparseness(a[:, j]) for j in range(4)])

    x, y = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    for method in ("t", "wilcoxon"):
        res = paired_test(x, y, method=method, alternative="greater", axis=1)
        ref = (stats.ttest_rel if method == "t" else stats.wilcoxon)(x, y, axis=1, alternative="greater")
        np.testing.assert_allclose(res.statistic, ref.statistic)
        np.testing.assert_allclose(res.pvalue, ref.pvalue)
        np.testing.assert_allclose(res.mean_difference, (x - y).mean(1))
        np.testing.assert_allclose(res.median_difference, np.median(x - y, 1))
        np.testing.assert_allclose(res.sem_difference, stats.sem(x - y, axis=1))
        assert res.alternative == "greater" and res.method == method and res.n == 6
    less = paired_test(x[0], y[0], alternative="less")
    assert less.pvalue == pytest.approx(stats.ttest_rel(x[0], y[0], alternative="less").pvalue)

    s = rng.random((2, 5, 3))
    summary = sensitivity_summary(s)
    np.testing.assert_allclose(summary.std, s.reshape(2, -1).std(1))
    np.testing.assert_allclose(summary.q25, np.percentile(s.reshape(2, -1), 25, axis=1))
    np.testing.assert_allclose(summary.q75, np.percentile(s.reshape(2, -1), 75, axis=1))
    np.testing.assert_allclose(summary.median, np.median(s.reshape(2, -1), axis=1))
    np.testing.assert_allclose(summary.mean, s.reshape(2, -1).mean(1))
    assert summary.n == 15
    one = sensitivity_summary(s, axis=1)
    np.testing.assert_allclose(one.q75, np.percentile(s, 75, axis=1))
    assert one.n == 5


def test_top_level_names_are_the_metrics():
    assert pl.pearson_r is pearson_r and pl.split_half_ceiling is split_half_ceiling


# --------------------------------------------------------------------------- percentiles

def test_percentile_of_is_scipy_percentileofscore_mean_kind():
    """Fraction strictly below plus half the ties = scipy's kind='mean' (average of strict and weak)."""
    from probelib.metrics import percentile_of
    d = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 2.0, 7.0, 0.5])     # unsorted, with ties
    values = [-1.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 7.0, 8.0]
    expected = [stats.percentileofscore(d, v, kind="mean") for v in values]
    np.testing.assert_allclose(percentile_of(values, d), expected, rtol=1e-12)
    one = percentile_of(2.0, d)
    assert type(one) is float and one == pytest.approx(100 * (2 + 0.5 * 3) / 8)
    assert isinstance(percentile_of([2.0], d), np.ndarray)
    # a distribution of any shape is pooled (flattened); integer input is read as numbers
    np.testing.assert_allclose(percentile_of(values, d.reshape(2, 4)), expected, rtol=1e-12)
    assert percentile_of(2, [1, 2, 3]) == pytest.approx(50.0)
    np.testing.assert_allclose(percentile_of(np.array([[0.0, 9.0]]), d), [[0.0, 100.0]])
    with pytest.raises(ValueError, match=r"^distribution is empty$"):
        percentile_of(1.0, np.empty((2, 0)))


# --------------------------------------------------------------------------- discriminability of two scores

def _scores(seed=0, models=("m1", "m2", "m3", "m4"), reps=("FFA", "PPA", "EBA")):
    import pandas as pd
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.random((len(models), len(reps))) + 0.05, index=list(models), columns=list(reps))


def test_compare_discriminability_pooled_per_replicate_and_tests_follow_their_definitions():
    from probelib.metrics import compare_discriminability
    a, b = _scores(0) * 3.0, _scores(1)
    cmp = compare_discriminability(a, b, names=("sens", "pred"))
    assert cmp.scores == ("sens", "pred")
    assert list(cmp.pooled.index) == ["sens", "pred"] and cmp.pooled.index.name == "score"
    assert list(cmp.pooled.columns) == ["sparseness", "normalized variance"]
    for name, t in (("sens", a), ("pred", b)):
        pooled = t.mean(axis=1).to_numpy()
        assert cmp.pooled.loc[name, "sparseness"] == pytest.approx(sparseness(pooled), rel=1e-12)
        assert cmp.pooled.loc[name, "normalized variance"] == pytest.approx(normalized_variance(pooled), rel=1e-12)
    per = cmp.per_replicate
    assert list(per.columns) == ["replicate", "score", "measure", "value"] and len(per) == 3 * 2 * 2
    assert list(per.replicate[:4]) == ["FFA", "FFA", "PPA", "PPA"]
    assert list(per.measure[:2]) == ["sparseness", "normalized variance"]
    for name, t in (("sens", a), ("pred", b)):
        for rep in t.columns:
            rows = per[(per.score == name) & (per.replicate == rep)].set_index("measure").value
            assert rows["sparseness"] == pytest.approx(sparseness(t[rep].to_numpy()), rel=1e-12)
            assert rows["normalized variance"] == pytest.approx(normalized_variance(t[rep].to_numpy()), rel=1e-12)
    assert list(cmp.tests.index) == ["sparseness", "normalized variance"] and cmp.tests.index.name == "measure"
    assert list(cmp.tests.columns) == ["mean difference", "t", "p", "n"]
    for measure, f in (("sparseness", sparseness), ("normalized variance", normalized_variance)):
        x = np.array([f(a[c].to_numpy()) for c in a.columns])
        y = np.array([f(b[c].to_numpy()) for c in b.columns])
        ref = stats.ttest_rel(x, y)
        row = cmp.tests.loc[measure]
        assert row["mean difference"] == pytest.approx(np.mean(x - y), rel=1e-12)
        assert row["t"] == pytest.approx(ref.statistic, rel=1e-10)
        assert row["p"] == pytest.approx(ref.pvalue, rel=1e-10)
        assert row["n"] == 3


def test_compare_discriminability_two_replicates_is_tested_one_is_not():
    from probelib.metrics import compare_discriminability
    a, b = _scores(2, reps=("L", "R")), _scores(3, reps=("L", "R"))
    two = compare_discriminability(a, b)
    assert two.scores == ("sensitivity", "predictivity")
    assert (two.tests["n"] == 2).all() and np.isfinite(two.tests["p"]).all()
    one = compare_discriminability(a["L"], b["L"])          # Series: one replicate, "all"
    assert list(one.per_replicate.replicate.unique()) == ["all"]
    for measure, f in (("sparseness", sparseness), ("normalized variance", normalized_variance)):
        row = one.tests.loc[measure]
        assert row["mean difference"] == pytest.approx(f(a["L"].to_numpy()) - f(b["L"].to_numpy()), rel=1e-12)
        assert np.isnan(row["t"]) and np.isnan(row["p"]) and row["n"] == 1


def test_compare_discriminability_accepts_mappings_and_reports_bad_tables():
    import pandas as pd
    from probelib.metrics import compare_discriminability
    by_model = {"m1": [1, 2], "m2": [3, 1], "m3": [2, 2]}          # model -> scores per replicate (ints)
    frame = pd.DataFrame(by_model).T.astype(float)
    from_map = compare_discriminability(by_model, frame * 2)
    from_frame = compare_discriminability(frame, frame * 2)
    pd.testing.assert_frame_equal(from_map.pooled, from_frame.pooled)
    np.testing.assert_allclose(from_map.pooled.loc["sensitivity"], from_map.pooled.loc["predictivity"])  # scale free
    scalars = compare_discriminability({"m1": 1.0, "m2": 3.0}, {"m1": 2.0, "m2": 2.0})   # one value per model
    assert scalars.pooled.loc["sensitivity", "sparseness"] == pytest.approx(sparseness([1.0, 3.0]))
    assert scalars.pooled.loc["predictivity", "sparseness"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match=r"^sensitivity: need scores of at least 2 models \(rows\); got 1$"):
        compare_discriminability(frame.iloc[:1], frame.iloc[:1])
    with pytest.raises(ValueError, match=r"^predictivity: need scores of at least 2 models \(rows\); got 1$"):
        compare_discriminability(frame, frame.iloc[:1])
    bad = frame.copy()
    bad.iloc[1, 0] = np.inf
    with pytest.raises(ValueError, match=r"^sensitivity: scores must be finite$"):
        compare_discriminability(bad, frame)
    text = frame.astype(object)
    text.iloc[0, 0] = "high"
    with pytest.raises(ValueError):                                         # not numbers: a ValueError too
        compare_discriminability(text, frame)
    with pytest.raises(ValueError, match=r"^s2: scores must be finite$"):
        compare_discriminability(frame, bad, names=("s1", "s2"))
    with pytest.raises(ValueError, match=r"^the two scores need the same models and replicates"):
        compare_discriminability(frame, frame.iloc[:2])                      # shape
    with pytest.raises(ValueError, match=r"same models and replicates"):
        compare_discriminability(frame, frame.rename(index={"m3": "m4"}))   # models
    with pytest.raises(ValueError, match=r"same models and replicates"):
        compare_discriminability(frame, frame.rename(columns={1: 2}))       # replicates


# --------------------------------------------------------------------------- gradients and sensitivities

def test_gradient_agreement_is_the_cosine_and_the_subspace_similarity_per_image():
    from probelib.geometry import subspace_similarity
    from probelib.metrics import gradient_agreement
    rng = np.random.default_rng(10)
    g, r = rng.standard_normal((4, 2, 6)), rng.standard_normal((4, 2, 6))
    g[0, 1] *= 0.01           # small but non-zero gradients have a direction too
    g[2] *= 0.01              # ... and span a subspace
    r[1] *= 0.01
    res = gradient_agreement(g, r)
    expected = (g * r).sum(2) / (np.linalg.norm(g, axis=2) * np.linalg.norm(r, axis=2))
    np.testing.assert_allclose(res.cosine, expected, rtol=1e-12)
    np.testing.assert_allclose(res.subspace, [subspace_similarity(g[i].T, r[i].T) for i in range(4)], rtol=1e-12)
    assert res.chance == 2 / 6
    # a unit with a zero gradient has no direction: NaN cosine, silently; an image whose
    # gradients are all zero (in either model) has no subspace: NaN
    g[1, 0] = 0.0
    r[2, 1] = 0.0
    g[3] = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = gradient_agreement(g, r)
    assert np.isnan(res.cosine[1, 0]) and np.isnan(res.cosine[2, 1]) and np.isnan(res.cosine[3]).all()
    assert np.isfinite(res.cosine[0]).all() and np.isfinite(res.cosine[1, 1]) and np.isfinite(res.cosine[2, 0])
    assert np.isnan(res.subspace[3]) and np.isfinite(res.subspace[:3]).all()
    assert res.subspace[1] == pytest.approx(subspace_similarity(g[1, 1:].T, r[1].T), rel=1e-12)
    r2 = r.copy()
    r2[0] = 0.0
    assert np.isnan(gradient_agreement(g, r2).subspace[0])
    with pytest.raises(ValueError, match=r"^gradients must both have shape \(N, U, D\); got \(4, 2, 6\) and \(4, 1, 6\)$"):
        gradient_agreement(g, r[:, :1])
    with pytest.raises(ValueError, match=r"^gradients must both have shape \(N, U, D\); got \(2, 6\) and \(2, 6\)$"):
        gradient_agreement(g[0], r[0])


def test_sensitivity_agreement_level_and_profile_follow_their_definitions():
    from probelib.metrics import sensitivity_agreement
    rng = np.random.default_rng(11)
    ref = np.exp(rng.standard_normal((6, 3)))
    sens = np.exp(rng.standard_normal((6, 3)))
    sens[:, 2] = np.exp(0.01 * rng.standard_normal(6))     # a small profile is a profile too
    out = sensitivity_agreement(sens, ref)
    assert set(out) == {"level_ratio", "log_level_error", "profile_r"}
    ratio = np.exp(np.mean(np.log(sens) - np.log(ref)))               # geometric mean of sens / ref
    assert out["level_ratio"] == pytest.approx(ratio, rel=1e-12)
    assert out["log_level_error"] == pytest.approx(abs(np.log(ratio)), rel=1e-12)
    profile = np.mean([stats.pearsonr(np.log(sens[:, u]), np.log(ref[:, u]))[0] for u in range(3)])
    assert out["profile_r"] == pytest.approx(profile, rel=1e-10)
    inverse = sensitivity_agreement(ref, sens)                         # swapping: 1 / ratio, same error
    assert inverse["level_ratio"] == pytest.approx(1 / ratio, rel=1e-12)
    assert inverse["log_level_error"] == pytest.approx(out["log_level_error"], rel=1e-12)
    # a unit constant in log (no profile) is left out of the average; none left: NaN
    flat = sens.copy()
    flat[:, 0] = 2.0
    left_out = np.mean([stats.pearsonr(np.log(sens[:, u]), np.log(ref[:, u]))[0] for u in (1, 2)])
    assert sensitivity_agreement(flat, ref)["profile_r"] == pytest.approx(left_out, rel=1e-10)
    assert np.isnan(_no_warning(lambda: sensitivity_agreement(np.full((6, 2), 2.0), ref[:, :2])["profile_r"]))
    # the profile needs 3 images: 3 is enough, 2 give NaN (the level is still defined)
    three = sensitivity_agreement(sens[:3], ref[:3])
    assert three["profile_r"] == pytest.approx(np.mean([stats.pearsonr(np.log(sens[:3, u]), np.log(ref[:3, u]))[0]
                                                        for u in range(3)]), rel=1e-10)
    two = sensitivity_agreement(sens[:2], ref[:2])
    assert np.isnan(two["profile_r"]) and np.isfinite(two["level_ratio"])
    one_unit = sensitivity_agreement(sens[:, 1], ref[:, 1])           # (N,) vectors: one unit
    assert one_unit["profile_r"] == pytest.approx(stats.pearsonr(np.log(sens[:, 1]), np.log(ref[:, 1]))[0], rel=1e-10)
    assert sensitivity_agreement(2 * ref, ref)["level_ratio"] == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("sens,ref,message", [
    (np.ones((3, 2)), np.ones((3, 3)), r"^sens and ref_sens must have the same shape \(N, U\); got \(3, 2\) and \(3, 3\)$"),
    (np.ones((3, 2, 1)), np.ones((3, 2, 1)), r"^sens and ref_sens must have the same shape \(N, U\)"),
    (np.ones(3), np.ones((3, 1)), r"^sens and ref_sens must have the same shape \(N, U\); got \(3,\) and \(3, 1\)$"),
    (np.ones((3, 1)), np.ones(3), r"^sens and ref_sens must have the same shape \(N, U\); got \(3, 1\) and \(3,\)$"),
    (np.array([1.0, 0.0, 1.0]), np.ones(3), r"^sensitivities must be finite and > 0$"),
    (np.ones(3), np.array([1.0, -1.0, 1.0]), r"^sensitivities must be finite and > 0$"),
    (np.ones(3), np.array([1.0, 0.0, 1.0]), r"^sensitivities must be finite and > 0$"),
    (np.array([1.0, np.inf, 1.0]), np.ones(3), r"^sensitivities must be finite and > 0$"),
    (np.ones(3), np.array([1.0, np.nan, 1.0]), r"^sensitivities must be finite and > 0$"),
])
def test_sensitivity_agreement_rejects_bad_inputs(sens, ref, message):
    from probelib.metrics import sensitivity_agreement
    with pytest.raises(ValueError, match=message):
        sensitivity_agreement(sens, ref)


# --------------------------------------------------------------------------- more boundaries

def test_scalar_and_wrongly_shaped_inputs_are_refused():
    from probelib.metrics import response_sd
    with pytest.raises(ValueError, match=r"^pred and obs must have shape \(N, V\) or \(N,\) with N >= 2 images; "
                                         r"got \(3, 2, 2\)$"):
        pearson_r(np.ones((3, 2, 2)), np.ones((3, 2, 2)))
    with pytest.raises(ValueError, match=r"^a and b must be paired arrays of the same shape; got \(\) and \(\)$"):
        paired_test(1.0, 2.0)
    with pytest.raises(ValueError, match=r"^need more than 1 values along axis 0; got shape \(\)$"):
        sem(2.0)
    with pytest.raises(ValueError, match=r"^responses must be \(N, V\) with N > 1; got shape \(3,\)$"):
        response_sd(np.ones(3))
    with pytest.raises(ValueError, match=r"^responses must be \(N, V\) with N > 1; got shape \(1, 2\)$"):
        response_sd(np.ones((1, 2)))
    np.testing.assert_array_equal(response_sd(np.array([[1.0, 2.0], [3.0, 2.0]])), [np.sqrt(2.0), 0.0])   # N = 2
    with pytest.raises(ValueError, match=r"^axis 0 out of range for sensitivity of shape \(\)$"):
        sensitivity_summary(3.0, axis=0)
    s = np.arange(12.0).reshape(3, 4)
    assert sensitivity_summary(s, axis=np.int64(1)).n == 4                      # a numpy integer axis
    np.testing.assert_allclose(sensitivity_summary(s, axis=-1).mean, s.mean(1))
    np.testing.assert_allclose(sensitivity_summary(s, axis=(-1, 1)).mean, s.mean(1))   # the same axis twice
    with pytest.raises(ValueError, match=r"^axis -3 out of range"):
        sensitivity_summary(s, axis=-3)
    with pytest.raises(ValueError, match=r"^axis 2 out of range"):
        sensitivity_summary(s, axis=2)


def test_spearman_brown_with_factors_at_and_below_one():
    assert spearman_brown(0.4, 1) == pytest.approx(0.4)             # same length: unchanged
    assert spearman_brown(0.5, 0.5) == pytest.approx(0.25 / 0.75)   # half the length
    assert spearman_brown(0.5, 1e-9) == pytest.approx(1e-9, rel=1e-6)
    with pytest.raises(ValueError, match=r"^factor must be > 0; got -1$"):
        spearman_brown(0.5, -1)


def test_high_frequency_fraction_boundaries():
    """A frequency exactly at the cutoff is low-frequency (power above the cutoff counts);
    the cutoff must lie in (0, sqrt(2)/2); rows and columns are not confused on non-square images."""
    from probelib.metrics import high_frequency_fraction
    x = np.arange(8)
    at_cutoff = np.broadcast_to(np.round(np.cos(np.pi * x / 2)), (3, 8, 8))   # 1, 0, -1, 0: 0.25 cycles per pixel
    assert high_frequency_fraction(at_cutoff, cutoff=0.25) == 0.0
    assert high_frequency_fraction(at_cutoff, cutoff=0.24) == pytest.approx(1.0)
    # non-square: a horizontal frequency of 0.25 and a vertical one of 0.125
    h = np.broadcast_to(np.round(np.cos(np.pi * np.arange(16) / 2)), (1, 8, 16))
    v = np.broadcast_to(np.cos(np.pi * np.arange(8) / 4)[:, None], (1, 8, 16))
    assert high_frequency_fraction(h, cutoff=0.2) == pytest.approx(1.0)
    assert high_frequency_fraction(v, cutoff=0.2) == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(high_frequency_fraction(np.stack([h, v]), cutoff=0.2), [1.0, 0.0], atol=1e-12)
    for bad in (0.0, -0.1, 0.5 * np.sqrt(2)):
        with pytest.raises(ValueError, match=r"^cutoff must be in \(0, 0\.707\) cycles per pixel"):
            high_frequency_fraction(at_cutoff, cutoff=bad)
    assert high_frequency_fraction(at_cutoff, cutoff=0.7) == 0.0            # just inside the range
    with pytest.raises(ValueError, match=r"^x must have shape \(\.\.\., C, H, W\); got \(8, 8\)$"):
        high_frequency_fraction(np.zeros((8, 8)))


def test_agreements_compute_in_float64_whatever_the_input_dtype():
    from probelib.metrics import gradient_agreement, sensitivity_agreement
    rng = np.random.default_rng(12)
    g, r = rng.standard_normal((3, 2, 7)).astype(np.float32), rng.standard_normal((3, 2, 7)).astype(np.float32)
    a, b = gradient_agreement(g, r), gradient_agreement(g.astype(np.float64), r.astype(np.float64))
    np.testing.assert_array_equal(a.cosine, b.cosine)
    np.testing.assert_array_equal(a.subspace, b.subspace)
    s, ref = np.exp(rng.standard_normal((5, 2))).astype(np.float32), np.exp(rng.standard_normal((5, 2))).astype(np.float32)
    assert sensitivity_agreement(s, ref) == sensitivity_agreement(s.astype(np.float64), ref.astype(np.float64))
    assert sensitivity_agreement(torch.tensor(s), ref) == sensitivity_agreement(s.astype(np.float64), ref)


def test_high_frequency_fraction_is_a_fraction_of_power_in_float64():
    """Power, not amplitude: a cosine of amplitude 1 at 0.25 cycles per pixel (power 1/2, split
    between +-f) and the Nyquist checkerboard of amplitude 2 (power 4) give 4 / (4 + 1/2);
    tiny inputs are as valid as large ones; tensors (also ones that need grad) and float32 are read
    in float64."""
    from probelib.metrics import high_frequency_fraction
    yy, xx = np.mgrid[:8, :8]
    low = np.round(np.cos(np.pi * xx / 2))                   # 0.25 cycles per pixel
    high = (-1.0) ** (xx + yy)                               # the Nyquist corner
    mixed = np.stack([low + 2 * high] * 3)
    assert high_frequency_fraction(mixed, cutoff=0.3) == pytest.approx(4 / 4.5, rel=1e-12)
    tiny = 1e-4 * np.random.default_rng(13).standard_normal((2, 3, 8, 8))
    np.testing.assert_allclose(high_frequency_fraction(tiny), high_frequency_fraction(tiny * 1e4), rtol=1e-12)
    x32 = np.random.default_rng(14).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(high_frequency_fraction(x32), high_frequency_fraction(x32.astype(np.float64)))
    t = torch.tensor(x32, requires_grad=True)
    np.testing.assert_array_equal(high_frequency_fraction(t), high_frequency_fraction(x32.astype(np.float64)))


@pytest.mark.parametrize("call,message", [
    (lambda: pl.metrics.percentile_of(1.0, [0.0, 2.0, np.nan]), r"^distribution contain 1 NaN/inf values$"),
    (lambda: pl.metrics.percentile_of([np.nan, 1.0], [0.0, 2.0]), r"^values contain 1 NaN/inf values$"),
    (lambda: pl.metrics.percentile_of(1.0, [[0.0, np.inf]]), r"^distribution contain 1 NaN/inf values in columns \[1\]$"),
    (lambda: pl.metrics.percentile_of("a", [0.0, 2.0]), r"^values must be numeric; got str$"),
    (lambda: pl.metrics.high_frequency_fraction(np.full((3, 4, 4), np.inf)), r"^x contain 48 NaN/inf values"),
    (lambda: pl.metrics.high_frequency_fraction(torch.full((3, 4, 4), np.nan)), r"^x contain 48 NaN/inf values"),
])
def test_non_finite_inputs_raise_with_a_count(call, message):
    """The module's convention (non-finite inputs raise ValueError with a count) holds for the
    percentile and the high-frequency fraction too: a NaN in the distribution used to be counted
    as above every value (1.0 in [0, 2, NaN] was at 33 %), and a NaN value at 100 %."""
    with pytest.raises(ValueError, match=message):
        call()
