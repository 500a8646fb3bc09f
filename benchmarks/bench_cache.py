"""Benchmark of probelib.cache: the cost of describing a network by content.

``module_key(encoder)`` (a digest of the code, settings and every parameter and buffer of the
network, which every cached feature extraction, fit and probe computes) vs the computation it
keys: ``extract_features(encoder, images, cache=False)`` of ``cache_images`` demo-sized images
(``px`` pixels) through MobileNet-v2 truncated at ``features.14`` (3.5 M parameters hashed).
Target: the key costs under 5% of the extraction (ratio >= 20). Checked: the key is the same for
the same network and changes when one weight changes.

Run through the runner: ``python benchmarks/run.py --only cache_key``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Baseline, Check, Row, Side, Target, compare  # noqa: E402

from probelib.cache import module_key  # noqa: E402
from probelib.encoders import load_encoder  # noqa: E402
from probelib.model import extract_features  # noqa: E402


def run_cache_key(sizes: dict[str, Any], repeats: int) -> list[Row]:
    enc = load_encoder("mobilenet_v2")
    n, px = sizes["cache_images"], sizes["px"]
    x = torch.rand(n, 3, px, px, generator=torch.Generator().manual_seed(0))
    key = module_key(enc)
    edited = load_encoder("mobilenet_v2")
    with torch.no_grad():
        edited.net.features[0][0].weight[0, 0, 0, 0] += 1e-3
    stable = module_key(enc) == key and module_key(edited) != key

    def check(cand, base) -> Check:
        return Check(stable and cand == key and base.shape[0] == n,
                     "same key for the same network; another key after editing one weight")

    return compare("cache_key", Side("module_key(MobileNet-v2)", lambda: module_key(enc)),
                   [Baseline(Side(f"extract_features of {n} images, {px} px", lambda: extract_features(
                       enc, x, cache=False)), check, Target(20.0, ">= 20x (key < 5% of extraction)"),
                       notes=f"{sum(p.numel() for p in enc.parameters()) / 1e6:.2f} M parameters hashed")],
                   repeats, {"images": n, "px": px})


COMPARISONS = {"cache_key": run_cache_key}

if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", *COMPARISONS, *sys.argv[1:]]))
