""":func:`run_study`: order the units by their dependencies, submit what is ready to a backend,
follow it, collect what came back; and :func:`plan_study`, :func:`study_status`."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..costs import PlanCosts
from ..spec import Study, StudyError, load_study
from ..units import (Plan, RunOptions, Unit, UnitOutcome, build_plan, read_record, record_path, run_unit,
                     unit_done)
from .dask import DaskBackend
from .local import InProcessBackend, LocalBackend
from .report import Progress, StudyReport
from .slurm import SlurmBackend
from .worker import _Handle


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
    probes): one worker loads and fits the model once and runs them in order. With several
    workers (``slots`` > 1) a task takes only the first half of those waiting units: the others
    are submitted as tasks of their own once their needs are done, so that the units of a costly
    model are shared out among the workers instead of leaving one worker alone with them at the
    end. Returns ``(units, needs)`` pairs, ``needs`` naming the needs of a unit inside its task.
    Groups without internal needs are split while there are fewer tasks than ``2 * slots``."""
    done = ("done before", "computed")
    tasks = []
    taken = {u.id for u in ready}
    for group in _batches(ready, 0, 0):
        members = {u.id for u in group}
        attached = []
        grew = True
        while grew:
            grew = False
            for uid in by_key.get(_locality(group[0]), ()):
                if uid in taken or status[uid] != "waiting":
                    continue
                if all(d in members or status[d] in done for d in plan.deps[uid]):
                    attached.append(plan.units[uid])
                    members.add(uid)
                    taken.add(uid)
                    grew = True
        if slots > 1:  # in order of attachment: every unit kept has its needs kept too
            attached = attached[:(len(attached) + 1) // 2]
        group = group + attached
        members = {u.id for u in group}
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


def _finished_in_running_tasks(live: list[_Handle], status: dict[str, str], cache_dir: str,
                               since: float) -> None:
    """Mark ``"computed"`` the queued units of tasks still running whose record this run has
    written (a unit writes it when it has finished): the units that need them can be submitted
    at once instead of when the whole task returns. Its outcome is read when the task returns.
    Only for workers on this machine, whose clock wrote the records' times."""
    for h in live:
        for unit in h.units:
            if status[unit.id] != "queued":
                continue
            try:
                written = record_path(unit, cache_dir).stat().st_mtime
            except OSError:
                continue
            if written >= since and unit_done(unit, cache_dir):
                status[unit.id] = "computed"


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
    from ...cache import cache_dir
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
    from ...cache import cache_dir, check_cache_dir

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
    # longest first: ready units and tasks in decreasing priority (see probelib.study.costs); on
    # this machine, at most one task per worker waits in the pool's queue beyond the running ones,
    # so that units that become ready later (a costly model's probes once its fit is done) go
    # before cheaper ones submitted earlier. Costs change the order only, never the results.
    costs = PlanCosts(plan) if backend.name != "serial" and len(todo) > 1 else None
    window = 2 * slots if backend.name == "local" and slots else None
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
            ready = [uid for uid in todo if status[uid] == "waiting"
                     and all(status[d] in ("done before", "computed") for d in plan.deps[uid])]
            free = len(ready) if window is None else max(0, window - len(live))
            ready = ready if free else []
            prio = costs.get() if costs is not None and len(ready) > 1 else {}
            ready.sort(key=lambda u: (-prio.get(u, 0.0), _locality(plan.units[u]), order[u]))
            submitted = False
            if ready:
                tasks = (_chains([plan.units[u] for u in ready], plan, status, by_key, slots) if batch == 0
                         else [(b, {}) for b in _batches([plan.units[u] for u in ready], batch)])
                if prio:  # stable: equal priorities keep the locality order
                    tasks.sort(key=lambda t: -max(prio.get(u.id, 0.0) for u in t[0]))
                tasks = tasks[:free]
                submitted = bool(tasks)
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
            if backend.name == "local":
                _finished_in_running_tasks(live, status, options.cache_dir, t0)
            counts = {"done": sum(status[u] in ("computed", "done before") for u in todo),
                      "failed": sum(status[u] == "failed" for u in todo),
                      "skipped": sum(status[u] == "skipped" for u in todo),
                      "waiting": sum(status[u] == "waiting" for u in todo)}
            running = min(backend.running(live), sum(status[u] == "queued" for u in todo))
            counts["running"] = running  # tasks that are running (each may hold several units)
            counts["queued"] = max(0, sum(status[u] == "queued" for u in todo) - running)
            unresolved = [u for u in todo if status[u] in ("waiting", "queued")]
            display.update(counts, force=not unresolved and not live)
            if not unresolved and not live:
                break
            if not finished and not submitted:
                time.sleep(poll_s)
    finally:
        backend.close()
    report = StudyReport(st.name, executor, plan, status, outcomes, time.time() - t0, str(root), str(logs), errors)
    return report
