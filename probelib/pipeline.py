"""Panel-level steps shared by the chapters: fit a panel of encoding models, probe it, cache it.

A *panel* is a list of model specs (see :mod:`probelib.zoo`) crossed with ROIs of a
:class:`~probelib.data.Dataset`. Features are cached by :func:`probelib.model.extract_features`;
probe sweeps, the expensive part, are cached on disk by :func:`cached_probe` keyed by the dataset
content, the model spec, the readout and every attack argument, so a re-run of a chapter (nbval,
or a reader changing a plotting parameter) costs seconds; :func:`cached_attack` does the same for
any model, keyed by a description of it and the image content.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from ._progress import progress_bar

from . import probes
from ._checks import as_float32_array, check_choice
from .cache import array_digest, cached_call
from .data.dataset import Dataset
from .model import EncodingModel, extract_features
from .readouts import fit_readout
from .zoo import build_encoder


def dataset_digest(ds: Dataset) -> str:
    """Short content hash of a dataset's stimuli, responses and split (for cache keys)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.stimuli).tobytes())
    for roi in sorted(ds.responses):
        h.update(roi.encode())
        h.update(np.ascontiguousarray(ds.responses[roi]).tobytes())
    for k in ("train", "test"):
        h.update(np.asarray(ds.split[k]).tobytes())
    return h.hexdigest()[:16]


@dataclass
class PanelFit:
    """Fitted encoding models of a panel: ``models[(spec, roi)]`` and their held-out accuracy."""

    dataset: Dataset
    digest: str
    kind: str
    options: dict
    seed: int = 0
    models: dict[tuple[str, str], EncodingModel] = field(default_factory=dict)
    predictivity: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    predictions: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def specs(self) -> list[str]:
        return list(dict.fromkeys(s for s, _ in self.models))

    @property
    def rois(self) -> list[str]:
        return list(dict.fromkeys(r for _, r in self.models))

    def key(self, spec: str, roi: str) -> dict:
        """How the model ``(spec, roi)`` was made, for cache keys: dataset content, spec, ROI,
        readout kind, its options and the fit's seed. The cached calls that take the model add its
        content (:func:`probelib.cache.module_key`) to their key themselves."""
        return {"dataset": self.digest, "spec": spec, "roi": roi, "readout": self.kind,
                "readout_options": self.options, "fit_seed": self.seed}

    def table(self) -> pd.DataFrame:
        """One row per (model, ROI, unit): held-out Pearson r and the unit's noise ceiling."""
        rows = []
        for (spec, roi), r in self.predictivity.items():
            nc = self.dataset.noise_ceiling.get(roi)
            for v, rv in enumerate(r):
                rows.append({"model": spec, "roi": roi, "unit": v, "r": float(rv),
                             "ceiling": float(nc[v]) if nc is not None else np.nan})
        return pd.DataFrame(rows)


def fit_panel(ds: Dataset, specs: Sequence[str], rois: Sequence[str] | None = None, kind: str = "ridge",
              device="cpu", seed: int = 0, n_samples: int = 8, progress: bool = True,
              **readout_options) -> PanelFit:
    """Fit one ``kind`` readout per (model spec, ROI) on the training split; score on the test split.

    ``n_samples``: noise draws of smoothed specs (``+smooth<sigma>``). Returns a :class:`PanelFit`.
    """
    from .metrics import pearson_r  # here, not at the top: metrics imports scipy

    rois = list(rois) if rois is not None else ds.rois
    missing = [r for r in rois if r not in ds.responses]
    if missing:
        raise ValueError(f"unknown ROI(s) {missing}; this dataset has {ds.rois}")
    train, test = ds.split["train"], ds.split["test"]
    fit = PanelFit(ds, dataset_digest(ds), kind, dict(readout_options), seed=seed)
    fit_options = dict(readout_options)
    if kind in ("mlp", "cnn"):  # trained readouts: train where the features are computed
        fit_options.setdefault("device", device)
    for spec in progress_bar(list(specs), desc="fitting models", disable=not progress):
        enc = build_encoder(spec, device=device, n_samples=n_samples, seed=seed,
                            spatial=(kind == "cnn"))
        # every image passes the encoder once per model (features cached on disk); ROIs share them
        f_train = extract_features(enc, ds.stimuli[train], device=device, progress=False)
        f_test = torch.from_numpy(extract_features(enc, ds.stimuli[test], device=device, progress=False))
        for roi in rois:
            readout = fit_readout(kind, f_train, ds.responses[roi][train], seed=seed, **fit_options)
            with torch.no_grad():
                pred = readout(f_test).float().numpy()
            fit.models[(spec, roi)] = EncodingModel(enc, readout, name=f"{spec}/{roi}").to(device)
            fit.predictions[(spec, roi)] = pred
            fit.predictivity[(spec, roi)] = pearson_r(pred, ds.responses[roi][test])
    return fit


