"""The NSD loader on a fabricated miniature NSD tree in the real formats (see nsd_fixture.py)."""
from __future__ import annotations

import csv
import os
import re
import shutil
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy.io import loadmat, savemat

from probelib.data import nsd
from probelib.data.nsd import assembly
from probelib.data.nsd import fetch_nsd, load_nsd, nsd_files, nsd_path, nsd_shared_images, read_ctab

sys.path.insert(0, str(Path(__file__).parent))
from nsd_fixture import LABELS, MiniNSD, make_mini_nsd, reference_repeats  # noqa: E402

ROIS = ("FFA", "EBA", "PPA", "VWFA", "OFA")


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> MiniNSD:
    return make_mini_nsd(tmp_path_factory.mktemp("nsd"))


@pytest.fixture
def mini_copy(mini, tmp_path) -> Path:
    """A private copy of the tree for tests that damage it."""
    return Path(shutil.copytree(mini.root, tmp_path / "nsd"))


def _load(mini: MiniNSD, root: Path | None = None, **kw):
    args = dict(subjects=(1, 2), sessions=mini.sessions, n_train=8, image_size=32, progress=False)
    args.update(kw)
    return load_nsd(root or mini.root, **args)


@pytest.fixture(scope="module")
def voxel_ds(mini):
    return _load(mini, rois=ROIS, average_subjects=False, betas_format="nifti")


# ------------------------------------------------------------------------------------ layout

def test_layout_paths(mini):
    files = nsd_files(2, sessions=2)
    assert len(files) == 2 + 4 * 3 + 1 + 2 + 1
    assert "nsddata_betas/ppdata/subj02/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02.nii.gz" in files
    assert "nsddata/ppdata/subj02/func1pt8mm/floc_wordtval.nii.gz" in files
    assert "nsddata/freesurfer/subj02/label/floc-bodies.mgz.ctab" in files
    assert files[-1] == "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    assert nsd_path("betas_hdf5", subject=8, session=30).endswith("subj08/func1pt8mm/betas_fithrf_GLMdenoise_RR/"
                                                                   "betas_session30.hdf5")
    assert sum("betas_session" in f for f in nsd_files([4, 8])) == 30 + 30       # NSD's session counts
    for fmt in ("nifti", "hdf5"):                                               # the fixture has the layout
        assert all((mini.root / f).is_file() for f in nsd_files([1, 2], fmt, sessions=mini.sessions))
    with pytest.raises(ValueError, match="1-8"):
        nsd_files(9)


def test_read_ctab(mini, tmp_path):
    table = read_ctab(mini.root / "nsddata/freesurfer/subj02/label/floc-faces.mgz.ctab")
    assert table == {"Unknown": 0, "aTL-faces": 1, "mTL-faces": 2, "FFA-2": 3, "FFA-1": 4, "OFA": 5}
    fs = tmp_path / "fs.ctab"
    fs.write_text("#$Id: FreeSurferColorLUT\n\n0  Unknown  0 0 0 0\n1  OFA  255 0 0 0\n2  FFA-1  0 255 0 0\n")
    assert read_ctab(fs) == {"Unknown": 0, "OFA": 1, "FFA-1": 2}
    fs.write_text("OFA 1\n")
    with pytest.raises(ValueError, match="colour-table"):
        read_ctab(fs)


# ------------------------------------------------------------------------------------ design

def test_shared_images_from_masterordering(mini):
    g = mini.groups
    both = nsd_shared_images(mini.root, (1, 2), sessions=mini.sessions)
    np.testing.assert_array_equal(both, g["A"])
    np.testing.assert_array_equal(nsd_shared_images(mini.root, 1, sessions=mini.sessions),
                                  np.sort(np.concatenate([g["A"], g["B"]])))
    np.testing.assert_array_equal(nsd_shared_images(mini.root, 2, sessions=mini.sessions), g["A"])
    # a 4th session completes group C (its third showing is there); non-shared group D never enters
    np.testing.assert_array_equal(nsd_shared_images(mini.root, 1, sessions=4),
                                  np.sort(np.concatenate([g["A"], g["B"], g["C"]])))


def test_image_set_follows_subjects(mini):
    # default: the images every subject saw 3 times (the papers' 515 on the real NSD)
    default = _load(mini, subjects=(1,), rois=("FFA",))
    np.testing.assert_array_equal(default.image_ids, nsd_shared_images(mini.root, sessions=mini.sessions))
    assert len(default.image_ids) < 16
    one = _load(mini, subjects=(1,), rois=("FFA",), shared_subjects=None)
    np.testing.assert_array_equal(one.image_ids, np.sort(np.concatenate([mini.groups["A"], mini.groups["B"]])))
    restricted = _load(mini, subjects=(1,), rois=("FFA",), shared_subjects=(2,))
    np.testing.assert_array_equal(restricted.image_ids, mini.groups["A"])


# ------------------------------------------------------------------------------------ extraction

