"""Animated GIFs of image sequences (e.g. the frames of probe trajectories), labelled side by side."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["label_panel", "write_gif"]


def label_panel(panel: np.ndarray, text: str, scale: int = 2) -> np.ndarray:
    """(3, H, W) in [0, 1] -> uint8 (H * scale + 14, W * scale, 3), enlarged ``scale`` times, with
    ``text`` on a white strip on top."""
    from PIL import Image, ImageDraw

    img = (np.clip(panel.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8)
    img = np.kron(img, np.ones((scale, scale, 1), dtype=np.uint8))
    canvas = Image.new("RGB", (img.shape[1], img.shape[0] + 14), "white")
    canvas.paste(Image.fromarray(img), (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def write_gif(grid: Sequence[Sequence[np.ndarray]], labels: Sequence[Sequence[str]], path, scale: int = 2,
              hold: int = 8, duration: float = 0.15) -> Path:
    """Write an animated GIF of a grid of frame stacks and return its path.

    grid : rows of (T, 3, H, W) stacks in [0, 1] (stacks may differ in length T: a shorter one
        holds its last frame); labels : the same layout of strings. Frame t shows frame t of every
        stack; the last frame is held ``hold`` extra frames; ``duration`` seconds per frame.
    """
    from PIL import Image

    n_frames = max(len(s) for row in grid for s in row)
    frames = []
    for t in range(n_frames):
        rows = []
        for stacks, texts in zip(grid, labels):
            cells = [label_panel(s[min(t, len(s) - 1)], txt, scale) for s, txt in zip(stacks, texts)]
            gap = np.full((cells[0].shape[0], 6, 3), 255, np.uint8)
            rows.append(np.concatenate(sum([[c, gap] for c in cells], [])[:-1], axis=1))
        frames.append(np.concatenate(rows, axis=0))
    frames += [frames[-1]] * hold
    path = Path(path)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(duration * 1000)), loop=0)
    return path
