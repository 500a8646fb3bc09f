"""The NSD ROI definitions and voxel selection (probelib.data.nsd.rois) on a tiny tree of real-format
files (a colour table and NIfTI label, t and ncsnr volumes of one subject): what each error says,
which volumes are accepted, and what an ROI without a voxel above threshold gives."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from probelib.data.nsd.paths import NSD_BUCKET, _tval_relpath, nsd_path
from probelib.data.nsd.rois import NSD_ROIS, _load_volume, _resolve_rois, _subject_voxels

SHAPE = (3, 4, 5)
SUBJECT = 2


def _nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)


def _tree(root: Path, tval_shape=SHAPE, ncsnr_shape=SHAPE, roi_extra_axis: bool = False) -> dict:
    """Faces ROI volumes of SUBJECT: FFA-1 (value 2) at (0,0,0) t=9 and (1,1,1) t=7 (on the
    threshold), FFA-2 (value 3) at (2,3,4) t=8, OFA (value 1) at (0,1,2) t=3."""
    labels = np.zeros(SHAPE, dtype=np.int16)
    tval = np.zeros(tval_shape, dtype=np.float32)
    for ijk, value, t in (((0, 0, 0), 2, 9.0), ((1, 1, 1), 2, 7.0), ((2, 3, 4), 3, 8.0), ((0, 1, 2), 1, 3.0)):
        labels[ijk] = value
        tval[ijk] = t
    ctab = root / nsd_path("ctab", subject=SUBJECT, category="faces")
    ctab.parent.mkdir(parents=True, exist_ok=True)
    ctab.write_text("0 Unknown\n1 OFA\n2 FFA-1\n3 FFA-2\n")
    _nifti(root / nsd_path("roi", subject=SUBJECT, category="faces"), labels[..., None] if roi_extra_axis else labels)
    _nifti(root / _tval_relpath(SUBJECT, "faces"), tval)
    ncsnr = np.arange(np.prod(ncsnr_shape), dtype=np.float32).reshape(ncsnr_shape) / 100
    _nifti(root / nsd_path("ncsnr", subject=SUBJECT), ncsnr)
    return {"labels": labels, "tval": tval, "ncsnr": ncsnr}


# ------------------------------------------------------------------------------ ROI definitions

def test_roi_names_resolve_to_categories_and_labels():
    assert _resolve_rois("FFA") == {"FFA": ("faces", ("FFA-1", "FFA-2"))}
    assert _resolve_rois(["PPA", "EBA"]) == {"PPA": ("places", ("PPA",)), "EBA": ("bodies", ("EBA",))}
    assert _resolve_rois({"face-patches": ("faces", ["OFA", "FFA-1"])}) == {"face-patches": ("faces", ("OFA", "FFA-1"))}
    assert all(_resolve_rois([name])[name] == NSD_ROIS[name] for name in NSD_ROIS)


def test_bad_roi_definitions_say_what_is_valid():
    with pytest.raises(ValueError) as err:
        _resolve_rois(["FFA", "XYZ"])
    assert str(err.value) == (f"unknown NSD ROI(s) ['XYZ']; valid: {', '.join(NSD_ROIS)} "
                              "(or pass a mapping name -> (category, label names))")
    for empty in ([], {}):
        with pytest.raises(ValueError) as err:
            _resolve_rois(empty)
        assert str(err.value) == "rois is empty"
    with pytest.raises(ValueError) as err:
        _resolve_rois({"x": ("cars", ("A",))})
    assert str(err.value) == "unknown fLoc category of ROI 'x' 'cars'; valid: 'faces', 'bodies', 'places', 'words'"
    for bad in ({"x": ("faces", ())}, {"a::b": ("faces", ("OFA",))}):
        with pytest.raises(ValueError) as err:
            _resolve_rois(bad)
        assert str(err.value) == f"ROI {next(iter(bad))!r} needs at least one label and a name without '::'"
    assert _resolve_rois({"a:b": ("faces", ("OFA",))})      # one colon is a valid name


# ------------------------------------------------------------------------------ volumes

def test_volumes_are_float64_3d_and_a_single_volume_4d_file_is_one(tmp_path):
    _tree(tmp_path, roi_extra_axis=True)
    rel = nsd_path("roi", subject=SUBJECT, category="faces")
    vol = _load_volume(tmp_path, rel, [SUBJECT])
    assert vol.shape == SHAPE and vol.dtype == np.float64 and vol[0, 0, 0] == 2 and vol[2, 3, 4] == 3
    two = tmp_path / "two.nii.gz"
    _nifti(two, np.zeros((*SHAPE, 2), dtype=np.float32))
    with pytest.raises(ValueError) as err:
        _load_volume(tmp_path, "two.nii.gz", [SUBJECT])
    assert str(err.value) == (f"NSD file two.nii.gz holds an array of shape {(*SHAPE, 2)}, not a 3-D volume: is it "
                              f"the right file? Get it with probelib.data.nsd.fetch_nsd({str(tmp_path)!r}, "
                              f"subjects=[{SUBJECT}]) or `aws s3 cp s3://{NSD_BUCKET}/two.nii.gz {tmp_path / 'two.nii.gz'}`.")
    _nifti(tmp_path / "flat.nii.gz", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"flat.nii.gz holds an array of shape \(3, 4\), not a 3-D volume"):
        _load_volume(tmp_path, "flat.nii.gz", [SUBJECT])


def test_missing_and_corrupt_volumes_name_the_file_and_the_subjects_to_fetch(tmp_path):
    rel = nsd_path("ncsnr", subject=SUBJECT)
    with pytest.raises(FileNotFoundError) as err:
        _load_volume(tmp_path, rel, [SUBJECT, 5])
    assert str(err.value) == (f"NSD file {rel} is missing under {tmp_path}. Get it with probelib.data.nsd.fetch_nsd("
                              f"{str(tmp_path)!r}, subjects=[{SUBJECT}, 5]) or `aws s3 cp s3://{NSD_BUCKET}/{rel} "
                              f"{tmp_path / rel}`.")
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"\x1f\x8b not a volume")
    with pytest.raises(ValueError) as err:
        _load_volume(tmp_path, rel, [SUBJECT, 5])
    assert str(err.value).startswith(f"NSD file {rel} (under {tmp_path}) could not be read")
    assert f"subjects=[{SUBJECT}, 5])" in str(err.value)


# ------------------------------------------------------------------------------ voxel selection

def test_voxels_above_the_threshold_with_their_labels_t_and_ncsnr(tmp_path):
    planted = _tree(tmp_path, roi_extra_axis=True)
    spec = _resolve_rois(["FFA", "OFA"])
    sv = _subject_voxels(tmp_path, SUBJECT, spec, 7.0)
    assert sv.shape == SHAPE
    assert sv.ijk.tolist() == [[0, 0, 0], [2, 3, 4]] and sv.ijk.dtype == np.int64   # t = 7 is not > 7
    assert sv.members["FFA"].tolist() == [0, 1] and sv.members["OFA"].tolist() == []
    assert sv.t["FFA"].tolist() == [9.0, 8.0] and sv.labels["FFA"].tolist() == ["FFA-1", "FFA-2"]
    assert sv.ncsnr.tolist() == [planted["ncsnr"][0, 0, 0], planted["ncsnr"][2, 3, 4]]
    # an ROI without a voxel above threshold: empty, with the types of a full one
    assert sv.t["OFA"].shape == (0,) and sv.labels["OFA"].shape == (0,) and sv.labels["OFA"].dtype.kind == "U"
    low = _subject_voxels(tmp_path, SUBJECT, spec, 2.0)
    assert low.members["OFA"].tolist() == [1] and low.labels["OFA"].tolist() == ["OFA"]


def test_no_voxel_at_all_needs_no_ncsnr(tmp_path):
    _tree(tmp_path)
    (tmp_path / nsd_path("ncsnr", subject=SUBJECT)).unlink()
    sv = _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["FFA"]), 100.0)
    assert sv.ijk.shape == (0, 3) and sv.ncsnr.shape == (0,) and sv.members["FFA"].tolist() == []
    assert sv.labels["FFA"].dtype.kind == "U"
    with pytest.raises(FileNotFoundError, match="ncsnr.nii.gz is missing"):
        _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["FFA"]), 7.0)


def test_volumes_of_different_spaces_are_refused_naming_both_files(tmp_path):
    _tree(tmp_path, tval_shape=(3, 4, 6))
    roi, tval = nsd_path("roi", subject=SUBJECT, category="faces"), _tval_relpath(SUBJECT, "faces")
    with pytest.raises(ValueError) as err:
        _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["FFA"]), 7.0)
    assert str(err.value) == (f"{tval} has shape (3, 4, 6) but {roi} has {SHAPE}: files from different spaces? "
                              f"Re-download them. Get it with probelib.data.nsd.fetch_nsd({str(tmp_path)!r}, "
                              f"subjects=[{SUBJECT}]) or `aws s3 cp s3://{NSD_BUCKET}/{tval} {tmp_path / tval}`.")
    _tree(tmp_path, ncsnr_shape=(3, 4, 4))
    with pytest.raises(ValueError) as err:
        _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["FFA"]), 7.0)
    assert str(err.value) == f"{nsd_path('ncsnr', subject=SUBJECT)} has shape (3, 4, 4), expected {SHAPE}"


def test_labels_missing_from_the_colour_table_are_named(tmp_path):
    _tree(tmp_path)
    with pytest.raises(ValueError) as err:
        _subject_voxels(tmp_path, SUBJECT, {"x": ("faces", ("FFA-1", "aTL-faces"))}, 7.0)
    assert str(err.value) == (f"labels ['aTL-faces'] of ROI 'x' are not in {nsd_path('ctab', subject=SUBJECT, category='faces')}"
                              " (labels there: ['Unknown', 'OFA', 'FFA-1', 'FFA-2'])")
    ctab = tmp_path / nsd_path("ctab", subject=SUBJECT, category="faces")
    ctab.write_text("0 Unknown\nFFA-1 2\n")
    with pytest.raises(ValueError, match=r"floc-faces.mgz.ctab:2: not a colour-table line"):
        _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["FFA"]), 7.0)


def test_colour_tables_in_both_layouts_with_comments(tmp_path):
    from probelib.data.nsd.rois import read_ctab

    path = tmp_path / "t.ctab"
    path.write_text("# FreeSurfer colour table\n\n0 Unknown 0 0 0 0\n-1 Outside\n2 FFA-1 # a # note\n  7   FFA-2#was#FFA-3\n")
    assert read_ctab(path) == {"Unknown": 0, "Outside": -1, "FFA-1": 2, "FFA-2": 7}
    for text, message in (("0 Unknown\n3\n", f"{path}:2: not a colour-table line (index name [R G B A]): '3'"),
                          ("0 Unknown\nx- FFA\n", f"{path}:2: not a colour-table line"),
                          ("1- FFA\n", f"{path}:1: not a colour-table line"),
                          ("# c\n1 A\n2 A 0 0 0 0\n", f"{path}:3: label 'A' appears twice"),
                          ("# only a comment\n\n", f"{path} has no labels")):
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            read_ctab(path)
        assert str(err.value).startswith(message), str(err.value)


def test_a_voxel_without_a_label_value_is_in_no_roi(tmp_path):
    _tree(tmp_path)
    labels = np.zeros(SHAPE, dtype=np.float32)
    labels[0, 0, 0], labels[1, 2, 3] = 2, np.nan          # NaN at a voxel with a high t
    tval = np.zeros(SHAPE, dtype=np.float32)
    tval[0, 0, 0] = tval[1, 2, 3] = 9.0
    _nifti(tmp_path / nsd_path("roi", subject=SUBJECT, category="faces"), labels)
    _nifti(tmp_path / _tval_relpath(SUBJECT, "faces"), tval)
    sv = _subject_voxels(tmp_path, SUBJECT, _resolve_rois(["OFA", "FFA"]), 7.0)
    assert sv.ijk.tolist() == [[0, 0, 0]] and sv.members["OFA"].tolist() == []
