"""Long tables and summaries of probe results, for plotting and for the chapters' printed numbers.

- :func:`sensitivity_frame`: a sweep of a panel (:func:`probelib.probes.cached.sweep_panel`), with
  sensitivities relative to the spread of the observed responses;
  :func:`unit_sensitivity_frame`: the probes of a :class:`~probelib.fitting.UnitFit`;
  :func:`sensitivity_table`: results of :func:`probelib.probes.cached.probe_panel`.
- :func:`model_groups` and :func:`group_means`: means of model-by-model matrices within and
  between groups (standard, robust, untrained).
- :func:`transfer_table`, :func:`rank_candidates`, :func:`winners`: comparing candidate models
  with a reference.

Relative sensitivities divide by :func:`probelib.metrics.response_sd` (s.d. across images of the
observed responses of the same unit, ``ddof=1``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ._checks import as_float32_array
from .cache import cached_call
from .data.dataset import Dataset
from .fitting import UnitFit
from .metrics import response_sd
from .probes import ProbeResult
from .probes.cached import transfer_with_control
from .zoo import parse_model, split_network

__all__ = ["sensitivity_frame", "unit_sensitivity_frame", "sensitivity_table", "model_groups",
           "group_means", "transfer_table", "rank_candidates", "winners", "readout_comparison_text"]

def sensitivity_frame(sweep: Mapping[tuple[str, str], Mapping[str, ProbeResult]],
                      ds: Dataset) -> pd.DataFrame:
    """Long table of a :func:`sweep_panel` result.

    Columns: ``model``, ``roi``, ``probe`` (``"targeted"`` or a control), ``eps`` (budget,
    pixel units in [0, 1]), ``image`` (position in the probed set), ``unit`` (output index),
    ``sensitivity`` (response units) and ``relative`` (sensitivity / :func:`~probelib.metrics.response_sd` of the
    unit, i.e. in s.d. of the observed responses across images).
    """
    rows = []
    for (spec, roi), parts in sweep.items():
        sd = response_sd(ds.responses[roi])
        for probe, res in parts.items():
            s = res.sensitivity
            n_eps, n, u = s.shape
            units = np.asarray(res.units)
            rel = s / sd[units][None, None, :]
            rows.append(pd.DataFrame({
                "model": spec, "roi": roi, "probe": probe,
                "eps": np.repeat(res.eps, n * u),
                "image": np.tile(np.repeat(np.arange(n), u), n_eps),
                "unit": np.tile(units, n_eps * n),
                "sensitivity": s.ravel(), "relative": rel.ravel()}))
    return pd.concat(rows, ignore_index=True)


def unit_sensitivity_frame(fit: UnitFit, result: ProbeResult, image_index,
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
        "model": fit.spec, "readout": fit.kind, "sigma": 0.0 if split_network(fit.spec) else parse_model(fit.spec)[2],
        "unit": u_i, "label": labels[u_i], "roi": fit.units.roi[u_i], "subject": fit.units.subject[u_i],
        "eps": np.asarray(result.eps, dtype=np.float64)[e_i], "image": index[i_i],
        "sensitivity": s.ravel(), "relative": s.ravel() / sd[u_i], "r": fit.predictivity[u_i]})


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


def model_groups(specs: Sequence[str]) -> dict[str, list[str]]:
    """Split model specs into ``"standard"``, ``"robust"`` and ``"untrained"`` (empty groups dropped).

    ``robust``: randomized-smoothing specs (``+smooth<sigma>`` with sigma > 0, the demo's stand-in)
    and adversarially trained networks (``..._l2_eps<e>`` / ``..._linf_eps<e>`` with e > 0);
    ``untrained``: ``:untrained`` specs; everything else is ``standard``.
    """
    from .zoo import is_robust, parse_spec

    out: dict[str, list[str]] = {"standard": [], "robust": [], "untrained": []}
    for spec in specs:
        if parse_spec(spec).untrained:
            out["untrained"].append(spec)
        elif is_robust(spec):
            out["robust"].append(spec)
        else:
            out["standard"].append(spec)
    return {g: v for g, v in out.items() if v}


def group_means(values, names: Sequence[str], groups: Mapping[str, Sequence[str]],
                symmetric: bool = True, include_diagonal: bool = False) -> pd.DataFrame:
    """Mean of a model-by-model matrix within and between groups of models.

    values : (M, M) matrix, or (N, M, M) one matrix per image (then the block means are taken
        per image and summarised by their mean and SEM over images).
    names : the M model names, in matrix order. groups : label -> names of that group.
    symmetric : True -> one row per unordered pair of groups; False (e.g. a transfer matrix,
        rows = source, columns = target) -> one row per ordered pair (from, to).
    include_diagonal : keep the entries ``[i, i]`` (a model with itself); default excluded.

    Returns a DataFrame with columns ``from``, ``to``, ``mean``, ``sem`` (NaN for a single
    matrix), ``n_pairs`` (model pairs averaged); pairs of groups without any pair are skipped.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    names = list(names)
    if a.ndim != 3 or a.shape[1:] != (len(names), len(names)):
        raise ValueError(f"values must be (M, M) or (N, M, M) with M = {len(names)}; got {np.shape(values)}")
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for g in groups.values() for n in g if n not in index]
    if unknown:
        raise ValueError(f"groups name models not in names: {unknown}")
    labels = list(groups)
    rows = []
    for ia, ga in enumerate(labels):
        for ib, gb in enumerate(labels):
            if symmetric and ib < ia:
                continue
            pairs = [(index[p], index[q]) for p in groups[ga] for q in groups[gb]
                     if include_diagonal or p != q]
            if symmetric and ga == gb:
                pairs = [(i, j) for i, j in pairs if i <= j]
            if not pairs:
                continue
            ii, jj = np.array(pairs).T
            per_image = a[:, ii, jj].mean(1)
            sem = per_image.std(ddof=1) / np.sqrt(len(per_image)) if len(per_image) > 1 else np.nan
            rows.append({"from": ga, "to": gb, "mean": float(per_image.mean()), "sem": float(sem),
                         "n_pairs": len(pairs)})
    return pd.DataFrame(rows, columns=["from", "to", "mean", "sem", "n_pairs"])


