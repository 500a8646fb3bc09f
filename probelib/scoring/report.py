"""The result of :func:`probelib.score_report`: tables, figures, Markdown and a one-page HTML report."""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

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


def budget_label(eps: float, norm: str = "linf") -> str:
    """``3/255`` for an L-inf budget that is a multiple of 1/255 (to 3 digits), else ``0.5``."""
    if norm == "linf":
        n = float(eps) * 255
        return f"{n:.3g}/255"
    return f"{float(eps):.3g}"


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
