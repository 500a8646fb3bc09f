"""On-disk memoisation of expensive steps (features, fitted readouts, probes) with joblib.Memory.

Keys describe the computation by content, never by a name or a path: a network is described by
:func:`module_key` (the classes and code of its modules, their settings, and a digest of every
parameter and buffer), arrays by a digest of their bytes. A cached value is checked against what
the function returns (type and shape) before it is used, and recomputed when it does not fit.
:func:`observe` reports each memoised call of a thread (hit or computed, which entry, how long):
the study layer records a unit's calls with it.

The cache lives in ``$PROBELIB_CACHE`` if set, else ``<repository>/.cache`` when probelib runs
from a checkout, else ``~/.cache/probelib``. joblib stores results as pickles, so the directory
must be one that only its owner can write: it is created with owner-only permissions, and a
directory owned by another account or writable by others is refused (a pickle planted there
would run code in every process that reads it). To share a cache on a cluster, see the README:
a group only trusted accounts belong to, then ``PROBELIB_TRUST_SHARED_CACHE=1``.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import stat
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
import xxhash
from torch import nn

#: Environment variable that accepts a cache directory writable by other accounts (a group cache).
TRUST_SHARED = "PROBELIB_TRUST_SHARED_CACHE"


def cache_dir() -> Path:
    env = os.environ.get("PROBELIB_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / ".cache"
    return Path.home() / ".cache" / "probelib"


class UnsafeCacheError(PermissionError):
    """The cache directory could hold files written by another account."""


def check_cache_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (mode 0700) if missing; refuse it if another account owns it or can write it.

    ``PROBELIB_TRUST_SHARED_CACHE=1`` accepts a group-writable directory or one owned by another
    account (only for a cache that no untrusted account can write). Returns the path.
    """
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if os.environ.get(TRUST_SHARED) == "1":
        return path
    problem = None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        problem = f"it is owned by another account (uid {st.st_uid})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        problem = f"other accounts can write to it (mode {stat.filemode(st.st_mode)})"
    if problem:
        raise UnsafeCacheError(
            f"refusing the cache directory {path}: {problem}. Cached results are pickles, and a "
            f"file planted there would run code when read. Use a directory only you can write "
            f"(chmod 700 {path}, or set PROBELIB_CACHE to another one), or, for a cache shared "
            f"with a group of trusted accounts, set {TRUST_SHARED}=1.")
    return path


@lru_cache(maxsize=None)
def _memory(location: str) -> joblib.Memory:
    return _ObservedMemory(location, verbose=0)


def memory(location: str | os.PathLike | None = None) -> joblib.Memory:
    """The joblib.Memory of ``location`` (default :func:`cache_dir`), after :func:`check_cache_dir`.

    The functions it memoises report their calls to the observers of :func:`observe`."""
    return _memory(str(check_cache_dir(cache_dir() if location is None else location)))


# ---------------------------------------------------------------------------------- observers

@dataclass(frozen=True)
class CacheEvent:
    """One call of a memoised function: ``function`` (its qualified name), ``entry`` (the
    directory of its cache entry), ``hit`` (read from the cache; else computed) and ``seconds``
    (the call's duration; ``None`` in the notice sent before the call)."""

    function: str
    entry: Path
    hit: bool
    seconds: float | None = None


_observers = threading.local()


@contextmanager
def observe(on_call: Callable[[CacheEvent], None],
            before: Callable[[CacheEvent], None] | None = None) -> Iterator[None]:
    """Report the memoised calls this thread makes inside the ``with`` block (:func:`cached_call`
    and every function memoised through :func:`memory`): ``on_call(event)`` after each call,
    ``before(event)`` (optional) before it, when whether it is a hit is known and nothing has run
    yet; an exception raised by ``before`` stops the call (e.g. to refuse computing a missing
    entry). Nested blocks are all notified, innermost first. Costs nothing outside the blocks;
    inside, one look-up of the entry per call."""
    stack = _observers.__dict__.setdefault("stack", [])
    item = (on_call, before)
    stack.append(item)
    try:
        yield
    finally:
        stack.remove(item)


def _active() -> list:
    return list(reversed(getattr(_observers, "stack", ())))


