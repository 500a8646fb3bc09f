"""Properties of the NSD loader's parts that need no NSD tree: fetch hints, the extraction cache's
file name, entries and stamps, and reading betas volume block by volume block."""
from __future__ import annotations

import hashlib
import json
import os
import warnings

import nibabel as nib
import numpy as np
import pytest

from probelib.data.dataset import Dataset
from probelib.data.nsd import nsd_shared_images
from probelib.data.nsd.assembly import _cache_file, _load_dataset, _save_dataset, _source_stamps
from probelib.data.nsd.betas import _betas_candidates, _read_nifti_voxels
from probelib.data.nsd.paths import NSD_BUCKET, TRIALS_PER_SESSION, _fetch_hint, _tval_relpath, nsd_path


# ------------------------------------------------------------------------------ how to fetch

def test_fetch_hints_name_the_subjects_the_file_and_both_ways_to_get_it(tmp_path):
    rel = nsd_path("ncsnr", subject=3)
    assert _fetch_hint(tmp_path, rel) == (
        f"Get it with probelib.data.nsd.fetch_nsd({str(tmp_path)!r}, subjects=[3]) or "
        f"`aws s3 cp s3://{NSD_BUCKET}/{rel} {tmp_path / rel}`.")
    assert "subjects=[2, 5])" in _fetch_hint(tmp_path, rel, subjects=(2, 5))     # given subjects first
    assert "subjects=[1])" in _fetch_hint(tmp_path, nsd_path("expdesign"))       # a file of no subject
    assert "subjects=[1])" in _fetch_hint(tmp_path, nsd_path("expdesign"), subjects=())
    assert "subjects=[8])" in _fetch_hint(tmp_path, nsd_path("roi", subject=8, category="faces"))


def test_a_missing_design_names_the_subjects_asked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fetch_nsd\(.*, subjects=\[3, 4\]\)"):
        nsd_shared_images(tmp_path, subjects=[3, 4])


# ------------------------------------------------------------------------------ the extraction cache

def test_cache_file_names_are_the_keys_digest_whatever_their_order(tmp_path):
    key = {"subjects": [1, 2], "rois": ["FFA"], "zscore": True}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    assert _cache_file(tmp_path, key) == tmp_path / f"nsd_{digest}.npz"
    assert _cache_file(str(tmp_path), dict(reversed(list(key.items())))) == _cache_file(tmp_path, key)
    assert _cache_file(tmp_path, {**key, "zscore": False}) != _cache_file(tmp_path, key)


def _dataset() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(stimuli=rng.random((4, 3, 2, 2)).astype(np.float32),
                   responses={"FFA": rng.normal(size=(4, 2)).astype(np.float32)},
                   image_ids=np.array([5, 9, 11, 20]), split={"train": np.array([0, 1, 2]), "test": np.array([3])},
                   repeats={"FFA": rng.normal(size=(4, 3, 2)).astype(np.float32)},
                   voxels={"FFA": {"subject": np.array([1, 2]), "t": np.array([8.0, 9.5])}},
                   noise_ceiling={"FFA": np.array([0.4, 0.6], dtype=np.float32)}, name="mini")


def test_cache_entries_round_trip_into_new_folders_and_answer_only_their_key(tmp_path):
    ds, key = _dataset(), {"k": 1}
    path = tmp_path / "a" / "b" / "nsd_x.npz"                          # folders made as needed
    _save_dataset(path, ds, key)
    back = _load_dataset(path, key)
    for name in ("stimuli", "image_ids", "name"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ds, name))
    for part in ("responses", "repeats", "noise_ceiling"):
        assert list(getattr(back, part)) == ["FFA"]
        np.testing.assert_array_equal(getattr(back, part)["FFA"], getattr(ds, part)["FFA"])
    assert list(back.voxels["FFA"]) == ["subject", "t"]
    np.testing.assert_array_equal(back.voxels["FFA"]["t"], ds.voxels["FFA"]["t"])
    np.testing.assert_array_equal(back.split["test"], [3])
    assert _load_dataset(path, {"k": 2}) is None                       # made from other inputs
    assert _load_dataset(tmp_path / "absent.npz", key) is None
    assert [p.name for p in path.parent.iterdir()] == ["nsd_x.npz"]    # no temporary file left