def test_roi_threshold_voxel_selection(mini, voxel_ds):
    for roi in ROIS:
        cat, labels = nsd.NSD_ROIS[roi]
        meta = voxel_ds.voxels[roi]
        for s in (1, 2):
            got = {tuple(v) for v in meta["ijk"][meta["subject"] == s]}
            assert got == mini.expected_voxels(s, cat, labels), (roi, s)
            ijk = meta["ijk"][meta["subject"] == s]
            np.testing.assert_allclose(meta["t"][meta["subject"] == s], mini.tval[(s, cat)][tuple(ijk.T)])
            assert set(meta["label"][meta["subject"] == s]) <= set(labels)
        assert (meta["t"] > 7).all()
    assert set(nsd.NSD_ROIS["FFA"][1]) == {"FFA-1", "FFA-2"} and LABELS["faces"][0] == "OFA"


def test_zscored_repeat_averaged_responses(mini, voxel_ds):
    ds = voxel_ds
    np.testing.assert_array_equal(ds.image_ids, mini.groups["A"])
    for roi in ROIS:
        meta, rep = ds.voxels[roi], ds.repeats[roi]
        assert rep.shape == (12, 3, len(meta["subject"])) and rep.dtype == np.float32
        for s in (1, 2):
            cols = meta["subject"] == s
            expected = reference_repeats(mini, s, ds.image_ids, meta["ijk"][cols])
            np.testing.assert_allclose(rep[:, :, cols], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.responses[roi], rep.mean(axis=1), rtol=1e-6, atol=1e-6)
        snr = np.concatenate([mini.ncsnr[s][tuple(meta["ijk"][meta["subject"] == s].T)] for s in (1, 2)])
        np.testing.assert_allclose(ds.noise_ceiling[roi], np.sqrt(snr**2 / (snr**2 + 1 / 3)), rtol=1e-5)


