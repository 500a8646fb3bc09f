"""Fitting encoding models: one readout fit, used for a panel of models and for multi-output units.

- :func:`fit_and_predict` is the one readout fit (features -> responses, plus held-out
  predictions); :func:`fit_panel`, :func:`fit_units` and :func:`probelib.model.fit_encoding_model`
  all go through it.
- A *panel* (:func:`fit_panel`, :class:`PanelFit`) is a list of model specs (see
  :mod:`probelib.zoo`) crossed with the ROIs of a :class:`~probelib.data.Dataset`: one readout per
  (spec, ROI). Features are cached by :func:`probelib.model.extract_features`.
- *Units* (:func:`response_units`, :func:`fit_units`, :class:`UnitFit`): one multi-output readout
  per network predicting ROI means (averaged over subjects, or one per subject); the fitted
  readout and its held-out predictions are cached on disk.

Units everywhere: images (N, 3, H, W) with pixels in [0, 1]; responses in the units of the
dataset (the demo and NSD betas are z-scored per voxel, ROI means average those).
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ._progress import progress_bar
from .cache import array_digest, cached_call, module_key
from .data.dataset import Dataset
from .model import EncodingModel, extract_features
from .metrics import pearson_r
from .readouts import fit_readout, lasso_readout, select_lasso_alpha
from .zoo import build_encoder, check_model

__all__ = ["fit_and_predict", "dataset_digest", "PanelFit", "fit_panel", "Units", "response_units",
           "UnitFit", "fit_units", "readout_options"]


def fit_and_predict(kind: str, features_train, responses_train, features_test=None, seed: int = 0,
                    **options):
    """Fit a ``kind`` readout on ``features_train`` (N, ...) -> ``responses_train`` (N, V) and
    predict ``features_test``: returns ``(readout, predictions (N_test, V) float32 or None)``.

    ``options`` go to :func:`probelib.readouts.fit_readout`; for ``kind="lasso"``, ``alpha=a``
    (with ``relative=True`` by default) fits that fixed penalty exactly by LARS instead
    (:func:`probelib.readouts.lasso_readout`).
    """
    if kind == "lasso" and "alpha" in options:  # fixed penalty (chosen beforehand): exact LARS fit
        extra = set(options) - {"alpha", "relative"}
        if extra:
            raise ValueError(f"unknown options for a fixed-penalty lasso: {sorted(extra)}")
        readout = lasso_readout(features_train, responses_train, options["alpha"],
                                relative=bool(options.get("relative", True)))
    else:
        readout = fit_readout(kind, features_train, responses_train, seed=seed, **options)
    if features_test is None:
        return readout, None
    with torch.no_grad():
        pred = readout(torch.as_tensor(features_test, dtype=torch.float32)).float().numpy()
    return readout, pred


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
        f_test = extract_features(enc, ds.stimuli[test], device=device, progress=False)
        for roi in rois:
            readout, pred = fit_and_predict(kind, f_train, ds.responses[roi][train], f_test, seed=seed,
                                            **fit_options)
            fit.models[(spec, roi)] = EncodingModel(enc, readout, name=f"{spec}/{roi}").to(device)
            fit.predictions[(spec, roi)] = pred
            fit.predictivity[(spec, roi)] = pearson_r(pred, ds.responses[roi][test])
    return fit


@dataclass
class Units:
    """Columns predicted by an encoding model.

    responses : (N, U) float32, repeat-averaged responses of the U units to the N images.
    roi : (U,) ROI name of each unit.
    subject : (U,) int, the subject a unit belongs to (0: averaged over subjects).
    n_voxels : (U,) int, voxels averaged into each unit.
    """

    responses: np.ndarray
    roi: np.ndarray
    subject: np.ndarray
    n_voxels: np.ndarray

    @property
    def n_units(self) -> int:
        return int(self.responses.shape[1])

    @property
    def labels(self) -> list[str]:
        """``"FFA"`` for a subject-averaged unit, ``"FFA/s2"`` for subject 2's FFA mean."""
        return [str(r) if s == 0 else f"{r}/s{s}" for r, s in zip(self.roi, self.subject)]

    def table(self) -> pd.DataFrame:
        """One row per unit: unit index, label, roi, subject, n_voxels."""
        return pd.DataFrame({"unit": np.arange(self.n_units), "label": self.labels, "roi": self.roi,
                             "subject": self.subject, "n_voxels": self.n_voxels})

    def select(self, mask) -> Units:
        """The units where the boolean (U,) ``mask`` is True (or at the integer indices ``mask``)."""
        idx = np.arange(self.n_units)[np.asarray(mask)]
        if len(idx) == 0:
            raise ValueError("no unit selected")
        return Units(self.responses[:, idx], self.roi[idx], self.subject[idx], self.n_voxels[idx])


