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


def probe_images(ds: Dataset, n_images: int | None = None, seed: int = 0,
                 split: str = "test") -> np.ndarray:
    """Sorted indices (n,) into ``ds.stimuli`` of ``n_images`` images of ``ds.split[split]`` to probe.

    When ``ds.categories`` is known the subset is stratified by category (every category keeps
    about its share of the split, at least one image each while ``n_images`` allows), so that
    every ROI's preferred category is probed; otherwise a seeded random subset. ``None`` or a
    number >= the split size returns the whole split. The same ``(ds, n_images, seed, split)``
    always gives the same images, so chapters that probe the same subset share cached probes.
    """
    if split not in ds.split:
        raise ValueError(f"unknown split {split!r}; this dataset has {sorted(ds.split)}")
    pool = np.sort(np.asarray(ds.split[split]))
    if n_images is None or int(n_images) >= len(pool):
        return pool
    n_images = int(n_images)
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1; got {n_images}")
    rng = np.random.default_rng(seed)
    if ds.categories is None:
        return np.sort(rng.choice(pool, n_images, replace=False))
    cats = np.asarray(ds.categories)[pool]
    labels, counts = np.unique(cats, return_counts=True)
    take = _stratified_counts(counts, n_images)
    picked = [rng.choice(pool[cats == lab], t, replace=False) for lab, t in zip(labels, take) if t]
    return np.sort(np.concatenate(picked))


def _stratified_counts(counts: np.ndarray, n: int) -> np.ndarray:
    """Largest-remainder allocation of ``n`` draws to groups of sizes ``counts`` (at least one
    per group when ``n`` allows, never more than a group holds); sums to ``n <= counts.sum()``."""
    share = counts / counts.sum() * n
    take = np.floor(share).astype(int)
    if n >= len(counts):
        take = np.maximum(take, 1)
    take = np.minimum(take, counts)
    order = np.argsort(-(share - np.floor(share)))
    while take.sum() < n:
        for k in order:
            if take.sum() < n and take[k] < counts[k]:
                take[k] += 1
    while take.sum() > n:
        take[int(np.argmax(take))] -= 1
    return take


def make_split(n: int, n_train: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random train/test split of ``n`` images (papers: 400 train / 115 test of 515)."""
    if not 0 < n_train < n:
        raise ValueError(f"n_train must be in (0, {n}); got {n_train}")
    perm = np.random.default_rng(seed).permutation(n)
    return {"train": np.sort(perm[:n_train]), "test": np.sort(perm[n_train:])}


def preferred_example(ds: Dataset, image_index, clean: np.ndarray, category: str | None) -> int:
    """Position (into ``image_index``) of the example image for a targeted-probe figure: the
    image of ``category`` (e.g. ``"face"`` for FFA) with the highest clean prediction, or the
    highest clean prediction overall when categories are unknown / none match.

    clean : (N,) clean predictions of the probed unit for the images ``image_index``.
    """
    clean = np.asarray(clean, dtype=np.float64).ravel()
    index = np.asarray(image_index)
    if clean.shape[0] != index.shape[0]:
        raise ValueError(f"clean has {clean.shape[0]} values for {index.shape[0]} images")
    candidates = np.arange(len(index))
    if category is not None and ds.categories is not None:
        match = np.asarray(ds.categories)[index] == category
        if match.any():
            candidates = candidates[match]
    return int(candidates[np.argmax(clean[candidates])])


def trajectory_starts(ds: Dataset, roi: str, category: str | None, n_images: int, index=None,
                      contrast: str = "object") -> tuple[np.ndarray, np.ndarray]:
    """Start images of probe trajectories for the region ``roi``: ``(minimise, maximise)``, up to
    ``n_images`` dataset indices each, among ``index`` (default the test split).

    Minimise from the images of the region's preferred ``category`` (e.g. ``"face"`` for FFA) with
    the highest observed response (mean over the ROI's columns); maximise from images of the
    ``contrast`` category with a middling response. Without categories (or without a match) the
    pool is all of ``index``.
    """
    pool = np.asarray(ds.split["test"] if index is None else index)
    cats = np.asarray(ds.categories) if ds.categories is not None else None
    y = np.asarray(ds.responses[roi])[:, :].mean(1)
    pool_min = pool if cats is None else pool[cats[pool] == (category or "")]
    pool_max = pool if cats is None else pool[cats[pool] == contrast]
    pool_min = pool_min if len(pool_min) else pool
    pool_max = pool_max if len(pool_max) else pool
    lo = pool_min[np.argsort(-y[pool_min])][:n_images]
    order = pool_max[np.argsort(y[pool_max])]
    mid = len(order) // 2
    hi = order[max(0, mid - n_images // 2):][:n_images]
    return lo, hi

