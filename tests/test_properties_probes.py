"""Properties of the probes: the guarantees their docstrings give, on models where they bite.

PGD keeps the best iterate ("never worse than no change"): on a model whose response along the
gradient path overshoots and oscillates, the last iterate is worse than an earlier one, so only the
best-iterate rule passes. Budgets, projections, directions, controls and the bisection of
``fixed_effect`` are checked against closed forms.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import probelib as pl

SIDE = 4
D = 3 * SIDE * SIDE


class Bowl(nn.Module):
    """``r_u(x) = sign * (mean(x) - a_u)^2`` (float64): every gradient is a multiple of the all-ones
    image, so a step of fixed size moves ``mean(x)`` by a known amount and overshoots the bottom."""

    def __init__(self, a, sign=1.0):
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64))
        self.register_buffer("sign", torch.as_tensor(sign, dtype=torch.float64))

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return self.sign * (m - self.a) ** 2


class Linear(nn.Module):
    def __init__(self, n_units: int = 3, side: int = SIDE, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_units, 3 * side * side, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(n_units, generator=g, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


def gray(n: int = 2, side: int = SIDE, value: float = 0.5) -> torch.Tensor:
    return torch.full((n, 3, side, side), value, dtype=torch.float64)


def _shift(norm: str, step: float) -> float:
    """Change of mean(x) made by one step of size ``step`` along the all-ones direction."""
    return step / math.sqrt(D) if norm == "l2" else step


# --------------------------------------------------------------------------- PGD: best iterate

@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_pgd_never_does_worse_than_no_change(norm, steps):
    """The first step overshoots the bottom of the bowl (worse than the start) and the next comes
    back: every iterate is at best as good as the start, so the probe must be no change."""
    step = 0.05
    delta = _shift(norm, step)
    model = Bowl([[0.5 - 0.1 * delta]])          # bottom just below the start: overshoot by 0.9 delta
    res = pl.pgd(model, gray(), eps=0.5, norm=norm, steps=steps, step_size=step, direction="decrease")
    assert np.all(res.sensitivity >= 0.0)
    np.testing.assert_allclose(res.sensitivity, 0.0, atol=1e-15)
    np.testing.assert_allclose(res.perturbed, res.clean[None], atol=1e-15)
    np.testing.assert_allclose(res.delta_norm, 0.0, atol=1e-15)


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("direction,sign", [("decrease", 1.0), ("increase", -1.0), ("abs", 1.0)])
def test_pgd_keeps_the_best_iterate_not_the_last(norm, direction, sign):
    """Iterates alternate between the start and one step away; the step is the best point. The
    result with 2, 4 steps (last iterate = the start) must equal the one with 1 step."""
    step = 0.05
    delta = _shift(norm, step)
    model = Bowl([[0.5 - 0.6 * delta]], sign=sign)   # one step lands 0.4 delta past the bottom
    if direction == "abs":   # decreasing the bowl gains 0.2 delta^2; increasing it far more: use a cap
        model = Bowl([[0.5 - 0.6 * delta]])
    first = pl.pgd(model, gray(), eps=0.5, norm=norm, steps=1, step_size=step, direction=direction)
    assert np.all(first.sensitivity > 0)
    for steps in (2, 3, 4):
        res = pl.pgd(model, gray(), eps=0.5, norm=norm, steps=steps, step_size=step, direction=direction)
        assert np.all(res.sensitivity >= first.sensitivity - 1e-15), steps
    expected = (0.6 * delta) ** 2 - (0.4 * delta) ** 2
    if direction != "abs":
        np.testing.assert_allclose(first.sensitivity, expected, rtol=1e-9)
        even = pl.pgd(model, gray(), eps=0.5, norm=norm, steps=2, step_size=step, direction=direction)
        np.testing.assert_allclose(even.sensitivity, expected, rtol=1e-9)
        np.testing.assert_allclose(even.delta_norm, step if norm == "l2" else step * math.sqrt(D), rtol=1e-9)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_sensitivity_never_decreases_with_more_steps(norm):
    """Same fixed step from the image: a run of T steps passes through the iterates of every shorter
    run, so (best iterate) its sensitivity is at least theirs, for every unit."""
    step = 0.05
    delta = _shift(norm, step)
    model = Bowl([[0.5 - 0.1 * delta, 0.5 - 0.6 * delta, 0.5 - 2.3 * delta, 0.5 + 0.7 * delta]])
    sens = [pl.pgd(model, gray(1), eps=0.5, norm=norm, steps=t, step_size=step).sensitivity[0, 0]
            for t in range(1, 7)]
    assert np.all(np.diff(np.array(sens), axis=0) >= -1e-15)
    assert np.all(np.array(sens) >= 0)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_restarts_keep_the_best_run(norm):
    """Random restarts only add candidates: more restarts never lower the sensitivity."""
    model = Bowl([[0.47, 0.52]])
    one = pl.pgd(model, gray(2), eps=0.2, norm=norm, steps=3, restarts=1, random_start=True, seed=3)
    more = pl.pgd(model, gray(2), eps=0.2, norm=norm, steps=3, restarts=4, random_start=True, seed=3)
    assert np.all(more.sensitivity >= one.sensitivity - 1e-15)
    assert np.all(more.sensitivity >= 0)


# --------------------------------------------------------------------------- budgets and projections

@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_pgd_perturbations_stay_in_the_ball_and_the_box(norm):
    model = Linear()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0
    x[1, :, 0, 0] = 1.0
    eps = [0.05, 0.3]
    res = pl.pgd(model, x, eps=eps, norm=norm, steps=5, store_perturbations=True, direction="abs")
    for e, budget in enumerate(eps):
        for j in range(len(res.units)):
            d = res.perturbation(e, j)
            size = d.flatten(1).norm(dim=1) if norm == "l2" else d.flatten(1).abs().max(dim=1).values
            assert torch.all(size <= budget * (1 + 1e-9))
            adv = x + d
            assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
            np.testing.assert_allclose(res.delta_norm[e, :, j], d.flatten(1).norm(dim=1).numpy(), rtol=1e-9)


def test_pgd_l2_on_a_linear_model_reaches_the_closed_form_at_the_boundary():
    """Linear r = w.x: the best L2 probe is eps * w / ||w||, a change of eps * ||w||_2 (interior
    images, so the box is not active); the probe's norm is eps, not more, not less."""
    model = Linear(n_units=2)
    x = gray(2)
    eps = 0.2
    res = pl.pgd(model, x, eps=eps, norm="l2", steps=8, direction="decrease")
    w = model.weight.detach().numpy()
    np.testing.assert_allclose(res.sensitivity[0], np.tile(eps * np.linalg.norm(w, axis=1), (2, 1)), rtol=1e-6)
    np.testing.assert_allclose(res.delta_norm, eps, rtol=1e-6)
    inc = pl.pgd(model, x, eps=eps, norm="l2", steps=8, direction="increase")
    np.testing.assert_allclose(inc.change, -res.change, rtol=1e-6)
    assert np.all(inc.direction_taken == 1) and np.all(res.direction_taken == -1)