def test_an_entry_holding_pickles_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "nsd_x.npz"
    meta = {"key": {"k": 1}, "name": "x", "rois": [], "voxel_fields": {}}
    np.savez(path, __meta__=np.array([json.dumps(meta)], dtype=object), stimuli=np.zeros(1),
             image_ids=np.zeros(1), **{"split::train": np.zeros(1), "split::test": np.zeros(1)})
    with pytest.warns(RuntimeWarning, match=r"^NSD cache entry .*nsd_x.npz is unreadable \(ValueError: "
                                            r"Object arrays cannot be loaded when allow_pickle=False\); recomputing it$"):
        assert _load_dataset(path, {"k": 1}) is None


def test_an_unreadable_entry_is_named_with_its_error(tmp_path):
    path = tmp_path / "nsd_x.npz"
    _save_dataset(path, _dataset(), {"k": 1})
    path.write_bytes(path.read_bytes()[:200])                           # a truncated zip archive
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _load_dataset(path, {"k": 1}) is None
    assert [str(w.message).split(" is unreadable ")[1][:13] for w in caught] == ["(BadZipFile: "]


def test_source_stamps_cover_every_file_the_extraction_reads(tmp_path):
    spec = {"FFA": ("faces", ("FFA-1",)), "OFA": ("faces", ("OFA",)), "PPA": ("places", ("PPA",))}
    counts = {1: 2, 3: 1}
    want = [nsd_path("expdesign"), nsd_path("stim_info"), nsd_path("stimuli")]
    for s in (1, 3):
        for cat in ("faces", "places"):
            want += [nsd_path("ctab", subject=s, category=cat), nsd_path("roi", subject=s, category=cat),
                     _tval_relpath(s, cat)]
        want.append(nsd_path("ncsnr", subject=s))
        want += [rel for k in range(1, counts[s] + 1) for rel, _ in _betas_candidates(s, k, "hdf5")]
    present = nsd_path("betas_hdf5", subject=3, session=1)
    (tmp_path / present).parent.mkdir(parents=True)
    (tmp_path / present).write_bytes(b"12345")
    stamps = _source_stamps(tmp_path, [1, 3], spec, "hdf5", counts)
    assert list(stamps) == want
    st = os.stat(tmp_path / present)
    assert stamps[present] == [5, st.st_mtime_ns]
    assert all(v is None for k, v in stamps.items() if k != present)
    assert len(_source_stamps(tmp_path, [1], spec, "auto", {1: 1})) > len(_source_stamps(tmp_path, [1], spec, "hdf5",
                                                                                       {1: 1}))


# ------------------------------------------------------------------------------ betas, block by block

def _betas(tmp_path, slope=None, inter=None):
    rng = np.random.default_rng(0)
    data = rng.integers(-3000, 3000, size=(3, 2, 2, TRIALS_PER_SESSION)).astype(np.int16)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_data_dtype(np.int16)
    if slope is not None:
        img.header.set_slope_inter(slope, inter)
    path = tmp_path / "betas.nii.gz"
    nib.save(img, path)
    return path, data


@pytest.mark.parametrize("chunk", [1, 100, 749, 750, 1000])
def test_nifti_betas_are_read_in_blocks_of_any_size(tmp_path, chunk):
    path, data = _betas(tmp_path)
    ijk = np.array([[0, 0, 0], [2, 1, 1], [1, 0, 1]])
    out = _read_nifti_voxels(path, ijk, (3, 2, 2), chunk)
    assert out.dtype == np.float64 and out.shape == (3, TRIALS_PER_SESSION)
    np.testing.assert_array_equal(out, data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].astype(np.float64))


