"""Figure helpers shared by the chapters: one theme for the book, saving each figure as PNG + SVG,
and seaborn-based plots of per-model scores (bars with error bars and the individual values,
paired comparisons).

Importing this module applies the book's theme (:func:`set_book_theme`) to matplotlib, so every
chapter that imports a helper draws in the same style. seaborn comes with the ``[book]`` extra;
without it the module still imports (the theme is then matplotlib's default) and only the seaborn
plots raise.
"""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

try:
    import seaborn as sns
except ImportError:  # a core install, without the [book] extra
    sns = None

#: The book's figure style: seaborn's ``paper`` context at matplotlib's usual text size, white
#: background with ticks (no grid over images and heatmaps), the colour-blind-safe palette, and
#: no top or right spines.
BOOK_THEME = dict(context="paper", style="ticks", palette="colorblind", font_scale=1.1,
                  rc={"axes.spines.top": False, "axes.spines.right": False,
                      "figure.dpi": 100, "savefig.dpi": 150, "image.cmap": "viridis",
                      "legend.frameon": False})


def _seaborn():
    if sns is None:
        raise ImportError("this plot needs seaborn: pip install 'probelib[book]'")
    return sns


def set_book_theme() -> None:
    """Apply the book's figure style (:data:`BOOK_THEME`) to matplotlib's defaults.

    Called when :mod:`probelib.plotting` is imported; call it again after changing matplotlib's
    settings to go back to the book's style. Without seaborn this does nothing."""
    if sns is not None:
        sns.set_theme(**BOOK_THEME)


set_book_theme()


def _checkout_root() -> Path | None:
    """The repository root when probelib runs from a source checkout (not from an installed copy)."""
    package = Path(__file__).resolve().parent
    root = package.parent
    installed = {"site-packages", "dist-packages"} & set(package.parts)
    return root if not installed and (root / "pyproject.toml").is_file() else None


def figures_dir() -> Path:
    """Where :func:`savefig` writes (created on demand): ``$PROBELIB_FIGURES`` if set, else
    ``<repository>/figures`` when probelib runs from a checkout (beside the book's build), else
    ``./figures`` in the current working directory. Never inside the installed package."""
    env = os.environ.get("PROBELIB_FIGURES")
    if env:
        path = Path(env).expanduser()
    else:
        root = _checkout_root()
        path = (root if root is not None else Path.cwd()) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def savefig(fig: plt.Figure, name: str, formats=("png", "svg")) -> list[Path]:
    """Save ``fig`` as ``figures/<name>.<fmt>`` for each format; returns the paths."""
    paths = []
    for fmt in formats:
        p = figures_dir() / f"{name}.{fmt}"
        fig.savefig(p, dpi=150, bbox_inches="tight")
        paths.append(p)
    return paths


def show_image(ax, image, title: str | None = None) -> None:
    """Show one image (3, H, W) in [0, 1] (tensor or array) without axes."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    ax.imshow(np.clip(arr.transpose(1, 2, 0), 0, 1))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def amplify(delta, scale: float | None = None):
    """A perturbation (3, H, W) mapped to [0, 1] for display: 0.5 + delta * scale (auto: fill range)."""
    arr = delta.detach().cpu().numpy() if hasattr(delta, "detach") else np.asarray(delta)
    if scale is None:
        m = np.abs(arr).max()
        scale = 0.5 / m if m > 0 else 1.0
    return np.clip(0.5 + arr * scale, 0, 1)


def log_matrix(ax, values, rows, cols, label=lambda i, j, v: f"{v:.2g}", colorbar_label: str = "",
               vmax: float | None = None):
    """Heatmap of a positive matrix ``values`` (R, C) on a log10 colour scale (viridis), every cell
    written with ``label(i, j, value)`` (white on the darker half); ``rows``/``cols``: tick labels.
    Returns the image."""
    values = np.asarray(values, dtype=float)
    logv = np.log10(values)
    im = ax.imshow(logv, cmap="viridis", vmax=vmax)
    dark = logv < (np.nanmean(logv) if vmax is None else 0.5 * (np.nanmin(logv) + vmax))
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, label(i, j, v), ha="center", va="center", fontsize=7, color="w" if dark[i, j] else "k")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.figure.colorbar(im, ax=ax, shrink=0.7, label=colorbar_label)
    return im


def model_bars(ax, data, x: str, y: str, *, order=None, hue: str | None = None,
               points: str | None = None, errorbar=("se", 1), color=None, point_color="0.2",
               reference: float | None = None, reference_label: str | None = None):
    """Bars of the mean of ``y`` per ``x`` (e.g. per model) with error bars, and the values they
    average as dots (e.g. one per region or subject).

    ``data``: a long table (pandas DataFrame), one row per value. ``errorbar``: seaborn's
    specification, by default the SEM (``("se", 1)``); ``("ci", 95)`` for a bootstrap 95 %
    confidence interval. ``points``: the column whose values the dots show (their hue), or None for
    plain dots; ``reference``: a value drawn as a dotted horizontal line (a noise ceiling, a
    control). Returns ``ax``."""
    sns_ = _seaborn()
    if color is None and hue is None:
        color = "0.82" if points is not None else sns_.color_palette()[0]
    sns_.barplot(data=data, x=x, y=y, order=order, hue=hue, errorbar=errorbar, color=color,
                 capsize=0.15, err_kws={"linewidth": 1, "color": "0.2"}, ax=ax)
    sns_.stripplot(data=data, x=x, y=y, order=order, hue=points if hue is None else hue,
                   dodge=hue is not None, color=None if (points or hue) else point_color,
                   size=3.5, jitter=0.15, edgecolor="w", linewidth=0.4, ax=ax, legend=False)
    if reference is not None:
        ax.axhline(reference, color="k", ls=":", lw=1, label=reference_label)
    if points is not None and hue is None:  # the dots' colours, and the reference line
        colors = dict(zip(data[points].drop_duplicates(), sns_.color_palette()))
        handles = [plt.Line2D([], [], ls="", marker="o", ms=4, color=c, label=str(v))
                   for v, c in colors.items()]
        if reference is not None and reference_label:
            handles.append(plt.Line2D([], [], color="k", ls=":", lw=1, label=reference_label))
        ax.legend(handles=handles, title=points, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    elif reference is not None and reference_label:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlabel("")
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right", rotation_mode="anchor")
    return ax


def paired_points(ax, data, condition: str, value: str, unit: str, *, order=None,
                  errorbar=("ci", 95), line_color="0.75", mean_color="k"):
    """A paired comparison: one grey line per ``unit`` (e.g. a subject and region) joining its
    ``value`` under each ``condition`` (e.g. the OLS and the L1 readout), and the mean over units
    with its ``errorbar`` (default: bootstrap 95 % CI) in black. Returns ``ax``."""
    sns_ = _seaborn()
    order = list(order) if order is not None else list(dict.fromkeys(data[condition]))
    position = {c: i for i, c in enumerate(order)}
    frame = data[data[condition].isin(order)].assign(_x=lambda d: d[condition].map(position))
    sns_.lineplot(data=frame, x="_x", y=value, units=unit, estimator=None, color=line_color,
                  lw=0.8, marker="o", markersize=3, markeredgewidth=0, ax=ax, legend=False)
    sns_.pointplot(data=frame, x="_x", y=value, order=range(len(order)), errorbar=errorbar,
                   color=mean_color, native_scale=True, markersize=5, capsize=0.1, ax=ax)
    ax.set_xticks(range(len(order)), order)
    ax.set_xlim(-0.4, len(order) - 0.6)
    ax.set_xlabel("")
    return ax
