"""The NSD layout (relative paths of every file the pipeline reads, subjects and sessions) and
file access: a missing file names itself and how to fetch it, read errors name the file, and a
``.nii.gz`` is read to the end of its last gzip member so that its CRC-32 is checked."""
from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from ..._checks import check_choice

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


#: what reading a truncated or corrupt file raises (scipy's loadmat: IndexError for a file cut in its header)
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, zlib.error, ImageFileError, HeaderDataError)


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
