"""Figure helpers shared by the chapters: consistent style and saving each figure as PNG + SVG."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np


def figures_dir() -> Path:
    """``$PROBELIB_FIGURES`` or ``<repository>/figures`` (created on demand)."""
    env = os.environ.get("PROBELIB_FIGURES")
    path = Path(env) if env else Path(__file__).resolve().parents[1] / "figures"
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
