"""The real Natural Scenes Dataset (NSD): file layout, download, and ROI response extraction.

Three steps, each usable on its own:

1. :func:`nsd_files` lists the relative path of every file the pipeline reads (layout of the
   public bucket ``s3://natural-scenes-dataset``, also served at :data:`NSD_BASE_URL`).
2. :func:`fetch_nsd` downloads exactly those files (resumable, skips complete files).
3. :func:`load_nsd` extracts the responses of category-selective ROIs to the shared images that
   every subject saw three times and returns a :class:`~probelib.data.dataset.Dataset`.

What :func:`load_nsd` computes, per subject:

* Images: the shared images (``sharedix`` of ``nsd_expdesign.mat``) shown exactly 3 times within
  the sessions the subject completed (first ``750 * n_sessions`` entries of ``masterordering``,
  mapped to 73k ids through ``subjectim``). The image set is the intersection over the requested
  subjects and any extra ``shared_subjects``. With all 8 subjects and their real session counts
  this is the papers' 515 images (the default ``shared_subjects``, all eight, gives them for any
  subset of subjects); it is derived, never hard-coded.
* Voxels: ROI labels are looked up by name in the FreeSurfer colour table
  (``floc-<category>.mgz.ctab``) and selected in ``roi/floc-<category>.nii.gz``; of those, the
  voxels with localiser ``t > t_threshold`` in ``floc_<category>tval.nii.gz`` are kept.
* Responses: for each session, only those voxels are read (NIfTI: streamed in blocks of volumes
  through nibabel's array proxy; HDF5: a hyperslab of the ``(750, Z, Y, X)`` dataset), the int16
  betas are divided by 300 (percent signal change), z-scored per voxel over the session's 750
  trials (``ddof=0``), and the trials of the selected images are kept. Single trials are returned
  in ``Dataset.repeats`` (N, 3, V) in order of presentation; ``Dataset.responses`` is their mean.

``average_subjects=False``: ``responses[roi]`` is (N, V) with the voxels of all subjects
concatenated (``voxels[roi]["subject"]`` says whose each column is) and ``noise_ceiling[roi]`` is
NSD's ``ncsnr`` turned into a ceiling on Pearson r, ``sqrt(ncsnr² / (ncsnr² + 1/3))``.

``average_subjects=True`` (paper 1): ``responses[roi]`` is (N, 1), the ROI-mean response (mean
over the ROI's voxels of one subject) averaged over subjects; ``repeats[roi]`` is (N, 3, 1) the
same for each single trial; ``voxels[roi]`` then lists every contributing voxel (not columns), and
``noise_ceiling[roi]`` (1,) applies NSD's ncsnr formula to that ROI-mean signal, estimated from the
repeats: ``noise var = mean over images of var over repeats (ddof=1)``, ``signal var = total
single-trial var - noise var``.

Integrity: every ``.nii.gz`` is read through to the end of its last gzip member, where Python's
gzip module checks each member's CRC-32 and length (a reader that stops after the last voxel never
gets there, so a flipped byte would give wrong responses silently); this costs no extra pass, since
the betas reader decompresses the whole session anyway. ``nsd_expdesign.mat``'s compressed
variables are checked (Adler-32) by scipy, and HDF5 chunks by their filters (deflate, fletcher32)
where the file has them. Uncompressed ``.nii``/HDF5 data and the text files carry no checksum.
A file that fails raises ``ValueError`` naming it.

Results are cached (``cache_dir``) as one ``.npz`` file per combination of inputs. The cache key
covers every argument of :func:`load_nsd` and the size and modification time of every NSD file
the extraction may read, so replacing a data file makes a new entry (old entries stay on disk).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import http.client
import json
import os
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

import h5py
import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from scipy.io import loadmat
from .._progress import progress_bar

from .._checks import check_choice
from ..metrics import correlation_ceiling, ncsnr_ceiling
from .dataset import Dataset, make_split

__all__ = [
    "NSD_BASE_URL",
    "NSD_BUCKET",
    "NSD_SESSIONS",
    "NSD_FILES",
    "NSD_ROIS",
    "FLOC_LABELS",
    "FLOC_TVAL_NAMES",
    "NSDDesign",
    "nsd_path",
    "nsd_files",
    "read_ctab",
    "read_expdesign",
    "shared_repeat_images",
    "nsd_shared_images",
    "fetch_nsd",
    "load_nsd",
]

NSD_BUCKET = "natural-scenes-dataset"
NSD_BASE_URL = "https://natural-scenes-dataset.s3.amazonaws.com"
#: Sessions each subject completed (subjects 1-8).
NSD_SESSIONS: dict[int, int] = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}
TRIALS_PER_SESSION = 750
MAX_SESSIONS = 40
ALL_SUBJECTS: tuple[int, ...] = tuple(NSD_SESSIONS)  # 1..8
N_REPEATS = 3
N_IMAGES = 73000
#: The betas are stored as int16 = percent signal change x 300.
BETA_SCALE = 300.0
#: Papers' split: 400 training images of 515; used for the proportional split of small sets.
_PAPER_TRAIN_FRACTION = 400 / 515

_BETAS_DIR = "nsddata_betas/ppdata/subj{subject:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR"
_FUNC_DIR = "nsddata/ppdata/subj{subject:02d}/func1pt8mm"
#: Relative path templates of every file the pipeline reads.
NSD_FILES: dict[str, str] = {
    "betas_nifti": _BETAS_DIR + "/betas_session{session:02d}.nii.gz",
    "betas_hdf5": _BETAS_DIR + "/betas_session{session:02d}.hdf5",
    "ncsnr": _BETAS_DIR + "/ncsnr.nii.gz",
    "floc_tval": _FUNC_DIR + "/{tval_name}.nii.gz",
    "roi": _FUNC_DIR + "/roi/floc-{category}.nii.gz",
    "ctab": "nsddata/freesurfer/subj{subject:02d}/label/floc-{category}.mgz.ctab",
    "expdesign": "nsddata/experiments/nsd/nsd_expdesign.mat",
    "stim_info": "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
    "stimuli": "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
}

#: Label names of the fLoc ROI volumes, as in the NSD colour tables (values are read from the ctab).
FLOC_LABELS: dict[str, tuple[str, ...]] = {
    "faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "places": ("OPA", "PPA", "RSC"),
    "words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
}
#: File stems of the fLoc t-maps per category (from the design notes; check them against a
#: listing of ``nsddata/ppdata/subj01/func1pt8mm/`` when online and edit here if they differ).
FLOC_TVAL_NAMES: dict[str, str] = {
    "faces": "floc_facestval",
    "bodies": "floc_bodiestval",
    "places": "floc_placestval",
    "words": "floc_wordtval",
}

#: ROI name -> (fLoc category, label names united into the ROI). Every single label is an ROI too.
NSD_ROIS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FFA": ("faces", ("FFA-1", "FFA-2")),
    "FBA": ("bodies", ("FBA-1", "FBA-2")),
    "VWFA": ("words", ("VWFA-1", "VWFA-2")),
    **{label: (cat, (label,)) for cat, labels in FLOC_LABELS.items() for label in labels},
}

_CACHE_VERSION = 2
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zlib.error, ImageFileError, HeaderDataError)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------

def nsd_path(key: str, **fields: object) -> str:
    """Relative path of one NSD file, e.g. ``nsd_path("betas_nifti", subject=1, session=3)``."""
    check_choice(key, NSD_FILES, "NSD file key")
    return NSD_FILES[key].format(**fields)


def _tval_relpath(subject: int, category: str) -> str:
    return nsd_path("floc_tval", subject=subject, tval_name=FLOC_TVAL_NAMES[category])


def _check_subjects(subjects: int | Sequence[int], name: str = "subjects") -> tuple[int, ...]:
    subs = (subjects,) if isinstance(subjects, (int, np.integer)) else tuple(subjects)
    if not subs:
        raise ValueError(f"{name} must name at least one NSD subject (1-8)")
    bad = [s for s in subs if not isinstance(s, (int, np.integer)) or s not in NSD_SESSIONS]
    if bad:
        raise ValueError(f"{name} must be NSD subject numbers 1-8; got {bad}")
    if len(set(subs)) != len(subs):
        raise ValueError(f"{name} contain duplicates: {list(subs)}")
    return tuple(int(s) for s in subs)


def _session_counts(subjects: Sequence[int], sessions: int | Mapping[int, int] | None) -> dict[int, int]:
    """Completed sessions per subject: NSD's counts unless ``sessions`` overrides them."""
    if sessions is None:
        counts = {s: NSD_SESSIONS[s] for s in subjects}
    elif isinstance(sessions, Mapping):
        counts = {s: int(sessions.get(s, NSD_SESSIONS[s])) for s in subjects}
    else:
        counts = {s: int(sessions) for s in subjects}
    bad = {s: n for s, n in counts.items() if not 1 <= n <= MAX_SESSIONS}
    if bad:
        raise ValueError(f"sessions per subject must be in 1..{MAX_SESSIONS}; got {bad}")
    return counts


