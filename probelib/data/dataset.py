"""The common container every data source returns (the embedded demo and the real NSD)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Dataset:
    """Stimuli and ROI responses of one (possibly subject-averaged) experiment.

    Attributes
    ----------
    stimuli : float32 array (N, 3, H, W), pixels in [0, 1].
    responses : dict ROI name -> float32 array (N, V_roi), repeat-averaged responses.
    image_ids : int array (N,), identifiers of the images (NSD: 0-based 73k ids).
    split : dict with integer index arrays ``"train"`` and ``"test"`` into the N images.
    repeats : dict ROI name -> array (N, n_repeats, V_roi) of single-trial responses, or empty.
    voxels : dict ROI name -> dict of per-voxel metadata arrays (``subject``, ``ijk``, ``t``, ...).
    noise_ceiling : dict ROI name -> array (V_roi,) of noise ceilings as a correlation (0..1).
    categories : optional list of N category labels (demo only), else None.
    name : a short description of the source.
    """

    stimuli: np.ndarray
    responses: dict[str, np.ndarray]
    image_ids: np.ndarray
    split: dict[str, np.ndarray]
    repeats: dict[str, np.ndarray] = field(default_factory=dict)
    voxels: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    noise_ceiling: dict[str, np.ndarray] = field(default_factory=dict)
    categories: list[str] | None = None
    name: str = ""

    def __post_init__(self) -> None:
        s = self.stimuli
        if s.ndim != 4 or s.shape[1] != 3:
            raise ValueError(f"stimuli must have shape (N, 3, H, W); got {s.shape}")
        n = s.shape[0]
        for roi, r in self.responses.items():
            if r.ndim != 2 or r.shape[0] != n:
                raise ValueError(f"responses[{roi!r}] must have shape (N={n}, V); got {r.shape}")
        for key in ("train", "test"):
            if key not in self.split:
                raise ValueError(f"split needs a {key!r} index array")

    @property
    def rois(self) -> list[str]:
        return list(self.responses)

    @property
    def n_images(self) -> int:
        return int(self.stimuli.shape[0])

    def subset(self, index: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Stimuli and responses of the images ``index`` (e.g. ``ds.split["test"]``)."""
        index = np.asarray(index)
        return self.stimuli[index], {roi: r[index] for roi, r in self.responses.items()}


def make_split(n: int, n_train: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random train/test split of ``n`` images (papers: 400 train / 115 test of 515)."""
    if not 0 < n_train < n:
        raise ValueError(f"n_train must be in (0, {n}); got {n_train}")
    perm = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(perm[:n_train]), "test": np.sort(perm[n_train:])}
