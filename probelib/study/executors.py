"""Send the units of a study to an existing engine and follow them: a local process pool, Slurm
(submitit job arrays) or Dask (``distributed``, through its ``concurrent.futures`` executor).

:func:`run_study` is the whole loop: expand the study, skip what is done, submit every unit whose
dependencies are done (fits before probes, probes before transfers), follow the engine, collect
what came back, report. The engines do the scheduling; probelib only orders the submissions.
Results go to the content-keyed cache (``$PROBELIB_CACHE``, which every worker must see: on a
cluster, a shared filesystem); what comes back to the driver is small (status, digest, summary).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import Study, StudyError, load_study
from .units import Plan, RunOptions, Unit, UnitOutcome, build_plan, read_record, run_unit, unit_done

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# ------------------------------------------------------------------------------------------------
# Worker-side entry points (importable without torch: a spawned worker sets its threads first)
# ------------------------------------------------------------------------------------------------

def _init_worker(threads: int) -> None:
    for v in THREAD_VARIABLES:
        os.environ[v] = str(threads)


def run_batch(units: list[Unit], options: RunOptions, skip_done: bool = False,
              needs: Mapping[str, Sequence[str]] | None = None) -> list[UnitOutcome]:
    """Run a batch of units one after another in this process (one pool task, one Slurm array
    task or one Dask task). ``needs``: unit id -> ids of units earlier in the batch that it needs
    (a unit whose need failed is skipped). ``skip_done``: a unit whose record is complete is not
    run again (a requeued Slurm task resumes where it stopped)."""
    _init_worker(options.threads)
    out, failed = [], {}
    for unit in units:
        bad = [failed[d] for d in (needs or {}).get(unit.id, ()) if d in failed]
        if bad:
            out.append(UnitOutcome(unit.id, unit.label, "skipped", error="needs " + ", ".join(bad)))
            failed[unit.id] = unit.label
        elif skip_done and unit_done(unit, options.cache_dir):
            rec = read_record(unit, options.cache_dir) or {}
            out.append(UnitOutcome(unit.id, unit.label, "cached", digest=rec.get("digest", ""),
                                   summary=rec.get("summary", {})))
        else:
            out.append(run_unit(unit, options))
            if out[-1].status == "failed":
                failed[unit.id] = unit.label
    return out


try:  # requeued by submitit at a time limit or pre-emption; resumes through the cache and records
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is in the [cluster] extra
    _Checkpointable = object


class SlurmTask(_Checkpointable):
    """The callable a Slurm array task runs: :func:`run_batch`, requeued when Slurm signals a
    time limit or a pre-emption (finished units are then skipped)."""

    def __call__(self, units, options, needs=None):
        return run_batch(units, options, skip_done=True, needs=needs)


# ------------------------------------------------------------------------------------------------
# Backends
# ------------------------------------------------------------------------------------------------

class _Handle:
    def __init__(self, units: list[Unit], ref: Any, needs: dict | None = None):
        self.units, self.ref, self.needs = units, ref, needs or {}
        self.submitted = time.time()
        self.gone_since: float | None = None
        self.attempts = 1


class InProcessBackend:
    """Runs each batch at once in this process (``workers=0``): for debugging and as the serial
    reference."""

    name = "serial"

    def __init__(self, options: RunOptions):
        self.options = options

    def submit(self, batches):
        out = []
        for b, needs in batches:
            h = _Handle(b, None, needs)
            h.result = run_batch(b, self.options, needs=needs)
            out.append(h)
        return out

    def poll(self, handles):
        return [(h, h.result, None) for h in handles]

    def running(self, handles) -> int:
        return 0

    def close(self):
        pass


class LocalBackend:
    """A process pool on this machine (``concurrent.futures.ProcessPoolExecutor``, spawned
    processes, ``threads`` torch/BLAS threads each). A worker that dies (killed, out of memory)
    breaks the pool: its batches are retried once in a new pool, then reported failed."""

    name = "local"

    def __init__(self, options: RunOptions, workers: int = 2):
        self.options, self.workers = options, workers
        self._pool = None

    def _get_pool(self):
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.options.threads,))
        return self._pool

    def submit(self, batches):
        return [_Handle(b, self._get_pool().submit(run_batch, b, self.options, False, n), n) for b, n in batches]

    def poll(self, handles):
        from concurrent.futures.process import BrokenProcessPool
        out, broken = [], []
        for h in handles:
            if not h.ref.done():
                continue
            try:
                out.append((h, h.ref.result(), None))
            except BrokenProcessPool as exc:
                broken.append((h, exc))
            except Exception as exc:  # pragma: no cover - run_batch catches the units' errors
                out.append((h, None, f"{type(exc).__name__}: {exc}"))
        if broken:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            for h, exc in broken:
                if h.attempts < 2:
                    h.ref = self._get_pool().submit(run_batch, h.units, self.options, False, h.needs)
                    h.attempts += 1
                else:
                    out.append((h, None, "the worker process died twice (killed, out of memory, or started "
                                               "from a script that calls run_study outside "
                                               "`if __name__ == '__main__':`)"))
        return out

    def running(self, handles) -> int:
        return min(self.workers, sum(1 for h in handles if h.ref.running()))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskBackend:
    """A ``distributed`` cluster through its ``concurrent.futures`` interface
    (``Client.get_executor``): a running scheduler (``scheduler="tcp://host:8786"``), a
    ``LocalCluster`` of ``workers`` single-threaded processes (``cluster="local"``, the default)
    or a dask-jobqueue ``SLURMCluster`` of ``workers`` jobs (``cluster="slurm"``; ``cores``,
    ``memory``, ``walltime``, ``queue``, ``account``, ``job_extra``), or a ``client`` you made."""

    name = "dask"

    def __init__(self, options: RunOptions, scheduler: str | None = None, cluster: str = "local",
                 workers: int = 2, client=None, cores: int | None = None, memory: str = "8GB",
                 walltime: str = "01:00:00", queue: str | None = None, account: str | None = None,
                 job_extra: Sequence[str] = ()):
        from distributed import Client

        self.options, self.workers = options, workers
        self._own_client, self._cluster = client is None, None
        env = {v: str(options.threads) for v in THREAD_VARIABLES}
        env["PROBELIB_CACHE"] = options.cache_dir
        if client is not None:
            self.client = client
        elif scheduler:
            self.client = Client(scheduler)
        elif cluster == "local":
            from distributed import LocalCluster
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, env=env)
            self.client = Client(self._cluster)
        elif cluster == "slurm":
            from dask_jobqueue import SLURMCluster
            self._cluster = SLURMCluster(
                cores=cores or options.threads, processes=1, memory=memory, walltime=walltime,
                queue=queue, account=account, job_extra_directives=list(job_extra),
                log_directory=str(Path(options.log_dir) / "dask-jobqueue"),
                job_script_prologue=[f"export {k}={v}" for k, v in env.items()])
            self._cluster.scale(jobs=workers)
            self.client = Client(self._cluster)
        else:
            raise StudyError(f"unknown dask cluster {cluster!r}; valid: 'local', 'slurm' (or a scheduler address)")
        self.executor = self.client.get_executor(pure=False)

    def submit(self, batches):
        return [_Handle(b, self.executor.submit(run_batch, b, self.options, False, n), n) for b, n in batches]

    def poll(self, handles):
        out = []
        for h in handles:
            if not h.ref.done():
                continue
            try:
                out.append((h, h.ref.result(), None))
            except Exception as exc:  # a worker lost several times, a task that could not run
                out.append((h, None, f"{type(exc).__name__}: {exc} (dask worker logs: client.get_worker_logs())"))
        return out

    def running(self, handles) -> int:
        try:
            threads = sum(self.client.nthreads().values())
        except Exception:  # pragma: no cover
            threads = 0
        return min(threads, sum(1 for h in handles if not h.ref.done()))

    def close(self):
        import logging
        # workers that stop (or Slurm jobs that end) make the scheduler log closed connections
        logging.getLogger("distributed").setLevel(logging.ERROR)
        try:
            self.executor.shutdown(wait=False)
        except Exception:  # pragma: no cover
            pass
        if self._own_client:
            self.client.close()
            if self._cluster is not None:
                self._cluster.close()


#: Slurm states after which a task that left no result has failed.
_SLURM_FINAL = {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "COMPLETED"}


class SlurmBackend:
    """Slurm through submitit: each submission round is one job array (``map_array``), one
    array task per batch of units. Options: ``partition``, ``gpus_per_task``, ``cpus_per_task``
    (default: ``threads``), ``mem_gb``, ``time_min``, ``account``, ``array_parallelism``,
    ``folder`` (submitit's files and logs; default ``<cache>/study/slurm``), ``additional``
    (further sbatch options). Jobs are followed with ``squeue`` and the files submitit writes, so
    a cluster without accounting (``sacct``) works; a task that disappears or ends without a
    result (killed, time limit, out of memory) is reported failed with its log paths."""

    name = "slurm"

    def __init__(self, options: RunOptions, folder: str | None = None, partition: str | None = None,
                 gpus_per_task: int = 0, cpus_per_task: int | None = None, mem_gb: float | None = None,
                 time_min: int = 60, account: str | None = None, array_parallelism: int = 256,
                 additional: Mapping | None = None, job_name: str = "probelib"):
        import logging

        import submitit

        self.options = options
        self.folder = Path(folder or Path(options.cache_dir) / "study" / "slurm")
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.executor = submitit.SlurmExecutor(folder=str(self.folder / "%j"), python=sys.executable)
        params: dict[str, Any] = {
            "time": int(time_min), "cpus_per_task": int(cpus_per_task or options.threads),
            "array_parallelism": int(array_parallelism), "job_name": job_name,
            "setup": [f"export {v}={options.threads}" for v in THREAD_VARIABLES]
                     + [f"export PROBELIB_CACHE={options.cache_dir}"]
                     + (["export PROBELIB_TRUST_SHARED_CACHE=1"] if options.trust_shared_cache else []),
        }
        if partition:
            params["partition"] = partition
        if gpus_per_task:
            params["gpus_per_task"] = int(gpus_per_task)
        if mem_gb:
            params["mem"] = f"{int(mem_gb)}GB"
        if account:
            params["account"] = account
        if additional:
            params["additional_parameters"] = dict(additional)
        self.executor.update_parameters(**params)
        # without accounting sacct fails on every call: submitit only warns; silence the warnings
        logging.getLogger("submitit").setLevel(logging.ERROR)
        self._task = SlurmTask()
        self._states: dict[str, str] = {}

    def submit(self, batches):
        units = [b for b, _ in batches]
        needs = [n for _, n in batches]
        jobs = self.executor.map_array(self._task, units, [self.options] * len(batches), needs)
        return [_Handle(b, j, n) for b, j, n in zip(units, jobs, needs)]

    def _refresh(self, handles):
        ids = sorted({str(h.ref.job_id).split("_")[0] for h in handles})
        if not ids:
            return
        try:
            text = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", ",".join(ids), "-o", "%i|%T"],
                                  capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return
        states = {}
        for line in text.splitlines():
            jid, _, state = line.strip().partition("|")
            states[jid] = state
        self._states = states

    def poll(self, handles):
        self._refresh(handles)
        out, now = [], time.time()
        for h in handles:
            job = h.ref
            if job.paths.result_pickle.exists():
                try:
                    out.append((h, job.result(), None))
                except Exception as exc:
                    out.append((h, None, f"{type(exc).__name__}: {str(exc)[-2000:]}"))
                continue
            state = self._states.get(str(job.job_id))
            if state is None or state.split()[0] in _SLURM_FINAL:
                # ended (or forgotten by slurmctld) without a result: give the file a moment
                h.gone_since = h.gone_since or now
                if now - h.gone_since > 5:
                    why = f"Slurm state {state}" if state else "no longer known to Slurm"
                    out.append((h, None, f"the Slurm task {job.job_id} ended without a result ({why})"))
            else:
                h.gone_since = None
        return out

    def running(self, handles) -> int:
        return sum(1 for h in handles if self._states.get(str(h.ref.job_id), "").startswith("RUNNING"))

    def logs(self, h) -> str:
        return f"{h.ref.paths.stdout} / {h.ref.paths.stderr}"

    def close(self):
        pass


# ------------------------------------------------------------------------------------------------
# Progress and report
# ------------------------------------------------------------------------------------------------

class Progress:
    """One status line: done / running / queued / failed (``\\r`` on a terminal; otherwise a
    line when something changed, at most every ``every`` seconds)."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream=None, every: float = 10.0):
        self.total, self.label, self.enabled = total, label, enabled
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every, self._last, self._last_text = every, 0.0, ""

    def update(self, counts: dict[str, int], force: bool = False) -> None:
        if not self.enabled:
            return
        text = (f"[{self.label}] {counts.get('done', 0)}/{self.total} done · {counts.get('running', 0)} running · "
                f"{counts.get('queued', 0)} queued · {counts.get('waiting', 0)} waiting · "
                f"{counts.get('failed', 0)} failed")
        if counts.get("skipped"):
            text += f" · {counts['skipped']} skipped"
        now = time.time()
        if self.tty:
            self.stream.write("\r" + text.ljust(len(self._last_text)))
            if force:
                self.stream.write("\n")
            self.stream.flush()
        elif text != self._last_text and (force or now - self._last >= self.every):
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now
        else:
            return
        self._last_text = text


@dataclass
class StudyReport:
    """What a study run did, unit by unit.

    ``status[unit_id]``: ``"done before"`` (its record was complete: not run), ``"computed"``,
    ``"failed"``, ``"skipped"`` (a unit it needs failed). ``outcomes`` hold what came back
    (seconds, cached calls hit / computed, digest of the results, log path, error).
    """

    study: str
    executor: str
    plan: Plan
    status: dict[str, str]
    outcomes: dict[str, UnitOutcome]
    seconds: float
    cache_dir: str
    log_dir: str
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(s in ("failed", "skipped") for s in self.status.values())

    def ids(self, status: str) -> list[str]:
        return [uid for uid, s in self.status.items() if s == status]

    @property
    def failed(self) -> list[UnitOutcome]:
        return [self.outcomes[uid] for uid in self.ids("failed")]

    def digests(self) -> dict[str, str]:
        """unit id -> digest of its results (from what came back, or from its record)."""
        out = {}
        for uid, unit in self.plan.units.items():
            o = self.outcomes.get(uid)
            if o is not None and o.digest:
                out[uid] = o.digest
            else:
                rec = read_record(unit, self.cache_dir)
                if rec:
                    out[uid] = rec.get("digest", "")
        return out

    def table(self):
        import pandas as pd
        rows = []
        for uid, unit in self.plan.units.items():
            o = self.outcomes.get(uid)
            rows.append({"unit": uid, "kind": unit.kind, "label": unit.label, "status": self.status.get(uid),
                         "seconds": o.seconds if o else None, "computed": o.computed if o else None,
                         "hits": o.hits if o else None, "digest": (o.digest if o else "") or "",
                         "error": (o.error if o else self.errors.get(uid, "")) or "",
                         "log": (o.log if o else "") or ""})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        counts = {s: len(self.ids(s)) for s in ("done before", "computed", "failed", "skipped")}
        lines = [f"study {self.study} ({self.executor}): {len(self.plan)} units: "
                 + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" in {self.seconds:.1f} s"]
        hits = sum(o.hits for o in self.outcomes.values())
        computed = sum(o.computed for o in self.outcomes.values())
        if self.outcomes:
            lines.append(f"cached calls of the units that ran: {computed} computed, {hits} read from the cache")
        for uid in self.ids("failed"):
            o = self.outcomes.get(uid)
            err = o.error if o else self.errors.get(uid, "")
            lines.append(f"FAILED {self.plan.units[uid].label} (unit {uid}): {err.splitlines()[0] if err else '?'}")
            if o and o.log:
                lines.append(f"       log: {o.log}")
        for uid in self.ids("skipped"):
            lines.append(f"skipped {self.plan.units[uid].label}: {self.errors.get(uid, '')}")
        return "\n".join(lines)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(
            {"study": self.study, "executor": self.executor, "seconds": self.seconds,
             "units": {uid: {"label": self.plan.units[uid].label, "status": self.status.get(uid),
                             **({k: v for k, v in self.outcomes[uid].to_dict().items() if k != "traceback"}
                                if uid in self.outcomes else {}), "error": self.errors.get(uid, "")}
                       for uid in self.plan.units}}, indent=1, default=str))