def nsd_files(subjects: int | Sequence[int], betas_format: str = "nifti",
              sessions: int | Mapping[int, int] | None = None, include_stimuli: bool = True) -> list[str]:
    """Relative paths of every file :func:`load_nsd` needs for ``subjects``.

    Small files first (design, stimulus info, per-subject ROI definitions, t-maps, ncsnr), then
    the betas of each completed session (``betas_format`` "nifti" or "hdf5"), then the ~37 GB
    stimulus file (``include_stimuli``).
    """
    subjects = _check_subjects(subjects)
    check_choice(betas_format, ("nifti", "hdf5"), "betas_format")
    counts = _session_counts(subjects, sessions)
    files = [nsd_path("expdesign"), nsd_path("stim_info")]
    for s in subjects:
        for cat in FLOC_LABELS:
            files += [nsd_path("ctab", subject=s, category=cat), nsd_path("roi", subject=s, category=cat),
                      _tval_relpath(s, cat)]
        files.append(nsd_path("ncsnr", subject=s))
    for s in subjects:
        files += [nsd_path(f"betas_{betas_format}", subject=s, session=k) for k in range(1, counts[s] + 1)]
    if include_stimuli:
        files.append(nsd_path("stimuli"))
    return files


def _fetch_hint(root: Path, relpath: str, subjects: Sequence[int] | None = None) -> str:
    subs = list(subjects) if subjects else [int(relpath.split("subj")[1][:2])] if "subj" in relpath else [1]
    return (f"Get it with probelib.data.nsd.fetch_nsd({str(root)!r}, subjects={subs}) or "
            f"`aws s3 cp s3://{NSD_BUCKET}/{relpath} {root / relpath}`.")


