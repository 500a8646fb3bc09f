"""Units of work: small, hashable descriptions of one computation, and how one is run.

A :class:`Unit` names an analysis kind, its parameters, the model spec(s), the ROI, the dataset
and the fit; nothing else. :func:`run_unit` rebuilds what it needs from these (the dataset
loaded through its cache, the models fitted by :func:`probelib.fitting.fit_panel`) and calls the
same cached functions, with the same arguments, as the chapters do, so a chapter that makes the
call later reads the result from the cache.

While a unit runs, every cached call it makes (``probelib.cache.cached_call`` and the demo's
feature cache) is recorded through :func:`probelib.cache.observe`: hit or computed, and which cache
entry. When the unit has finished, a small *record* (``$PROBELIB_CACHE/study/done/<unit id>.json``)
lists those entries; a unit is *done* when its record exists and every entry it lists is still in
the cache (:func:`unit_done`), which costs a few ``stat`` calls and no computation. ``lookup_only``
re-runs a unit with a guard that raises :class:`CacheMiss` instead of computing anything: the exact
check of what a chapter would find, from the current data and weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import threading
import time
import traceback as tb
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .spec import DatasetSpec, FitSpec, StudyError, canonical


# ------------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
    """One independent computation. ``params`` is canonical JSON; ``rois`` (fit units: the ROIs
    whose readouts are fitted and scored) is not part of the unit's identity; ``networks``: the
    content digest (:func:`network_digest`) of each of its models that is a network outside the
    zoo (``"<model>@<layer>"``), filled in by :func:`build_plan`, so that a changed file or
    checkpoint is a different unit."""

    kind: str
    dataset: DatasetSpec
    fit: FitSpec | None = None
    models: tuple[str, ...] = ()
    roi: str | None = None
    params: str = "{}"
    rois: tuple[str, ...] = field(default=(), compare=False)
    networks: tuple[tuple[str, str], ...] = ()

    @property
    def parameters(self) -> dict:
        return json.loads(self.params)

    def describe(self) -> dict:
        """Everything that determines the unit's results (its identity), as plain data."""
        out = {"kind": self.kind, "dataset": self.dataset.describe(),
               "fit": None if self.fit is None else self.fit.describe(),
               "models": list(self.models), "roi": self.roi, "params": self.parameters}
        if self.networks:
            out["networks"] = dict(self.networks)
        return out

    @property
    def id(self) -> str:
        """16 hex digits: digest of :meth:`describe` and probelib's version."""
        from .. import __version__
        text = canonical({"unit": self.describe(), "probelib": __version__})
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """Short human-readable description (kind, models, ROI, the parameters that vary)."""
        parts = [self.kind]
        if self.models:
            from ..zoo import short_name
            short = [short_name(m) for m in self.models]
            parts.append(",".join(short) if len(short) <= 2 else f"{len(short)} models")
        if self.roi:
            parts.append(self.roi)
        if self.kind == "fit" and self.fit is not None:
            parts.append(self.fit.kind)
        p = self.parameters
        for key in ("eps", "probes"):
            if key in p and not isinstance(p[key], list):
                parts.append(f"{key}={p[key]}")
        if self.kind in ("dataset", "fit") or not self.dataset.average_subjects or self.dataset.subjects:
            parts.append(f"[{self.dataset.label}]")
        return " ".join(parts)


_DIGESTS: dict[tuple, str] = {}


