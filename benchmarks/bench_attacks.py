"""Benchmarks of probelib.probes: FGSM over an eps grid, and the per-step cost of L2 PGD.

Model: MobileNet-v2 (real ImageNet weights, truncated at ``features.14``) + a ridge readout with
V outputs, as an :class:`probelib.model.EncodingModel`, on small smooth test images.

* ``fgsm``: :func:`probelib.probes.fgsm` for V units over an eps grid vs the naive loop (for every
  unit and every eps: one forward + backward for the gradient sign, then one forward of the
  perturbed images). probelib takes one forward and V backward passes for all gradient signs,
  reuses them for the whole grid and evaluates the perturbed images in batches.
* ``pgd``: :func:`probelib.probes.pgd` (L2, one unit, N images as one batch) vs (a) ``steps`` bare
  forward + backward passes of the same model and batch (per-step overhead) and (b) torchattacks'
  ``PGDL2`` on a two-logit classification wrapper of the same network whose cross-entropy
  gradient is a positive multiple of minus the unit's response gradient (same algorithm:
  normalised-gradient step, L2-ball projection, [0, 1] clamp), plus the two forward passes that
  give the clean and perturbed responses, the output probelib returns.

Run through the runner: ``python benchmarks/run.py --only fgsm pgd``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Baseline, Check, Row, Side, Target, compare, encoding_model, judge, measure,  # noqa: E402
                    median, smooth_images)

from probelib import probes  # noqa: E402


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute difference of two arrays and that difference relative to max |b|."""
    diff = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))
    scale = float(np.max(np.abs(b))) or 1.0
    return diff, diff / scale


# ------------------------------------------------------------------------------------------------
# FGSM
# ------------------------------------------------------------------------------------------------

def fgsm_naive(model: nn.Module, images: Tensor, eps_grid: np.ndarray, units: np.ndarray) -> np.ndarray:
    """The textbook loop: per unit and per eps, forward + backward for the sign, then a forward.

    Returns the "decrease" sensitivity ``r_i(x) - r_i(clamp(x - eps * sign(grad r_i)))``,
    shape (n_eps, N, n_units), like :attr:`probelib.probes.ProbeResult.sensitivity`.
    """
    model.eval()
    out = np.empty((len(eps_grid), images.shape[0], len(units)))
    for j, unit in enumerate(units):
        for e, eps in enumerate(eps_grid):
            x = images.clone().requires_grad_(True)
            response = model(x)[:, unit]
            (grad,) = torch.autograd.grad(response.sum(), x)
            x_adv = (images - float(eps) * grad.sign()).clamp(0.0, 1.0)
            with torch.no_grad():
                perturbed = model(x_adv)[:, unit]
            out[e, :, j] = (response.detach() - perturbed).double().numpy()
    return out


