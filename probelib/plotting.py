"""Figure helpers shared by the chapters: consistent style and saving each figure as PNG + SVG."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


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
