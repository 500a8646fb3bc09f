"""What :func:`probelib.score` computes: the encoders, the readouts per ROI, the probes with their
controls, the transfer and the subspaces, through the shared cached calls of
:mod:`probelib.probes.cached`."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import probes
from ..cache import array_digest, cached_call
from ..data import Dataset, load_dataset, probe_images
from ..encoders import check_encoder, load_encoder
from ..geometry import subspace_similarity
from ..metrics import pearson_r, response_sd
from ..probes.cached import (cached_block_subspaces, cached_control_of, cached_fgsm, cached_pgd,
                             cached_transfer_with_control)
from ..probes.results import subset_eps
from ..fitting import dataset_digest, fit_and_predict
from ..model import observer_for_rois
from ..zoo import is_robust, short_name
from .report import (BATCH, DEFAULT_L2_BUDGETS_64PX, DEFAULT_LINF_BUDGETS, NORMS, OBSERVER, SCORE_VERSION,
                     ScoreReport, budget_label)


def default_budgets(norm: str = "linf", image_size: int = 64) -> tuple[float, ...]:
    """Budgets of :func:`score`: L-inf 1, 2, 4 / 255; L2 0.5, 1, 2 at 64 px (scaled with the side)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if norm == "linf":
        return DEFAULT_LINF_BUDGETS
    return tuple(e * int(image_size) / 64 for e in DEFAULT_L2_BUDGETS_64PX)


def default_reference(dataset: str | Dataset = "demo") -> tuple[str, ...]:
    """The reference panel of :func:`score`: a standard and a robust model of the book's zoo.

    Demo: the first (standard) and last (most robust) rung of :func:`probelib.zoo.demo_ladder`;
    NSD: the first standard and the last robust model of :func:`probelib.zoo.model_panel` for the
    2025 paper. The names follow whatever the zoo provides.
    """
    from .. import zoo

    if isinstance(dataset, str) and dataset == "nsd":
        panel = list(zoo.model_panel("nsd", paper=2))
        standard = [m for m in panel if not is_robust(m) and ":untrained" not in m]
        robust = [m for m in panel if is_robust(m)]
        return tuple(dict.fromkeys(standard[:1] + robust[-1:]))
    ladder = list(zoo.demo_ladder())
    return tuple(dict.fromkeys([ladder[0], ladder[-1]]))


class _ROIModel(nn.Module):
    """One encoder and one readout per ROI: images -> the ROIs' units side by side."""

    def __init__(self, encoder: nn.Module, readouts: Sequence[nn.Module], n_outputs: Sequence[int],
                 name: str = "model"):
        super().__init__()
        self.encoder = encoder
        self.readouts = nn.ModuleList(readouts)
        self.widths = [int(n) for n in n_outputs]
        self.n_outputs = int(sum(self.widths))
        self.name = name
        self.training = False  # this container only: the encoder keeps its owner's mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(images)
        return torch.cat([r(feats) for r in self.readouts], dim=1)


def _zoo_spec(text: str) -> bool:
    from ..zoo import parse_model

    try:
        parse_model(text)
    except ValueError:
        return False
    return True


def _encoder_of(model, layer, weights, name, mean, std, seed, spatial, n_samples, device=None) -> nn.Module:
    """The encoder of ``model`` (see :func:`score`); ``name`` overrides its display name. A
    network built here lives on ``device``; one given by the caller stays where it is."""
    if isinstance(model, str) and "@" in model and layer is None and not _zoo_spec(model):
        # "<model>@<layer>" (a zoo spec such as "mobilenet_v2+adv16@2" keeps its training steps)
        model, layer = model.rsplit("@", 1)
    default = isinstance(weights, str) and weights == "default" and mean is None and std is None
    if isinstance(model, nn.Module) and hasattr(model, "layer") and hasattr(model, "name") \
            and layer in (None, getattr(model, "layer")) and default:
        return model  # an encoder (Encoder, SmoothedEncoder) used as it is
    if isinstance(model, str) and default and _zoo_spec(model):
        from ..zoo import build_encoder

        enc = build_encoder(model, device=device or "cpu", layer=layer, spatial=spatial, n_samples=n_samples,
                            seed=seed)
        if name:
            enc.name = name
        return enc
    return load_encoder(model, layer=layer, weights=weights, spatial=spatial, seed=seed, mean=mean, std=std,
                        display_name=name, device=None if isinstance(model, nn.Module) else device)


