"""Betas: read only the ROI voxels of each session (NIfTI streamed front to back, or HDF5 by
chunks), z-score them within the session, and gather the single trials of the shared images."""
from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np

from .design import NSDDesign
from .paths import BETA_SCALE, N_REPEATS, NSD_BUCKET, TRIALS_PER_SESSION, _nifti_stream, nsd_path, _reading
from .rois import _SubjectVoxels


def _betas_candidates(subject: int, session: int, betas_format: str) -> list[tuple[str, str]]:
    """(relative path, format) of one session's betas files, in order of preference."""
    nii = nsd_path("betas_nifti", subject=subject, session=session)
    h5 = nsd_path("betas_hdf5", subject=subject, session=session)
    if betas_format == "hdf5":
        return [(h5, "hdf5")]
    if betas_format == "nifti":
        return [(nii, "nifti"), (nii[:-3], "nifti")]
    return [(h5, "hdf5"), (nii, "nifti"), (nii[:-3], "nifti")]


def _betas_relpath(root: Path, subject: int, session: int, betas_format: str) -> tuple[str, str]:
    """(relative path, format) of one session's betas; "auto" prefers HDF5, then .nii.gz, then .nii."""
    candidates = _betas_candidates(subject, session, betas_format)
    for rel, fmt in candidates:
        if (root / rel).is_file():
            return rel, fmt
    wanted = " or ".join(rel for rel, _ in candidates[:2] if rel.endswith((".gz", ".hdf5")))
    fetch_fmt = "hdf5" if betas_format == "hdf5" else "nifti"
    raise FileNotFoundError(
        f"NSD betas file {wanted} is missing under {root}. Get it with "
        f"probelib.data.nsd.fetch_nsd({str(root)!r}, subjects=[{subject}], betas_format={fetch_fmt!r}) or "
        f"`aws s3 cp s3://{NSD_BUCKET}/{candidates[0][0]} {root / candidates[0][0]}`.")


def _read_nifti_voxels(path: Path, ijk: np.ndarray, shape: tuple[int, int, int], chunk: int) -> np.ndarray:
    """(V, 750) raw betas of voxels ``ijk`` from an X×Y×Z×750 int16 NIfTI, ``chunk`` volumes at a time.

    The file is opened once and read front to back (a gzip stream cannot seek backwards cheaply),
    so peak memory is one block of ``chunk`` volumes whatever the number of trials; a ``.nii.gz``
    is then read to its end, which checks its CRC-32.
    """
    with _nifti_stream(path) as img:
        proxy = img.dataobj
        _check_betas(proxy.shape, (*shape, TRIALS_PER_SESSION), img.get_data_dtype())
        if proxy.slope != 1 or proxy.inter != 0:
            raise ValueError(f"expected unscaled int16 betas; header has scl_slope={proxy.slope}, "
                             f"scl_inter={proxy.inter}")
        out = np.empty((len(ijk), TRIALS_PER_SESSION), dtype=np.float64)
        i, j, k = ijk.T
        for t0 in range(0, TRIALS_PER_SESSION, chunk):
            block = np.asarray(proxy[..., t0:t0 + chunk])
            out[:, t0:t0 + block.shape[3]] = block[i, j, k]
    return out


def _read_hdf5_voxels(path: Path, ijk: np.ndarray, shape: tuple[int, int, int], chunk: int) -> np.ndarray:
    """(V, 750) raw betas of voxels ``ijk`` from the ``betas`` dataset (750, Z, Y, X) of an NSD HDF5 file.

    Reads, per block of trials, the Z planes that hold ROI voxels (h5py list index) within the
    ROI's Y/X bounding box, then picks the voxels.
    """
    with h5py.File(path, "r") as f:
        if "betas" not in f:
            raise KeyError(f"no dataset 'betas' (datasets: {list(f)})")
        ds = f["betas"]
        _check_betas(ds.shape, (TRIALS_PER_SESSION, *shape[::-1]), ds.dtype)
        out = np.empty((len(ijk), TRIALS_PER_SESSION), dtype=np.float64)
        i, j, k = ijk.T
        planes = np.unique(k)
        kpos = np.searchsorted(planes, k)
        ysl, xsl = slice(j.min(), j.max() + 1), slice(i.min(), i.max() + 1)
        for t0 in range(0, TRIALS_PER_SESSION, chunk):
            t1 = min(t0 + chunk, TRIALS_PER_SESSION)
            block = ds[t0:t1, planes.tolist(), ysl, xsl]
            out[:, t0:t1] = block[:, kpos, j - ysl.start, i - xsl.start].T
    return out