class _ObservedFunction:
    """A joblib ``MemorizedFunc`` whose calls are reported to the observers of this thread."""

    def __init__(self, memorized):
        self._mf = memorized

    def __getattr__(self, name):
        return getattr(self._mf, name)

    def _run(self, call, args, kwargs, force: bool):
        observers = _active()
        if not observers:
            return call(*args, **kwargs)
        mf = self._mf
        call_id = (mf.func_id, mf._get_args_id(*args, **kwargs))
        hit = mf._is_in_cache_and_valid(call_id) and not force
        event = CacheEvent(getattr(mf.func, "__qualname__", "?"), Path(mf.store_backend.location, *call_id), hit)
        for _, before in observers:
            if before is not None:
                before(event)
        t0 = time.perf_counter()
        out = call(*args, **kwargs)
        done = CacheEvent(event.function, event.entry, hit, time.perf_counter() - t0)
        for on_call, _ in observers:
            on_call(done)
        return out

    def __call__(self, *args, **kwargs):
        return self._run(self._mf, args, kwargs, force=False)

    def call(self, *args, **kwargs):  # joblib's "recompute and store" (cached_call's repair path)
        return self._run(self._mf.call, args, kwargs, force=True)


class _ObservedMemory(joblib.Memory):
    """``joblib.Memory`` whose memoised functions report to :func:`observe`."""

    def cache(self, func=None, **kwargs):
        if func is None:  # used as a decorator with arguments
            return partial(self.cache, **kwargs)
        return _ObservedFunction(super().cache(func, **kwargs))


# ---------------------------------------------------------------------------------- content keys

#: Attributes that describe a module without changing what it computes (left out of its key).
#: (timm's ``pretrained_cfg`` / ``default_cfg`` / ``pretrained_model_args`` record where weights come from.)
_DESCRIPTIVE = frozenset({"training", "name", "weights_source", "trained",
                          "pretrained_cfg", "default_cfg", "pretrained_model_args"})
_SIMPLE = (bool, int, float, str, type(None))