def _label(model, name: str | None) -> str:
    if name:
        return name
    if isinstance(model, str):
        return short_name(model)
    return str(getattr(model, "name", None) or type(model).__name__)


def _readout_key(readout) -> dict:
    if isinstance(readout, str):
        return {"kind": readout}
    import joblib
    from sklearn.base import clone

    return {"estimator": f"{type(readout).__module__}.{type(readout).__qualname__}",
            "params": joblib.hash(clone(readout))}


def _fit_readout(readout, X: np.ndarray, Y: np.ndarray, seed: int, device) -> nn.Module:
    from ..readouts import as_readout
    from ..readouts.estimator import _get_readout_class

    if isinstance(readout, str):
        options = {"device": str(device)} if readout in ("mlp", "cnn") and device is not None else {}
        return fit_and_predict(readout, X, Y, seed=seed, **options)[0]
    from sklearn.base import clone

    est = clone(readout).fit(X, Y)
    if isinstance(est, _get_readout_class()):
        return est.module_
    return as_readout(est)


def _key(cache: bool, **parts):
    return {"score_version": SCORE_VERSION, **parts} if cache else None


def _mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t confidence interval of the mean of ``values`` (one per image)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def _dataset_key(ds: Dataset) -> dict:
    """The dataset's content (:func:`probelib.fitting.dataset_digest`) and its noise ceilings."""
    return {"content": dataset_digest(ds),
            "noise_ceiling": [array_digest(np.asarray(ds.noise_ceiling.get(r, np.zeros(0))))
                              for r in sorted(ds.responses)]}


def _datasets(dataset, nsd_root, image_size: int, seed: int) -> tuple[Dataset, Dataset, str]:
    """(ROI-mean dataset, voxel dataset for the subspaces, description)."""
    if isinstance(dataset, Dataset):
        return dataset, dataset, dataset.name or "user dataset"
    if dataset == "demo":
        ds = load_dataset("demo", image_size=image_size, seed=seed)
        dsv = load_dataset("demo", image_size=image_size, seed=seed, average_subjects=False)
        return ds, dsv, ds.name
    if dataset == "nsd":
        if nsd_root is None:
            raise ValueError("dataset='nsd' needs nsd_root, the local copy of the NSD bucket")
        ds = load_dataset("nsd", nsd_root=nsd_root, image_size=image_size, seed=seed, progress=False)
        dsv = load_dataset("nsd", nsd_root=nsd_root, image_size=image_size, seed=seed, progress=False,
                           average_subjects=False)
        return ds, dsv, ds.name
    raise ValueError(f"dataset must be 'demo', 'nsd' (with nsd_root) or a probelib.data.Dataset; "
                     f"got {dataset!r}")


def _check_args(norm, budgets, image_size, n_images, steps, k, n_units, n_subspace_images, direction):
    from .._checks import check_choice, check_eps, check_positive_int

    check_choice(norm, NORMS, "norm")
    check_choice(direction, probes.DIRECTIONS, "direction")
    if budgets is None:
        eps = default_budgets(norm, image_size)
    else:
        eps = tuple(float(e) for e in check_eps(budgets, "budgets"))
    if any(e <= 0 for e in eps):
        raise ValueError(f"budgets must be > 0; got {list(eps)}")
    for value, name in ((image_size, "image_size"), (n_images, "n_images"), (steps, "steps"), (k, "k"),
                        (n_units, "n_units"), (n_subspace_images, "n_subspace_images")):
        check_positive_int(value, name, minimum=2 if name == "n_images" else 1)
    return tuple(sorted(eps))


