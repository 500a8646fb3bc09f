"""Benchmarks of probelib.geometry: the perturbation subspace of an encoding model at one image.

Model: MobileNet-v2 (real weights) + ridge readout with V outputs (EncodingModel), one smooth
test image of ``px`` pixels (D = 3·px² pixels).

* ``subspace``: ``perturbation_subspace(method="exact")`` (J from one forward and V vectorised
  vector-Jacobian products, then the eigen-decomposition of the V×V matrix J Jᵀ) vs
  ``torch.autograd.functional.jacobian`` (V autograd backward passes) + ``torch.linalg.svd`` of the
  (V, D) Jacobian, both with torch's default ``full_matrices=True`` (what a plain call does: it
  also builds the D×D right factor) and with ``full_matrices=False``. Checked: subspace
  similarity of the top-k spans > 0.999.
  Also ``jacobian``: :func:`probelib.geometry.jacobian` alone vs ``autograd.functional.jacobian``
  (the V backward passes both subspace sides need; informational).
* ``subspace_curve``: accuracy / time of the matrix-free methods (``"power"`` with several
  iteration caps, ``"randomized"`` with several power iterations) against ``"exact"`` for each V
  in ``curve_units``: similarity to the exact subspace and speed-up over it (informational;
  at most ``curve_repeats`` timed runs per point, as each point costs seconds).

Run through the runner: ``python benchmarks/run.py --only subspace subspace_curve``.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Baseline, Check, Row, Side, Target, compare, encoding_model, log, smooth_images  # noqa: E402

from probelib import geometry  # noqa: E402

#: Above this many pixels the D×D factor of a full SVD (float32) is not worth building (> 1.6 GB).
FULL_SVD_MAX_D = 20_000


def jacobian_svd_basis(model: nn.Module, image: Tensor, k: int, full_matrices: bool) -> Tensor:
    """Top-k right singular vectors (D, k) from autograd's Jacobian and an SVD of it."""
    jac = torch.autograd.functional.jacobian(lambda x: model(x)[0], image[None])
    jac = jac.reshape(jac.shape[0], -1)
    if full_matrices:
        _, _, vh = torch.linalg.svd(jac)                     # torch's default: full_matrices=True
    else:
        _, _, vh = torch.linalg.svd(jac, full_matrices=False)
    return vh[:k].T


def _similarity_check(threshold: float | None) -> Callable[[Tensor, Tensor], Check]:
    """Check on the similarity of two bases: pass above ``threshold``; None = report only."""
    def check(cand: Tensor, base: Tensor) -> Check:
        sim = geometry.subspace_similarity(cand, base)
        if threshold is None:
            return Check(None, f"similarity to exact {sim:.4f}")
        return Check(sim > threshold, f"subspace similarity {sim:.6f} (> {threshold})")
    return check


def run_subspace(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """Exact perturbation subspace vs autograd jacobian + torch.linalg.svd."""
    px, n_units, k = sizes["px"], sizes["subspace_units"], sizes["subspace_k"]
    model = encoding_model(px, n_units)
    image = smooth_images(1, px, seed=3)[0]
    dim = image.numel()

    def candidate() -> Tensor:
        return geometry.perturbation_subspace(model, image, k, method="exact").basis

    similar = _similarity_check(0.999)
    baselines = [Baseline(Side("autograd jacobian + svd(full_matrices=False)",
                               lambda: jacobian_svd_basis(model, image, k, full_matrices=False)),
                          similar, Target(3.0, ">= 3x"),
                          notes=f"V={n_units}, D={dim}: both sides take V={n_units} backward passes; "
                                "probelib vectorises them (vmap, chunks of 32) and eigen-decomposes "
                                "J Jᵀ (V×V).")]
    if dim <= FULL_SVD_MAX_D:
        baselines.append(Baseline(Side("autograd jacobian + svd() (default full_matrices=True)",
                                       lambda: jacobian_svd_basis(model, image, k, full_matrices=True),
                                       check_run_counts=True, max_runs=1),
                                  similar, Target(3.0, ">= 3x"),
                                  notes=f"the plain torch.linalg.svd(J) call also builds the {dim}x{dim} "
                                        "right factor; timed once (its check run), the ratio is far "
                                        "from the target either way."))
    else:
        log(f"[subspace] D={dim} > {FULL_SVD_MAX_D}: skipping the full_matrices=True baseline")
    rows = compare("subspace", Side(f"perturbation_subspace exact V={n_units} k={k}", candidate),
                   baselines, repeats, {"px": px, "units": n_units, "k": k, "D": dim})

    def jacobian_check(cand: Tensor, base: Tensor) -> Check:
        diff = float((cand - base).abs().max())
        rel = diff / (float(base.abs().max()) or 1.0)
        return Check(rel <= 1e-4, f"max |d J| = {rel:.1e} of max")

    def autograd_jacobian() -> Tensor:
        return torch.autograd.functional.jacobian(lambda x: model(x)[0], image[None]).reshape(n_units, -1)

    rows += compare("jacobian", Side(f"geometry.jacobian V={n_units}", lambda: geometry.jacobian(model, image)),
                    [Baseline(Side("torch.autograd.functional.jacobian", autograd_jacobian), jacobian_check,
                              notes="the shared floor of both subspace sides: V vector-Jacobian products "
                                    "(probelib: vmap in chunks of 32; autograd: a loop of V backward passes).")],
                    repeats, {"px": px, "units": n_units, "D": dim})
    return rows


def curve_rows(px: int, n_units: int, k: int, sizes: dict[str, Any], repeats: int) -> list[Row]:
    """One V: each matrix-free setting vs exact (similarity and speed-up), at most ``curve_repeats`` runs."""
    runs = sizes["curve_repeats"]
    image = smooth_images(1, px, seed=3)[0]
    model = encoding_model(px, n_units)

    def method(name: str, n_iter: int) -> Side:
        return Side(f"{name} n_iter={n_iter} V={n_units}",
                    lambda: geometry.perturbation_subspace(model, image, k, method=name, n_iter=n_iter).basis,
                    max_runs=runs)

    sides = ([method("power", n) for n in sizes["power_iters"]]
             + [method("randomized", n) for n in sizes["randomized_iters"]])
    exact = Side(f"exact V={n_units}", lambda: geometry.perturbation_subspace(model, image, k).basis,
                 max_runs=runs)
    rows = compare("subspace_curve", exact, [Baseline(s, _similarity_check(None)) for s in sides], repeats,
                   {"px": px, "units": n_units, "k": k, "D": image.numel()})
    for row in rows:   # report as "matrix-free method vs exact": ratio = exact s / method s
        row.candidate, row.baseline = row.baseline, row.candidate
        row.candidate_s, row.baseline_s = row.baseline_s, row.candidate_s
        row.candidate_cpu_s, row.baseline_cpu_s = row.baseline_cpu_s, row.candidate_cpu_s
        row.candidate_times, row.baseline_times = row.baseline_times, row.candidate_times
        row.ratio = row.baseline_s / row.candidate_s
        row.cpu_ratio = row.baseline_cpu_s / row.candidate_cpu_s
        row.notes = "informational: ratio = exact s / matrix-free s; check = similarity to exact."
    return rows


def run_curve(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """Similarity to exact and speed-up over exact of the matrix-free methods, for each V."""
    rows: list[Row] = []
    for n_units in sizes["curve_units"]:
        rows += curve_rows(sizes["px"], n_units, sizes["curve_k"], sizes, repeats)
    return rows


COMPARISONS = {"subspace": run_subspace, "subspace_curve": run_curve}

if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", *COMPARISONS, *sys.argv[1:]]))