def _transfer_rows(key: dict, probes: Mapping[str, ProbeResult], images: np.ndarray,
                   targets: Mapping[str, nn.Module], scale: float, eps_index: int, control_seed: int,
                   device) -> list[dict]:
    del key  # cache key only (with the probes and images, which joblib hashes)
    x = torch.from_numpy(images)
    rows = []
    for attack, probe in probes.items():
        for name, model in targets.items():
            moved, ctrl = transfer_with_control(probe, x, model, seed=control_seed, device=device)
            change = float(np.mean(moved.sensitivity[eps_index])) / scale
            control = float(np.mean(ctrl.sensitivity[eps_index])) / scale
            rows.append({"attack": attack, "target": name, "change": change, "control": control,
                         "gain": change / control if control > 0 else np.nan})
    return rows


def transfer_table(probes: Mapping[str, ProbeResult], images: torch.Tensor,
                   targets: Mapping[str, nn.Module], scale: float = 1.0, eps_index: int = 0,
                   control_seed: int = 0, device=None, key: Mapping | None = None) -> pd.DataFrame:
    """What probes made on a source model do to target models, next to random controls.

    probes : attack name -> :class:`~probelib.probes.ProbeResult` made on the source (kept
        perturbations, same images and units for every attack).
    images : (N, 3, H, W) the images the probes were made for.
    targets : target name -> model whose units correspond to the probes' units (include the
        source itself to get its white-box effect).
    scale : sensitivities are divided by this (e.g. the s.d. of the observed responses).
    eps_index : which budget of the probes' grid to use.
    key : a JSON-able description of the targets; with it the table is cached on disk, keyed
        by ``key``, the probes' content (perturbations included), the images and the settings.

    Returns one row per (attack, target): ``change`` = mean sensitivity of the target to the
    probes (definition of the probes' ``direction``, divided by ``scale``), ``control`` = the
    same for a random perturbation of the same size (:func:`probelib.probes.random_control`),
    and ``gain`` = change / control (1 = no better than random noise).
    """
    if not probes or not targets:
        raise ValueError("need at least one probe and one target")
    if not scale > 0:
        raise ValueError(f"scale must be > 0; got {scale!r}")
    x = as_float32_array(images)
    full = None if key is None else {"key": dict(key), "targets": list(targets)}
    return pd.DataFrame(cached_call(_transfer_rows, full, dict(probes), x, dict(targets), float(scale),
                                    int(eps_index), int(control_seed), device,
                                    ignore=("targets", "device"),
                                    check=lambda rows: (isinstance(rows, list)
                                                        and all(isinstance(r, dict) for r in rows))))


