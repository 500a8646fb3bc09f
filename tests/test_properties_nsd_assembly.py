"""The NSD assembly's own computations (probelib.data.nsd.assembly): the ROI-mean ncsnr estimated
from single trials, checked on hand-computed cases; the train / test split at its smallest; and the
stimuli read from an ``imgBrick`` HDF5 file in the real layout (N, H, W, 3) uint8, resized as the
encoders' input, in any batch size, with errors that name what is wrong."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probelib.data.nsd.assembly import _load_stimuli, _ncsnr_from_repeats, _split
from probelib.data.nsd.paths import NSD_BUCKET, nsd_path


# ------------------------------------------------------------------------------ ncsnr from repeats

def test_ncsnr_of_a_hand_computed_case():
    """Voxel 0: images [0, 2, 4] and [20, 22, 24]: noise var (ddof=1 over repeats, mean over images)
    4; total var of the six trials (ddof=1) 154 * 4 / 5 = 123.2; ncsnr sqrt((123.2 - 4) / 4).
    Voxel 1: the same trials divided by 2: noise 1, total 30.8, ncsnr sqrt(29.8)."""
    v0 = np.array([[0.0, 2.0, 4.0], [20.0, 22.0, 24.0]])
    repeats = np.stack([v0, v0 / 2], axis=2)                # (N=2, R=3, V=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = _ncsnr_from_repeats(repeats)
    np.testing.assert_allclose(got, [np.sqrt(119.2 / 4), np.sqrt(29.8)], rtol=1e-12)


def test_ncsnr_without_signal_or_without_noise_is_0_without_warnings():
    weak = np.array([[0.0, 1.0, 2.0], [0.25, 1.25, 2.25], [0.5, 1.5, 2.5]])[..., None]   # total < noise: no signal
    small = np.array([[0.0, 2.0], [1.0, 3.0]])[..., None]    # noise 2, total 5/3: below the noise
    exact = np.full((3, 3, 1), 7.0)                          # no variance at all: 0 / 0
    noiseless = np.repeat(np.array([1.0, 2.0, 3.0])[:, None, None], 3, axis=1)   # noise 0, signal > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for r in (weak, small, exact, noiseless):
            assert _ncsnr_from_repeats(r).tolist() == [0.0]
    # a signal variance smaller than 1 (and than the noise) is not rounded up
    half = np.array([[-0.5, 0.5], [0.5, 1.5]])[..., None] * np.sqrt(2)   # noise 1, total 1 + 1/3
    np.testing.assert_allclose(_ncsnr_from_repeats(half), [np.sqrt(1 / 3)], rtol=1e-12)


# ------------------------------------------------------------------------------ split

def test_the_smallest_image_set_that_can_be_split():
    with pytest.warns(UserWarning, match="n_train=400 >= the 2 available images; using 1 training images"):
        split = _split(2, 400, 0)
    assert sorted(np.r_[split["train"], split["test"]].tolist()) == [0, 1] and len(split["train"]) == 1
    with pytest.raises(ValueError) as err:
        _split(1, 400, 0)
    assert str(err.value) == "only 1 image(s) were seen 3 times by every subject: cannot split"
    with pytest.warns(UserWarning) as record:                  # n_train equal to the images: also rescaled
        split = _split(12, 12, 0)
    assert [str(w.message) for w in record] == [
        "n_train=12 >= the 12 available images; using 9 training images (the papers' 400/515 proportion)"]
    assert (len(split["train"]), len(split["test"])) == (9, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(_split(12, 11, 0)["train"]) == 11                  # one image fewer: kept, no warning
    same, other = _split(12, 8, 0), _split(12, 8, 1)               # the split follows the seed
    assert np.array_equal(same["train"], _split(12, 8, 0)["train"]) and not np.array_equal(same["train"],
                                                                                             other["train"])


# ------------------------------------------------------------------------------ stimuli

def _brick(root, n=10, h=6, w=6, channels=3, name="imgBrick"):
    path = root / nsd_path("stimuli")
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (n, h, w, channels)).astype(np.uint8)
    pixels[0] = 255                                          # saturated: resizing must stay in [0, 1]
    with h5py.File(path, "w") as f:
        f.create_dataset(name, data=pixels)
    return pixels


def _reference(pixels, ids, side):
    x = torch.from_numpy(pixels[ids]).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (side, side):
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    return x.numpy()


def test_stimuli_are_the_brick_pixels_resized_in_any_batch(tmp_path):
    pixels = _brick(tmp_path, h=6, w=8)
    ids = np.array([0, 2, 3, 7, 9])
    full = _load_stimuli(tmp_path, ids, None, [1])
    assert full.shape == (5, 3, 6, 6) and full.dtype == np.float32   # no size: the brick's height, square
    np.testing.assert_allclose(full, _reference(pixels, ids, 6), atol=1e-6)
    for batch in (1, 2, 32):
        small = _load_stimuli(tmp_path, ids, 4, [1], batch=batch)
        np.testing.assert_allclose(small, _reference(pixels, ids, 4), atol=1e-6)
        assert small.min() >= 0 and small.max() <= 1
    square = _brick(tmp_path, h=6, w=6)
    np.testing.assert_array_equal(_load_stimuli(tmp_path, ids, 6, [1], batch=2), square[ids].transpose(0, 3, 1, 2) / np.float32(255))
    assert _load_stimuli(tmp_path, ids[:0], 6, [1]).shape == (0, 3, 6, 6)
    _brick(tmp_path, n=1)
    assert _load_stimuli(tmp_path, np.array([], dtype=np.int64), 6, [1]).shape == (0, 3, 6, 6)


def test_a_brick_of_another_layout_is_refused(tmp_path):
    rel = nsd_path("stimuli")
    hint = f"fetch_nsd({str(tmp_path)!r}, subjects=[3, 4]) or `aws s3 cp s3://{NSD_BUCKET}/{rel} {tmp_path / rel}`."
    with pytest.raises(FileNotFoundError) as err:
        _load_stimuli(tmp_path, np.array([0]), 4, [3, 4])
    assert str(err.value).endswith(hint)
    _brick(tmp_path, n=10)
    _load_stimuli(tmp_path, np.array([9]), 4, [3, 4])          # the last image of the brick
    for kwargs, ids, message in (({"n": 10}, [10], "imgBrick has shape (10, 6, 6, 3), expected (73000, H, W, 3)"),
                                 ({"channels": 4}, [0], "imgBrick has shape (10, 6, 6, 4)"),
                                 ({"name": "images"}, [0], "no dataset 'imgBrick' (datasets: ['images'])")):
        _brick(tmp_path, **kwargs)
        with pytest.raises(ValueError) as err:
            _load_stimuli(tmp_path, np.array(ids), 4, [3, 4])
        assert message in str(err.value) and str(err.value).endswith(hint), str(err.value)
    path = tmp_path / rel
    with h5py.File(path, "w") as f:
        f.create_dataset("imgBrick", data=np.zeros((10, 6, 6), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"imgBrick has shape \(10, 6, 6\)"):
        _load_stimuli(tmp_path, np.array([0]), 4, [3, 4])


def _arguments_reaching_assembly(monkeypatch, **kw) -> dict:
    """load_nsd's checked arguments as they reach the assembly (no NSD file is read)."""
    from probelib.data.nsd import assembly

    got = {}

    def assemble(root, subjects, spec, t_threshold, average_subjects, betas_format, n_train, seed, image_size,
                 counts, shared_subjects, zscore, chunk, progress):
        got.update(locals())
        return "dataset"

    monkeypatch.setattr(assembly, "_assemble", assemble)
    assert assembly.load_nsd("/nsd", **kw) == "dataset"
    return got


