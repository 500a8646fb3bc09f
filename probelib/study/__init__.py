"""Studies: the papers' grids of analyses as data, run as independent units on a cluster.

A *study file* (TOML; YAML with the same structure also works) names the data, the models, the
readout and the analyses::

    [study]
    name = "paper2_demo"
    seed = 0                      # the chapters' seed: data split, fits, probed images, controls

    [dataset]
    name = "demo"                 # or "nsd", with root = "/data/nsd", subjects = [1, ..., 8],
    image_size = 64               #    per_subject = true (one dataset, and units, per subject)

    [panel]
    models = "demo_paper2"        # model specs, or a chapters' panel: demo_paper1/2, paper1/2;
                                  # your networks with their layer: "torchvision:resnet18@layer3",
                                  # "timm:<name>@<layer>", "nets.py:build@block2" (from this file's folder)
    rois = ["FFA", "PPA", "EBA"]
    n_samples = 16                # noise draws of smoothed ("+smooth<sigma>") models

    [readout]
    kind = "ridge"                # ols, ridge, lasso, mlp, cnn; [readout.options] go to fit_readout

    [[analysis]]                  # one table per analysis; kinds: probelib.study.ANALYSES
    name = "panel_sensitivity"
    kind = "l2_probe"
    eps = 5.0                     # parameters: the chapter's, with its defaults
    # models / rois / readout / n_samples override the panel for this analysis

    [execution]                   # optional defaults of `probelib run`
    executor = "local"            # local | slurm | dask
    device = "cpu"
    [execution.slurm]
    partition = "gpu"
    gpus_per_task = 1

:func:`load_study` parses and checks a study (clear errors naming the place in the file);
:func:`plan_study` expands it into :class:`Unit` s (deduplicated, with dependencies: dataset,
then fits, then probes, then what combines probes); :func:`run_study` sends them to an executor
and returns a :class:`StudyReport`; :func:`run_unit` runs one unit in this process. On the command
line: ``probelib run STUDY --executor local|slurm|dask`` (:data:`run_command`).

Each unit calls the chapters' cached functions with the chapters' arguments, so the chapters
executed afterwards (same parameters) read every result from the cache. The shipped studies are
in ``studies/`` (one per paper on the demo and on NSD, and ``smoke_demo.toml``, the smallest study
with every kind of unit).
"""
from __future__ import annotations

from .analyses import ANALYSES
from .executors import StudyReport, plan_study, run_study, study_status
from .spec import DatasetSpec, FitSpec, Study, StudyError, load_study
from .units import CacheMiss, Plan, RunOptions, Unit, UnitOutcome, run_unit, unit_done

__all__ = ["ANALYSES", "CacheMiss", "DatasetSpec", "FitSpec", "Plan", "RunOptions", "Study",
           "StudyError", "StudyReport", "Unit", "UnitOutcome", "load_study", "plan_study", "run_command",
           "run_study", "run_unit", "study_status", "unit_done"]


def __getattr__(name: str):
    if name == "run_command":  # click is imported only by the command line
        from .cli import run_command
        return run_command
    raise AttributeError(f"module 'probelib.study' has no attribute {name!r}")