ATTACKS = ("fgsm", "pgd", "fixed_effect")
#: Part of every probe cache key; raise it when probelib.probes changes its results for the same
#: arguments (joblib only sees the code of ``_probe_impl``). 2: PGD shares its step-0 pass.
PROBE_CACHE_VERSION = 2


def _probe_impl(key: dict, model: EncodingModel, images: np.ndarray, attack: str, kwargs: dict):
    fn = getattr(probes, attack)
    return fn(model, torch.from_numpy(images), **kwargs)


def _run_attack(key: dict | None, model, images: np.ndarray, attack: str, kwargs: dict):
    """``probelib.probes.<attack>(model, images, **kwargs)``, cached on disk unless ``key`` is None.

    ``key`` must identify the model and the images (N, 3, H, W) float32; the attack and its
    keyword arguments (all but ``device`` and ``progress``) are added to it. Perturbations are
    not kept unless ``store_perturbations=True`` (they can be large).
    """
    check_choice(attack, ATTACKS, "attack")
    kwargs = {"progress": False, "store_perturbations": False, **kwargs}
    if key is not None:
        key = dict(key, attack=attack, version=PROBE_CACHE_VERSION,
                   kwargs={k: v for k, v in kwargs.items() if k not in ("device", "progress")})
    return cached_call(_probe_impl, key, model, images, attack, kwargs,
                       ignore=("model", "images", "kwargs"),
                       check=lambda r: (isinstance(r, (probes.ProbeResult, probes.FixedEffectResult))
                                        and r.images.shape == images.shape))


def cached_attack(model: torch.nn.Module, images, attack: str = "pgd", key: Mapping | None = None,
                  **kwargs):
    """``probelib.probes.<attack>`` (``"fgsm"``, ``"pgd"``, ``"fixed_effect"``) on any model (e.g.
    the demo's observer) at ``images`` (N, 3, H, W) in [0, 1], cached on disk.

    ``key``, a JSON-able description of the model, keys the cache together with the image content
    and every keyword argument of the attack (``eps``, ``norm``, ``steps``, ``units``,
    ``direction`` ...); without ``key`` nothing is cached. Perturbations are not kept unless
    ``store_perturbations=True``. :func:`cached_probe` does the same for
    the models of a :class:`PanelFit`, keyed by the fit.
    """
    x = as_float32_array(images)
    full = None if key is None else {"key": dict(key), "images": [list(x.shape), array_digest(x)]}
    return _run_attack(full, model, x, attack, kwargs)


def cached_probe(fit: PanelFit, spec: str, roi: str, attack: str = "fgsm", image_index=None,
                 **kwargs):
    """Run ``probelib.probes.<attack>`` (``"fgsm"``, ``"pgd"``, ``"fixed_effect"``) on the model
    ``(spec, roi)`` of ``fit`` for the test images (or ``image_index``), cached on disk.

    ``kwargs`` go to the attack (``eps``, ``units``, ``norm``, ``steps`` ...). Perturbations are not
    stored unless ``store_perturbations=True`` is passed (they can be large). The cache key holds
    the model (:meth:`PanelFit.key`: dataset content, spec, ROI, encoder, readout, its options and
    the fit seed), the image indices, the attack and its arguments.
    """
    index = np.asarray(fit.dataset.split["test"] if image_index is None else image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    key = dict(fit.key(spec, roi), images=index.tolist())
    return _run_attack(key, fit.models[(spec, roi)], images, attack, kwargs)


def probe_panel(fit: PanelFit, attack: str = "fgsm", image_index=None, progress: bool = True,
                **kwargs) -> dict[tuple[str, str], object]:
    """:func:`cached_probe` for every (model, ROI) of the panel; returns a dict of results."""
    out = {}
    for key in progress_bar(list(fit.models), desc=f"{attack} probes", disable=not progress):
        out[key] = cached_probe(fit, *key, attack=attack, image_index=image_index, **kwargs)
    return out


def sensitivity_table(results: dict, eps_labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Long table (model, roi, eps, image, unit, sensitivity) of a :func:`probe_panel` result."""
    rows = []
    for (spec, roi), res in results.items():
        s = res.sensitivity  # (n_eps, N, n_units)
        for e in range(s.shape[0]):
            label = eps_labels[e] if eps_labels is not None else float(res.eps[e])
            n, u = s.shape[1:]
            rows.append(pd.DataFrame({"model": spec, "roi": roi, "eps": label,
                                      "image": np.repeat(np.arange(n), u),
                                      "unit": np.tile(np.asarray(res.units), n),
                                      "sensitivity": s[e].ravel()}))
    return pd.concat(rows, ignore_index=True)