def response_units(ds: Dataset, rois: Sequence[str] | None = None, by_subject: bool = False) -> Units:
    """ROI-mean response units of a dataset.

    ``by_subject=False``: one unit per ROI, the ROI mean averaged over subjects (the paper's
    target; for a dataset loaded with ``average_subjects=True`` that is ``responses[roi]`` itself).
    ``by_subject=True``: one unit per (ROI, subject), the mean over that subject's ROI voxels; needs
    a dataset loaded with ``average_subjects=False`` (``voxels[roi]["subject"]`` names each column).
    Units are ordered ROI-major (all subjects of the first ROI, then the next ROI).
    """
    rois = list(rois) if rois is not None else ds.rois
    missing = [r for r in rois if r not in ds.responses]
    if missing:
        raise ValueError(f"unknown ROI(s) {missing}; this dataset has {ds.rois}")
    cols, roi_l, subj_l, nvox_l = [], [], [], []
    for roi in rois:
        resp = np.asarray(ds.responses[roi], dtype=np.float64)
        subjects = np.asarray(ds.voxels.get(roi, {}).get("subject", []))
        voxelwise = resp.shape[1] > 1 or (len(subjects) == 1 and resp.shape[1] == 1)
        if not voxelwise:  # already the subject-averaged ROI mean (N, 1)
            if by_subject:
                raise ValueError(f"responses[{roi!r}] is the subject-averaged ROI mean; load the dataset "
                                 "with average_subjects=False for per-subject units")
            cols.append(resp[:, 0])
            roi_l.append(roi)
            subj_l.append(0)
            nvox_l.append(max(len(subjects), 1))
            continue
        if len(subjects) != resp.shape[1]:
            raise ValueError(f"voxels[{roi!r}]['subject'] must name the subject of each of the "
                             f"{resp.shape[1]} columns; got {len(subjects)} entries")
        per_subject = {int(s): resp[:, subjects == s].mean(1) for s in np.unique(subjects)}
        if by_subject:
            for s, col in per_subject.items():
                cols.append(col)
                roi_l.append(roi)
                subj_l.append(s)
                nvox_l.append(int(np.sum(subjects == s)))
        else:
            cols.append(np.mean(list(per_subject.values()), axis=0))
            roi_l.append(roi)
            subj_l.append(0)
            nvox_l.append(len(subjects))
    return Units(np.stack(cols, 1).astype(np.float32), np.asarray(roi_l), np.asarray(subj_l, dtype=int),
                 np.asarray(nvox_l, dtype=int))


@dataclass
class UnitFit:
    """An encoding model of all units of a :class:`Units`, fitted on the training split.

    model : the :class:`~probelib.model.EncodingModel`, images (N, 3, H, W) -> responses (N, U).
    predictivity : (U,) Pearson r of the held-out predictions with the observed responses (NaN for
        a unit whose prediction is constant, e.g. a lasso that kept no feature).
    test_predictions : (N_test, U) held-out predictions; ``test_index`` (N_test,) their images.
    dataset : the dataset the model was fitted on (its stimuli are what :func:`probe_units` probes).
    key : everything the fit depends on (used in the cache keys of the probes).
    """

    spec: str
    kind: str
    units: Units
    model: EncodingModel
    predictivity: np.ndarray
    test_predictions: np.ndarray
    test_index: np.ndarray
    dataset: Dataset = field(repr=False)
    key: dict = field(repr=False)

    @property
    def hparams(self) -> dict:
        """Hyper-parameters recorded by the readout (chosen alpha, weight decay, ...)."""
        return dict(getattr(self.model.readout, "hparams", {}))

    def describe_hparams(self) -> str:
        """The hyper-parameters the readout chose, as one line of text (ridge: the penalty per
        unit; lasso: the penalty and the non-zero weights per unit; MLP / CNN: the weight decay and
        its validation r)."""
        hp = self.hparams
        if self.kind == "ridge":
            return "alpha per unit: " + ", ".join(f"{a:g}" for a in np.atleast_1d(hp["alpha"]))
        if self.kind == "lasso":
            rel = f"{hp['relative_alpha']:g} x alpha_max, " if hp.get("relative_alpha") is not None else ""
            return (f"alpha = {rel}i.e. " + ", ".join(f"{a:.3g}" for a in np.atleast_1d(hp["alpha"]))
                    + f"; non-zero weights per unit: {', '.join(str(int(n)) for n in hp['nonzero_per_unit'])}"
                    + f" of {hp['n_features']}")
        if self.kind in ("mlp", "cnn"):
            return (f"weight decay {hp['weight_decay']:g} (validation r: "
                    + ", ".join(f"{k:g}: {v:.2f}" for k, v in hp["validation_r"].items()) + ")")
        return "none"

    def summary(self) -> pd.DataFrame:
        """One row per unit: model, readout, unit, label, roi, subject, n_voxels, held-out r."""
        t = self.units.table()
        t.insert(0, "readout", self.kind)
        t.insert(0, "model", self.spec)
        t["r"] = self.predictivity
        return t


