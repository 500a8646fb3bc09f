"""``probelib run STUDY``: the click command that runs a study (registered on probelib's CLI)."""
from __future__ import annotations

import sys

import click

from .spec import StudyError


def _parse_kv(items) -> dict:
    from .spec import parse_override
    out = {}
    for item in items:
        keys, value = parse_override(item)
        out[".".join(keys)] = value
    return out


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("study", type=click.Path(exists=True, dir_okay=False))
@click.option("--executor", "-e", type=click.Choice(["local", "slurm", "dask"]), default=None,
              help="Where the units run (default: the study's [execution] executor, else local).")
@click.option("--workers", "-j", type=int, default=None,
              help="local: processes (default 2; 0 = in this process); dask: workers.")
@click.option("--batch-size", type=int, default=None, help="Units per task (results do not depend on it).")
@click.option("--device", default=None, help="cpu (default) or cuda.")
@click.option("--threads", type=int, default=None, help="torch/BLAS threads per unit (default 1).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a value of the study, e.g. dataset.root=/data/nsd or "
                   "analysis.panel_sensitivity.n_images=12 (repeatable).")
@click.option("--partition", default=None, help="slurm: partition.")
@click.option("--gpus-per-task", type=int, default=None, help="slurm: GPUs per array task.")
@click.option("--cpus-per-task", type=int, default=None, help="slurm: CPUs per array task (default: --threads).")
@click.option("--mem-gb", type=float, default=None, help="slurm: memory per task (GB).")
@click.option("--time-min", type=int, default=None, help="slurm: time limit per task (minutes).")
@click.option("--account", default=None, help="slurm: account to charge.")
@click.option("--slurm-folder", default=None, help="slurm: submitit's folder (logs); default in the cache.")
@click.option("--scheduler", default=None, help="dask: address of a running scheduler (tcp://host:8786).")
@click.option("--dask-cluster", type=click.Choice(["local", "slurm"]), default=None,
              help="dask: start a LocalCluster (default) or a dask-jobqueue SLURMCluster.")
@click.option("--check", type=click.Choice(["record", "lookup"]), default="record",
              help="How finished units are recognised: their records (fast) or a lookup of every "
                   "cached result from the current data and weights (exact, slower).")
@click.option("--force", is_flag=True, help="Run every unit again (cached calls still hit).")
@click.option("--only", multiple=True, help="Run only units of this kind (and what they need); repeatable.")
@click.option("--dry-run", is_flag=True, help="List the units and whether each is done; run nothing.")
@click.option("--report", "report_path", default=None, type=click.Path(dir_okay=False),
              help="Write the report (JSON) to this file.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def run_command(study, executor, workers, batch_size, device, threads, overrides, partition, gpus_per_task,
                cpus_per_task, mem_gb, time_min, account, slurm_folder, scheduler, dask_cluster, check, force,
                only, dry_run, report_path, quiet):
    """Run the units of work of a STUDY file (TOML/YAML) on this machine, Slurm or Dask.

    Results go to the content-keyed cache ($PROBELIB_CACHE; on a cluster, a directory every node
    sees), from which the book's chapters then read them. A rerun skips finished units; a failed
    unit is reported with its log and does not stop the others (exit status 1 at the end).
    """
    from .executors import plan_study, run_study, study_status

    try:
        if dry_run:
            plan = plan_study(study, overrides)
            done = study_status(study, check, overrides, device or "cpu")
            for stage_no, stage in enumerate(plan.stages):
                click.echo(f"stage {stage_no}:")
                for uid in stage:
                    mark = "done" if done[uid] else "todo"
                    click.echo(f"  [{mark}] {uid} {plan.units[uid].label}")
            n_done = sum(done.values())
            click.echo(f"{len(plan)} units ({', '.join(f'{n} {k}' for k, n in plan.counts().items())}); "
                       f"{n_done} done, {len(plan) - n_done} to run")
            return
        slurm = {k: v for k, v in {"partition": partition, "gpus_per_task": gpus_per_task,
                                    "cpus_per_task": cpus_per_task, "mem_gb": mem_gb, "time_min": time_min,
                                    "account": account, "folder": slurm_folder}.items() if v is not None}
        dask = {k: v for k, v in {"scheduler": scheduler, "cluster": dask_cluster}.items() if v is not None}
        report = run_study(study, executor, overrides=overrides, workers=workers, batch_size=batch_size,
                           device=device, threads=threads, check=check, force=force, only=list(only) or None,
                           progress=not quiet, slurm=slurm, dask=dask)
    except StudyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
    if report_path:
        report.write(report_path)
    if not report.ok:
        sys.exit(1)
