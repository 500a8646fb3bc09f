"""A study on a real (single-node) Slurm cluster through submitit: the same results as the local
run, value for value; a task killed midway is reported with its logs, and the rerun completes
only what is missing.

``scripts/slurm_start.sh`` starts the cluster (``.ci/run`` calls it before the tests). Without a
running Slurm these tests are skipped, except under CI (``CI`` set), where they fail.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from probelib.study import run_study
from probelib.study.units import read_record

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "studies" / "smoke_demo.toml"
OBSERVER = Path("joblib") / "probelib" / "data" / "demo" / "_stimulus_features"
# the voxel unit's PGD made slow enough (a few seconds) to kill its task midway, after its FGSM
SLOW = ["analysis.voxels.steps=40", "analysis.voxels.n_voxels=8"]


def _slurm_running() -> str | None:
    """None when a Slurm controller answers and its node is usable, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm is not installed (sinfo/sbatch missing): run `sudo bash scripts/slurm_start.sh`"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated", "completing")
                                      for s in states):
        return (f"no usable Slurm node (sinfo: {out.stdout.strip() or out.stderr.strip()}): "
                "run `sudo bash scripts/slurm_start.sh`")
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm():
    why = _slurm_running()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but Slurm is not running: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    cache = tmp_path_factory.mktemp("local")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROBELIB_CACHE", str(cache))
        report = run_study(SMOKE, "local", workers=1, overrides=SLOW, progress=False)
    assert report.ok, report.summary()
    return cache, report


def _wait_for(predicate, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_slurm_equals_local_and_a_killed_task_resumes(local_reference, tmp_path, monkeypatch):
    ref_cache, ref = local_reference
    cache = tmp_path / "slurm-cache"
    cache.mkdir(mode=0o700)
    shutil.copytree(ref_cache / OBSERVER, cache / OBSERVER)  # the demo observer's features
    monkeypatch.setenv("PROBELIB_CACHE", str(cache))
    voxel = next(u for u in ref.plan.units.values() if u.kind == "voxel_probes")
    log = cache / "study" / "logs" / "smoke_demo" / f"{voxel.id}.log"

    # 1. run on Slurm; kill the voxel unit's task once its first result (FGSM) is in the cache
    box = {}
    thread = threading.Thread(target=lambda: box.update(report=run_study(
        SMOKE, "slurm", overrides=SLOW, batch_size=4, progress=False, poll_s=0.2)))
    thread.start()
    text = _wait_for(lambda: log.exists() and "computed _fgsm_impl" in log.read_text() and log.read_text(),
                     240, "the voxel unit's first probe")
    pid = int(re.search(r"pid (\d+), slurm job (\S+),", text).group(1))
    os.kill(pid, signal.SIGKILL)  # the unit's process dies midway (as in a crash or an OOM kill)
    thread.join(300)
    first = box["report"]
    assert voxel.id in first.ids("failed"), first.summary()
    failed = first.outcomes[voxel.id]
    assert "ended without a result" in failed.error and "slurm:" in failed.log and str(log) in failed.log
    assert Path(failed.log.split("slurm: ")[1].split(" / ")[0]).exists()  # submitit's stdout of the task
    done_first = set(first.ids("computed"))
    # the units that shared the killed task and had not finished failed with it; those that need
    # them were skipped; every other unit finished
    assert len(first.ids("failed")) <= 4 and len(done_first) >= len(ref.plan) // 2
    for uid in first.ids("skipped"):
        assert first.errors[uid].startswith("needs ")

    # 2. the rerun runs only what is missing, and the killed unit reuses its finished FGSM probe
    second = run_study(SMOKE, "slurm", overrides=SLOW, batch_size=4, progress=False, poll_s=0.2)
    assert second.ok, second.summary()
    assert set(second.ids("computed")) == set(first.ids("failed")) | set(first.ids("skipped"))
    assert set(second.ids("done before")) == done_first
    again = second.outcomes[voxel.id]
    assert again.hits >= 1 and again.computed == 1, again
    assert "hit      _fgsm_impl" in log.read_text().split("start voxel_probes")[-1]

    # 3. value for value the local run's results
    assert second.digests() == ref.digests()
    for unit in ref.plan.units.values():
        assert read_record(unit, cache)["digest"] == read_record(unit, ref_cache)["digest"]