def test_load_nsd_defaults_are_the_papers(monkeypatch):
    from probelib.data.nsd.paths import NSD_SESSIONS

    got = _arguments_reaching_assembly(monkeypatch)
    assert got["subjects"] == (1,) and set(got["spec"]) == {"FFA", "EBA", "PPA", "VWFA"}
    assert (got["t_threshold"], got["average_subjects"], got["betas_format"], got["n_train"], got["seed"],
            got["image_size"], got["zscore"], got["chunk"], got["progress"]) == (7.0, True, "auto", 400, 0, 224,
                                                                               True, 32, True)
    assert got["shared_subjects"] == tuple(range(1, 9)) and got["counts"] == dict(NSD_SESSIONS)
    assert _arguments_reaching_assembly(monkeypatch, shared_subjects=None, subjects=2)["shared_subjects"] == (2,)


def test_load_nsd_checks_its_arguments_at_their_edges(monkeypatch):
    from probelib.data.nsd import load_nsd

    got = _arguments_reaching_assembly(monkeypatch, image_size=1, chunk_trials=1, t_threshold=-1e300)
    assert (got["image_size"], got["chunk"], got["t_threshold"]) == (1, 1, -1e300)
    assert _arguments_reaching_assembly(monkeypatch, image_size=None)["image_size"] is None
    for kw, message in [({"image_size": 0}, "image_size must be a positive int or None; got 0"),
                        ({"chunk_trials": 0}, "chunk_trials must be >= 1; got 0"),
                        ({"t_threshold": float("inf")}, "t_threshold must be finite; got inf"),
                        ({"t_threshold": float("nan")}, "t_threshold must be finite; got nan"),
                        ({"shared_subjects": [9]}, "shared_subjects must be NSD subject numbers 1-8; got [9]")]:
        with pytest.raises(ValueError) as e:
            load_nsd("/nsd", **kw)
        assert str(e.value) == message
    with pytest.raises(ValueError, match="^unknown betas_format 'mat'; valid: "):
        load_nsd("/nsd", betas_format="mat")


def test_the_cache_key_of_load_nsd_changes_with_every_argument_that_changes_the_dataset(tmp_path, monkeypatch):
    from probelib.data.nsd import assembly

    keys = []
    monkeypatch.setattr(assembly, "_source_stamps", lambda *a: {"stamps": "of the files"})
    monkeypatch.setattr(assembly, "_cache_file", lambda cache_dir, key: keys.append(key) or tmp_path / "entry.npz")
    monkeypatch.setattr(assembly, "_load_dataset", lambda path, key: None)
    monkeypatch.setattr(assembly, "_assemble", lambda *a: "dataset")
    monkeypatch.setattr(assembly, "_save_dataset", lambda path, ds, key: None)

    def key(root="/nsd/a", **kw):
        assembly.load_nsd(root, cache_dir=tmp_path, **kw)
        return keys[-1]

    base = key()
    assert base["root"] == str(Path("/nsd/a").resolve()) and base["files"] == {"stamps": "of the files"}
    assert key(subjects=1, shared_subjects=range(1, 9), image_size=224.0) == base      # the same, spelled otherwise
    changes = [dict(root="/nsd/b"), dict(subjects=2), dict(rois=("FFA",)), dict(t_threshold=7.5),
               dict(average_subjects=False), dict(betas_format="hdf5"), dict(n_train=300), dict(seed=1),
               dict(image_size=112), dict(image_size=None), dict(sessions=30), dict(shared_subjects=None),
               dict(zscore=False)]
    variants = [key(**c) for c in changes]
    assert all(v != base for v in variants)
    assert len({json.dumps(v, sort_keys=True) for v in variants}) == len(changes)
    assert key(progress=False, chunk_trials=7) == base             # how it is read, not what is read
