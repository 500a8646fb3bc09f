"""Boundaries of the data rules: voxels are selected with ``t > t_threshold``, strictly.

The papers keep voxels with localiser t > 7. A voxel exactly on the threshold must be left out and
one a rounding step above it kept, both in the NSD loader (t-maps planted in a miniature NSD tree)
and in the demo's simulated localiser.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from probelib.data import demo, nsd
from probelib.data.demo import load_demo
from probelib.data.nsd import load_nsd

sys.path.insert(0, str(Path(__file__).parent))
import nsd_fixture  # noqa: E402

T7 = np.float32(7.0)
ABOVE = np.nextafter(T7, np.float32(np.inf))     # the smallest float32 above 7
BELOW = np.nextafter(T7, np.float32(-np.inf))


def _shared_rows_only(path, order, subjectim, sharedix, rng):
    """nsd_stim_info_merged.csv with only the columns and rows the loader cross-checks (the 73,000
    rows of the full table take seconds to write and read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "nsdId", "shared1000"])
        for i in (np.asarray(sharedix) - 1).tolist():
            w.writerow([i, i, True])


@pytest.fixture(scope="module")
def boundary_nsd(tmp_path_factory):
    """A miniature NSD tree whose FFA-1 / FFA-2 voxels of subject 1 have t = 7 - ulp, 7, 7 + ulp, ..."""
    with pytest.MonkeyPatch.context() as mp:      # the shared rows of the stimulus table suffice here
        mp.setattr(nsd_fixture, "_write_stim_info", _shared_rows_only)
        mini = nsd_fixture.make_mini_nsd(tmp_path_factory.mktemp("nsd_boundary"))
    rel = nsd.nsd_path("floc_tval", subject=1, tval_name=nsd.FLOC_TVAL_NAMES["faces"])
    tval = mini.tval[(1, "faces")].copy()
    ffa = [ijk for ijk, name, _ in mini.planted[(1, "faces")] if name in ("FFA-1", "FFA-2")]
    assert len(ffa) == 6
    values = [BELOW, T7, ABOVE, np.float32(7.5), T7, ABOVE]
    for ijk, t in zip(ffa, values):
        tval[ijk] = t
    img = nib.Nifti1Image(tval.astype(np.float32), nib.load(mini.root / rel).affine)
    nib.save(img, mini.root / rel)
    expected = {ijk: float(t) for ijk, t in zip(ffa, values)}
    return mini, expected


def _load_ffa(mini, **kw):
    return load_nsd(mini.root, subjects=(1,), rois=("FFA",), sessions=mini.sessions, n_train=4,
                    image_size=16, progress=False, average_subjects=False, **kw)


def test_nsd_keeps_voxels_strictly_above_the_threshold(boundary_nsd):
    mini, planted = boundary_nsd
    ds = _load_ffa(mini)
    got = {tuple(int(v) for v in ijk) for ijk in ds.voxels["FFA"]["ijk"]}
    assert got == {ijk for ijk, t in planted.items() if t > 7.0}
    assert len(got) == 3                              # 7 + ulp (twice) and 7.5; never 7 or 7 - ulp
    assert np.all(ds.voxels["FFA"]["t"] > 7.0)
    assert ds.responses["FFA"].shape[1] == 3


def _fake_features(cache_dir=None, device="cpu"):
    n = len(demo.stimulus_sources())
    return np.random.default_rng(0).random((n, 64)).astype(np.float32)


def test_demo_localiser_keeps_voxels_strictly_above_the_threshold(monkeypatch):
    """The demo's ROIs: region voxels with localiser t > t_threshold. The observer's features are
    replaced by random ones (the rule, not the network, is under test) and the localiser t of the
    first region voxels is planted on and around the threshold."""
    planted = np.array([float(BELOW), 7.0, float(np.nextafter(7.0, np.inf)), 9.0, 7.0, 30.0, -2.0, 7.0])
    real_t = demo._localiser_t

    def localiser_t(trials, member):
        t = real_t(trials, member)
        return planted[:len(t)].copy()

    monkeypatch.setattr(demo, "demo_features", _fake_features)
    monkeypatch.setattr(demo, "_localiser_t", localiser_t)
    ds = load_demo(n_subjects=2, n_voxels=16, image_size=16, average_subjects=False)
    for r_idx, roi in enumerate(demo.DEMO_ROIS):
        meta = ds.voxels[roi]
        region = np.flatnonzero(np.repeat(np.arange(4), 4)[None].repeat(2, 0).ravel() == r_idx)
        kept = region[planted[:len(region)] > 7.0]
        np.testing.assert_array_equal(np.sort(meta["observer_index"]), kept)
        np.testing.assert_array_equal(meta["t"], planted[:len(region)][planted[:len(region)] > 7.0]
                                      .astype(np.float32))
        assert ds.responses[roi].shape[1] == len(kept) == 3
    strict = load_demo(n_subjects=2, n_voxels=16, image_size=16, average_subjects=False, t_threshold=9.0)
    assert all(len(strict.voxels[roi]["t"]) == 1 for roi in demo.DEMO_ROIS)     # only 30, not 9
