"""Studies: parsing with clear errors, expansion into units, executors (in-process, local pool,
Dask LocalCluster) giving identical results, resume, failures that do not stop the others, and
units that make exactly the chapters' cached calls.

The runs use ``studies/smoke_demo.toml``, the smallest study with every kind of unit. The demo
observer's features (the costly, executor-independent part of loading the demo) are copied from
the first run's cache into the later ones; everything else is computed afresh in each cache.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from probelib.study import (CacheMiss, StudyError, load_study, plan_study, run_study, study_status,
                            unit_done)
from probelib.study.units import read_record, record_path, recording

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke_demo.toml"
OBSERVER = Path("joblib") / "probelib" / "data" / "demo" / "_stimulus_features"


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------

def _minimal(**changes) -> dict:
    raw = {"study": {"name": "t"}, "dataset": {"name": "demo", "image_size": 32},
           "panel": {"models": ["mobilenet_v2"], "rois": ["FFA"]},
           "analysis": [{"kind": "l2_probe", "steps": 2}]}
    for key, value in changes.items():
        raw[key] = value
    return raw


@pytest.mark.parametrize("change, message", [
    ({"dataset": {"name": "demo", "image_sise": 32}}, "unknown key 'image_sise' (did you mean 'image_size'?)"),
    ({"dataset": {"name": "nds"}}, "'nds' is not one of 'demo', 'nsd' (did you mean 'nsd'?)"),
    ({"dataset": {"name": "nsd"}}, "dataset nsd needs root"),
    ({"dataset": {"name": "demo", "image_size": "64"}}, "[dataset] image_size: must be an integer"),
    ({"panel": {"models": ["mobilenet_v3"], "rois": ["FFA"]}}, "[panel] models[0]: unknown model 'mobilenet_v3'"),
    ({"panel": {"models": ["mobilenet_v2"], "rois": ["FFAA"]}}, "unknown demo ROI 'FFAA' (did you mean 'FFA'?)"),
    ({"panel": {"models": "paper3"}}, "'paper3' is not a list of model specs"),
    ({"panel": {"models": "demo"}}, "'demo' names no single panel: 'demo_paper1'"),
    ({"analysis": [{"kind": "l2_prob"}]}, "'l2_prob' is not one of"),
    ({"analysis": [{"kind": "l2_probe", "setps": 2}]}, "[[analysis]] 'l2_probe': unknown key 'setps' (did you mean 'steps'?)"),
    ({"analysis": [{"kind": "l2_probe", "eps": -1.0}]}, "eps: must be > 0"),
    ({"analysis": [{"kind": "fgsm_sweep", "eps": [1, 2], "eps_focus": 3}]}, "eps_focus: 3 must be one of eps"),
    ({"analysis": [{"kind": "subspaces", "k": 8, "n_units": 4}]}, "k = 8 must be <= n_units = 4"),
    ({"analysis": [{"kind": "l2_probe"}, {"kind": "l2_probe"}]}, "two analyses have this name"),
    ({"analysis": []}, "needs at least one [[analysis]]"),
    ({"execution": {"slurm": {"partion": "gpu"}}}, "unknown key 'partion' (did you mean 'partition'?)"),
])
def test_study_errors_say_where_and_what_is_valid(change, message):
    with pytest.raises(StudyError) as err:
        load_study(_minimal(**change))
    assert message in str(err.value), str(err.value)


def test_study_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 1")
    with pytest.raises(StudyError, match="bad.toml: not valid TOML"):
        load_study(bad)
    with pytest.raises(StudyError, match="no such study file"):
        load_study(tmp_path / "missing.toml")
    with pytest.raises(StudyError, match="no analysis named 'fgsn'.*did you mean 'fgsm'"):
        load_study(SMOKE, ["analysis.fgsn.steps=1"])
    y = tmp_path / "s.yaml"
    y.write_text("study: {name: y}\ndataset: {image_size: 32}\npanel: {models: [mobilenet_v2], rois: [FFA]}\n"
                 "analysis: [{kind: subspaces, k: 2, n_units: 4}]\n")
    assert load_study(y).analyses[0].params == {"k": 2, "n_units": 4, "n_images": 6}


def test_shipped_studies_parse_and_expand():
    counts = {}
    for path in sorted((ROOT / "studies").glob("*.toml")):
        study = load_study(path)
        plan = plan_study(study)
        counts[path.stem] = plan.counts()
        assert plan.stages[0] and all(plan.units[u].kind == "dataset" for u in plan.stages[0])
    assert set(counts) >= {"paper1_demo", "paper2_demo", "paper1_nsd", "paper2_nsd", "smoke_demo"}
    # the smoke study has every kind of unit
    assert set(counts["smoke_demo"]) == {"dataset", "fit", "fgsm_sweep", "l2_probe", "voxel_probes",
                                         "fixed_effect", "transfer", "subspaces"}
    # paper 2 on NSD: 14 networks x 8 subjects x 3 ROIs of L2 probes at the paper's budget and more
    assert counts["paper2_nsd"]["l2_probe"] >= 14 * 8 * 3
    assert counts["paper1_demo"] == {"dataset": 1, "fit": 7, "fgsm_sweep": 28}
    # the demo studies run the chapters' default panels (so the chapters find every unit cached)
    from probelib.zoo import DEMO_ROBUST, model_panel
    for paper in (1, 2):
        study = load_study(ROOT / "studies" / f"paper{paper}_demo.toml")
        assert study.models == model_panel("demo", paper=paper)
    assert set(DEMO_ROBUST) <= set(model_panel("demo", paper=2))
    assert not any("+smooth" in m for m in model_panel("demo", paper=2))


def _chapter_parameters(stem: str) -> dict:
    """The defaults of a chapter: its papermill ``parameters`` cell, executed."""
    text = (ROOT / "notebooks" / f"{stem}.py").read_text()
    cell = text.split('tags=["parameters"]', 1)[1].split("\n", 1)[1].split("\n# %%", 1)[0]
    namespace: dict = {}
    exec(cell, {}, namespace)
    return namespace


def test_the_paper2_demo_study_has_the_chapters_defaults():
    """The study that fills the cache for chapters 6-8 asks for their exact probes (else the
    chapters recompute them: its images and ROIs once fell behind the chapters')."""
    study = load_study(ROOT / "studies" / "paper2_demo.toml")
    ch = {n: _chapter_parameters(s) for n, s in (("06", "06_model_panel"), ("07", "07_transfer"),
                                                  ("08", "08_subspaces"))}
    by_name = {a.name: a for a in study.analyses}
    assert study.fit.n_samples == ch["06"]["n_samples"] == ch["07"]["n_samples"] == ch["08"]["n_samples"]
    assert list(study.rois) == ch["06"]["rois"] == ch["07"]["rois"] == ch["08"]["rois"]
    assert study.datasets[0].image_size == ch["06"]["image_size"] and study.seed == ch["06"]["seed"]
    for a in study.analyses:
        assert a.params["n_images"] == ch["06"]["n_images"] == ch["07"]["n_images"], a.name
    sens, curve, vox = by_name["panel_sensitivity"], by_name["sensitivity_curve"], by_name["linf_vs_l2"]
    assert (sens.params["eps"], sens.params["steps"]) == (ch["06"]["eps"], ch["06"]["steps"])
    assert sorted(curve.params["eps"] + [ch["06"]["eps"]]) == sorted(ch["06"]["eps_curve"])
    assert vox.params["n_voxels"] == ch["06"]["n_voxels"] and list(vox.models) == ch["06"]["voxel_models"]
    assert vox.params["linf_eps"] == round(ch["06"]["linf_eps"] * 255)
    for name in ("fixed_effect", "transfer_fixed_effect"):
        p = by_name[name].params
        assert (p["n_images_fe"], p["target_change"], p["fe_steps"], p["fe_tol"]) == tuple(
            ch["07"][k] for k in ("n_images_fe", "target_change", "fe_steps", "fe_tol")), name
    for name in ("fixed_effect", "transfer_fixed_budget", "transfer_fixed_effect", "subspaces"):
        assert list(by_name[name].rois) == ch["07"]["rois"], name
    sub = by_name["subspaces"].params
    assert (sub["k"], sub["n_units"], sub["n_images"]) == (ch["08"]["k"], ch["08"]["n_units"], ch["08"]["n_images"])


def test_the_paper1_demo_study_has_chapter_3s_defaults():
    study = load_study(ROOT / "studies" / "paper1_demo.toml")
    ch = _chapter_parameters("03_adversarial_sensitivity")
    (sweep,) = study.analyses
    assert (list(study.rois), study.fit.kind, study.fit.n_samples) == (ch["rois"], ch["readout"], ch["n_samples"])
    assert study.datasets[0].image_size == ch["image_size"] and study.seed == ch["seed"]
    assert {k: sweep.params[k] for k in ("eps", "eps_focus", "control_eps", "n_images")} == {
        k: ch[k] for k in ("eps", "eps_focus", "control_eps", "n_images")}


def test_units_are_small_hashable_data_expanded_in_dependency_order():
    import pickle

    plan = plan_study(SMOKE)
    seen = set()
    for stage in plan.stages:
        for uid in stage:
            assert all(d in seen for d in plan.deps[uid])  # fits before probes before transfers
            unit = plan.units[uid]
            assert pickle.loads(pickle.dumps(unit)) == unit and unit.id == uid and len(pickle.dumps(unit)) < 2000
        seen |= set(stage)
    kinds = [[plan.units[u].kind for u in stage] for stage in plan.stages]
    assert set(kinds[0]) == {"dataset"} and "fit" in kinds[1] and set(kinds[-1]) == {"transfer"}
    # the L2 probes that the transfer and fixed-effect analyses need are the l2 analysis's units
    l2 = {u for u, unit in plan.units.items() if unit.kind == "l2_probe"}
    assert len(l2) == 2 and all(set(plan.analyses[u]) == {"l2"} for u in l2)
    transfer = [u for u, unit in plan.units.items() if unit.kind == "transfer"
                and unit.parameters["probes"] == "fixed_budget"]
    assert set(plan.deps[transfer[0]]) == l2
    # the same study with another value is another unit; the same values, the same unit
    other = plan_study(SMOKE, ["analysis.l2.steps=3"])
    changed = {u for u in other.units if "l2" in other.analyses.get(u, [])}
    assert len(changed) == 2 and not changed & l2 and set(plan_study(SMOKE).units) == set(plan.units)


def test_submission_order_is_longest_first_and_respects_needs():
    """Pure: of the units whose needs come earlier, the one heading the costliest chain goes
    first (a costly model's fit before a cheap model's, its probes before the cheap fits); ties
    keep the given order; a cycle is refused."""
    from probelib.study.costs import priorities, submission_order

    deps = {"data": (), "fit_a": ("data",), "fit_b": ("data",), "fit_c": ("data",),
            "a1": ("fit_a",), "a2": ("fit_a",), "b1": ("fit_b",), "b2": ("fit_b",), "c1": ("fit_c",),
            "t_ab": ("a1", "b1")}
    costs = {"data": 1, "fit_a": 1, "fit_b": 10, "fit_c": 5, "a1": 1, "a2": 1, "b1": 10, "b2": 10,
             "c1": 30, "t_ab": 2}
    prio = priorities(deps, costs)
    assert prio["b1"] == 12 and prio["fit_b"] == 22 and prio["fit_c"] == 35 and prio["data"] == 36
    order = submission_order(deps, costs)
    assert order == ["data", "fit_c", "c1", "fit_b", "b1", "b2", "fit_a", "a1", "t_ab", "a2"]
    assert all(order.index(d) < order.index(u) for u in deps for d in deps[u])
    # equal costs: the given order (the plan's)
    flat = {u: 1.0 for u in deps}
    assert submission_order({"x": (), "y": (), "z": ()}, flat, ["z", "x", "y"]) == ["z", "x", "y"]
    with pytest.raises(ValueError, match="cycle"):
        submission_order({"p": ("q",), "q": ("p",)}, {"p": 1, "q": 1})


def test_unit_costs_follow_the_networks_and_the_noise_draws():
    """The cost of a unit comes from its encoder's multiply-accumulates at the dataset's image
    size: the demo's costliest network heads the order of the smoke study's fits, a smoothed
    model costs its noise draws times its network, and a larger image costs more."""
    from dataclasses import replace

    from probelib.study.costs import unit_cost
    from probelib.zoo import encoder_macs

    assert encoder_macs("vgg16:untrained", 64) > encoder_macs("alexnet:untrained", 64) > 0
    assert encoder_macs("mobilenet_v2", 64) < encoder_macs("mobilenet_v2", 128)
    plan = plan_study(SMOKE)
    fits = [u for u in plan.units.values() if u.kind == "fit"]
    assert fits
    for u in fits:
        plain = replace(u, models=tuple(m.split("+")[0] for m in u.models))
        if any("+smooth" in m for m in u.models):
            assert unit_cost(u) == pytest.approx(u.fit.n_samples * unit_cost(plain))
        elif not any("+" in m for m in u.models):
            assert unit_cost(u) == unit_cost(plain)
    fake = {"a": 1.0, "b": 100.0}
    assert unit_cost(fits[0], lambda spec, px: fake["b"]) > unit_cost(fits[0], lambda spec, px: fake["a"])


def test_automatic_tasks_share_the_units_of_a_model_among_workers():
    """With several workers a model's task holds its fit and the first half of the units that
    need it; the rest wait for tasks of their own (shared out when the fit is done). One worker:
    the whole chain. Inside a task, every unit comes after what it needs."""
    from probelib.study.executors.run import _chains, _locality

    plan = plan_study(SMOKE)
    order = {uid: i for i, uid in enumerate(u for s in plan.stages for u in s)}
    status = {uid: ("computed" if uid in plan.stages[0] else "waiting") for uid in plan.units}
    by_key: dict = {}
    for uid in sorted((u for u in plan.units if status[u] == "waiting"), key=order.get):
        by_key.setdefault(_locality(plan.units[uid]), []).append(uid)
    ready = sorted((plan.units[u] for u in plan.units if status[u] == "waiting"
                    and all(status[d] == "computed" for d in plan.deps[u])),
                   key=lambda u: (_locality(u), order[u.id]))
    ready_ids = {u.id for u in ready}
    whole = {units[0].id: units for units, _ in _chains(ready, plan, dict(status), by_key, 1)}
    shared = {units[0].id: units for units, _ in _chains(ready, plan, dict(status), by_key, 2)}
    halved = 0
    for tasks in (whole, shared):
        for units in tasks.values():
            ids = [u.id for u in units]
            for i, uid in enumerate(ids):
                assert all(status[d] == "computed" or d in ids[:i] for d in plan.deps[uid])
    for head, units in whole.items():
        later = [u for u in units if u.id not in ready_ids]
        if not later or head not in shared:
            continue
        kept = [u for u in shared[head] if u.id not in ready_ids]
        assert kept == later[:(len(later) + 1) // 2]
        halved += len(later) > 1
    assert halved >= 1


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The smoke study run in this process, one unit after another: the serial reference."""
    cache = tmp_path_factory.mktemp("serial")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBELIB_CACHE", str(cache))
        report = run_study(SMOKE, "local", workers=0, progress=False)
    assert report.ok, report.summary()
    return cache, report


def _fresh_cache(path: Path, reference_cache: Path, monkeypatch) -> Path:
    path.mkdir(mode=0o700, exist_ok=True)
    shutil.copytree(reference_cache / OBSERVER, path / OBSERVER)
    monkeypatch.setenv("PROBELIB_CACHE", str(path))
    return path


def test_local_pool_equals_serial_whatever_the_batches(reference, tmp_path, monkeypatch):
    cache, ref = reference
    assert set(ref.status.values()) == {"computed"} and len(ref.digests()) == len(ref.plan)
    _fresh_cache(tmp_path / "local", cache, monkeypatch)
    report = run_study(SMOKE, "local", workers=2, batch_size=3, progress=False)
    assert report.ok, report.summary()
    assert report.digests() == ref.digests()  # value for value, every unit
    hosts = {o.pid for o in report.outcomes.values()}
    assert len(hosts) >= 2  # ran in worker processes


def test_rerun_skips_what_is_done_and_recomputes_only_what_is_missing(reference, tmp_path, monkeypatch):
    cache, ref = reference
    work = tmp_path / "resume"
    shutil.copytree(cache, work)
    monkeypatch.setenv("PROBELIB_CACHE", str(work))
    plan = ref.plan
    fgsm = next(u for u in plan.units.values() if u.kind == "fgsm_sweep")
    assert all(study_status(SMOKE).values())
    # as after a crash midway: the unit's record and one of its results are gone
    entries = read_record(fgsm, work)["entries"]
    control = next(e for e in entries if "_control_impl" in e)
    shutil.rmtree(work / control)
    record_path(fgsm, work).unlink()
    status = study_status(SMOKE)
    assert [u for u, done in status.items() if not done] == [fgsm.id]
    assert study_status(SMOKE, check="lookup")[fgsm.id] is False
    report = run_study(SMOKE, "local", workers=0, progress=False)
    assert report.ids("computed") == [fgsm.id]
    assert len(report.ids("done before")) == len(plan) - 1
    out = report.outcomes[fgsm.id]
    assert out.computed == 1 and out.hits >= 4      # only the missing control was computed
    assert report.digests() == ref.digests()
    assert all(study_status(SMOKE, check="lookup").values())


def test_a_failing_unit_is_reported_and_does_not_stop_the_others(reference, tmp_path, monkeypatch):
    from click.testing import CliRunner
    from probelib.study.cli import run_command

    cache, _ = reference
    work = tmp_path / "fail"
    shutil.copytree(cache, work)
    monkeypatch.setenv("PROBELIB_CACHE", str(work))
    raw = load_study(SMOKE).raw
    # k = 150 > the 103 voxels of the demo's FFA: valid in the file, fails when the unit runs
    raw["analysis"].append({"name": "too_big", "kind": "subspaces", "models": ["mobilenet_v2+smooth0.25"],
                            "k": 150, "n_units": 500, "n_images": 2})
    raw["analysis"].append({"name": "more", "kind": "l2_probe", "eps": [2.5], "steps": 2, "n_images": 2})
    study = tmp_path / "failing.toml"
    study.write_text(_to_toml(raw))
    result = CliRunner().invoke(run_command, [str(study), "--workers", "0", "--quiet",
                                              "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 1, result.output
    assert "FAILED subspaces mobilenet_v2+smooth0.25 FFA" in result.output
    assert "ValueError: k must be in [1, U = 103]" in result.output
    log = Path(result.output.split("log: ")[1].split()[0])
    assert log.exists() and "Traceback" in log.read_text()
    saved = json.loads((tmp_path / "r.json").read_text())["units"]
    assert sorted(u["status"] for u in saved.values()).count("computed") == 3  # 2 new probes + the voxel fit of the smoothed model
    assert [u["status"] for u in saved.values()].count("failed") == 1


def _to_toml(raw: dict) -> str:
    def value(v):
        return json.dumps(v)
    lines = []
    for table in ("study", "dataset", "panel", "readout"):
        if table in raw:
            lines.append(f"[{table}]")
            lines += [f"{k} = {value(v)}" for k, v in raw[table].items()]
    for a in raw["analysis"]:
        lines.append("[[analysis]]")
        lines += [f"{k} = {value(v)}" for k, v in a.items()]
    return "\n".join(lines) + "\n"


def test_dask_local_cluster_equals_serial(reference, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    cache, ref = reference
    _fresh_cache(tmp_path / "dask", cache, monkeypatch)
    report = run_study(SMOKE, "dask", workers=2, progress=False)  # automatic batches: chains
    assert report.ok, report.summary()
    assert report.digests() == ref.digests()


def test_units_make_the_chapters_cached_calls(reference, monkeypatch):
    """After the study, the chapters' own calls (chapters 3, 6, 7, 8 with the smoke study's
    parameters) find every result in the cache: nothing is computed again."""
    import torch
    from probelib.data import load_dataset, probe_images
    from probelib.model import extract_features
    from probelib.fitting import fit_panel
    from probelib.probes.cached import panel_pgd
    from probelib.probes.cached import cached_control, sweep_panel
    from probelib.probes.budgets import l2_probe_settings
    from probelib.probes.cached import panel_subspaces, panel_transfer

    cache, _ = reference
    monkeypatch.setenv("PROBELIB_CACHE", str(cache))
    torch.manual_seed(0)
    models, roi, seed = ["mobilenet_v2", "mobilenet_v2+smooth0.25"], "FFA", 0
    with recording(lookup_only=True) as rec:  # raises CacheMiss on anything not in the cache
        # chapter 3 (FGSM sweep, its controls, the stored shuffled control, features of all images)
        ds = load_dataset("demo", nsd_root=None, image_size=32, seed=seed)
        fit = fit_panel(ds, models[:1], rois=[roi], kind="ols", device="cpu", seed=seed, n_samples=2)
        index = probe_images(ds, 3, seed=seed)
        eps_grid = [e / 255 for e in [1, 3]]
        sweep_panel(fit, eps_grid, index, controls={"random": [3 / 255], "shuffled": [3 / 255]}, seed=seed)
        cached_control(fit, models[0], roi, "shuffled", eps_grid, index, control_eps=[3 / 255], seed=seed,
                       store_perturbations=True)
        extract_features(fit.models[(models[0], roi)].encoder, ds.stimuli, device="cpu", progress=False)
        # chapters 6 and 7 (L2 probes at the paper's budget, transfer at a fixed budget)
        fit = fit_panel(ds, models, [roi], kind="ridge", device="cpu", seed=seed, n_samples=2, progress=False)
        idx = probe_images(ds, 3, seed=seed)
        probe_kw = l2_probe_settings(32, eps=5.0, steps=2)
        probes = {m: panel_pgd(fit, m, roi, image_index=idx, **probe_kw) for m in models}
        panel_transfer(fit, roi, probes, idx, seed=seed)
        # chapter 8 (subspaces of the most reliable voxels)
        dsv = load_dataset("demo", nsd_root=None, image_size=32, seed=seed, average_subjects=False)
        fitv = fit_panel(dsv, models[:1], [roi], kind="ridge", device="cpu", seed=seed, n_samples=2,
                         progress=False)
        idv = probe_images(dsv, 2, seed=seed)
        nc = np.asarray(dsv.noise_ceiling[roi])
        units = np.sort(np.argsort(-nc)[:4])
        panel_subspaces(fitv, models[:1], roi, idv, 2, units=units, device="cpu", progress=False)
    assert rec.calls and all(c.hit for c in rec.calls)
    assert len({c.function for c in rec.calls}) >= 5
    with pytest.raises(CacheMiss), recording(lookup_only=True):
        panel_pgd(fit, models[0], roi, image_index=idx, **l2_probe_settings(32, eps=5.0, steps=3))


def test_records_list_existing_entries(reference):
    cache, ref = reference
    for unit in ref.plan.units.values():
        assert unit_done(unit, cache)
        for entry in read_record(unit, cache)["entries"]:
            assert (cache / entry / "output.pkl").exists()


NETWORK_FILE = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, width={width}):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        return self.block2(self.block1(x)).mean((2, 3))


def build():
    return Net()
'''


def test_a_study_of_a_users_network_is_keyed_by_its_content(reference, tmp_path, monkeypatch):
    """A network from a file ("nets.py:build@block2", found from the study's folder) runs beside a
    zoo model; its units carry the network's content digest, so editing the file makes them new
    units (and a unit planned with the old file refuses to run) while the zoo model's stay done."""
    from probelib.study.units import run_unit

    _fresh_cache(tmp_path / "cache", reference[0], monkeypatch)
    folder = tmp_path / "lab"
    folder.mkdir()
    (folder / "nets.py").write_text(NETWORK_FILE.format(width=4))
    study = folder / "mine.toml"
    study.write_text(_to_toml(_minimal(panel={"models": ["nets.py:build@block2", "mobilenet_v2"], "rois": ["FFA"]},
                                       analysis=[{"kind": "l2_probe", "steps": 1, "n_images": 2}])))
    spec = f"{(folder / 'nets.py').resolve()}:build@block2"
    assert load_study(study).models == (spec, "mobilenet_v2")
    report = run_study(study, "local", workers=0, progress=False)
    assert report.ok, report.summary()
    mine = [u for u in report.plan.units.values() if spec in u.models]
    assert {u.kind for u in mine} == {"fit", "l2_probe"}
    assert all(dict(u.networks)[spec] and "nets.py:build@block2" in u.label for u in mine)
    assert all(study_status(study).values())

    (folder / "nets.py").write_text(NETWORK_FILE.format(width=6))  # the lab changes its network
    status = study_status(study)
    changed = {uid for uid, done in status.items() if not done}
    assert len(changed) == len(mine) and not changed & {u.id for u in mine}
    assert run_unit(mine[0]).error.startswith("StudyError: the network")  # planned with the old file
    again = run_study(study, "local", workers=0, progress=False)
    assert again.ok and set(again.ids("computed")) == changed

    for models, message in ((["nets.py:build"], "needs its layer: '<model>@<layer>'"),
                            (["other.py:build@block2"], "no network file")):
        with pytest.raises(StudyError, match=message):
            load_study(_minimal(panel={"models": models, "rois": ["FFA"]}))
