"""Assembly: :func:`load_nsd` (design, ROIs, betas and stimuli into a :class:`Dataset`, with the
noise ceilings and the split) and its ``.npz`` cache."""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from ..._checks import check_choice
from ..._progress import progress_bar
from ...metrics import correlation_ceiling, ncsnr_ceiling
from ..dataset import Dataset, make_split
from .betas import _betas_candidates, _extract_subject
from .design import _check_stim_info, _load_design, shared_repeat_images
from .paths import (ALL_SUBJECTS, FLOC_TVAL_NAMES, N_IMAGES, N_REPEATS, _check_subjects, nsd_path, _reading,
                    _require, _session_counts, _tval_relpath)
from .rois import _resolve_rois, _subject_voxels

#: Papers' split: 400 training images of 515; used for the proportional split of small sets.
_PAPER_TRAIN_FRACTION = 400 / 515
_CACHE_VERSION = 2


# --------------------------------------------------------------------------------------------
# Stimuli
# --------------------------------------------------------------------------------------------

def _load_stimuli(root: Path, image_ids: np.ndarray, image_size: int | None, subjects: Sequence[int],
                  batch: int = 32) -> np.ndarray:
    """float32 (N, 3, H, W) in [0, 1] of the 73k ids ``image_ids`` (sorted) from ``imgBrick``."""
    import torch
    import torch.nn.functional as F

    rel = nsd_path("stimuli")
    path = _require(root, rel, subjects)
    with _reading(root, rel, subjects), h5py.File(path, "r") as f:
        if "imgBrick" not in f:
            raise KeyError(f"no dataset 'imgBrick' (datasets: {list(f)})")
        ds = f["imgBrick"]
        if ds.ndim != 4 or ds.shape[3] != 3 or ds.shape[0] <= image_ids.max(initial=0):
            raise ValueError(f"imgBrick has shape {ds.shape}, expected ({N_IMAGES}, H, W, 3)")
        side = image_size or ds.shape[1]
        out = np.empty((len(image_ids), 3, side, side), dtype=np.float32)
        for b in range(0, len(image_ids), batch):
            ids = image_ids[b:b + batch]
            imgs = torch.from_numpy(ds[ids.tolist()]).permute(0, 3, 1, 2).float().div_(255.0)
            if imgs.shape[-2:] != (side, side):
                imgs = F.interpolate(imgs, size=(side, side), mode="bilinear", antialias=True,
                                     align_corners=False).clamp_(0.0, 1.0)
            out[b:b + len(ids)] = imgs.numpy()
    return out


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------

def _source_stamps(root: Path, subjects: Sequence[int], spec: Mapping[str, tuple[str, tuple[str, ...]]],
                   betas_format: str, counts: Mapping[int, int]) -> dict[str, list[int] | None]:
    """[size, mtime_ns] (None if absent) of every NSD file the extraction may read, for the cache key:
    a replaced, re-downloaded or newly added file gives a new key instead of the old results."""
    rels = [nsd_path("expdesign"), nsd_path("stim_info"), nsd_path("stimuli")]
    for s in subjects:
        for cat in dict.fromkeys(c for c, _ in spec.values()):
            rels += [nsd_path("ctab", subject=s, category=cat), nsd_path("roi", subject=s, category=cat),
                     _tval_relpath(s, cat)]
        rels.append(nsd_path("ncsnr", subject=s))
        rels += [rel for k in range(1, counts[s] + 1) for rel, _ in _betas_candidates(s, k, betas_format)]
    stamps: dict[str, list[int] | None] = {}
    for rel in rels:
        try:
            st = (root / rel).stat()
        except OSError:
            stamps[rel] = None
        else:
            stamps[rel] = [st.st_size, st.st_mtime_ns]
    return stamps


