"""On-disk memoisation of expensive steps (features, fitted readouts, sweeps) with joblib.Memory.

The cache lives in ``$PROBELIB_CACHE`` if set, else ``<repository>/.cache`` when probelib runs
from a checkout, else ``~/.cache/probelib``. Entries are keyed by every input; an entry that
cannot be read (corrupt or truncated) is recomputed by joblib rather than trusted.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import joblib
import numpy as np


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


def array_digest(a: np.ndarray) -> str:
    """Short content hash (16 hex digits) of an array's bytes, for cache keys."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def cached_call(impl: Callable, key, *args, ignore: Sequence[str] = ()):
    """``impl(key, *args)``, memoised on disk by ``key`` and the arguments of ``impl`` not named in
    ``ignore`` (joblib hashes those); computed without the cache when ``key`` is None.

    ``key`` must describe everything that changes the result and is not hashed as an argument
    (models, images passed by reference ...).
    """
    if key is None:
        return impl(None, *args)
    return memory().cache(impl, ignore=list(ignore))(key, *args)
