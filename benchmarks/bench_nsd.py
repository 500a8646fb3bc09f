"""Benchmark: NSD ROI extraction (what load_nsd does per session) vs loading whole volumes.

Writes full-size synthetic betas sessions (default 81×104×83×750 int16, ~1 GB each) as an
uncompressed NIfTI and as NSD's HDF5 twin (``betas``, 750×Z×Y×X), optionally also as ``.nii.gz``
(the format NSD distributes), into a temporary directory,
then measures, each configuration in a fresh subprocess:

* ``roi``: ``probelib.data.nsd``'s own session reader (``_read_nifti_voxels`` /
  ``_read_hdf5_voxels``: blocks of volumes, only the ROI voxels kept) + ``/300`` + per-session
  z-score: the betas path of :func:`probelib.data.nsd.load_nsd`;
* ``whole``: ``nib.load(f).get_fdata()`` (or ``h5py`` ``ds[()]``) of the whole session, then the
  same voxel selection, scaling and z-score.

Reported: median seconds per session and the peak resident memory added by the work (the
peak-RSS mark is reset after the imports via ``/proc/self/clear_refs``, then ``VmHWM`` minus the
RSS at the reset). ``roi`` runs with 1..S sessions show
that its peak does not grow with the number of sessions. Files are read from the page cache
right after being written, so times are CPU/memory-bound, not disk-bound.

Usage: ``python benchmarks/bench_nsd.py [--sessions 3] [--voxels 2000] [--formats nii hdf5]``;
results go to ``benchmarks/results/bench_nsd.json``.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRIAL_BLOCK = 32


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak() -> float:
    """Reset the peak-RSS mark to the current RSS (Linux ``clear_refs``); return the current RSS in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_mb("VmRSS") or 0.0
    except OSError:                                      # no reset: fall back to the lifetime peak
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _peak_mb() -> float:
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_sessions(workdir: Path, shape: tuple[int, int, int], trials: int, sessions: int,
                   formats: list[str], seed: int = 0) -> dict[str, list[Path]]:
    """Write ``sessions`` synthetic int16 betas files per format, streaming volume by volume."""
    import h5py
    import nibabel as nib

    rng = np.random.default_rng(seed)
    pool = rng.integers(-3000, 3000, size=(16, *shape), dtype=np.int16)      # reused volumes
    files: dict[str, list[Path]] = {f: [] for f in formats}
    for k in range(1, sessions + 1):
        for fmt in [f for f in formats if f.startswith("nii")]:
            path = workdir / f"betas_session{k:02d}.{fmt}"
            header = nib.Nifti1Header()
            header.set_data_shape((*shape, trials))
            header.set_data_dtype(np.int16)
            header.set_zooms((1.8, 1.8, 1.8, 1.6))
            header.set_sform(np.diag([1.8, 1.8, 1.8, 1.0]), code=1)
            opener = gzip.open(path, "wb", compresslevel=1) if fmt == "nii.gz" else open(path, "wb")
            with opener as f:
                header.write_to(f)
                f.write(b"\0" * (int(header["vox_offset"]) - f.tell()))
                for t in range(trials):
                    f.write(pool[(t + k) % 16].tobytes(order="F"))
            files[fmt].append(path)
        if "hdf5" in formats:
            path = workdir / f"betas_session{k:02d}.hdf5"
            with h5py.File(path, "w") as f:
                ds = f.create_dataset("betas", shape=(trials, *shape[::-1]), dtype=np.int16)
                for t in range(trials):
                    ds[t] = pool[(t + k) % 16].T
            files["hdf5"].append(path)
    return files