def _fit_impl(key: dict, features_train, responses_train, test_features, kind, seed, options):
    del key  # part of the cache key only
    return fit_and_predict(kind, features_train, responses_train, test_features, seed=seed, **options)


def _jsonable(v):
    if isinstance(v, np.ndarray | tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def fit_units(ds: Dataset, spec: str, units: Units, kind: str = "ridge", n_samples: int = 4,
              seed: int = 0, device="cpu", encoder=None, cache: bool = True, **options) -> UnitFit:
    """Fit a ``kind`` readout (see :func:`probelib.readouts.fit_readout`) from the features of the
    network ``spec`` (see :mod:`probelib.zoo`) to all units at once on ``ds.split["train"]``, and
    score it on ``ds.split["test"]``.

    ``units`` must have been made from ``ds`` (same images). ``n_samples`` / ``seed``: Monte-Carlo
    draws and noise seed of a smoothed spec (``"...+smooth0.25"``); ``seed`` also seeds the readout.
    ``options`` go to the readout (see :func:`probelib.readouts.fit_readout`, e.g. ``alphas=[0.01]``);
    for ``kind="lasso"``, ``alpha=a`` (with ``relative=True`` by default: a fraction of each unit's
    :func:`~probelib.readouts.lasso_alpha_max`) fits a fixed penalty exactly by LARS instead (:func:`fit_and_predict`),
    e.g. the one chosen by :func:`probelib.readouts.select_lasso_alpha`. ``encoder``: an already built encoder of
    ``spec`` (spatial for ``kind="cnn"``) to reuse. Features are cached by
    :func:`probelib.model.extract_features`; the fitted readout and its held-out predictions are
    cached on disk (``cache=True``), keyed by the dataset content, the units, the encoder (including
    its smoothing draws), the readout kind, its options and the seed.
    """
    check_model(spec)  # a clear error for a bad spec before anything is loaded
    if units.responses.shape[0] != ds.n_images:
        raise ValueError(f"units have {units.responses.shape[0]} images, the dataset {ds.n_images}")
    if encoder is None:
        encoder = build_encoder(spec, device=device, n_samples=n_samples, seed=seed,
                                spatial=(kind == "cnn"))
    else:  # a given encoder computes its features where the model will live
        encoder = encoder.to(device)
    train, test = np.asarray(ds.split["train"]), np.asarray(ds.split["test"])
    f_train = extract_features(encoder, ds.stimuli[train], device=device, progress=False)
    f_test = extract_features(encoder, ds.stimuli[test], device=device, progress=False)
    key = {"dataset": dataset_digest(ds), "units": array_digest(units.responses),
           "unit_labels": units.labels, "encoder": module_key(encoder), "kind": kind,
           "options": {k: _jsonable(v) for k, v in sorted(options.items())}, "seed": int(seed)}
    fit_options = dict(options)
    if kind in ("mlp", "cnn") and device is not None and torch.device(device).type != "cpu":
        # train the net readout on the GPU too (not added on the CPU, the default of fit_readout,
        # so that the arguments joblib hashes, and the entries already cached, stay the same)
        fit_options.setdefault("device", str(device))
    readout, pred = cached_call(_fit_impl, key if cache else None, f_train, units.responses[train], f_test,
                                kind, int(seed), fit_options,
                                ignore=("features_train", "responses_train", "test_features"),
                                check=lambda r: (isinstance(r, tuple) and len(r) == 2
                                                 and isinstance(r[0], torch.nn.Module)
                                                 and np.shape(r[1])[0] == len(f_test)))
    model = EncodingModel(encoder, readout, name=f"{spec}/{kind}").to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant prediction (empty lasso) -> NaN
        r = np.atleast_1d(np.asarray(pearson_r(pred, units.responses[test]), dtype=np.float64))
    return UnitFit(spec, kind, units, model, r, pred, test, ds, key)


def readout_options(kind: str, encoder, ds: Dataset, responses_train, device="cpu", lasso_alphas=None,
                    lasso_relative: bool = True, seed: int = 0, net_options=None):
    """The 2024 paper's choice of a readout's options before :func:`fit_units`:
    ``(options, selection)``.

    ``"lasso"``: one penalty for all units by 5-fold cross-validated Pearson r on the training
    images (:func:`probelib.readouts.select_lasso_alpha` on the features of ``encoder`` and
    ``responses_train`` (N_train, U); ``lasso_alphas`` / ``lasso_relative`` as there), returned as
    ``{"alpha", "relative"}`` with the selection; ``"mlp"`` / ``"cnn"``: ``net_options``; other
    kinds: no options. ``selection`` is None except for the lasso.
    """
    if kind == "lasso":
        feats = extract_features(encoder, ds.stimuli[ds.split["train"]], device=device, progress=False)
        sel = select_lasso_alpha(feats, responses_train, alphas=lasso_alphas, relative=lasso_relative, seed=seed)
        return {"alpha": sel.alpha, "relative": sel.relative}, sel
    if kind in ("mlp", "cnn"):
        return dict(net_options or {}), None
    return {}, None

