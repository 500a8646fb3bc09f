"""Readout and robustness studies of the 2024 paper (chapters 04 and 05 of the book).

The paper compares encoding models that differ in one part only: the features (a ladder of
increasingly robust networks, Fig. 4) or the feature-to-brain mapping (OLS, lasso, ridge, MLP,
CNN; Table 1 and Fig. 5). This module holds the steps those comparisons need beyond
:mod:`probelib.pipeline`:

- **Response units.** :func:`response_units` turns a :class:`~probelib.data.Dataset` into the
  columns an encoding model predicts: one ROI-mean per ROI (averaged over subjects, the paper's
  main target), or one ROI-mean per (subject, ROI) (the dots of Fig. 5B).
- **One multi-output model per (network, readout).** :func:`fit_units` fits a single readout to all
  units at once (for OLS / lasso / per-unit ridge this equals separate fits; the MLP / CNN share
  their hidden layer across units, as the paper's mapping ``g: R^(C x H x W) -> R^n`` does), so an
  FGSM probe of all units costs one forward pass per image plus one backward pass per unit.
  Fitted readouts and held-out predictions are cached on disk.
- **Probes cached with the full model identity.** :func:`probe_units` runs
  :func:`probelib.probes.fgsm` and caches it under a key that includes the encoder's smoothing
  settings (``n_samples``, noise seed) and the readout's options, so two chapters that probe the
  same spec with different Monte-Carlo draws never share a result.
- **The paper's lasso penalty choice.** :func:`select_lasso_alpha`: one penalty per network,
  chosen by cross-validated predictive accuracy on one subject's units (the paper used subject 2),
  then used for every subject. The paper's absolute grid is :data:`PAPER_LASSO_ALPHAS`; because
  feature scales differ by orders of magnitude across networks (trained vs untrained), the default
  grid :data:`RELATIVE_LASSO_ALPHAS` is in fractions of each unit's :func:`lasso_alpha_max`.
  Fixed-penalty fits (:func:`lasso_readout`) and the CV both use the exact LARS path of
  :mod:`probelib.readouts` (the same solution as scikit-learn's coordinate descent, much faster
  with thousands of features).
- **Ladders.** :func:`ladder_position` places a spec on a robustness ladder (smoothing sigma, or
  the adversarial-training budget of the paper's ResNet-50s); :func:`probelib.data.probe_images`
  picks the held-out images to probe, stratified by category.
- **A classical robustness check.** :func:`classification_robustness`: FGSM on the ImageNet
  classifier of an encoder (plain or smoothed): does the top-1 label survive?

Units everywhere: images (N, 3, H, W) with pixels in [0, 1]; responses in the units of the
dataset (the demo and NSD betas are z-scored per voxel, ROI means average those); L-inf budgets
``eps`` are per-pixel changes in [0, 1] units (``3/255`` = three grey levels).
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import probes
from .cache import array_digest, cached_call, module_key
from .data.dataset import Dataset
from .metrics import pearson_r, response_sd
from .model import EncodingModel, extract_features
from .pipeline import cached_attack, dataset_digest
from .readouts import LinearReadout, fit_readout, lasso_cv_predictions, lasso_lars
from .readouts import lasso_alpha_max
from .zoo import build_encoder, parse_model, robust_checkpoint

__all__ = [
    "PAPER_LASSO_ALPHAS",
    "RELATIVE_LASSO_ALPHAS",
    "lasso_readout",
    "Units",
    "response_units",
    "UnitFit",
    "fit_units",
    "probe_units",
    "sensitivity_frame",
    "AlphaSelection",
    "select_lasso_alpha",
    "ClassificationRobustness",
    "classification_robustness",
    "ladder_position",
]

#: The lasso penalties the paper tried (Methods 2.2), the best one chosen on subject 2.
PAPER_LASSO_ALPHAS: tuple[float, ...] = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1)
#: Scale-free candidates: fractions of each unit's ``alpha_max`` (see :func:`lasso_alpha_max`).
RELATIVE_LASSO_ALPHAS: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)


# ----------------------------------------------------------------------------------------------
# Response units
# ----------------------------------------------------------------------------------------------
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




# ----------------------------------------------------------------------------------------------
# Fixed lasso penalties, absolute or scale-free (solver: probelib.readouts, exact LARS path)
# ----------------------------------------------------------------------------------------------
def lasso_readout(features, responses, alpha, relative: bool = True) -> LinearReadout:
    """Fit a lasso readout (features (N, D) -> responses (N, U)) with a fixed penalty, by LARS.

    ``alpha``: a float or (U,) penalties in scikit-learn's scaling
    (``1/(2N) ||y - Xw - b||^2 + alpha ||w||_1``); ``relative=True`` multiplies it by each unit's
    :func:`~probelib.readouts.lasso_alpha_max`. Returns a :class:`probelib.readouts.LinearReadout`
    (kind ``"lasso"``), the same solution as ``sklearn.linear_model.Lasso`` (intercept unpenalised),
    computed by :func:`probelib.readouts.lasso_lars`.
    """
    X = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    Y = np.asarray(responses, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, U) must share N; got {X.shape}, {Y.shape}")
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (Y.shape[1],)).copy()
    if np.any(a <= 0):
        raise ValueError(f"lasso penalties must be > 0; got {alpha}")
    if relative:
        a = a * lasso_alpha_max(X, Y)
    weight, bias = lasso_lars(X, Y, a)
    hp = {"kind": "lasso", "n_train": int(X.shape[0]), "n_features": int(X.shape[1]), "alpha": a,
          "relative_alpha": float(np.asarray(alpha).ravel()[0]) if relative else None,
          "solver": "lars", "nonzero_fraction": float((weight != 0).mean()),
          "nonzero_per_unit": (weight != 0).sum(1)}
    return LinearReadout(weight, bias, "lasso", hp)


# ----------------------------------------------------------------------------------------------
# Fitting one multi-output model per (network, readout)
# ----------------------------------------------------------------------------------------------
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

    def summary(self) -> pd.DataFrame:
        """One row per unit: model, readout, unit, label, roi, subject, n_voxels, held-out r."""
        t = self.units.table()
        t.insert(0, "readout", self.kind)
        t.insert(0, "model", self.spec)
        t["r"] = self.predictivity
        return t


def _fit_impl(key: dict, features_train, responses_train, test_features, kind, seed, options):
    del key  # part of the cache key only
    if kind == "lasso" and "alpha" in options:  # fixed penalty (chosen beforehand): exact LARS fit
        extra = set(options) - {"alpha", "relative"}
        if extra:
            raise ValueError(f"unknown options for a fixed-penalty lasso: {sorted(extra)}")
        readout = lasso_readout(features_train, responses_train, options["alpha"],
                                relative=bool(options.get("relative", True)))
    else:
        readout = fit_readout(kind, features_train, responses_train, seed=seed, **options)
    with torch.no_grad():
        pred = readout(torch.as_tensor(test_features, dtype=torch.float32)).numpy()
    return readout, pred


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
    :func:`lasso_alpha_max`) fits a fixed penalty exactly by LARS instead (:func:`lasso_readout`),
    e.g. the one chosen by :func:`select_lasso_alpha`. ``encoder``: an already built encoder of
    ``spec`` (spatial for ``kind="cnn"``) to reuse. Features are cached by
    :func:`probelib.model.extract_features`; the fitted readout and its held-out predictions are
    cached on disk (``cache=True``), keyed by the dataset content, the units, the encoder (including
    its smoothing draws), the readout kind, its options and the seed.
    """
    parse_model(spec)  # a clear error for a bad spec before anything is loaded
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