def _require(root: Path, relpath: str, subjects: Sequence[int] | None = None) -> Path:
    """Absolute path of an NSD file; ``FileNotFoundError`` naming it and how to fetch it if absent."""
    path = root / relpath
    if not path.is_file():
        raise FileNotFoundError(f"NSD file {relpath} is missing under {root}. "
                                + _fetch_hint(root, relpath, subjects))
    return path


@contextmanager
def _reading(root: Path, relpath: str, subjects: Sequence[int] | None = None) -> Iterator[None]:
    """Turn low-level read errors into a ``ValueError`` naming the file and how to re-fetch it."""
    try:
        yield
    except FileNotFoundError:
        raise
    except _READ_ERRORS as exc:
        raise ValueError(f"NSD file {relpath} (under {root}) could not be read; it is probably truncated "
                         f"or corrupt ({type(exc).__name__}: {exc}). Delete it and download it again "
                         "(fetch_nsd keeps a file of the right size even if corrupt). "
                         + _fetch_hint(root, relpath, subjects)) from exc


def _read_to_end(f: gzip.GzipFile, block: int = 1 << 20) -> None:
    """Read a gzip stream to its end (constant memory): only there does Python's gzip check the CRC-32
    and length of each member, raising ``BadGzipFile`` ("CRC check failed") or ``EOFError``."""
    try:
        while f.read(block):
            pass
    except EOFError as exc:
        raise EOFError(f"truncated: {exc}") from exc


@contextmanager
def _nifti_stream(path: Path) -> Iterator[nib.Nifti1Image]:
    """A NIfTI-1 image reading from one open stream (``.nii`` or ``.nii.gz``).

    Its data must be read inside the ``with`` block. On leaving it without error, a ``.nii.gz`` is
    read to its end, which checks the gzip CRC-32 of the data just read (nearly free: reading the
    data already decompressed all but the trailer).
    """
    gz = path.name.endswith(".gz")
    with (gzip.open if gz else open)(path, "rb") as f:
        yield nib.Nifti1Image.from_stream(f)
        if gz:
            _read_to_end(f)


# --------------------------------------------------------------------------------------------
# Small files: colour tables, experimental design, stimulus info
# --------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class NSDDesign:
    """The NSD experimental design, converted to 0-based indices.

    masterordering : (30000,) trial -> index into a subject's 10k images.
    subjectim : (8, 10000) subject's image -> 73k id.
    sharedix : (1000,) 73k ids of the shared images.
    """

    masterordering: np.ndarray
    subjectim: np.ndarray
    sharedix: np.ndarray

    def trial_images(self, subject: int, n_sessions: int) -> np.ndarray:
        """73k ids (0-based) of the trials of the first ``n_sessions`` sessions of ``subject``."""
        order = self.masterordering[: n_sessions * TRIALS_PER_SESSION]
        return self.subjectim[subject - 1, order]


