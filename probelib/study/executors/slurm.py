"""The Slurm backend, through submitit job arrays."""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..units import RunOptions
from .worker import THREAD_VARIABLES, _Handle, run_batch


try:  # requeued by submitit at a time limit or pre-emption; resumes through the cache and records
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - submitit is in the [cluster] extra
    _Checkpointable = object


class SlurmTask(_Checkpointable):
    """The callable a Slurm array task runs: :func:`run_batch`, requeued when Slurm signals a
    time limit or a pre-emption (finished units are then skipped)."""

    def __call__(self, units, options, needs=None):
        return run_batch(units, options, skip_done=True, needs=needs)


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