def rank_candidates(table: pd.DataFrame, criteria: Mapping[str, bool]) -> pd.DataFrame:
    """Add a rank column ``rank_<criterion>`` (1 = best) for every column in ``criteria``.

    table : one row per candidate model. criteria : column -> True if higher is better.
    Ties share the best rank; NaN ranks last. Returns a copy.
    """
    out = table.copy()
    for col, higher in criteria.items():
        if col not in out:
            raise ValueError(f"no column {col!r} in the table; columns: {list(out.columns)}")
        out[f"rank_{col}"] = out[col].rank(ascending=not higher, method="min",
                                           na_option="bottom").astype(int)
    return out


def winners(table: pd.DataFrame, criteria: Mapping[str, bool], name_column: str = "model") -> dict[str, str]:
    """The best candidate (value of ``name_column``) under each criterion (see :func:`rank_candidates`)."""
    out = {}
    for col, higher in criteria.items():
        values = table[col]
        if values.isna().all():
            out[col] = "n/a"
            continue
        best = values.idxmax() if higher else values.idxmin()
        out[col] = str(table.loc[best, name_column])
    return out


#: Table 1 of the 2024 paper (sensitivity, NSD): OLS and L1 (lasso) readouts of VGG16 and ResNet50.
PAPER1_TABLE1_OLS_L1 = {"VGG16": (1.453, 0.891), "ResNet50": (1.782, 0.821)}


def readout_comparison_text(summary: pd.DataFrame, models: Sequence[str], names: Mapping[str, str]) -> str:
    """One line per network of a readout comparison: the readouts with the lowest and highest
    relative sensitivity, the range of predictivity and, with OLS and lasso, their sensitivity
    ratio next to the paper's.

    summary : one row per (model, readout) with columns ``model``, ``readout``, ``rel_mean``
        (mean relative sensitivity) and ``r`` (mean held-out Pearson r); names : readout -> label.
    """
    (vgg_ols, vgg_l1), (res_ols, res_l1) = PAPER1_TABLE1_OLS_L1["VGG16"], PAPER1_TABLE1_OLS_L1["ResNet50"]
    lines = []
    for spec in models:
        rows = summary[summary.model == spec].set_index("readout")
        best = rows.rel_mean.idxmin()
        worst = rows.rel_mean.idxmax()
        line = (f"{spec}: lowest sensitivity with {names[best]} ({rows.rel_mean[best]:.2f}), highest with "
                f"{names[worst]} ({rows.rel_mean[worst]:.2f}) relative units; predictivity ranges "
                f"{rows.r.min():.2f}-{rows.r.max():.2f}.")
        if "ols" in rows.index and "lasso" in rows.index:
            ratio = rows.rel_mean["lasso"] / rows.rel_mean["ols"]
            line += (f" L1 / OLS sensitivity ratio: {ratio:.2f} ("
                     + ("the sparse readout is less sensitive" if ratio < 1 else "the sparse readout is MORE sensitive")
                     + f"; the paper: {vgg_l1 / vgg_ols:.2f} for VGG16, {res_l1 / res_ols:.2f} for ResNet50), at a "
                     + f"predictivity change of {rows.r['lasso'] - rows.r['ols']:+.3f}.")
        lines.append(line)
    return "\n".join(lines)

