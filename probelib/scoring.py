"""Score any network the papers' way: one call from a model to a table.

``probelib.score(model, layer=...)`` answers, for one network and each ROI (FFA, PPA, EBA,
VWFA), the questions of the book:

- **predictivity**: held-out Pearson r of a readout fitted on the training images, and r divided
  by the noise ceiling;
- **adversarial sensitivity**: how far a small targeted perturbation moves the prediction, for
  FGSM and PGD probes at each budget, next to the same perturbation with its pixels shuffled and
  to random noise of the same size (the controls), in s.d. of the observed responses, with a 95 %
  confidence interval over images;
- **transfer**: what the model's PGD probes do to a reference (the simulated observer, the
  "brain", on the demo; the reference models on NSD), next to random noise of the same size;
- **local coding axes**: the similarity of the model's top-k perturbation subspace (Jacobian of
  the ROI's most reliable voxels) to those of a reference panel (by default the demo's standard
  and most robust models, and the observer) at the same images.

:func:`score` returns a tidy ``pandas.DataFrame``, one row per (model, ROI); the reference models
get rows too (``role == "reference"``) so that every number has its comparison next to it.
:func:`score_report` returns a :class:`ScoreReport` that also holds the long tables behind the
figures and writes the CSV / Markdown tables, the figures and a one-page HTML report
(:meth:`ScoreReport.save`, what ``probelib score`` writes).

Everything is cached on disk by content (the network's code, settings and weights, the images
and every argument; :mod:`probelib.cache`): a second call with the same arguments reads the
whole report back; another network shares only the reference panel's results.

"""
from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import probes
from .cache import array_digest, cached_call
from .data import Dataset, load_dataset, probe_images
from .encoders import check_encoder, load_encoder
from .geometry import jacobian, subspace_similarity
from .metrics import pearson_r, response_sd

__all__ = ["score", "score_report", "ScoreReport", "default_reference", "default_budgets",
           "budget_label", "SCORE_VERSION"]

#: Part of every cache key of this module; raise it when a result changes for the same arguments.
SCORE_VERSION = 1
NORMS = ("linf", "l2")
DEFAULT_LINF_BUDGETS = (1 / 255, 2 / 255, 4 / 255)
#: L2 budgets for 64 px images (scaled in proportion to the image side): about the same root mean
#: square pixel change as the L-inf budgets.
DEFAULT_L2_BUDGETS_64PX = (0.5, 1.0, 2.0)
OBSERVER = "observer"
PROBES = ("fgsm", "pgd", "shuffled", "random")
#: Images (or probe rows) per batch of the probes: large batches cost less per image on a CPU.
BATCH = 128


# ----------------------------------------------------------------------------------------------
# Defaults
# ----------------------------------------------------------------------------------------------

