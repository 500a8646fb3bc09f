"""What a task runs on a worker (a pool process, a Slurm array task, a Dask worker): a batch of
units, one after another; importable without torch, so that a spawned worker sets its threads
first. And the driver's handle of a submitted task."""
from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..units import RunOptions, Unit, UnitOutcome, read_record, run_unit, unit_done


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _init_worker(threads: int, warm: bool = False) -> None:
    """Set the torch/BLAS threads (before torch is imported); ``warm``: then import torch, so that
    a pool worker does it while it waits for its first task (e.g. while another loads the data)."""
    for v in THREAD_VARIABLES:
        os.environ[v] = str(threads)
    if warm:
        import torch  # noqa: F401


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


class _Handle:
    def __init__(self, units: list[Unit], ref: Any, needs: dict | None = None):
        self.units, self.ref, self.needs = units, ref, needs or {}
        self.submitted = time.time()
        self.gone_since: float | None = None
        self.attempts = 1
