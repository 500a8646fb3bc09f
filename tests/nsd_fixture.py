"""Fabricate a miniature NSD tree in the real file formats, with planted answers.

Real formats, miniature sizes:

* ``nsd_expdesign.mat`` (MATLAB v5, 1-based, doubles as MATLAB writes them): ``masterordering``
  1×30000, ``subjectim`` 8×10000 (columns 1-1000 = the shared images, same for every subject, as in
  NSD), ``sharedix`` 1×1000 (sorted 73k ids).
* ``nsd_stim_info_merged.csv`` with NSD's columns (unnamed index, cocoId, ..., nsdId, ...,
  shared1000, subjectN, subjectN_repR); 73000 rows.
* Betas per session: X×Y×Z×750 int16 NIfTI-1 (.nii.gz, PSC × 300) and the HDF5 twin (dataset
  ``betas`` of shape 750×Z×Y×X). The volume is 6×5×4 instead of 81×104×83.
* ``ncsnr.nii.gz``, ``floc_<category>tval.nii.gz`` (float32), ``roi/floc-<category>.nii.gz``
  (int16 labels; -1 outside the "brain", 0 unlabelled), ``floc-<category>.mgz.ctab`` (NSD's
  two-column ``index name`` text, starting with ``0 Unknown``). Subject 2's tables number the
  labels in reverse order (NSD's are identical across subjects) so that a loader that hard-codes
  label values fails.
* ``nsd_stimuli.hdf5``: ``imgBrick`` with the real shape 73000×425×425×3 uint8, chunked one image
  per chunk and gzip-compressed; only the images of the planted design are written (unwritten
  chunks are never allocated, so the file stays small). Image ``id`` has red = id % 256 and green
  = (id // 256) % 256 everywhere, so a test can decode which image it got.

Planted design (two subjects: subject 1 completed 3 sessions, subject 2 completed 2):

* group A: 12 shared images shown 3 times within sessions 1-2 -> seen 3× by both subjects;
* group B: 4 shared images shown twice in sessions 1-2 and once in session 3 -> 3× for subject 1
  only;
* group C: 3 shared images shown once in session 1, once in session 3 and once in session 4 ->
  3× only if a loader wrongly counts a session the subjects did not complete;
* group D: 5 non-shared images shown 3 times within sessions 1-2 -> never selected;
* every other trial of sessions 1-3 shows a distinct non-shared image once.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
from scipy.io import savemat

SHAPE = (6, 5, 4)
TRIALS = 750
SESSIONS = {1: 3, 2: 2}
LABELS = {
    "faces": ("OFA", "FFA-1", "FFA-2", "mTL-faces", "aTL-faces"),
    "bodies": ("EBA", "FBA-1", "FBA-2", "mTL-bodies"),
    "places": ("OPA", "PPA", "RSC"),
    "words": ("OWFA", "VWFA-1", "VWFA-2", "mfs-words", "mTL-words"),
}
TVAL = {"faces": "floc_facestval", "bodies": "floc_bodiestval", "places": "floc_placestval",
        "words": "floc_wordtval"}
AFFINE = np.diag([1.8, 1.8, 1.8, 1.0])
_BETAS = "nsddata_betas/ppdata/subj{s:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR"
_FUNC = "nsddata/ppdata/subj{s:02d}/func1pt8mm"


@dataclass
class MiniNSD:
    """A fabricated NSD tree and the answers planted in it (73k ids are 0-based)."""

    root: Path
    sessions: dict[int, int]
    betas: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)   # (subject, session) -> int16 XYZT
    trial_ids: dict[int, np.ndarray] = field(default_factory=dict)           # subject -> 73k id per trial
    groups: dict[str, np.ndarray] = field(default_factory=dict)              # "A".."D" -> sorted 73k ids
    planted: dict[tuple[int, str], list[tuple[tuple[int, int, int], str, float]]] = field(default_factory=dict)
    tval: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)    # (subject, category) -> volume
    ncsnr: dict[int, np.ndarray] = field(default_factory=dict)

    def expected_voxels(self, subject: int, category: str, labels: tuple[str, ...], threshold: float = 7.0):
        """Planted voxels of ``labels`` with t > threshold, as a set of (i, j, k)."""
        return {ijk for ijk, name, t in self.planted[(subject, category)] if name in labels and t > threshold}


def _nifti(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def _design(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """masterordering (30000,), subjectim (8, 10000), sharedix (1000,) 1-based; 10k-index groups."""
    shared73 = rng.choice(np.arange(1, 73001), size=1000, replace=False)      # 1-based 73k ids
    rest = rng.permutation(np.setdiff1d(np.arange(1, 73001), shared73))
    subjectim = np.empty((8, 10000), dtype=np.int64)
    for s in range(8):
        subjectim[s, :1000] = shared73
        subjectim[s, 1000:] = rest[s * 9000:(s + 1) * 9000]

    groups10k = {"A": np.array([5, 17, 42, 99, 150, 230, 301, 444, 555, 777, 888, 999]),
                 "B": np.array([3, 60, 600, 900]), "C": np.array([8, 80, 800]),
                 "D": np.array([1001, 2002, 3003, 4004, 5005])}
    order = np.zeros(30000, dtype=np.int64)
    free = np.ones(30000, dtype=bool)

    def place(idx10k: int, lo: int, hi: int, count: int) -> None:
        slots = rng.choice(np.flatnonzero(free[lo:hi]) + lo, size=count, replace=False)
        order[slots] = idx10k
        free[slots] = False

    s1, s2, s3, s4 = (range(k * TRIALS, (k + 1) * TRIALS) for k in range(4))
    for i in groups10k["A"]:
        place(i, s1.start, s2.stop, 3)
    for i in groups10k["B"]:
        place(i, s1.start, s2.stop, 2)
        place(i, s3.start, s3.stop, 1)
    for i in groups10k["C"]:
        place(i, s1.start, s1.stop, 1)
        place(i, s3.start, s3.stop, 1)
        place(i, s4.start, s4.stop, 1)
    for i in groups10k["D"]:
        place(i, s1.start, s2.stop, 3)
    fillers = np.setdiff1d(np.arange(1006, 10001), groups10k["D"])
    head = np.flatnonzero(free[:3 * TRIALS])
    order[head] = rng.choice(fillers, size=head.size, replace=False)
    tail = np.flatnonzero(free)
    tail = tail[tail >= 3 * TRIALS]
    order[tail] = rng.choice(fillers, size=tail.size)        # sessions nobody completed here
    return order, subjectim, np.sort(shared73), groups10k


def _write_stim_info(path: Path, order: np.ndarray, subjectim: np.ndarray, sharedix: np.ndarray,
                     rng: np.random.Generator) -> None:
    """nsd_stim_info_merged.csv with NSD's columns; subjectN_repR = 1-based trial number or 0."""
    shown: dict[tuple[int, int], list[int]] = {}
    for s in range(8):
        ids = subjectim[s, order - 1] - 1
        for trial, img in enumerate(ids):
            shown.setdefault((s, int(img)), []).append(trial + 1)
    owner = {int(i) - 1: s for s in range(8) for i in subjectim[s]}
    shared = set((sharedix - 1).tolist())
    coco = rng.integers(1, 600000, size=73000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["", "cocoId", "cocoSplit", "cropBox", "loss", "nsdId", "flagged", "BOLD5000", "shared1000"]
                   + [f"subject{s}" for s in range(1, 9)]
                   + [f"subject{s}_rep{r}" for s in range(1, 9) for r in range(3)])
        for i in range(73000):
            seen = [s for s in range(8) if i in shared or owner.get(i) == s]
            reps = [(shown.get((s, i), []) + [0, 0, 0])[:3] if s in seen else [0, 0, 0] for s in range(8)]
            w.writerow([i, int(coco[i]), "train2017", "(0, 0, 0.1, 0.1)", 0.0, i, False, False, i in shared]
                       + [int(s in seen) for s in range(8)] + [t for r in reps for t in r])