def score(model, layer: str | None = None, *, dataset: str | Dataset = "demo",
          rois: Sequence[str] | None = None, readout="ridge", budgets: Sequence[float] | None = None,
          norm: str = "linf", reference: Sequence | None = None, transfer_to: Sequence[str] | None = None,
          device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
          **options) -> pd.DataFrame:
    """Score a network: predictivity, adversarial sensitivity with controls, transfer and
    perturbation-subspace similarity, one row per (model, ROI) (:func:`score_report` for the
    figures and the report; the options are documented there).

    Columns: ``model``, ``role`` (``"model"`` or ``"reference"``), ``roi``, ``layer``,
    ``weights``, ``n_units``; ``r`` (held-out Pearson r, mean over the ROI's units; a unit whose
    prediction is constant counts as r = 0),
    ``noise_ceiling``, ``r_over_nc``; for each probe ``fgsm``, ``pgd``, ``shuffled``, ``random``
    and budget label ``b`` (``"2/255"`` for L-inf, ``"0.5"`` for L2): ``"<probe>@<b>"`` (mean
    sensitivity in s.d. of the observed responses) with ``"_lo"`` / ``"_hi"`` (95 % CI over
    images); ``"transfer:<target>@<b>"`` and ``"transfer:<target>_control@<b>"`` (the target's
    change under the model's PGD probes, and under random noise of the same size), with CIs;
    ``"subspace:<reference>"`` (mean similarity of the top-k perturbation subspaces, with CIs),
    ``subspace_k``, ``subspace_chance`` (``k / D``).

    Example::

        import probelib
        table = probelib.score("timm:resnet18", layer="layer3", weights=None)
    """
    return score_report(model, layer, dataset=dataset, rois=rois, readout=readout, budgets=budgets,
                        norm=norm, reference=reference, transfer_to=transfer_to, device=device, seed=seed,
                        progress=progress, **options).table


