"""Probes, controls, transfers, subspaces and gradients cached on disk by content.

Every expensive call of the book, of the study layer (:mod:`probelib.study`) and of
:func:`probelib.score` goes through one of these functions; each names what it computes (no
dispatch on a string) and is cached by :func:`probelib.cache.cached_call`, keyed by a description
of the model, the image content and every argument that changes the result.

- Any model: :func:`cached_fgsm`, :func:`cached_pgd`, :func:`cached_fixed_effect` (``key``: a
  JSON-able description of the model), :func:`cached_optimize`, :func:`cached_responses`,
  :func:`input_gradients`.
- The models ``(spec, roi)`` of a :class:`~probelib.fitting.PanelFit`, keyed by the fit:
  :func:`panel_fgsm`, :func:`panel_pgd`, :func:`panel_fixed_effect`, :func:`probe_panel`,
  :func:`cached_control`, :func:`sweep_panel` (FGSM with its controls), :func:`panel_transfer`,
  :func:`panel_subspaces`.
- The multi-output model of a :class:`~probelib.fitting.UnitFit`: :func:`probe_units`.

Shapes: images (N, 3, H, W) float32 in [0, 1]; a sweep is a dict ``(model spec, ROI) ->
{"targeted": ProbeResult, "shuffled": ProbeResult, "random": ProbeResult}`` whose
``sensitivity`` is (n_eps, N images, n_units) in response units.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .._checks import as_float32_array
from .._progress import progress_bar
from ..cache import array_digest, cached_call
from ..fitting import PanelFit, UnitFit
from ..geometry import SubspacePanel, block_subspaces, jacobian, perturbation_subspace
from .. import probes  # the probes are looked up at call time (tests replace them)
from .results import FixedEffectResult, OptimizationResult, ProbeResult, subset_eps
from .transfer import TransferResult, evaluate_transfer, probe_deltas

#: Part of every probe cache key; raise it when probelib.probes changes its results for the same
#: arguments (joblib only sees the code of the cached functions). 2: PGD shares its step-0 pass.
PROBE_CACHE_VERSION = 2
CONTROLS = ("shuffled", "random")
#: keyword arguments of the probes that do not change their results (left out of cache keys)
NOT_IN_KEY = ("device", "progress", "batch_size")


# ----------------------------------------------------------------------------------------------
# Probes of any model
# ----------------------------------------------------------------------------------------------

def _fgsm_impl(key: dict, model, images: np.ndarray, kwargs: dict) -> ProbeResult:
    return probes.fgsm(model, torch.from_numpy(images), **kwargs)


def _pgd_impl(key: dict, model, images: np.ndarray, kwargs: dict) -> ProbeResult:
    return probes.pgd(model, torch.from_numpy(images), **kwargs)


def _fixed_effect_impl(key: dict, model, images: np.ndarray, kwargs: dict) -> FixedEffectResult:
    return probes.fixed_effect(model, torch.from_numpy(images), **kwargs)


def _run_probe(impl: Callable, name: str, key: dict | None, model, images: np.ndarray, kwargs: dict):
    """``impl(key, model, images, kwargs)`` cached on disk unless ``key`` is None.

    ``key`` must identify the model and the images (N, 3, H, W) float32; the probe's name and its
    keyword arguments (all but those in :data:`NOT_IN_KEY`) are added to it. Perturbations are not
    kept unless ``store_perturbations=True`` (they can be large).
    """
    kwargs = {"progress": False, "store_perturbations": False, **kwargs}
    if key is not None:
        key = dict(key, attack=name, version=PROBE_CACHE_VERSION,
                   kwargs={k: v for k, v in kwargs.items() if k not in NOT_IN_KEY})
    return cached_call(impl, key, model, images, kwargs, ignore=("kwargs",),
                       check=lambda r: (isinstance(r, (ProbeResult, FixedEffectResult))
                                        and r.images.shape == images.shape))


def _model_key(key: Mapping | None, x: np.ndarray) -> dict | None:
    return None if key is None else {"key": dict(key), "images": [list(x.shape), array_digest(x)]}


def cached_fgsm(model: nn.Module, images, key: Mapping | None = None, **kwargs) -> ProbeResult:
    """:func:`probelib.probes.fgsm` on any model at ``images`` (N, 3, H, W) in [0, 1], cached on disk.

    ``key``, a JSON-able description of the model, keys the cache together with the image content
    and every keyword argument (``eps``, ``units``, ``direction`` ...); without ``key`` nothing is
    cached. Perturbations are not kept unless ``store_perturbations=True``.
    """
    x = as_float32_array(images)
    return _run_probe(_fgsm_impl, "fgsm", _model_key(key, x), model, x, kwargs)


def cached_pgd(model: nn.Module, images, key: Mapping | None = None, **kwargs) -> ProbeResult:
    """:func:`probelib.probes.pgd` on any model, cached on disk as :func:`cached_fgsm` is."""
    x = as_float32_array(images)
    return _run_probe(_pgd_impl, "pgd", _model_key(key, x), model, x, kwargs)


def cached_fixed_effect(model: nn.Module, images, key: Mapping | None = None,
                        **kwargs) -> FixedEffectResult:
    """:func:`probelib.probes.fixed_effect` on any model, cached on disk as :func:`cached_fgsm` is."""
    x = as_float32_array(images)
    return _run_probe(_fixed_effect_impl, "fixed_effect", _model_key(key, x), model, x, kwargs)


# ----------------------------------------------------------------------------------------------
# Probes of a fitted panel
# ----------------------------------------------------------------------------------------------

def _panel_call(impl: Callable, name: str, fit: PanelFit, spec: str, roi: str, image_index, kwargs):
    index = np.asarray(fit.dataset.split["test"] if image_index is None else image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    key = dict(fit.key(spec, roi), images=index.tolist())
    return _run_probe(impl, name, key, fit.models[(spec, roi)], images, kwargs)


def panel_fgsm(fit: PanelFit, spec: str, roi: str, image_index=None, **kwargs) -> ProbeResult:
    """:func:`probelib.probes.fgsm` of the model ``(spec, roi)`` of ``fit`` at the test images (or
    ``image_index``), cached on disk.

    ``kwargs`` go to the probe (``eps``, ``units``, ``direction`` ...). Perturbations are not
    stored unless ``store_perturbations=True`` is passed (they can be large). The cache key holds
    the model (:meth:`PanelFit.key`: dataset content, spec, ROI, readout, its options and the fit
    seed), the image indices, the probe and its arguments.
    """
    return _panel_call(_fgsm_impl, "fgsm", fit, spec, roi, image_index, kwargs)


def panel_pgd(fit: PanelFit, spec: str, roi: str, image_index=None, **kwargs) -> ProbeResult:
    """:func:`probelib.probes.pgd` of the model ``(spec, roi)``, cached as :func:`panel_fgsm` is
    (``eps``, ``norm``, ``steps``, ``units``, ``direction`` ...; see
    :func:`probelib.probes.budgets.l2_probe_settings` for the 2025 paper's settings)."""
    return _panel_call(_pgd_impl, "pgd", fit, spec, roi, image_index, kwargs)


def panel_fixed_effect(fit: PanelFit, spec: str, roi: str, image_index=None,
                       **kwargs) -> FixedEffectResult:
    """:func:`probelib.probes.fixed_effect` of the model ``(spec, roi)``, cached as
    :func:`panel_fgsm` is."""
    return _panel_call(_fixed_effect_impl, "fixed_effect", fit, spec, roi, image_index, kwargs)


def probe_panel(fit: PanelFit, probe: Callable = panel_fgsm, image_index=None, progress: bool = True,
                **kwargs) -> dict[tuple[str, str], object]:
    """``probe(fit, spec, roi, image_index, **kwargs)`` (:func:`panel_fgsm`, :func:`panel_pgd` or
    :func:`panel_fixed_effect`) for every (model, ROI) of the panel; returns a dict of results."""
    out = {}
    name = getattr(probe, "__name__", "probe").removeprefix("panel_")
    for key in progress_bar(list(fit.models), desc=f"{name} probes", disable=not progress):
        out[key] = probe(fit, *key, image_index=image_index, **kwargs)
    return out


def _control_impl(key: dict, model, images: np.ndarray, probe: ProbeResult, control: str,
                  seed: int, store: bool, options: dict) -> ProbeResult:
    fn = {"shuffled": probes.shuffled_control, "random": probes.random_control}[control]
    return fn(model, torch.from_numpy(images), probe, seed=seed, store_perturbations=store,
              progress=False, **options)


def cached_control(fit: PanelFit, spec: str, roi: str, control: str, eps, image_index=None,
                   control_eps=None, seed: int = 0, direction: str = "decrease",
                   store_perturbations: bool = False) -> ProbeResult:
    """A negative control (``"shuffled"`` or ``"random"``) of the FGSM probes of ``(spec, roi)``.

    The targeted probes are :func:`panel_fgsm` ``(fit, spec, roi,
    image_index, eps=eps, direction=direction, store_perturbations=True)`` (the same call
    :func:`sweep_panel` makes, so it is shared); the control is run at the budgets
    ``control_eps`` (a subset of ``eps``; default all) and cached on disk. The control's
    perturbations are kept only with ``store_perturbations`` (float32, n_eps x N x 3 x H x W per
    unit: keep it for the few probes a figure shows). The same ``seed`` gives the same control
    with or without storing. Returns a ProbeResult with sensitivity
    (n_control_eps, N, n_units) under the same definition (``direction``) as the probes.
    """
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    eps_grid = [float(e) for e in np.atleast_1d(eps)]
    probe = panel_fgsm(fit, spec, roi, image_index=image_index, eps=eps_grid,
                         direction=direction, store_perturbations=True)
    if control_eps is not None:
        probe = subset_eps(probe, control_eps)
    index = np.asarray(fit.dataset.split["test"] if image_index is None else image_index)
    key = {**fit.key(spec, roi), "images": index.tolist(), "eps": eps_grid,
           "control_eps": probe.eps.tolist(), "direction": direction, "control": control,
           "seed": int(seed), "store": bool(store_perturbations)}
    images = np.ascontiguousarray(probe.images)
    return cached_call(_control_impl, key, fit.models[(spec, roi)], images, probe, control,
                       int(seed), bool(store_perturbations), {},
                       ignore=("probe", "options"),
                       check=lambda r: (isinstance(r, ProbeResult)
                                        and r.sensitivity.shape == probe.sensitivity.shape))


def sweep_panel(fit: PanelFit, eps, image_index=None,
                controls: Mapping[str, object] | Sequence[str] = CONTROLS,
                seed: int = 0, direction: str = "decrease", store: Sequence[str] = (),
                progress: bool = True) -> dict[tuple[str, str], dict[str, ProbeResult]]:
    """FGSM (L-inf) probes of every (model, ROI) of ``fit`` over the grid ``eps``, with controls.

    controls : names in :data:`CONTROLS` (each run at every budget), or a mapping name ->
        budgets (a subset of ``eps``; ``None`` = all), e.g. ``{"random": None, "shuffled": [3/255]}``.
    store : names of the controls whose perturbations are kept (e.g. ``("shuffled",)`` to show
        them); the targeted probes always keep their gradient signs.
    Returns ``{(spec, roi): {"targeted": ProbeResult, <control>: ProbeResult, ...}}``; all parts
    are cached on disk (a warm re-run costs a few seconds).
    """
    plan = dict(controls) if isinstance(controls, Mapping) else {c: None for c in controls}
    eps_grid = [float(e) for e in np.atleast_1d(eps)]
    out: dict[tuple[str, str], dict[str, ProbeResult]] = {}
    for spec, roi in progress_bar(list(fit.models), desc="FGSM + controls", disable=not progress):
        entry = {"targeted": panel_fgsm(fit, spec, roi, image_index=image_index,
                                          eps=eps_grid, direction=direction,
                                          store_perturbations=True)}
        for name, budgets in plan.items():
            entry[name] = cached_control(fit, spec, roi, name, eps_grid, image_index=image_index,
                                         control_eps=budgets, seed=seed, direction=direction,
                                         store_perturbations=name in store)
        out[(spec, roi)] = entry
    return out


def probe_units(fit: UnitFit, image_index, eps, direction: str = "decrease", batch_size: int = 16,
                cache: bool = True) -> ProbeResult:
    """FGSM (L-inf) probes of every unit of ``fit`` at the images ``image_index`` (indices into the
    fit's dataset), for the budget ``eps`` or a grid of budgets (one gradient serves the grid).

    ``direction``: ``"decrease"`` (paper 1, ``s = r(x) - r(x + d)``), ``"increase"`` or ``"abs"``.
    Returns a :class:`~probelib.probes.ProbeResult`, ``sensitivity`` (n_eps, N, U) in response
    units; perturbations are not kept. Cached on disk under the fit's full key (``cache=True``).
    """
    index = np.asarray(image_index, dtype=int).reshape(-1)
    eps_list = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64))]
    key = dict(fit.key, images=index.tolist()) if cache else None
    return cached_fgsm(fit.model, fit.dataset.stimuli[index], key=key, eps=eps_list,
                       direction=direction, batch_size=int(batch_size), store_perturbations=False)


