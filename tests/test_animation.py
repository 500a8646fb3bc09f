"""Tests of probelib.animation: labelled frames and the animated GIF of a grid of frame stacks."""
from __future__ import annotations

import numpy as np
from PIL import Image

from probelib.animation import label_panel, write_gif


def test_label_panel_scales_and_adds_a_text_strip():
    panel = np.zeros((3, 5, 7), dtype=np.float32)
    panel[0] = 1.0  # red
    out = label_panel(panel, "FFA", scale=2)
    assert out.shape == (5 * 2 + 14, 7 * 2, 3) and out.dtype == np.uint8
    assert (out[14:, :, 0] == 255).all() and (out[14:, :, 1:] == 0).all()
    assert (out[:14] < 255).any()  # the text


def test_write_gif_holds_shorter_stacks_and_the_last_frame(tmp_path):
    rng = np.random.default_rng(0)
    long, short = rng.random((4, 3, 6, 6)), rng.random((2, 3, 6, 6))
    path = write_gif([[long, short], [short, long]], [["a", "b"], ["c", "d"]], tmp_path / "x.gif",
                     scale=1, hold=3)
    assert path.exists()
    with Image.open(path) as gif:
        assert gif.size == (6 + 6 + 6, 2 * (6 + 14))
        assert gif.n_frames in (4, 4 + 3)  # the held copies of the last frame may be merged into it
