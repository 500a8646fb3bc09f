"""The NSD experimental design (probelib.data.nsd.design) from small ``nsd_expdesign.mat`` files in
the real format: each range check at its boundary (the first and last valid MATLAB index, one
beyond), the sizes it requires, what every error says, and each subject's row of ``subjectim``."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from probelib.data.nsd import nsd_shared_images, read_expdesign
from probelib.data.nsd.paths import MAX_SESSIONS, N_IMAGES, NSD_BUCKET, TRIALS_PER_SESSION, nsd_path

K = 12                                    # images per subject (10,000 in NSD)
N_TRIALS = MAX_SESSIONS * TRIALS_PER_SESSION


def _design(**changes) -> dict:
    """1-based MATLAB arrays: every index at its valid extremes (1 and K, 1 and 73,000)."""
    order = (np.arange(N_TRIALS) % K) + 1
    subjectim = np.arange(1, 8 * K + 1).reshape(8, K) * 700
    subjectim[0, 0], subjectim[7, K - 1] = 1, N_IMAGES
    design = {"masterordering": order[None, :], "subjectim": subjectim, "sharedix": np.array([[N_IMAGES, 5, 1]])}
    design.update(changes)
    return design


def _write(tmp_path, design) -> str:
    path = tmp_path / "nsd_expdesign.mat"
    savemat(path, {k: v for k, v in design.items() if v is not None})
    return str(path)


def test_indices_are_made_0_based_at_both_extremes(tmp_path):
    d = read_expdesign(_write(tmp_path, _design()))
    assert d.masterordering.min() == 0 and d.masterordering.max() == K - 1 and d.masterordering.size == N_TRIALS
    assert d.subjectim.shape == (8, K) and d.subjectim.min() == 0 and d.subjectim.max() == N_IMAGES - 1
    assert d.sharedix.tolist() == [0, 4, N_IMAGES - 1]             # sorted
    assert d.masterordering.dtype == d.subjectim.dtype == d.sharedix.dtype == np.int64


def test_each_subject_sees_its_own_images(tmp_path):
    d = read_expdesign(_write(tmp_path, _design()))
    raw = _design()["subjectim"] - 1
    for subject in (1, 2, 8):
        ids = d.trial_images(subject, 1)
        assert ids.shape == (TRIALS_PER_SESSION,)
        assert ids.tolist() == raw[subject - 1, np.arange(TRIALS_PER_SESSION) % K].tolist()
    assert d.trial_images(3, 2).shape == (2 * TRIALS_PER_SESSION,)


@pytest.mark.parametrize("name, value, message", [
    ("masterordering", 0, "masterordering indices outside 1..12"),
    ("masterordering", K + 1, "masterordering indices outside 1..12"),
    ("subjectim", 0, f"subjectim / sharedix hold ids outside 1..{N_IMAGES}"),
    ("subjectim", N_IMAGES + 1, f"subjectim / sharedix hold ids outside 1..{N_IMAGES}"),
    ("sharedix", 0, f"subjectim / sharedix hold ids outside 1..{N_IMAGES}"),
    ("sharedix", N_IMAGES + 1, f"subjectim / sharedix hold ids outside 1..{N_IMAGES}"),
])
def test_an_index_one_beyond_either_end_is_refused(tmp_path, name, value, message):
    design = _design()
    array = design[name].copy()
    array.flat[1] = value
    path = _write(tmp_path, {**design, name: array})
    with pytest.raises(ValueError) as err:
        read_expdesign(path)
    assert str(err.value) == f"{path}: {message}"


def test_sizes_and_variables_are_required(tmp_path):
    short = _design(masterordering=_design()["masterordering"][:, 1:])
    path = _write(tmp_path, short)
    with pytest.raises(ValueError) as err:
        read_expdesign(path)
    assert str(err.value) == (f"{path}: masterordering has {N_TRIALS - 1} trials (expected 30000) and subjectim "
                              f"shape (8, {K}) (expected (8, 10000))")
    path = _write(tmp_path, _design(subjectim=_design()["subjectim"][:7]))
    with pytest.raises(ValueError, match=r"masterordering has 30000 trials \(expected 30000\) and subjectim shape "
                                         r"\(7, 12\)"):
        read_expdesign(path)
    path = _write(tmp_path, _design(sharedix=None))
    with pytest.raises(ValueError) as err:
        read_expdesign(path)
    assert str(err.value) == f"{path} lacks the variables ['sharedix']"


def test_a_corrupt_design_names_the_subjects_asked_for(tmp_path):
    rel = nsd_path("expdesign")
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(ValueError) as err:
        nsd_shared_images(tmp_path, subjects=[3, 4])
    assert str(err.value).startswith(f"NSD file {rel} (under {tmp_path}) could not be read")
    assert str(err.value).endswith(f"fetch_nsd({str(tmp_path)!r}, subjects=[3, 4]) or `aws s3 cp s3://{NSD_BUCKET}/"
                                   f"{rel} {tmp_path / rel}`.")


def test_stim_info_errors_name_the_subjects_asked_for(tmp_path):
    from probelib.data.nsd.design import _check_stim_info

    design = read_expdesign(_write(tmp_path, _design()))
    rel = nsd_path("stim_info")
    hint = f"fetch_nsd({str(tmp_path)!r}, subjects=[3, 4]) or `aws s3 cp s3://{NSD_BUCKET}/{rel} {tmp_path / rel}`."
    with pytest.raises(FileNotFoundError) as err:
        _check_stim_info(tmp_path, design, [3, 4])
    assert str(err.value).endswith(hint)
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text("nsdId,shared1000\n0,True\n4,False\n72999,true\n")
    with pytest.raises(ValueError) as err:
        _check_stim_info(tmp_path, design, [3, 4])
    assert str(err.value).startswith(f"{rel} lists 2 shared1000 images that differ from sharedix")
    assert str(err.value).endswith(hint)
    (tmp_path / rel).write_text("nsdId,shared1000\n0,True\n4,1\n72999, TRUE\n")
    _check_stim_info(tmp_path, design, [3, 4])                   # the same three images: no error
    (tmp_path / rel).write_text("nsdid,shared1000\n0,True\n")
    with pytest.raises(ValueError) as err:
        _check_stim_info(tmp_path, design, [3, 4])
    assert "columns nsdId and shared1000 not found (header: ['nsdid', 'shared1000'])" in str(err.value)
    assert str(err.value).endswith(hint)