def make_mini_nsd(root: str | Path, seed: int = 0) -> MiniNSD:
    """Write the miniature NSD tree under ``root`` and return it with its planted answers."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    mini = MiniNSD(root=root, sessions=dict(SESSIONS))

    order, subjectim, sharedix, groups10k = _design(rng)
    exp = root / "nsddata/experiments/nsd"
    exp.mkdir(parents=True, exist_ok=True)
    savemat(exp / "nsd_expdesign.mat", {"masterordering": order[None].astype(np.float64),
                                         "subjectim": subjectim.astype(np.float64),
                                         "sharedix": sharedix[None].astype(np.float64)})
    _write_stim_info(exp / "nsd_stim_info_merged.csv", order, subjectim, sharedix, rng)
    for g, idx in groups10k.items():
        mini.groups[g] = np.sort(subjectim[0, idx - 1] - 1)
    assert np.array_equal(mini.groups["A"], np.sort(subjectim[1, groups10k["A"] - 1] - 1))

    brain = np.ones(SHAPE, dtype=bool)
    brain[5] = False                                            # the last X slice is "outside the brain"
    inside = np.argwhere(brain)
    for s, n_sessions in SESSIONS.items():
        mini.trial_ids[s] = subjectim[s - 1, order[:n_sessions * TRIALS] - 1] - 1
        for cat, labels in LABELS.items():
            numbers = dict(zip(labels, range(1, len(labels) + 1)))
            if s == 2:
                numbers = dict(zip(labels, range(len(labels), 0, -1)))
            ctab = root / f"nsddata/freesurfer/subj{s:02d}/label/floc-{cat}.mgz.ctab"
            ctab.parent.mkdir(parents=True, exist_ok=True)
            ctab.write_text("0 Unknown\n" + "".join(f"{v} {n}\n" for n, v in sorted(numbers.items(),
                                                                                     key=lambda kv: kv[1])))
            label_vol = np.where(brain, 0, -1).astype(np.int16)
            tval = rng.normal(0.0, 3.0, SHAPE).astype(np.float32)
            cells = inside[rng.choice(len(inside), size=3 * len(labels) + 2, replace=False)]
            planted = []
            for n, name in enumerate(labels):
                # per label: one clearly selective voxel, one below threshold, one random
                for t in (7.5 + 5 * rng.random(), 7.0 - 3 * rng.random(), rng.uniform(3, 12)):
                    ijk = tuple(int(v) for v in cells[len(planted)])
                    label_vol[ijk] = numbers[name]
                    tval[ijk] = t
                    planted.append((ijk, name, float(np.float32(t))))
            for ijk in cells[len(planted):]:                    # selective but unlabelled: excluded
                tval[tuple(ijk)] = 20.0
            tval[5, 0, 0] = 30.0                                # outside the brain, label -1
            mini.planted[(s, cat)] = planted
            mini.tval[(s, cat)] = tval
            _nifti(root / _FUNC.format(s=s) / "roi" / f"floc-{cat}.nii.gz", label_vol)
            _nifti(root / _FUNC.format(s=s) / f"{TVAL[cat]}.nii.gz", tval)
        mini.ncsnr[s] = rng.uniform(0.05, 0.9, SHAPE).astype(np.float32)
        _nifti(root / _BETAS.format(s=s) / "ncsnr.nii.gz", mini.ncsnr[s])

        # betas: per-voxel session offset and scale (so z-scoring matters), trial noise, and an
        # image-driven signal shared by both subjects
        planted_ids = set(np.concatenate(list(mini.groups.values())).tolist())
        signal = {int(i): rng.normal(0.0, 1.0, SHAPE) for i in np.unique(mini.trial_ids[s]) if i in planted_ids}
        for session in range(1, n_sessions + 1):
            ids = mini.trial_ids[s][(session - 1) * TRIALS:session * TRIALS]
            offset = rng.uniform(-2, 2, SHAPE)[..., None]
            scale = rng.uniform(0.5, 3.0, SHAPE)[..., None]
            x = rng.normal(0.0, 1.0, (*SHAPE, TRIALS))
            for t, i in enumerate(ids):
                if int(i) in signal:
                    x[..., t] += 2.0 * signal[int(i)]
            betas = np.round((offset + scale * x) * 300).astype(np.int16)
            mini.betas[(s, session)] = betas
            d = root / _BETAS.format(s=s)
            _nifti(d / f"betas_session{session:02d}.nii.gz", betas)
            with h5py.File(d / f"betas_session{session:02d}.hdf5", "w") as f:
                f.create_dataset("betas", data=np.ascontiguousarray(betas.transpose(3, 2, 1, 0)))

    stim = root / "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"
    stim.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(stim, "w") as f:
        ds = f.create_dataset("imgBrick", shape=(73000, 425, 425, 3), dtype=np.uint8,
                              chunks=(1, 425, 425, 3), compression="gzip")
        for i in np.concatenate(list(mini.groups.values())):
            img = np.empty((425, 425, 3), dtype=np.uint8)
            img[..., 0] = i % 256
            img[..., 1] = (i // 256) % 256
            img[..., 2] = np.linspace(0, 255, 425).astype(np.uint8)[None, :]
            ds[int(i)] = img
    return mini


def reference_repeats(mini: MiniNSD, subject: int, image_ids: np.ndarray, ijk: np.ndarray,
                      zscore: bool = True) -> np.ndarray:
    """(N, 3, V) single trials computed the plain way: whole volumes, ``/300``, z-score, pick trials."""
    sessions = [mini.betas[(subject, k)] / 300.0 for k in range(1, mini.sessions[subject] + 1)]
    if zscore:
        sessions = [(b - b.mean(-1, keepdims=True)) / b.std(-1, keepdims=True) for b in sessions]
    series = np.concatenate(sessions, axis=-1)[ijk[:, 0], ijk[:, 1], ijk[:, 2]]   # (V, T)
    out = np.empty((len(image_ids), 3, len(ijk)))
    for n, i in enumerate(image_ids):
        trials = np.flatnonzero(mini.trial_ids[subject] == i)
        assert trials.size == 3
        out[n] = series[:, trials].T
    return out