# ----------------------------------------------------------------------------------------------
# Transfer and subspaces of a fitted panel
# ----------------------------------------------------------------------------------------------

def _transfer_impl(key: dict, models, images, deltas, units, direction, seed, batch_size, device, roi):
    return evaluate_transfer(models, images, deltas, units, direction, seed, batch_size, device, roi)


def _fit_key(fit: PanelFit, specs: Sequence[str], roi: str) -> dict:
    return {"roi": roi, "models": {s: fit.key(s, roi) for s in specs}}


def panel_transfer(fit: PanelFit, roi: str, probes: Mapping[str, ProbeResult | FixedEffectResult],
                   image_index, targets: Sequence[str] | None = None, seed: int = 0,
                   eps_index: int = 0, batch_size: int = 32,
                   device: str | torch.device | None = None) -> TransferResult:
    """:func:`evaluate_transfer` for the models ``(spec, roi)`` of a fitted panel, cached on disk.

    probes : source spec -> result of :func:`panel_pgd` / :func:`panel_fgsm`
        (at one budget ``eps[eps_index]``) or :func:`panel_fixed_effect` made at the images
        ``image_index`` with ``store_perturbations=True``; all must probe the same units with one
        direction. targets : target specs (default: the sources; sources not listed are added).
    """
    specs = list(dict.fromkeys(list(targets) + list(probes))) if targets is not None else list(probes)
    missing = [s for s in specs if (s, roi) not in fit.models]
    if missing:
        raise ValueError(f"no fitted model for {missing} in ROI {roi!r}")
    if not probes:
        raise ValueError("probes is empty: give the probes of at least one source model")
    first = next(iter(probes.values()))
    units, direction = np.asarray(first.units), first.direction
    for s in probes:
        if not np.array_equal(probes[s].units, units) or probes[s].direction != direction:
            raise ValueError("all probes must target the same units with the same direction")
    index = np.asarray(image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    for s in probes:
        if probes[s].images.shape != images.shape or not np.allclose(probes[s].images, images, atol=1e-6):
            raise ValueError(f"the probes of {s!r} were not made for the images image_index")
    deltas = {s: probe_deltas(probes[s], eps_index) for s in probes}
    # the control is probelib.probes.random_control (draws named by image content) since version 2
    key = _fit_key(fit, specs, roi) | {"images": index.tolist(), "transfer_version": 2}
    models = {s: fit.models[(s, roi)] for s in specs}
    return cached_call(_transfer_impl, key, models, images, deltas, units, direction, int(seed),
                       batch_size, None if device is None else str(device), roi,
                       ignore=("batch_size", "device"),
                       check=lambda r: isinstance(r, TransferResult))


def _subspaces_impl(key: dict, model, images, k, units, method, device):
    bases, values = [], []
    for img in images:
        sub = perturbation_subspace(model, torch.from_numpy(img), k, method=method, units=units,
                                    device=device)
        if sub.k < k:
            raise ValueError(f"the Jacobian of {key['spec']!r} has rank {sub.k} < k = {k} at an image")
        bases.append(sub.basis.numpy().astype(np.float32))
        values.append(sub.singular_values.numpy().astype(np.float64))
    return np.stack(bases), np.stack(values)


def panel_subspaces(fit: PanelFit, specs: Sequence[str], roi: str, image_index, k: int,
                    units: Sequence[int] | np.ndarray | None = None, method: str = "exact",
                    device: str | torch.device | None = None, progress: bool = True) -> SubspacePanel:
    """Top-k perturbation subspace (:func:`probelib.geometry.perturbation_subspace`) of each
    model ``(spec, roi)`` of ``fit`` at each image of ``image_index``; cached on disk per model.

    units : outputs of the readout spanning the Jacobian (default all V of the ROI; k <= U).
    Cost per model and image: one forward and U backward passes (``method="exact"``).
    """
    index = np.asarray(image_index)
    images = np.ascontiguousarray(fit.dataset.stimuli[index])
    n_out = fit.dataset.responses[roi].shape[1]
    units_arr = np.arange(n_out) if units is None else np.asarray(units, dtype=np.int64).reshape(-1)
    if int(k) < 1 or int(k) > len(units_arr):
        raise ValueError(f"k must be in [1, U = {len(units_arr)}] (the Jacobian has U rows); got {k}")
    bases, values = [], []
    for spec in progress_bar(list(specs), desc=f"subspaces {roi}", disable=not progress):
        if (spec, roi) not in fit.models:
            raise ValueError(f"no fitted model for {spec!r} in ROI {roi!r}")
        key = _fit_key(fit, [spec], roi) | {"spec": spec, "images": index.tolist()}
        b, s = cached_call(_subspaces_impl, key, fit.models[(spec, roi)], images, int(k),
                           units_arr.tolist(), method, None if device is None else str(device),
                           ignore=("device",),
                           check=lambda r: (isinstance(r, tuple) and len(r) == 2
                                            and len(r[0]) == len(r[1]) == len(index)))
        bases.append(b)
        values.append(s)
    return SubspacePanel(names=list(specs), bases=np.stack(bases), singular_values=np.stack(values),
                         units=units_arr, image_index=index, image_shape=tuple(images.shape[1:]), roi=roi)


# ----------------------------------------------------------------------------------------------
# Gradients, trajectories and predictions of any model
# ----------------------------------------------------------------------------------------------

def _images(images) -> np.ndarray:
    """Images (N, 3, H, W) as a C-contiguous float32 numpy array (from numpy or torch)."""
    x = as_float32_array(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape (N, 3, H, W); got {x.shape}")
    return x


def _gradients_impl(key: dict, model: nn.Module, images: np.ndarray, units, device) -> np.ndarray:
    del key  # cache key only
    out = []
    for img in images:
        out.append(jacobian(model, torch.from_numpy(np.ascontiguousarray(img)), units=units,
                            device=device).numpy())
    return np.stack(out).astype(np.float32)


def input_gradients(model: nn.Module, images, units=None, key: Mapping | None = None,
                    device=None) -> np.ndarray:
    """Input gradients of the model's units at each image: (N, U, D) float32, D = 3·H·W.

    Row ``[n, u]`` is ``d r_u / d vec(x_n)`` (:func:`probelib.geometry.jacobian`, one forward
    and U backward passes per image). With ``key`` (a JSON-able description of the model, e.g.
    the dataset digest and the model spec) the result is cached on disk keyed by ``key``, the
    units and the image content.
    """
    x = _images(images)
    u = None if units is None else [int(i) for i in np.atleast_1d(units)]
    return cached_call(_gradients_impl, None if key is None else dict(key), model, x, u, device,
                       ignore=("device",),
                       check=lambda g: isinstance(g, np.ndarray) and g.ndim == 3 and len(g) == len(x))


def _optimize_impl(key: dict, model: nn.Module, image: np.ndarray, unit, mode: str,
                   kwargs: dict) -> OptimizationResult:
    del key  # cache key only
    fn = probes.maximize if mode == "maximize" else probes.minimize
    return fn(model, torch.from_numpy(np.ascontiguousarray(image)), unit, **kwargs)


def cached_optimize(model: nn.Module, image, unit, mode: str = "maximize", key: Mapping | None = None,
                    **kwargs) -> OptimizationResult:
    """:func:`probelib.probes.maximize` (``mode="maximize"``) or :func:`~probelib.probes.minimize`
    of ``unit`` from ``image`` (3, H, W), cached on disk.

    ``key`` is a JSON-able description of the model (e.g. dataset digest, spec, ROI, noise draws):
    the cache is keyed by it, the image content, ``unit``, ``mode`` and every keyword argument
    (``steps``, ``eps``, ``step_size``, ``jitter``, ``smoothness``, ``record_every``, ``seed`` ...).
    Without ``key`` nothing is cached.
    """
    if mode not in ("maximize", "minimize"):
        raise ValueError(f"mode must be 'maximize' or 'minimize'; got {mode!r}")
    x = as_float32_array(image)
    kwargs = {"progress": False, **kwargs}
    settings = {k: v for k, v in kwargs.items() if k not in NOT_IN_KEY}
    full = None if key is None else {"key": dict(key), "settings": settings}
    return cached_call(_optimize_impl, full, model, x, unit, mode, kwargs, ignore=("kwargs",),
                       check=lambda r: isinstance(r, OptimizationResult))


def _responses_impl(key: dict, model: nn.Module, images: np.ndarray, batch_size: int) -> np.ndarray:
    del key
    from ..model import batched
    return batched(model, torch.from_numpy(images), batch_size, progress=False)


def cached_responses(model: nn.Module, images, key: Mapping | None = None,
                     batch_size: int = 16) -> np.ndarray:
    """Responses (N, V) float32 of ``model`` to ``images`` (N, 3, H, W), without gradients;
    cached on disk by ``key`` (a JSON-able description of the model) and the image content."""
    x = _images(images)
    return cached_call(_responses_impl, None if key is None else dict(key), model, x, batch_size,
                       ignore=("batch_size",),
                       check=lambda r: isinstance(r, np.ndarray) and r.ndim == 2 and len(r) == len(x))


def cached_control_of(model: nn.Module, images, probe: ProbeResult, control: str,
                      key: Mapping | None = None, seed: int = 0, store_perturbations: bool = False,
                      **options) -> ProbeResult:
    """A negative control (``"shuffled"`` or ``"random"``, :mod:`probelib.probes.controls`) of
    ``probe`` (made on ``model`` at ``images``, perturbations kept), cached on disk.

    ``key`` must describe the model and how ``probe`` was made (the probe itself is not hashed);
    the image content, the control, ``seed`` and ``store_perturbations`` are added. ``options``
    (``device``, ``batch_size``) do not change the result.
    """
    if control not in CONTROLS:
        raise ValueError(f"unknown control {control!r}; valid: {', '.join(CONTROLS)}")
    x = as_float32_array(images)
    full = _model_key(key, x)
    if full is not None:
        full.update(control=control, seed=int(seed), store=bool(store_perturbations))
    return cached_call(_control_impl, full, model, x, probe, control, int(seed), bool(store_perturbations),
                       dict(options), ignore=("probe", "options"),
                       check=lambda r: (isinstance(r, ProbeResult)
                                        and r.sensitivity.shape == probe.sensitivity.shape))


def transfer_with_control(probe: ProbeResult, images, target: nn.Module, seed: int = 0, device=None,
                          batch_size: int = 32) -> tuple[ProbeResult, ProbeResult]:
    """What ``probe`` (perturbations kept) does to ``target`` (:func:`probelib.probes.transfer`),
    next to random noise of the same size (:func:`probelib.probes.random_control`, ``seed``).
    Returns ``(transferred, control)``, both with sensitivity (n_eps, N, n_units)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    moved = probes.transfer(probe, x, target, device=device, batch_size=batch_size, progress=False)
    noise = probes.random_control(target, x, probe, seed=seed, device=device, store_perturbations=False,
                                  progress=False, batch_size=batch_size)
    return moved, noise


def _transfer_with_control_impl(key: dict, source: nn.Module, target: nn.Module, images: np.ndarray,
                                probe: ProbeResult, seed: int, device, batch_size: int):
    del source  # part of the key (by content) only
    moved, noise = transfer_with_control(probe, images, target, seed, device, batch_size)
    return moved.sensitivity, noise.sensitivity


def cached_transfer_with_control(source: nn.Module, probe: ProbeResult, images, target: nn.Module,
                                 key: Mapping | None = None, seed: int = 0, device=None,
                                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """:func:`transfer_with_control` of the probes ``probe`` made on ``source``, cached on disk:
    returns the two sensitivities (n_eps, N, n_units). ``key`` must describe how ``probe`` was made
    from ``source`` (the source, the target and the images enter by content)."""
    x = as_float32_array(images)
    return cached_call(_transfer_with_control_impl, None if key is None else dict(key), source, target, x,
                       probe, int(seed), device, int(batch_size),
                       ignore=("probe", "device", "batch_size"))


def _block_subspaces_impl(key: dict, model: nn.Module, images: np.ndarray, widths, k: int, device):
    del key
    return block_subspaces(model, images, widths, k, device)


def cached_block_subspaces(model: nn.Module, images, widths: Sequence[int], k: int,
                           key: Mapping | None = None, device=None) -> list[list[np.ndarray]]:
    """:func:`probelib.geometry.block_subspaces`, cached on disk by ``key``, the model and the images."""
    x = as_float32_array(images)
    w = [int(v) for v in widths]
    full = None if key is None else {**dict(key), "k": int(k), "widths": w}
    return cached_call(_block_subspaces_impl, full, model, x, w, int(k), device,
                       ignore=("device",),
                       check=lambda r: isinstance(r, list) and len(r) == len(x))