def _cache_file(cache_dir: str | os.PathLike, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"nsd_{digest}.npz"


def _save_dataset(path: Path, ds: Dataset, key: dict) -> None:
    """Write ``ds`` atomically (temporary file, then rename) as an uncompressed npz without pickles."""
    arrays: dict[str, np.ndarray] = {"stimuli": ds.stimuli, "image_ids": ds.image_ids,
                                     "split::train": ds.split["train"], "split::test": ds.split["test"]}
    for roi in ds.rois:
        arrays[f"responses::{roi}"] = ds.responses[roi]
        arrays[f"repeats::{roi}"] = ds.repeats[roi]
        arrays[f"noise_ceiling::{roi}"] = ds.noise_ceiling[roi]
        for field, value in ds.voxels[roi].items():
            arrays[f"voxels::{roi}::{field}"] = value
    meta = {"key": key, "name": ds.name, "rois": ds.rois,
            "voxel_fields": {roi: list(ds.voxels[roi]) for roi in ds.rois}}
    arrays["__meta__"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _load_dataset(path: Path, key: dict) -> Dataset | None:
    """The cached Dataset, or None if absent, made from other inputs, or unreadable (then warn)."""
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta["key"] != key:
                return None
            rois = meta["rois"]
            return Dataset(
                stimuli=z["stimuli"], image_ids=z["image_ids"],
                split={"train": z["split::train"], "test": z["split::test"]},
                responses={r: z[f"responses::{r}"] for r in rois},
                repeats={r: z[f"repeats::{r}"] for r in rois},
                noise_ceiling={r: z[f"noise_ceiling::{r}"] for r in rois},
                voxels={r: {k: z[f"voxels::{r}::{k}"] for k in meta["voxel_fields"][r]} for r in rois},
                name=meta["name"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
        warnings.warn(f"NSD cache entry {path} is unreadable ({type(exc).__name__}: {exc}); recomputing it",
                      RuntimeWarning, stacklevel=3)
        return None


# --------------------------------------------------------------------------------------------
# load_nsd
# --------------------------------------------------------------------------------------------

def _ncsnr_from_repeats(repeats: np.ndarray) -> np.ndarray:
    """NSD's ncsnr estimated from single trials (N, R, V): sqrt(signal var) / sqrt(noise var)."""
    noise = repeats.var(axis=1, ddof=1).mean(axis=0)
    total = repeats.reshape(-1, repeats.shape[2]).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.sqrt(np.clip(total - noise, 0.0, None) / noise)
    return np.nan_to_num(snr, nan=0.0, posinf=0.0)


def _split(n: int, n_train: int, seed: int) -> dict[str, np.ndarray]:
    if n < 2:
        raise ValueError(f"only {n} image(s) were seen {N_REPEATS} times by every subject: cannot split")
    if n_train >= n:
        new = min(n - 1, max(1, round(n * _PAPER_TRAIN_FRACTION)))
        warnings.warn(f"n_train={n_train} >= the {n} available images; using {new} training images "
                      "(the papers' 400/515 proportion)", UserWarning, stacklevel=3)
        n_train = new
    return make_split(n, n_train, seed)


def load_nsd(root: str | os.PathLike, subjects: int | Sequence[int] = (1,),
             rois: Sequence[str] | Mapping[str, tuple[str, Sequence[str]]] = ("FFA", "EBA", "PPA", "VWFA"),
             t_threshold: float = 7.0, average_subjects: bool = True, betas_format: str = "auto",
             n_train: int = 400, seed: int = 0, image_size: int | None = 224,
             cache_dir: str | os.PathLike | None = None, sessions: int | Mapping[int, int] | None = None,
             progress: bool = True, shared_subjects: Sequence[int] | None = ALL_SUBJECTS, zscore: bool = True,
             chunk_trials: int = 32) -> Dataset:
    """ROI responses of NSD subjects to the shared images they all saw 3 times (see module doc).

    Parameters
    ----------
    root : directory holding the NSD tree (``nsddata/``, ``nsddata_betas/``, ``nsddata_stimuli/``).
    subjects : NSD subjects (1-8) whose responses are extracted.
    rois : names from :data:`NSD_ROIS` (FFA = FFA-1 + FFA-2, VWFA = VWFA-1 + VWFA-2, any single
        fLoc label such as OFA) or a mapping ``name -> (category, label names)``.
    t_threshold : keep ROI voxels with fLoc ``t > t_threshold`` (papers: 7).
    average_subjects : True -> (N, 1) ROI-mean averaged over subjects; False -> (N, V) voxels.
    betas_format : "nifti" (.nii.gz, or uncompressed .nii), "hdf5", or "auto" (HDF5 if present).
    n_train, seed : random train/test split of the images (if ``n_train >= N``: 400/515 of N, warned).
    image_size : side of the returned stimuli (antialiased bilinear resize); None keeps 425.
    cache_dir : directory of the result cache (None: no caching); entries are keyed by the arguments
        and the size and modification time of the NSD files read.
    sessions : override the sessions per subject (int or {subject: n}); default NSD's counts.
    progress : show a progress bar over sessions.
    shared_subjects : further subjects whose completed sessions restrict the image set (the set is
        always restricted by ``subjects``). Default: all eight, which gives the papers' 515 images
        whatever subjects are loaded; ``None``: only ``subjects`` (e.g. about 900 for subject 1).
    zscore : z-score each voxel within each session (NSD practice); False keeps percent signal change.
    chunk_trials : volumes read at a time (bounds peak memory).

    Raises ``FileNotFoundError`` / ``ValueError`` naming the missing, unreadable or corrupt file (e.g.
    a failed gzip CRC check) and how to fetch it.
    """
    root = Path(root)
    subjects = _check_subjects(subjects)
    extra = () if shared_subjects is None else _check_subjects(shared_subjects, "shared_subjects")
    shared_subjects = tuple(sorted(set(subjects) | set(extra)))
    check_choice(betas_format, ("auto", "nifti", "hdf5"), "betas_format")
    spec = _resolve_rois(rois)
    t_threshold = float(t_threshold)
    if not np.isfinite(t_threshold):
        raise ValueError(f"t_threshold must be finite; got {t_threshold}")
    if image_size is not None and int(image_size) < 1:
        raise ValueError(f"image_size must be a positive int or None; got {image_size}")
    if int(chunk_trials) < 1:
        raise ValueError(f"chunk_trials must be >= 1; got {chunk_trials}")
    counts = _session_counts(sorted(set(subjects) | set(shared_subjects)), sessions)

    key = {"version": _CACHE_VERSION, "root": str(root.resolve()), "subjects": list(subjects),
           "rois": {k: [c, list(v)] for k, (c, v) in spec.items()}, "t_threshold": t_threshold,
           "average_subjects": bool(average_subjects), "betas_format": betas_format, "n_train": int(n_train),
           "seed": int(seed), "image_size": None if image_size is None else int(image_size),
           "sessions": {str(s): n for s, n in counts.items()}, "shared_subjects": list(shared_subjects),
           "zscore": bool(zscore), "tval_names": FLOC_TVAL_NAMES}
    cache_path = None
    if cache_dir is not None:
        key["files"] = _source_stamps(root, subjects, spec, betas_format, counts)
        cache_path = _cache_file(cache_dir, key)
    if cache_path is not None and (cached := _load_dataset(cache_path, key)) is not None:
        return cached

    ds = _assemble(root, subjects, spec, t_threshold, bool(average_subjects), betas_format, int(n_train),
                   int(seed), None if image_size is None else int(image_size), counts, shared_subjects,
                   bool(zscore), int(chunk_trials), progress)
    if cache_path is not None:
        _save_dataset(cache_path, ds, key)
    return ds


def _assemble(root: Path, subjects: tuple[int, ...], spec: dict[str, tuple[str, tuple[str, ...]]],
              t_threshold: float, average_subjects: bool, betas_format: str, n_train: int, seed: int,
              image_size: int | None, counts: dict[int, int], shared_subjects: tuple[int, ...],
              zscore: bool, chunk: int, progress: bool) -> Dataset:
    design = _load_design(root, subjects)
    _check_stim_info(root, design, subjects)
    image_ids = shared_repeat_images(design, {s: counts[s] for s in shared_subjects})
    split = _split(len(image_ids), n_train, seed)
    voxels = {s: _subject_voxels(root, s, spec, t_threshold) for s in subjects}
    for roi in spec:
        if not any(len(voxels[s].members[roi]) for s in subjects):
            raise ValueError(f"ROI {roi!r} has no voxels with t > {t_threshold} in subjects {list(subjects)}; "
                             "lower t_threshold or choose other subjects")

    trials: dict[int, np.ndarray] = {}
    with progress_bar(total=sum(counts[s] for s in subjects), desc="NSD sessions", unit="session",
              disable=not progress) as bar:
        for s in subjects:
            trials[s] = _extract_subject(root, s, counts[s], design, image_ids, voxels[s], betas_format,
                                         zscore, chunk, bar)
    stimuli = _load_stimuli(root, image_ids, image_size, subjects)

    responses, repeats, meta, ceiling = {}, {}, {}, {}
    for roi in spec:
        subs = [s for s in subjects if len(voxels[s].members[roi])]
        meta[roi] = {
            "subject": np.concatenate([np.full(len(voxels[s].members[roi]), s) for s in subs]),
            "ijk": np.concatenate([voxels[s].ijk[voxels[s].members[roi]] for s in subs]),
            "t": np.concatenate([voxels[s].t[roi] for s in subs]),
            "label": np.concatenate([voxels[s].labels[roi] for s in subs]),
            "ncsnr": np.concatenate([voxels[s].ncsnr[voxels[s].members[roi]] for s in subs]),
        }
        per_subject = [trials[s][:, :, voxels[s].members[roi]] for s in subs]
        if average_subjects:
            if len(subs) < len(subjects):
                warnings.warn(f"ROI {roi!r}: subjects {sorted(set(subjects) - set(subs))} have no voxels with "
                              f"t > {t_threshold}; the subject average uses {subs}", UserWarning, stacklevel=3)
            rep = np.mean([x.mean(axis=2) for x in per_subject], axis=0)[:, :, None]
            snr = _ncsnr_from_repeats(rep.astype(np.float64))
        else:
            rep = np.concatenate(per_subject, axis=2)
            snr = meta[roi]["ncsnr"]
        repeats[roi] = rep.astype(np.float32)
        responses[roi] = repeats[roi].mean(axis=1)
        snr = np.clip(np.nan_to_num(snr, nan=0.0, posinf=0.0), 0.0, None)
        ceiling[roi] = np.asarray(correlation_ceiling(ncsnr_ceiling(snr, N_REPEATS)),
                                  dtype=np.float32).reshape(-1)

    kind = "ROI means averaged over subjects" if average_subjects else "voxels"
    name = f"NSD subj{'+'.join(f'{s:02d}' for s in subjects)}: {kind}, fLoc t > {t_threshold:g}"
    return Dataset(stimuli=stimuli, responses=responses, image_ids=image_ids, split=split, repeats=repeats,
                   voxels=meta, noise_ceiling=ceiling, name=name)