def default_budgets(norm: str = "linf", image_size: int = 64) -> tuple[float, ...]:
    """Budgets of :func:`score`: L-inf 1, 2, 4 / 255; L2 0.5, 1, 2 at 64 px (scaled with the side)."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    if norm == "linf":
        return DEFAULT_LINF_BUDGETS
    return tuple(e * int(image_size) / 64 for e in DEFAULT_L2_BUDGETS_64PX)


def budget_label(eps: float, norm: str = "linf") -> str:
    """``3/255`` for an L-inf budget that is a multiple of 1/255 (to 3 digits), else ``0.5``."""
    if norm == "linf":
        n = float(eps) * 255
        return f"{n:.3g}/255"
    return f"{float(eps):.3g}"


def _is_robust(spec: str) -> bool:
    import re

    m = re.search(r"\+smooth([0-9.]+)$", spec) or re.search(r"_(?:l2|linf)_eps([0-9.]+)", spec)
    return m is not None and float(m.group(1)) > 0


def default_reference(dataset: str | Dataset = "demo") -> tuple[str, ...]:
    """The reference panel of :func:`score`: a standard and a robust model of the book's zoo.

    Demo: the first (standard) and last (most robust) rung of :func:`probelib.zoo.demo_ladder`;
    NSD: the first standard and the last robust model of :func:`probelib.zoo.model_panel` for the
    2025 paper. The names follow whatever the zoo provides.
    """
    from . import zoo

    if isinstance(dataset, str) and dataset == "nsd":
        panel = list(zoo.model_panel("nsd", paper=2))
        standard = [m for m in panel if not _is_robust(m) and ":untrained" not in m]
        robust = [m for m in panel if _is_robust(m)]
        return tuple(dict.fromkeys(standard[:1] + robust[-1:]))
    ladder = list(zoo.demo_ladder())
    return tuple(dict.fromkeys([ladder[0], ladder[-1]]))


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------

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
    from .zoo import parse_model

    try:
        parse_model(text)
    except ValueError:
        return False
    return True


def _build(model, layer, weights, name, mean, std, seed, spatial, n_samples, device=None) -> nn.Module:
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
        from .zoo import build_encoder

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
        path, sep, rest = model.rpartition(".py:")
        return f"{Path(path).name}.py:{rest}" if sep else model  # a file: its name, not its directory
    return str(getattr(model, "name", None) or type(model).__name__)


# ----------------------------------------------------------------------------------------------
# Readouts
# ----------------------------------------------------------------------------------------------

def _readout_key(readout) -> dict:
    if isinstance(readout, str):
        return {"kind": readout}
    import joblib
    from sklearn.base import clone

    return {"estimator": f"{type(readout).__module__}.{type(readout).__qualname__}",
            "params": joblib.hash(clone(readout))}


def _fit_readout(readout, X: np.ndarray, Y: np.ndarray, seed: int, device) -> nn.Module:
    from .readouts import _get_readout_class, as_readout, fit_readout

    if isinstance(readout, str):
        options = {"device": str(device)} if readout in ("mlp", "cnn") and device is not None else {}
        return fit_readout(readout, X, Y, seed=seed, **options)
    from sklearn.base import clone

    est = clone(readout).fit(X, Y)
    if isinstance(est, _get_readout_class()):
        return est.module_
    return as_readout(est)


# ----------------------------------------------------------------------------------------------
# Cached pieces (keys: the models' and images' content, added by cached_call, and the arguments)
# ----------------------------------------------------------------------------------------------

def _key(cache: bool, **parts):
    return {"score_version": SCORE_VERSION, **parts} if cache else None


def _attack_impl(key, model, images, attack: str, kwargs: dict):
    fn = {"fgsm": probes.fgsm, "pgd": probes.pgd}[attack]
    return fn(model, torch.from_numpy(images), **kwargs)


def _attack(model, images, attack, kwargs, device, cache):
    key = _key(cache, what="attack", attack=attack, kwargs=kwargs)
    return cached_call(_attack_impl, key, model, images, attack,
                       {**kwargs, "device": device, "progress": False, "batch_size": BATCH},
                       ignore=("model", "images", "kwargs"))


def _control_impl(key, model, images, attack, kwargs, control, seed, device, cache):
    probe = _attack(model, images, attack, kwargs, device, cache)
    fn = {"shuffled": probes.shuffled_control, "random": probes.random_control}[control]
    return fn(model, torch.from_numpy(images), probe, seed=seed, device=device,
              store_perturbations=False, progress=False, batch_size=BATCH)


def _control(model, images, attack, kwargs, control, seed, device, cache):
    key = _key(cache, what="control", attack=attack, kwargs=kwargs, control=control, seed=seed)
    return cached_call(_control_impl, key, model, images, attack, kwargs, control, seed, device, cache,
                       ignore=("model", "images", "device", "cache"))


def _subset_eps(result, positions: Sequence[int]):
    """The budgets ``positions`` of a ProbeResult (its perturbations kept)."""
    import dataclasses

    pos = list(positions)
    return dataclasses.replace(
        result, sensitivity=result.sensitivity[pos], eps=result.eps[pos], perturbed=result.perturbed[pos],
        direction_taken=result.direction_taken[pos], delta_norm=result.delta_norm[pos],
        deltas=None if result.deltas is None else result.deltas[pos])


def _transfer_impl(key, source, target, images, kwargs, positions, seed, device, cache):
    probe = _subset_eps(_attack(source, images, "pgd", kwargs, device, cache), positions)
    x = torch.from_numpy(images)
    moved = probes.transfer(probe, x, target, device=device, batch_size=BATCH)
    noise = probes.random_control(target, x, probe, seed=seed, device=device, store_perturbations=False,
                                  progress=False, batch_size=BATCH)
    return moved.sensitivity, noise.sensitivity


def _transfer(source, target, images, kwargs, positions, seed, device, cache):
    key = _key(cache, what="transfer", kwargs=kwargs, positions=list(positions), seed=seed)
    return cached_call(_transfer_impl, key, source, target, images, kwargs, list(positions), seed, device,
                       cache, ignore=("source", "target", "images", "device", "cache"))


def _top_right_singular(jac: torch.Tensor, k: int) -> np.ndarray:
    """Orthonormal basis (D, k') of the top-k right singular vectors of ``jac`` (U, D), k' <= k
    (directions with a numerically zero singular value are left out)."""
    j = jac.double()
    _, sv, vh = torch.linalg.svd(j, full_matrices=False)
    if float(sv[0]) == 0.0:
        raise ValueError("the Jacobian is zero at this image: the responses do not depend on the pixels")
    rank = int((sv > sv[0] * max(j.shape) * torch.finfo(torch.float64).eps * 10).sum())
    return vh[: min(k, rank)].T.numpy().astype(np.float32)


def _subspaces_impl(key, model, images, widths, k, device):
    """Per image, per block of output units (one block per ROI), the top-k right singular
    vectors of that block's rows of the Jacobian: ``out[image][block]`` (D, k)."""
    starts = np.cumsum([0, *widths])
    out = []
    for img in images:
        jac = jacobian(model, torch.from_numpy(img), device=device)  # (sum of widths, D): one forward
        out.append([_top_right_singular(jac[a:b], k) for a, b in zip(starts[:-1], starts[1:])])
    return out


def _subspaces(model, images, widths, k, device, cache):
    key = _key(cache, what="subspaces", k=int(k), widths=[int(w) for w in widths])
    return cached_call(_subspaces_impl, key, model, images, [int(w) for w in widths], int(k), device,
                       ignore=("model", "images", "device"),
                       check=lambda r: isinstance(r, list) and len(r) == len(images))


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------

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


def _dataset_digest(ds: Dataset) -> str:
    parts = [array_digest(np.ascontiguousarray(ds.stimuli))]
    for roi in sorted(ds.responses):
        parts += [roi, array_digest(np.ascontiguousarray(ds.responses[roi]))]
    parts += [array_digest(np.asarray(ds.split["train"])), array_digest(np.asarray(ds.split["test"]))]
    parts += [array_digest(np.asarray(ds.noise_ceiling.get(r, np.zeros(0)))) for r in sorted(ds.responses)]
    return "-".join(parts)


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

@dataclass
class ScoreReport:
    """What :func:`score_report` computed.

    Attributes
    ----------
    table : one row per (model, ROI) (the :func:`score` table; columns in its docstring).
    curves : long table behind the sensitivity figure: ``model``, ``role``, ``roi``, ``probe``
        (``fgsm``, ``pgd``, ``shuffled``, ``random``, ``transfer:<target>``,
        ``transfer:<target>_control``), ``eps``, ``budget`` (label), ``mean``, ``ci_low``,
        ``ci_high``, ``n_images`` (sensitivities in s.d. of the observed responses).
    subspaces : long table: ``model``, ``role``, ``roi``, ``reference``, ``mean``, ``ci_low``,
        ``ci_high``, ``chance`` (``k / D``), ``k``, ``n_images``.
    settings : the arguments and what was derived from them (images, budgets, layer, weights).
    """

    table: pd.DataFrame
    curves: pd.DataFrame
    subspaces: pd.DataFrame
    settings: dict = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.settings.get("model", ""))

    # ------------------------------------------------------------------ figures
    def figure_sensitivity(self):
        """Sensitivity vs budget per ROI: the model's PGD and FGSM probes, its controls and what
        its probes do to the transfer target, against the reference panel's PGD probes."""
        import matplotlib.pyplot as plt

        c = self.curves
        rois = list(dict.fromkeys(c["roi"]))
        budgets = list(self.settings["budgets"])
        labels = [budget_label(e, self.settings["norm"]) for e in budgets]
        fig, axes = plt.subplots(1, len(rois), figsize=(3.1 * len(rois) + 0.6, 3.3), squeeze=False,
                                 sharey=True)
        colors = ["tab:orange", "tab:blue", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
        refs = [m for m in dict.fromkeys(c.loc[c.role == "reference", "model"])]
        for ax, roi in zip(axes[0], rois):
            d = c[c.roi == roi]

            def line(model, probe, **style):
                part = d[(d.model == model) & (d.probe == probe)].sort_values("eps")
                if part.empty:
                    return
                x = [budgets.index(e) if e in budgets else np.nan for e in part["eps"]]
                ax.plot(x, part["mean"], **style)
                color = style.get("color")
                if len(part) > 1:
                    ax.fill_between(x, part["ci_low"], part["ci_high"], color=color, alpha=0.12, lw=0)
                else:
                    err = [part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]]
                    ax.errorbar(x, part["mean"], yerr=err, color=color, lw=1, capsize=3, ls="none")

            for i, ref in enumerate(refs):
                line(ref, "pgd", color=colors[i % len(colors)], lw=1.3, marker="o", ms=3,
                     label=f"{ref} (PGD)")
            line(self.model, "pgd", color="k", lw=2.2, marker="o", ms=4, label=f"{self.model} (PGD)")
            line(self.model, "fgsm", color="k", lw=1.2, ls="--", label=f"{self.model} (FGSM)")
            line(self.model, "shuffled", color="0.45", lw=1, ls="-.", label="its FGSM probes, pixels shuffled")
            line(self.model, "random", color="0.45", lw=1, ls=":", label="random noise of the same size")
            mine = d[d.model == self.model]
            for probe in dict.fromkeys(mine.loc[mine.probe.str.startswith("transfer:")
                                                & ~mine.probe.str.endswith("_control"), "probe"]):
                target = probe.split(":", 1)[1]
                line(self.model, probe, color="tab:green", lw=1.4, marker="s", ms=5,
                     label=f"its PGD probes, change of {target}")
                line(self.model, f"{probe}_control", color="tab:green", lw=1, marker="x", ms=5,
                     label=f"random noise, change of {target}")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xticks(range(len(labels)), labels)
            ax.set_title(roi)
            ax.set_xlabel(f"budget ({self.settings.get('norm', 'linf')})")
        axes[0, 0].set_ylabel("sensitivity (s.d. of responses)")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
        fig.suptitle(f"Adversarial sensitivity of {self.model}: mean and 95% CI over "
                     f"{self.settings.get('n_images', '?')} images", fontsize=10)
        fig.tight_layout()
        return fig

    def figure_subspace(self):
        """The model's row of the subspace-similarity matrix: one row per ROI, one column per
        reference, as a multiple of chance (``k / D``)."""
        import matplotlib.pyplot as plt
        from matplotlib.colors import LogNorm

        s = self.subspaces[(self.subspaces.model == self.model) & (self.subspaces.reference != self.model)]
        rois = list(dict.fromkeys(s["roi"]))
        refs = list(dict.fromkeys(s["reference"]))
        if not refs:
            fig, ax = plt.subplots(figsize=(4, 1.2))
            ax.text(0.5, 0.5, "no reference panel: nothing to compare the subspaces with", ha="center",
                    va="center", fontsize=9)
            ax.set_axis_off()
            return fig
        values = np.full((len(rois), len(refs)), np.nan)
        chance = np.full(len(rois), np.nan)
        for i, roi in enumerate(rois):
            for j, ref in enumerate(refs):
                hit = s[(s.roi == roi) & (s.reference == ref)]
                if len(hit):
                    values[i, j] = hit["mean"].iloc[0]
                    chance[i] = hit["chance"].iloc[0]
        fig, ax = plt.subplots(figsize=(1.5 * len(refs) + 2.6, 0.55 * len(rois) + 1.6))
        finite = values[np.isfinite(values) & (values > 0)]
        vmin = float(np.nanmin(chance)) if np.isfinite(chance).any() else 1e-4
        vmax = max(1.0, float(finite.max()) if finite.size else 1.0)
        im = ax.imshow(np.where(values > 0, values, np.nan), cmap="viridis",
                       norm=LogNorm(vmin=min(vmin, finite.min() if finite.size else vmin), vmax=vmax),
                       aspect="auto")
        for i in range(len(rois)):
            for j in range(len(refs)):
                v = values[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2g}\n({v / chance[i]:.2g}× chance)", ha="center", va="center",
                            fontsize=7, color="w" if v < np.sqrt(vmin * vmax) else "k")
        ax.set_xticks(range(len(refs)), refs, rotation=25, ha="right", fontsize=8)
        ax.set_yticks(range(len(rois)), rois)
        fig.colorbar(im, ax=ax, label="subspace similarity")
        k = int(s["k"].max()) if len(s) else 0
        ax.set_title(f"{self.model}: perturbation subspaces (k ≤ {k}) vs references", fontsize=9)
        fig.tight_layout()
        return fig

    def figure_predictivity(self):
        """Held-out r / noise ceiling per ROI, the model next to the reference panel."""
        import matplotlib.pyplot as plt

        t = self.table
        rois = list(dict.fromkeys(t["roi"]))
        models = list(dict.fromkeys(t["model"]))
        width = 0.8 / len(models)
        fig, ax = plt.subplots(figsize=(1.2 * len(rois) + 2.8, 3.2))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        column = "r_over_nc" if t["r_over_nc"].notna().any() else "r"
        for m_i, m in enumerate(models):
            d = t[t.model == m].set_index("roi").reindex(rois)
            ax.bar(np.arange(len(rois)) + (m_i - (len(models) - 1) / 2) * width, d[column], width,
                   color="k" if m == self.model else colors[m_i % len(colors)], label=m)
        ax.set_xticks(range(len(rois)), rois)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylabel("held-out r / noise ceiling" if column == "r_over_nc" else "held-out r")
        ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.set_title(f"Predictivity ({self.settings.get('readout', '')} readout)", fontsize=10)
        fig.tight_layout()
        return fig

    def figures(self) -> dict:
        """``{"predictivity": Figure, "sensitivity": Figure, "subspace": Figure}``."""
        return {"predictivity": self.figure_predictivity(), "sensitivity": self.figure_sensitivity(),
                "subspace": self.figure_subspace()}

    # ------------------------------------------------------------------ tables
    def summary(self, digits: int = 3) -> pd.DataFrame:
        """A compact view of the table: predictivity, PGD and controls at the largest budget,
        transfer and subspace similarity (means only)."""
        t = self.table
        last = budget_label(self.settings["budgets"][-1], self.settings["norm"])
        cols = ["model", "roi", "r", "r_over_nc"] + [c for c in t.columns if c.endswith(f"@{last}")]
        cols += [c for c in t.columns if c.startswith("subspace:") and not c.endswith(("_lo", "_hi"))]
        return t[[c for c in cols if c in t.columns]].round(digits)

    def sections(self) -> dict[str, pd.DataFrame]:
        """The report's tables: predictivity; sensitivity and transfer (one row per model, ROI and
        budget); subspace similarity. Cells of sensitivities and similarities read ``mean [95% CI]``."""
        t, c = self.table, self.curves
        pred = t[["model", "roi", "layer", "n_units", "r", "noise_ceiling", "r_over_nc"]].copy()

        def by_budget(probes_: Sequence[str]) -> pd.DataFrame:
            d = c[c.probe.isin(probes_)].copy()
            if d.empty:
                return pd.DataFrame(columns=["model", "roi", "budget", *probes_])
            d["cell"] = [_cell(m, lo, hi) for m, lo, hi in zip(d["mean"], d["ci_low"], d["ci_high"])]
            wide = d.pivot_table(index=["model", "roi", "eps", "budget"], columns="probe", values="cell",
                                 aggfunc="first", sort=False)
            wide = wide.reindex(columns=[p for p in probes_ if p in wide.columns]).reset_index()
            order = {m: i for i, m in enumerate(dict.fromkeys(t["model"]))}
            rank = {r: i for i, r in enumerate(dict.fromkeys(t["roi"]))}
            ranks = {"model": order, "roi": rank}
            wide = wide.sort_values(["model", "roi", "eps"], kind="stable",
                                    key=lambda col: col.map(ranks[col.name]) if col.name in ranks else col)
            return wide.drop(columns="eps").fillna("–").reset_index(drop=True)

        sens = by_budget(list(PROBES))
        transfer_probes = list(dict.fromkeys(p for p in c["probe"] if p.startswith("transfer:")))
        trans = by_budget(transfer_probes)
        subs = t[["model", "roi"]].copy()
        for col in [x for x in t.columns if x.startswith("subspace:") and not x.endswith(("_lo", "_hi"))]:
            subs[col] = [_cell(m, lo, hi) for m, lo, hi in zip(t[col], t[f"{col}_lo"], t[f"{col}_hi"])]
        if "subspace_chance" in t:
            subs["chance (k/D)"] = t["subspace_chance"].map(lambda v: f"{v:.2g}")
        return {"Predictivity": pred, "Adversarial sensitivity (s.d. of responses)": sens,
                "Transfer of the PGD probes (s.d. of responses)": trans,
                "Perturbation-subspace similarity": subs}

    def to_markdown(self) -> str:
        s = self.settings
        lines = [f"# probelib score: {s.get('model')}", "", _settings_text(s, markdown=True), ""]
        for title, frame in self.sections().items():
            lines += [f"## {title}", "", _markdown_table(frame), ""]
        lines += [_GLOSSARY, ""]
        return "\n".join(lines)

    def to_html(self, figures: Mapping[str, object] | None = None) -> str:
        """A self-contained one-page HTML report (figures inlined as PNG). ``figures``: name ->
        matplotlib Figure or PNG bytes (default: :meth:`figures`)."""
        figures = self.figures() if figures is None else figures
        s = self.settings
        parts = [f"<h1>probelib score: {html.escape(str(s.get('model')))}</h1>",
                 f"<p>{_settings_text(s, markdown=False)}</p>"]
        sections = self.sections()
        order = [("Predictivity", "predictivity"),
                 ("Adversarial sensitivity (s.d. of responses)", "sensitivity"),
                 ("Transfer of the PGD probes (s.d. of responses)", None),
                 ("Perturbation-subspace similarity", "subspace")]
        for title, fig_name in order:
            parts.append(f"<h2>{html.escape(title)}</h2>")
            if fig_name and fig_name in figures:
                parts.append(f'<img alt="{fig_name}" src="data:image/png;base64,{_png64(figures[fig_name])}">')
            parts.append(sections[title].to_html(index=False, border=0, classes="table", na_rep="–"))
        parts.append("<p>" + html.escape(_GLOSSARY).replace("\n", "<br>") + "</p>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}"
                 "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
                 "img{max-width:100%}")
        return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>probelib score: "
                f"{html.escape(str(s.get('model')))}</title><style>{style}</style></head><body>"
                + "\n".join(parts) + "</body></html>")

    def save(self, out_dir: str | Path, formats: Sequence[str] = ("png",)) -> dict[str, Path]:
        """Write ``score.csv`` (the table), ``curves.csv``, ``subspaces.csv``, ``score.md``, the
        figures (``sensitivity``, ``subspace``, ``predictivity`` in each of ``formats``) and
        ``report.html`` to ``out_dir``; returns name -> path."""
        import matplotlib.pyplot as plt

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = {}
        for name, frame in (("score.csv", self.table), ("curves.csv", self.curves),
                            ("subspaces.csv", self.subspaces)):
            frame.to_csv(out / name, index=False)
            written[name] = out / name
        (out / "score.md").write_text(self.to_markdown(), encoding="utf-8")
        written["score.md"] = out / "score.md"
        figures = self.figures()
        pngs = {}
        for name, fig in figures.items():
            pngs[name] = _png(fig)  # drawn once: the PNG file and the report share it
            for fmt in formats:
                path = out / f"{name}.{fmt}"
                if fmt == "png":
                    path.write_bytes(pngs[name])
                else:
                    fig.savefig(path, dpi=130, bbox_inches="tight")
                written[path.name] = path
        (out / "report.html").write_text(self.to_html(pngs), encoding="utf-8")
        written["report.html"] = out / "report.html"
        for fig in figures.values():
            plt.close(fig)
        return written