def read_expdesign(path: str | os.PathLike) -> NSDDesign:
    """Read ``nsd_expdesign.mat`` (1-based MATLAB indices) into an :class:`NSDDesign`."""
    mat = loadmat(str(path))
    missing = [k for k in ("masterordering", "subjectim", "sharedix") if k not in mat]
    if missing:
        raise ValueError(f"{path} lacks the variables {missing}")
    order = np.asarray(mat["masterordering"]).ravel().astype(np.int64) - 1
    subjectim = np.asarray(mat["subjectim"]).astype(np.int64) - 1
    shared = np.asarray(mat["sharedix"]).ravel().astype(np.int64) - 1
    if order.size < MAX_SESSIONS * TRIALS_PER_SESSION or subjectim.shape[0] != 8:
        raise ValueError(f"{path}: masterordering has {order.size} trials (expected 30000) and subjectim "
                         f"shape {subjectim.shape} (expected (8, 10000))")
    if order.min() < 0 or order.max() >= subjectim.shape[1]:
        raise ValueError(f"{path}: masterordering indices outside 1..{subjectim.shape[1]}")
    if subjectim.min() < 0 or subjectim.max() >= N_IMAGES or shared.min() < 0 or shared.max() >= N_IMAGES:
        raise ValueError(f"{path}: subjectim / sharedix hold ids outside 1..{N_IMAGES}")
    return NSDDesign(order, subjectim, np.sort(shared))


def shared_repeat_images(design: NSDDesign, session_counts: Mapping[int, int]) -> np.ndarray:
    """Sorted 73k ids (0-based) of shared images shown exactly 3 times to every subject.

    ``session_counts`` maps subject -> sessions completed; only those sessions' trials count.
    """
    keep = design.sharedix
    for subject, n_sessions in session_counts.items():
        ids, counts = np.unique(design.trial_images(subject, n_sessions), return_counts=True)
        keep = np.intersect1d(keep, ids[counts == N_REPEATS])
    return keep


def _load_design(root: Path, subjects: Sequence[int]) -> NSDDesign:
    rel = nsd_path("expdesign")
    path = _require(root, rel, subjects)
    with _reading(root, rel, subjects):
        return read_expdesign(path)


def nsd_shared_images(root: str | os.PathLike, subjects: int | Sequence[int] = ALL_SUBJECTS,
                      sessions: int | Mapping[int, int] | None = None) -> np.ndarray:
    """The shared images all ``subjects`` saw 3 times (defaults: all 8 subjects -> the 515)."""
    subjects = _check_subjects(subjects)
    design = _load_design(Path(root), subjects)
    return shared_repeat_images(design, _session_counts(subjects, sessions))


def _check_stim_info(root: Path, design: NSDDesign, subjects: Sequence[int]) -> None:
    """Cross-check ``nsd_stim_info_merged.csv`` (``nsdId``, ``shared1000``) against ``sharedix``."""
    rel = nsd_path("stim_info")
    path = _require(root, rel, subjects)
    with _reading(root, rel, subjects), open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "nsdId" not in fields or "shared1000" not in fields:
            raise ValueError(f"columns nsdId and shared1000 not found (header: {fields[:12]})")
        shared = [int(row["nsdId"]) for row in reader if row["shared1000"].strip().lower() in ("true", "1")]
    if not np.array_equal(np.sort(shared), design.sharedix):
        raise ValueError(f"{rel} lists {len(shared)} shared1000 images that differ from sharedix in "
                         f"{nsd_path('expdesign')}: one of the two files is truncated or from another release. "
                         + _fetch_hint(root, rel, subjects))


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
        if vol.ndim != 3:
            raise ValueError(f"expected a 3-D volume, got shape {vol.shape}")
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