def score_report(model, layer: str | None = None, *, dataset: str | Dataset = "demo",
                 rois: Sequence[str] | None = None, readout="ridge", budgets: Sequence[float] | None = None,
                 norm: str = "linf", reference: Sequence | None = None,
                 transfer_to: Sequence[str] | None = None,
                 device: str | torch.device | None = None, seed: int = 0, progress: bool = False,
                 weights="default", name: str | None = None, mean=None, std=None, image_size: int = 64,
                 n_images: int = 5, steps: int = 5, direction: str = "decrease", k: int = 3,
                 n_units: int = 8, n_subspace_images: int = 3, n_samples: int = 4,
                 transfer_budgets: Sequence[float] | str | None = None, observer: bool = True,
                 nsd_root=None, cache: bool = True) -> ScoreReport:
    """Everything :func:`score` computes, with the figures and the report (:class:`ScoreReport`).

    Parameters
    ----------
    model : a registry or zoo name (``"mobilenet_v2"``, ``"alexnet:untrained"``,
        ``"mobilenet_v2+smooth0.25"``), ``"torchvision:<builder>"``, ``"timm:<name>"``,
        ``"file.py:factory"``, an ``nn.Module`` (left unchanged: mode, ``requires_grad`` flags,
        device, no hook left) or an encoder (:func:`probelib.load_encoder`).
    layer : the layer whose features are read out (required for hub, file and module networks;
        a wrong one gets the list of valid layers).
    weights, mean, std : as in :func:`probelib.load_encoder` (``weights=None``: untrained).
    name : the model's label in the tables (default: the string, or the module's class name).
    dataset : ``"demo"`` (embedded), ``"nsd"`` (with ``nsd_root``) or a
        :class:`~probelib.data.Dataset`. On the demo and NSD the subspaces use the voxel-level
        responses of the same images; a given Dataset serves both.
    rois : ROIs (default all of the dataset's).
    readout : a readout kind (``"ridge"``, ``"ols"``, ``"lasso"``, ``"mlp"``; the ``"cnn"`` readout
        needs spatial features and is not offered here), a
        :class:`probelib.readouts.Readout`, or any unfitted scikit-learn linear regressor
        (cloned, fitted per ROI and wrapped with :func:`probelib.readouts.as_readout`).
    budgets : perturbation budgets (pixels in [0, 1]); default :func:`default_budgets`.
    norm : ``"linf"`` (FGSM = one gradient-sign step) or ``"l2"`` (FGSM = one normalised
        gradient step, i.e. PGD with one step of the budget's length).
    reference : the reference panel: zoo names, ``"<model>@<layer>"`` strings (any ``model`` above
        with its layer) and / or encoders; default :func:`default_reference`; ``[]`` for none.
    transfer_to : targets of the transfer of the model's PGD probes: ``"observer"`` (demo only)
        and/or reference names; default the observer on the demo, the reference panel otherwise.
    transfer_budgets : the budgets whose probes are transferred (each one of ``budgets``), or
        ``"all"``; default the largest budget.
    observer : on the demo, compare with the simulated observer (the ground truth): the default
        transfer target and a subspace reference. ``False`` leaves it out (faster).
    device : where every network runs (``"cuda"``); a module given by the caller is moved there
        for the call and back. ``None``: where each network lives (CPU for those built here).
    seed : seeds the demo data, the readout fits, the probe images, PGD and the controls.
    progress : show a progress bar.
    image_size : side in pixels of the images fed to the networks.
    n_images : held-out images probed (stratified by category on the demo: 5 = one per category).
    steps : PGD steps; direction : ``"decrease"`` (paper 1), ``"increase"`` or ``"abs"``.
    k, n_units, n_subspace_images : subspace dimension, voxels per ROI spanning the Jacobian
        (the most reliable), images at which it is taken (the first of the probed ones).
    n_samples : noise draws of smoothed zoo models (``+smooth<sigma>``).
    cache : cache every step on disk (keyed by content); ``False`` computes everything afresh.
    """
    budgets = _check_args(norm, budgets, image_size, n_images, steps, k, n_units, n_subspace_images, direction)
    if isinstance(readout, str):
        from ..readouts import KINDS

        if readout not in KINDS or readout == "cnn":
            valid = ", ".join(k_ for k_ in KINDS if k_ != "cnn")
            raise ValueError(f"unknown readout {readout!r}; valid: {valid}, a probelib.readouts.Readout or a "
                             "scikit-learn linear regressor")
    elif not (hasattr(readout, "fit") and hasattr(readout, "get_params")):
        raise ValueError(f"readout must be a kind, a Readout or a scikit-learn regressor; "
                         f"got {type(readout).__name__}")
    if not (isinstance(dataset, Dataset) or dataset in ("demo", "nsd")):
        raise ValueError(f"dataset must be 'demo', 'nsd' (with nsd_root) or a probelib.data.Dataset; "
                         f"got {dataset!r}")
    if isinstance(dataset, str) and dataset == "nsd" and nsd_root is None:
        raise ValueError("dataset='nsd' needs nsd_root, the local copy of the NSD bucket")
    # the network first: a network that does not fit fails before any data is loaded
    label = _label(model, name)
    enc = _encoder_of(model, layer, weights, name, mean, std, int(seed), False, int(n_samples))
    size = int(dataset.stimuli.shape[-1]) if isinstance(dataset, Dataset) else int(image_size)
    check_encoder(enc, size, device=device)
    ds, dsv, ds_name = _datasets(dataset, nsd_root, int(image_size), int(seed))
    rois = list(ds.rois if rois is None else ([rois] if isinstance(rois, str) else rois))
    missing = [r for r in rois if r not in ds.responses or r not in dsv.responses]
    if missing or not rois:
        raise ValueError(f"unknown ROI(s) {missing or rois}; this dataset has {ds.rois}")
    reference = list(default_reference(dataset) if reference is None else reference)
    refs: dict[str, nn.Module] = {}
    for item in reference:
        ref_label = _label(item, None)
        if ref_label == label or ref_label in refs:
            continue  # the model itself, or a duplicate
        refs[ref_label] = _encoder_of(item, None, "default", None, None, None, int(seed), False, int(n_samples),
                                 device)
    is_demo = isinstance(dataset, str) and dataset == "demo" and bool(observer)
    if transfer_to is None:
        transfer_to = [OBSERVER] if is_demo else list(refs)
    transfer_to = [transfer_to] if isinstance(transfer_to, str) else list(transfer_to)
    unknown = [t for t in transfer_to if (t != OBSERVER or not is_demo) and t not in refs and t != label]
    if unknown:
        raise ValueError(f"transfer_to names {unknown}, which are not in the reference panel {list(refs)} "
                         "(and 'observer' exists only for dataset='demo')")
    if transfer_budgets is None:
        transfer_budgets = [budgets[-1]]
    elif isinstance(transfer_budgets, str) and transfer_budgets == "all":
        transfer_budgets = list(budgets)
    else:
        wanted = [float(e) for e in np.atleast_1d(transfer_budgets)]
        bad = [e for e in wanted if not any(math.isclose(e, b, rel_tol=1e-9) for b in budgets)]
        if bad or not wanted:
            raise ValueError(f"transfer_budgets must be some of budgets {list(budgets)} (or 'all'); "
                             f"got {wanted}")
        transfer_budgets = [b for b in budgets if any(math.isclose(e, b, rel_tol=1e-9) for e in wanted)]
    settings = {
        "model": label, "layer": getattr(enc, "layer", layer), "weights": getattr(enc, "weights_source", ""),
        "dataset": ds_name, "rois": rois, "readout": _readout_key(readout), "budgets": list(budgets),
        "norm": norm, "steps": int(steps), "direction": direction, "n_images": int(n_images),
        "image_size": int(ds.stimuli.shape[-1]), "reference": list(refs), "transfer_to": transfer_to,
        "k": int(k), "n_units": int(n_units), "n_subspace_images": int(n_subspace_images),
        "n_samples": int(n_samples), "seed": int(seed), "observer": is_demo,
        "transfer_budgets": list(transfer_budgets)}
    from .. import __version__

    settings["probelib"] = __version__
    key = None
    if cache:
        key = {"score_version": SCORE_VERSION, "what": "report", "dataset": _dataset_key(ds),
               "voxels": _dataset_key(dsv) if dsv is not ds else "same",
               **{k_: v for k_, v in settings.items() if k_ not in ("weights", "dataset", "probelib")}}
    report = cached_call(_report_impl, key, enc, refs, ds, dsv, settings, readout, device, progress, cache,
                         ignore=("encoder", "refs", "ds", "dsv", "readout", "device", "progress", "cache"),
                         check=lambda r: isinstance(r, ScoreReport))
    # what describes the network without changing its results (not in the key): as of this call
    report.settings.update(weights=settings["weights"], dataset=ds_name, probelib=__version__)
    report.table.loc[report.table["role"] == "model", "weights"] = settings["weights"]
    return report