def probe_units(fit: UnitFit, image_index, eps, direction: str = "decrease", batch_size: int = 16,
                cache: bool = True) -> probes.ProbeResult:
    """FGSM (L-inf) probes of every unit of ``fit`` at the images ``image_index`` (indices into the
    fit's dataset), for the budget ``eps`` or a grid of budgets (one gradient serves the grid).

    ``direction``: ``"decrease"`` (paper 1, ``s = r(x) - r(x + d)``), ``"increase"`` or ``"abs"``.
    Returns a :class:`~probelib.probes.ProbeResult`, ``sensitivity`` (n_eps, N, U) in response
    units; perturbations are not kept. Cached on disk under the fit's full key (``cache=True``).
    """
    index = np.asarray(image_index, dtype=int).reshape(-1)
    eps_list = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64))]
    key = dict(fit.key, images=index.tolist()) if cache else None
    return cached_attack(fit.model, fit.dataset.stimuli[index], "fgsm", key=key, eps=eps_list,
                         direction=direction, batch_size=int(batch_size), store_perturbations=False)


def sensitivity_frame(fit: UnitFit, result: probes.ProbeResult, image_index,
                      sd_index=None) -> pd.DataFrame:
    """Long table of a :func:`probe_units` result: one row per (eps, image, unit) with columns
    model, readout, sigma (smoothing s.d. of the spec), unit, label, roi, subject, eps, image,
    sensitivity (response units), relative (sensitivity / s.d. of the unit's observed responses
    over the images ``sd_index``, default the test split) and r (the unit's held-out predictivity).
    """
    s = np.asarray(result.sensitivity)
    index = np.asarray(image_index).reshape(-1)
    n_eps, n_img, n_units = s.shape
    if n_img != len(index) or n_units != fit.units.n_units:
        raise ValueError(f"result of shape {s.shape} does not match {len(index)} images and "
                         f"{fit.units.n_units} units")
    sd = response_sd(fit.units.responses[np.asarray(fit.test_index if sd_index is None else sd_index)])
    labels = np.asarray(fit.units.labels)
    e_i, i_i, u_i = (a.ravel() for a in np.meshgrid(np.arange(n_eps), np.arange(n_img),
                                                    np.arange(n_units), indexing="ij"))
    return pd.DataFrame({
        "model": fit.spec, "readout": fit.kind, "sigma": parse_model(fit.spec)[2],
        "unit": u_i, "label": labels[u_i], "roi": fit.units.roi[u_i], "subject": fit.units.subject[u_i],
        "eps": np.asarray(result.eps, dtype=np.float64)[e_i], "image": index[i_i],
        "sensitivity": s.ravel(), "relative": s.ravel() / sd[u_i], "r": fit.predictivity[u_i]})