_GLOSSARY = (
    "r: held-out Pearson r (mean over the ROI's units); r_over_nc: r / noise ceiling. "
    "Sensitivity: largest change of the predicted response (direction as set) caused by a "
    "perturbation within the budget, in s.d. of the observed responses across images; fgsm: one "
    "gradient-sign step; pgd: projected gradient descent; shuffled / random: the FGSM perturbation "
    "with its pixels shuffled / random noise of the same size (controls). transfer:<t>: the change "
    "of <t> caused by the model's PGD probes (<t>_control: random noise of the same size). "
    "subspace:<m>: mean squared cosine of the principal angles between the model's top-k "
    "perturbation subspace and <m>'s at the same images (1: the same, chance k/D). "
    "Brackets: 95% t confidence interval over images.")


def _cell(m, lo, hi) -> str:
    if not np.isfinite(m):
        return "–"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{m:.3g}"
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def _markdown_table(frame: pd.DataFrame) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "–" if not np.isfinite(v) else f"{v:.3g}"
        return str(v).replace("|", "\\|")

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _settings_text(s: dict, markdown: bool) -> str:
    budgets = ", ".join(budget_label(e, s["norm"]) for e in s["budgets"])
    items = [("model", s.get("model")), ("layer", s.get("layer")), ("weights", s.get("weights")),
             ("dataset", s.get("dataset")), ("readout", s.get("readout")),
             ("images probed", s.get("n_images")), (f"budgets ({s['norm']})", budgets),
             ("PGD steps", s.get("steps")), ("direction", s.get("direction")),
             ("reference panel", ", ".join(s.get("reference", []))),
             ("transfer to", ", ".join(s.get("transfer_to", []))),
             ("subspace", f"k = {s.get('k')}, {s.get('n_units')} most reliable voxels per ROI, "
                          f"{s.get('n_subspace_images')} images"),
             ("seed", s.get("seed")), ("probelib", s.get("probelib"))]
    if markdown:
        return "\n".join(f"- **{k}**: {v}" for k, v in items)
    return "<br>".join(f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}" for k, v in items)


