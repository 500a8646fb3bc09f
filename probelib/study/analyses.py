"""The analyses a study can ask for, each as units of work that make the chapters' cached calls.

Every analysis kind lists its parameters (defaults = the chapter's defaults), how it expands into
units, what each unit needs first, and how a unit runs. A unit's ``run`` calls the same cached
functions as the chapter named in ``chapter``, with the same arguments, so that the chapter
executed afterwards (same dataset, models, readout and parameters) finds every result in the
cache. Budgets: L-inf budgets in units of 1/255 (as chapter 3's ``eps``), L2 budgets for
224-pixel images (scaled to the image size by :func:`probelib.probes.budgets.scale_eps`).

Internal kinds ``dataset`` (load the data once, through its cache) and ``fit`` (encode every image
with one model, the features cached; readouts fitted and scored) come first; a study never lists
them, every analysis unit depends on them.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import spec as S
from .spec import DatasetSpec, FitSpec
from .units import Context, Unit, make_unit, note_files, nsd_cache_dir


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------

@dataclass
class Param:
    """A parameter of an analysis: default, type and meaning.

    Types: ``int`` (>= ``minimum``), ``number`` (> 0), ``numbers`` (non-empty list of numbers > 0),
    ``number_or_list`` (one unit per value), ``count`` (int >= 1 or ``"all"``), ``choice``,
    ``str`` (may be empty), ``models`` (a list of specs, ``"panel"`` or ``"trained"``).
    """

    default: Any
    type: str
    doc: str
    choices: tuple = ()
    minimum: int = 1

    def check(self, w, place: str, value: Any) -> Any:
        t = self.type
        if t == "int":
            return S._int(w, place, value, self.minimum)
        if t == "number":
            return _number(w, place, value)
        if t == "numbers":
            return S._list(w, place, value, _number)
        if t == "number_or_list":
            return S._list(w, place, value, _number) if isinstance(value, list) else _number(w, place, value)
        if t == "count":
            if value == "all":
                return "all"
            return S._int(w, place, value, 1)
        if t == "numbers_or_all":
            return "all" if value == "all" else S._list(w, place, value, _number)
        if t == "choice":
            return S._str(w, place, value, self.choices)
        if t == "str":
            if not isinstance(value, str):
                raise w.error(place, f"must be a string; got {value!r}")
            return value
        if t == "models":
            if not isinstance(value, (str, list)):
                raise w.error(place, f"must be a list of model specs, 'panel' or 'trained'; got {value!r}")
            return value  # resolved against the analysis's models by its validate()
        raise AssertionError(t)


def _number(w, place, value):
    """A positive number, kept as written (an int stays an int: 3/255 is then the chapter's 3/255)."""
    S._float(w, place, value)
    return value


def _count(value):
    return None if value == "all" else int(value)


# ------------------------------------------------------------------------------------------------
# Analysis kinds
# ------------------------------------------------------------------------------------------------

@dataclass
class Analysis:
    kind: str
    chapter: str
    doc: str
    params: dict[str, Param]
    expand: Callable[[Any, DatasetSpec], list[Unit]]
    needs: Callable[[Unit], list[Unit]]
    run: Callable[[Unit, Context], dict]
    summarize: Callable[[Unit, dict], dict]
    default_models: Any = "panel"
    validate: Callable = field(default=lambda w, place, params, models, rois: None)
    public: bool = True


def dataset_unit(d: DatasetSpec) -> Unit:
    return make_unit("dataset", d)


def fit_unit(d: DatasetSpec, fit: FitSpec, model: str, rois=()) -> Unit:
    return make_unit("fit", d, fit, (model,), rois=rois)


def _voxels(d: DatasetSpec) -> DatasetSpec:
    return d.variant(average_subjects=False)


def _mean(a) -> float:
    import numpy as np
    return float(np.mean(a))


# -- dataset ---------------------------------------------------------------------------------------

def _run_dataset(unit: Unit, ctx: Context) -> dict:
    from ..fitting import dataset_digest

    ds = ctx.dataset(unit.dataset)
    if unit.dataset.name == "nsd":
        from ..cache import cache_dir
        note_files(sorted(nsd_cache_dir(unit.dataset, cache_dir()).glob("*.npz")))
    return {"dataset_digest": dataset_digest(ds),
            "shape": {roi: list(r.shape) for roi, r in ds.responses.items()},
            "n_images": int(ds.n_images)}


DATASET = Analysis(
    "dataset", "-", "Load (and cache) the dataset.", {}, expand=lambda a, d: [dataset_unit(d)],
    # the voxel-wise variant after the ROI-mean one: they share the (cached) costly part
    needs=lambda u: [] if u.dataset.average_subjects else [dataset_unit(u.dataset.variant(average_subjects=True))],
    run=_run_dataset,
    summarize=lambda u, v: {"digest": v["dataset_digest"], "n_images": v["n_images"],
                            "responses": v["shape"]},
    public=False)


# -- fit ---------------------------------------------------------------------------------------------

def _run_fit(unit: Unit, ctx: Context) -> dict:
    ds = ctx.dataset(unit.dataset)
    rois = list(unit.rois) or list(ds.rois)
    fit = ctx.fit(unit.dataset, unit.fit, unit.models, rois)
    return {"predictivity": {roi: fit.predictivity[(unit.models[0], roi)] for roi in rois}}


FIT = Analysis(
    "fit", "-", "Encode every image with one model (features cached); fit and score its readouts.",
    {}, expand=lambda a, d: [], needs=lambda u: [dataset_unit(u.dataset)], run=_run_fit,
    summarize=lambda u, v: {f"r_{roi}": _mean(r) for roi, r in v["predictivity"].items()},
    public=False)


# -- fgsm_sweep (chapter 3) ----------------------------------------------------------------------------

def _expand_fgsm(a, d: DatasetSpec) -> list[Unit]:
    p = a.params
    example = p["example_model"] or a.models[0]
    out = []
    for spec in a.models:
        for roi in a.rois:
            params = {k: p[k] for k in ("eps", "eps_focus", "control_eps", "n_images", "direction")}
            params["store_shuffled"] = spec == example
            params["all_features"] = spec == example and roi == a.rois[0]
            out.append(make_unit("fgsm_sweep", d, a.fit, (spec,), roi, params))
    return out


def _validate_fgsm(w, place, p, models, rois):
    if p["eps_focus"] not in p["eps"]:
        raise w.error(f"{place} eps_focus", f"{p['eps_focus']} must be one of eps = {p['eps']}")
    if p["example_model"] and p["example_model"] not in models:
        raise w.error(f"{place} example_model", f"{p['example_model']!r} is not one of the analysis's "
                                                f"models {list(models)}")


def _run_fgsm(unit: Unit, ctx: Context) -> dict:
    from ..data import probe_images
    from ..model import extract_features
    from ..probes.cached import cached_control, sweep_panel

    p, (spec,), roi, seed = unit.parameters, unit.models, unit.roi, unit.dataset.seed
    ds = ctx.dataset(unit.dataset)
    fit = ctx.fit(unit.dataset, unit.fit, [spec], [roi])
    index = probe_images(ds, _count(p["n_images"]), seed=seed)
    eps, control_eps = p["eps"], None if p["control_eps"] == "all" else p["control_eps"]
    eps_grid = [e / 255 for e in eps]
    focus = eps_grid[list(eps).index(p["eps_focus"])]
    random_eps = [e / 255 for e in eps if control_eps is None or e in control_eps or e == p["eps_focus"]]
    sweep = sweep_panel(fit, eps_grid, index, controls={"random": random_eps, "shuffled": [focus]},
                        seed=seed, direction=p["direction"], progress=False)
    out = dict(sweep[(spec, roi)])
    if p["store_shuffled"]:  # the example probes of Figs 1C/D and 3A keep their perturbations
        out["shuffled_stored"] = cached_control(fit, spec, roi, "shuffled", eps_grid, index,
                                                control_eps=[focus], seed=seed,
                                                direction=p["direction"], store_perturbations=True)
    if p["all_features"]:  # the example model's predictions for every image (Figs 1C/D)
        extract_features(fit.models[(spec, roi)].encoder, ds.stimuli, device=ctx.device, progress=False)
    return out


def _summ_fgsm(unit, v):
    import numpy as np
    p = unit.parameters
    e = list(p["eps"]).index(p["eps_focus"])
    focus = p["eps_focus"] / 255
    ctrl = v["random"]
    hit = np.flatnonzero(np.isclose(ctrl.eps, focus))
    return {"targeted_at_focus": _mean(v["targeted"].sensitivity[e]),
            "random_at_focus": _mean(ctrl.sensitivity[hit[0]]) if len(hit) else None,
            "shuffled_at_focus": _mean(v["shuffled"].sensitivity[0])}


FGSM_SWEEP = Analysis(
    "fgsm_sweep", "03",
    "FGSM (L-inf) probes of each (model, ROI) over a budget grid with the shuffled and random "
    "controls (probelib.probes.cached.sweep_panel), paper 1.",
    {"eps": Param([0.5, 1, 2, 3, 5, 8], "numbers", "L-inf budgets, in 1/255"),
     "eps_focus": Param(3, "number", "budget of the example probes and the shuffled control (1/255)"),
     "control_eps": Param([1, 3, 8], "numbers_or_all", "budgets of the random control (1/255); 'all'"),
     "n_images": Param(12, "count", "held-out images probed (stratified); 'all'"),
     "direction": Param("decrease", "choice", "sensitivity definition", ("decrease", "increase", "abs")),
     "example_model": Param("", "str", "model of the example probes (default: the first)")},
    expand=_expand_fgsm,
    needs=lambda u: [fit_unit(u.dataset, u.fit, u.models[0], (u.roi,))],
    run=_run_fgsm, summarize=_summ_fgsm, validate=_validate_fgsm)


# -- l2_probe (chapters 6 and 7) ----------------------------------------------------------------------

def _l2_params(p: dict, eps) -> dict:
    return {"eps": eps, "steps": p["steps"], "n_images": p["n_images"],
            "first_images": p.get("first_images", 0), "direction": p.get("direction", "abs")}


def l2_unit(d, fit, spec, roi, p, eps) -> Unit:
    return make_unit("l2_probe", d, fit, (spec,), roi, _l2_params(p, eps))


def _expand_l2(a, d: DatasetSpec) -> list[Unit]:
    eps_values = a.params["eps"] if isinstance(a.params["eps"], list) else [a.params["eps"]]
    return [l2_unit(d, a.fit, spec, roi, a.params, e)
            for spec in a.models for roi in a.rois for e in eps_values]


def _probe_index(ds, p: dict, seed: int):
    from ..data import probe_images
    idx = probe_images(ds, _count(p["n_images"]), seed=seed)
    first = p.get("first_images", 0)
    return idx[: min(len(idx), first)] if first else idx


def _l2_kw(unit: Unit, p: dict) -> dict:
    from ..probes.budgets import l2_probe_settings
    return l2_probe_settings(unit.dataset.image_size, eps=p["eps"], steps=p["steps"],
                             direction=p.get("direction", "abs"))


def _run_l2(unit: Unit, ctx: Context) -> dict:
    from ..probes.cached import panel_pgd

    p, (spec,), roi = unit.parameters, unit.models, unit.roi
    ds = ctx.dataset(unit.dataset)
    fit = ctx.fit(unit.dataset, unit.fit, [spec], [roi])
    idx = _probe_index(ds, p, unit.dataset.seed)
    return {"probe": panel_pgd(fit, spec, roi, image_index=idx, **_l2_kw(unit, p))}


L2_PROBE = Analysis(
    "l2_probe", "06, 07",
    "Iterative L2 probes (PGD) of each (model, ROI) at one budget or one unit per budget of a "
    "list, perturbations stored (probelib.probes.budgets.l2_probe_settings), paper 2.",
    {"eps": Param(5.0, "number_or_list", "L2 budget(s) for 224 px images (scaled to the image size)"),
     "steps": Param(5, "int", "PGD steps"),
     "n_images": Param(6, "count", "test images probed (probelib.data.probe_images); 'all'"),
     "first_images": Param(0, "int", "probe only the first of those images (0: all)", minimum=0),
     "direction": Param("abs", "choice", "sensitivity definition", ("abs", "decrease", "increase"))},
    expand=_expand_l2,
    needs=lambda u: [fit_unit(u.dataset, u.fit, u.models[0], (u.roi,))],
    run=_run_l2, summarize=lambda u, v: {"sensitivity": _mean(v["probe"].sensitivity)})


# -- voxel_probes (chapter 6: L-inf vs L2 voxel by voxel) ----------------------------------------------

def _run_voxel_probes(unit: Unit, ctx: Context) -> dict:
    import numpy as np
    from ..data import probe_images
    from ..probes.budgets import scale_eps
    from ..probes.cached import panel_fgsm, panel_pgd

    p, (spec,), roi, seed = unit.parameters, unit.models, unit.roi, unit.dataset.seed
    averaged = unit.dataset.variant(average_subjects=True)
    ds, dsv = ctx.dataset(averaged), ctx.dataset(unit.dataset)
    fitv = ctx.fit(unit.dataset, unit.fit, [spec], [roi])
    idx = probe_images(ds, _count(p["n_images"]), seed=seed)   # the chapter's images (ROI-mean data)
    rng = np.random.default_rng(seed)
    n_vox_total = dsv.responses[roi].shape[1]
    vox = np.sort(rng.choice(n_vox_total, min(p["n_voxels"], n_vox_total), replace=False))
    linf = panel_fgsm(fitv, spec, roi, image_index=idx, eps=[p["linf_eps"] / 255], units=vox,
                      direction="abs")
    l2 = panel_pgd(fitv, spec, roi, image_index=idx, eps=[scale_eps(p["eps"], unit.dataset.image_size)],
                   norm="l2", steps=p["steps"], units=vox, direction="abs")
    return {"linf": linf, "l2": l2}


def _summ_voxel(unit, v):
    import numpy as np
    a, b = v["linf"].sensitivity[0].mean(0), v["l2"].sensitivity[0].mean(0)
    return {"linf": _mean(a), "l2": _mean(b),
            "r_linf_l2": float(np.corrcoef(a, b)[0, 1]) if len(a) > 1 else None}


VOXEL_PROBES = Analysis(
    "voxel_probes", "06",
    "FGSM L-inf and PGD L2 probes of single voxels (readouts per voxel), for the voxel-wise "
    "comparison of the two norms, paper 2.",
    {"linf_eps": Param(3, "number", "L-inf budget of the FGSM probes (1/255)"),
     "eps": Param(5.0, "number", "L2 budget for 224 px images"),
     "steps": Param(5, "int", "PGD steps"),
     "n_voxels": Param(16, "int", "voxels probed (seeded random subset of the ROI)"),
     "n_images": Param(6, "count", "test images probed; 'all'")},
    expand=lambda a, d: [make_unit("voxel_probes", _voxels(d), a.fit, (spec,), roi, a.params)
                         for spec in a.models for roi in a.rois],
    needs=lambda u: [fit_unit(u.dataset, u.fit, u.models[0], (u.roi,)),
                     dataset_unit(u.dataset.variant(average_subjects=True))],
    run=_run_voxel_probes, summarize=_summ_voxel,
    default_models=["mobilenet_v2", "efficientnet_lite0"])


# -- fixed_effect (chapter 7) ------------------------------------------------------------------------

FE_KEYS = ("eps", "steps", "n_images", "n_images_fe", "target_change", "fe_steps", "fe_tol")


def fe_unit(d, fit, spec, roi, p) -> Unit:
    return make_unit("fixed_effect", d, fit, (spec,), roi, {k: p[k] for k in FE_KEYS})


def _fixed_effect(fit, ds, unit_ds: DatasetSpec, spec: str, roi: str, p: dict):
    """The chapter's fixed-effect search for one model: budget bracket from the fixed-budget
    probes, then :func:`~probelib.probes.cached.panel_fixed_effect`."""
    import numpy as np
    from ..metrics import response_sd
    from ..probes.budgets import fixed_effect_budget, l2_probe_settings, scale_eps
    from ..probes.cached import panel_fixed_effect, panel_pgd

    image_size, seed = unit_ds.image_size, unit_ds.seed
    idx = _probe_index(ds, {"n_images": p["n_images"]}, seed)
    idx_fe = idx[:p["n_images_fe"]]
    probe_kw = l2_probe_settings(image_size, eps=p["eps"], steps=p["steps"])
    target = p["target_change"] * float(response_sd(ds.responses[roi])[0])
    fixed = panel_pgd(fit, spec, roi, image_index=idx, **probe_kw)
    eps_max = fixed_effect_budget(fixed.sensitivity[0][:len(idx_fe)], scale_eps(p["eps"], image_size),
                                  target, cap=0.25 * np.sqrt(3 * image_size ** 2))
    return panel_fixed_effect(fit, spec, roi, image_index=idx_fe, target_change=target, norm="l2",
                              direction="abs", eps_max=eps_max, tol=p["fe_tol"], steps=p["fe_steps"],
                              store_perturbations=True), idx_fe


def _run_fe(unit: Unit, ctx: Context) -> dict:
    (spec,), roi = unit.models, unit.roi
    ds = ctx.dataset(unit.dataset)
    fit = ctx.fit(unit.dataset, unit.fit, [spec], [roi])
    res, _ = _fixed_effect(fit, ds, unit.dataset, spec, roi, unit.parameters)
    return {"fixed_effect": res}


def _summ_fe(unit, v):
    import numpy as np
    r = v["fixed_effect"]
    ok = r.eps[r.reached]
    return {"median_eps": float(np.median(ok)) if ok.size else None, "reached": _mean(r.reached)}


FE_PARAMS = {
    "eps": Param(5.0, "number", "fixed L2 budget (224 px) of the probes that bracket the search"),
    "steps": Param(5, "int", "PGD steps of those probes"),
    "n_images": Param(6, "count", "test images of the fixed-budget probes; 'all'"),
    "n_images_fe": Param(6, "int", "images searched: the first of those"),
    "target_change": Param(0.5, "number", "response change to reach, in s.d. of the observed responses"),
    "fe_steps": Param(3, "int", "PGD steps per bisection trial"),
    "fe_tol": Param(0.2, "number", "relative precision of the budget"),
}

FIXED_EFFECT = Analysis(
    "fixed_effect", "07",
    "Smallest L2 budget reaching a fixed response change (bisection over PGD), per (model, ROI), "
    "paper 2.",
    dict(FE_PARAMS),
    expand=lambda a, d: [fe_unit(d, a.fit, spec, roi, a.params) for spec in a.models for roi in a.rois],
    needs=lambda u: [l2_unit(u.dataset, u.fit, u.models[0], u.roi, u.parameters, u.parameters["eps"])],
    run=_run_fe, summarize=_summ_fe, default_models="trained")


# -- transfer (chapter 7) ----------------------------------------------------------------------------

def _validate_transfer(w, place, p, models, rois):
    p["sources"] = list(S._models(w, f"{place} sources", p["sources"], panel=models))
    missing = [m for m in p["sources"] if m not in models]
    if missing:
        raise w.error(f"{place} sources", f"{missing} are not among the analysis's models {list(models)}")


def _expand_transfer(a, d: DatasetSpec) -> list[Unit]:
    p = dict(a.params)
    keep = ("probes", "eps", "steps", "n_images") + (
        ("n_images_fe", "target_change", "fe_steps", "fe_tol", "sources") if p["probes"] == "fixed_effect" else ())
    return [make_unit("transfer", d, a.fit, a.models, roi, {k: p[k] for k in keep}) for roi in a.rois]


def _needs_transfer(u: Unit) -> list[Unit]:
    p = u.parameters
    if p["probes"] == "fixed_budget":
        return [l2_unit(u.dataset, u.fit, m, u.roi, p, p["eps"]) for m in u.models]
    return ([fe_unit(u.dataset, u.fit, m, u.roi, p) for m in p["sources"]]
            + [fit_unit(u.dataset, u.fit, m, (u.roi,)) for m in u.models])


def _run_transfer(unit: Unit, ctx: Context) -> dict:
    from ..probes.cached import panel_pgd, panel_transfer

    p, roi, models, seed = unit.parameters, unit.roi, list(unit.models), unit.dataset.seed
    ds = ctx.dataset(unit.dataset)
    fit = ctx.fit(unit.dataset, unit.fit, models, [roi])
    if p["probes"] == "fixed_budget":
        idx = _probe_index(ds, p, seed)
        kw = _l2_kw(unit, {"eps": p["eps"], "steps": p["steps"]})
        probes = {m: panel_pgd(fit, m, roi, image_index=idx, **kw) for m in models}
        return {"transfer": panel_transfer(fit, roi, probes, idx, seed=seed)}
    fe, idx_fe = {}, None
    for m in p["sources"]:
        fe[m], idx_fe = _fixed_effect(fit, ds, unit.dataset, m, roi, p)
    return {"transfer": panel_transfer(fit, roi, fe, idx_fe, targets=models, seed=seed)}


TRANSFER = Analysis(
    "transfer", "07",
    "Probes of every source model applied to every target model, with norm-matched noise "
    "(probelib.probes.cached.panel_transfer), one unit per ROI; probes = fixed_budget (the L2 "
    "probes) or fixed_effect (the fixed-effect probes of the sources), paper 2.",
    {"probes": Param("fixed_budget", "choice", "which probes transfer", ("fixed_budget", "fixed_effect")),
     **FE_PARAMS,
     "sources": Param("trained", "models", "sources of fixed-effect probes ('trained': all but untrained)")},
    expand=_expand_transfer, needs=_needs_transfer, run=_run_transfer,
    summarize=lambda u, v: {"mean_change": _mean(v["transfer"].matrix),
                            "mean_control": _mean(v["transfer"].control_matrix)},
    validate=_validate_transfer)


# -- subspaces (chapter 8) ---------------------------------------------------------------------------

def _run_subspaces(unit: Unit, ctx: Context) -> dict:
    import numpy as np
    from ..data import probe_images
    from ..probes.cached import panel_subspaces

    p, (spec,), roi = unit.parameters, unit.models, unit.roi
    dsv = ctx.dataset(unit.dataset)
    fitv = ctx.fit(unit.dataset, unit.fit, [spec], [roi])
    idx = probe_images(dsv, _count(p["n_images"]), seed=unit.dataset.seed)
    nc = np.asarray(dsv.noise_ceiling[roi])
    units = np.sort(np.argsort(-nc)[: min(p["n_units"], len(nc))])
    return {"subspaces": panel_subspaces(fitv, [spec], roi, idx, p["k"], units=units, device=ctx.device,
                                         progress=False)}


def _validate_subspaces(w, place, p, models, rois):
    if p["k"] > p["n_units"]:
        raise w.error(f"{place} k", f"k = {p['k']} must be <= n_units = {p['n_units']} (the Jacobian has "
                                    "n_units rows)")


SUBSPACES = Analysis(
    "subspaces", "08",
    "Top-k perturbation subspace of the Jacobian of the most reliable voxels, per (model, ROI) "
    "(probelib.probes.cached.panel_subspaces), paper 2.",
    {"k": Param(5, "int", "subspace dimension"),
     "n_units": Param(32, "int", "voxels spanning the Jacobian: the most reliable of the ROI"),
     "n_images": Param(6, "count", "test images; 'all'")},
    expand=lambda a, d: [make_unit("subspaces", _voxels(d), a.fit, (spec,), roi, a.params)
                         for spec in a.models for roi in a.rois],
    needs=lambda u: [fit_unit(u.dataset, u.fit, u.models[0], (u.roi,))],
    run=_run_subspaces, validate=_validate_subspaces,
    summarize=lambda u, v: {"top_singular_value": _mean(v["subspaces"].singular_values[..., 0])})


#: Every kind (internal ones included), and the kinds a study file may list.
KINDS: dict[str, Analysis] = {a.kind: a for a in (DATASET, FIT, FGSM_SWEEP, L2_PROBE, VOXEL_PROBES,
                                                   FIXED_EFFECT, TRANSFER, SUBSPACES)}
ANALYSES: dict[str, Analysis] = {k: a for k, a in KINDS.items() if a.public}