# ------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------

def _locality(unit: Unit) -> tuple:
    """Sort key that puts units of the same data and models next to each other, so that a batch
    reuses what its worker has loaded and fitted."""
    return (unit.dataset.describe().__repr__(), unit.models, repr(unit.fit))


def _batches(units: list[Unit], size: int, slots: int = 0) -> list[list[Unit]]:
    """Tasks of a submission round. ``size >= 1``: chunks of ``size`` units in locality order.
    ``size == 0`` (auto): one task per group of units that share their data, fit and models (a
    worker loads and fits them once), groups split in two while there are fewer tasks than
    ``2 * slots`` (so that every worker has work)."""
    if size >= 1:
        return [units[i:i + size] for i in range(0, len(units), size)]
    groups: list[list[Unit]] = []
    for unit in units:
        if groups and _locality(groups[-1][0]) == _locality(unit):
            groups[-1].append(unit)
        else:
            groups.append([unit])
    while slots and len(groups) < 2 * slots and max(len(g) for g in groups) > 1:
        big = max(range(len(groups)), key=lambda i: len(groups[i]))
        g = groups.pop(big)
        groups[big:big] = [g[:len(g) // 2], g[len(g) // 2:]]
    return groups


def _chains(ready: list[Unit], plan: Plan, status: dict[str, str], by_key: dict[tuple, list[str]],
            slots: int) -> list[tuple[list[Unit], dict[str, list[str]]]]:
    """Tasks of a submission round in automatic mode: each group of ready units that share their
    data, fit and models (see :func:`_batches`) is extended with the waiting units of the same
    data, fit and models whose every need is done or in the task (e.g. a model's fit and then its
    probes): one worker loads and fits the model once and runs them in order. Returns
    ``(units, needs)`` pairs, ``needs`` naming the needs of a unit inside its task. Groups without
    internal needs are split while there are fewer tasks than ``2 * slots``."""
    done = ("done before", "computed")
    tasks = []
    taken = {u.id for u in ready}
    for group in _batches(ready, 0, 0):
        members = {u.id for u in group}
        grew = True
        while grew:
            grew = False
            for uid in by_key.get(_locality(group[0]), ()):
                if uid in taken or status[uid] != "waiting":
                    continue
                if all(d in members or status[d] in done for d in plan.deps[uid]):
                    group.append(plan.units[uid])
                    members.add(uid)
                    taken.add(uid)
                    grew = True
        needs = {u.id: [d for d in plan.deps[u.id] if d in members] for u in group}
        tasks.append((group, {k: v for k, v in needs.items() if v}))
    while slots and len(tasks) < 2 * slots:
        free = [i for i, (g, n) in enumerate(tasks) if not n and len(g) > 1]
        if not free:
            break
        i = max(free, key=lambda i: len(tasks[i][0]))
        g, _ = tasks.pop(i)
        tasks[i:i] = [(g[:len(g) // 2], {}), (g[len(g) // 2:], {})]
    return tasks


def _as_study(study, overrides=()) -> Study:
    if isinstance(study, Study):
        if overrides:
            raise StudyError("overrides apply to a study file or mapping, not to a parsed Study")
        return study
    return load_study(study, overrides)


def plan_study(study, overrides: Sequence[str] = ()) -> Plan:
    """The units of a study (a path, a mapping or a :class:`Study`) with their dependencies."""
    return build_plan(_as_study(study, overrides))


def study_status(study, check: str = "record", overrides: Sequence[str] = (),
                 device: str = "cpu") -> dict[str, bool]:
    """unit id -> done? ``check="record"``: the unit's record and cache entries exist (no
    computation); ``"lookup"``: re-run every unit with a guard that computes nothing (the exact
    check of what a chapter would find; loads data, fits readouts, reads every result)."""
    plan = plan_study(study, overrides)
    return _done_units(plan, check, device)


def _done_units(plan: Plan, check: str, device: str = "cpu", options: RunOptions | None = None) -> dict[str, bool]:
    if check == "record":
        return {uid: unit_done(u) for uid, u in plan.units.items()}
    if check != "lookup":
        raise StudyError(f"unknown check {check!r}; valid: 'record', 'lookup'")
    from ..cache import cache_dir
    options = options or RunOptions(str(cache_dir()), str(cache_dir() / "study" / "logs"), device)
    done: dict[str, bool] = {}
    for stage in plan.stages:
        for uid in stage:
            if not all(done.get(d, False) for d in plan.deps[uid]):
                done[uid] = False
                continue
            done[uid] = run_unit(plan.units[uid], options, lookup_only=True).status == "cached"
    return done


def run_study(study, executor: str | None = None, *, overrides: Sequence[str] = (),
              workers: int | None = None, batch_size: int | None = None, device: str | None = None,
              threads: int | None = None, check: str = "record", force: bool = False,
              only: Sequence[str] | None = None, progress: bool = True, poll_s: float = 0.5,
              log_dir: str | None = None, slurm: Mapping | None = None, dask: Mapping | None = None,
              client=None) -> StudyReport:
    """Run a study's units on ``executor`` (``"local"``, ``"slurm"`` or ``"dask"``; default: the
    study file's ``[execution] executor``, else local) and return a :class:`StudyReport`.

    study : a path to a ``.toml`` / ``.yaml`` study, a mapping of the same structure, or a
        :class:`~probelib.study.spec.Study`; ``overrides``: ``KEY=VALUE`` items applied to it.
    workers : local processes (default 2; 0 runs the units in this process) or Dask workers.
    batch_size : units per task (one pool task, one Slurm array task, one Dask task); default
        (``None`` / 0 / ``"auto"``): one task per group of units of the same data and models (see
        :func:`_batches`). Results do not depend on it.
    device, threads : where each unit runs (``"cpu"``, ``"cuda"``) and its torch/BLAS threads
        (default 1, which makes results identical whatever the executor).
    check : how finished units are recognised (``"record"`` or ``"lookup"``, see
        :func:`study_status`); ``force``: run every unit again (its cached calls still hit).
    only : run only units of these kinds (plus what they need), e.g. ``["dataset", "fit"]``.
    slurm, dask : options of those executors (see :class:`SlurmBackend`, :class:`DaskBackend`),
        over the study file's ``[execution.slurm]`` / ``[execution.dask]``.
    Units that fail are reported (error, log path) and do not stop the others; units that need a
    failed unit are skipped. Nothing raises for a unit's failure: check ``report.ok``.
    """
    from ..cache import cache_dir, check_cache_dir

    st = _as_study(study, overrides)
    ex = st.execution
    executor = executor or ex.get("executor", "local")
    if executor not in ("local", "slurm", "dask"):
        raise StudyError(f"unknown executor {executor!r}; valid: local, slurm, dask")
    plan = build_plan(st)
    if only:
        keep: set[str] = set()
        todo = [uid for uid, u in plan.units.items() if u.kind in set(only)]
        while todo:
            uid = todo.pop()
            if uid not in keep:
                keep.add(uid)
                todo.extend(plan.deps[uid])
        plan = Plan({u: plan.units[u] for u in plan.units if u in keep},
                    {u: plan.deps[u] for u in plan.deps if u in keep},
                    {u: a for u, a in plan.analyses.items() if u in keep},
                    [[u for u in s if u in keep] for s in plan.stages])
    root = check_cache_dir(cache_dir()).resolve()
    logs = Path(log_dir) if log_dir else root / "study" / "logs" / st.name
    options = RunOptions(str(root), str(logs), device or ex.get("device", "cpu"),
                         int(threads or ex.get("threads", 1)),
                         os.environ.get("PROBELIB_TRUST_SHARED_CACHE") == "1")
    batch = batch_size if batch_size is not None else ex.get("batch_size", 0)
    batch = int(batch) if batch not in (None, "auto") else 0
    t0 = time.time()

    done_before = {uid: False for uid in plan.units} if force else _done_units(plan, check, options.device, options)
    status = {uid: ("done before" if done_before[uid] else "waiting") for uid in plan.units}
    outcomes: dict[str, UnitOutcome] = {}
    errors: dict[str, str] = {}
    todo = [uid for uid in plan.units if status[uid] == "waiting"]

    if not todo:
        return StudyReport(st.name, executor, plan, status, outcomes, time.time() - t0, str(root), str(logs))

    if executor == "local":
        n = ex.get("local", {}).get("workers", 2) if workers is None else workers
        backend = InProcessBackend(options) if int(n) == 0 else LocalBackend(options, int(n))
    elif executor == "dask":
        opts = {**ex.get("dask", {}), **(dask or {})}
        if workers is not None:
            opts["workers"] = workers
        backend = DaskBackend(options, client=client, **opts)
    else:
        opts = {**ex.get("slurm", {}), **(slurm or {})}
        opts.setdefault("folder", str(root / "study" / "slurm" / st.name))
        backend = SlurmBackend(options, **opts)

    slots = int(getattr(backend, "workers", 0) or 0)
    order = {uid: i for i, uid in enumerate(u for s in plan.stages for u in s)}
    by_key: dict[tuple, list[str]] = {}
    for uid in sorted(todo, key=order.get):  # units of the same data, fit and models, in plan order
        by_key.setdefault(_locality(plan.units[uid]), []).append(uid)
    display = Progress(len(todo), f"{st.name} on {backend.name}", progress)
    live: list[_Handle] = []
    try:
        while True:
            # units whose dependencies failed will not run
            for uid in todo:
                if status[uid] == "waiting":
                    bad = [d for d in plan.deps[uid] if status[d] in ("failed", "skipped")]
                    if bad:
                        status[uid] = "skipped"
                        errors[uid] = "needs " + ", ".join(plan.units[d].label for d in bad)
            ready = sorted((uid for uid in todo if status[uid] == "waiting"
                            and all(status[d] in ("done before", "computed") for d in plan.deps[uid])),
                           key=lambda u: (_locality(plan.units[u]), order[u]))
            if ready:
                tasks = (_chains([plan.units[u] for u in ready], plan, status, by_key, slots) if batch == 0
                         else [(b, {}) for b in _batches([plan.units[u] for u in ready], batch)])
                for units, _ in tasks:
                    for unit in units:
                        status[unit.id] = "queued"
                try:
                    live += backend.submit(tasks)
                except Exception as exc:  # the engine refused the work (no sbatch, scheduler gone)
                    raise StudyError(f"could not submit {sum(len(u) for u, _ in tasks)} unit(s) to "
                                     f"{backend.name}: {type(exc).__name__}: {exc}"
                                     + (" (is Slurm running? scripts/slurm_start.sh starts a "
                                        "single-node cluster)" if backend.name == "slurm" else "")) from exc
            finished = backend.poll(live)
            for h, results, error in finished:
                live.remove(h)
                by_id = {o.unit_id: o for o in (results or [])}
                for unit in h.units:
                    o = by_id.get(unit.id)
                    if o is None and unit_done(unit, options.cache_dir):
                        # its task died after this unit had finished: the record says so
                        rec = read_record(unit, options.cache_dir) or {}
                        o = UnitOutcome(unit.id, unit.label, "computed", seconds=rec.get("seconds", 0.0),
                                        digest=rec.get("digest", ""), summary=rec.get("summary", {}),
                                        hits=rec.get("hits", 0), computed=rec.get("computed", 0),
                                        log=str(Path(options.log_dir) / f"{unit.id}.log"))
                    if o is None:
                        o = UnitOutcome(unit.id, unit.label, "failed", error=error or "no result came back",
                                        log=str(Path(options.log_dir) / f"{unit.id}.log"))
                    if backend.name == "slurm" and o.status == "failed":
                        o.log = (o.log + " ; " if o.log else "") + "slurm: " + backend.logs(h)
                    outcomes[unit.id] = o
                    status[unit.id] = {"computed": "computed", "cached": "done before",
                                       "skipped": "skipped"}.get(o.status, "failed")
                    if o.status == "skipped":
                        errors[unit.id] = o.error
            counts = {"done": sum(status[u] in ("computed", "done before") for u in todo),
                      "failed": sum(status[u] == "failed" for u in todo),
                      "skipped": sum(status[u] == "skipped" for u in todo),
                      "waiting": sum(status[u] == "waiting" for u in todo)}
            running = min(backend.running(live), sum(status[u] == "queued" for u in todo))
            counts["running"] = running  # tasks that are running (each may hold several units)
            counts["queued"] = max(0, sum(status[u] == "queued" for u in todo) - running)
            unresolved = [u for u in todo if status[u] in ("waiting", "queued")]
            display.update(counts, force=not unresolved)
            if not unresolved:
                break
            if not finished and not ready:
                time.sleep(poll_s)
    finally:
        backend.close()
    report = StudyReport(st.name, executor, plan, status, outcomes, time.time() - t0, str(root), str(logs), errors)
    return report