def test_betas_divided_by_300_without_zscore(mini):
    ds = _load(mini, subjects=(1,), rois=("PPA",), average_subjects=False, zscore=False)
    ijk = ds.voxels["PPA"]["ijk"]
    expected = reference_repeats(mini, 1, ds.image_ids, ijk, zscore=False)
    np.testing.assert_allclose(ds.repeats["PPA"], expected, rtol=1e-6, atol=1e-6)
    trial = np.flatnonzero(mini.trial_ids[1] == ds.image_ids[0])[0]           # first showing of image 0
    raw = mini.betas[(1, trial // 750 + 1)][(*ijk[0], trial % 750)]           # int16 = PSC x 300
    assert ds.repeats["PPA"][0, 0, 0] == np.float32(raw / 300.0)


def test_hdf5_and_auto_match_nifti(mini, voxel_ds):
    for fmt in ("hdf5", "auto"):
        ds = _load(mini, rois=ROIS, average_subjects=False, betas_format=fmt)
        for roi in ROIS:
            np.testing.assert_array_equal(ds.repeats[roi], voxel_ds.repeats[roi])
            np.testing.assert_array_equal(ds.voxels[roi]["ijk"], voxel_ds.voxels[roi]["ijk"])


def test_average_over_subjects(mini, voxel_ds):
    ds = _load(mini, rois=ROIS, average_subjects=True)
    for roi in ROIS:
        meta = voxel_ds.voxels[roi]
        per_subject = [reference_repeats(mini, s, ds.image_ids, meta["ijk"][meta["subject"] == s]).mean(axis=2)
                       for s in (1, 2)]
        expected = np.mean(per_subject, axis=0)                                # (N, 3) ROI mean, subject mean
        assert ds.responses[roi].shape == (12, 1) and ds.repeats[roi].shape == (12, 3, 1)
        np.testing.assert_allclose(ds.repeats[roi][:, :, 0], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ds.responses[roi][:, 0], expected.mean(axis=1), rtol=1e-5, atol=1e-5)
        assert ds.noise_ceiling[roi].shape == (1,) and 0 < ds.noise_ceiling[roi][0] <= 1
        np.testing.assert_array_equal(ds.voxels[roi]["ijk"], meta["ijk"])     # contributing voxels


def test_stimuli_and_split(mini, voxel_ds):
    ds = voxel_ds
    assert ds.stimuli.shape == (12, 3, 32, 32) and ds.stimuli.dtype == np.float32
    assert 0 <= ds.stimuli.min() and ds.stimuli.max() <= 1
    red = np.rint(ds.stimuli[:, 0].mean(axis=(1, 2)) * 255).astype(int)
    green = np.rint(ds.stimuli[:, 1].mean(axis=(1, 2)) * 255).astype(int)
    np.testing.assert_array_equal(red, ds.image_ids % 256)                    # row n is image_ids[n]
    np.testing.assert_array_equal(green, (ds.image_ids // 256) % 256)
    assert len(ds.split["train"]) == 8 and len(ds.split["test"]) == 4
    assert sorted(np.concatenate([ds.split["train"], ds.split["test"]])) == list(range(12))
    full = _load(mini, subjects=(2,), rois=("OFA",), image_size=None)
    assert full.stimuli.shape == (12, 3, 425, 425)


def test_the_split_follows_the_seed_and_the_bar_counts_sessions(mini, voxel_ds, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    a, b = (_load(mini, rois=("FFA",), seed=0) for _ in range(2))
    assert capsys.readouterr().err == ""                                      # progress=False: quiet
    c = _load(mini, rois=("FFA",), seed=1, progress=True)
    assert all(np.array_equal(a.split[k], b.split[k]) for k in ("train", "test"))
    assert not np.array_equal(a.split["train"], c.split["train"])
    assert a.name == "NSD subj01+02: ROI means averaged over subjects, fLoc t > 7"
    assert _load(mini, rois=("FFA",), average_subjects=False, t_threshold=7.25).name == \
        "NSD subj01+02: voxels, fLoc t > 7.25"
    for ds in (a, voxel_ds):                                                  # float32 responses and ceilings
        assert {ds.repeats["FFA"].dtype, ds.responses["FFA"].dtype, ds.noise_ceiling["FFA"].dtype} == {np.dtype(np.float32)}
        assert ds.noise_ceiling["FFA"].ndim == 1
    n = sum(mini.sessions[s] for s in (1, 2))                                 # the sessions read
    err = capsys.readouterr().err
    assert "NSD sessions: 100%" in err and f"{n}/{n}" in err and "session/s]" in err


def test_a_subject_without_voxels_is_left_out_of_the_average_with_a_warning(mini):
    top = {s: max(t for _, name, t in mini.planted[(s, "faces")] if name == "OFA") for s in (1, 2)}
    keep, drop = sorted(top, key=top.get, reverse=True)                      # the subject with the higher t
    threshold = float((top[keep] + top[drop]) / 2)
    with pytest.warns(UserWarning) as record:
        ds = _load(mini, rois=("OFA",), t_threshold=threshold)
    messages = [str(w.message) for w in record if "have no voxels" in str(w.message)]
    assert messages == [f"ROI 'OFA': subjects [{drop}] have no voxels with t > {threshold}; the subject average "
                        f"uses [{keep}]"]
    alone = _load(mini, subjects=(keep,), rois=("OFA",), t_threshold=threshold, shared_subjects=(1, 2))
    np.testing.assert_allclose(ds.responses["OFA"], alone.responses["OFA"], rtol=1e-6)


def test_small_image_set_uses_proportional_split(mini):
    with pytest.warns(UserWarning, match="400/515"):
        ds = _load(mini, rois=("FFA",), n_train=400)
    assert len(ds.split["train"]) == round(12 * 400 / 515) and len(ds.split["test"]) == 12 - 9


def test_bad_arguments(mini):
    with pytest.raises(ValueError, match="unknown NSD ROI"):
        _load(mini, rois=("FFA", "V1"))
    with pytest.raises(ValueError, match=r"^ROI 'FFA' has no voxels with t > 100.0 in subjects \[1, 2\]; lower "
                                         r"t_threshold or choose other subjects$"):
        _load(mini, rois=("FFA",), t_threshold=100)
    with pytest.raises(ValueError, match="betas_format"):
        _load(mini, betas_format="mat")


# ------------------------------------------------------------------------------------ errors

def _edit_stim_info(root: Path, edit) -> None:
    """Rewrite nsd_stim_info_merged.csv under ``root`` with ``edit(header, rows) -> (header, rows)``."""
    path = root / nsd_path("stim_info")
    with open(path, newline="") as f:
        header, *rows = list(csv.reader(f))
    header, rows = edit(header, rows)
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


def test_stim_info_is_cross_checked_against_the_design(mini, mini_copy):
    def spell(header, rows):        # NSD writes True / False; "1" and " TRUE" are read the same way
        col = header.index("shared1000")
        for k, row in enumerate(r for r in rows if r[col] == "True"):
            row[col] = ("1", " TRUE", "true")[k % 3]
        return header, rows

    _edit_stim_info(mini_copy, spell)
    np.testing.assert_array_equal(_load(mini, root=mini_copy, rois=("FFA",)).image_ids, mini.groups["A"])

    def unflag_one(header, rows):   # one shared image missing from the list
        col = header.index("shared1000")
        next(r for r in rows if r[col] in ("1", " TRUE", "true"))[col] = "False"
        return header, rows

    _edit_stim_info(mini_copy, unflag_one)
    n_shared = len(nsd.read_expdesign(mini_copy / nsd_path("expdesign")).sharedix)
    with pytest.raises(ValueError, match=re.escape(f"{nsd_path('stim_info')} lists {n_shared - 1} shared1000 images "
                                                   f"that differ from sharedix in {nsd_path('expdesign')}")):
        _load(mini, root=mini_copy, rois=("FFA",))

    subjects = [f"subject{k}" for k in range(1, 11)]                        # a misspelt column; 14 in all
    _edit_stim_info(mini_copy, lambda header, rows: (["", "cocoId", "nsdid", "shared1000", *subjects],
                                                     [r[:4] + ["0"] * 10 for r in rows]))
    listed = ["Unnamed: 0", "cocoId", "nsdid", "shared1000", *subjects[:8]]    # the first 12
    with pytest.raises(ValueError, match=re.escape(f"NSD file {nsd_path('stim_info')} (under {mini_copy}) could not "
                                                   "be read") + ".*" + re.escape(f"columns nsdId and shared1000 not "
                                                                                 f"found (header: {listed})")):
        _load(mini, root=mini_copy, rois=("FFA",))


def test_missing_files_name_path_and_fetch(mini_copy):
    ctab = "nsddata/freesurfer/subj02/label/floc-faces.mgz.ctab"
    (mini_copy / ctab).unlink()
    with pytest.raises(FileNotFoundError) as err:
        load_nsd(mini_copy, subjects=(1, 2), sessions={1: 3, 2: 2}, progress=False, n_train=8)
    msg = str(err.value)
    assert ctab in msg and "fetch_nsd" in msg and f"aws s3 cp s3://natural-scenes-dataset/{ctab}" in msg

    betas = "nsddata_betas/ppdata/subj01/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session02"
    (mini_copy / (betas + ".hdf5")).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(betas + ".hdf5")):
        load_nsd(mini_copy, subjects=1, rois=("PPA",), sessions=3, betas_format="hdf5", progress=False, n_train=8)
    (mini_copy / (betas + ".nii.gz")).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(betas + ".nii.gz")):
        load_nsd(mini_copy, subjects=1, rois=("PPA",), sessions=3, progress=False, n_train=8)


@pytest.mark.parametrize("key", ["expdesign", "stim_info", "stimuli"])
def test_a_missing_shared_file_names_the_subjects_asked_for_in_its_hint(mini_copy, key):
    (mini_copy / nsd_path(key)).unlink()                                     # no subjNN in its path
    with pytest.raises(FileNotFoundError) as err:
        load_nsd(mini_copy, subjects=2, rois=("PPA",), sessions={1: 3, 2: 2}, progress=False, n_train=8)
    assert f"fetch_nsd({str(mini_copy)!r}, subjects=[2])" in str(err.value)


@pytest.mark.parametrize("fmt", ["nifti", "hdf5"])
def test_truncated_betas(mini_copy, fmt):
    rel = nsd_path(f"betas_{fmt}", subject=2, session=2)
    path = mini_copy / rel
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(rel) + ".*truncated or corrupt.*fetch_nsd"):
        load_nsd(mini_copy, subjects=(1, 2), rois=("PPA",), sessions={1: 3, 2: 2}, betas_format=fmt,
                 progress=False, n_train=8)


def test_truncated_design_and_stimuli(mini_copy):
    kw = dict(subjects=1, rois=("PPA",), sessions=3, progress=False, n_train=8)
    for rel in (nsd_path("expdesign"), nsd_path("stimuli")):
        path = mini_copy / rel
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        with pytest.raises(ValueError, match=re.escape(rel)):
            load_nsd(mini_copy, **kw)
        path.write_bytes(data)


# ------------------------------------------------------------------------------------ corrupt files

def _deflate_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the deflate stream of a one-member gzip file; the 8-byte CRC-32/ISIZE trailer follows."""
    flags, pos = data[3], 10
    if flags & 4:                                                             # FEXTRA
        pos += 2 + int.from_bytes(data[pos:pos + 2], "little")
    for bit in (8, 16):                                                       # FNAME, FCOMMENT
        if flags & bit:
            pos = data.index(b"\0", pos) + 1
    if flags & 2:                                                             # FHCRC
        pos += 2
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    d.decompress(data[pos:])
    assert d.eof and len(d.unused_data) == 8, "expected a single gzip member"
    return pos, len(data) - 8


def _flip(path: Path, where: str) -> None:
    """Invert one byte of a gzip file: in its deflate stream (start/quarter/middle/end) or its trailer."""
    data = bytearray(path.read_bytes())
    start, end = _deflate_span(bytes(data))
    pos = {"deflate_start": start, "deflate_quarter": start + (end - start) // 4,
           "deflate_middle": (start + end) // 2, "deflate_end": end - 1,
           "crc_trailer": end + 1, "isize_trailer": end + 4}[where]
    data[pos] ^= 0xFF
    path.write_bytes(bytes(data))


_FLIPS = ["deflate_start", "deflate_quarter", "deflate_middle", "deflate_end", "crc_trailer", "isize_trailer"]


@pytest.mark.parametrize("where", _FLIPS)
def test_corrupt_gzip_betas_byte_flip_names_file(mini, mini_copy, where):
    rel = nsd_path("betas_nifti", subject=2, session=2)
    _flip(mini_copy / rel, where)
    with pytest.raises(ValueError, match=re.escape(rel) + ".*corrupt") as err:
        _load(mini, root=mini_copy, rois=("FFA", "EBA"), betas_format="nifti")
    if where.endswith("trailer"):                                             # data intact, trailer wrong
        assert re.search("CRC check failed|Incorrect length", str(err.value))


@pytest.mark.parametrize("where", ["deflate_middle", "crc_trailer"])
@pytest.mark.parametrize("key", ["roi", "floc_tval", "ncsnr"])
def test_corrupt_gzip_volume_byte_flip_names_file(mini, mini_copy, key, where):
    rel = {"roi": nsd_path("roi", subject=1, category="faces"), "ncsnr": nsd_path("ncsnr", subject=2),
           "floc_tval": nsd_path("floc_tval", subject=2, tval_name="floc_bodiestval")}[key]
    _flip(mini_copy / rel, where)
    with pytest.raises(ValueError, match=re.escape(rel) + ".*corrupt"):
        _load(mini, root=mini_copy, rois=("FFA", "EBA"), betas_format="nifti")


@pytest.mark.parametrize("cut", [1, 4, 8, 9])
def test_corrupt_truncated_gzip_names_file(mini, mini_copy, cut):
    rel = nsd_path("betas_nifti", subject=1, session=2)
    path = mini_copy / rel
    path.write_bytes(path.read_bytes()[:-cut])                                # trailer (partly) or data cut
    with pytest.raises(ValueError, match=re.escape(rel) + ".*corrupt.*EOFError"):
        _load(mini, root=mini_copy, rois=("PPA",), betas_format="nifti")


def test_corrupt_hdf5_chunk_and_compressed_mat_name_file(mini, mini_copy):
    rel = nsd_path("stimuli")                                                 # deflate-filtered chunks
    with h5py.File(mini_copy / rel, "r") as f:
        info = f["imgBrick"].id.get_chunk_info_by_coord((int(mini.groups["A"][0]), 0, 0, 0))
    with open(mini_copy / rel, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match=re.escape(rel) + ".*corrupt"):
        _load(mini, root=mini_copy, rois=("PPA",))

    rel = nsd_path("expdesign")                                               # MATLAB's compressed variables
    path = mini_copy / rel
    savemat(path, {k: v for k, v in loadmat(path).items() if not k.startswith("__")}, do_compression=True)
    np.testing.assert_array_equal(nsd_shared_images(mini_copy, (1, 2), sessions=mini.sessions), mini.groups["A"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(rel) + ".*corrupt"):
        nsd_shared_images(mini_copy, (1, 2), sessions=mini.sessions)


def test_corrupt_replaced_file_not_served_from_cache(mini, mini_copy, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    kw = dict(root=mini_copy, rois=("FFA",), betas_format="nifti", cache_dir=cache)
    builds = []
    build = assembly._assemble
    monkeypatch.setattr(assembly, "_assemble", lambda *a, **k: builds.append(1) or build(*a, **k))
    first = _load(mini, **kw)                                                 # an untouched tree loads
    _load(mini, **kw)
    assert len(builds) == 1                                                   # second load: cache hit

    rel = nsd_path("betas_nifti", subject=1, session=1)
    path = mini_copy / rel
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))              # same bytes, new mtime
    again = _load(mini, **kw)
    assert len(builds) == 2
    np.testing.assert_array_equal(again.responses["FFA"], first.responses["FFA"])

    img = nib.load(path)                                                      # replaced by other betas
    betas = np.asarray(img.dataobj)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(betas[..., ::-1]), img.affine, img.header), path)
    replaced = _load(mini, **kw)
    assert len(builds) == 3
    assert not np.allclose(replaced.repeats["FFA"], first.repeats["FFA"])
    assert len(list(cache.glob("*.npz"))) == 3


# ------------------------------------------------------------------------------------ cache

def test_cache_hit_corrupt_entry_and_no_partial_entry(mini, mini_copy, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = _load(mini, rois=("FFA", "EBA"), cache_dir=cache)
    entries = list(cache.glob("*.npz"))
    assert len(entries) == 1

    def boom(*args, **kwargs):
        raise AssertionError("recomputed despite a valid cache entry")

    with monkeypatch.context() as m:
        m.setattr(assembly, "_assemble", boom)
        hit = _load(mini, rois=("FFA", "EBA"), cache_dir=cache)
    np.testing.assert_array_equal(hit.stimuli, first.stimuli)
    np.testing.assert_array_equal(hit.image_ids, first.image_ids)
    for roi in ("FFA", "EBA"):
        np.testing.assert_array_equal(hit.responses[roi], first.responses[roi])
        np.testing.assert_array_equal(hit.repeats[roi], first.repeats[roi])
        np.testing.assert_array_equal(hit.voxels[roi]["label"], first.voxels[roi]["label"])
    np.testing.assert_array_equal(hit.split["test"], first.split["test"])
    assert hit.name == first.name and hit.rois == first.rois

    _load(mini, rois=("FFA", "EBA"), cache_dir=cache, seed=1)                 # other inputs, other entry
    assert len(list(cache.glob("*.npz"))) == 2

    entries[0].write_bytes(entries[0].read_bytes()[:1000])                    # corrupt: recomputed
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = _load(mini, rois=("FFA", "EBA"), cache_dir=cache)
    np.testing.assert_array_equal(again.responses["FFA"], first.responses["FFA"])
    with monkeypatch.context() as m:
        m.setattr(assembly, "_assemble", boom)
        _load(mini, rois=("FFA", "EBA"), cache_dir=cache)                      # rewritten and valid

    (mini_copy / nsd_path("betas_nifti", subject=2, session=1)).unlink()      # an error caches nothing
    (mini_copy / nsd_path("betas_hdf5", subject=2, session=1)).unlink()
    bad_cache = tmp_path / "bad"
    with pytest.raises(FileNotFoundError):
        _load(mini, root=mini_copy, rois=("FFA",), cache_dir=bad_cache)
    assert not bad_cache.exists() or not any(bad_cache.iterdir())


# ------------------------------------------------------------------------------------ fetch

class _RangeHandler(BaseHTTPRequestHandler):
    """Serves a directory with HEAD, GET and single-range ``Range: bytes=a-[b]`` requests.

    ``server.cut[relpath] = n`` makes the next GET of that file stop after n body bytes and close
    the connection (an interrupted download). Every request is logged in ``server.log``.
    ``server.head_status = code`` answers every HEAD with that error (servers that refuse HEAD);
    ``server.ignore_range = True`` serves whole files whatever the Range header asks;
    ``server.head_without_length = True`` leaves Content-Length out of HEAD answers;
    ``server.stall = {"HEAD", "GET", "GET bytes=0-0"}`` waits 2 s before answering those requests
    (the method, and the Range header if any: a stalled server); ``server.range_from_zero = True``
    answers a range request with 206 but the whole file (a range it did not ask for);
    ``server.head_extra = n`` reports n more bytes in HEAD answers than a GET then sends.
    """

    def parse_request(self) -> bool:
        ok = super().parse_request()
        request = f"{self.command} {self.headers.get('Range') or ''}".strip() if ok else ""
        if request in getattr(self.server, "stall", ()):
            time.sleep(2)
        return ok

    def do_HEAD(self) -> None:
        if getattr(self.server, "head_status", None):
            self.server.log.append(("HEAD", unquote(urlparse(self.path).path).lstrip("/"), None))
            self.send_error(self.server.head_status)
            return
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        rel = unquote(urlparse(self.path).path).lstrip("/")
        self.server.log.append((self.command, rel, self.headers.get("Range")))
        path = self.server.root / rel
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        requested = None if getattr(self.server, "ignore_range", False) else self.headers.get("Range")
        if requested:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", requested)
            start, end = int(m[1]), int(m[2]) if m[2] else len(data) - 1
            if getattr(self.server, "range_from_zero", False):
                start, end = 0, len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            end = min(end, len(data) - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        if body:
            self.send_header("Content-Length", str(end - start + 1))
        elif not getattr(self.server, "head_without_length", False):
            self.send_header("Content-Length", str(end - start + 1 + getattr(self.server, "head_extra", 0)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if body:
            payload = data[start:end + 1]
            cut = self.server.cut.pop(rel, None) if self.command == "GET" else None
            self.wfile.write(payload if cut is None else payload[:cut])
            self.wfile.flush()

    def log_message(self, *args) -> None:
        pass


def _serving(root: Path):
    """A _RangeHandler server of ``root`` on a free local port, in a thread (a generator for fixtures)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    httpd.root, httpd.log, httpd.cut = root, [], {}
    httpd.handle_error = lambda request, address: None    # a client that gave up: not an error here
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(mini):
    yield from _serving(mini.root)


def test_fetch_downloads_skips_and_resumes(mini, server, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    dest = tmp_path / "dl"
    rels = nsd_files([1, 2], "nifti", sessions=mini.sessions)
    paths = fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert paths == [dest / r for r in rels]
    assert all(p.read_bytes() == (mini.root / r).read_bytes() for p, r in zip(paths, rels))
    assert not list(dest.rglob("*.part"))

    server.log.clear()                                                        # complete files: HEAD only
    fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert {m for m, _, _ in server.log} == {"HEAD"} and len(server.log) == len(rels)

    rel = nsd_path("betas_nifti", subject=1, session=2)                       # resume a .part file
    original = (mini.root / rel).read_bytes()
    (dest / rel).unlink()
    (dest / (rel + ".part")).write_bytes(original[:1000])
    server.log.clear()
    fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert ("GET", rel, "bytes=1000-") in server.log
    assert (dest / rel).read_bytes() == original and not (dest / (rel + ".part")).exists()

    rel = nsd_path("stimuli")                                                 # interrupted, then resumed
    original = (mini.root / rel).read_bytes()
    (dest / rel).unlink()
    server.cut[rel] = 5000
    with pytest.raises(OSError, match=re.escape(f"{rel} from {url}/{rel}")):
        fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert (dest / (rel + ".part")).stat().st_size == 5000
    server.log.clear()
    fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert ("GET", rel, "bytes=5000-") in server.log
    assert (dest / rel).read_bytes() == original

    rel = nsd_path("expdesign")                                               # a truncated copy is replaced
    (dest / rel).write_bytes(b"junk")
    fetch_nsd(dest, [1, 2], base_url=url, sessions=mini.sessions, progress=False)
    assert (dest / rel).read_bytes() == (mini.root / rel).read_bytes()

    ds = load_nsd(dest, subjects=(1, 2), rois=("FFA",), sessions=mini.sessions, progress=False, n_train=8,
                  image_size=32, betas_format="nifti")
    np.testing.assert_array_equal(ds.image_ids, mini.groups["A"])


@pytest.fixture
def files_server(tmp_path):
    """The small files of subject 1 (random bytes: fetching does not read them) behind _RangeHandler."""
    remote = tmp_path / "remote"
    rng = np.random.default_rng(0)
    rels = nsd_files(1, sessions=1, include_stimuli=False)
    for k, rel in enumerate(rels):
        (remote / rel).parent.mkdir(parents=True, exist_ok=True)
        (remote / rel).write_bytes(rng.bytes(3000 + 7 * k))
    for httpd in _serving(remote):
        httpd.rels = rels
        yield httpd


def _fetch(server, dest):
    url = f"http://127.0.0.1:{server.server_address[1]}"
    return fetch_nsd(dest, 1, base_url=url, sessions=1, include_stimuli=False, progress=False, timeout=5)


def _same_files(server, dest) -> bool:
    return all((dest / r).read_bytes() == (server.root / r).read_bytes() for r in server.rels)


def test_fetch_discards_a_partial_file_longer_than_the_remote_one(files_server, tmp_path):
    rel = files_server.rels[0]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / (rel + ".part")).write_bytes(b"x" * 10_000)            # longer than the 3000-byte file
    _fetch(files_server, tmp_path)
    assert ("GET", rel, None) in files_server.log                        # fetched from its first byte
    assert _same_files(files_server, tmp_path) and not (tmp_path / (rel + ".part")).exists()
    rel = files_server.rels[1]                                           # a complete .part is not fetched again
    (tmp_path / rel).rename(tmp_path / (rel + ".part"))
    files_server.log.clear()
    _fetch(files_server, tmp_path)
    assert [m for m, r, _ in files_server.log if r == rel] == ["HEAD"] and _same_files(files_server, tmp_path)


@pytest.mark.parametrize("code", [403, 405, 501])
def test_fetch_sizes_files_by_a_ranged_get_when_head_is_refused(files_server, tmp_path, code):
    files_server.head_status = code
    _fetch(files_server, tmp_path)
    assert _same_files(files_server, tmp_path)
    rel = files_server.rels[0]
    assert ("GET", rel, "bytes=0-0") in files_server.log                # the size from Content-Range
    (tmp_path / rel).write_bytes(b"junk")                                # so a wrong size is noticed
    files_server.log.clear()
    _fetch(files_server, tmp_path)
    assert [(m, h) for m, r, h in files_server.log if r == rel] == [("HEAD", None), ("GET", "bytes=0-0"),
                                                                      ("GET", None)]
    assert [m for m, r, _ in files_server.log if r == files_server.rels[1]] == ["HEAD", "GET"]   # complete: kept
    assert _same_files(files_server, tmp_path)


@pytest.mark.parametrize("server_kind", ["HEAD without length", "HEAD refused, ranges ignored"])
def test_fetch_without_a_size_keeps_present_files_and_fetches_missing_ones(files_server, tmp_path, server_kind):
    """No size is known, so a present file is kept as it is."""
    if server_kind == "HEAD without length":
        files_server.head_without_length = True
    else:
        files_server.head_status, files_server.ignore_range = 405, True
    _fetch(files_server, tmp_path)
    assert _same_files(files_server, tmp_path)
    rel = files_server.rels[0]
    (tmp_path / rel).write_bytes(b"kept")
    (tmp_path / files_server.rels[1]).unlink()
    _fetch(files_server, tmp_path)
    assert (tmp_path / rel).read_bytes() == b"kept"
    assert (tmp_path / files_server.rels[1]).read_bytes() == (files_server.root / files_server.rels[1]).read_bytes()


def test_fetch_starts_over_when_the_server_ignores_the_range(files_server, tmp_path):
    rel = files_server.rels[0]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / (rel + ".part")).write_bytes(b"stale bytes")
    files_server.ignore_range = True
    _fetch(files_server, tmp_path)
    assert ("GET", rel, "bytes=11-") in files_server.log                 # asked to resume, got the whole file
    assert _same_files(files_server, tmp_path)


@pytest.mark.parametrize("stall, head_status", [({"HEAD"}, None), ({"GET bytes=0-0"}, 405), ({"GET"}, None)],
                         ids=["HEAD", "ranged GET", "download"])
def test_fetch_gives_up_on_a_stalled_server_after_its_timeout(files_server, tmp_path, stall, head_status):
    files_server.stall, files_server.head_status = stall, head_status
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    with pytest.raises(OSError, match=r"call fetch_nsd again to resume it$"):
        fetch_nsd(tmp_path, 1, base_url=url, sessions=1, include_stimuli=False, progress=False, timeout=0.5)


def test_fetch_shows_progress_by_default_and_only_when_asked(files_server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    n = len(files_server.rels)
    fetch_nsd(tmp_path / "quiet", 1, base_url=url, sessions=1, include_stimuli=False, progress=False)
    assert capsys.readouterr().err == ""
    fetch_nsd(tmp_path / "default", 1, base_url=url, sessions=1, include_stimuli=False)
    err = capsys.readouterr().err
    assert "NSD files: 100%" in err and f"{n}/{n}" in err and "file/s]" in err       # one bar over the files
    assert Path(files_server.rels[0]).name in err                                    # and one per download,
    assert "/3.00k [" in err and "B/s]" in err                                       # of 3,000 bytes, scaled


@pytest.mark.parametrize("ignore_range", [False, True], ids=["resumed", "started over"])
def test_the_bar_of_a_resumed_or_restarted_download_starts_at_the_bytes_kept(files_server, tmp_path, capsys,
                                                                          monkeypatch, ignore_range):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    rel = files_server.rels[0]                                           # 3,000 bytes
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / (rel + ".part")).write_bytes((files_server.root / rel).read_bytes()[:1000])
    files_server.ignore_range = ignore_range
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    fetch_nsd(tmp_path, 1, base_url=url, sessions=1, include_stimuli=False, timeout=5)
    assert _same_files(files_server, tmp_path)
    shown = [part for part in capsys.readouterr().err.split("\r") if part.startswith(Path(rel).name)]
    start = "0.00" if ignore_range else "1.00k"                          # the bytes kept count from the start
    assert f"| {start}/3.00k [" in shown[0]


def test_a_finished_download_clears_its_bar_and_the_bar_over_the_files_stays(files_server, tmp_path, monkeypatch):
    from probelib.data.nsd import fetch as fetch_module

    made = []
    real = fetch_module.progress_bar
    monkeypatch.setattr(fetch_module, "progress_bar", lambda *a, **kw: made.append(kw) or real(*a, **kw))
    _fetch(files_server, tmp_path)
    files, *downloads = made
    assert files["desc"] == "NSD files" and "leave" not in files                 # tqdm's default: left
    assert len(downloads) == len(files_server.rels) and all(kw["leave"] is False for kw in downloads)


def test_fetch_starts_over_when_the_server_sends_another_range(files_server, tmp_path):
    rel = files_server.rels[0]
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / (rel + ".part")).write_bytes(b"stale bytes")
    files_server.range_from_zero = True                                 # 206, but from byte 0
    _fetch(files_server, tmp_path)
    assert ("GET", rel, "bytes=11-") in files_server.log and _same_files(files_server, tmp_path)


