"""The cached layer over the probes (probelib.probes.cached, probes.classification).

Properties, on tiny linear models (3 x 4 x 4 images):

- each function's cache key is pinned: what it holds is the description of the computation (a
  changed key silently recomputes every user's cache, a key that forgets an argument silently
  serves another computation's result);
- every argument that changes a result gives a new entry, every argument that does not (device,
  batch size, progress) is served from the cache, and without a key nothing is cached;
- a cached value that is not what the function returns (type, shape) is recomputed, and a
  function that returns such a value is an error;
- the cached functions compute what the probes they wrap compute, pass their arguments on, and
  never show a progress bar of their own inner calls.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import probelib.probes.cached as cached
import probelib.probes.classification as classification
from probelib import cache, probes
from probelib.cache import array_digest, module_key
from probelib.data.dataset import Dataset
from probelib.fitting import PanelFit, dataset_digest
from probelib.probes import _common
from probelib.probes.cached import (cached_block_subspaces, cached_control, cached_control_of, cached_fgsm,
                                    cached_fixed_effect, cached_optimize, cached_pgd, cached_responses,
                                    cached_transfer_with_control, input_gradients, panel_fgsm,
                                    panel_fixed_effect, panel_pgd, panel_subspaces, panel_transfer,
                                    probe_panel, probe_units, sweep_panel, transfer_with_control)
from probelib.probes.classification import ClassificationRobustness, classification_robustness
from probelib.probes.transfer import TransferResult

SIDE = 4
SHAPE = (3, SIDE, SIDE)
D = 3 * SIDE * SIDE


class Lin(nn.Module):
    """r = W vec(x) (U outputs); rows of W seeded by ``seed``; ``zero_rows`` outputs are constant."""

    def __init__(self, seed: int = 0, n_units: int = 3, zero_rows: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n_units, D, generator=g)
        w[n_units - zero_rows:] = 0
        self.weight = nn.Parameter(w)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


class Classifier(nn.Module):
    """A linear classifier over C classes that ignores pixel 0 of channel 0 (an encoder's ``classify``)."""

    def __init__(self, seed: int = 0, n_classes: int = 4):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.randn(n_classes, D, generator=g) * 0.5
        w[:, 0] = 0
        self.weight = nn.Parameter(w)

    def classify(self, x):
        return x.flatten(1) @ self.weight.T

    def forward(self, x):
        return self.classify(x)


def _images(n: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, (n, *SHAPE)).astype(np.float32)


def _dataset(n: int = 6) -> Dataset:
    rng = np.random.default_rng(1)
    return Dataset(stimuli=_images(n, seed=2), responses={"FFA": rng.normal(size=(n, 3)).astype(np.float32)},
                   image_ids=np.arange(n), split={"train": np.arange(3), "test": np.arange(3, n)})


def _panel() -> PanelFit:
    ds = _dataset()
    fit = PanelFit(ds, dataset_digest(ds), "ridge", {"alphas": [1.0]}, seed=4)
    fit.models[("a", "FFA")] = Lin(0)
    fit.models[("b", "FFA")] = Lin(1)
    return fit


@dataclasses.dataclass
class Call:
    function: str        # the computation ("fgsm", "control", ...: its implementation's name)
    key: dict | None     # the key it was given (None: not cached)
    outcome: str         # "computed", "hit" (read from the cache) or "uncached"


@pytest.fixture
def calls(monkeypatch) -> list[Call]:
    """Every cached call the two modules make, with its key and whether it was computed."""
    log: list[Call] = []
    for module in (cached, classification):
        real = module.cached_call

        def spy(impl, key, *args, real=real, **kwargs):
            events = []
            with cache.observe(events.append):
                out = real(impl, key, *args, **kwargs)
            outcome = "uncached" if key is None else ("hit" if events[-1].hit else "computed")
            log.append(Call(impl.__name__.strip("_").removesuffix("_impl"), key, outcome))
            return out

        monkeypatch.setattr(module, "cached_call", spy)
    return log


def _outcomes(calls: list[Call], *thunks) -> list[str]:
    """The outcome of the last cached call each thunk makes."""
    out = []
    for thunk in thunks:
        thunk()
        out.append(calls[-1].outcome)
    return out


def _probe_key(key: dict, attack: str, kwargs: dict) -> dict:
    return dict(key, attack=attack, version=2, kwargs={"store_perturbations": False, **kwargs})


def _image_key(x: np.ndarray) -> list:
    return [list(x.shape), array_digest(x)]


# ------------------------------------------------------------------------------ pinned keys

def test_the_probes_of_any_model_are_keyed_by_description_images_attack_and_arguments(calls):
    x, model = _images(), Lin()
    cached_fgsm(model, x, key={"m": 1}, eps=0.1, units=[1], device="cpu", progress=False, batch_size=2)
    cached_pgd(model, x, key={"m": 1}, eps=0.5, steps=2)
    cached_fixed_effect(model, x, key={"m": 1}, target_change=0.1, steps=2, max_iter=2)
    assert [(c.function, c.key) for c in calls] == [
        ("fgsm", _probe_key({"key": {"m": 1}, "images": _image_key(x)}, "fgsm", {"eps": 0.1, "units": [1]})),
        ("pgd", _probe_key({"key": {"m": 1}, "images": _image_key(x)}, "pgd", {"eps": 0.5, "steps": 2})),
        ("fixed_effect", _probe_key({"key": {"m": 1}, "images": _image_key(x)}, "fixed_effect",
                                    {"target_change": 0.1, "steps": 2, "max_iter": 2}))]
    assert [c.outcome for c in calls] == ["computed"] * 3


def test_the_probes_of_a_panel_are_keyed_by_the_fit_the_images_and_the_arguments(calls):
    fit = _panel()
    panel_fgsm(fit, "a", "FFA", eps=0.1)
    panel_pgd(fit, "b", "FFA", image_index=[0, 2], eps=0.5, steps=2)
    panel_fixed_effect(fit, "a", "FFA", image_index=np.array([5]), target_change=0.1, steps=2, max_iter=2)
    assert [(c.function, c.key) for c in calls] == [
        ("fgsm", _probe_key(dict(fit.key("a", "FFA"), images=[3, 4, 5]), "fgsm", {"eps": 0.1})),
        ("pgd", _probe_key(dict(fit.key("b", "FFA"), images=[0, 2]), "pgd", {"eps": 0.5, "steps": 2})),
        ("fixed_effect", _probe_key(dict(fit.key("a", "FFA"), images=[5]), "fixed_effect",
                                    {"target_change": 0.1, "steps": 2, "max_iter": 2}))]
    assert fit.key("a", "FFA") == {"dataset": fit.digest, "spec": "a", "roi": "FFA", "readout": "ridge",
                                   "readout_options": {"alphas": [1.0]}, "fit_seed": 4}


def test_the_controls_of_a_panel_are_keyed_by_the_probes_they_control(calls):
    fit = _panel()
    cached_control(fit, "a", "FFA", "random", [0.1, 0.2], control_eps=[0.2], seed=3)
    cached_control(fit, "b", "FFA", "shuffled", 0.1, image_index=[1, 2], direction="abs",
                   store_perturbations=True)
    probe_key = _probe_key(dict(fit.key("a", "FFA"), images=[3, 4, 5]), "fgsm",
                           {"eps": [0.1, 0.2], "direction": "decrease", "store_perturbations": True})
    assert [(c.function, c.key) for c in calls] == [
        ("fgsm", probe_key),
        ("control", {**fit.key("a", "FFA"), "images": [3, 4, 5], "eps": [0.1, 0.2], "control_eps": [0.2],
                     "direction": "decrease", "control": "random", "seed": 3, "store": False}),
        ("fgsm", _probe_key(dict(fit.key("b", "FFA"), images=[1, 2]), "fgsm",
                            {"eps": [0.1], "direction": "abs", "store_perturbations": True})),
        ("control", {**fit.key("b", "FFA"), "images": [1, 2], "eps": [0.1], "control_eps": [0.1],
                     "direction": "abs", "control": "shuffled", "seed": 0, "store": True})]
    sweep_panel(fit, [0.1, 0.2], controls={"random": [0.2]}, seed=3, progress=False)
    # per model: the targeted probes, the control's probes (the same entry) and the control; model
    # a's control is the one made above, model b's is new
    assert [(c.function, c.outcome) for c in calls[-6:]] == [
        ("fgsm", "hit"), ("fgsm", "hit"), ("control", "hit"), ("fgsm", "computed"), ("fgsm", "hit"),
        ("control", "computed")]
    assert calls[-1].key["spec"] == "b" and calls[-1].key["seed"] == 3


def test_the_probes_of_fitted_units_are_keyed_by_the_fit_and_the_images(calls):
    ds = _dataset()
    fit = SimpleNamespace(key={"fit": 1}, model=Lin(), dataset=ds)
    res = probe_units(fit, np.array([[0.0, 2.0]]), 0.1, batch_size=1)          # indices of any shape and type
    assert calls[-1].key == _probe_key({"key": {"fit": 1, "images": [0, 2]}, "images": _image_key(ds.stimuli[[0, 2]])},
                                       "fgsm", {"eps": [0.1], "direction": "decrease"})
    assert res.sensitivity.shape == (1, 2, 3) and res.sign_grad is None and res.deltas is None
    probe_units(fit, [0, 2], [0.1], direction="decrease")
    assert calls[-1].outcome == "hit"                                          # batch size: not in the key
    probe_units(fit, [0, 2], [0.1], direction="increase")
    assert calls[-1].outcome == "computed" and calls[-1].key["kwargs"]["direction"] == "increase"
    probe_units(fit, [0, 2], [0.1], cache=False)
    assert calls[-1].outcome == "uncached"


def test_transfers_and_subspaces_of_a_panel_are_keyed_by_every_model_they_use(calls):
    fit = _panel()
    made = {s: panel_pgd(fit, s, "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)
            for s in ("a", "b")}
    panel_transfer(fit, "FFA", {"a": made["a"]}, [3, 4], targets=["b"])
    assert calls[-1].function == "transfer"
    assert calls[-1].key == {"roi": "FFA", "models": {"b": fit.key("b", "FFA"), "a": fit.key("a", "FFA")},
                             "images": [3, 4], "transfer_version": 2}
    panel_subspaces(fit, ["a", "b"], "FFA", [3, 4], k=2, progress=False)
    assert [(c.function, c.key) for c in calls[-2:]] == [
        ("subspaces", {"roi": "FFA", "models": {s: fit.key(s, "FFA")}, "spec": s, "images": [3, 4]})
        for s in ("a", "b")]


def test_the_other_cached_functions_of_any_model_are_keyed_by_their_description(calls):
    x, model = _images(), Lin()
    probe = cached_fgsm(model, x, eps=0.1, store_perturbations=True)
    cached_control_of(model, x, probe, "shuffled", key={"p": 1})
    cached_control_of(model, x, probe, "random", key={"p": 1}, seed=2, store_perturbations=True)
    cached_optimize(model, x[0], 1, "minimize", key={"m": 1}, steps=2, seed=3, device="cpu", progress=True)
    cached_responses(model, x, key={"m": 2})
    input_gradients(model, x, units=[1], key={"m": 3})
    cached_transfer_with_control(model, probe, x, Lin(1), key={"t": 1})
    cached_block_subspaces(model, x, [2, 1], 1, key={"b": 1})
    assert [(c.function, c.key) for c in calls[1:]] == [
        ("control", {"key": {"p": 1}, "images": _image_key(x), "control": "shuffled", "seed": 0, "store": False}),
        ("control", {"key": {"p": 1}, "images": _image_key(x), "control": "random", "seed": 2, "store": True}),
        ("optimize", {"key": {"m": 1}, "settings": {"steps": 2, "seed": 3}}),
        ("responses", {"m": 2}),
        ("gradients", {"m": 3}),
        ("transfer_with_control", {"t": 1}),
        ("block_subspaces", {"b": 1, "k": 1, "widths": [2, 1]})]


def test_classification_robustness_is_keyed_by_the_encoder_images_budgets_and_labels(calls):
    x, clf = _images(), Classifier()
    classification_robustness(clf, x, np.float32(0.25), labels=[[1, 0, 2]], batch_size=2)
    assert calls[-1].key == {"encoder": module_key(clf), "images": array_digest(x), "eps": [0.25],
                             "labels": [1, 0, 2]}
    classification_robustness(clf, x, [0.25])
    assert calls[-1].key["labels"] is None and calls[-1].outcome == "computed"


# ------------------------------------------------------------------- what changes a key, what does not

def test_probes_of_any_model_hit_for_what_does_not_change_the_result_and_miss_for_what_does(calls):
    x, model = _images(), Lin()
    for fn, kw in ((cached_fgsm, {"eps": 0.1}), (cached_pgd, {"eps": 0.5, "steps": 2}),
                   (cached_fixed_effect, {"target_change": 0.1, "steps": 2, "max_iter": 2})):
        assert _outcomes(calls, lambda: fn(model, x, key={"m": 1}, **kw),
                         lambda: fn(model, x, key={"m": 1}, device="cpu", batch_size=1, progress=False, **kw),
                         lambda: fn(Lin(1), x, key={"m": 1}, **kw),              # other weights
                         lambda: fn(model, _images(seed=5), key={"m": 1}, **kw),  # other pixels
                         lambda: fn(model, x, key={"m": 2}, **kw),
                         lambda: fn(model, x, **kw)) == ["computed", "hit", "computed", "computed", "computed",
                                                          "uncached"], fn.__name__
    same = probes.fixed_effect(model, torch.from_numpy(x), 0.1, steps=2, max_iter=2)
    np.testing.assert_array_equal(cached_fixed_effect(model, x, target_change=0.1, steps=2, max_iter=2).eps, same.eps)


def test_probes_of_a_panel_miss_for_another_model_roi_or_image_and_serve_the_same_call(calls):
    fit = _panel()
    fit.models[("a", "PPA")] = Lin(0)
    fit.dataset.responses["PPA"] = fit.dataset.responses["FFA"]
    for fn in (panel_fgsm, panel_pgd):
        assert _outcomes(calls, lambda: fn(fit, "a", "FFA", eps=0.1),
                         lambda: fn(fit, "a", "FFA", image_index=[3, 4, 5], eps=0.1),   # the test split
                         lambda: fn(fit, "b", "FFA", eps=0.1),
                         lambda: fn(fit, "a", "PPA", eps=0.1),                          # same network, other ROI
                         lambda: fn(fit, "a", "FFA", image_index=[3, 4], eps=0.1)) == [
            "computed", "hit", "computed", "computed", "computed"], fn.__name__
    # the name of the attack is in the key: an FGSM and a PGD with the same arguments are two entries
    assert calls[0].key["attack"] == "fgsm" and calls[5].key["attack"] == "pgd"


def test_controls_hit_and_miss_by_their_arguments(calls):
    fit = _panel()
    base = {"image_index": None, "control_eps": None, "seed": 0, "direction": "decrease",
            "store_perturbations": False}
    variants = [{}, {"image_index": [3, 4, 5]}, {"control_eps": [0.1, 0.2]}, {"image_index": [3, 4]},
                {"control_eps": [0.2]}, {"seed": 1}, {"direction": "increase"}, {"store_perturbations": True}]
    got = _outcomes(calls, *[lambda v=v: cached_control(fit, "a", "FFA", "random", [0.1, 0.2], **{**base, **v})
                             for v in variants])
    assert got == ["computed", "hit", "hit"] + ["computed"] * 5
    assert cached_control(fit, "a", "FFA", "shuffled", [0.1, 0.2]).method == "shuffled"
    x, model = _images(), Lin()
    probe = cached_fgsm(model, x, eps=[0.1, 0.2], store_perturbations=True)
    other_probe = cached_fgsm(model, x, eps=[0.1, 0.3], store_perturbations=True)
    assert _outcomes(calls, lambda: cached_control_of(model, x, probe, "random", key={"p": 1}, seed=0),
                     lambda: cached_control_of(model, x, probe, "random", key={"p": 1}, batch_size=1, device="cpu"),
                     lambda: cached_control_of(model, x, other_probe, "random", key={"p": 1}),  # described by key
                     lambda: cached_control_of(model, x, probe, "random", key={"p": 2}),
                     lambda: cached_control_of(model, x, probe, "shuffled", key={"p": 1}),
                     lambda: cached_control_of(model, x, probe, "random", key={"p": 1}, seed=1),
                     lambda: cached_control_of(model, x, probe, "random", key={"p": 1}, store_perturbations=True),
                     lambda: cached_control_of(Lin(1), x, probe, "random", key={"p": 1}),
                     lambda: cached_control_of(model, x, probe, "random")) == [
        "computed", "hit", "hit", "computed", "computed", "computed", "computed", "computed", "uncached"]


def test_the_other_cached_functions_hit_and_miss_by_their_arguments(calls):
    x, model = _images(), Lin()
    assert _outcomes(calls, lambda: cached_optimize(model, x[0], 1, key={"m": 1}, steps=2),
                     lambda: cached_optimize(model, x[0], 1, "maximize", key={"m": 1}, steps=2, device="cpu"),
                     lambda: cached_optimize(model, x[0], 2, key={"m": 1}, steps=2),
                     lambda: cached_optimize(model, x[0], 1, "minimize", key={"m": 1}, steps=2),
                     lambda: cached_optimize(model, x[1], 1, key={"m": 1}, steps=2),
                     lambda: cached_optimize(model, x[0], 1, key={"m": 1}, steps=3),
                     lambda: cached_optimize(Lin(1), x[0], 1, key={"m": 1}, steps=2),
                     lambda: cached_optimize(model, x[0], 1, steps=2)) == [
        "computed", "hit"] + ["computed"] * 5 + ["uncached"]
    assert _outcomes(calls, lambda: cached_responses(model, x, key={"m": 1}),
                     lambda: cached_responses(model, x, key={"m": 1}, batch_size=1),
                     lambda: cached_responses(model, x[:2], key={"m": 1}),
                     lambda: cached_responses(Lin(1), x, key={"m": 1}),
                     lambda: cached_responses(model, x)) == ["computed", "hit", "computed", "computed", "uncached"]
    assert _outcomes(calls, lambda: input_gradients(model, x, key={"m": 1}),
                     lambda: input_gradients(model, x, key={"m": 1}, device="cpu"),
                     lambda: input_gradients(model, x, units=[1], key={"m": 1}),
                     lambda: input_gradients(Lin(1), x, key={"m": 1}),
                     lambda: input_gradients(model, x)) == ["computed", "hit", "computed", "computed", "uncached"]
    assert _outcomes(calls, lambda: cached_block_subspaces(model, x, [2, 1], 1, key={"b": 1}),
                     lambda: cached_block_subspaces(model, x, [2, 1], 1, key={"b": 1}, device="cpu"),
                     lambda: cached_block_subspaces(model, x, [1, 2], 1, key={"b": 1}),
                     lambda: cached_block_subspaces(model, x, [2, 1], 2, key={"b": 1}),
                     lambda: cached_block_subspaces(Lin(1), x, [2, 1], 1, key={"b": 1}),
                     lambda: cached_block_subspaces(model, x, [2, 1], 1)) == [
        "computed", "hit", "computed", "computed", "computed", "uncached"]


def test_transfer_with_control_is_keyed_by_source_target_images_and_seed_and_by_key_for_the_probe(calls):
    x, source, target = _images(), Lin(0), Lin(1)
    probe = cached_fgsm(source, x, eps=[0.1], store_perturbations=True)
    other_probe = cached_fgsm(source, x, eps=[0.2], store_perturbations=True)
    x4 = _images(seed=4)
    probe4 = cached_fgsm(source, x4, eps=[0.1], store_perturbations=True)
    assert _outcomes(calls, lambda: cached_transfer_with_control(source, probe, x, target, key={"t": 1}, seed=0),
                     lambda: cached_transfer_with_control(source, probe, x, target, key={"t": 1}, device="cpu",
                                                          batch_size=1),
                     lambda: cached_transfer_with_control(source, other_probe, x, target, key={"t": 1}),
                     lambda: cached_transfer_with_control(Lin(2), probe, x, target, key={"t": 1}),
                     lambda: cached_transfer_with_control(source, probe, x, Lin(3), key={"t": 1}),
                     lambda: cached_transfer_with_control(source, probe4, x4, target, key={"t": 1}),
                     lambda: cached_transfer_with_control(source, probe, x, target, key={"t": 1}, seed=1),
                     lambda: cached_transfer_with_control(source, probe, x, target)) == [
        "computed", "hit", "hit", "computed", "computed", "computed", "computed", "uncached"]
    moved, noise = cached_transfer_with_control(source, probe, x, target)
    direct_moved, direct_noise = transfer_with_control(probe, x, target)
    np.testing.assert_array_equal(moved, direct_moved.sensitivity)
    np.testing.assert_array_equal(noise, direct_noise.sensitivity)


def test_panel_transfer_and_subspaces_hit_for_device_and_batch_size_and_miss_for_the_rest(calls):
    fit = _panel()
    made = {s: panel_pgd(fit, s, "FFA", image_index=[3, 4], eps=[0.5, 1.0], steps=2, store_perturbations=True)
            for s in ("a", "b")}
    assert _outcomes(calls, lambda: panel_transfer(fit, "FFA", made, [3, 4], seed=0, eps_index=0),
                     lambda: panel_transfer(fit, "FFA", made, np.array([3, 4]), batch_size=1, device="cpu"),
                     lambda: panel_transfer(fit, "FFA", made, [3, 4], seed=1),
                     lambda: panel_transfer(fit, "FFA", made, [3, 4], eps_index=1),
                     lambda: panel_transfer(fit, "FFA", {"a": made["a"]}, [3, 4])) == [
        "computed", "hit", "computed", "computed", "computed"]
    assert _outcomes(calls, lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 1, progress=False),
                     lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 1, device="cpu", progress=False),
                     lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 2, progress=False),
                     lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 1, units=[0, 2], progress=False),
                     lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 1, method="randomized", progress=False),
                     lambda: panel_subspaces(fit, ["a"], "FFA", [3], 1, progress=False)) == [
        "computed", "hit", "computed", "computed", "computed", "computed"]


