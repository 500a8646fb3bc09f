"""Cache keys: every argument that changes a result must change its key, and nothing else may.

The probe cache is called twice with different images of the same shape (and the same images
again); every attack argument, the model's weights, buffers, code settings and plain tensor
attributes, and the bytes, dtype and shape of arrays are varied one at a time.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probelib import cache
from probelib.cache import array_digest, cached_call, content_key, module_key
from probelib.probes.cached import cached_fgsm, cached_pgd

SIDE = 6


class Lin(nn.Module):
    def __init__(self, seed: int = 0, n_units: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_units, 3 * SIDE * SIDE, generator=g))
        self.register_buffer("offset", torch.zeros(n_units))
        self.gain = 1.0

    def forward(self, x):
        return self.gain * (x.flatten(1) @ self.weight.T) + self.offset


def _images(seed: int, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, SIDE, SIDE)).astype(np.float32) * 0.8 + 0.1


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """Count the attacks that really run (a cache hit runs none)."""
    import probelib.probes.cached as cached

    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    calls = []
    for name in ("fgsm", "pgd"):
        real = getattr(cached, f"_{name}_impl")

        def impl(key, model, images, kwargs, real=real, name=name):
            calls.append(name)
            return real(key, model, images, kwargs)

        impl.__wrapped__ = real
        monkeypatch.setattr(cached, f"_{name}_impl", impl)
    return calls


def test_probe_cache_key_holds_the_image_content(counted):
    model = Lin()
    a = cached_fgsm(model, _images(0), key={"model": "lin"}, eps=0.02)
    b = cached_fgsm(model, _images(1), key={"model": "lin"}, eps=0.02)   # same shape, other pixels
    assert len(counted) == 2
    assert not np.allclose(a.clean, b.clean)
    np.testing.assert_allclose(b.images, _images(1))
    again = cached_fgsm(model, _images(0), key={"model": "lin"}, eps=0.02)
    assert len(counted) == 2                                     # served from the cache
    np.testing.assert_array_equal(again.sensitivity, a.sensitivity)
    one_pixel = _images(0)
    one_pixel[1, 2, 3, 4] += 0.01
    cached_fgsm(model, one_pixel, key={"model": "lin"}, eps=0.02)
    assert len(counted) == 3
    cached_fgsm(model, torch.from_numpy(_images(0)), key={"model": "lin"}, eps=0.02)
    assert len(counted) == 3                                     # a tensor of the same pixels: same key


@pytest.mark.parametrize("kwargs", [
    {"eps": 0.03}, {"eps": [0.02, 0.03]}, {"units": [1]}, {"direction": "increase"}, {"direction": "abs"},
])
def test_probe_cache_key_holds_every_fgsm_argument(counted, kwargs):
    model = Lin()
    base = cached_fgsm(model, _images(0), key={"model": "lin"}, eps=0.02)
    other = cached_fgsm(model, _images(0), key={"model": "lin"}, **{"eps": 0.02, **kwargs})
    assert len(counted) == 2
    assert base.sensitivity.shape != other.sensitivity.shape or not np.allclose(base.change, other.change)


@pytest.mark.parametrize("kwargs", [{"norm": "linf"}, {"steps": 3}, {"step_size": 0.001}, {"restarts": 2},
                                    {"random_start": True}, {"seed": 1, "random_start": True}])
def test_probe_cache_key_holds_every_pgd_argument(counted, kwargs):
    model = Lin()
    common = {"eps": 0.5, "steps": 2, "norm": "l2"}
    if "seed" in kwargs:
        common["random_start"] = True
    cached_pgd(model, _images(0), key={"model": "lin"}, **common)
    cached_pgd(model, _images(0), key={"model": "lin"}, **{**common, **kwargs})
    assert len(counted) == 2


def test_probe_cache_key_holds_the_model_not_its_name(counted):
    x = _images(0)
    a = cached_fgsm(Lin(0), x, key={"model": "lin"}, eps=0.02)
    b = cached_fgsm(Lin(1), x, key={"model": "lin"}, eps=0.02)             # same key, other weights
    assert len(counted) == 2 and not np.allclose(a.clean, b.clean)
    cached_fgsm(Lin(0), x, key={"model": "lin"}, eps=0.02, device="cpu", progress=True)
    assert len(counted) == 2                                     # device and progress are not in the key
    cached_fgsm(Lin(0), x, key={"model": "other"}, eps=0.02)
    assert len(counted) == 3                                     # the description is in the key
    cached_fgsm(Lin(0), x, eps=0.02)
    cached_fgsm(Lin(0), x, eps=0.02)
    assert len(counted) == 5                                     # no key: nothing cached
    cached_pgd(Lin(0), x, key={"model": "lin"}, eps=0.02)
    assert counted[-1] == "pgd"


# --------------------------------------------------------------------------- module_key

def test_module_key_follows_what_the_module_computes():
    base = module_key(Lin(0))
    assert module_key(Lin(0)) == base
    assert set(base) == {"class", "digest"}
    changed = []
    m = Lin(0)
    with torch.no_grad():
        m.weight[0, 0] += 1e-3
    changed.append(m)
    m = Lin(0)
    m.offset += 1.0                                               # a buffer
    changed.append(m)
    m = Lin(0)
    m.gain = 2.0                                                  # a public setting
    changed.append(m)
    m = Lin(0)
    m.scale = torch.ones(3)                                       # a tensor kept as a plain attribute
    changed.append(m)
    m = Lin(0)
    m.table = np.ones(3)
    changed.append(m)
    m = Lin(0)
    m.sizes = (1, 2)
    changed.append(m)
    m = Lin(0, n_units=3)
    changed.append(m)
    m = Lin(0).double()                                           # dtype
    changed.append(m)
    keys = [module_key(c)["digest"] for c in changed]
    assert base["digest"] not in keys
    assert len(set(keys)) == len(keys)
    a, b = Lin(0), Lin(0)
    b.scale = torch.ones(3)
    a.scale = torch.ones(3) * 2
    assert module_key(a) != module_key(b)


def test_module_key_holds_settings_kept_in_containers():
    """A config dict and tensors inside a list are settings too: each value changes the key."""
    def with_(**attrs):
        m = Lin(0)
        for k, v in attrs.items():
            setattr(m, k, v)
        return module_key(m)["digest"]

    big = torch.zeros(2000)                  # long enough for its repr to elide the middle values
    bumped = big.clone()
    bumped[1000] = 1.0
    keys = [with_(config={"stride": 1}), with_(config={"stride": 2}), with_(config={"stride": 2, "pad": 0}),
            with_(config={"means": big}), with_(config={"means": bumped}),
            with_(means=[big]), with_(means=[bumped]), with_(means=(big,)), with_(means=[big, big])]
    assert len(set(keys)) == len(keys)
    assert with_(config={"a": 1, "b": 2}) == with_(config={"b": 2, "a": 1})      # order of a dict's entries
    assert with_(config={1: "a", "b": 2, None: 0}) == with_(config={"b": 2, None: 0, 1: "a"})   # mixed key types
    assert with_(means=[torch.zeros(3)]) == with_(means=[torch.zeros(3)])
    # values that cannot be described by content are left out, as a function attribute is
    base = module_key(Lin(0))["digest"]
    assert with_(act=torch.relu) == with_(acts=[torch.relu, 1]) == with_(table={"f": torch.relu}) == base
    assert with_(table={(1, 2): 3}) == base                                     # a key that is not simple


def test_module_key_ignores_what_does_not_change_the_result():
    base = module_key(Lin(0))
    m = Lin(0)
    m.name, m.weights_source, m.trained = "another name", "/some/path.pth", True
    m.pretrained_cfg = m.default_cfg = {"url": "https://example.org/weights.pth"}   # timm's weight source
    m.pretrained_model_args = {"in_chans": 3}
    m._private = 5
    m.train()
    assert module_key(m) == base
    m.eval()
    assert module_key(m) == base


def test_module_key_of_nested_modules_and_their_classes():
    class Wrap(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    class Wrap2(Wrap):
        pass

    assert module_key(Wrap(Lin(0))) != module_key(Wrap(Lin(1)))
    assert module_key(Wrap(Lin(0))) == module_key(Wrap(Lin(0)))
    assert module_key(Wrap(Lin(0)))["digest"] != module_key(Wrap2(Lin(0)))["digest"]
    assert module_key(Wrap(Lin(0)))["class"].endswith(module_key(Wrap(Lin(1)))["class"].split(".")[-1])
    assert "Wrap" in module_key(Wrap(Lin(0)))["class"]
    shared = Lin(0)
    twice, once = nn.Sequential(shared, nn.ReLU(), shared), nn.Sequential(shared, nn.ReLU())
    assert module_key(twice) != module_key(once)                  # a submodule used twice counts twice
    m = Wrap(Lin(0))
    m.inner.weight = None                                         # a parameter slot left empty
    module_key(m)
    with pytest.raises(ValueError, match=r"^expected a torch.nn.Module; got ndarray$"):
        module_key(np.ones(2))


# --------------------------------------------------------------------------- arrays and content

def test_array_digest_holds_bytes_dtype_and_shape():
    a = np.arange(6, dtype=np.float32)
    base = array_digest(a)
    assert len(base) == 16 and array_digest(a.copy()) == base
    assert array_digest(a.reshape(2, 3)) != base
    assert array_digest(a.astype(np.float64)) != base
    b = a.copy()
    b[5] = np.nextafter(b[5], np.float32(10))
    assert array_digest(b) != base
    assert array_digest(a[::2]) == array_digest(np.ascontiguousarray(a[::2]))
    t = torch.arange(6, dtype=torch.float32)
    assert len(array_digest(t)) == 16 and array_digest(t) == array_digest(t.clone())
    assert array_digest(t.reshape(2, 3)) != array_digest(t)
    assert array_digest(t.double()) != array_digest(t)


def test_content_key_describes_containers_by_content():
    x = np.ones((2, 3))
    key = content_key({"a": [x, 3, "s"], 1: (Lin(0),)})
    assert key["a"][0] == {"array": array_digest(x), "shape": [2, 3]}
    assert key["a"][1:] == [3, "s"]
    assert key["1"][0] == module_key(Lin(0))
    assert content_key(torch.ones(2))["shape"] == [2]
    assert content_key(5) == 5


def test_cached_call_keys_ignored_arrays_by_content(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    calls = []

    def total(key, values, scale, verbose):
        calls.append(1)
        return float(np.sum(values)) * scale

    a, b = np.ones(4), np.full(4, 2.0)
    assert cached_call(total, {"k": 1}, a, 1.0, False, ignore=("values", "verbose")) == 4.0
    assert cached_call(total, {"k": 1}, b, 1.0, False, ignore=("values", "verbose")) == 8.0
    assert cached_call(total, {"k": 1}, a, 1.0, True, ignore=("values", "verbose")) == 4.0
    assert len(calls) == 2                                        # verbose is ignored: a hit
    assert cached_call(total, {"k": 1}, a, 3.0, False, ignore=("values", "verbose")) == 12.0
    assert cached_call(total, {"k": 2}, a, 1.0, False, ignore=("values", "verbose")) == 4.0
    assert cached_call(total, "plain key", a, 1.0, False, ignore=("values", "verbose")) == 4.0
    assert len(calls) == 5
    assert cached_call(total, None, a, 1.0, False, ignore=("values", "verbose")) == 4.0
    assert cached_call(total, None, a, 1.0, False, ignore=("values", "verbose")) == 4.0
    assert len(calls) == 7                                        # key None: never cached


def test_cached_call_gives_impl_the_key_with_probelibs_entries_and_refuses_keys_holding_them(monkeypatch, tmp_path):
    from probelib import __version__

    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))

    def echo(key, x):
        return key

    assert cached_call(echo, 5, 1) == {"key": 5, "_probelib": __version__, "_content": {}}
    assert cached_call(echo, {"a": 1}, np.zeros(2)) == {
        "a": 1, "_probelib": __version__, "_content": {"x": content_key(np.zeros(2))}}
    for reserved in ("_content", "_probelib"):
        with pytest.raises(ValueError, match=rf"^a cache key may not hold the entries \['{reserved}'\]: probelib "
                                             r"adds them \(its version and the content of the arguments\)$"):
            cached_call(echo, {"a": 1, reserved: 0}, 1)


def test_cached_call_recomputes_a_value_that_fails_its_check(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    runs = []

    def make(key, x):
        runs.append((key, x))
        return [x] if len(runs) == 1 else (x, key["k"])            # the first result fails the check

    ok = lambda v: isinstance(v, tuple)  # noqa: E731
    with pytest.warns(UserWarning, match=r"^a cached result of make is not what it returns \(got list\); "
                                         r"recomputing it$"):
        assert cached_call(make, {"k": 1}, 5, check=ok) == (5, 1)
    assert [x for _, x in runs] == [5, 5] and runs[1][0]["k"] == 1   # recomputed with the same key and args
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cached_call(make, {"k": 1}, 5, check=ok) == (5, 1)  # the entry was replaced: a plain hit
    assert len(runs) == 2
    bad_values = iter([[1], [1]])

    def bad(key):
        return next(bad_values)

    with pytest.warns(UserWarning), pytest.raises(TypeError, match=r"^bad returned list, which fails its own"):
        cached_call(bad, {"k": 2}, check=ok)


def test_observers_see_every_memoised_call_of_their_thread(monkeypatch, tmp_path):
    import threading

    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    runs = []

    def double(key, x):
        runs.append(x)
        return 2 * x

    assert cached_call(double, {"k": 0}, 1) == 2                 # outside observe: not reported
    events, notices, inner = [], [], []
    with cache.observe(events.append, before=notices.append):
        assert cached_call(double, {"k": 1}, 1) == 2             # computed
        assert cached_call(double, {"k": 1}, 1) == 2             # read from the cache
        assert cached_call(double, None, 1) == 2                 # not memoised: nothing to report
        with cache.observe(inner.append):                        # nested: both are told
            assert cached_call(double, {"k": 0}, 1) == 2
        other = threading.Thread(target=cached_call, args=(double, {"k": 2}, 1))
        other.start()
        other.join()                                             # another thread: not reported
        squares = cache.memory().cache(lambda x: x * x)          # memoised through memory() too
        assert squares(3) == 9
    assert cached_call(double, {"k": 3}, 1) == 2                 # after the block: not reported
    assert [e.hit for e in events] == [False, True, True, False]
    assert all(e.function.endswith("double") for e in events[:3])
    assert events[0].entry == events[1].entry != events[2].entry
    assert events[0].entry.is_dir() and events[0].entry.resolve().is_relative_to(tmp_path.resolve())
    assert all(e.seconds is not None and e.seconds >= 0 for e in events)
    assert [(n.hit, n.seconds) for n in notices] == [(e.hit, None) for e in events]
    assert inner == [events[2]]
    assert len(runs) == 5                                        # keys 0, 1, None, 2 and 3

    def refuse(event):
        if not event.hit:
            raise LookupError(event.function)

    with pytest.raises(LookupError, match="double"), cache.observe(lambda e: None, before=refuse):
        cached_call(double, {"k": 4}, 1)                         # refused before it runs
    assert len(runs) == 5
    with cache.observe(lambda e: None, before=refuse):
        assert cached_call(double, {"k": 1}, 1) == 2             # a hit is allowed


@pytest.mark.filterwarnings("ignore::UserWarning")   # joblib cannot check a partial's name for collisions
def test_a_memoised_callable_without_a_qualified_name_is_reported_as_a_question_mark(monkeypatch, tmp_path):
    from functools import partial

    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    add_one = cache.memory().cache(partial(np.add, 1))
    events = []
    with cache.observe(events.append):
        assert add_one(2) == add_one(2) == 3
    assert [(e.function, e.hit) for e in events] == [("?", False), ("?", True)]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PROBELIB_CACHE")
    assert cache.cache_dir().name in (".cache", "probelib")
    target = tmp_path / "new" / "dir"
    assert cache.check_cache_dir(target) == target
    assert (target.stat().st_mode & 0o777) == 0o700


def test_cache_dir_is_the_checkouts_or_the_home_directorys(monkeypatch, tmp_path):
    """Without PROBELIB_CACHE: <repository>/.cache in a checkout (pyproject.toml beside the
    package), else ~/.cache/probelib (an installed package)."""
    monkeypatch.delenv("PROBELIB_CACHE", raising=False)
    repo = tmp_path / "repo"
    (repo / "probelib").mkdir(parents=True)
    monkeypatch.setattr(cache, "__file__", str(repo / "probelib" / "cache.py"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "probelib"
    (repo / "pyproject.toml").write_text("[project]\n")
    assert cache.cache_dir() == repo / ".cache"


def test_a_cache_directory_owned_by_another_account_is_refused(monkeypatch, tmp_path):
    target = tmp_path / "c"
    owner = cache.check_cache_dir(target).stat().st_uid
    monkeypatch.setattr(cache.os, "getuid", lambda: owner + 1)       # as seen by another account
    with pytest.raises(cache.UnsafeCacheError,
                       match=rf"^refusing the cache directory {target}: it is owned by another account "
                             rf"\(uid {owner}\)\. Cached results are pickles"):
        cache.check_cache_dir(target)
    monkeypatch.setenv(cache.TRUST_SHARED, "1")
    assert cache.check_cache_dir(target) == target


def test_modules_inside_containers_are_keyed_by_content_not_by_name(monkeypatch, tmp_path):
    """A network passed directly, in a dict or in a list enters the key by what it computes: a
    renamed copy with the same weights is a hit, other weights a miss."""
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    calls = []

    def weight_sum(key, nets):
        calls.append(1)
        leaves = nets.values() if isinstance(nets, dict) else nets if isinstance(nets, list) else [nets]
        return float(sum(float(n.weight.detach().sum()) for n in leaves))

    for wrap in (lambda n: n, lambda n: {"net": n}, lambda n: [n]):
        calls.clear()
        a, renamed, other = Lin(0), Lin(0), Lin(1)
        a.name, renamed.name = "first", "second"
        first = cached_call(weight_sum, {"k": 1}, wrap(a))
        assert cached_call(weight_sum, {"k": 1}, wrap(renamed)) == first and len(calls) == 1
        assert cached_call(weight_sum, {"k": 1}, wrap(other)) != first and len(calls) == 2


def test_memory_of_a_given_location_and_its_memoised_functions(monkeypatch, tmp_path):
    """memory(location) caches there, not in the default directory; a memoised function passes
    keyword arguments through (observed or not), keeps joblib's attributes, and the decorator
    form with arguments works; the repair path is reported as computed."""
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "default"))
    here = tmp_path / "here"
    here.mkdir(mode=0o700)
    mem = cache.memory(here)
    assert Path(mem.location).resolve() == here.resolve()
    calls = []

    def power(x, p=1):
        calls.append((x, p))
        return x ** p

    f = mem.cache(power)
    assert f(3, p=2) == 9 and f(3, p=3) == 27 and f(3, p=2) == 9 and len(calls) == 2
    assert f.func is power and callable(f.clear)                     # joblib's attributes
    events = []
    with cache.observe(events.append):
        assert f(2, p=5) == 32 and f(2, p=5) == 32
        assert f.call(2, p=5)[0] == 32                                # joblib's recompute-and-store
    assert [e.hit for e in events] == [False, True, False]
    assert len(calls) == 4 and calls[-1] == (2, 5)
    assert all(0 <= e.seconds < 5 for e in events)
    assert not (tmp_path / "default").exists() or not any((tmp_path / "default").rglob("output.pkl"))

    @cache.memory(here).cache(ignore=["verbose"])
    def halve(x, verbose=False):
        calls.append(("halve", x))
        return x / 2

    assert halve(4, verbose=True) == 2 and halve(4) == 2 and calls.count(("halve", 4)) == 1