def run_fgsm(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """FGSM sensitivity of V units over an eps grid: probelib.probes.fgsm vs the naive loop."""
    px, n_images, n_units, n_eps = sizes["px"], sizes["fgsm_images"], sizes["fgsm_units"], sizes["fgsm_eps"]
    model = encoding_model(px, n_units)
    images = smooth_images(n_images, px, seed=1)
    eps_grid = np.array([2.0 ** k / 255 for k in range(n_eps)])          # 1/255, 2/255, 4/255, ...
    units = np.arange(n_units)

    def candidate() -> np.ndarray:
        return probes.fgsm(model, images, eps_grid, units=units, direction="decrease",
                            store_perturbations=False, progress=False).sensitivity

    def check(cand: np.ndarray, base: np.ndarray) -> Check:
        diff, rel = _max_rel_diff(cand, base)
        return Check(rel <= 1e-4, f"max |d sensitivity| = {diff:.1e} ({rel:.1e} of max)")

    params = {"px": px, "images": n_images, "units": n_units, "eps_grid": eps_grid.tolist()}
    passes_naive = n_units * n_eps
    return compare(
        "fgsm", Side(f"fgsm V={n_units} x {n_eps} eps", candidate),
        [Baseline(Side("naive loop (fwd+bwd, fwd per unit x eps)",
                       lambda: fgsm_naive(model, images, eps_grid, units)),
                  check, Target(2.0, ">= 2x"),
                  notes=f"N={n_images} images of {px} px; naive: {passes_naive} fwd+bwd and "
                        f"{passes_naive} fwd of the batch; probelib: 1 fwd + {n_units} bwd of the batch "
                        f"+ {passes_naive * n_images} perturbed images forwarded in batches of 32.")],
        repeats, params)


# ------------------------------------------------------------------------------------------------
# PGD
# ------------------------------------------------------------------------------------------------

class UnitAsLogits(nn.Module):
    """Classification view of one unit for torchattacks: logits ``[r_i(x), 0]``, true class 0.

    Cross-entropy with class 0 is ``softplus(-r_i)``; its input gradient is
    ``-sigmoid(-r_i) * grad r_i``, a positive multiple of ``-grad r_i`` per image. L2 PGD normalises
    the gradient of every image, so an untargeted attack (ascent on the loss) takes exactly the
    steps of a "decrease r_i" probe.
    """

    def __init__(self, model: nn.Module, unit: int):
        super().__init__()
        self.model, self.unit = model, unit

    def forward(self, images: Tensor) -> Tensor:
        r = self.model(images)[:, self.unit]
        return torch.stack([r, torch.zeros_like(r)], dim=1)


def bare_steps(model: nn.Module, images: Tensor, unit: int, steps: int) -> Tensor:
    """``steps`` forward + backward passes of the batch (gradient of unit ``unit`` wrt the pixels).

    Returns the responses of the first forward pass (the clean responses) for the check.
    """
    clean = None
    for _ in range(steps):
        x = images.clone().requires_grad_(True)
        r = model(x)[:, unit]
        torch.autograd.grad(r.sum(), x)
        if clean is None:
            clean = r.detach()
    assert clean is not None
    return clean


def torchattacks_pgd(model: nn.Module, images: Tensor, unit: int, eps: float, step_size: float,
                     steps: int) -> dict[str, np.ndarray]:
    """Clean responses, torchattacks PGDL2 (decrease the unit), perturbed responses."""
    import torchattacks

    wrapper = UnitAsLogits(model, unit).eval()
    attack = torchattacks.PGDL2(wrapper, eps=eps, alpha=step_size, steps=steps, random_start=False)
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    with torch.no_grad():
        clean = model(images)[:, unit]
    adv = attack(images, labels)
    with torch.no_grad():
        perturbed = model(adv)[:, unit]
    return {"clean": clean.double().numpy(), "sensitivity": (clean - perturbed).double().numpy()}


def run_pgd(sizes: dict[str, Any], repeats: int) -> list[Row]:
    """L2 PGD vs bare forward+backward (amortised at S and 2S steps, and marginal per step) and
    vs torchattacks' PGDL2 (S steps), all five sides timed in the same interleaved rounds.

    PGD runs are short and the targets are close calls, so this comparison uses at least
    ``pgd_rounds`` repeats.
    """
    px, n_images, steps, eps = sizes["px"], sizes["pgd_images"], sizes["pgd_steps"], sizes["pgd_eps"]
    repeats = max(repeats, sizes["pgd_rounds"])
    model = encoding_model(px, sizes["fgsm_units"])
    images = smooth_images(n_images, px, seed=2)
    unit = 0
    step_size = 2.5 * eps / steps

    def candidate(n_steps: int) -> dict[str, np.ndarray]:
        res = probes.pgd(model, images, eps, norm="l2", steps=n_steps, step_size=step_size, units=[unit],
                          direction="decrease", batch_size=n_images, store_perturbations=False,
                          progress=False)
        return {"clean": res.clean[:, 0], "sensitivity": res.sensitivity[0, :, 0]}

    def check_bare(cand: dict[str, np.ndarray], clean: Tensor) -> Check:
        diff, rel = _max_rel_diff(cand["clean"], clean.double().numpy())
        return Check(rel <= 1e-5, f"same model and batch: clean responses max |d| = {diff:.1e}")

    def check_ta(cand: dict[str, np.ndarray], base: dict[str, np.ndarray]) -> Check:
        # Same steps up to float rounding (torchattacks scales the gradient by sigmoid(-r) / N
        # before normalising), which the ReLU6 kinks amplify over the steps; and probelib returns
        # the best iterate, torchattacks the last. So: approximately equal.
        a, b = cand["sensitivity"], base["sensitivity"]
        scale = float(np.mean(np.abs(b))) or 1.0
        mean_rel = float(np.mean(np.abs(a - b))) / scale
        max_rel = float(np.max(np.abs(a - b))) / scale
        return Check(mean_rel <= 0.01 and max_rel <= 0.05,
                     f"sensitivities differ by {mean_rel:.2%} on average, {max_rel:.2%} at most "
                     f"(of mean {scale:.3g}; tolerance 1% / 5%)")

    overhead = Target(1 / 1.10, "overhead <= 10% (>= 0.91x)")
    params = {"px": px, "images": n_images, "steps": steps, "eps_l2": eps, "step_size": step_size}
    long = 2 * steps
    sides = [Side(f"pgd l2 {steps} steps, batch {n_images}", lambda: candidate(steps)),
             Side(f"{steps} x bare fwd+bwd", lambda: bare_steps(model, images, unit, steps)),
             Side(f"torchattacks PGDL2 {steps} steps + 2 fwd",
                  lambda: torchattacks_pgd(model, images, unit, eps, step_size, steps)),
             Side(f"pgd l2 {long} steps, batch {n_images}", lambda: candidate(long)),
             Side(f"{long} x bare fwd+bwd", lambda: bare_steps(model, images, unit, long))]
    m = measure("pgd_l2", sides, repeats, [(0, 1, check_bare), (0, 2, check_ta), (3, 4, check_bare)],
                aligned=True)
    fixed = ("Amortised: on top of the steps probelib forwards the last iterate (to report its effect) "
             "and one image (to count the outputs); the step-0 pass gives the clean responses.")
    rows = [m.row("pgd_l2", 0, 1, overhead, fixed, params),
            m.row("pgd_l2", 0, 2, Target(1.0, ">= 1.0x"),
                  "torchattacks on logits [r_i, 0], class 0 (ascent on softplus(-r_i) = same normalised "
                  "steps as decreasing r_i), timed with the clean and final forward passes that produce "
                  "the same sensitivities.", params),
            m.row("pgd_l2", 3, 4, overhead, fixed, {**params, "steps": long})]
    for row in (rows[0], rows[2]):
        if row.cpu_ratio is not None:
            row.notes += f" Overhead {1 / row.cpu_ratio - 1:+.1%} CPU, {1 / row.ratio - 1:+.1%} wall."
    if all(r.check_passed is not False for r in (rows[0], rows[2])):
        # marginal cost of one step, (T(2S) - T(S)) / S, per interleaved round (same load), median
        def per_step(times: list[list[float]], long_i: int, short_i: int) -> float:
            return median([(t2 - t1) / steps for t1, t2 in zip(times[short_i], times[long_i], strict=True)])

        cand_s, base_s = per_step(m.wall, 3, 0), per_step(m.wall, 4, 1)
        cand_cpu, base_cpu = per_step(m.cpu, 3, 0), per_step(m.cpu, 4, 1)
        ratio = base_s / cand_s if cand_s > 0 else None
        cpu_ratio = base_cpu / cand_cpu if cand_cpu > 0 else None
        rows.append(Row(
            "pgd_l2", "pgd l2, one more step (marginal)", "bare fwd+bwd, one more", cand_s, base_s, ratio,
            overhead.text, judge(overhead, ratio, cpu_ratio), rows[0].check_passed, rows[0].check,
            params={**params, "derived_from_steps": [steps, long]}, candidate_cpu_s=cand_cpu,
            baseline_cpu_s=base_cpu, cpu_ratio=cpu_ratio,
            notes=f"Per-step cost without the fixed part: median over rounds of (T({long} steps) - "
                  f"T({steps} steps)) / {steps}. Per step: probelib {cand_cpu * 1e3:.1f} ms CPU, "
                  f"bare {base_cpu * 1e3:.1f} ms CPU."))
    return rows


COMPARISONS = {"fgsm": run_fgsm, "pgd": run_pgd}

if __name__ == "__main__":
    from run import main

    sys.exit(main(["--only", *COMPARISONS, *sys.argv[1:]]))
