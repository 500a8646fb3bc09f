"""ROI definitions: fLoc colour tables, ROI names -> labels, and the voxels of one subject inside
each requested ROI above the localiser threshold."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..._checks import check_choice
from .paths import FLOC_LABELS, _fetch_hint, _nifti_stream, nsd_path, _reading, _require, _tval_relpath

#: ROI name -> (fLoc category, label names united into the ROI). Every single label is an ROI too.
NSD_ROIS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FFA": ("faces", ("FFA-1", "FFA-2")),
    "FBA": ("bodies", ("FBA-1", "FBA-2")),
    "VWFA": ("words", ("VWFA-1", "VWFA-2")),
    **{label: (cat, (label,)) for cat, labels in FLOC_LABELS.items() for label in labels},
}


def read_ctab(path: str | os.PathLike) -> dict[str, int]:
    """Label name -> value of a FreeSurfer colour table.

    Accepts NSD's two-column ``index name`` lines and FreeSurfer's ``index name R G B A`` lines;
    blank lines and ``#`` comments are skipped.
    """
    table: dict[str, int] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        if len(parts) < 2 or not parts[0].lstrip("-").isdigit():
            raise ValueError(f"{path}:{n}: not a colour-table line (index name [R G B A]): {line!r}")
        if parts[1] in table:
            raise ValueError(f"{path}:{n}: label {parts[1]!r} appears twice")
        table[parts[1]] = int(parts[0])
    if not table:
        raise ValueError(f"{path} has no labels")
    return table


# --------------------------------------------------------------------------------------------
# ROI definitions
# --------------------------------------------------------------------------------------------

def _resolve_rois(rois: Sequence[str] | Mapping[str, tuple[str, Sequence[str]]]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """ROI name -> (category, label names); names from :data:`NSD_ROIS` or an explicit mapping."""
    if isinstance(rois, str):
        rois = (rois,)
    if isinstance(rois, Mapping):
        spec = {name: (cat, tuple(labels)) for name, (cat, labels) in rois.items()}
    else:
        unknown = [r for r in rois if r not in NSD_ROIS]
        if unknown:
            raise ValueError(f"unknown NSD ROI(s) {unknown}; valid: {', '.join(NSD_ROIS)} "
                             "(or pass a mapping name -> (category, label names))")
        spec = {r: NSD_ROIS[r] for r in rois}
    if not spec:
        raise ValueError("rois is empty")
    for name, (cat, labels) in spec.items():
        check_choice(cat, FLOC_LABELS, f"fLoc category of ROI {name!r}")
        if not labels or "::" in name:
            raise ValueError(f"ROI {name!r} needs at least one label and a name without '::'")
    return spec


def _load_volume(root: Path, relpath: str, subjects: Sequence[int]) -> np.ndarray:
    """A 3-D NIfTI volume as float64 (t-maps, label volumes, ncsnr); a ``.nii.gz`` is CRC-checked."""
    path = _require(root, relpath, subjects)
    with _reading(root, relpath, subjects):
        with _nifti_stream(path) as img:
            vol = np.asarray(img.dataobj, dtype=np.float64)
    if vol.ndim == 4 and vol.shape[3] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3:   # a readable file of another kind, not a corrupt one
        raise ValueError(f"NSD file {relpath} holds an array of shape {vol.shape}, not a 3-D volume: "
                         "is it the right file? " + _fetch_hint(root, relpath, subjects))
    return vol


@dataclass
class _SubjectVoxels:
    """The voxels of one subject needed by all requested ROIs (union, C order) and their ROI membership."""

    shape: tuple[int, int, int]
    ijk: np.ndarray                    # (U, 3) int, voxel indices in NIfTI (X, Y, Z) order
    members: dict[str, np.ndarray]     # ROI -> indices into the union
    t: dict[str, np.ndarray]           # ROI -> localiser t of its voxels
    labels: dict[str, np.ndarray]      # ROI -> label name of its voxels
    ncsnr: np.ndarray                  # (U,)


def _subject_voxels(root: Path, subject: int, spec: Mapping[str, tuple[str, tuple[str, ...]]],
                    t_threshold: float) -> _SubjectVoxels:
    """Select each ROI's voxels (label in the ROI and localiser t > threshold) for one subject."""
    subs = [subject]
    shape: tuple[int, int, int] | None = None
    shape_src = ""
    per_cat: dict[str, tuple[dict[str, int], np.ndarray, np.ndarray]] = {}
    for cat in dict.fromkeys(c for c, _ in spec.values()):
        ctab_rel = nsd_path("ctab", subject=subject, category=cat)
        ctab_path = _require(root, ctab_rel, subs)
        with _reading(root, ctab_rel, subs):
            table = read_ctab(ctab_path)
        vols = []
        for rel in (nsd_path("roi", subject=subject, category=cat), _tval_relpath(subject, cat)):
            vol = _load_volume(root, rel, subs)
            if shape is None:
                shape, shape_src = vol.shape, rel
            elif vol.shape != shape:
                raise ValueError(f"{rel} has shape {vol.shape} but {shape_src} has {shape}: files from different "
                                 f"spaces? Re-download them. " + _fetch_hint(root, rel, subs))
            vols.append(vol)
        per_cat[cat] = (table, np.rint(np.nan_to_num(vols[0], nan=0.0)).astype(np.int64), vols[1])

    lin_by_roi: dict[str, np.ndarray] = {}
    t_by_roi: dict[str, np.ndarray] = {}
    label_by_roi: dict[str, np.ndarray] = {}
    for roi, (cat, names) in spec.items():
        table, labels, tval = per_cat[cat]
        missing = [n for n in names if n not in table]
        if missing:
            raise ValueError(f"labels {missing} of ROI {roi!r} are not in "
                             f"{nsd_path('ctab', subject=subject, category=cat)} (labels there: {list(table)})")
        values = np.array([table[n] for n in names])
        lin = np.flatnonzero(np.isin(labels, values) & (tval > t_threshold))   # NaN t never passes
        lin_by_roi[roi] = lin
        t_by_roi[roi] = tval.ravel()[lin]
        inverse = {table[n]: n for n in names}
        label_by_roi[roi] = np.array([inverse[v] for v in labels.ravel()[lin]], dtype=str)

    assert shape is not None
    union = np.unique(np.concatenate(list(lin_by_roi.values())))
    ijk = np.column_stack(np.unravel_index(union, shape)).astype(np.int64)
    ncsnr = np.zeros(0)
    if union.size:
        ncsnr_vol = _load_volume(root, nsd_path("ncsnr", subject=subject), subs)
        if ncsnr_vol.shape != shape:
            raise ValueError(f"{nsd_path('ncsnr', subject=subject)} has shape {ncsnr_vol.shape}, expected {shape}")
        ncsnr = ncsnr_vol.ravel()[union]
    members = {roi: np.searchsorted(union, lin) for roi, lin in lin_by_roi.items()}
    return _SubjectVoxels(shape, ijk, members, t_by_roi, label_by_roi, ncsnr)