# --------------------------------------------------------------------------------------------
# Betas: read only the ROI voxels of one session
# --------------------------------------------------------------------------------------------

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
    """Z-score each row over trials (ddof=0); constant rows become 0. Returns (z, n_constant)."""
    mu = x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    flat = sd[:, 0] == 0
    sd[flat] = 1.0
    return (x - mu) / sd, int(flat.sum())


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

    ds = _build(root, subjects, spec, t_threshold, bool(average_subjects), betas_format, int(n_train), int(seed),
                None if image_size is None else int(image_size), counts, shared_subjects, bool(zscore),
                int(chunk_trials), progress)
    if cache_path is not None:
        _save_dataset(cache_path, ds, key)
    return ds


def _build(root: Path, subjects: tuple[int, ...], spec: dict[str, tuple[str, tuple[str, ...]]],
           t_threshold: float, average_subjects: bool, betas_format: str, n_train: int, seed: int,
           image_size: int | None, counts: dict[int, int], shared_subjects: tuple[int, ...], zscore: bool,
           chunk: int, progress: bool) -> Dataset:
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


# --------------------------------------------------------------------------------------------
# fetch_nsd
# --------------------------------------------------------------------------------------------

def _remote_size(url: str, timeout: float) -> int | None:
    """Size in bytes from a HEAD request (or a 1-byte ranged GET if HEAD is refused); None if unknown."""
    try:
        with urlopen(Request(url, method="HEAD"), timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            return int(length) if length is not None else None
    except HTTPError as exc:
        if exc.code not in (403, 405, 501):
            raise
    with urlopen(Request(url, headers={"Range": "bytes=0-0"}), timeout=timeout) as resp:
        total = (resp.headers.get("Content-Range") or "").rpartition("/")[2]
        return int(total) if total.isdigit() else None


def _download(url: str, relpath: str, dest: Path, timeout: float, progress: bool,
              block: int = 1 << 20) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a previous partial download."""
    part = dest.with_name(dest.name + ".part")
    size = _remote_size(url, timeout)
    if dest.is_file():
        if size is None or dest.stat().st_size == size:
            return                                          # complete (or no size to compare with)
        dest.unlink()                                       # stale or truncated copy: fetch afresh
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.is_file() else 0
    if size is not None and start > size:
        part.unlink()
        start = 0
    if size is None or start < size:
        headers = {"Range": f"bytes={start}-"} if start else {}
        with urlopen(Request(url, headers=headers), timeout=timeout) as resp:
            if start and (resp.status != 206 or
                          not (resp.headers.get("Content-Range") or "").startswith(f"bytes {start}-")):
                start = 0                                   # server ignored the range: start over
            with open(part, "ab" if start else "wb") as f, \
                    progress_bar(total=size, initial=start, unit="B", unit_scale=True, leave=False,
                         desc=Path(relpath).name, disable=not progress) as bar:
                while data := resp.read(block):
                    f.write(data)
                    bar.update(len(data))
    got = part.stat().st_size
    if size is not None and got != size:
        raise OSError(f"got {got} of {size} bytes")
    os.replace(part, dest)


def fetch_nsd(root: str | os.PathLike, subjects: int | Sequence[int], base_url: str = NSD_BASE_URL,
              betas_format: str = "nifti", sessions: int | Mapping[int, int] | None = None,
              progress: bool = True, include_stimuli: bool = True, timeout: float = 60.0) -> list[Path]:
    """Download the NSD files :func:`load_nsd` needs for ``subjects`` into ``root``.

    Files already present with the size the server reports (``Content-Length`` of a HEAD request)
    are skipped; an interrupted download is kept as ``<file>.part`` and resumed with an HTTP Range
    request on the next call. The full set per subject is ~40 GB of betas (NIfTI) plus the ~37 GB
    stimulus file shared by all subjects. Returns the local paths, in :func:`nsd_files` order.
    Errors name the URL and relative path; HTTP 404 raises ``FileNotFoundError``.
    """
    root = Path(root)
    paths = []
    files = nsd_files(subjects, betas_format, sessions, include_stimuli)
    for rel in progress_bar(files, desc="NSD files", unit="file", disable=not progress):
        url = f"{base_url.rstrip('/')}/{quote(rel)}"
        try:
            _download(url, rel, root / rel, timeout, progress)
        except HTTPError as exc:
            err = FileNotFoundError if exc.code == 404 else OSError
            raise err(f"download of NSD file {rel} from {url} failed: HTTP {exc.code} {exc.reason}") from exc
        except (URLError, OSError, http.client.HTTPException) as exc:
            raise OSError(f"download of NSD file {rel} from {url} failed ({type(exc).__name__}: {exc}); "
                          "call fetch_nsd again to resume it") from exc
        paths.append(root / rel)
    return paths