def _report_impl(key, encoder, refs, ds, dsv, settings, readout, device, progress, cache) -> ScoreReport:
    from .._torch import evaluating
    from tqdm import tqdm

    s = settings
    models = {s["model"]: encoder, **refs}
    roles = {m: ("model" if m == s["model"] else "reference") for m in models}
    with evaluating(encoder, device), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*chose an alpha at the edge of the grid.*")
        bar = tqdm(total=len(models) * 6 + 1, desc=f"score {s['model']}", disable=not progress, leave=False)
        try:
            return _compute(models, roles, ds, dsv, s, readout, device, cache, bar)
        finally:
            bar.close()


def _observer(ds: Dataset, rois, seed: int, device, voxel_units=None) -> nn.Module:
    """The demo's observer with the columns of ``ds`` for ``rois`` side by side
    (:func:`probelib.model.observer_for_rois`); with ``voxel_units`` (ROI -> positions among the
    ROI's voxels) those voxels of each ROI."""
    device = device if device is not None else "cpu"
    if voxel_units is None:
        return observer_for_rois(ds, rois, seed=seed, device=device)
    from ..data.demo import demo_observer

    obs = demo_observer(seed=seed, device=device)
    idx = np.concatenate([np.asarray(ds.voxels[r]["observer_index"])[voxel_units[r]] for r in rois])
    out = obs.restrict(idx).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _compute(models, roles, ds, dsv, s, readout, device, cache, bar) -> ScoreReport:
    from .._torch import model_device
    from ..model import extract_features

    def home(module):
        return model_device(module) or torch.device("cpu")

    rois, seed, norm = s["rois"], s["seed"], s["norm"]
    train, test = np.asarray(ds.split["train"]), np.asarray(ds.split["test"])
    index = probe_images(ds, s["n_images"], seed=seed)
    images = np.ascontiguousarray(ds.stimuli[index], dtype=np.float32)
    sub_images = images[: s["n_subspace_images"]]
    widths = [ds.responses[r].shape[1] for r in rois]
    starts = np.cumsum([0, *widths])
    sd = {r: response_sd(ds.responses[r]) for r in rois}
    budgets = list(s["budgets"])
    labels = [budget_label(e, norm) for e in budgets]
    fast = ({"eps": budgets, "direction": s["direction"], "store_perturbations": True} if norm == "linf" else
            None)
    pgd_kwargs = {"eps": budgets, "norm": norm, "steps": s["steps"], "direction": s["direction"],
                  "seed": seed, "store_perturbations": True}

    # the subspaces: the n_units most reliable voxels of each ROI (the same for every model)
    selected = {}
    for roi in rois:
        n_v = dsv.responses[roi].shape[1]
        ncv = np.asarray(dsv.noise_ceiling.get(roi, np.zeros(n_v)), dtype=np.float64).reshape(-1)
        selected[roi] = np.sort(np.argsort(-np.nan_to_num(ncv, nan=-1.0), kind="stable")[: s["n_units"]])
    sub_widths = [len(selected[r]) for r in rois]
    trv = np.asarray(dsv.split["train"])

    rows: dict[tuple[str, str], dict] = {}
    curves, stacked, voxel_models = [], {}, {}
    for m, enc in models.items():
        feats = extract_features(enc, ds.stimuli, device=device, progress=False, cache=cache)
        feats_v = feats if dsv.stimuli is ds.stimuli or np.array_equal(dsv.stimuli, ds.stimuli) else \
            extract_features(enc, dsv.stimuli, device=device, progress=False, cache=cache)
        readouts, voxel_readouts = [], []
        for roi in rois:
            Y = np.asarray(ds.responses[roi], dtype=np.float64)
            ro = _fit_readout(readout, feats[train], Y[train], seed, device)
            with torch.no_grad():
                pred = ro(torch.as_tensor(feats[test])).double().cpu().numpy()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # a constant prediction: r undefined
                r = np.atleast_1d(pearson_r(pred, Y[test]))
            r = np.where(np.isfinite(r), r, 0.0)  # ... and it carries no information: r = 0
            nc = np.asarray(ds.noise_ceiling.get(roi, np.full(len(r), np.nan)), dtype=np.float64).reshape(-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(nc > 0, r / nc, np.nan)
            rows[(m, roi)] = {
                "model": m, "role": roles[m], "roi": roi, "layer": getattr(enc, "layer", ""),
                "weights": getattr(enc, "weights_source", ""), "n_units": int(Y.shape[1]), "r": float(np.mean(r)),
                "noise_ceiling": float(np.nanmean(nc)) if np.isfinite(nc).any() else np.nan,
                "r_over_nc": float(np.nanmean(ratio)) if np.isfinite(ratio).any() else np.nan}
            readouts.append(ro)
            Yv = np.asarray(dsv.responses[roi], dtype=np.float64)[:, selected[roi]]
            voxel_readouts.append(_fit_readout(readout, feats_v[trv], Yv[trv], seed, device))
        stacked[m] = _ROIModel(enc, readouts, widths, name=f"{m}/{'+'.join(rois)}").to(home(enc))
        voxel_models[m] = _ROIModel(enc, voxel_readouts, sub_widths, name=f"{m} voxels").to(home(enc))
        bar.update(1)

    def add(m, roi, probe, sens_roi, positions=None):
        """sens_roi (n_eps, N, V_roi) response units at the budgets ``positions`` (default all)
        -> row cells and curve rows (s.d. units)."""
        per_image = (sens_roi / sd[roi][None, None, :]).mean(-1)  # (n_eps, N)
        for i, e in enumerate(range(len(budgets)) if positions is None else positions):
            lab = labels[e]
            mu, lo, hi = _mean_ci(per_image[i])
            rows[(m, roi)].update({f"{probe}@{lab}": mu, f"{probe}@{lab}_lo": lo, f"{probe}@{lab}_hi": hi})
            curves.append({"model": m, "role": roles[m], "roi": roi, "probe": probe, "eps": budgets[e],
                           "budget": lab, "mean": mu, "ci_low": lo, "ci_high": hi,
                           "n_images": int(np.isfinite(per_image[i]).sum())})

    def split(result_sens):
        return {roi: result_sens[:, :, starts[i]:starts[i + 1]] for i, roi in enumerate(rois)}

    # ------------------------------------------------------------------ probes and controls
    pgd_of = {}
    for m, model in stacked.items():
        if fast is not None:
            one = cached_fgsm(model, images, key=_key(cache), device=device, batch_size=BATCH, **fast)
            made = {"probe": "fgsm", "kwargs": fast}
        else:  # L2: the fast gradient method is PGD with one step of the budget's length
            kwargs = {**pgd_kwargs, "steps": 1}
            one = cached_pgd(model, images, key=_key(cache), device=device, batch_size=BATCH, **kwargs)
            made = {"probe": "pgd", "kwargs": kwargs}
        bar.update(1)
        multi = cached_pgd(model, images, key=_key(cache), device=device, batch_size=BATCH, **pgd_kwargs)
        pgd_of[m] = multi
        bar.update(1)
        controls = {c: cached_control_of(model, images, one, c, key=_key(cache, **made), seed=seed,
                                         device=device, batch_size=BATCH)
                    for c in ("shuffled", "random")}
        bar.update(1)
        for probe, res in (("fgsm", one), ("pgd", multi), *controls.items()):
            for roi, part in split(res.sensitivity).items():
                add(m, roi, probe, part)

    # ------------------------------------------------------------------ transfer
    observer = None
    if OBSERVER in s["transfer_to"]:
        observer = _observer(ds, rois, seed, device)
    bar.update(1)
    targets = {t: (observer if t == OBSERVER else stacked[t]) for t in s["transfer_to"]}
    transfer_at = [budgets.index(e) for e in s["transfer_budgets"]]
    for m, model in stacked.items():
        for t, target in targets.items():
            if t == m:
                continue
            moved, noise = cached_transfer_with_control(
                model, subset_eps(pgd_of[m], [budgets[i] for i in transfer_at]), images, target,
                key=_key(cache, probe="pgd", kwargs=pgd_kwargs, positions=transfer_at), seed=seed,
                device=device, batch_size=BATCH)
            for roi, part in split(moved).items():
                add(m, roi, f"transfer:{t}", part, transfer_at)
            for roi, part in split(noise).items():
                add(m, roi, f"transfer:{t}_control", part, transfer_at)
        bar.update(1)

    # ------------------------------------------------------------------ subspaces
    sub_refs = list(models) + ([OBSERVER] if s["observer"] else [])
    dim = int(np.prod(images.shape[1:]))
    bases = {m: cached_block_subspaces(vm, sub_images, sub_widths, s["k"], key=_key(cache), device=device)
             for m, vm in voxel_models.items()}
    if OBSERVER in sub_refs:
        obs_v = _observer(dsv, rois, seed, device, voxel_units=selected)
        bases[OBSERVER] = cached_block_subspaces(obs_v, sub_images, sub_widths, s["k"], key=_key(cache),
                                                 device=device)
    subs_rows = []
    for r_i, roi in enumerate(rois):
        k_roi = min(s["k"], sub_widths[r_i])
        for m in models:
            for ref in sub_refs:
                sims = [subspace_similarity(a[r_i], b[r_i]) for a, b in zip(bases[m], bases[ref])]
                mu, lo, hi = _mean_ci(np.asarray(sims))
                rows[(m, roi)].update({f"subspace:{ref}": mu, f"subspace:{ref}_lo": lo,
                                       f"subspace:{ref}_hi": hi})
                subs_rows.append({"model": m, "role": roles[m], "roi": roi, "reference": ref, "mean": mu,
                                  "ci_low": lo, "ci_high": hi, "chance": k_roi / dim, "k": k_roi,
                                  "n_images": len(sims)})
            rows[(m, roi)].update({"subspace_k": k_roi, "subspace_chance": k_roi / dim})
    bar.update(len(models))

    table = pd.DataFrame([rows[(m, roi)] for m in models for roi in rois])
    return ScoreReport(table=table, curves=pd.DataFrame(curves), subspaces=pd.DataFrame(subs_rows),
                       settings={**s, "images": index.tolist()})
