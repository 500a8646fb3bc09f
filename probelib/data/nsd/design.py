"""The NSD experimental design (``nsd_expdesign.mat``), the shared images every subject saw three
times, and the cross-check of ``nsd_stim_info_merged.csv``."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from .paths import (ALL_SUBJECTS, MAX_SESSIONS, N_IMAGES, N_REPEATS, TRIALS_PER_SESSION, _check_subjects,
                    _fetch_hint, nsd_path, _reading, _require, _session_counts)


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
    import pandas as pd   # its C parser reads the 73,000 rows in ~0.1 s (the csv module: ~1 s)

    with _reading(root, rel, subjects):
        fields = [str(c) for c in pd.read_csv(path, nrows=0).columns]
        if "nsdId" not in fields or "shared1000" not in fields:
            raise ValueError(f"columns nsdId and shared1000 not found (header: {fields[:12]})")
        table = pd.read_csv(path, usecols=["nsdId", "shared1000"], dtype=str, keep_default_na=False)
        flags = table["shared1000"].str.strip().str.lower().isin(("true", "1"))
        shared = table.loc[flags, "nsdId"].astype(int).to_numpy()
    if not np.array_equal(np.sort(shared), design.sharedix):
        raise ValueError(f"{rel} lists {len(shared)} shared1000 images that differ from sharedix in "
                         f"{nsd_path('expdesign')}: one of the two files is truncated or from another release. "
                         + _fetch_hint(root, rel, subjects))
