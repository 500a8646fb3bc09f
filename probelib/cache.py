"""On-disk memoisation of expensive steps (features, fitted readouts, sweeps) with joblib.Memory.

The cache lives in ``$PROBELIB_CACHE`` if set, else ``<repository>/.cache`` when probelib runs
from a checkout, else ``~/.cache/probelib``. Entries are keyed by every input; an entry that
cannot be read (corrupt or truncated) is recomputed by joblib rather than trusted.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import joblib


def cache_dir() -> Path:
    env = os.environ.get("PROBELIB_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "probelib"


@lru_cache(maxsize=None)
def _memory(location: str) -> joblib.Memory:
    return joblib.Memory(location, verbose=0)


def memory() -> joblib.Memory:
    """The joblib.Memory of the current cache directory."""
    return _memory(str(cache_dir()))


def encoder_key(encoder) -> dict:
    """A hashable description of an encoder (name, layer, weights, smoothing) for cache keys."""
    key = {k: getattr(encoder, k, None) for k in ("name", "layer", "weights_source", "spatial")}
    for k in ("sigma", "n_samples", "seed"):
        if hasattr(encoder, k):
            key[k] = getattr(encoder, k)
    return key
