"""Send the units of a study to an existing engine and follow them: a local process pool, Slurm
(submitit job arrays) or Dask (``distributed``, through its ``concurrent.futures`` executor).

:func:`run_study` is the whole loop: expand the study, skip what is done, submit every unit whose
dependencies are done (fits before probes, probes before transfers), follow the engine, collect
what came back, report. The engines do the scheduling; probelib only orders the submissions.
Results go to the content-keyed cache (``$PROBELIB_CACHE``, which every worker must see: on a
cluster, a shared filesystem); what comes back to the driver is small (status, digest, summary).

The package: :mod:`.worker` (what a task runs), :mod:`.local` (in-process and process pool),
:mod:`.slurm` (submitit), :mod:`.dask` (``distributed``), :mod:`.report` (progress and report),
:mod:`.run` (the loop: :func:`run_study`).
"""
from __future__ import annotations

from .dask import DaskBackend
from .local import InProcessBackend, LocalBackend
from .report import Progress, StudyReport
from .run import plan_study, run_study, study_status
from .slurm import SlurmBackend, SlurmTask
from .worker import THREAD_VARIABLES, run_batch

__all__ = ["DaskBackend", "InProcessBackend", "LocalBackend", "Progress", "SlurmBackend", "SlurmTask",
           "StudyReport", "THREAD_VARIABLES", "plan_study", "run_batch", "run_study", "study_status"]
