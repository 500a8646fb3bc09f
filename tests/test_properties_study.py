"""The study layer's parsing and units of work, as properties (no unit runs a model here).

- Every checked value has its boundary tested on both sides (``seed >= 0``, ``image_size >= 8``,
  ``n_samples >= 1``, NSD subjects 1-8, budgets > 0 and finite), every default is the documented
  one, and every error names the place in the file.
- A unit's identity (its id, which keys its record) changes with every field that changes its
  results (kind, each dataset and fit field, models, ROI, parameters, a network's content, the
  probelib version) and with nothing else (the ROIs a fit unit scores, the order of parameters).
- A unit is *done* exactly when its record describes it and every entry it lists exists; running
  a unit records the cache entries it used, reports failures without raising, never records a
  failed or a lookup-only run, and refuses a network that changed since the plan.
- Result digests are equal exactly for equal values (dtype, shape, bytes, keys, field names).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import probelib
from probelib import cache
from probelib.study import spec as S
from probelib.study import units as U
from probelib.study.spec import (DEMO_ROIS, DatasetSpec, FitSpec, StudyError, apply_overrides, load_study,
                                 parse_override, read_study_file)
from probelib.study.units import (CacheMiss, Plan, RunOptions, Unit, build_plan, forget, make_unit,
                                  note_files, read_record, record_path, recording, result_digest, run_unit,
                                  unit_done)


def _raw(**changes) -> dict:
    raw = {"study": {"name": "t"}, "dataset": {"name": "demo", "image_size": 32},
           "panel": {"models": ["mobilenet_v2"], "rois": ["FFA"]},
           "analysis": [{"kind": "l2_probe", "steps": 2}]}
    raw.update(changes)
    return raw


def _nsd(**dataset) -> dict:
    return _raw(dataset={"name": "nsd", "root": "/data/nsd", **dataset})


def _error(raw, *fragments):
    with pytest.raises(StudyError) as err:
        load_study(raw)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


# ------------------------------------------------------------------------------------------------
# Parsing: boundaries, defaults, errors
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("table, key, lowest", [
    ("study", "seed", 0), ("dataset", "image_size", 8), ("panel", "n_samples", 1)])
def test_integer_settings_accept_their_minimum_and_refuse_one_below(table, key, lowest):
    def with_value(v):
        raw = _raw()
        raw[table] = {**raw.get(table, {}), key: v}
        return raw

    study = load_study(with_value(lowest))
    got = {"seed": study.seed, "image_size": study.datasets[0].image_size, "n_samples": study.fit.n_samples}[key]
    assert got == lowest
    _error(with_value(lowest - 1), f"[{table}] {key}: must be >= {lowest}; got {lowest - 1}")
    _error(with_value(True), f"[{table}] {key}: must be an integer; got True")
    _error(with_value(float(lowest)), f"[{table}] {key}: must be an integer")


def test_nsd_subjects_are_1_to_8():
    assert load_study(_nsd(subjects=[1, 8])).datasets[0].subjects == (1, 8)
    _error(_nsd(subjects=[0]), "[dataset] subjects[0]: must be >= 1; got 0")
    _error(_nsd(subjects=[1, 9]), "[dataset] subjects: NSD has subjects 1-8; got [9]")
    _error(_nsd(subjects=[]), "[dataset] subjects: must not be empty")
    _error(_nsd(subjects="1"), "[dataset] subjects: must be a list; got '1'")


def test_budgets_are_positive_finite_numbers_kept_as_written():
    def eps(v):
        return _raw(analysis=[{"kind": "l2_probe", "eps": v}])

    assert load_study(eps(1e-12)).analyses[0].params["eps"] == 1e-12
    assert load_study(eps(3)).analyses[0].params["eps"] == 3 and isinstance(
        load_study(eps(3)).analyses[0].params["eps"], int)
    _error(eps(0), "'l2_probe' eps: must be > 0; got 0.0")
    _error(eps(-1e-12), "must be > 0")
    _error(eps(float("inf")), "eps: must be finite; got inf")
    _error(eps(float("-inf")), "eps: must be finite; got -inf")
    _error(eps(float("nan")), "eps: must be finite; got nan")
    _error(eps(True), "eps: must be a number; got True")
    _error(eps("5"), "eps: must be a number; got '5'")
    assert load_study(eps([1, 2.5])).analyses[0].params["eps"] == [1, 2.5]


def test_defaults_are_the_documented_ones():
    demo = load_study({"study": {"name": "d"}, "analysis": [{"kind": "l2_probe"}]})
    assert demo.datasets == (DatasetSpec("demo", 64, 0),)
    assert demo.seed == 0 and demo.title == "d"
    assert demo.models == load_study(_raw(panel={"models": "demo_paper2"})).models
    assert demo.rois == DEMO_ROIS
    assert demo.fit == FitSpec("ridge", 8, 0, "{}")
    assert demo.execution == {"local": {}, "slurm": {}, "dask": {}}
    (a,) = demo.analyses
    assert a.name == "l2_probe" and a.models == demo.models and a.rois == demo.rois and a.fit is demo.fit
    assert a.params == {"eps": 5.0, "steps": 5, "n_images": 6, "first_images": 0, "direction": "abs"}
    nsd = load_study({"study": {"name": "n", "seed": 3, "title": "T"}, "dataset": {"name": "nsd", "root": "/r"},
                      "analysis": [{"kind": "l2_probe"}]})
    assert nsd.datasets == (DatasetSpec("nsd", 224, 3, "/r", (1,)),)
    assert nsd.title == "T" and nsd.fit.seed == 3
    assert nsd.models == load_study(_nsd(), ["panel.models=\"paper2\""]).models


def test_an_nsd_study_per_subject_has_one_dataset_per_subject():
    one = load_study(_nsd(subjects=[2, 5]))
    assert one.datasets == (DatasetSpec("nsd", 224, 0, "/data/nsd", (2, 5)),)
    per = load_study(_nsd(subjects=[2, 5], per_subject=True))
    assert per.datasets == (DatasetSpec("nsd", 224, 0, "/data/nsd", (2,)), DatasetSpec("nsd", 224, 0, "/data/nsd", (5,)))
    assert load_study(_nsd(per_subject=False)).datasets == (DatasetSpec("nsd", 224, 0, "/data/nsd", (1,)),)
    _error(_nsd(per_subject="yes"), "[dataset] per_subject: must be true or false; got 'yes'")
    _error(_nsd(root=""), "[dataset] root: must be a non-empty string")
    # NSD ROIs are not limited to the demo's four
    assert load_study(_nsd(), ["panel.rois=[\"OFA\", \"FFA\"]"]).rois == ("OFA", "FFA")


@pytest.mark.parametrize("key, value", [("root", "/r"), ("subjects", [1]), ("per_subject", False)])
def test_nsd_only_settings_are_refused_for_the_demo(key, value):
    _error(_raw(dataset={"name": "demo", key: value}), f"<study>: [dataset] {key}: applies to dataset nsd only")


def test_tables_and_keys_are_checked_with_their_place():
    _error(_raw(extra={}), "<study>: top level: unknown key 'extra'; valid keys: study, dataset")
    _error(_raw(study={"title": "x"}), "[study]: needs a name")
    _error(_raw(study={"name": ""}), "[study] name: must be a non-empty string; got ''")
    _error(_raw(study={"name": "t", "sede": 1}), "[study]: unknown key 'sede' (did you mean 'seed'?)")
    _error(_raw(dataset=[1]), "[dataset]: must be a table; got list")
    _error(_raw(panel={"modles": []}), "[panel]: unknown key 'modles' (did you mean 'models'?)")
    _error(_raw(readout={"kind": "rigde"}), "[readout] kind: 'rigde' is not one of", "(did you mean 'ridge'?)")
    _error(_raw(readout={"options": 1}), "[readout] options: must be a table")
    _error(_raw(readout={"knd": "ols"}), "[readout]: unknown key 'knd'")
    _error(_raw(execution={"exec": "local"}), "[execution]: unknown key 'exec'")
    # an error with nothing close suggests nothing
    assert "did you mean" not in _error(_raw(extra={}), "unknown key")


def test_model_lists_are_checked():
    assert load_study(_raw(panel={"models": ["mobilenet_v2", "alexnet"]})).models == ("mobilenet_v2", "alexnet")
    _error(_raw(panel={"models": ["alexnet", "alexnet"]}), "[panel] models: lists a model twice")
    _error(_raw(panel={"models": []}), "[panel] models: must not be empty")
    assert _error(_raw(panel={"models": "mobilenet_v2"})) == (
        "<study>: [panel] models: 'mobilenet_v2' is not a list of model specs nor one of 'demo_paper1', "
        "'demo_paper2', 'paper1', 'paper2'")
    assert _error(_raw(panel={"models": 5})) == "<study>: [panel] models: must be a list; got 5"
    assert _error(_raw(panel={"models": "demo"})) == (
        "<study>: [panel] models: 'demo' names no single panel: 'demo_paper1' (chapters 2-5: the networks, their "
        "smoothed versions, untrained controls) or 'demo_paper2' (chapters 6-8: standard and adversarially "
        "fine-tuned networks, untrained controls)")
    _error(_raw(panel={"models": ["mobilenet_v2"], "rois": ["FFA", "FFA"]}), "[panel] rois: lists a ROI twice")
    _error(_raw(panel={"models": ["mobilenet_v2"], "rois": []}), "[panel] rois: must not be empty")
    _error(_raw(panel={"models": ["mobilenet_v2"], "rois": ["FFA", "XYZ"]}),
           "[panel] rois[1]: unknown demo ROI 'XYZ'; valid: FFA, EBA, PPA, VWFA")


def test_analyses_select_from_the_panel():
    raw = _raw(panel={"models": ["alexnet", "alexnet:untrained"], "rois": ["FFA", "PPA"]},
               analysis=[{"kind": "l2_probe", "name": "all", "models": "panel"},
                         {"kind": "l2_probe", "name": "trained", "models": "trained", "rois": ["PPA"]},
                         {"kind": "fixed_effect", "name": "fe"}])
    study = load_study(raw)
    by = {a.name: a for a in study.analyses}
    assert by["all"].models == ("alexnet", "alexnet:untrained") and by["all"].rois == ("FFA", "PPA")
    assert by["trained"].models == ("alexnet",) and by["trained"].rois == ("PPA",)
    assert by["fe"].models == ("alexnet",)          # fixed_effect's default: the trained models
    # within an analysis the named panels stay valid, beside "panel" and "trained"
    demo = load_study(_raw(panel={"models": "demo_paper1"}, analysis=[{"kind": "l2_probe", "models": "demo_paper1"}]))
    assert demo.analyses[0].models == demo.models
    assert _error(_raw(analysis=[{"kind": "l2_probe", "models": "paper9"}])).endswith(
        "'panel', 'trained' (did you mean 'paper2'?)")
    assert _error(_raw(panel={"models": ["alexnet:untrained"]}, analysis=[{"kind": "l2_probe", "models": "trained"}])
                  ) == "<study>: [[analysis]] 'l2_probe' models: selects no model"
    assert U.Context().device == "cpu"
    # "panel" and "trained" exist only within an analysis
    _error(_raw(panel={"models": "panel"}), "'panel' is not a list of model specs")
    # one table (YAML/TOML written as a table, not a list) is one analysis
    assert [a.kind for a in load_study(_raw(analysis={"kind": "l2_probe"})).analyses] == ["l2_probe"]
    _error(_raw(analysis=["l2_probe"]), "[[analysis]] #1: must be a table")
    _error(_raw(analysis=[{"steps": 1}]), "[[analysis]] #1: needs a kind; kinds: ")
    _error(_raw(analysis=[{"kind": "l2_probe"}, {"kind": "l2_probe", "name": ""}]),
           "[[analysis]] #2 name: must be a non-empty string")
    _error(_raw(analysis="l2_probe"), "a study needs at least one [[analysis]] table")


def test_an_analysis_can_change_the_readout_and_the_noise_draws():
    raw = _raw(readout={"kind": "ridge", "options": {"alphas": [1.0, 10.0]}},
               analysis=[{"kind": "l2_probe", "name": "same"},
                         {"kind": "l2_probe", "name": "ns", "n_samples": 1},
                         {"kind": "l2_probe", "name": "ols", "readout": "ols"}])
    study = load_study(raw)
    by = {a.name: a.fit for a in study.analyses}
    assert by["same"] is study.fit and study.fit.readout_options == {"alphas": [1.0, 10.0]}
    assert by["ns"] == FitSpec("ridge", 1, 0, study.fit.options)      # same readout: its options kept
    assert by["ols"] == FitSpec("ols", 8, 0, "{}")                     # another readout: not its options
    _error(_raw(analysis=[{"kind": "l2_probe", "n_samples": 0}]), "[[analysis]] 'l2_probe' n_samples: must be >= 1")
    _error(_raw(analysis=[{"kind": "l2_probe", "readout": "svm"}]), "[[analysis]] 'l2_probe' readout: 'svm' is not one of")


def test_execution_settings():
    ex = load_study(_raw(execution={"executor": "slurm", "device": "cuda", "threads": 1, "batch_size": 1,
                                    "slurm": {"partition": "gpu"}})).execution
    assert ex == {"executor": "slurm", "device": "cuda", "threads": 1, "batch_size": 1,
                  "local": {}, "slurm": {"partition": "gpu"}, "dask": {}}
    _error(_raw(execution={"executor": "pbs"}), "[execution] executor: 'pbs' is not one of 'local', 'slurm', 'dask'")
    _error(_raw(execution={"device": ""}), "[execution] device: must be a non-empty string")
    _error(_raw(execution={"threads": 0}), "[execution] threads: must be >= 1; got 0")
    _error(_raw(execution={"batch_size": 0}), "[execution] batch_size: must be >= 1; got 0")
    _error(_raw(execution={"dask": 1}), "[execution.dask]: must be a table")
    _error(_raw(execution={"local": {"worker": 2}}), "[execution.local]: unknown key 'worker' (did you mean 'workers'?)")


def test_network_files_are_found_from_the_study_folder(tmp_path, monkeypatch):
    (tmp_path / "nets.py").write_text("")
    monkeypatch.chdir(tmp_path)
    study = load_study(_raw(panel={"models": ["nets.py:build@block2"], "rois": ["FFA"]}))
    assert study.models == (f"{(tmp_path / 'nets.py').resolve()}:build@block2",)
    sub = tmp_path / "lab"
    sub.mkdir()
    (sub / "s.toml").write_text('[study]\nname = "s"\n[panel]\nmodels = ["nets.py:build@block2"]\n'
                                'rois = ["FFA"]\n[[analysis]]\nkind = "l2_probe"\n')
    message = _error_file(sub / "s.toml", "models[0]: no network file", "(a relative path is found from")
    assert message.endswith(f"models[0]: no network file {str(sub / 'nets.py')!r} (a relative path is found from "
                            f"{str(sub.resolve())!r})")
    assert _error(_raw(panel={"models": ["lab/none.py:build@1"]})) == (   # a mapping: from the working folder
        f"<study>: [panel] models[0]: no network file {str(tmp_path / 'lab' / 'none.py')!r} (a relative path is "
        f"found from {str(tmp_path)!r})")
    odd = tmp_path / "v1.py:old"                               # a folder whose name holds ".py:" too
    odd.mkdir()
    (odd / "nets.py").write_text("")
    assert load_study(_raw(panel={"models": [f"{odd}/nets.py:build@b"]})).models == (f"{odd / 'nets.py'}:build@b",)
    (sub / "nets.py").write_text("")
    assert load_study(sub / "s.toml").models == (f"{(sub / 'nets.py').resolve()}:build@block2",)
    # two spellings of one file are one model
    _error(_raw(panel={"models": ["nets.py:build@block2", f"{tmp_path}/nets.py:build@block2"], "rois": ["FFA"]}),
           "lists a model twice")


def _error_file(path, *fragments) -> str:
    with pytest.raises(StudyError) as err:
        load_study(path)
    for fragment in fragments:
        assert fragment in str(err.value), str(err.value)
    return str(err.value)


def test_study_files(tmp_path):
    (tmp_path / "s.json").write_text("{}")
    _error_file(tmp_path / "s.json", "s.json: a study file ends in .toml, .yaml or .yml")
    (tmp_path / "l.yaml").write_text("- 1\n- 2\n")
    _error_file(tmp_path / "l.yaml", "l.yaml: the top level must be a mapping")
    (tmp_path / "b.yml").write_text("a: [1\n")
    _error_file(tmp_path / "b.yml", "b.yml: not valid YAML")
    (tmp_path / "ok.yml").write_text("study: {name: y}\nanalysis: [{kind: l2_probe}]\n")
    assert read_study_file(tmp_path / "ok.yml") == {"study": {"name": "y"}, "analysis": [{"kind": "l2_probe"}]}
    study = load_study(tmp_path / "ok.yml", ["study.seed=4"])
    assert study.source == str(tmp_path / "ok.yml") and study.seed == 4 and study.raw["study"]["seed"] == 4


def test_a_yaml_study_without_pyyaml_says_how_to_install_it(tmp_path, monkeypatch):
    import sys

    (tmp_path / "ok.yml").write_text("study: {name: y}\n")
    monkeypatch.setitem(sys.modules, "yaml", None)            # as if pyyaml were not installed
    with pytest.raises(StudyError) as e:
        read_study_file(tmp_path / "ok.yml")
    assert str(e.value) == f"{tmp_path / 'ok.yml'}: reading YAML needs pyyaml (pip install pyyaml)"


def test_overrides():
    assert parse_override("a.b=4") == (["a", "b"], 4)
    assert parse_override(" a . b = [1, 2] ") == (["a", "b"], [1, 2])
    assert parse_override("x=true") == (["x"], True)
    assert parse_override('x="t=1"') == (["x"], "t=1")
    assert parse_override("x=/data/nsd") == (["x"], "/data/nsd")    # not TOML: the text itself
    assert parse_override("x= cuda ") == (["x"], "cuda")
    for bad in ("x", "=1", " =1"):
        with pytest.raises(StudyError, match="expected KEY=VALUE"):
            parse_override(bad)
    raw = _raw(analysis=[{"kind": "l2_probe", "name": "a"}, {"kind": "fgsm_sweep"}])
    frozen = json.dumps(raw)
    new = apply_overrides(raw, ["dataset.image_size=48", "execution.slurm.partition=gpu", "analysis.a.steps=3",
                                "analysis.fgsm_sweep.n_images=2", "analysis.*.rois=[\"PPA\"]"])
    assert json.dumps(raw) == frozen                      # the input is not changed
    assert new["dataset"]["image_size"] == 48 and new["execution"] == {"slurm": {"partition": "gpu"}}
    assert new["analysis"] == [{"kind": "l2_probe", "name": "a", "steps": 3, "rois": ["PPA"]},
                               {"kind": "fgsm_sweep", "n_images": 2, "rois": ["PPA"]}]
    with pytest.raises(StudyError, match=r"use analysis.<name>.<key>=VALUE"):
        apply_overrides(raw, ["analysis.steps=3"])
    with pytest.raises(StudyError, match=r"no analysis named 'b'; analyses: a, fgsm_sweep"):
        apply_overrides(raw, ["analysis.b.steps=3"])
    with pytest.raises(StudyError, match=r"'name' is not a table"):
        apply_overrides(raw, ["study.name.x=1"])


def test_specs_describe_themselves():
    demo = DatasetSpec("demo", 32, 1, root="/ignored", subjects=(1,))
    assert demo.describe() == {"name": "demo", "image_size": 32, "seed": 1, "average_subjects": True}
    nsd = DatasetSpec("nsd", 224, 0, "/r", (1, 2))
    assert nsd.describe() == {"name": "nsd", "image_size": 224, "seed": 0, "average_subjects": True,
                              "root": "/r", "subjects": [1, 2]}
    assert DatasetSpec("nsd", 224, 0, "/r").describe()["subjects"] is None
    assert nsd.variant(average_subjects=False) == DatasetSpec("nsd", 224, 0, "/r", (1, 2), False)
    assert nsd.label == "nsd/224px/subj1+2"
    assert nsd.variant(average_subjects=False).label == "nsd/224px/subj1+2/voxels"
    assert demo.label == "demo/32px" and DatasetSpec("nsd", 96).label == "nsd/96px"
    fit = FitSpec("lasso", 2, 3, S.canonical({"b": 1, "a": [1, 2]}))
    assert fit.options == '{"a":[1,2],"b":1}'
    assert fit.describe() == {"kind": "lasso", "n_samples": 2, "seed": 3, "options": {"a": [1, 2], "b": 1}}
    study = load_study(_raw())
    d = study.describe()
    assert d["name"] == "t" and d["models"] == ["mobilenet_v2"] and d["rois"] == ["FFA"]
    assert d["datasets"] == [study.datasets[0].describe()] and d["fit"] == study.fit.describe()
    assert d["analyses"] == [{"name": "l2_probe", "kind": "l2_probe", "models": ["mobilenet_v2"], "rois": ["FFA"],
                              "fit": study.fit.describe(), "params": study.analyses[0].params}]


# ------------------------------------------------------------------------------------------------
# Units: identity, labels, plans
# ------------------------------------------------------------------------------------------------

BASE = Unit("l2_probe", DatasetSpec("demo", 32, 0), FitSpec("ridge", 2, 0, "{}"), ("alexnet",), "FFA",
            S.canonical({"eps": 5.0, "steps": 2}))


@pytest.mark.parametrize("change", [
    {"kind": "fgsm_sweep"},
    {"dataset": DatasetSpec("nsd", 32, 0, "/r", (1,))}, {"dataset": DatasetSpec("demo", 48, 0)},
    {"dataset": DatasetSpec("demo", 32, 1)}, {"dataset": DatasetSpec("demo", 32, 0, average_subjects=False)},
    {"fit": None}, {"fit": FitSpec("ols", 2, 0, "{}")}, {"fit": FitSpec("ridge", 3, 0, "{}")},
    {"fit": FitSpec("ridge", 2, 1, "{}")}, {"fit": FitSpec("ridge", 2, 0, '{"alphas":[1]}')},
    {"models": ("vgg16",)}, {"models": ("alexnet", "vgg16")}, {"roi": "PPA"}, {"roi": None},
    {"params": S.canonical({"eps": 5.0, "steps": 3})}, {"params": S.canonical({"eps": 5, "steps": 2})},
    {"networks": (("alexnet", "0123456789abcdef"),)},
])
def test_every_field_of_a_unit_changes_its_id(change):
    other = dataclasses.replace(BASE, **change)
    assert other.id != BASE.id and len(other.id) == 16 and int(other.id, 16) >= 0
    assert other != BASE


def test_what_does_not_change_results_does_not_change_the_id(monkeypatch):
    same = make_unit("l2_probe", DatasetSpec("demo", 32, 0), FitSpec("ridge", 2, 0, "{}"), ["alexnet"], "FFA",
                     {"steps": 2, "eps": 5.0}, rois=["PPA", "FFA"])
    assert same.id == BASE.id and same == BASE and hash(same) == hash(BASE) and same.rois == ("PPA", "FFA")
    assert DatasetSpec("demo", 32, 0, root="/x").describe() == DatasetSpec("demo", 32, 0).describe()
    assert make_unit("dataset", DatasetSpec()).params == "{}"
    ids = BASE.id
    monkeypatch.setattr(probelib, "__version__", probelib.__version__ + ".post1")
    assert BASE.id != ids                                   # another probelib version: another unit


def test_unit_descriptions_and_labels():
    assert BASE.describe() == {"kind": "l2_probe", "dataset": BASE.dataset.describe(), "fit": BASE.fit.describe(),
                               "models": ["alexnet"], "roi": "FFA", "params": {"eps": 5.0, "steps": 2}}
    net = dataclasses.replace(BASE, networks=(("x.py:f@l", "ab"),))
    assert net.describe()["networks"] == {"x.py:f@l": "ab"}
    assert BASE.label == "l2_probe alexnet FFA eps=5.0"
    assert dataclasses.replace(BASE, params=S.canonical({"eps": [1, 2], "probes": "fixed_budget"})).label == \
        "l2_probe alexnet FFA probes=fixed_budget"
    assert dataclasses.replace(BASE, models=("alexnet", "vgg16", "vgg19")).label.startswith("l2_probe 3 models FFA")
    assert dataclasses.replace(BASE, models=("alexnet", "vgg16")).label.startswith("l2_probe alexnet,vgg16 FFA")
    fit = make_unit("fit", BASE.dataset, BASE.fit, ("alexnet",), rois=("FFA",))
    assert fit.label == "fit alexnet ridge [demo/32px]"
    assert make_unit("dataset", BASE.dataset).label == "dataset [demo/32px]"
    voxels = dataclasses.replace(BASE, dataset=BASE.dataset.variant(average_subjects=False))
    assert voxels.label.endswith(" [demo/32px/voxels]")
    nsd = dataclasses.replace(BASE, dataset=DatasetSpec("nsd", 224, 0, "/r", (3,)))
    assert nsd.label.endswith(" [nsd/224px/subj3]")
    assert BASE.parameters == {"eps": 5.0, "steps": 2}


NETWORK = '''
import torch.nn as nn


def build():
    return nn.Sequential(nn.Conv2d(3, {width}, 3), nn.ReLU())
'''


@pytest.mark.parametrize("folder", ["", "v1.py:old"])     # a folder whose name holds ".py:" too
def test_network_digests_follow_the_file_content(tmp_path, monkeypatch, folder):
    (tmp_path / folder).mkdir(exist_ok=True)
    path = tmp_path / folder / "nets.py"
    path.write_text(NETWORK.format(width=2))
    spec = f"{path}:build@1"
    U._DIGESTS.clear()
    built = []
    from probelib import zoo
    real = zoo.build_encoder
    monkeypatch.setattr(zoo, "build_encoder", lambda s, device: built.append((s, device)) or real(s, device=device))
    first = U.network_digest(spec)
    assert len(first) == 16 and U.network_digest(spec) == first and built == [(spec, "cpu")]   # kept per process
    unit = dataclasses.replace(BASE, models=(spec, "alexnet"))
    with_net = U.with_networks(unit)
    assert with_net.networks == ((spec, first),) and with_net.id != unit.id and len(built) == 1
    assert U.with_networks(BASE) is BASE and U.with_networks(with_net) is with_net
    path.write_text(NETWORK.format(width=3))                  # the lab edits its network
    os.utime(path, ns=(1, 10**18))
    second = U.network_digest(spec)
    assert second != first and len(built) == 2
    path.write_text(NETWORK.format(width=2))                  # back to the first network: the first digest
    os.utime(path, ns=(1, 2 * 10**18))
    assert U.network_digest(spec) == first


def _study(**changes):
    return load_study(_raw(**changes))


def test_plans_share_units_and_order_them():
    study = _study(panel={"models": ["alexnet", "vgg16"], "rois": ["FFA", "PPA"]},
                   analysis=[{"kind": "l2_probe", "name": "a", "steps": 2, "rois": ["FFA"]},
                             {"kind": "l2_probe", "name": "b", "steps": 2},
                             {"kind": "transfer", "eps": 5.0, "steps": 2, "rois": ["FFA"]}])
    plan = build_plan(study)
    counts = plan.counts()
    assert counts == {"dataset": 1, "fit": 2, "l2_probe": 4, "transfer": 1} and len(plan) == 8
    l2 = {u for u, unit in plan.units.items() if unit.kind == "l2_probe"}
    ffa = {u for u in l2 if plan.units[u].roi == "FFA"}
    assert all(plan.analyses[u] == ["a", "b"] for u in ffa)          # asked twice, one unit
    assert all(plan.analyses[u] == ["b"] for u in l2 - ffa)
    (data,) = [u for u, unit in plan.units.items() if unit.kind == "dataset"]
    fits = {u for u, unit in plan.units.items() if unit.kind == "fit"}
    assert data not in plan.analyses and not fits & set(plan.analyses)
    assert all(plan.units[u].rois == ("FFA", "PPA") for u in fits)   # the ROIs of every unit that needs it
    assert [set(s) for s in plan.stages] == [{data}, fits, l2, set(plan.units) - l2 - fits - {data}]
    assert plan.deps[data] == () and all(plan.deps[f] == (data,) for f in fits)
    (transfer,) = plan.stages[3]
    assert set(plan.deps[transfer]) == ffa
    assert plan.dependents(transfer) == set()
    assert plan.dependents(data) == set(plan.units) - {data}          # directly or not
    one_fit = next(iter(fits))
    model = plan.units[one_fit].models
    assert plan.dependents(one_fit) == {u for u in l2 if plan.units[u].models == model} | {transfer}
    assert Plan({}, {}, {}, []).counts() == {} and len(build_plan(_study()).stages) == 3


# ------------------------------------------------------------------------------------------------
# Records and "done"
# ------------------------------------------------------------------------------------------------

def _write_record(unit, root: Path, entries, describe=None):
    path = record_path(unit, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"unit": describe or unit.describe(), "entries": entries}))


def test_a_unit_is_done_when_its_record_and_every_entry_exist(tmp_path):
    root = tmp_path / "cache"
    assert record_path(BASE, root) == root / "study" / "done" / f"{BASE.id}.json"
    assert not unit_done(BASE, root) and read_record(BASE, root) is None
    (root / "joblib" / "f" / "abc").mkdir(parents=True)
    (root / "file.npz").write_text("x")
    outside = tmp_path / "outside.npz"
    outside.write_text("x")
    _write_record(BASE, root, ["joblib/f/abc", "file.npz", str(outside)])
    assert not unit_done(BASE, root)                          # the joblib entry has no output yet
    (root / "joblib" / "f" / "abc" / "output.pkl").write_text("x")
    assert unit_done(BASE, root) and read_record(BASE, root)["entries"][1] == "file.npz"
    outside.unlink()                                          # an absolute entry is looked up where it is
    assert not unit_done(BASE, root)
    _write_record(BASE, root, ["joblib/f/abc"])
    assert unit_done(BASE, root)
    other = dataclasses.replace(BASE, roi="PPA")
    _write_record(BASE, root, ["joblib/f/abc"], describe=other.describe())
    assert not unit_done(BASE, root)                          # a record of another computation
    record_path(BASE, root).write_text("{not json")
    assert not unit_done(BASE, root) and read_record(BASE, root) is None
    _write_record(BASE, root, [])
    assert unit_done(BASE, root)
    for entries in (None, "joblib/f/abc", [["joblib/f/abc"]]):   # not a list of entries: run it again
        _write_record(BASE, root, entries)
        assert not unit_done(BASE, root)
    record_path(BASE, root).write_text(json.dumps({"unit": BASE.describe()}))
    assert not unit_done(BASE, root)
    forget(BASE, root)
    assert not record_path(BASE, root).exists() and not unit_done(BASE, root)
    forget(BASE, root)                                        # forgetting twice is fine
    assert (root / "joblib" / "f" / "abc" / "output.pkl").exists()   # the entries stay


def test_done_without_a_root_reads_the_current_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    assert U.records_dir() == tmp_path / "study" / "done"
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "output.pkl").write_text("x")
    _write_record(BASE, tmp_path, ["e"])
    assert unit_done(BASE)
    (tmp_path / "e" / "output.pkl").unlink()
    assert not unit_done(BASE)


# ------------------------------------------------------------------------------------------------
# Running units (a stand-in analysis kind making cached calls of its own)
# ------------------------------------------------------------------------------------------------

def _double(key, x):
    """The stand-in computation: a cached call whose key holds ``x``."""
    return {"twice": 2 * x}


def _run_double(unit, ctx):
    p = unit.parameters
    if p.get("fail"):
        raise RuntimeError("the unit failed")
    values = {"device": ctx.device}
    for x in p["xs"]:
        values[x] = cache.cached_call(_double, {"what": "double"}, x)["twice"]
    return values


@pytest.fixture
def double_kind(monkeypatch):
    from probelib.study import analyses

    kind = analyses.Analysis("double", "-", "stand-in", {}, expand=lambda a, d: [], needs=lambda u: [],
                             run=_run_double,   # a summary of numpy scalars too (not JSON types)
                             summarize=lambda u, v: {"n": (np.int64 if u.parameters.get("numpy") else int)(len(v))})
    monkeypatch.setitem(analyses.KINDS, "double", kind)
    return lambda **params: make_unit("double", DatasetSpec(), params=params)


def _options(tmp_path, **kw):
    return RunOptions(str(tmp_path / "cache"), str(tmp_path / "logs"), **kw)


def test_a_unit_records_the_entries_it_used(double_kind, tmp_path):
    unit = double_kind(xs=[1, 2, 1])
    t0, c0 = time.perf_counter(), time.process_time()
    out, values = run_unit(unit, _options(tmp_path, device="meta"), keep_values=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert out.status == "computed" and not out.error, out.traceback
    assert values == {"device": "meta", 1: 2, 2: 4}
    assert (out.computed, out.hits) == (2, 1) and out.unit_id == unit.id and out.label == unit.label
    assert out.digest == result_digest(values) and out.summary == {"n": 3}
    assert 0 < out.seconds <= wall and 0 <= out.cpu_seconds <= cpu and out.started > 0
    assert out.pid == os.getpid() and out.host == platform.node()
    rec = read_record(unit, tmp_path / "cache")
    assert rec["unit"] == unit.describe() and rec["digest"] == out.digest and rec["summary"] == {"n": 3}
    assert (rec["hits"], rec["computed"]) == (1, 2) and len(rec["entries"]) == 2   # each entry once
    assert (rec["label"], rec["host"], rec["seconds"], rec["cpu_seconds"]) == (unit.label, out.host, out.seconds,
                                                                           out.cpu_seconds)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rec["finished"])
    assert sorted(rec) == ["computed", "cpu_seconds", "digest", "entries", "finished", "hits", "host", "label",
                           "seconds", "summary", "unit"]
    assert all((tmp_path / "cache" / e / "output.pkl").exists() for e in rec["entries"])
    assert unit_done(unit, tmp_path / "cache")
    log = Path(out.log).read_text()
    assert Path(out.log) == tmp_path / "logs" / f"{unit.id}.log"
    assert "start double" in log and "device meta" in log and "done in" in log and "2 computed, 1 from the cache" in log
    calls = re.findall(r"^\d\d:\d\d:\d\d (hit     |computed) \S*_double ", log, re.M)   # each cached call
    assert calls == ["computed", "computed", "hit     "]
    assert os.environ["PROBELIB_CACHE"] == str(tmp_path / "cache")
    # the same unit again: everything from the cache, the same digest
    again = run_unit(unit, _options(tmp_path, device="meta"))
    assert (again.status, again.computed, again.hits, again.digest) == ("computed", 0, 3, out.digest)


def test_lookup_only_computes_nothing_and_records_nothing(double_kind, tmp_path):
    unit = double_kind(xs=[3])
    miss = run_unit(unit, _options(tmp_path), lookup_only=True)
    assert miss.status == "failed" and miss.error.startswith("CacheMiss: ") and "_double" in miss.error
    assert not record_path(unit, tmp_path / "cache").exists() and not (tmp_path / "logs").exists()
    assert run_unit(unit, _options(tmp_path)).status == "computed"
    forget(unit, tmp_path / "cache")
    hit = run_unit(unit, _options(tmp_path), lookup_only=True)
    assert (hit.status, hit.hits, hit.computed, hit.log) == ("cached", 1, 0, "")
    assert not record_path(unit, tmp_path / "cache").exists()


def test_a_failed_unit_is_reported_and_never_recorded(double_kind, tmp_path):
    good = double_kind(xs=[4])
    assert run_unit(good, _options(tmp_path)).status == "computed"
    bad = double_kind(xs=[4], fail=True)
    t0 = time.perf_counter()
    out, values = run_unit(bad, _options(tmp_path), keep_values=True)
    assert 0 < out.seconds <= time.perf_counter() - t0 and values == {}
    assert out.status == "failed" and out.error == "RuntimeError: the unit failed"
    assert "RuntimeError" in out.traceback and "FAILED after" in Path(out.log).read_text()
    assert out.digest == "" and not record_path(bad, tmp_path / "cache").exists()
    assert unit_done(good, tmp_path / "cache")
    assert [o.status for o in U.run_task([good, bad, good], _options(tmp_path))] == ["computed", "failed", "computed"]


def test_a_unit_refuses_a_network_changed_since_its_plan(double_kind, tmp_path, monkeypatch):
    unit = dataclasses.replace(double_kind(xs=[1]), models=("x.py:f@l",), networks=(("x.py:f@l", "planned"),))
    monkeypatch.setattr(U, "network_digest", lambda spec: {"x.py:f@l": "planned"}[spec])
    assert run_unit(unit, _options(tmp_path)).status == "computed"
    monkeypatch.setattr(U, "network_digest", lambda spec: {"x.py:f@l": "edited"}[spec])
    out = run_unit(unit, _options(tmp_path))
    assert out.status == "failed" and out.error == (
        "StudyError: the network 'x.py:f@l' is not the one this study was planned with (its code or weights "
        "changed since): run the study again to plan it anew")


def test_units_run_with_their_options(double_kind, tmp_path, monkeypatch):
    monkeypatch.delenv("PROBELIB_TRUST_SHARED_CACHE", raising=False)
    threads = torch.get_num_threads()
    try:
        run_unit(double_kind(xs=[]), _options(tmp_path, threads=threads + 1))
        assert torch.get_num_threads() == threads + 1
        assert "PROBELIB_TRUST_SHARED_CACHE" not in os.environ
        run_unit(double_kind(xs=[]), _options(tmp_path, threads=threads, trust_shared_cache=True))
        assert os.environ["PROBELIB_TRUST_SHARED_CACHE"] == "1" and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "default"))
    out = run_unit(double_kind(xs=[5]))                        # default options: the current cache
    assert out.status == "computed" and Path(out.log).parent == tmp_path / "default" / "study" / "logs"
    assert unit_done(double_kind(xs=[5]), tmp_path / "default")


def test_recording_and_noted_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    note_files([tmp_path / "ignored.npz"])                    # outside a unit: nothing to record
    lines = []
    with recording(log=lines.append) as rec:
        cache.cached_call(_double, {"what": "double"}, 7)
        note_files([tmp_path / "nsd" / "x.npz", "/elsewhere/y.npz"])
        cache.cached_call(_double, {"what": "double"}, 7)
        with recording() as inner:                            # nested: the innermost records
            note_files([tmp_path / "z.npz"])
        assert [c.entry for c in inner.calls] == ["z.npz"]
    entry = rec.calls[0].entry
    assert [(c.hit, c.entry) for c in rec.calls] == [(False, entry), (True, "nsd/x.npz"), (True, "/elsewhere/y.npz"),
                                                    (True, entry)]
    assert rec.calls[1].function == "file" and rec.calls[1].seconds == 0.0
    assert rec.calls[0].function.endswith("_double") and rec.calls[0].seconds >= 0.0
    assert (tmp_path / entry / "output.pkl").exists() and not os.path.isabs(entry)
    assert lines[0].startswith("computed ") and lines[1].startswith("hit      ") and entry in lines[1]
    assert getattr(U._local, "recorder", None) is None        # restored after the block
    with recording(lookup_only=True):
        assert cache.cached_call(_double, {"what": "double"}, 7) == {"twice": 14}
        with pytest.raises(CacheMiss, match=r"_double: no cache entry joblib/"):
            cache.cached_call(_double, {"what": "double"}, 8)


# ------------------------------------------------------------------------------------------------
# Result digests
# ------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class _R:
    a: object
    b: object = 0


@dataclasses.dataclass
class _Q:
    a: object
    c: object = 0


@dataclasses.dataclass
class _S:                                                    # _R's fields under another name
    a: object
    b: object = 0


def test_result_digests_are_equal_exactly_for_equal_values():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    base = {"r": _R(x, [1, 2.0, "s"]), "n": np.float64(1.5), "t": torch.ones(2)}
    same = {"t": torch.ones(2), "n": 1.5, "r": _R(x.copy(), (1, 2.0, "s"))}
    assert result_digest(base) == result_digest(same)
    assert result_digest(np.asfortranarray(x)) == result_digest(x)
    assert result_digest(torch.from_numpy(x)) == result_digest(x)
    assert len(result_digest(base)) == 32
    y = x.copy()
    y[1, 2] += 1
    changed = [x.astype(np.float64), x.reshape(3, 2), x.reshape(6), y, x[:1]]
    digests = {result_digest(v) for v in [x] + changed}
    assert len(digests) == len(changed) + 1
    others = [{"r": _R(x, [1, 2.0, "s"]), "n": 1.5}, {"r": _R(x, [2.0, 1, "s"]), "n": 1.5, "t": torch.ones(2)},
              {"r": _Q(x, [1, 2.0, "s"]), "n": 1.5, "t": torch.ones(2)},
              {"r": _R(x, [1, 2.0, "s"]), "m": 1.5, "t": torch.ones(2)},
              {"r": _R(x, [1, 2.0, "s"]), "n": 1.5, "t": torch.ones(3)}, [base], {"r": base}]
    assert len({result_digest(v) for v in [base] + others}) == len(others) + 1
    # nesting is part of the structure: [[1], 2] is not [1, [2]], {"a": {}} not {"a": []}
    assert result_digest([[1], 2]) != result_digest([1, [2]]) and result_digest({"a": {}}) != result_digest({"a": []})
    objects = np.array(["a", None], dtype=object)
    assert result_digest(objects) == result_digest(np.array(["a", None], dtype=object))
    assert result_digest(objects) != result_digest(np.array(["b", None], dtype=object))
    lists = [np.empty(2, dtype=object) for _ in range(2)]   # equal values in distinct objects
    for a in lists:
        a[:] = [[1, 2], 10**30 + 1]
    assert result_digest(lists[0]) == result_digest(lists[1])
    assert result_digest(_R(x)) != result_digest(_S(x))     # the dataclass's type is part of it
    assert result_digest(torch.ones(2, requires_grad=True)) == result_digest(np.ones(2, np.float32))


def test_the_nsd_extraction_cache_is_one_folder_per_dataset(tmp_path):
    a = U.nsd_cache_dir(DatasetSpec("nsd", 224, 0, "/r", (1,)), tmp_path)
    assert a.parent == tmp_path / "study" / "nsd" and len(a.name) == 16
    assert a == U.nsd_cache_dir(DatasetSpec("nsd", 224, 0, "/r", (1,)), str(tmp_path))
    others = [DatasetSpec("nsd", 96, 0, "/r", (1,)), DatasetSpec("nsd", 224, 1, "/r", (1,)),
              DatasetSpec("nsd", 224, 0, "/s", (1,)), DatasetSpec("nsd", 224, 0, "/r", (2,)),
              DatasetSpec("nsd", 224, 0, "/r", (1,), False)]
    assert len({U.nsd_cache_dir(d, tmp_path) for d in others} | {a}) == len(others) + 1


# ------------------------------------------------------------------------------------------------
# What a unit rebuilds: datasets and fits, with the chapters' arguments, kept per process
# ------------------------------------------------------------------------------------------------

def test_datasets_are_loaded_with_the_chapters_arguments_and_kept(tmp_path, monkeypatch):
    import probelib.data as data

    calls = []
    loaded = []
    monkeypatch.setattr(data, "load_dataset", lambda name, **kw: calls.append((name, kw)) or loaded.append(object())
                        or loaded[-1])
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    U.clear_process_caches()
    demo = DatasetSpec("demo", 32, 2)
    first = U._dataset(demo)
    assert first is loaded[0] and U._dataset(demo) is first and U.Context().dataset(demo) is first
    assert calls == [("demo", {"nsd_root": None, "image_size": 32, "seed": 2})]
    U._dataset(demo.variant(average_subjects=False))
    assert calls[-1] == ("demo", {"nsd_root": None, "image_size": 32, "seed": 2, "average_subjects": False})
    nsd = DatasetSpec("nsd", 224, 0, "/r", (1, 3))
    U._dataset(nsd)
    assert calls[-1] == ("nsd", {"nsd_root": "/r", "image_size": 224, "seed": 0, "subjects": [1, 3],
                                 "cache_dir": str(U.nsd_cache_dir(nsd, tmp_path)), "progress": False})
    U._dataset(DatasetSpec("nsd", 224, 0, "/r"))
    assert "subjects" not in calls[-1][1]
    assert len(U._DATASETS) == 3 and demo.variant(average_subjects=False) in {k[1] for k in U._DATASETS}
    assert (str(tmp_path), demo) not in U._DATASETS            # the oldest went first
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "other"))
    n = len(calls)
    U._dataset(nsd)                                          # another cache: loaded into it again
    assert len(calls) == n + 1
    U.clear_process_caches()
    assert not U._DATASETS and not U._PANELS


def test_fits_are_made_with_the_fit_spec_and_extended_by_roi(tmp_path, monkeypatch):
    import probelib.fitting as fitting
    from probelib.fitting import PanelFit

    calls = []

    def fake_fit_panel(ds, models, rois, **kw):
        calls.append((ds, models, rois, kw))
        keys = [(m, r) for m in models for r in rois]
        return PanelFit(dataset=ds, digest="d", kind=kw["kind"], options={}, models={k: k for k in keys},
                        predictivity={k: 0.5 for k in keys}, predictions={k: None for k in keys})

    monkeypatch.setattr(fitting, "fit_panel", fake_fit_panel)
    monkeypatch.setattr(U, "_dataset", lambda spec: f"data {spec.image_size}")
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    U.clear_process_caches()
    d, f = DatasetSpec("demo", 32, 0), FitSpec("lasso", 3, 4, '{"alpha":0.1}')
    ctx = U.Context("meta")
    one = ctx.fit(d, f, ["alexnet"], ["FFA"])
    assert calls == [("data 32", ["alexnet"], ["FFA"], {"kind": "lasso", "device": "meta", "seed": 4,
                                                        "n_samples": 3, "progress": False, "alpha": 0.1})]
    assert ctx.fit(d, f, ["alexnet"], ["FFA"]) is one and len(calls) == 1
    both = ctx.fit(d, f, ["alexnet"], ["PPA"])                 # a further ROI: fitted with the ones before
    assert calls[-1][2] == ["FFA", "PPA"] and set(both.models) == {("alexnet", "PPA")}
    assert set(both.predictivity) == set(both.predictions) == {("alexnet", "PPA")}
    assert ctx.fit(d, f, ["alexnet"], ["FFA"]).models == {("alexnet", "FFA"): ("alexnet", "FFA")}
    assert len(calls) == 2
    ctx.fit(d, f, ["alexnet", "vgg16"], ["FFA"])               # another panel, another fit
    ctx.fit(d, dataclasses.replace(f, seed=5), ["alexnet"], ["FFA"])
    U.Context("cpu").fit(d, f, ["alexnet"], ["FFA"])
    assert len(calls) == 5 and calls[-1][3]["device"] == "cpu"
    for size in (40, 48):
        ctx.fit(DatasetSpec("demo", size, 0), f, ["alexnet"], ["FFA"])
    assert len(U._PANELS) == 4
    n = len(calls)
    ctx.fit(DatasetSpec("demo", 48, 0), f, ["alexnet"], ["FFA"])   # the newest: kept
    assert len(calls) == n
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "other"))
    ctx.fit(DatasetSpec("demo", 48, 0), f, ["alexnet"], ["FFA"])   # another cache: fitted into it again
    assert len(calls) == n + 1
    U.clear_process_caches()


def test_a_panel_extended_by_roi_counts_as_the_newest(tmp_path, monkeypatch):
    import probelib.fitting as fitting
    from probelib.fitting import PanelFit

    calls = []

    def fake_fit_panel(ds, models, rois, **kw):
        calls.append((ds, tuple(rois)))
        keys = [(m, r) for m in models for r in rois]
        return PanelFit(dataset=ds, digest="d", kind=kw["kind"], options={}, models={k: k for k in keys},
                        predictivity={k: 0.5 for k in keys}, predictions={k: None for k in keys})

    monkeypatch.setattr(fitting, "fit_panel", fake_fit_panel)
    monkeypatch.setattr(U, "_dataset", lambda spec: spec.image_size)
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path))
    U.clear_process_caches()
    ctx, f = U.Context(), FitSpec("ridge", 1, 0, "{}")
    for size in (32, 40, 48):                                  # panels A, B, C
        ctx.fit(DatasetSpec("demo", size, 0), f, ["alexnet"], ["FFA"])
    ctx.fit(DatasetSpec("demo", 32, 0), f, ["alexnet"], ["PPA"])   # A extended: now the newest
    for size in (56, 64):                                      # D, then E: the oldest (B) goes
        ctx.fit(DatasetSpec("demo", size, 0), f, ["alexnet"], ["FFA"])
    n = len(calls)
    ctx.fit(DatasetSpec("demo", 32, 0), f, ["alexnet"], ["FFA", "PPA"])
    assert len(calls) == n                                     # A is still kept
    ctx.fit(DatasetSpec("demo", 40, 0), f, ["alexnet"], ["FFA"])
    assert calls[-1] == (40, ("FFA",))                         # B was not
    U.clear_process_caches()


def test_a_plan_without_units_has_no_stages():
    import types

    plan = U.build_plan(types.SimpleNamespace(analyses=(), datasets=(DatasetSpec(),)))
    assert (len(plan), plan.stages, plan.deps) == (0, [], {})


def test_a_task_runs_its_units_with_its_options_into_private_folders(double_kind, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBELIB_CACHE", str(tmp_path / "elsewhere"))
    unit = double_kind(xs=[6])
    outs = U.run_task([unit, unit], _options(tmp_path))          # the same record written twice
    assert [o.status for o in outs] == ["computed", "computed"], outs[-1].traceback
    assert all(Path(o.log) == tmp_path / "logs" / f"{unit.id}.log" for o in outs)
    rec = record_path(unit, tmp_path / "cache")
    assert json.loads(rec.read_text())["digest"] == outs[1].digest and not list(rec.parent.glob(".*"))
    for folder in (rec.parent, tmp_path / "logs"):                # records and logs: the owner's only
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    lines = (tmp_path / "logs" / f"{unit.id}.log").read_text().splitlines()
    assert all(re.match(r"\d\d:\d\d:\d\d (start|done|hit|computed) ", line) for line in lines)
    assert [line[9:14] for line in lines if " start " in line or " done " in line] == ["start", "done "] * 2
    assert outs[0].to_dict() == {f.name: getattr(outs[0], f.name) for f in dataclasses.fields(outs[0])}


def test_a_unit_log_shows_each_line_as_it_is_written(tmp_path):
    log = U._UnitLog(tmp_path / "logs" / "u.log")
    log("first step")
    assert (tmp_path / "logs" / "u.log").read_text().endswith(" first step\n")    # line-buffered: tail -f works
    log.close()
    quiet = U._UnitLog(None)                                      # a lookup-only run: no log
    quiet("nothing")
    quiet.close()


def test_network_digests_of_hub_networks_and_missing_files(tmp_path, monkeypatch):
    from probelib import zoo

    built = []

    def build(spec, device):
        built.append(spec)
        torch.manual_seed(0)
        return torch.nn.Linear(2, 2)

    monkeypatch.setattr(zoo, "build_encoder", build)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".py").write_text("")                           # a file named like an empty path + .py
    U._DIGESTS.clear()
    first = U.network_digest("torchvision:resnet18@layer4")
    os.utime(tmp_path / ".py", ns=(1, 10**18))
    assert U.network_digest("torchvision:resnet18@layer4") == first and built == ["torchvision:resnet18@layer4"]
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match="missing.py not found"):
        U.network_digest(f"{tmp_path}/missing.py:build@1")


def test_an_override_of_a_study_without_analyses_names_none(tmp_path):
    raw = {k: v for k, v in _raw().items() if k != "analysis"}
    with pytest.raises(StudyError, match=r"no analysis named 'fgsm'; analyses: $"):
        apply_overrides(raw, ["analysis.fgsm.eps=1"])


@pytest.mark.parametrize("env, where", [({}, ""), ({"SLURM_JOB_ID": "77"}, ", slurm job 77"),
                                        ({"SLURM_JOB_ID": "77", "SLURM_ARRAY_JOB_ID": "70",
                                          "SLURM_ARRAY_TASK_ID": "3"}, ", slurm job 70_3"),
                                        ({"SLURM_ARRAY_JOB_ID": "70"}, "")])
def test_a_unit_log_names_its_slurm_job(double_kind, tmp_path, monkeypatch, env, where):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = run_unit(double_kind(xs=[]), _options(tmp_path))
    start = Path(out.log).read_text().splitlines()[0]
    assert f", pid {os.getpid()}{where}, device cpu, 1 thread(s)" in start


def test_a_summary_of_numpy_scalars_is_recorded_as_text(double_kind, tmp_path):
    unit = double_kind(xs=[1], numpy=True)
    out = run_unit(unit, _options(tmp_path))
    assert out.status == "computed", out.traceback
    assert read_record(unit, tmp_path / "cache")["summary"] == {"n": "2"}


def test_every_study_error_names_its_place_in_full():
    """The exact message of each kind of mistake: the file, the table or key, what is wrong, the valid values."""
    kinds = "fgsm_sweep, l2_probe, voxel_probes, fixed_effect, transfer, subspaces"
    cases = [
        (_raw(study=5), "[study]: must be a table; got int"),
        (_raw(panel=5), "[panel]: must be a table; got int"),
        (_raw(readout=5), "[readout]: must be a table; got int"),
        (_raw(execution=5), "[execution]: must be a table; got int"),
        (_raw(dataset={"name": "demo", "imagesize": 3}), "[dataset]: unknown key 'imagesize' (did you mean "
         "'image_size'?); valid keys: name, image_size, root, subjects, per_subject"),
        (_raw(dataset={"name": "nds"}), "[dataset] name: 'nds' is not one of 'demo', 'nsd' (did you mean 'nsd'?)"),
        (_raw(dataset={"name": "nsd"}), "[dataset] root: dataset nsd needs root, the local copy of the NSD bucket "
         "(override it: --set dataset.root=/path/to/nsd)"),
        ({k: v for k, v in _raw().items() if k != "analysis"},
         f"[[analysis]]: a study needs at least one [[analysis]] table; kinds: {kinds}"),
        (_raw(analysis=[{"steps": 1}]), f"[[analysis]] #1: needs a kind; kinds: {kinds}"),
        (_raw(analysis=[{"kind": "l2_prob"}]), "[[analysis]] #1 kind: 'l2_prob' is not one of 'fgsm_sweep', "
         "'l2_probe', 'voxel_probes', 'fixed_effect', 'transfer', 'subspaces' (did you mean 'l2_probe'?)"),
        (_raw(analysis=[{"kind": "l2_probe"}, {"kind": "l2_probe"}]),
         "[[analysis]] 'l2_probe': two analyses have this name; give each a distinct name"),
        (_raw(analysis=[{"kind": "l2_probe", "rois": ["XYZ"]}]),
         "[[analysis]] 'l2_probe' rois[0]: unknown demo ROI 'XYZ'; valid: FFA, EBA, PPA, VWFA"),
        (_raw(analysis=[{"kind": "l2_probe", "steps": 0}]), "[[analysis]] 'l2_probe' steps: must be >= 1; got 0"),
    ]
    for raw, message in cases:
        assert _error(raw) == f"<study>: {message}"
    with pytest.raises(StudyError) as e:                       # parse_study's default name of the source
        S.parse_study(_raw(study=5))
    assert str(e.value) == "<study>: [study]: must be a table; got int"
    assert load_study(_raw(study={"name": "t", "seed": 3})).datasets == (DatasetSpec("demo", 32, 3),)
