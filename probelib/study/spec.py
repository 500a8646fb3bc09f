"""Study files: parse and check a TOML (or YAML) description of a grid of analyses.

A study names the data, the panel of models, the readout, the analyses with their parameters
and, optionally, how to execute it. Every value is checked here, before anything runs: an
unknown key, a wrong type or an unknown model / ROI / analysis raises a :class:`StudyError`
naming the file, the place in it and what is valid. See ``probelib.study`` for the format.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASETS = ("demo", "nsd")
DEMO_ROIS = ("FFA", "EBA", "PPA", "VWFA")
READOUTS = ("ols", "ridge", "lasso", "mlp", "cnn")
PANELS = ("demo_paper1", "demo_paper2", "paper1", "paper2")
EXECUTORS = ("local", "slurm", "dask")


class StudyError(ValueError):
    """A study file (or a value overriding it) is not valid; the message says where and why."""


# ------------------------------------------------------------------------------------------------
# Frozen, hashable specs (parts of units of work)
# ------------------------------------------------------------------------------------------------

def canonical(value: Any) -> str:
    """Canonical JSON text of a JSON-like value (sorted keys): the hashable form of parameters."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class DatasetSpec:
    """Which data: ``load_dataset(name, ...)`` with exactly the arguments the chapters pass.

    ``subjects``: NSD subjects (``None``: the loader's default, subject 1); ``average_subjects``:
    False loads single voxels (the chapters' voxel-wise analyses).
    """

    name: str = "demo"
    image_size: int = 64
    seed: int = 0
    root: str | None = None
    subjects: tuple[int, ...] | None = None
    average_subjects: bool = True

    def describe(self) -> dict:
        out = {"name": self.name, "image_size": self.image_size, "seed": self.seed,
               "average_subjects": self.average_subjects}
        if self.name == "nsd":
            out.update(root=self.root, subjects=list(self.subjects) if self.subjects else None)
        return out

    def variant(self, **changes) -> DatasetSpec:
        from dataclasses import replace
        return replace(self, **changes)

    @property
    def label(self) -> str:
        parts = [self.name, f"{self.image_size}px"]
        if self.name == "nsd" and self.subjects:
            parts.append("subj" + "+".join(map(str, self.subjects)))
        if not self.average_subjects:
            parts.append("voxels")
        return "/".join(parts)


@dataclass(frozen=True)
class FitSpec:
    """How each (model, ROI) is fitted: :func:`probelib.fitting.fit_panel`'s ``kind``, ``seed``,
    ``n_samples`` (noise draws of smoothed models) and readout options (canonical JSON)."""

    kind: str = "ridge"
    n_samples: int = 8
    seed: int = 0
    options: str = "{}"

    @property
    def readout_options(self) -> dict:
        return json.loads(self.options)

    def describe(self) -> dict:
        return {"kind": self.kind, "n_samples": self.n_samples, "seed": self.seed,
                "options": self.readout_options}


# ------------------------------------------------------------------------------------------------
# Parsed study
# ------------------------------------------------------------------------------------------------

@dataclass
class AnalysisSpec:
    """One ``[[analysis]]`` table: its kind, a name, and its checked parameters."""

    name: str
    kind: str
    models: tuple[str, ...]
    rois: tuple[str, ...]
    fit: FitSpec
    params: dict[str, Any]


@dataclass
class Study:
    """A parsed, checked study (see ``probelib.study`` for the file format)."""

    name: str
    title: str
    seed: int
    datasets: tuple[DatasetSpec, ...]   # one per subject with per_subject, else one
    models: tuple[str, ...]
    rois: tuple[str, ...]
    fit: FitSpec
    analyses: list[AnalysisSpec]
    execution: dict[str, Any] = field(default_factory=dict)
    source: str = "<dict>"
    raw: dict = field(default_factory=dict)

    def describe(self) -> dict:
        return {"name": self.name, "datasets": [d.describe() for d in self.datasets],
                "models": list(self.models), "rois": list(self.rois), "fit": self.fit.describe(),
                "analyses": [{"name": a.name, "kind": a.kind, "models": list(a.models),
                              "rois": list(a.rois), "fit": a.fit.describe(), "params": a.params}
                             for a in self.analyses]}


# ------------------------------------------------------------------------------------------------
# Checking helpers
# ------------------------------------------------------------------------------------------------

class _Where:
    def __init__(self, source: str, base: Path | None = None):
        self.source = source
        self.base = base  # relative network files are found from here (the study file's folder)

    def error(self, place: str, message: str) -> StudyError:
        return StudyError(f"{self.source}: {place}: {message}")