def _png(fig, dpi: int = 130) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _png64(fig_or_png) -> str:
    data = fig_or_png if isinstance(fig_or_png, bytes) else _png(fig_or_png)
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------------------------
# score
# ----------------------------------------------------------------------------------------------

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
    from ._checks import check_choice, check_eps, check_positive_int

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
        from .readouts import KINDS

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
    enc = _build(model, layer, weights, name, mean, std, int(seed), False, int(n_samples))
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
        refs[ref_label] = _build(item, None, "default", None, None, None, int(seed), False, int(n_samples),
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
    from . import __version__

    settings["probelib"] = __version__
    key = None
    if cache:
        key = {"score_version": SCORE_VERSION, "what": "report", "dataset": _dataset_digest(ds),
               "voxels": _dataset_digest(dsv) if dsv is not ds else "same",
               **{k_: v for k_, v in settings.items() if k_ not in ("weights", "dataset", "probelib")}}
    report = cached_call(_report_impl, key, enc, refs, ds, dsv, settings, readout, device, progress, cache,
                         ignore=("encoder", "refs", "ds", "dsv", "readout", "device", "progress", "cache"),
                         check=lambda r: isinstance(r, ScoreReport))
    # what describes the network without changing its results (not in the key): as of this call
    report.settings.update(weights=settings["weights"], dataset=ds_name, probelib=__version__)
    report.table.loc[report.table["role"] == "model", "weights"] = settings["weights"]
    return report


def _report_impl(key, encoder, refs, ds, dsv, settings, readout, device, progress, cache) -> ScoreReport:
    from ._torch import evaluating
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
    """The demo's observer with the columns of ``ds`` for ``rois`` side by side; with
    ``voxel_units`` (ROI -> positions among the ROI's voxels) those voxels of each ROI."""
    from .data.demo import demo_observer

    obs = demo_observer(seed=seed, device=device if device is not None else "cpu")
    if voxel_units is not None:  # roi -> positions among the ROI's voxels (columns of ds.responses)
        idx = np.concatenate([np.asarray(ds.voxels[r]["observer_index"])[voxel_units[r]] for r in rois])
        out = obs.restrict(idx)
    else:
        cols, blocks = [], []
        for roi in rois:
            part = obs.for_roi(ds, roi)  # checks that the dataset came from this observer
            cols.append(np.asarray(ds.voxels[roi]["observer_index"]))
            blocks.append(part.readout.detach().cpu().double().numpy())
        weights = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
        r0 = c0 = 0
        for b in blocks:
            weights[r0:r0 + b.shape[0], c0:c0 + b.shape[1]] = b
            r0, c0 = r0 + b.shape[0], c0 + b.shape[1]
        out = obs.restrict(np.concatenate(cols), weights)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _compute(models, roles, ds, dsv, s, readout, device, cache, bar) -> ScoreReport:
    from ._torch import model_device
    from .model import extract_features

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
    for m, model in stacked.items():
        if fast is not None:
            one = _attack(model, images, "fgsm", fast, device, cache)
            attack, kwargs = "fgsm", fast
        else:  # L2: the fast gradient method is PGD with one step of the budget's length
            kwargs = {**pgd_kwargs, "steps": 1}
            one = _attack(model, images, "pgd", kwargs, device, cache)
            attack = "pgd"
        bar.update(1)
        multi = _attack(model, images, "pgd", pgd_kwargs, device, cache)
        bar.update(1)
        controls = {c: _control(model, images, attack, kwargs, c, seed, device, cache)
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
            moved, noise = _transfer(model, target, images, pgd_kwargs, transfer_at, seed, device, cache)
            for roi, part in split(moved).items():
                add(m, roi, f"transfer:{t}", part, transfer_at)
            for roi, part in split(noise).items():
                add(m, roi, f"transfer:{t}_control", part, transfer_at)
        bar.update(1)

    # ------------------------------------------------------------------ subspaces
    sub_refs = list(models) + ([OBSERVER] if s["observer"] else [])
    dim = int(np.prod(images.shape[1:]))
    bases = {m: _subspaces(vm, sub_images, sub_widths, s["k"], device, cache) for m, vm in voxel_models.items()}
    if OBSERVER in sub_refs:
        obs_v = _observer(dsv, rois, seed, device, voxel_units=selected)
        bases[OBSERVER] = _subspaces(obs_v, sub_images, sub_widths, s["k"], device, cache)
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
