"""Tests of probelib.probes on a linear model (closed-form optima) and a tiny random CNN."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probelib.probes import (
    FixedEffectResult,
    OptimizationResult,
    ProbeResult,
    fgsm,
    fixed_effect,
    maximize,
    minimize,
    pgd,
    random_control,
    shuffled_control,
    transfer,
)

SIDE = 8  # linear-model images are (3, 8, 8): D = 192 pixels
CNN_SIDE = 16


class Linear(nn.Module):
    """r = W vec(x) + b, float64 so that closed forms hold to ~1e-12."""

    def __init__(self, n_units: int = 4, side: int = SIDE, seed: int = 0, scale: float = 1.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = 3 * side * side
        self.weight = nn.Parameter(scale * torch.randn(n_units, d, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(n_units, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias

    @property
    def w(self) -> np.ndarray:
        return self.weight.detach().numpy()


class TinyCNN(nn.Module):
    """Random nonlinear encoding model: conv -> ReLU -> conv -> softplus -> linear readout."""

    def __init__(self, n_units: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Softplus(), nn.Flatten())
        self.readout = nn.Linear(8 * (CNN_SIDE // 2) ** 2, n_units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


class GradCounter(torch.autograd.Function):
    """Identity whose backward counts the backward passes that reach the input."""

    count = 0

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        GradCounter.count += 1
        return grad


class Counting(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        return self.inner(GradCounter.apply(x))


def gray(n: int = 3, side: int = SIDE) -> torch.Tensor:
    return torch.full((n, 3, side, side), 0.5, dtype=torch.float64)


@pytest.fixture(scope="module")
def lin() -> Linear:
    return Linear()


@pytest.fixture(scope="module")
def cnn() -> TinyCNN:
    return TinyCNN()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return 0.1 + 0.8 * torch.rand(4, 3, CNN_SIDE, CNN_SIDE, generator=g)


# ------------------------------------------------------------------ closed forms (linear model)

@pytest.mark.parametrize("direction", ["decrease", "increase", "abs"])
def test_fgsm_linear_equals_eps_times_l1_norm(lin, direction):
    eps = np.array([0.0, 1e-3, 4e-3, 1e-2])
    res = fgsm(lin, gray(), eps, direction=direction)
    expected = eps[:, None, None] * np.abs(lin.w).sum(1)[None, None, :]
    assert isinstance(res, ProbeResult)
    assert res.sensitivity.shape == (4, 3, 4) and res.perturbed.shape == (4, 3, 4)
    assert res.clean.shape == (3, 4)
    np.testing.assert_allclose(res.sensitivity, np.broadcast_to(expected, res.sensitivity.shape),
                               rtol=1e-9, atol=1e-12)
    signed = res.perturbed - res.clean[None]
    if direction == "decrease":
        assert np.all(signed[1:] < 0)
    if direction == "increase":
        assert np.all(signed[1:] > 0)
    # the stored probe is eps * sign(w_i), pointing the right way
    delta = res.perturbation(2, 1).numpy().reshape(3, -1)
    sign = -1 if direction == "decrease" else 1
    if direction == "abs":
        sign = res.direction_taken[2, :, 1][:, None]
    expected_delta = np.broadcast_to(sign * 4e-3 * np.sign(lin.w[1])[None], delta.shape)
    np.testing.assert_allclose(delta, expected_delta, atol=1e-12)


@pytest.mark.parametrize("direction", ["decrease", "increase", "abs"])
def test_pgd_l2_linear_equals_eps_times_l2_norm(lin, direction):
    eps = [0.02, 0.05]
    res = pgd(lin, gray(), eps, norm="l2", steps=20, direction=direction)
    expected = np.array(eps)[:, None, None] * np.linalg.norm(lin.w, axis=1)[None, None, :]
    np.testing.assert_allclose(res.sensitivity, np.broadcast_to(expected, res.sensitivity.shape),
                               rtol=0.01)
    assert np.all(res.delta_norm <= np.array(eps)[:, None, None] * (1 + 1e-9))
    delta = res.perturbation(1, 0).numpy().reshape(3, -1)
    assert np.all(np.linalg.norm(delta, axis=1) <= 0.05 * (1 + 1e-9))


@pytest.mark.parametrize("direction", ["decrease", "increase", "abs"])
def test_pgd_linf_linear_equals_eps_times_l1_norm(lin, direction):
    res = pgd(lin, gray(), 2e-3, norm="linf", steps=10, direction=direction)
    expected = 2e-3 * np.abs(lin.w).sum(1)
    np.testing.assert_allclose(res.sensitivity[0], np.broadcast_to(expected, (3, 4)), rtol=1e-6)
    assert np.abs(res.perturbation(0, 3).numpy()).max() <= 2e-3 * (1 + 1e-9)


def test_pgd_fewer_steps_cannot_beat_the_optimum(lin):
    one = pgd(lin, gray(), 0.05, norm="l2", steps=1, step_size=0.01)
    optimum = 0.05 * np.linalg.norm(lin.w, axis=1)
    assert np.all(one.sensitivity[0] <= optimum * (1 + 1e-9))
    assert np.all(one.sensitivity[0] < 0.5 * optimum)  # one step of 0.01 covers a fifth of the ball


def test_images_at_the_box_edges_are_clamped(lin):
    # pixels at 0, 1 and near them: the linear optimum within box ∩ L-inf ball is closed-form
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, SIDE, SIDE, generator=g, dtype=torch.float64)
    x[0, 0] = 0.0
    x[0, 1] = 1.0
    x[1] = torch.where(x[1] > 0.5, 0.995, 0.004)
    eps = 0.05
    w = lin.w
    flat = x.flatten(1).numpy()
    # decrease: move each pixel by -eps*sign(w) as far as the box allows
    room = np.where(w[None] > 0, np.minimum(eps, flat[:, None]), np.minimum(eps, 1 - flat[:, None]))
    expected = (np.abs(w)[None] * room).sum(-1)
    for res in (fgsm(lin, x, eps), pgd(lin, x, eps, norm="linf", steps=10)):
        np.testing.assert_allclose(res.sensitivity[0], expected, rtol=1e-6)
        adv = res.perturbed_images(0, 2)
        assert adv.min() >= 0.0 and adv.max() <= 1.0
        assert res.delta_norm[0, 0, 2] < np.sqrt(flat.shape[1]) * eps  # clamping shortened the probe
    l2 = pgd(lin, x, 0.5, norm="l2", steps=10)
    for j in range(4):
        adv = l2.perturbed_images(0, j)
        assert adv.min() >= 0.0 and adv.max() <= 1.0


def test_stored_perturbations_reproduce_recorded_responses(cnn, photos):
    """Re-running the model on images + perturbation(e, j) gives perturbed[e, :, j] everywhere."""
    probes = [fgsm(cnn, photos, [0.01, 0.05], direction="abs"),
              pgd(cnn, photos, [0.1, 0.4], norm="l2", steps=3, direction="abs", batch_size=5),
              pgd(cnn, photos, 0.03, norm="linf", steps=3, units=[2, 0], batch_size=3)]
    probes += [shuffled_control(cnn, photos, probes[1]), random_control(cnn, photos, probes[2])]
    for res in probes:
        n_eps, _, n_units = res.sensitivity.shape
        for e in range(n_eps):
            for j in range(n_units):
                adv = res.perturbed_images(e, j)
                assert adv.min() >= 0 and adv.max() <= 1
                with torch.no_grad():
                    r = cnn(adv)[:, res.units[j]].numpy()
                np.testing.assert_allclose(r, res.perturbed[e, :, j], rtol=1e-5, atol=1e-6)
                size = np.linalg.norm(res.perturbation(e, j).numpy().reshape(len(photos), -1), axis=1)
                np.testing.assert_allclose(size, res.delta_norm[e, :, j], rtol=1e-5, atol=1e-7)
    fe = fixed_effect(cnn, photos, 0.05, units=[1, 2], steps=3, batch_size=3)
    for j in range(2):
        with torch.no_grad():
            r = cnn(photos + fe.perturbation(j))[:, fe.units[j]].numpy()
        np.testing.assert_allclose(r, fe.perturbed[:, j], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ efficiency contract

def test_fgsm_uses_one_forward_and_one_backward_per_unit_for_the_whole_grid(lin):
    model = Counting(lin)
    GradCounter.count = 0
    fgsm(model, gray(3), np.linspace(0, 0.01, 6), batch_size=64)
    assert GradCounter.count == 4  # one VJP per unit, not per unit and budget
    # clean+grad forward, one shape probe, and 6 budgets x 4 units x 3 images = 72 rows in 2 batches
    assert model.forwards <= 1 + 1 + 2


def test_pgd_batches_rows_across_units(lin):
    model = Counting(lin)
    GradCounter.count = 0
    pgd(model, gray(3), 0.05, steps=5, batch_size=12)  # 3 images x 4 units = 12 rows: one batch
    assert GradCounter.count == 5


def test_batch_size_does_not_change_results(cnn, photos):
    settings = ((fgsm, {}), (pgd, {"norm": "l2", "steps": 3}), (pgd, {"norm": "linf", "steps": 3}))
    for attack, kw in settings:
        a = attack(cnn, photos, [0.01, 0.1], direction="abs", batch_size=1, **kw)
        b = attack(cnn, photos, [0.01, 0.1], direction="abs", batch_size=64, **kw)
        # (direction_taken may flip on near-ties |up| ~ |down|; the sensitivity may not change)
        np.testing.assert_allclose(a.sensitivity, b.sensitivity, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ directions on a nonlinear model

def test_abs_keeps_the_larger_of_both_directions(cnn, photos):
    eps = [0.02, 0.1]
    down = fgsm(cnn, photos, eps, direction="decrease")
    up = fgsm(cnn, photos, eps, direction="increase")
    both = fgsm(cnn, photos, eps, direction="abs")
    np.testing.assert_allclose(both.sensitivity,
                               np.maximum(np.abs(down.sensitivity), np.abs(up.sensitivity)), rtol=1e-5)
    assert set(np.unique(both.direction_taken)) <= {-1, 1}
    np.testing.assert_allclose(both.change, np.where(both.direction_taken == 1, up.change, down.change),
                               rtol=1e-5)
    p_abs = pgd(cnn, photos, 0.3, steps=5, direction="abs")
    p_down = pgd(cnn, photos, 0.3, steps=5, direction="decrease")
    assert np.all(p_abs.sensitivity >= np.abs(p_down.sensitivity) - 1e-6)


def test_pgd_beats_or_matches_fgsm_at_equal_linf_budget(cnn, photos):
    f = fgsm(cnn, photos, 0.05)
    p = pgd(cnn, photos, 0.05, norm="linf", steps=10)
    assert p.sensitivity.mean() >= f.sensitivity.mean() - 1e-6
    assert np.all(p.sensitivity >= -1e-7)  # the best iterate includes the clean image


# ------------------------------------------------------------------ controls

@pytest.mark.parametrize("which", ["linear", "cnn"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_controls_are_much_weaker_than_targeted_probes(which, attack, lin, cnn, photos):
    model, x = (lin, gray(4)) if which == "linear" else (cnn, photos)
    eps = [0.01, 0.03] if attack == "fgsm" else [0.2, 0.5]
    res = fgsm(model, x, eps) if attack == "fgsm" else pgd(model, x, eps, norm="l2", steps=10)
    for control in (shuffled_control(model, x, res, seed=1), random_control(model, x, res, seed=1)):
        assert control.sensitivity.shape == res.sensitivity.shape
        assert control.direction == res.direction and control.norm == res.norm
        np.testing.assert_allclose(control.clean, res.clean, rtol=1e-6)
        assert res.sensitivity.mean() > 5 * np.abs(control.sensitivity).mean()


def test_shuffled_control_permutes_pixels_and_random_control_matches_size(cnn, photos):
    res = pgd(cnn, photos, 0.2, norm="l2", steps=5)
    sh = shuffled_control(cnn, photos, res, seed=0)

    def colour_vectors(delta: np.ndarray) -> np.ndarray:
        """(3, H, W) -> its (H*W, 3) pixel vectors in a canonical (sorted) order."""
        v = delta.reshape(3, -1).T
        return v[np.lexsort(v.T[::-1])]

    for e, j in ((0, 0), (0, 2)):
        probe, shuffled = res.perturbation(e, j).numpy(), sh.perturbation(e, j).numpy()
        for i in range(len(photos)):
            assert not np.array_equal(probe[i], shuffled[i])
            # pixels move as (3,)-vectors: same colour vectors, same norms (no clamping here)
            np.testing.assert_allclose(colour_vectors(shuffled[i]), colour_vectors(probe[i]), atol=1e-7)
    rnd = random_control(cnn, photos, res, seed=0)
    np.testing.assert_allclose(rnd.delta_norm, res.delta_norm, rtol=1e-5)
    rnd_linf = random_control(cnn, photos, fgsm(cnn, photos, 0.02), seed=0)
    assert np.allclose(np.abs(rnd_linf.perturbation(0, 1).numpy()), 0.02, atol=1e-7)


def test_shuffled_control_needs_stored_perturbations(cnn, photos):
    res = fgsm(cnn, photos, 0.01, store_perturbations=False)
    with pytest.raises(ValueError, match="store_perturbations"):
        shuffled_control(cnn, photos, res)
    with pytest.raises(ValueError, match="store_perturbations"):
        res.perturbation(0, 0)
    with pytest.raises(ValueError, match="not the images"):
        shuffled_control(cnn, photos.flip(0), fgsm(cnn, photos, 0.01))


def test_large_perturbations_are_not_kept_by_default(cnn, photos, monkeypatch):
    import probelib.probes._common as common

    monkeypatch.setattr(common, "STORE_LIMIT_BYTES", 100)
    with pytest.warns(UserWarning, match="store_perturbations=True"):
        res = pgd(cnn, photos, 0.1, steps=2, progress=True)
    assert res.deltas is None and not res.has_perturbations
    with pytest.raises(ValueError, match="store_perturbations=True"):
        res.perturbation(0, 0)
    with pytest.warns(UserWarning, match="random control"):
        assert random_control(cnn, photos, res).sensitivity.shape == res.sensitivity.shape
    kept = fgsm(cnn, photos, 0.1, store_perturbations=True)
    assert kept.sign_grad.dtype == np.int8 and kept.sign_grad.shape == (3, *photos.shape)


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("eps", [-0.01, float("nan"), float("inf"), [0.01, -1.0]])
def test_bad_eps_raises(cnn, photos, eps):
    with pytest.raises(ValueError, match="eps"):
        fgsm(cnn, photos, eps)
    with pytest.raises(ValueError, match="eps"):
        pgd(cnn, photos, eps)


def test_bad_arguments_raise(cnn, photos):
    with pytest.raises(ValueError, match="norm"):
        pgd(cnn, photos, 0.1, norm="l1")
    with pytest.raises(ValueError, match="direction"):
        fgsm(cnn, photos, 0.1, direction="down")
    with pytest.raises(ValueError, match="direction"):
        pgd(cnn, photos, 0.1, direction="both")
    with pytest.raises(ValueError, match="units"):
        fgsm(cnn, photos, 0.1, units=[0, 3])
    with pytest.raises(ValueError, match="units"):
        pgd(cnn, photos, 0.1, units=[5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fgsm(cnn, photos * 255, 0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pgd(cnn, photos - 0.5, 0.1)
    with pytest.raises(ValueError, match="steps"):
        pgd(cnn, photos, 0.1, steps=0)
    with pytest.raises(ValueError, match="rank 4"):
        fgsm(cnn, photos[0], 0.1)
    with pytest.raises(ValueError, match="target_change"):
        fixed_effect(cnn, photos, -1.0)
    with pytest.raises(ValueError, match="norm"):
        maximize(cnn, photos[0], 0, norm="l3")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        maximize(cnn, photos[0] + 1, 0)
    with pytest.raises(ValueError, match="unit"):
        maximize(cnn, photos[0], 7)


class NaNOnPerturbed(nn.Module):
    """Finite at the clean images (x = 0.5) but NaN once any pixel drops below 0.45."""

    def __init__(self):
        super().__init__()
        self.lin = Linear()

    def forward(self, x):
        return self.lin(x) + torch.log(x.flatten(1).min(1).values - 0.45)[:, None]


class AlwaysNaN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Linear()

    def forward(self, x):
        r = self.lin(x)
        return torch.where(torch.arange(r.shape[1]) == 2, torch.nan, r)


class Detached(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = Linear()

    def forward(self, x):
        return self.lin(x).detach()


def test_non_differentiable_model_raises():
    for call in (lambda m: fgsm(m, gray(), 0.01), lambda m: pgd(m, gray(), 0.01),
                 lambda m: maximize(m, gray(1)[0], 0, steps=2)):
        with pytest.raises(ValueError, match="not differentiable"):
            call(Detached())


def test_nan_responses_are_reported_not_averaged():
    with pytest.raises(ValueError, match="NaN"):
        fgsm(AlwaysNaN(), gray(), 0.01)
    with pytest.raises(ValueError, match="NaN"):
        pgd(AlwaysNaN(), gray(), 0.01)
    with pytest.raises(ValueError, match="NaN.*perturbed|perturbed.*NaN"):
        fgsm(NaNOnPerturbed(), gray(), [0.01, 0.1])
    with pytest.raises(ValueError, match="NaN"):
        pgd(NaNOnPerturbed(), gray(), 0.1, norm="linf", steps=3)
    res = fgsm(NaNOnPerturbed(), gray(), 0.01)  # stays above 0.45: fine
    assert np.all(np.isfinite(res.sensitivity))


# ------------------------------------------------------------------ determinism and model state

def test_deterministic_under_seed(cnn, photos):
    def run(seed):
        p = pgd(cnn, photos, [0.1, 0.3], norm="l2", steps=3, random_start=True, restarts=2,
                direction="abs", seed=seed)
        return p, shuffled_control(cnn, photos, p, seed=seed), random_control(cnn, photos, p, seed=seed)

    first, second, other = run(5), run(5), run(6)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.sensitivity, b.sensitivity)
        np.testing.assert_array_equal(a.deltas, b.deltas)
    for a, c in zip(first, other):
        assert not np.array_equal(a.deltas, c.deltas)
    f1, f2 = fgsm(cnn, photos, [0.01, 0.02]), fgsm(cnn, photos, [0.01, 0.02])
    np.testing.assert_array_equal(f1.sensitivity, f2.sensitivity)
    np.testing.assert_array_equal(f1.sign_grad, f2.sign_grad)
    m1 = maximize(cnn, photos[0], 1, steps=4, jitter=2, seed=3)
    m2 = maximize(cnn, photos[0], 1, steps=4, jitter=2, seed=3)
    np.testing.assert_array_equal(m1.images, m2.images)


def test_model_state_is_restored_and_no_parameter_grads():
    model = TinyCNN()
    model.train()
    model.readout.weight.requires_grad_(False)
    x = torch.rand(2, 3, CNN_SIDE, CNN_SIDE, generator=torch.Generator().manual_seed(0))
    fgsm(model, x, 0.01)
    pgd(model, x, 0.1, steps=2)
    maximize(model, x[0], 0, steps=2)
    fixed_effect(model, x, 0.01, units=[0], steps=2, max_iter=2)
    assert model.training and all(m.training for m in model.modules())
    assert not model.readout.weight.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if n != "readout.weight")
    assert all(p.grad is None for p in model.parameters())


def test_dropout_is_off_during_probes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 16), nn.Dropout(0.5),
                          nn.Linear(16, 2))
    model.train()
    a = fgsm(model, gray(2).float(), 0.01)
    b = fgsm(model, gray(2).float(), 0.01)
    np.testing.assert_array_equal(a.sensitivity, b.sensitivity)
    assert model.training


def test_explicit_cpu_device_and_float32_images(cnn, photos):
    res = pgd(cnn, photos, 0.2, steps=2, device="cpu")
    ref = pgd(cnn, photos, 0.2, steps=2, device=None)
    np.testing.assert_array_equal(res.sensitivity, ref.sensitivity)
    assert isinstance(res.sensitivity, np.ndarray) and res.deltas.dtype == np.float32


# ------------------------------------------------------------------ fixed effect

def test_fixed_effect_linear_finds_target_over_l2_norm(lin):
    target = np.array([0.05, 0.1, 0.02, 0.08])
    res = fixed_effect(lin, gray(2), target, norm="l2", eps_max=1.0, tol=0.01, steps=20)
    assert isinstance(res, FixedEffectResult)
    expected = target / np.linalg.norm(lin.w, axis=1)
    assert res.reached.all()
    assert np.all(res.eps >= expected * (1 - 1e-6)) and np.all(res.eps <= expected * 1.011)
    assert np.all(res.eps_lower <= expected)
    assert np.all(res.change >= target - 1e-9)
    norms = np.linalg.norm(res.perturbation(1).numpy().reshape(2, -1), axis=1)
    assert np.all(norms <= res.eps[:, 1] * (1 + 1e-9))


def test_fixed_effect_reports_unreachable_targets(lin):
    reachable = 0.5 * 0.02 * np.linalg.norm(lin.w, axis=1)  # needs eps = 0.01
    target = reachable.copy()
    target[2] = 10 * 0.02 * np.linalg.norm(lin.w[2])  # needs eps = 0.2 > eps_max
    res = fixed_effect(lin, gray(2), target, norm="l2", eps_max=0.02, direction="increase", steps=10)
    assert not res.reached[:, 2].any() and res.reached[:, [0, 1, 3]].all()
    assert np.all(np.isinf(res.eps[:, 2])) and np.all(np.isfinite(res.eps[:, [0, 1, 3]]))
    np.testing.assert_allclose(res.eps[:, 0], 0.01, rtol=0.021)
    np.testing.assert_allclose(res.change[:, 2], 0.02 * np.linalg.norm(lin.w[2]), rtol=0.01)


# ------------------------------------------------------------------ maximise / minimise

def test_maximize_increases_response_within_the_box(cnn, photos):
    res = maximize(cnn, photos[0], 1, steps=20, record_every=5)
    assert isinstance(res, OptimizationResult)
    assert res.images.shape == (5, 3, CNN_SIDE, CNN_SIDE) and res.responses.shape == (5, 3)
    np.testing.assert_array_equal(res.steps, [0, 5, 10, 15, 20])
    assert res.objective[-1] > res.objective[0] + 0.05
    assert np.mean(np.diff(res.objective) > 0) >= 0.75  # monotonic-ish
    np.testing.assert_allclose(res.objective, res.responses[:, 1], rtol=1e-6)
    assert res.images.min() >= 0.0 and res.images.max() <= 1.0
    np.testing.assert_allclose(res.images[0], photos[0].numpy())
    with torch.no_grad():
        final = cnn(torch.from_numpy(res.final_image)[None])[0, 1].item()
    assert final == pytest.approx(res.objective[-1], rel=1e-5)


def test_minimize_and_budgeted_and_regularised_objectives(cnn, photos):
    down = minimize(cnn, photos[1], 0, steps=15)
    assert down.objective[-1] < down.objective[0] - 0.05
    assert down.images.min() >= 0 and down.images.max() <= 1
    bounded = maximize(cnn, photos[1], 2, steps=10, eps=0.3, norm="l2")
    assert np.linalg.norm(bounded.delta) <= 0.3 * (1 + 1e-5)
    linf = maximize(cnn, photos[1], 2, steps=10, eps=0.02, norm="linf")
    assert np.abs(linf.delta).max() <= 0.02 + 1e-6
    weights = np.array([1.0, -0.5, 0.25])
    weighted = maximize(cnn, photos[1], weights, steps=10, jitter=1, smoothness=0.1)
    np.testing.assert_allclose(weighted.objective, weighted.responses @ weights, rtol=1e-5, atol=1e-6)
    assert weighted.objective[-1] > weighted.objective[0]
    roi = maximize(cnn, photos[1], [0, 2], steps=10)
    np.testing.assert_allclose(roi.objective, roi.responses[:, [0, 2]].mean(1), rtol=1e-5)
    custom = minimize(cnn, photos[1], lambda r: r[:, 0] - r[:, 1], steps=10)
    assert custom.objective[-1] < custom.objective[0]
    smooth = maximize(cnn, photos[1], 2, steps=10, smoothness=1.0)
    rough = maximize(cnn, photos[1], 2, steps=10, smoothness=0.0)

    def tv(img):
        return np.abs(np.diff(img, axis=1)).mean() + np.abs(np.diff(img, axis=2)).mean()

    assert tv(smooth.final_image) < tv(rough.final_image)


# ------------------------------------------------------------------ transfer

def test_transfer_to_self_and_to_opposite_model(lin):
    x = gray(3)
    res = fgsm(lin, x, [0.005, 0.01])
    flipped = Linear()
    with torch.no_grad():
        flipped.weight.mul_(-1)
    out = transfer(res, x, {"same": lin, "flipped": flipped, "other": Linear(seed=7)})
    np.testing.assert_allclose(out["same"].sensitivity, res.sensitivity, rtol=1e-9)
    np.testing.assert_allclose(out["flipped"].sensitivity, -res.sensitivity, rtol=1e-9)
    assert np.abs(out["other"].sensitivity).mean() < 0.2 * res.sensitivity.mean()
    single = transfer(res, x, flipped)
    assert isinstance(single, ProbeResult) and single.sensitivity.shape == (2, 3, 4)
    raw = transfer(res.perturbation(1, 0), x, lin, units=[0])
    np.testing.assert_allclose(raw.sensitivity[0, :, 0], res.sensitivity[1, :, 0], rtol=1e-9)
    per_unit = torch.stack([res.perturbation(0, j) for j in range(4)])
    raw_all = transfer(per_unit, x, lin, units=[0, 1, 2, 3])
    np.testing.assert_allclose(raw_all.sensitivity[0], res.sensitivity[0], rtol=1e-9)
    with pytest.raises(ValueError, match="units"):
        transfer(res, x, lin, units=[0])
    with pytest.raises(ValueError, match="units"):
        transfer(per_unit, x, lin)
    with pytest.raises(ValueError, match="shape"):
        transfer(per_unit[:, :2], x, lin, units=[0, 1, 2, 3])


def test_transfer_between_models_is_weaker_than_the_white_box_probe(cnn, photos):
    others = {"b": TinyCNN(seed=1), "c": TinyCNN(seed=2)}
    probe = fgsm(cnn, photos, 0.03, units=[0, 2], store_perturbations=True)
    moved = transfer(probe, photos, others)
    assert set(moved) == {"b", "c"}
    for res in moved.values():
        assert res.sensitivity.shape == probe.sensitivity.shape
        assert np.abs(res.sensitivity).mean() < probe.sensitivity.mean()
    self_transfer = transfer(probe, photos, cnn)  # onto its own model: the white-box effect
    np.testing.assert_allclose(self_transfer.sensitivity, probe.sensitivity, rtol=1e-5, atol=1e-7)