def _suggest(name: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(where: _Where, place: str, table: Mapping, valid: Sequence[str]) -> None:
    for key in table:
        if key not in valid:
            raise where.error(place, f"unknown key {key!r}{_suggest(str(key), valid)}; "
                                     f"valid keys: {', '.join(valid)}")


def _table(where: _Where, raw: Mapping, key: str, place: str = "") -> dict:
    value = raw.get(key, {})
    if not isinstance(value, Mapping):
        raise where.error(place or f"[{key}]", f"must be a table; got {type(value).__name__}")
    return dict(value)


def _int(where, place, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(place, f"must be an integer; got {value!r}")
    if minimum is not None and value < minimum:
        raise where.error(place, f"must be >= {minimum}; got {value}")
    return int(value)


def _float(where, place, value, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(place, f"must be a number; got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise where.error(place, f"must be finite; got {value}")
    if positive and value <= 0:
        raise where.error(place, f"must be > 0; got {value}")
    return value


def _str(where, place, value, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(place, f"must be a non-empty string; got {value!r}")
    if choices is not None and value not in choices:
        raise where.error(place, f"{value!r} is not one of {', '.join(map(repr, choices))}"
                                 f"{_suggest(value, choices)}")
    return value


def _list(where, place, value, item, nonempty: bool = True) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise where.error(place, f"must be a list; got {value!r}")
    if nonempty and not value:
        raise where.error(place, "must not be empty")
    return [item(where, f"{place}[{i}]", v) for i, v in enumerate(value)]


def _models(where, place, value, panel: Sequence[str] | None = None) -> tuple[str, ...]:
    """A list of model specs, a panel name (:data:`PANELS`: the chapters' default panels,
    :func:`probelib.zoo.model_panel`) or, within an analysis, ``"panel"`` (the study's models) /
    ``"trained"`` (those without ``:untrained``). A spec is a zoo spec or a network with its layer,
    ``"<model>@<layer>"`` (:func:`probelib.zoo.split_network`); a relative ``<path>.py`` is found
    from the study file's folder and becomes absolute."""
    from ..zoo import check_model, model_panel, split_network

    if isinstance(value, str):
        if value == "demo":
            raise where.error(place, "'demo' names no single panel: 'demo_paper1' (chapters 2-5: the "
                                     "networks, their smoothed versions, untrained controls) or "
                                     "'demo_paper2' (chapters 6-8: standard and adversarially "
                                     "fine-tuned networks, untrained controls)")
        named = {f"{d}paper{k}": model_panel("demo" if d else "nsd", paper=k)
                 for d in ("demo_", "") for k in (1, 2)}
        if panel is not None:
            named |= {"panel": tuple(panel), "trained": tuple(m for m in panel if ":untrained" not in m)}
        if value not in named:
            raise where.error(place, f"{value!r} is not a list of model specs nor one of "
                                     f"{', '.join(map(repr, named))}{_suggest(value, list(named))}")
        specs = list(named[value])
    else:
        specs = _list(where, place, value, _str)
    for i, spec in enumerate(specs):
        try:
            check_model(spec)
        except ValueError as exc:
            raise where.error(f"{place}[{i}]", str(exc)) from None
        network = split_network(spec)
        path, sep, factory = network[0].rpartition(".py:") if network else ("", "", "")
        if sep:
            file = Path(path + ".py").expanduser()
            file = file if file.is_absolute() else (where.base or Path.cwd()) / file
            if not file.is_file():
                raise where.error(f"{place}[{i}]", f"no network file {str(file)!r} (a relative path is found "
                                                   f"from {str(where.base or Path.cwd())!r})")
            specs[i] = f"{file.resolve()}:{factory}@{network[1]}"
    if len(set(specs)) != len(specs):
        raise where.error(place, f"lists a model twice: {specs}")
    if not specs:
        raise where.error(place, "selects no model")
    return tuple(specs)


def _rois(where, place, value, dataset: str) -> tuple[str, ...]:
    rois = _list(where, place, value, _str)
    if dataset == "demo":
        for i, roi in enumerate(rois):
            if roi not in DEMO_ROIS:
                raise where.error(f"{place}[{i}]", f"unknown demo ROI {roi!r}{_suggest(roi, DEMO_ROIS)}; "
                                                   f"valid: {', '.join(DEMO_ROIS)}")
    if len(set(rois)) != len(rois):
        raise where.error(place, f"lists a ROI twice: {rois}")
    return tuple(rois)


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------

TOP_KEYS = ("study", "dataset", "panel", "readout", "analysis", "execution")
STUDY_KEYS = ("name", "title", "seed")
DATASET_KEYS = ("name", "image_size", "root", "subjects", "per_subject")
PANEL_KEYS = ("models", "rois", "n_samples")
READOUT_KEYS = ("kind", "options")
EXECUTION_KEYS = ("executor", "device", "threads", "batch_size", "local", "slurm", "dask")
EXECUTOR_OPTION_KEYS = {
    "local": ("workers",),
    "slurm": ("partition", "gpus_per_task", "cpus_per_task", "mem_gb", "time_min", "account",
              "array_parallelism", "folder", "additional"),
    "dask": ("scheduler", "cluster", "workers", "cores", "memory", "walltime", "queue", "account",
             "job_extra"),
}
ANALYSIS_COMMON = ("name", "kind", "models", "rois", "readout", "n_samples")


def read_study_file(path: str | Path) -> dict:
    """The raw mapping of a ``.toml`` / ``.yaml`` / ``.yml`` study file."""
    path = Path(path)
    if not path.exists():
        raise StudyError(f"{path}: no such study file")
    text = path.read_text()
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise StudyError(f"{path}: not valid TOML: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:  # pyyaml is in the [cluster] and [test] extras
            raise StudyError(f"{path}: reading YAML needs pyyaml (pip install pyyaml)") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise StudyError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, Mapping):
            raise StudyError(f"{path}: the top level must be a mapping")
        return dict(raw)
    raise StudyError(f"{path}: a study file ends in .toml, .yaml or .yml")


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b.c=VALUE"`` -> (["a", "b", "c"], value); VALUE is read as a TOML value (``4``,
    ``[1, 2]``, ``true``, ``"text"``), or taken as a string when it is not one."""
    path, sep, text = item.partition("=")
    if not sep or not path.strip():
        raise StudyError(f"override {item!r}: expected KEY=VALUE, e.g. dataset.image_size=96")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    return [p.strip() for p in path.split(".")], value


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Set values of a raw study (``KEY=VALUE`` items; ``analysis.<name>.<key>`` addresses the
    analysis of that name, ``analysis.*.<key>`` every analysis)."""
    raw = json.loads(json.dumps(raw))  # deep copy of plain data
    for item in overrides:
        keys, value = parse_override(item)
        if keys[0] == "analysis":
            if len(keys) != 3:
                raise StudyError(f"override {item!r}: use analysis.<name>.<key>=VALUE or analysis.*.<key>=VALUE")
            tables = raw.get("analysis", [])
            hits = [t for t in tables if keys[1] == "*" or t.get("name", t.get("kind")) == keys[1]]
            if not hits:
                names = [t.get("name", t.get("kind")) for t in tables]
                raise StudyError(f"override {item!r}: no analysis named {keys[1]!r}{_suggest(keys[1], names)}; "
                                 f"analyses: {', '.join(map(str, names))}")
            for t in hits:
                t[keys[2]] = value
            continue
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise StudyError(f"override {item!r}: {k!r} is not a table")
        node[keys[-1]] = value
    return raw


def load_study(source: str | Path | Mapping, overrides: Sequence[str] = ()) -> Study:
    """Parse and check a study: a path to a ``.toml`` / ``.yaml`` file or a mapping of the same
    structure, with optional ``KEY=VALUE`` overrides (see :func:`apply_overrides`)."""
    if isinstance(source, Mapping):
        raw, name, base = dict(source), "<study>", None
    else:
        raw, name, base = read_study_file(source), str(source), Path(source).resolve().parent
    if overrides:
        raw = apply_overrides(raw, overrides)
    return parse_study(raw, name, base)


def parse_study(raw: Mapping, source: str = "<study>", base: Path | None = None) -> Study:
    """Check ``raw`` (a study's structure) and return the :class:`Study`; ``source`` names it in
    errors, ``base``: the folder relative network files are found from (default: the working
    directory)."""
    from .analyses import ANALYSES

    w = _Where(source, base)
    _check_keys(w, "top level", raw, TOP_KEYS)
    st = _table(w, raw, "study")
    _check_keys(w, "[study]", st, STUDY_KEYS)
    if "name" not in st:
        raise w.error("[study]", "needs a name (name = \"...\")")
    name = _str(w, "[study] name", st["name"])
    seed = _int(w, "[study] seed", st.get("seed", 0), 0)

    ds = _table(w, raw, "dataset")
    _check_keys(w, "[dataset]", ds, DATASET_KEYS)
    dname = _str(w, "[dataset] name", ds.get("name", "demo"), DATASETS)
    image_size = _int(w, "[dataset] image_size", ds.get("image_size", 64 if dname == "demo" else 224), 8)
    root = ds.get("root")
    subjects = ds.get("subjects")
    per_subject = ds.get("per_subject", False)
    if not isinstance(per_subject, bool):
        raise w.error("[dataset] per_subject", f"must be true or false; got {per_subject!r}")
    if dname == "demo":
        for key in ("root", "subjects", "per_subject"):
            if key in ds:
                raise w.error(f"[dataset] {key}", "applies to dataset nsd only")
        datasets = (DatasetSpec("demo", image_size, seed),)
    else:
        if root is None:
            raise w.error("[dataset] root", "dataset nsd needs root, the local copy of the NSD bucket "
                                            "(override it: --set dataset.root=/path/to/nsd)")
        root = _str(w, "[dataset] root", root)
        subj = (1,) if subjects is None else tuple(_list(w, "[dataset] subjects", subjects,
                                                         lambda w_, p, v: _int(w_, p, v, 1)))
        bad = [s for s in subj if s > 8]
        if bad:
            raise w.error("[dataset] subjects", f"NSD has subjects 1-8; got {bad}")
        if per_subject:
            datasets = tuple(DatasetSpec("nsd", image_size, seed, root, (s,)) for s in subj)
        else:
            datasets = (DatasetSpec("nsd", image_size, seed, root, subj),)

    panel = _table(w, raw, "panel")
    _check_keys(w, "[panel]", panel, PANEL_KEYS)
    models = _models(w, "[panel] models", panel.get("models", "demo_paper2" if dname == "demo" else "paper2"))
    rois = _rois(w, "[panel] rois", panel.get("rois", list(DEMO_ROIS)), dname)
    n_samples = _int(w, "[panel] n_samples", panel.get("n_samples", 8), 1)

    ro = _table(w, raw, "readout")
    _check_keys(w, "[readout]", ro, READOUT_KEYS)
    kind = _str(w, "[readout] kind", ro.get("kind", "ridge"), READOUTS)
    options = ro.get("options", {})
    if not isinstance(options, Mapping):
        raise w.error("[readout] options", "must be a table")
    fit = FitSpec(kind, n_samples, seed, canonical(dict(options)))

    ex = _table(w, raw, "execution")
    _check_keys(w, "[execution]", ex, EXECUTION_KEYS)
    execution = parse_execution(w, ex)

    tables = raw.get("analysis", [])
    if isinstance(tables, Mapping):
        tables = [tables]
    if not isinstance(tables, list) or not tables:
        raise w.error("[[analysis]]", "a study needs at least one [[analysis]] table; kinds: "
                                      + ", ".join(ANALYSES))
    analyses, names = [], set()
    for i, t in enumerate(tables):
        place = f"[[analysis]] #{i + 1}"
        if not isinstance(t, Mapping):
            raise w.error(place, "must be a table")
        if "kind" not in t:
            raise w.error(place, f"needs a kind; kinds: {', '.join(ANALYSES)}")
        akind = _str(w, f"{place} kind", t["kind"], list(ANALYSES))
        aname = _str(w, f"{place} name", t.get("name", akind))
        place = f"[[analysis]] {aname!r}"
        if aname in names:
            raise w.error(place, "two analyses have this name; give each a distinct name")
        names.add(aname)
        spec = ANALYSES[akind]
        _check_keys(w, place, t, ANALYSIS_COMMON + tuple(spec.params))
        a_models = _models(w, f"{place} models", t.get("models", spec.default_models), panel=models)
        a_rois = _rois(w, f"{place} rois", t.get("rois", list(rois)), dname)
        a_fit = fit
        if "readout" in t or "n_samples" in t:
            a_kind = _str(w, f"{place} readout", t.get("readout", fit.kind), READOUTS)
            a_ns = _int(w, f"{place} n_samples", t.get("n_samples", fit.n_samples), 1)
            a_fit = FitSpec(a_kind, a_ns, seed, fit.options if a_kind == fit.kind else "{}")
        params = {}
        for key, p in spec.params.items():
            value = t.get(key, p.default)
            params[key] = p.check(w, f"{place} {key}", value)
        spec.validate(w, place, params, a_models, a_rois)
        analyses.append(AnalysisSpec(aname, akind, a_models, a_rois, a_fit, params))
    return Study(name=name, title=str(st.get("title", name)), seed=seed, datasets=datasets,
                 models=models, rois=rois, fit=fit, analyses=analyses, execution=execution,
                 source=source, raw=dict(raw))


def parse_execution(w: _Where, ex: Mapping) -> dict:
    out: dict[str, Any] = {}
    if "executor" in ex:
        out["executor"] = _str(w, "[execution] executor", ex["executor"], EXECUTORS)
    if "device" in ex:
        out["device"] = _str(w, "[execution] device", ex["device"])
    if "threads" in ex:
        out["threads"] = _int(w, "[execution] threads", ex["threads"], 1)
    if "batch_size" in ex:
        out["batch_size"] = _int(w, "[execution] batch_size", ex["batch_size"], 1)
    for name, keys in EXECUTOR_OPTION_KEYS.items():
        sub = ex.get(name, {})
        if not isinstance(sub, Mapping):
            raise w.error(f"[execution.{name}]", "must be a table")
        _check_keys(w, f"[execution.{name}]", sub, keys)
        out[name] = dict(sub)
    return out