def test_a_download_of_another_size_than_announced_is_kept_as_part(files_server, tmp_path):
    files_server.head_extra = 10                                         # the file changed after HEAD
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    rel = files_server.rels[0]
    with pytest.raises(OSError, match=re.escape(f"download of NSD file {rel} from {url}/{rel} failed (OSError: "
                                                "got 3000 of 3010 bytes); call fetch_nsd again to resume it")):
        _fetch(files_server, tmp_path)
    assert not (tmp_path / rel).exists() and (tmp_path / (rel + ".part")).stat().st_size == 3000


def test_fetch_reports_other_head_errors(files_server, tmp_path):
    files_server.head_status = 500
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    rel = files_server.rels[0]
    with pytest.raises(OSError, match=re.escape(f"download of NSD file {rel} from {url}/{rel} failed: HTTP 500")) as info:
        _fetch(files_server, tmp_path)
    assert type(info.value) is OSError                                   # only a 404 is a FileNotFoundError


def test_fetch_joins_a_base_url_ending_in_a_slash_with_one_slash(files_server, tmp_path):
    files_server.head_status = 500
    url = f"http://127.0.0.1:{files_server.server_address[1]}"
    rel = files_server.rels[0]
    with pytest.raises(OSError, match=re.escape(f" from {url}/{rel} failed")):
        fetch_nsd(tmp_path, 1, base_url=url + "//", sessions=1, include_stimuli=False, progress=False, timeout=5)


def test_fetch_missing_remote_file(server, tmp_path):
    url = f"http://127.0.0.1:{server.server_address[1]}/nowhere"
    rel = nsd_path("expdesign")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{rel} from {url}/{rel}") + ".*404"):
        fetch_nsd(tmp_path, [1], base_url=url, sessions=1, progress=False)