def network_digest(spec: str) -> str:
    """Content digest (16 hex digits) of a network outside the zoo, ``"<model>@<layer>"``
    (:func:`probelib.zoo.split_network`): the network is built on the CPU with its default weights
    and described by :func:`probelib.cache.module_key` (code, settings, every weight). Kept per
    process while the network's file is unchanged (its size and modification time)."""
    from ..cache import module_key
    from ..zoo import build_encoder, split_network

    model, _ = split_network(spec)
    path, sep, _ = model.rpartition(".py:")
    try:
        st = os.stat(path + ".py") if sep else None
    except OSError:
        st = None
    key = (spec, None if st is None else (st.st_size, st.st_mtime_ns))
    if key not in _DIGESTS:
        text = canonical(module_key(build_encoder(spec, device="cpu")))
        _DIGESTS[key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _DIGESTS[key]


def with_networks(unit: Unit) -> Unit:
    """``unit`` with the content digests of its models that are networks outside the zoo."""
    from ..zoo import split_network

    networks = tuple((m, network_digest(m)) for m in unit.models if split_network(m) is not None)
    return replace(unit, networks=networks) if networks != unit.networks else unit


def make_unit(kind: str, dataset: DatasetSpec, fit: FitSpec | None = None, models=(), roi=None,
              params: dict | None = None, rois=()) -> Unit:
    return Unit(kind, dataset, fit, tuple(models), roi, canonical(params or {}), tuple(rois))


@dataclass
class Plan:
    """The units of a study in dependency order: ``stages[i]`` only needs units of earlier stages."""

    units: dict[str, Unit]
    deps: dict[str, tuple[str, ...]]
    analyses: dict[str, list[str]]       # unit id -> names of the analyses that asked for it
    stages: list[list[str]]

    def __len__(self) -> int:
        return len(self.units)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for u in self.units.values():
            out[u.kind] = out.get(u.kind, 0) + 1
        return out

    def dependents(self, unit_id: str) -> set[str]:
        """Every unit that needs ``unit_id``, directly or not."""
        out, todo = set(), [unit_id]
        while todo:
            cur = todo.pop()
            for uid, ds in self.deps.items():
                if cur in ds and uid not in out:
                    out.add(uid)
                    todo.append(uid)
        return out


def build_plan(study) -> Plan:
    """Expand a :class:`~probelib.study.spec.Study` into units (deduplicated: the same computation
    asked for by two analyses is one unit) with their dependencies and stages."""
    from .analyses import KINDS as ANALYSES

    units: dict[str, Unit] = {}
    deps: dict[str, tuple[str, ...]] = {}
    analyses: dict[str, list[str]] = {}
    fit_rois: dict[str, set[str]] = {}

    def add(unit: Unit, analysis: str | None) -> str:
        unit = with_networks(unit)
        uid = unit.id
        if uid not in units:
            units[uid] = unit
            deps[uid] = tuple(dict.fromkeys(add(d, None) for d in ANALYSES[unit.kind].needs(unit)))
        if unit.kind == "fit":
            fit_rois.setdefault(uid, set()).update(unit.rois)
        if analysis is not None:
            analyses.setdefault(uid, [])
            if analysis not in analyses[uid]:
                analyses[uid].append(analysis)
        return uid

    for a in study.analyses:
        for dataset in study.datasets:
            for unit in ANALYSES[a.kind].expand(a, dataset):
                add(unit, a.name)
    for uid, rois in fit_rois.items():
        units[uid] = replace(units[uid], rois=tuple(sorted(rois)))
    stage: dict[str, int] = {}

    def depth(uid: str) -> int:
        if uid not in stage:
            stage[uid] = 0 if not deps[uid] else 1 + max(depth(d) for d in deps[uid])
        return stage[uid]

    for uid in units:
        depth(uid)
    n = max(stage.values(), default=-1) + 1
    stages = [[uid for uid in units if stage[uid] == s] for s in range(n)]
    return Plan(units, deps, analyses, stages)


# ------------------------------------------------------------------------------------------------
# Recording (and guarding) the cached calls of a unit
# ------------------------------------------------------------------------------------------------

class CacheMiss(LookupError):
    """Raised in lookup-only mode when a cached call of a unit has no entry in the cache."""


@dataclass
class CachedCall:
    function: str
    entry: str        # path of the entry relative to the cache directory
    hit: bool
    seconds: float


class _Recorder:
    """The observer (:func:`probelib.cache.observe`) of a unit's cached calls."""

    def __init__(self, root: Path, lookup_only: bool, log=None):
        self.root, self.lookup_only, self.log = root, lookup_only, log
        self.calls: list[CachedCall] = []

    def _relative(self, entry: Path) -> str:
        try:
            return str(entry.resolve().relative_to(self.root))
        except ValueError:
            return str(entry)

    def before(self, event) -> None:
        """Refuse to compute a missing entry in lookup mode."""
        if not event.hit and self.lookup_only:
            raise CacheMiss(f"{event.function}: no cache entry {self._relative(event.entry)}")

    def __call__(self, event) -> None:
        rel = self._relative(event.entry)
        self.calls.append(CachedCall(event.function, rel, event.hit, event.seconds))
        if self.log is not None:
            self.log(f"{'hit     ' if event.hit else 'computed'} {event.function} {event.seconds:.2f} s {rel}")


_local = threading.local()


def note_files(paths) -> None:
    """Add files (not joblib entries, e.g. the NSD extraction cache) to the current unit's record."""
    rec = getattr(_local, "recorder", None)
    if rec is None:
        return
    for p in paths:
        rec.calls.append(CachedCall("file", rec._relative(Path(p)), True, 0.0))


@contextlib.contextmanager
def recording(lookup_only: bool = False, log=None):
    """Record the cached calls made in this thread; ``lookup_only``: raise :class:`CacheMiss`
    instead of computing a missing entry. Yields the recorder (``.calls``)."""
    from ..cache import cache_dir, check_cache_dir, observe

    root = check_cache_dir(cache_dir()).resolve()
    rec = _Recorder(root, lookup_only, log)
    previous = getattr(_local, "recorder", None)
    _local.recorder = rec
    try:
        with observe(rec, before=rec.before):
            yield rec
    finally:
        _local.recorder = previous


# ------------------------------------------------------------------------------------------------
# Records of finished units
# ------------------------------------------------------------------------------------------------

def records_dir(root: str | Path | None = None) -> Path:
    from ..cache import cache_dir
    return Path(root or cache_dir()) / "study" / "done"


def record_path(unit: Unit, root=None) -> Path:
    return records_dir(root) / f"{unit.id}.json"


def read_record(unit: Unit, root=None) -> dict | None:
    path = record_path(unit, root)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def unit_done(unit: Unit, root=None) -> bool:
    """True when the unit's record exists and every cache entry it lists is still there (a record
    without its list of entries is not one :func:`run_unit` wrote: the unit is not done)."""
    rec = read_record(unit, root)
    if rec is None or rec.get("unit") != unit.describe():
        return False
    entries = rec.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return False                           # not a record this code wrote: run the unit again
    base = Path(root) if root is not None else records_dir().parents[1]
    for entry in entries:
        p = Path(entry) if os.path.isabs(entry) else base / entry
        if not ((p / "output.pkl").exists() or (p.is_file())):
            return False
    return True


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def forget(unit: Unit, root=None) -> None:
    """Remove a unit's record (its cache entries stay: the unit's rerun reads them)."""
    record_path(unit, root).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------
# Running a unit
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunOptions:
    """Where and how units run: the cache (shared by every worker), logs, device, threads."""

    cache_dir: str
    log_dir: str
    device: str = "cpu"
    threads: int = 1
    trust_shared_cache: bool = False


@dataclass
class UnitOutcome:
    """What came back from one unit (small: results stay in the cache)."""

    unit_id: str
    label: str
    status: str                    # "computed", "cached" (lookup), "failed"
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    digest: str = ""
    summary: dict = field(default_factory=dict)
    hits: int = 0
    computed: int = 0
    error: str = ""
    traceback: str = ""
    log: str = ""
    host: str = ""
    pid: int = 0
    started: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def result_digest(value: Any) -> str:
    """Content digest of a unit's results: every array (bytes, dtype, shape) and scalar, walked
    through dataclasses, mappings and sequences. Equal digests mean equal values, bit for bit."""
    import numpy as np
    import xxhash

    h = xxhash.xxh3_128()

    def walk(v):
        import dataclasses
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            h.update(f"<{type(v).__name__}>".encode())
            for f in dataclasses.fields(v):
                h.update(f.name.encode())
                walk(getattr(v, f.name))
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                h.update(repr(k).encode())
                walk(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for e in v:
                walk(e)
            h.update(b"]")
        elif isinstance(v, np.ndarray) or type(v).__module__.startswith("torch"):
            a = np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v)
            h.update(f"{a.dtype}|{a.shape}|".encode())
            if a.dtype == object:
                walk(a.tolist())
            else:
                h.update(memoryview(a).cast("B"))
        elif isinstance(v, (np.generic,)):
            walk(v.item())
        else:
            h.update(repr(v).encode())

    walk(value)
    return h.hexdigest()


class _UnitLog:
    def __init__(self, path: Path | None):
        self._fh = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._fh = open(path, "a", buffering=1)

    def __call__(self, line: str) -> None:
        if self._fh is not None:
            self._fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def close(self):
        if self._fh is not None:
            self._fh.close()


def _apply_environment(options: RunOptions) -> None:
    os.environ["PROBELIB_CACHE"] = options.cache_dir
    if options.trust_shared_cache:
        os.environ["PROBELIB_TRUST_SHARED_CACHE"] = "1"
    import torch
    if torch.get_num_threads() != options.threads:
        torch.set_num_threads(options.threads)


def run_unit(unit: Unit, options: RunOptions | None = None, lookup_only: bool = False,
             keep_values: bool = False) -> UnitOutcome | tuple[UnitOutcome, dict]:
    """Run one unit (in this process) and write its record; never raises for the unit's errors.

    ``lookup_only``: compute nothing, read every result from the cache (status ``"cached"``) or
    fail with a :class:`CacheMiss` (status ``"failed"``, error ``CacheMiss: ...``); no record is
    written. ``keep_values``: also return the results themselves, ``(outcome, values)``.
    """
    from .analyses import KINDS as ANALYSES
    from ..cache import cache_dir

    if options is None:
        options = RunOptions(str(cache_dir()), str(cache_dir() / "study" / "logs"))
    _apply_environment(options)
    log_path = None if lookup_only else Path(options.log_dir) / f"{unit.id}.log"
    log = _UnitLog(log_path)
    out = UnitOutcome(unit.id, unit.label, "failed", log=str(log_path or ""), host=platform.node(),
                      pid=os.getpid(), started=time.time())
    values: dict = {}
    t0, c0 = time.perf_counter(), time.process_time()
    job = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    where = f", slurm job {job[0]}_{job[1]}" if all(job) else (
        f", slurm job {os.environ['SLURM_JOB_ID']}" if "SLURM_JOB_ID" in os.environ else "")
    log(f"start {unit.label} (unit {unit.id}) on {out.host}, pid {out.pid}{where}, device {options.device}, "
        f"{options.threads} thread(s)")
    try:
        for spec, planned in unit.networks:
            if network_digest(spec) != planned:
                raise StudyError(f"the network {spec!r} is not the one this study was planned with (its code "
                                 "or weights changed since): run the study again to plan it anew")
        with recording(lookup_only, log) as rec:
            values = ANALYSES[unit.kind].run(unit, Context(options.device))
        out.digest = result_digest(values)
        out.summary = ANALYSES[unit.kind].summarize(unit, values)
        out.hits = sum(c.hit for c in rec.calls)
        out.computed = sum(not c.hit for c in rec.calls)
        out.status = "cached" if lookup_only else "computed"
        out.seconds = time.perf_counter() - t0
        out.cpu_seconds = time.process_time() - c0
        if not lookup_only:
            entries = list(dict.fromkeys(c.entry for c in rec.calls))
            record = {"unit": unit.describe(), "label": unit.label, "entries": entries,
                      "digest": out.digest, "summary": out.summary, "seconds": out.seconds,
                      "cpu_seconds": out.cpu_seconds,
                      "hits": out.hits, "computed": out.computed, "host": out.host,
                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            _atomic_write(record_path(unit, options.cache_dir), json.dumps(record, indent=1, default=str))
        log(f"done in {out.seconds:.1f} s: {out.computed} computed, {out.hits} from the cache; "
            f"digest {out.digest}")
    except Exception as exc:  # a failed unit is reported, never fatal to the others
        out.seconds = time.perf_counter() - t0
        out.error = f"{type(exc).__name__}: {exc}"
        out.traceback = tb.format_exc()
        log(f"FAILED after {out.seconds:.1f} s\n{out.traceback}")
    finally:
        log.close()
    return (out, values) if keep_values else out


def run_task(units: list[Unit], options: RunOptions) -> list[UnitOutcome]:
    """Run several units one after another (a batch sent to one worker or one Slurm task)."""
    return [run_unit(u, options) for u in units]


# ------------------------------------------------------------------------------------------------
# What a unit rebuilds: datasets and fitted panels (kept per process)
# ------------------------------------------------------------------------------------------------

class Context:
    """Per-unit access to datasets and fits; both are kept per process (small LRU caches), so a
    worker that runs several units of the same model loads and fits once."""

    def __init__(self, device: str = "cpu"):
        self.device = device

    def dataset(self, spec: DatasetSpec):
        return _dataset(spec)

    def fit(self, dataset: DatasetSpec, fit: FitSpec, models, rois):
        """The fitted panel of exactly ``models`` x ``rois`` (panel-wide calls such as
        ``sweep_panel`` then compute this unit's part only)."""
        from dataclasses import replace as _replace

        panel = _panel(dataset, fit, tuple(models), tuple(rois), self.device)
        if set(panel.rois) == set(rois):
            return panel
        keep = [k for k in panel.models if k[1] in set(rois)]
        return _replace(panel, models={k: panel.models[k] for k in keep},
                        predictivity={k: panel.predictivity[k] for k in keep},
                        predictions={k: panel.predictions[k] for k in keep})


_DATASETS: dict = {}
_PANELS: dict = {}


def _dataset(spec: DatasetSpec):
    from ..cache import cache_dir

    key = (str(cache_dir()), spec)  # per cache: a unit records the entries of the cache it fills
    if key not in _DATASETS:
        from ..data import load_dataset

        kwargs: dict[str, Any] = {"image_size": spec.image_size, "seed": spec.seed}
        if not spec.average_subjects:
            kwargs["average_subjects"] = False
        if spec.name == "nsd":
            if spec.subjects is not None:
                kwargs["subjects"] = list(spec.subjects)
            # the extraction (reading the betas) is cached in its own folder, one per dataset
            kwargs["cache_dir"] = str(nsd_cache_dir(spec, cache_dir()))
            kwargs["progress"] = False
        ds = load_dataset(spec.name, nsd_root=spec.root, **kwargs)
        while len(_DATASETS) >= 3:
            _DATASETS.pop(next(iter(_DATASETS)))
        _DATASETS[key] = ds
    return _DATASETS[key]


def nsd_cache_dir(spec: DatasetSpec, root) -> Path:
    digest = hashlib.sha256(canonical(spec.describe()).encode()).hexdigest()[:16]
    return Path(root) / "study" / "nsd" / digest


def _panel(dataset: DatasetSpec, fit: FitSpec, models: tuple, rois: tuple, device: str):
    """The fitted panel of ``models`` with (at least) ``rois``; kept per process, extended with
    further ROIs when a later unit needs them (the encoders' features come from the cache)."""
    from ..cache import cache_dir

    key = (str(cache_dir()), dataset, fit, models, device)
    have = _PANELS.get(key)
    if have is None or not set(rois) <= set(have.rois):
        from ..fitting import fit_panel

        ds = _dataset(dataset)
        wanted = list(dict.fromkeys(list(have.rois if have is not None else []) + list(rois)))
        panel = fit_panel(ds, list(models), wanted, kind=fit.kind, device=device, seed=fit.seed,
                          n_samples=fit.n_samples, progress=False, **fit.readout_options)
        _PANELS.pop(key, None)
        while len(_PANELS) >= 4:
            _PANELS.pop(next(iter(_PANELS)))
        _PANELS[key] = panel
    return _PANELS[key]


def clear_process_caches() -> None:
    """Forget the datasets and fits kept by this process (tests, benchmarks)."""
    _DATASETS.clear()
    _PANELS.clear()