def _check_betas(found: tuple[int, ...], expected: tuple[int, ...], dtype: np.dtype) -> None:
    if tuple(found) != tuple(expected):
        raise ValueError(f"betas have shape {tuple(found)}, expected {tuple(expected)} (truncated file, or "
                         "betas from another space than the ROI files?)")
    if np.dtype(dtype) != np.int16:
        raise ValueError(f"betas have dtype {np.dtype(dtype)}, expected int16 (percent signal change x 300)")


def _zscore(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Z-score each row over trials (ddof=0); constant rows become 0. Returns (z, n_constant).

    A row is constant when all its values are equal (its computed mean and SD are not exact: a
    constant row of 17 / 300 has an SD of about 1e-17, which would z-score it to +-1)."""
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    flat = np.ptp(x, axis=1) == 0
    sd[flat] = 1.0
    z = (x - mu) / sd
    z[flat] = 0.0
    return z, int(flat.sum())


def _extract_subject(root: Path, subject: int, n_sessions: int, design: NSDDesign, image_ids: np.ndarray,
                     vox: _SubjectVoxels, betas_format: str, zscore: bool, chunk: int,
                     bar) -> np.ndarray:
    """(N, 3, U) single-trial responses of the union voxels to ``image_ids``, in order of presentation."""
    trial_ids = design.trial_images(subject, n_sessions)
    pos = np.searchsorted(image_ids, trial_ids)
    pos[pos == len(image_ids)] = 0
    wanted = np.flatnonzero(image_ids[pos] == trial_ids)          # trial indices of selected images
    img_of = pos[wanted]
    order = np.lexsort((wanted, img_of))                          # by image, then time
    first = np.searchsorted(img_of[order], img_of[order], side="left")
    rep = np.empty_like(img_of)
    rep[order] = np.arange(len(order)) - first
    if np.any(np.bincount(img_of, minlength=len(image_ids)) != N_REPEATS):
        raise ValueError(f"subject {subject}: not every selected image has {N_REPEATS} trials")

    out = np.full((len(image_ids), N_REPEATS, len(vox.ijk)), np.nan, dtype=np.float32)
    n_constant = 0
    for session in range(1, n_sessions + 1):
        bar.set_postfix_str(f"subj{subject:02d} session {session:02d}")
        lo, hi = (session - 1) * TRIALS_PER_SESSION, session * TRIALS_PER_SESSION
        sel = (wanted >= lo) & (wanted < hi)
        if not sel.any() or not len(vox.ijk):
            bar.update()
            continue
        rel, fmt = _betas_relpath(root, subject, session, betas_format)
        reader = _read_hdf5_voxels if fmt == "hdf5" else _read_nifti_voxels
        with _reading(root, rel, [subject]):
            x = reader(root / rel, vox.ijk, vox.shape, chunk) / BETA_SCALE
        if zscore:
            x, n_flat = _zscore(x)
            n_constant = max(n_constant, n_flat)
        out[img_of[sel], rep[sel]] = x[:, wanted[sel] - lo].T
        del x                                                     # free before reading the next session
        bar.update()
    if n_constant:
        warnings.warn(f"subject {subject}: {n_constant} ROI voxels are constant within a session "
                      "(outside the brain mask?); their z-scores were set to 0", RuntimeWarning, stacklevel=3)
    return out