def test_default_step_size_is_two_and_a_half_budgets_over_steps():
    model = Linear(n_units=1)
    res = pl.pgd(model, gray(1), eps=0.1, norm="linf", steps=5)
    assert res.params["step_size"] is None
    # linf with 2.5 eps / steps per step reaches the corner of the ball in 2 steps: eps * ||w||_1
    w = model.weight.detach().numpy()
    np.testing.assert_allclose(res.sensitivity[0, 0, 0], 0.1 * np.abs(w).sum(), rtol=1e-9)
    short = pl.pgd(model, gray(1), eps=0.1, norm="linf", steps=1, step_size=0.01)
    np.testing.assert_allclose(short.sensitivity[0, 0, 0], 0.01 * np.abs(w).sum(), rtol=1e-9)


# --------------------------------------------------------------------------- FGSM

@pytest.mark.parametrize("direction,sign", [("decrease", -1), ("increase", 1)])
def test_fgsm_moves_the_response_the_way_it_says(direction, sign):
    model = Linear()
    x = gray(2)
    eps = [0.0, 0.01, 0.04]
    res = pl.fgsm(model, x, eps=eps, direction=direction, store_perturbations=True)
    w = np.abs(model.weight.detach().numpy()).sum(1)
    want = np.broadcast_to(np.array(eps)[:, None, None] * w[None, None, :], res.change.shape)
    np.testing.assert_allclose(res.change, sign * want, atol=1e-12)
    np.testing.assert_allclose(res.sensitivity, want, atol=1e-12)
    assert np.all(res.direction_taken == sign)
    np.testing.assert_allclose(res.delta_norm, np.broadcast_to(np.array(eps)[:, None, None] * math.sqrt(D),
                                                               res.delta_norm.shape), atol=1e-12)
    d = res.perturbation(1, 2)
    np.testing.assert_allclose(d.abs().numpy(), 0.01, atol=1e-12)
    g = model.weight.detach()[2].reshape(3, SIDE, SIDE)
    assert torch.equal(torch.sign(d[0]), sign * torch.sign(g))


def test_fgsm_abs_takes_the_larger_change_and_reports_its_sign():
    """On a bowl, moving away from the bottom changes the response more than moving towards it:
    up for ``+(m - a)^2``, down for ``-(m - a)^2``; abs must pick that one, per unit."""
    delta = 0.02
    model = Bowl([[0.5 + 0.5 * delta, 0.5 - 3 * delta, 0.5 + 0.5 * delta, 0.5 - 3 * delta]],
                 sign=[[1.0, 1.0, -1.0, -1.0]])
    res = pl.fgsm(model, gray(1), eps=delta, direction="abs")
    dec = pl.fgsm(model, gray(1), eps=delta, direction="decrease")
    inc = pl.fgsm(model, gray(1), eps=delta, direction="increase")
    np.testing.assert_allclose(res.sensitivity, np.maximum(np.abs(dec.change), np.abs(inc.change)))
    want = np.where(np.abs(inc.change) > np.abs(dec.change), 1, -1)
    assert np.array_equal(want[0, 0], [1, 1, -1, -1])
    assert np.array_equal(res.direction_taken, want)
    np.testing.assert_allclose(res.change, np.where(want == 1, inc.change, dec.change))