def roi_voxels(shape: tuple[int, int, int], n_voxels: int, seed: int = 1) -> np.ndarray:
    """(V, 3) voxel indices in 4 compact blobs, like category-selective ROIs of both hemispheres."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = rng.uniform(0.25, 0.75, size=(4, 3)) * np.array(shape)
    dist = np.min(np.linalg.norm(grid[:, None, :] - centres[None], axis=2), axis=1)
    return grid[np.sort(np.argsort(dist)[:n_voxels])]


def worker(args: argparse.Namespace) -> None:
    """One measurement (in its own process): print a JSON line with per-session times and peak RSS."""
    import h5py
    import nibabel as nib

    from probelib.data import nsd

    files = [Path(p) for p in args.files]
    shape = tuple(args.shape)
    ijk = roi_voxels(shape, args.voxels)
    i, j, k = ijk.T
    reader = nsd._read_hdf5_voxels if args.format == "hdf5" else nsd._read_nifti_voxels
    nsd.TRIALS_PER_SESSION = args.trials        # the reader checks the trial count (750 in NSD)
    before = _reset_peak()
    times, kept = [], []
    for path in files:
        t0 = time.perf_counter()
        if args.method == "roi":
            x = reader(path, ijk, shape, TRIAL_BLOCK)
        elif args.format == "hdf5":
            with h5py.File(path, "r") as f:
                whole = f["betas"][()]
            x = whole[:, k, j, i].T.astype(np.float64)
            del whole
        else:
            whole = nib.load(path).get_fdata(dtype=np.dtype(args.baseline_dtype))
            x = whole[i, j, k].astype(np.float64)
            del whole
        z, _ = nsd._zscore(x / nsd.BETA_SCALE)
        kept.append(z[:, ::50].astype(np.float32))        # keep a few trials per session, like load_nsd
        del x, z
        times.append(time.perf_counter() - t0)
    print(json.dumps({"times": times, "peak_rss_mb": _peak_mb() - before, "rss_before_mb": before,
                      "checksum": float(sum(float(np.abs(a).sum()) for a in kept))}))


def run(args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_nsd_"))
    workdir.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    gb = np.prod(shape) * args.trials * 2 / 1e9
    print(f"writing {args.sessions} session(s) x {args.formats} of {shape} x {args.trials} int16 "
          f"({gb:.2f} GB each) to {workdir}", flush=True)
    t0 = time.perf_counter()
    files = write_sessions(workdir, shape, args.trials, args.sessions, args.formats)
    print(f"  written in {time.perf_counter() - t0:.1f} s", flush=True)

    rows = []
    try:
        for fmt in args.formats:
            plan = [("roi", n) for n in range(1, args.sessions + 1)]
            plan += [("whole", n) for n in range(1, min(args.baseline_sessions, args.sessions) + 1)]
            for method, n in plan:
                runs = []
                for _ in range(args.repeats):
                    cmd = [sys.executable, __file__, "--worker", "--format", fmt, "--method", method,
                           "--voxels", str(args.voxels), "--trials", str(args.trials),
                           "--baseline-dtype", args.baseline_dtype, "--shape", *map(str, shape),
                           "--files", *map(str, files[fmt][:n])]
                    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                row = {"format": fmt, "method": method, "sessions": n,
                       "median_s_per_session": float(np.median([t for r in runs for t in r["times"]])),
                       "peak_rss_mb": float(np.median([r["peak_rss_mb"] for r in runs]))}
                rows.append(row)
                print(f"  {fmt:6s} {method:5s} sessions={n}: {row['median_s_per_session']:.2f} s/session, "
                      f"peak +{row['peak_rss_mb']:.0f} MB", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    import h5py
    import nibabel as nib
    return {"params": {"shape": list(shape), "trials": args.trials, "sessions": args.sessions,
                       "voxels": args.voxels, "formats": args.formats, "repeats": args.repeats,
                       "baseline_dtype": args.baseline_dtype, "trial_block": TRIAL_BLOCK},
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "nibabel": nib.__version__, "h5py": h5py.__version__},
            "rows": rows}


def print_table(result: dict) -> None:
    rows = result["rows"]
    print(f"\n{'format':6s} {'method':6s} {'sessions':>8s} {'s/session':>10s} {'peak MB':>9s}")
    for r in rows:
        print(f"{r['format']:6s} {r['method']:6s} {r['sessions']:8d} {r['median_s_per_session']:10.2f} "
              f"{r['peak_rss_mb']:9.0f}")
    for fmt in result["params"]["formats"]:
        roi = [r for r in rows if r["format"] == fmt and r["method"] == "roi"]
        whole = [r for r in rows if r["format"] == fmt and r["method"] == "whole"]
        if roi and whole:
            time_ratio = whole[0]["median_s_per_session"] / np.median([r["median_s_per_session"] for r in roi])
            mem_ratio = whole[0]["peak_rss_mb"] / max(roi[0]["peak_rss_mb"], 1.0)
            peaks = ", ".join(f"{r['peak_rss_mb']:.0f}" for r in roi)
            print(f"{fmt}: whole/roi time ratio {time_ratio:.1f}x, peak memory ratio {mem_ratio:.0f}x; "
                  f"roi peak with 1..{len(roi)} sessions: {peaks} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=[81, 104, 83], help="volume X Y Z (NSD 1.8 mm)")
    p.add_argument("--trials", type=int, default=750, help="trials per session")
    p.add_argument("--sessions", type=int, default=3, help="sessions to write; roi runs use 1..S of them")
    p.add_argument("--baseline-sessions", type=int, default=1, help="sessions for the whole-volume runs")
    p.add_argument("--voxels", type=int, default=2000, help="ROI voxels extracted")
    p.add_argument("--formats", nargs="+", default=["nii", "hdf5"], choices=["nii", "nii.gz", "hdf5"],
                   help="nii.gz is NSD's distributed format (slow to write: ~1 min per session)")
    p.add_argument("--repeats", type=int, default=1, help="subprocess runs per configuration")
    p.add_argument("--baseline-dtype", default="float64", choices=["float64", "float32"],
                   help="dtype of get_fdata in the whole-volume baseline (nibabel's default: float64)")
    p.add_argument("--workdir", help="where to write the sessions (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the written sessions")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_nsd.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--format", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--files", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    result = run(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