# ----------------------------------------------------------------------------------------------
# The paper's lasso penalty choice: one alpha per network, by predictive accuracy on one subject
# ----------------------------------------------------------------------------------------------
@dataclass
class AlphaSelection:
    """Cross-validated choice of a lasso penalty.

    alpha : the chosen penalty (largest mean CV Pearson r); a fraction of each unit's
    :func:`lasso_alpha_max` if ``relative``, else an absolute penalty.
    alphas : (A,) candidates; scores : (A,) mean over units of the CV Pearson r (a constant CV
    prediction counts as r = 0); scores_per_unit : (A, U); nonzero : (A,) mean number of non-zero
    weights per unit over folds; at_edge : the choice is the smallest or largest candidate.
    """

    alpha: float
    alphas: np.ndarray
    scores: np.ndarray
    scores_per_unit: np.ndarray
    nonzero: np.ndarray
    at_edge: bool
    relative: bool = True

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"alpha": self.alphas, "cv_r": self.scores, "nonzero_weights": self.nonzero,
                             "chosen": self.alphas == self.alpha})


def _cv_lasso_scores(key, X, Y, alphas, relative, cv, seed):
    """(A, U) cross-validated Pearson r per penalty and unit, and (A,) mean non-zero weights."""
    del key  # part of the cache key only
    from sklearn.model_selection import KFold

    folds = KFold(cv, shuffle=True, random_state=seed).split(np.asarray(X))
    pred, nonzero = lasso_cv_predictions(X, Y, alphas, folds, relative=relative)
    scores = np.zeros((len(alphas), Y.shape[1]))
    for a in range(len(alphas)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            r = np.atleast_1d(np.asarray(pearson_r(pred[a], Y), dtype=np.float64))
        scores[a] = np.nan_to_num(r, nan=0.0)
    return scores, nonzero.mean(1)


def select_lasso_alpha(features, responses, alphas: Sequence[float] | None = None, relative: bool = True,
                       cv: int = 5, seed: int = 0, cache: bool = True) -> AlphaSelection:
    """Choose one lasso penalty for a set of units by K-fold cross-validated predictive accuracy.

    features : (N, D) (or (N, C, h, w), flattened) training features; responses : (N, U) training
    responses of the units of one subject (the paper: subject 2), N = training images only.
    alphas : candidates; ``relative=True`` (default; grid :data:`RELATIVE_LASSO_ALPHAS`) reads them
    as fractions of each unit's :func:`lasso_alpha_max` (computed within each training fold), so
    that one grid suits networks whose features differ in scale; ``relative=False`` takes them as
    absolute penalties (the paper's grid :data:`PAPER_LASSO_ALPHAS` is the default then).
    For each fold and unit the exact lasso path is computed (LARS); the held-out predictions of all
    folds are pooled and correlated with the observed responses (Pearson r per unit, averaged over
    units). Returns an :class:`AlphaSelection`; then fit every subject with
    ``fit_units(..., kind="lasso", alpha=sel.alpha, relative=sel.relative)``, as the paper did.
    """
    if alphas is None:
        alphas = RELATIVE_LASSO_ALPHAS if relative else PAPER_LASSO_ALPHAS
    alphas = np.asarray(list(alphas), dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or np.any(alphas <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive penalties; got {alphas}")
    Y = np.asarray(responses, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    X = np.asarray(features)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"features (N, ...) and responses (N, U) must share N; got {X.shape}, {Y.shape}")
    if not 2 <= cv <= X.shape[0]:
        raise ValueError(f"cv must be in [2, N={X.shape[0]}]; got {cv}")
    key = {"X": array_digest(np.asarray(X, dtype=np.float32)), "Y": array_digest(Y), "alphas": alphas.tolist(),
           "relative": bool(relative), "cv": int(cv), "seed": int(seed)}
    per_unit, nonzero = cached_call(_cv_lasso_scores, key if cache else None, X, Y, alphas, bool(relative),
                                    int(cv), int(seed), ignore=("X", "Y"),
                                    check=lambda r: (isinstance(r, tuple) and len(r) == 2
                                                     and np.shape(r[0])[0] == len(alphas)))
    scores = per_unit.mean(1)
    best = int(np.argmax(scores))
    at_edge = len(alphas) > 1 and alphas[best] in (alphas.min(), alphas.max())
    return AlphaSelection(float(alphas[best]), alphas, scores, per_unit, nonzero, bool(at_edge), bool(relative))


# ----------------------------------------------------------------------------------------------
# Where a model sits on a robustness ladder
# ----------------------------------------------------------------------------------------------


def ladder_position(spec: str) -> tuple[str, float, str]:
    """Where a model spec sits on a robustness ladder: ``(family, level, level_name)``.

    Smoothed specs (:mod:`probelib.zoo`, ``"mobilenet_v2+smooth0.25"``) -> ``("mobilenet_v2", 0.25,
    "smoothing sigma")``, the plain network at level 0; the adversarially trained ResNet-50s of the
    paper (``"resnet50_l2_eps3"``) -> ``("resnet50_l2", 3.0, "adversarial training eps (L2)")``.
    """
    name, untrained, sigma = parse_model(spec)
    robust = robust_checkpoint(name)
    if robust:
        if sigma > 0:
            raise ValueError(f"{spec!r} is both adversarially trained and smoothed: not on one ladder")
        norm = {"l2": "L2", "linf": "L-inf"}[robust[0]]
        return f"resnet50_{robust[0]}", robust[1], f"adversarial training eps ({norm})"
    return name + (":untrained" if untrained else ""), float(sigma), "smoothing sigma"


# ----------------------------------------------------------------------------------------------
# Classical robustness: does the ImageNet top-1 label survive an FGSM attack?
# ----------------------------------------------------------------------------------------------
@dataclass
class ClassificationRobustness:
    """FGSM (L-inf) on an ImageNet classifier.

    eps : (E,) budgets; clean_label : (N,) top-1 class of the clean images (or the given labels);
    clean_prob : (N,) softmax probability of that class; adv_label : (E, N) top-1 class of the
    attacked images; label_prob : (E, N) probability of the clean label after the attack.
    """

    eps: np.ndarray
    clean_label: np.ndarray
    clean_prob: np.ndarray
    adv_label: np.ndarray
    label_prob: np.ndarray

    @property
    def survival(self) -> np.ndarray:
        """(E,) fraction of images whose top-1 label is unchanged by the attack."""
        return (self.adv_label == self.clean_label[None]).mean(1)


def _classification_impl(key, encoder, images, eps, labels, batch_size):
    del key
    x_all = torch.as_tensor(images)
    dev = next((t.device for t in list(encoder.parameters()) + list(encoder.buffers())), torch.device("cpu"))
    eps = [float(e) for e in eps]
    clean_label, clean_prob = [], []
    adv_label = [[] for _ in eps]
    label_prob = [[] for _ in eps]
    was_training = encoder.training
    encoder.eval()
    try:
        for b in range(0, len(x_all), batch_size):
            x = x_all[b:b + batch_size].to(dev).clone().requires_grad_(True)
            with torch.enable_grad():
                logits = encoder.classify(x)
                y = logits.argmax(1) if labels is None else torch.as_tensor(labels[b:b + batch_size], device=dev)
                loss = F.cross_entropy(logits, y, reduction="sum")
                grad = torch.autograd.grad(loss, x)[0]
            clean_label.append(y.cpu())
            clean_prob.append(logits.detach().softmax(1).gather(1, y[:, None])[:, 0].cpu())
            with torch.no_grad():
                for e, eps_e in enumerate(eps):
                    x_adv = (x.detach() + eps_e * grad.sign()).clamp(0.0, 1.0)
                    p = encoder.classify(x_adv).softmax(1)
                    adv_label[e].append(p.argmax(1).cpu())
                    label_prob[e].append(p.gather(1, y[:, None])[:, 0].cpu())
    finally:
        encoder.train(was_training)
    return ClassificationRobustness(
        eps=np.asarray(eps), clean_label=torch.cat(clean_label).numpy(),
        clean_prob=torch.cat(clean_prob).numpy().astype(np.float64),
        adv_label=np.stack([torch.cat(a).numpy() for a in adv_label]),
        label_prob=np.stack([torch.cat(a).numpy() for a in label_prob]).astype(np.float64))


def classification_robustness(encoder, images, eps, labels=None, batch_size: int = 8,
                              cache: bool = True) -> ClassificationRobustness:
    """FGSM on the ImageNet classifier of ``encoder`` (an :class:`~probelib.encoders.Encoder` or a
    smoothed one; its ``classify`` gives logits (N, 1000), averaged over the noise draws when
    smoothed): ``x_adv = clamp(x + eps * sign(grad CE(logits(x), y)), 0, 1)``.

    images : (N, 3, H, W) in [0, 1] (the networks' native 224 px or smaller); eps : budget or grid
    (per-pixel, e.g. ``3/255``); labels : (N,) reference classes (default: the encoder's own clean
    top-1 prediction, so the measure is the stability of its decision, no ground truth needed).
    Cached on disk by the encoder's identity (incl. smoothing draws), the images, eps and labels.
    """
    x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W); got {x.shape}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("images must have pixels in [0, 1]")
    if not hasattr(encoder, "classify"):
        raise ValueError("encoder has no ImageNet classifier (classify method)")
    eps_list = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64))]
    if any(e < 0 for e in eps_list):
        raise ValueError(f"eps must be >= 0; got {eps_list}")
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    key = {"encoder": module_key(encoder), "images": array_digest(x), "eps": eps_list,
           "labels": None if lab is None else lab.tolist()}
    return cached_call(_classification_impl, key if cache else None, encoder, x, eps_list, lab,
                       int(batch_size), ignore=("encoder", "images", "batch_size"),
                       check=lambda r: (isinstance(r, ClassificationRobustness)
                                        and len(r.clean_label) == len(x)))