def test_classification_robustness_hits_for_the_batch_size_only(calls):
    x, clf = _images(), Classifier()
    assert _outcomes(calls, lambda: classification_robustness(clf, x, 0.1),
                     lambda: classification_robustness(clf, x, [0.1], batch_size=1),
                     lambda: classification_robustness(clf, x, 0.2),
                     lambda: classification_robustness(clf, x, 0.1, labels=[0, 1, 2]),
                     lambda: classification_robustness(clf, x[:2], 0.1),
                     lambda: classification_robustness(Classifier(1), x, 0.1),
                     lambda: classification_robustness(clf, x, 0.1, cache=False)) == [
        "computed", "hit", "computed", "computed", "computed", "computed", "uncached"]


def test_documented_default_seeds_and_options_are_the_ones_keyed(calls):
    """Called first with the documented default spelled out, then with the default: a cache hit."""
    x, model, fit = _images(), Lin(), _panel()
    probe = cached_fgsm(model, x, eps=[0.1], store_perturbations=True)
    made = {"a": panel_pgd(fit, "a", "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)}
    pairs = [
        (lambda: cached_control_of(model, x, probe, "random", key={"p": 1}, seed=0, store_perturbations=False),
         lambda: cached_control_of(model, x, probe, "random", key={"p": 1})),
        (lambda: cached_transfer_with_control(model, probe, x, Lin(1), key={"t": 1}, seed=0),
         lambda: cached_transfer_with_control(model, probe, x, Lin(1), key={"t": 1})),
        (lambda: panel_transfer(fit, "FFA", made, [3, 4], seed=0, eps_index=0),
         lambda: panel_transfer(fit, "FFA", made, [3, 4])),
        (lambda: cached_optimize(model, x[0], 1, "maximize", key={"m": 1}, steps=2),
         lambda: cached_optimize(model, x[0], 1, key={"m": 1}, steps=2)),
        (lambda: classification_robustness(Classifier(), x, 0.1, cache=True),
         lambda: classification_robustness(Classifier(), x, 0.1)),
        (lambda: probe_units(SimpleNamespace(key={"f": 1}, model=model, dataset=fit.dataset), [0], 0.1,
                             direction="decrease", cache=True),
         lambda: probe_units(SimpleNamespace(key={"f": 1}, model=model, dataset=fit.dataset), [0], 0.1)),
        (lambda: panel_subspaces(fit, ["a"], "FFA", [3], 1, method="exact", progress=False),
         lambda: panel_subspaces(fit, ["a"], "FFA", [3], 1, progress=False)),
    ]
    for spelled, default in pairs:
        assert _outcomes(calls, spelled, default) == ["computed", "hit"]


# ------------------------------------------------------------------------ vetting cached values

def _returning(value):
    def impl(*args, **kwargs):
        return value
    return impl


def _refused(monkeypatch, module, impl_name: str, value, call) -> None:
    """``call()`` with the implementation ``impl_name`` returning ``value`` is refused by its check."""
    real = getattr(module, impl_name)
    fake = _returning(value)
    fake.__wrapped__ = real          # its signature, for the key
    fake.__name__ = fake.__qualname__ = f"fake_{impl_name}_{type(value).__name__}_{id(value)}"
    monkeypatch.setattr(module, impl_name, fake)
    with pytest.warns(UserWarning, match="is not what it returns"), \
            pytest.raises(TypeError, match="fails its own check"):
        call()
    monkeypatch.setattr(module, impl_name, real)


def test_each_cached_function_refuses_a_value_that_is_not_its_result(monkeypatch):
    x, model, fit = _images(), Lin(), _panel()
    probe = cached_fgsm(model, x, eps=[0.1, 0.2], store_perturbations=True)
    small = cached_fgsm(model, x[:2], eps=[0.1, 0.2], store_perturbations=True)          # right type, other shape
    made = {"a": panel_pgd(fit, "a", "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)}
    cases = [
        ("_fgsm_impl", [small, "x"], lambda: cached_fgsm(model, x, key={"m": 1}, eps=0.1)),
        ("_fgsm_impl", [small, "x"], lambda: panel_fgsm(fit, "a", "FFA", eps=0.1)),
        ("_pgd_impl", [small, "x"], lambda: cached_pgd(model, x, key={"m": 1}, eps=0.1, steps=1)),
        ("_control_impl", [small, "x"], lambda: cached_control_of(model, x, probe, "random", key={"p": 1})),
        ("_control_impl", [small, "x"], lambda: cached_control(fit, "a", "FFA", "random", [0.1, 0.2])),
        ("_transfer_impl", ["x"], lambda: panel_transfer(fit, "FFA", made, [3, 4])),
        ("_subspaces_impl", ["x", (1, 2, 3), (np.zeros((1, D, 1)), np.zeros((2, 1))),
                             (np.zeros((2, D, 1)), np.zeros((1, 1))), (np.zeros((1, D, 1)), np.zeros((1, 1)))],
         lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 1, progress=False)),
        ("_gradients_impl", ["x", np.zeros((3, D)), np.zeros((2, 3, D))], lambda: input_gradients(model, x, key={"m": 1})),
        ("_optimize_impl", [small], lambda: cached_optimize(model, x[0], 1, key={"m": 1}, steps=2)),
        ("_responses_impl", ["x", np.zeros(3), np.zeros((2, 3))], lambda: cached_responses(model, x, key={"m": 1})),
        ("_block_subspaces_impl", ["x", [[]]], lambda: cached_block_subspaces(model, x, [3], 1, key={"b": 1})),
    ]
    for impl_name, values, call in cases:
        for value in values:
            _refused(monkeypatch, cached, impl_name, value, call)
    good = classification_robustness(Classifier(), x, 0.1, cache=False)
    for value in ["x", dataclasses.replace(good, clean_label=good.clean_label[:2])]:
        _refused(monkeypatch, classification, "_classification_impl", value,
                 lambda: classification_robustness(Classifier(), x, 0.1))


def test_every_cached_result_passes_its_own_check_when_read_back(calls):
    """Computed, then read from the cache: the second call is a hit and returns the same value."""
    x, model, fit = _images(), Lin(), _panel()
    probe = cached_fgsm(model, x, eps=[0.1], store_perturbations=True)
    made = {"a": panel_pgd(fit, "a", "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)}
    thunks = [lambda: cached_fgsm(model, x, key={"m": 1}, eps=0.1).sensitivity,
              lambda: cached_control_of(model, x, probe, "random", key={"p": 1}).sensitivity,
              lambda: cached_control(fit, "a", "FFA", "random", [0.1]).sensitivity,
              lambda: panel_transfer(fit, "FFA", made, [3, 4]).change,
              lambda: panel_subspaces(fit, ["a"], "FFA", [3, 4], 2, progress=False).bases,
              lambda: input_gradients(model, x, key={"m": 1}),
              lambda: cached_optimize(model, x[0], 1, key={"m": 1}, steps=2).images,
              lambda: cached_responses(model, x, key={"m": 1}),
              lambda: np.stack([b[0] for b in cached_block_subspaces(model, x, [3], 1, key={"b": 1})]),
              lambda: classification_robustness(Classifier(), x, 0.1).label_prob]
    for thunk in thunks:
        with warnings.catch_warnings():
            warnings.simplefilter("error")                                # no "recomputing it" warning
            first, second = thunk(), thunk()
        assert calls[-1].outcome == "hit"
        np.testing.assert_array_equal(first, second)


# ------------------------------------------------------------------------ what they compute

def test_panel_probes_compute_the_probe_of_the_fitted_model_at_the_test_images():
    fit = _panel()
    x = torch.from_numpy(fit.dataset.stimuli[3:6])
    got = panel_fgsm(fit, "b", "FFA", eps=[0.1], direction="abs")
    want = probes.fgsm(fit.models[("b", "FFA")], x, [0.1], direction="abs", store_perturbations=False)
    np.testing.assert_array_equal(got.sensitivity, want.sensitivity)
    assert got.sign_grad is None and got.deltas is None                    # not stored unless asked
    assert panel_pgd(fit, "a", "FFA", eps=0.5, steps=2).deltas is None
    kept = panel_pgd(fit, "a", "FFA", eps=0.5, steps=2, store_perturbations=True)
    assert kept.deltas is not None and kept.method == "pgd"
    fe = panel_fixed_effect(fit, "a", "FFA", target_change=0.1, steps=2, max_iter=2)
    np.testing.assert_array_equal(fe.images, fit.dataset.stimuli[3:6])


def test_probe_panel_runs_the_probe_on_every_model_with_its_arguments(capsys, monkeypatch):
    fit = _panel()
    out = probe_panel(fit, image_index=[0, 1], eps=[0.1], direction="increase", progress=False)
    assert list(out) == [("a", "FFA"), ("b", "FFA")]
    for (spec, roi), res in out.items():
        want = panel_fgsm(fit, spec, roi, image_index=[0, 1], eps=[0.1], direction="increase")
        np.testing.assert_array_equal(res.sensitivity, want.sensitivity)
        assert res.direction == "increase"
    pgds = probe_panel(fit, panel_pgd, eps=0.5, steps=2, progress=False)
    assert all(r.method == "pgd" and r.images.shape == (3, *SHAPE) for r in pgds.values())
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    capsys.readouterr()
    probe_panel(fit, panel_pgd, eps=0.5, steps=2)                              # a bar by default
    assert "\rpgd probes:" in capsys.readouterr().err
    probe_panel(fit, lambda f, s, r, image_index=None: s, progress=True)      # a probe without a panel_ name
    assert "\r<lambda> probes:" in capsys.readouterr().err
    probe_panel(fit, functools.partial(panel_fgsm, eps=0.1), progress=True)    # a probe without a name
    assert "\rprobe probes:" in capsys.readouterr().err
    probe_panel(fit, eps=0.1, progress=False)
    assert capsys.readouterr().err == ""


def test_sweeps_pass_seed_direction_and_budgets_to_probes_and_controls():
    fit = _panel()
    sweep = sweep_panel(fit, [0.1, 0.2], controls={"random": [0.2], "shuffled": None}, seed=5,
                        direction="increase", store=("shuffled",), progress=False)
    entry = sweep[("a", "FFA")]
    assert list(entry) == ["targeted", "random", "shuffled"]
    assert entry["targeted"].direction == "increase" and entry["targeted"].sign_grad is not None
    want = cached_control(fit, "a", "FFA", "random", [0.1, 0.2], control_eps=[0.2], seed=5, direction="increase")
    np.testing.assert_array_equal(entry["random"].sensitivity, want.sensitivity)
    assert entry["random"].sensitivity.shape == (1, 3, 3) and entry["random"].deltas is None
    assert entry["shuffled"].sensitivity.shape == (2, 3, 3) and entry["shuffled"].deltas is not None
    other_seed = cached_control(fit, "a", "FFA", "random", [0.1, 0.2], control_eps=[0.2], seed=6, direction="increase")
    assert not np.array_equal(other_seed.sensitivity, want.sensitivity)
    names = sweep_panel(fit, 0.1, controls=("random",), progress=False)[("b", "FFA")]
    assert list(names) == ["targeted", "random"] and names["targeted"].direction == "decrease"


def test_controls_are_the_probes_controls_on_the_same_images():
    fit = _panel()
    res = cached_control(fit, "a", "FFA", "random", [0.1, 0.2], image_index=[0, 2], seed=2, direction="abs")
    probe = panel_fgsm(fit, "a", "FFA", image_index=[0, 2], eps=[0.1, 0.2], direction="abs",
                       store_perturbations=True)
    want = probes.random_control(fit.models[("a", "FFA")], torch.from_numpy(fit.dataset.stimuli[[0, 2]]), probe,
                                 seed=2, store_perturbations=False)
    np.testing.assert_array_equal(res.sensitivity, want.sensitivity)
    assert res.deltas is None and res.direction == "abs"
    stored = cached_control(fit, "a", "FFA", "random", [0.1, 0.2], image_index=[0, 2], seed=2,
                            direction="abs", store_perturbations=True)
    assert stored.deltas is not None
    np.testing.assert_array_equal(stored.sensitivity, res.sensitivity)       # storing does not change it
    with pytest.raises(ValueError, match=r"^unknown control 'blur'; valid: shuffled, random$"):
        cached_control(fit, "a", "FFA", "blur", 0.1)
    with pytest.raises(ValueError, match=r"^unknown control 'blur'; valid: shuffled, random$"):
        cached_control_of(Lin(), _images(), probe, "blur")
    x = _images()
    probe = cached_fgsm(Lin(), x, eps=[0.1], store_perturbations=True)
    kept = cached_control_of(Lin(), x, probe, "random", store_perturbations=True)
    assert kept.deltas is not None and cached_control_of(Lin(), x, probe, "random").deltas is None


def test_transfer_with_control_transfers_the_probe_and_draws_noise_of_its_size():
    x, source, target = _images(), Lin(0), Lin(1)
    probe = cached_fgsm(source, x, eps=[0.1], store_perturbations=True)
    moved, noise = transfer_with_control(probe, x.astype(np.float64), target)   # any float images
    want = probes.transfer(probe, torch.from_numpy(x), target)
    np.testing.assert_array_equal(moved.sensitivity, want.sensitivity)
    assert noise.method == "random" and noise.deltas is None and moved.deltas is None
    default = probes.random_control(target, torch.from_numpy(x), probe, seed=0)
    np.testing.assert_array_equal(noise.sensitivity, default.sensitivity)
    other = transfer_with_control(probe, x, target, seed=1)[1]
    assert not np.array_equal(other.sensitivity, noise.sensitivity)


def test_panel_transfer_uses_the_probes_at_the_chosen_budget_and_names_its_roi():
    fit = _panel()
    made = {s: panel_pgd(fit, s, "FFA", image_index=[3, 4], eps=[0.5, 1.0], steps=2, store_perturbations=True)
            for s in ("a", "b")}
    first = panel_transfer(fit, "FFA", made, [3, 4])
    second = panel_transfer(fit, "FFA", made, [3, 4], eps_index=1)
    assert isinstance(first, TransferResult) and first.roi == "FFA" and first.names == ["a", "b"]
    assert (second.probe_norm > first.probe_norm).all()
    only_b = panel_transfer(fit, "FFA", {"b": made["b"]}, [3, 4], targets=["a"])
    assert only_b.names == ["a", "b"] and only_b.sources == ["b"]


def test_panel_transfer_errors_name_the_problem():
    fit = _panel()
    made = {s: panel_pgd(fit, s, "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)
            for s in ("a", "b")}
    with pytest.raises(ValueError, match=r"^no fitted model for \['c'\] in ROI 'FFA'$"):
        panel_transfer(fit, "FFA", made, [3, 4], targets=["c"])
    with pytest.raises(ValueError, match=r"^probes is empty: give the probes of at least one source model$"):
        panel_transfer(fit, "FFA", {}, [3, 4], targets=["a"])
    turned = dataclasses.replace(made["b"], direction="increase")        # same units, other direction
    with pytest.raises(ValueError, match=r"^all probes must target the same units with the same direction$"):
        panel_transfer(fit, "FFA", {"a": made["a"], "b": turned}, [3, 4])
    with pytest.raises(ValueError, match=r"^the probes of 'a' were not made for the images image_index$"):
        panel_transfer(fit, "FFA", made, [3, 5])
    with pytest.raises(ValueError, match=r"^the probes of 'a' were not made for the images image_index$"):
        panel_transfer(fit, "FFA", made, [3])


def test_panel_subspaces_units_k_bounds_and_fields():
    fit = _panel()
    sub = panel_subspaces(fit, ["a", "b"], "FFA", np.array([3, 4]), 2, units=np.array([[0.0, 2.0]]), progress=False)
    assert sub.names == ["a", "b"] and sub.roi == "FFA" and sub.units.tolist() == [0, 2]
    assert sub.image_index.tolist() == [3, 4] and sub.image_shape == SHAPE
    assert sub.bases.shape == (2, 2, D, 2) and sub.bases.dtype == np.float32
    assert sub.singular_values.shape == (2, 2, 2) and sub.singular_values.dtype == np.float64
    w = fit.models[("a", "FFA")].weight.detach().numpy()[[0, 2]].astype(np.float64)
    np.testing.assert_allclose(sub.singular_values[0, 0], np.linalg.svd(w, compute_uv=False), rtol=1e-5)
    full = panel_subspaces(fit, ["a"], "FFA", [3], 3, progress=False)
    assert full.units.tolist() == [0, 1, 2]
    np.testing.assert_allclose(full.singular_values[0, 0],
                               np.linalg.svd(fit.models[("a", "FFA")].weight.detach().numpy().astype(np.float64),
                                             compute_uv=False), rtol=1e-5)
    assert panel_subspaces(fit, ["a"], "FFA", [3], 1, progress=False).bases.shape == (1, 1, D, 1)
    for k in (0, 3):
        with pytest.raises(ValueError, match=rf"^k must be in \[1, U = 2\] \(the Jacobian has U rows\); got {k}$"):
            panel_subspaces(fit, ["a"], "FFA", [3], k, units=[0, 2], progress=False)
    with pytest.raises(ValueError, match=r"^no fitted model for 'c' in ROI 'FFA'$"):
        panel_subspaces(fit, ["a", "c"], "FFA", [3], 1, progress=False)
    fit.models[("flat", "FFA")] = Lin(0, zero_rows=2)
    with pytest.raises(ValueError, match=r"^the Jacobian of 'flat' has rank 1 < k = 2 at an image$"), \
            pytest.warns(RuntimeWarning, match="exceeds the numerical rank 1"):
        panel_subspaces(fit, ["flat"], "FFA", [3], 2, progress=False)


def test_panel_subspaces_and_sweeps_show_a_named_bar_by_default_and_none_when_asked(capsys, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    fit = _panel()
    capsys.readouterr()
    panel_subspaces(fit, ["a"], "FFA", [3], 1)
    assert "\rsubspaces FFA:" in capsys.readouterr().err
    panel_subspaces(fit, ["a"], "FFA", [3], 1, progress=False)
    assert capsys.readouterr().err == ""
    sweep_panel(fit, 0.1, controls=("random",))
    assert "\rFGSM + controls:" in capsys.readouterr().err
    sweep_panel(fit, 0.1, controls=("random",), progress=False)
    assert capsys.readouterr().err == ""


def test_inner_calls_never_show_a_bar_even_for_large_work(capsys, monkeypatch):
    """The cached functions run their probes without a bar: not even the automatic one."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", 0)          # any work would show an automatic bar
    x, model, fit = _images(), Lin(), _panel()
    probe = cached_fgsm(model, x, eps=[0.1], store_perturbations=True)
    made = {"a": panel_pgd(fit, "a", "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)}
    capsys.readouterr()
    cached_fgsm(model, x, key={"m": 1}, eps=0.1)
    cached_pgd(model, x, eps=0.1, steps=1)
    cached_control(fit, "a", "FFA", "random", [0.1])
    cached_control_of(model, x, probe, "shuffled")
    transfer_with_control(probe, x, Lin(1))
    panel_transfer(fit, "FFA", made, [3, 4])
    cached_optimize(model, x[0], 1, steps=2)
    cached_responses(model, np.concatenate([x] * 30), batch_size=1)   # more than 4 batches
    assert capsys.readouterr().err == ""


def test_gradients_responses_and_block_subspaces_are_the_geometry_they_cache():
    x, model = _images(), Lin()
    w = model.weight.detach().numpy()
    grads = input_gradients(model, x, units=np.array([2]), key={"m": 1})
    assert grads.shape == (3, 1, D) and grads.dtype == np.float32
    np.testing.assert_allclose(grads[1, 0], w[2], rtol=1e-6)
    np.testing.assert_allclose(cached_responses(model, x, key={"m": 1}), x.reshape(3, -1) @ w.T, rtol=1e-5)
    with pytest.raises(ValueError, match=r"^images must have shape \(N, 3, H, W\); got \(3, 4, 4\)$"):
        cached_responses(model, x[0])
    blocks = cached_block_subspaces(model, x, [np.int64(2), 1], 1, key={"b": 1})
    assert len(blocks) == 3 and [b.shape for b in blocks[0]] == [(D, 1), (D, 1)]
    top = np.linalg.svd(w[:2].astype(np.float64))[2][0]
    assert abs(float(blocks[0][0][:, 0] @ top)) == pytest.approx(1.0, abs=1e-5)
    u_last = w[2] / np.linalg.norm(w[2])
    assert abs(float(blocks[2][1][:, 0] @ u_last)) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------ classification robustness

def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_classification_robustness_is_fgsm_on_the_cross_entropy_of_the_label():
    x, clf = _images(), Classifier()
    w = clf.weight.detach().numpy().astype(np.float64)
    labels = np.array([1, 0, 3])
    res = classification_robustness(clf, x, [0.0, 0.05, 0.6], labels=labels, batch_size=2)
    flat = x.reshape(3, -1).astype(np.float64)
    p = _softmax(flat @ w.T)
    np.testing.assert_array_equal(res.clean_label, labels)
    np.testing.assert_allclose(res.clean_prob, p[np.arange(3), labels], rtol=1e-5)
    # grad of CE wrt x = W^T (p - onehot); the step follows its sign, clamped to [0, 1]
    grad = (p - np.eye(4)[labels]) @ w
    for e, eps in enumerate([0.0, 0.05, 0.6]):
        adv = np.clip(flat + eps * np.sign(grad), 0, 1)
        q = _softmax(adv @ w.T)
        np.testing.assert_allclose(res.label_prob[e], q[np.arange(3), labels], rtol=1e-4)
        np.testing.assert_array_equal(res.adv_label[e], q.argmax(1))
    np.testing.assert_array_equal(res.eps, [0.0, 0.05, 0.6])
    assert res.clean_prob.dtype == res.label_prob.dtype == np.float64
    np.testing.assert_array_equal(res.label_prob[0], res.clean_prob.astype(np.float64))  # eps 0: no change
    assert (res.adv_label[0] == p.argmax(1)).all() and res.survival[0] == (p.argmax(1) == labels).mean()
    assert classification_robustness(clf, x, [0.0, 0.6], cache=False).survival.tolist()[0] == 1.0
    # the same per image whatever the batches (labels sliced per batch)
    for batch_size in (1, 3):
        again = classification_robustness(clf, x, [0.0, 0.05, 0.6], labels=labels, batch_size=batch_size,
                                          cache=False)
        np.testing.assert_allclose(again.label_prob, res.label_prob, rtol=1e-6)
        np.testing.assert_array_equal(again.clean_label, labels)
    wide = classification_robustness(clf, x.astype(np.float64), [0.0, 0.05, 0.6], labels=labels, cache=False)
    np.testing.assert_array_equal(wide.label_prob, res.label_prob)           # images of any float type
    own = classification_robustness(clf, x, 0.05, labels=np.array([[1.0, 0.0, 3.0]]), cache=False)
    np.testing.assert_array_equal(own.clean_label, labels)                  # labels of any shape and type
    mine = classification_robustness(clf, x, 0.05, cache=False)
    np.testing.assert_array_equal(mine.clean_label, p.argmax(1))              # default: its own decision
    assert isinstance(mine, ClassificationRobustness)


def test_classification_robustness_checks_its_inputs():
    x, clf = _images(), Classifier()
    edge = x.copy()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 0.0, 1.0
    classification_robustness(clf, edge, 0.0, cache=False)                  # pixels exactly 0 and 1: valid
    classification_robustness(clf, x, 0, cache=False)                        # eps 0: valid
    for bad in (x[0], x[:, :2]):
        with pytest.raises(ValueError, match=r"^images must have shape \(N, 3, H, W\); got \("):
            classification_robustness(clf, bad, 0.1)
    for low, high in ((-0.01, 0.5), (0.5, 1.01)):
        bad = x.copy()
        bad[1, 1, 1, 1], bad[2, 2, 2, 2] = low, high
        with pytest.raises(ValueError, match=r"^images must have pixels in \[0, 1\]$"):
            classification_robustness(clf, bad, 0.1)
    with pytest.raises(ValueError, match=r"^encoder has no ImageNet classifier \(classify method\)$"):
        classification_robustness(Lin(), x, 0.1)
    with pytest.raises(ValueError, match=r"^eps must be >= 0; got \[0.1, -0.1\]$"):
        classification_robustness(clf, x, [0.1, -0.1])


def test_classification_robustness_leaves_the_encoder_as_it_was():
    x, clf = _images(), Classifier()
    clf.train()
    classification_robustness(clf, x, 0.1, cache=False)
    assert clf.training
    clf.eval()
    classification_robustness(clf, x, 0.1, cache=False)
    assert not clf.training


def test_a_pixel_the_classifier_ignores_stays_finite_at_eps_zero():
    """The classifier ignores pixel 0 (zero gradient): its step is 0 * sign(0), never 0 / 0."""
    x, clf = _images(), Classifier()
    res = classification_robustness(clf, x, [0.0], cache=False)
    assert np.isfinite(res.label_prob).all()
    np.testing.assert_allclose(res.label_prob[0], res.clean_prob, rtol=1e-6)


# ------------------------------------------------------------------------ what reaches the computations

def _record(monkeypatch, owner, name: str) -> list[dict]:
    """Replace ``owner.name`` by a spy that records the arguments of each call (by parameter name)."""
    seen: list[dict] = []
    real = getattr(owner, name)
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        seen.append(dict(signature.bind(*args, **kwargs).arguments))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return seen


def test_device_batch_size_and_method_reach_the_computations(monkeypatch):
    """Arguments that do not change a result (so they are not in its key) still reach the
    computation: the device it runs on, the batch size it fits in memory with, the method."""
    import probelib.model

    x, model, fit = _images(), Lin(), _panel()
    probe = cached_fgsm(model, x, eps=[0.1], store_perturbations=True)
    made = {"a": panel_pgd(fit, "a", "FFA", image_index=[3, 4], eps=0.5, steps=2, store_perturbations=True)}
    subspaces = _record(monkeypatch, cached, "perturbation_subspace")
    panel_subspaces(fit, ["a"], "FFA", [3], 2, units=[0, 2], method="randomized", device="cpu", progress=False)
    assert [(s["method"], s["units"], s["device"]) for s in subspaces] == [("randomized", [0, 2], "cpu")]
    gradients = _record(monkeypatch, cached, "jacobian")
    input_gradients(model, x[:1], units=[1], key={"m": 1}, device="cpu")
    assert [(g["units"], g["device"]) for g in gradients] == [([1], "cpu")]
    blocks = _record(monkeypatch, cached, "block_subspaces")
    cached_block_subspaces(model, x, [2, 1], 1, key={"b": 1}, device="cpu")
    assert blocks[-1]["device"] == "cpu"
    transfers = _record(monkeypatch, cached, "evaluate_transfer")
    panel_transfer(fit, "FFA", made, [3, 4], batch_size=3, device="cpu")
    assert (transfers[-1]["batch_size"], transfers[-1]["device"], transfers[-1]["roi"]) == (3, "cpu", "FFA")
    moved, noise = _record(monkeypatch, probes, "transfer"), _record(monkeypatch, probes, "random_control")
    transfer_with_control(probe, x, Lin(1), device="cpu", batch_size=2)
    cached_transfer_with_control(model, probe, x, Lin(1), key={"t": 1}, device="cpu", batch_size=2)
    assert [(c["device"], c["batch_size"]) for c in moved + noise] == [("cpu", 2)] * 4
    cached_control_of(model, x, probe, "random", key={"p": 1}, device="cpu", batch_size=2)
    assert (noise[-1]["device"], noise[-1]["batch_size"]) == ("cpu", 2)
    passes = _record(monkeypatch, probelib.model, "batched")
    cached_responses(model, x, key={"m": 1}, batch_size=2)
    assert passes[-1]["batch_size"] == 2
    fgsms = _record(monkeypatch, probes, "fgsm")
    probe_units(SimpleNamespace(key={"f": 1}, model=model, dataset=fit.dataset), [0, 2], 0.1, batch_size=1)
    assert fgsms[-1]["batch_size"] == 1