@pytest.mark.parametrize("slope,inter", [(2.0, 0.0), (1.0, 5.0)])
def test_scaled_nifti_betas_are_refused(tmp_path, slope, inter):
    path, _ = _betas(tmp_path, slope, inter)
    with pytest.raises(ValueError, match=rf"^expected unscaled int16 betas; header has scl_slope={slope}, "
                                         rf"scl_inter={inter}$"):
        _read_nifti_voxels(path, np.array([[0, 0, 0]]), (3, 2, 2), 100)


# ------------------------------------------------------------------------------ paths: arguments at their edges

def test_subjects_and_sessions_are_checked_at_their_edges():
    from probelib.data.nsd.paths import MAX_SESSIONS, nsd_files
    one = nsd_files(1, sessions=1, include_stimuli=False)
    assert sum("betas_session" in f for f in one) == 1
    assert sum("betas_session" in f for f in nsd_files(1, sessions=MAX_SESSIONS, include_stimuli=False)) == MAX_SESSIONS
    for sessions, bad in [(0, "{1: 0}"), (MAX_SESSIONS + 1, "{1: 41}")]:
        with pytest.raises(ValueError) as e:
            nsd_files(1, sessions=sessions)
        assert str(e.value) == f"sessions per subject must be in 1..{MAX_SESSIONS}; got {bad}"
    with pytest.raises(ValueError) as e:                       # a per-subject count, the others NSD's own
        nsd_files([1, 2], sessions={2: 41})
    assert str(e.value) == "sessions per subject must be in 1..40; got {2: 41}"
    with pytest.raises(ValueError) as e:
        nsd_files([])
    assert str(e.value) == "subjects must name at least one NSD subject (1-8)"
    with pytest.raises(ValueError) as e:
        nsd_files([1, 2, 1])
    assert str(e.value) == "subjects contain duplicates: [1, 2, 1]"
    with pytest.raises(ValueError) as e:
        nsd_files(1, betas_format="mat")
    assert str(e.value).startswith("unknown betas_format 'mat'; valid:")
    with pytest.raises(ValueError) as e:
        nsd_path("bogus")
    assert str(e.value).startswith("unknown NSD file key 'bogus'; valid:")


def test_a_gzip_stream_is_read_to_its_end_in_blocks_and_a_cut_one_says_truncated(tmp_path):
    import gzip

    from probelib.data.nsd.paths import _read_to_end

    class Stream:                                             # records what each read asks for
        def __init__(self, n):
            self.left, self.asked = n, []

        def read(self, size=-1):
            self.asked.append(size)
            got, self.left = min(self.left, 4), max(0, self.left - 4)
            return b"x" * got

    s = Stream(10)
    _read_to_end(s, block=4)
    assert s.asked == [4, 4, 4, 4]                            # bounded blocks: constant memory
    s = Stream(3)
    _read_to_end(s)
    assert s.asked == [1 << 20, 1 << 20]
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(bytes(1000))[:-12])        # the end of the stream is missing
    with gzip.open(path) as f, pytest.raises(EOFError) as e:
        _read_to_end(f)
    assert str(e.value).startswith("truncated: ")


def test_fetch_joins_any_base_url_and_waits_60_s_by_default(tmp_path, monkeypatch):
    from probelib.data.nsd import fetch as fetch_module
    from probelib.data.nsd.paths import nsd_files

    calls = []
    monkeypatch.setattr(fetch_module, "_download", lambda url, rel, dest, timeout, progress: calls.append(
        (url, rel, dest, timeout, progress)))
    rels = nsd_files(1, sessions=1, include_stimuli=False)
    for base in ("https://mirror.example/NSDX", "https://mirror.example/NSDX/"):
        calls.clear()
        got = fetch_module.fetch_nsd(tmp_path, 1, base_url=base, sessions=1, include_stimuli=False, progress=False)
        assert got == [tmp_path / r for r in rels]
        assert [c[0] for c in calls] == [f"https://mirror.example/NSDX/{r}" for r in rels]   # only slashes stripped
        assert {c[3] for c in calls} == {60.0} and {c[4] for c in calls} == {False}
