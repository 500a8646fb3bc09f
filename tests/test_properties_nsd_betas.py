"""Reading NSD betas (probelib.data.nsd.betas) from small session files in the real format (int16
X×Y×Z×750 NIfTI, the (750, Z, Y, X) HDF5 dataset): which file is read, what a missing or wrong
file's error says, z-scoring with constant voxels, and the gathering of single trials at the
edges of sessions (a selected trial on a session's first and last trial, a session without
selected trials, which is not even opened)."""
from __future__ import annotations

import warnings

import h5py
import nibabel as nib
import numpy as np
import pytest

from probelib.data.nsd.betas import (_betas_relpath, _check_betas, _extract_subject, _read_hdf5_voxels,
                                     _read_nifti_voxels, _zscore)
from probelib.data.nsd.design import NSDDesign
from probelib.data.nsd.paths import BETA_SCALE, NSD_BUCKET, TRIALS_PER_SESSION, nsd_path
from probelib.data.nsd.rois import _SubjectVoxels

T = TRIALS_PER_SESSION
SHAPE = (2, 3, 2)
SUBJECT = 2


def _touch(root, rel):
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(b"")


# ------------------------------------------------------------------------------ which file

def test_the_preferred_file_of_a_session_is_read(tmp_path):
    h5 = nsd_path("betas_hdf5", subject=SUBJECT, session=3)
    gz = nsd_path("betas_nifti", subject=SUBJECT, session=3)
    _touch(tmp_path, gz[:-3])
    assert _betas_relpath(tmp_path, SUBJECT, 3, "nifti") == (gz[:-3], "nifti")     # an uncompressed .nii
    assert _betas_relpath(tmp_path, SUBJECT, 3, "auto") == (gz[:-3], "nifti")
    _touch(tmp_path, gz)
    assert _betas_relpath(tmp_path, SUBJECT, 3, "nifti") == (gz, "nifti")
    _touch(tmp_path, h5)
    assert _betas_relpath(tmp_path, SUBJECT, 3, "auto") == (h5, "hdf5")
    assert _betas_relpath(tmp_path, SUBJECT, 3, "nifti") == (gz, "nifti")
    assert _betas_relpath(tmp_path, SUBJECT, 3, "hdf5") == (h5, "hdf5")


@pytest.mark.parametrize("fmt", ["auto", "nifti", "hdf5"])
def test_a_missing_session_says_which_files_and_how_to_get_them(tmp_path, fmt):
    h5 = nsd_path("betas_hdf5", subject=SUBJECT, session=4)
    gz = nsd_path("betas_nifti", subject=SUBJECT, session=4)
    wanted, fetch_fmt, first = {"auto": (f"{h5} or {gz}", "nifti", h5), "nifti": (gz, "nifti", gz),
                                "hdf5": (h5, "hdf5", h5)}[fmt]
    with pytest.raises(FileNotFoundError) as err:
        _betas_relpath(tmp_path, SUBJECT, 4, fmt)
    assert str(err.value) == (f"NSD betas file {wanted} is missing under {tmp_path}. Get it with "
                              f"probelib.data.nsd.fetch_nsd({str(tmp_path)!r}, subjects=[{SUBJECT}], "
                              f"betas_format={fetch_fmt!r}) or `aws s3 cp s3://{NSD_BUCKET}/{first} {tmp_path / first}`.")


def test_betas_of_another_shape_or_type_are_refused():
    _check_betas((2, 3, 2, T), (2, 3, 2, T), np.int16)
    with pytest.raises(ValueError) as err:
        _check_betas((2, 3, 2, 749), (2, 3, 2, T), np.int16)
    assert str(err.value) == (f"betas have shape (2, 3, 2, 749), expected (2, 3, 2, {T}) (truncated file, or betas "
                              "from another space than the ROI files?)")
    with pytest.raises(ValueError) as err:
        _check_betas([2, 3, 2, T], (2, 3, 2, T), np.float32)
    assert str(err.value) == "betas have dtype float32, expected int16 (percent signal change x 300)"


# ------------------------------------------------------------------------------ reading voxels