@lru_cache(maxsize=None)
def _class_code(cls: type) -> str:
    """``module.QualName:<digest of the class's source>`` (the source is the code version)."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        src = ""
    return f"{cls.__module__}.{cls.__qualname__}:{hashlib.sha256(src.encode()).hexdigest()[:12]}"


_OPAQUE = object()   # an attribute value that cannot be described by content (a function, an object)


def _setting(v: Any) -> Any:
    """A plain attribute's value for a key: simple values as they are, tensors and arrays by their
    digest, tuples, lists and dicts of those element by element; ``_OPAQUE`` otherwise."""
    if isinstance(v, _SIMPLE):
        return v
    if isinstance(v, (torch.Tensor, np.ndarray)):
        return array_digest(v)
    if isinstance(v, (tuple, list)):
        items = [_setting(e) for e in v]
        return _OPAQUE if any(e is _OPAQUE for e in items) else type(v)(items)
    if isinstance(v, Mapping) and all(isinstance(k, _SIMPLE) for k in v):
        items = [(k, _setting(e)) for k, e in v.items()]
        return _OPAQUE if any(e is _OPAQUE for _, e in items) else ("dict", sorted(items, key=repr))
    return _OPAQUE


def _settings(module: nn.Module) -> list:
    """A module's public plain attributes (layer names, strides, sigma, a config dict ...) by
    :func:`_setting`: tensors or arrays kept as plain attributes (not registered as buffers), also
    inside tuples, lists and dicts, by their digest. Attributes that cannot be described by content
    (functions, other objects) are left out; submodules are described by :func:`module_key`."""
    out = []
    for k, v in vars(module).items():
        if k[0] == "_" or k in _DESCRIPTIVE:
            continue
        value = _setting(v)
        if value is not _OPAQUE:
            out.append((k, value))
    return sorted(out)


def _update_tensor(h, t: torch.Tensor) -> None:
    h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
    if t.is_meta:  # no values exist (shape-only tensors compute nothing)
        return
    t = t.detach().to("cpu").contiguous().reshape(-1)
    h.update(memoryview(t.view(torch.uint8).numpy()))


def module_key(module: nn.Module) -> dict:
    """What a network computes, for cache keys: its class and a digest of every submodule's class
    and source code, public settings (e.g. ``layer``, ``spatial``, ``sigma``) and every parameter
    and buffer (names, dtypes, shapes and values), wherever they live.

    Two modules get the same key only if they have the same code, settings and weights; names and
    weight-file paths do not enter. Costs one pass over the weights with xxHash (about 1 ms for
    MobileNet-v2's 3.5 M parameters on a CPU; ``benchmarks/bench_cache.py``).
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a torch.nn.Module; got {type(module).__name__}")
    h = xxhash.xxh3_128()  # 128-bit, about 40 GB/s: a key, not a signature
    for path, m in module.named_modules(remove_duplicate=False):
        h.update(repr((path, _class_code(type(m)), _settings(m))).encode())
        for kind, tensors in (("p", m._parameters), ("b", m._buffers)):
            for name, t in tensors.items():
                if t is not None:
                    h.update(f"{kind}:{name}|".encode())
                    _update_tensor(h, t)
    return {"class": _class_code(type(module)), "digest": h.hexdigest()}


def array_digest(a) -> str:
    """Short content hash (16 hex digits) of an array's (or tensor's) dtype, shape and bytes."""
    if isinstance(a, torch.Tensor):
        h = xxhash.xxh3_128()
        _update_tensor(h, a)
        return h.hexdigest()[:16]
    a = np.ascontiguousarray(a)
    h = xxhash.xxh3_128(f"{a.dtype}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:16]


def content_key(value: Any) -> Any:
    """``value`` described by content: modules by :func:`module_key`, arrays and tensors by
    :func:`array_digest`, containers element-wise; anything else is returned as it is."""
    if isinstance(value, nn.Module):
        return module_key(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return {"array": array_digest(value), "shape": list(value.shape)}
    if isinstance(value, Mapping):
        return {str(k): content_key(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [content_key(v) for v in value]
    return value


def _holds_content(value: Any) -> bool:
    if isinstance(value, (nn.Module, np.ndarray, torch.Tensor)):
        return True
    if isinstance(value, Mapping):
        return any(_holds_content(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_content(v) for v in value)
    return False


# ---------------------------------------------------------------------------------- cached calls

def cached_call(impl: Callable, key, *args, ignore: Sequence[str] = (),
                check: Callable[[Any], bool] | None = None):
    """``impl(key, *args)``, memoised on disk; computed without the cache when ``key`` is None.

    Arguments that hold networks, arrays or tensors enter the key by content
    (:func:`content_key`); joblib hashes ``key``, probelib's version and the other arguments,
    except those named in ``ignore``, which must not change the result (``device``,
    ``batch_size``, ``progress``). ``key`` must describe everything else that changes the result.

    ``impl`` receives the key as joblib hashed it: ``key`` merged with probelib's entries
    ``_probelib`` (the version) and ``_content`` (a key that is not a dict is held as
    ``{"key": key}``); a key that already holds those entries is refused.

    ``check(result) -> bool`` vets a value read from the cache (type, shape); a value that fails it
    is recomputed and replaces the entry.
    """
    if key is None:
        return impl(None, *args)
    from . import __version__

    bound = inspect.signature(impl).bind(key, *args).arguments
    # networks, arrays and tensors are keyed here by content (xxHash), not by joblib: faster, and
    # joblib then neither pickles them for hashing nor writes their repr next to the result
    by_content = [name for name in list(bound)[1:] if name in ignore or _holds_content(bound[name])]
    extra = {"_probelib": __version__,
             "_content": {name: content_key(bound[name]) for name in by_content
                          if _holds_content(bound[name])}}
    if isinstance(key, dict) and extra.keys() & key.keys():
        raise ValueError(f"a cache key may not hold the entries {sorted(extra.keys() & key.keys())}: "
                         f"probelib adds them (its version and the content of the arguments)")
    key = {**key, **extra} if isinstance(key, dict) else {"key": key, **extra}
    fn = memory().cache(impl, ignore=by_content)
    out = fn(key, *args)
    if check is not None and not check(out):
        warnings.warn(f"a cached result of {impl.__name__} is not what it returns "
                      f"(got {type(out).__name__}); recomputing it", stacklevel=2)
        out = fn.call(key, *args)[0]
        if not check(out):
            raise TypeError(f"{impl.__name__} returned {type(out).__name__}, which fails its own check")
    return out