def test_fgsm_perturbations_are_clamped_to_the_box():
    model = Linear()
    x = gray(1)
    x[0, :, 0, :] = 1.0
    x[0, :, 1, :] = 0.0
    res = pl.fgsm(model, x, eps=0.3, direction="increase", store_perturbations=True)
    for j in range(3):
        adv = res.perturbed_images(0, j)
        assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
        d = res.perturbation(0, j)
        assert torch.all(d.abs() <= 0.3 + 1e-12)
        np.testing.assert_allclose(res.delta_norm[0, 0, j], float(d.norm()), rtol=1e-9)
        with torch.no_grad():
            np.testing.assert_allclose(model(adv)[0, res.units[j]].item(), res.perturbed[0, 0, j], rtol=1e-9)


# --------------------------------------------------------------------------- controls

def test_shuffled_control_is_a_permutation_of_each_probe_not_the_probe():
    model = Linear()
    x = torch.rand(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5 + 0.25
    res = pl.pgd(model, x, eps=0.3, norm="l2", steps=3, store_perturbations=True)
    ctrl = pl.shuffled_control(model, x, res, seed=0, store_perturbations=True)
    assert ctrl.method == "shuffled" and ctrl.sensitivity.shape == res.sensitivity.shape
    for j in range(3):
        d, s = res.perturbation(0, j), ctrl.perturbation(0, j)
        for i in range(2):
            # whole pixels (3-vectors) move: the multiset of pixel vectors is kept
            pix_d = sorted(map(tuple, d[i].reshape(3, -1).T.numpy().round(12)))
            pix_s = sorted(map(tuple, s[i].reshape(3, -1).T.numpy().round(12)))
            assert pix_d == pix_s
            assert not torch.allclose(d[i], s[i])
    np.testing.assert_allclose(ctrl.delta_norm, res.delta_norm, rtol=1e-9)
    # the control's perturbations are what its responses were measured on
    with torch.no_grad():
        r = model(x + ctrl.perturbation(0, 1))[:, 1].numpy()
    np.testing.assert_allclose(ctrl.perturbed[0, :, 1], r, rtol=1e-9)
    np.testing.assert_allclose(ctrl.sensitivity, res.clean[None] - ctrl.perturbed, rtol=1e-9)
    assert np.all(ctrl.sensitivity < res.sensitivity)
    other = pl.shuffled_control(model, x, res, seed=1)
    assert not np.allclose(other.perturbed, ctrl.perturbed)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_random_control_matches_the_probe_size(norm):
    model = Linear()
    x = gray(2)
    res = pl.pgd(model, x, eps=0.1, norm=norm, steps=3, store_perturbations=True)
    ctrl = pl.random_control(model, x, res, seed=0, store_perturbations=True)
    assert ctrl.method == "random"
    for j in range(3):
        d = ctrl.perturbation(0, j)
        if norm == "linf":
            np.testing.assert_allclose(d.abs().numpy(), 0.1, rtol=1e-9)
        else:
            np.testing.assert_allclose(d.flatten(1).norm(dim=1).numpy(), res.delta_norm[0, :, j], rtol=1e-9)
    assert np.all(np.abs(ctrl.sensitivity) < res.sensitivity)
    assert not np.allclose(pl.random_control(model, x, res, seed=1).perturbed, ctrl.perturbed)


# --------------------------------------------------------------------------- fixed effect (bisection)

@pytest.mark.parametrize("tol", [0.05])
def test_fixed_effect_brackets_the_closed_form_budget(tol):
    """Linear model, L2: the change reachable with budget eps is eps * ||w||, so the smallest budget
    for a target t is t / ||w||; the bracket [eps_lower, eps] holds it and is tol-narrow."""
    model = Linear(n_units=2)
    x = gray(2)
    w = np.linalg.norm(model.weight.detach().numpy(), axis=1)
    target = np.array([0.3, 0.5])
    res = pl.fixed_effect(model, x, target, norm="l2", tol=tol, steps=4, eps_max=2.0)
    exact = target / w
    assert np.all(res.reached)
    assert np.all(res.eps_lower <= exact[None] * (1 + 1e-6))
    assert np.all(res.eps >= exact[None] * (1 - 1e-6))
    assert np.all(res.eps - res.eps_lower <= tol * res.eps + 1e-12)
    assert np.all(res.eps_lower > 0)
    assert np.all(res.change >= target[None] * (1 - 1e-9))
    np.testing.assert_allclose(res.change, res.eps * w[None], rtol=1e-6)


def test_fixed_effect_unreachable_target_keeps_the_best_effort():
    model = Linear(n_units=1)
    w = float(np.linalg.norm(model.weight.detach().numpy()))
    res = pl.fixed_effect(model, gray(1), [10 * w], norm="l2", eps_max=1.0, steps=6)
    assert not res.reached.any() and np.all(np.isinf(res.eps))
    np.testing.assert_allclose(res.change, w * 1.0, rtol=1e-6)
    np.testing.assert_allclose(res.eps_lower, 1.0)