def _betas(seed: int, constant=()) -> np.ndarray:
    x = np.random.default_rng(seed).integers(-3000, 3000, (*SHAPE, T)).astype(np.int16)
    for ijk in constant:
        x[ijk] = 17
    return x


def _write_nifti(root, session, data):
    rel = nsd_path("betas_nifti", subject=SUBJECT, session=session)
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), root / rel)


IJK = np.array([[0, 0, 0], [1, 2, 1], [0, 2, 0], [1, 0, 1]])   # both ends of every axis


@pytest.mark.parametrize("chunk", [1, 7, 750, 1000])
def test_hdf5_and_nifti_give_the_voxels_whatever_the_block_size(tmp_path, chunk):
    x = _betas(0)
    nii = tmp_path / "b.nii.gz"
    nib.save(nib.Nifti1Image(x, np.eye(4)), nii)
    h5 = tmp_path / "b.hdf5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("betas", data=np.ascontiguousarray(x.transpose(3, 2, 1, 0)), chunks=(7, 1, 3, 2))
    expected = x[IJK[:, 0], IJK[:, 1], IJK[:, 2]].astype(np.float64)
    for reader, path in ((_read_nifti_voxels, nii), (_read_hdf5_voxels, h5)):
        got = reader(path, IJK, SHAPE, chunk)
        assert got.dtype == np.float64 and got.shape == (len(IJK), T)
        np.testing.assert_array_equal(got, expected)
    # a single voxel (a bounding box of one voxel)
    np.testing.assert_array_equal(_read_hdf5_voxels(h5, IJK[1:2], SHAPE, chunk), expected[1:2])


def test_an_hdf5_file_without_betas_names_its_datasets(tmp_path):
    with h5py.File(tmp_path / "b.hdf5", "w") as f:
        f.create_dataset("x", data=np.zeros(2))
    with pytest.raises(KeyError) as err:
        _read_hdf5_voxels(tmp_path / "b.hdf5", IJK, SHAPE, 10)
    assert err.value.args == ("no dataset 'betas' (datasets: ['x'])",)


def test_z_scores_with_constant_voxels():
    x = np.array([[1.0, 3.0, 1.0, 3.0], [2.0, 2.0, 2.0, 2.0], [0.0, 2.0, 0.0, 2.0], [-5.0, -5.0, -5.0, -5.0]])
    z, n = _zscore(x.copy())
    assert n == 2
    np.testing.assert_array_equal(z, [[-1, 1, -1, 1], [0, 0, 0, 0], [-1, 1, -1, 1], [0, 0, 0, 0]])
    z, n = _zscore(np.array([[0.0, 4.0]]))
    assert n == 0 and z.tolist() == [[-1.0, 1.0]]
    # a constant row whose computed SD is not exactly 0 (about 1e-17) is constant all the same
    row = np.full((1, 750), 17 / 300)
    assert row.std() != 0
    z, n = _zscore(row)
    assert n == 1 and not z.any()


# ------------------------------------------------------------------------------ gathering trials

class _Bar:
    def __init__(self):
        self.updates, self.postfix = 0, []

    def update(self):
        self.updates += 1

    def set_postfix_str(self, text):
        self.postfix.append(text)


def _three_sessions():
    """Subject 2's images 0-249 are shown twice in session 1 (trials 0-249 and 250-499) and once on
    session 3's first trials (1500-1749); session 2 shows other images only; image 250 is shown on
    session 1's last trial and twice in session 2."""
    s1 = np.r_[np.arange(250), np.arange(250), 1000 + np.arange(249), 250]
    s2 = np.r_[250, 250, 251 + np.arange(748)]
    s3 = np.r_[np.arange(250), 1250 + np.arange(500)]
    order = np.r_[s1, s2, s3]
    subjectim = np.tile(np.arange(2000) * 3 + 5000, (8, 1))
    subjectim[SUBJECT - 1] += 1                         # subject 2's ids differ from the others'
    return NSDDesign(order, subjectim, np.sort(subjectim[0, :10])), subjectim[SUBJECT - 1]


def test_single_trials_are_gathered_in_order_of_presentation(tmp_path):
    design, ids = _three_sessions()
    data = {1: _betas(1, constant=[(0, 0, 0)]), 3: _betas(3, constant=[(0, 0, 0), (1, 2, 1)])}
    for session, x in data.items():                      # session 2 has no file: it must not be opened
        _write_nifti(tmp_path, session, x)
    vox = _SubjectVoxels(SHAPE, IJK, {}, {}, {}, np.zeros(len(IJK)))
    image_ids = ids[[0, 7, 249]]
    bar = _Bar()
    out = _extract_subject(tmp_path, SUBJECT, 3, design, image_ids, vox, "auto", False, 100, bar)
    assert out.shape == (3, 3, len(IJK)) and out.dtype == np.float32
    assert bar.updates == 3 and bar.postfix == [f"subj02 session 0{s}" for s in (1, 2, 3)]
    i, j, k = IJK.T
    for n, image in enumerate((0, 7, 249)):
        trials = [(1, image), (1, 250 + image), (3, image)]   # session, trial within the session
        for r, (session, t) in enumerate(trials):
            expected = (data[session][i, j, k, t] / BETA_SCALE).astype(np.float32)
            np.testing.assert_array_equal(out[n, r], expected)
    # z-scored within each session; the count of constant voxels is the largest of one session
    with pytest.warns(RuntimeWarning) as rec:
        z = _extract_subject(tmp_path, SUBJECT, 3, design, image_ids, vox, "auto", True, 750, _Bar())
    assert [str(w.message) for w in rec] == [f"subject {SUBJECT}: 2 ROI voxels are constant within a session "
                                             "(outside the brain mask?); their z-scores were set to 0"]
    x3 = data[3][i, j, k].astype(np.float64) / BETA_SCALE
    np.testing.assert_allclose(z[0, 2, 2:], (x3[2:, 0] - x3[2:].mean(1)) / x3[2:].std(1), rtol=1e-6)
    assert z[0, 2, 0] == 0 == z[0, 2, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no constant voxel among these: no warning
        _extract_subject(tmp_path, SUBJECT, 3, design, image_ids, _SubjectVoxels(SHAPE, IJK[2:], {}, {}, {}, np.zeros(2)),
                         "auto", True, 750, _Bar())


def test_trials_on_the_first_and_last_trial_of_a_session(tmp_path):
    design, ids = _three_sessions()
    for session in (1, 2, 3):
        _write_nifti(tmp_path, session, _betas(10 + session))
    vox = _SubjectVoxels(SHAPE, IJK, {}, {}, {}, np.zeros(len(IJK)))
    out = _extract_subject(tmp_path, SUBJECT, 3, design, ids[[250]], vox, "nifti", False, 750, _Bar())
    x1, x2 = _betas(11), _betas(12)
    i, j, k = IJK.T
    # image 250: session 1's last trial (749), session 2's first two (750, 751)
    np.testing.assert_array_equal(out[0], (np.stack([x1[i, j, k, T - 1], x2[i, j, k, 0], x2[i, j, k, 1]])
                                           / BETA_SCALE).astype(np.float32))
    # one image, the smallest id of all shown: every other trial lands after it
    one = _extract_subject(tmp_path, SUBJECT, 3, design, ids[[0]], vox, "nifti", False, 750, _Bar())
    assert one.shape == (1, 3, len(IJK)) and np.isfinite(one).all()


def test_every_selected_image_needs_its_three_trials(tmp_path):
    design, ids = _three_sessions()
    vox = _SubjectVoxels(SHAPE, IJK, {}, {}, {}, np.zeros(len(IJK)))
    for image_ids in (np.r_[ids[[0, 1]], 10**6], ids[[0, 1000]]):   # never shown; shown once
        with pytest.raises(ValueError) as err:
            _extract_subject(tmp_path, SUBJECT, 3, design, image_ids, vox, "auto", False, 750, _Bar())
        assert str(err.value) == f"subject {SUBJECT}: not every selected image has 3 trials"
    # no voxel: nothing is read at all
    empty = _SubjectVoxels(SHAPE, np.zeros((0, 3), dtype=np.int64), {}, {}, {}, np.zeros(0))
    bar = _Bar()
    out = _extract_subject(tmp_path, SUBJECT, 3, design, ids[[0]], empty, "auto", False, 750, bar)
    assert out.shape == (1, 3, 0) and bar.updates == 3
