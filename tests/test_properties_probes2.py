"""Properties of the probes' helpers: budgets, the smoothness weight of response optimisation,
budget subsets of a result, the perturbations of a result as an array, the transfer table and the
results' one-line summaries. Each value is checked against its definition (closed forms on linear
models and hand-made arrays), so a changed factor, axis or default fails."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from probelib.probes import fgsm, fixed_effect, maximize, pgd
from probelib.probes.budgets import REFERENCE_SIZE, fixed_effect_budget, l2_probe_settings, scale_eps
from probelib.probes.optimize import total_variation, tv_weight
from probelib.probes.results import FixedEffectResult, OptimizationResult, ProbeResult, subset_eps
from probelib.probes.transfer import TransferResult, probe_deltas

SIDE = 4
D = 3 * SIDE * SIDE


class Linear(nn.Module):
    def __init__(self, n_units: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_units, D, generator=g, dtype=torch.float64))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, 3, SIDE, SIDE, generator=g, dtype=torch.float64)


# --------------------------------------------------------------------------------- budgets

def test_scale_eps_is_linear_in_the_side_for_l2_and_constant_for_linf():
    assert REFERENCE_SIZE == 224
    assert scale_eps(2.0, 112) == 1.0 and isinstance(scale_eps(2, 112), float)
    assert scale_eps(2.0, 50, reference_size=100) == 1.0        # the reference size is used
    assert scale_eps(2.0, 448, norm="l2") == 4.0
    out = scale_eps((1, 3), 448)
    assert out == [2.0, 6.0] and all(isinstance(v, float) for v in out)
    assert scale_eps(np.array([1.0, 3.0]), 448) == [2.0, 6.0]   # an array is a sequence
    assert scale_eps(0.5, 10, norm="linf") == 0.5 and scale_eps([0.5], 10, norm="linf") == [0.5]
    assert scale_eps(1.0, 1) == 1.0 / 224 and scale_eps(1.0, 5, reference_size=1) == 5.0   # sizes of 1
    for bad in ({"image_size": 0}, {"reference_size": 0}, {"image_size": -3}):
        kw = {"image_size": 10, "reference_size": 10, **bad}
        with pytest.raises(ValueError, match="^image_size and reference_size must be positive$"):
            scale_eps(1.0, **kw)
    with pytest.raises(ValueError, match=r"unknown norm 'l1'; valid: 'l2', 'linf'"):
        scale_eps(1.0, 10, norm="l1")


def test_l2_probe_settings_are_the_2025_papers_probes_scaled_to_the_image():
    assert l2_probe_settings(112) == {"eps": [2.5], "norm": "l2", "steps": 5, "direction": "abs",
                                      "store_perturbations": True}
    kw = l2_probe_settings(448, eps=1.0, steps=7.0, direction="decrease", store_perturbations=0)
    assert kw == {"eps": [2.0], "norm": "l2", "steps": 7, "direction": "decrease", "store_perturbations": False}
    assert type(kw["steps"]) is int and type(kw["store_perturbations"]) is bool


def test_fixed_effect_budget_is_margin_times_the_first_order_need():
    s = np.array([[1.0, 2.0], [4.0, 0.5]])
    # need = eps * target / s, largest 2 * 1 / 0.5 = 4
    assert fixed_effect_budget(s, 2.0, 1.0) == 8.0                       # default margin 2
    assert fixed_effect_budget(s, 2.0, 1.0, margin=3.0) == 12.0
    assert fixed_effect_budget(s, 2.0, 1.0, margin=0.5) == 2.0           # a margin below 1 is allowed
    assert fixed_effect_budget(s, 2.0, 1.0, cap=5.0) == 5.0
    assert fixed_effect_budget(s, 2.0, 1.0, cap=100.0) == 8.0            # the cap only lowers
    # a target per unit broadcasts against (N, U): need = 2 * [0.5, 3] / s, largest 2 * 3 / 0.5 = 12
    assert fixed_effect_budget(s, 2.0, [0.5, 3.0]) == 24.0
    # the floor: 0.25 * margin * eps when the sweep already moves far beyond the target
    assert fixed_effect_budget(s * 1000, 2.0, 1.0) == 1.0
    assert fixed_effect_budget(s * 1000, 2.0, 1.0, margin=4.0) == 2.0
    # a unit the sweep did not move: the need is finite (sensitivity floored at 1e-12 * target)
    zero = fixed_effect_budget(np.array([0.0, 1.0]), 1.0, 2.0)
    assert zero == pytest.approx(2 * 1.0 * 2.0 / (1e-12 * 2.0))
    tiny = fixed_effect_budget(np.array([0.0]), 1.0, 1e-15)             # floor 1e-12 * max(target, 1e-12)
    assert tiny == pytest.approx(2 * 1e-15 / 1e-24)
    assert isinstance(fixed_effect_budget(s, 2.0, 1.0), float)
    for kw in ({"eps": 0.0}, {"eps": -1.0}, {"margin": 0.0}, {"margin": -1.0}, {"target": 0.0},
               {"target": [1.0, -1.0]}):
        args = {"sensitivity": s, "eps": 2.0, "target": 1.0, **kw}
        with pytest.raises(ValueError, match="^eps, margin and target must be > 0$"):
            fixed_effect_budget(**args)


# --------------------------------------------------------------------------------- tv_weight

def test_tv_weight_balances_the_penalty_against_the_response_gradient():
    model = Linear()
    x = _images(1, seed=3)[0]
    # linear model: grad r_u = w_u; the TV gradient by autograd of the penalty itself
    xt = x[None].clone().requires_grad_(True)
    (g_tv,) = torch.autograd.grad(total_variation(xt).sum(), xt)
    for unit in (0, 2):
        expected = 0.3 * float(model.weight[unit].detach().norm()) / float(g_tv.norm())
        assert tv_weight(model, x, unit, 0.3) == pytest.approx(expected, rel=1e-12)
        assert tv_weight(model, x[None], unit, 0.3) == pytest.approx(expected, rel=1e-12)   # (1, 3, H, W)
    assert tv_weight(model, x, 0, 0.6) == pytest.approx(2 * tv_weight(model, x, 0, 0.3), rel=1e-12)
    assert tv_weight(model, x, 0, 0) == 0.0 and isinstance(tv_weight(model, x, 0, 0), float)
    assert not x.requires_grad                                        # the caller's image is untouched


def test_tv_weight_restores_training_flags_and_checks_its_inputs():
    model = nn.Sequential(nn.Flatten(), nn.Linear(D, 8), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    model.train()
    model[2].eval()                      # a submodule's own flag is restored too
    x = _images(1, seed=4)[0]
    a, b = tv_weight(model, x, 1, 1.0), tv_weight(model, x, 1, 1.0)
    assert a == b                        # dropout off during the call: deterministic
    assert model.training and model[1].training and not model[2].training
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="relative must be >= 0"):
            tv_weight(model, x, 0, bad)
    flat = torch.full((3, SIDE, SIDE), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^the image is constant: the total variation has no gradient; start from "
                                         r"an image with some texture \(e.g. grey plus a little noise\)$"):
        tv_weight(model, flat, 0, 1.0)
    # a convolutional model takes the (1, 3, H, W) image as it is; a model without parameters works too
    conv = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten()).double()
    assert tv_weight(conv, x[None], 1, 1.0) == tv_weight(conv, x, 1, 1.0) > 0
    xt = x[None].clone().requires_grad_(True)
    (g_tv,) = torch.autograd.grad(total_variation(xt).sum(), xt)
    # nn.Flatten: response 5 is pixel 5, whose gradient has norm 1
    assert tv_weight(nn.Flatten(), x, 5, 1.0) == pytest.approx(1.0 / float(g_tv.norm()), rel=1e-12)


# --------------------------------------------------------------------------------- results

def _probe(deltas: bool = True) -> ProbeResult:
    return pgd(Linear(), _images(2), [0.1, 0.2, 0.3], norm="l2", steps=2, direction="abs",
               store_perturbations=deltas)


def test_subset_eps_slices_every_budget_array_in_the_order_asked():
    res = _probe()
    sub = subset_eps(res, [0.3, 0.1])
    for name in ("sensitivity", "perturbed", "direction_taken", "delta_norm", "deltas"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(res, name)[[2, 0]], err_msg=name)
    np.testing.assert_array_equal(sub.eps, [0.3, 0.1])
    for name in ("units", "clean", "images"):
        np.testing.assert_array_equal(getattr(sub, name), getattr(res, name))
    assert (sub.method, sub.norm, sub.direction, sub.params) == (res.method, res.norm, res.direction, res.params)
    np.testing.assert_array_equal(sub.perturbation(0, 1).numpy(), res.perturbation(2, 1).numpy())
    one = subset_eps(res, 0.2)                                      # a scalar budget
    assert one.sensitivity.shape == (1, 2, 3) and one.eps.tolist() == [0.2]
    assert subset_eps(res, 0.2 + 1e-13).eps.tolist() == [0.2]        # matched to 1e-12
    with pytest.raises(ValueError, match="^eps 0.2000000001[0-9]* is not in"):
        subset_eps(res, 0.2 + 1e-10)
    with pytest.raises(ValueError, match=r"eps 0.2000001 is not in the result's grid \[0.1, 0.2, 0.3\]"):
        subset_eps(res, 0.2000001)
    without = subset_eps(_probe(deltas=False), [0.2])
    assert without.deltas is None and without.sensitivity.shape == (1, 2, 3)


def test_subset_eps_keeps_fgsm_gradient_signs():
    from probelib.probes import fgsm
    res = fgsm(Linear(), _images(2), [0.01, 0.02])
    sub = subset_eps(res, [0.02])
    np.testing.assert_array_equal(sub.sign_grad, res.sign_grad)
    np.testing.assert_array_equal(sub.perturbation(0, 2).numpy(), res.perturbation(1, 2).numpy())


def test_result_summaries_name_their_content():
    res = _probe()
    mean = float(np.mean(res.sensitivity))
    assert repr(res) == (f"ProbeResult(method='pgd', norm='l2', direction='abs', n_eps=3, n_images=2, "
                         f"n_units=3, mean_sensitivity={mean:.4g}, perturbations=deltas)")
    assert repr(_probe(deltas=False)).endswith("perturbations=none)")
    from probelib.probes import fgsm
    assert repr(fgsm(Linear(), _images(2), 0.01)).endswith("perturbations=sign_grad)")
    fe = fixed_effect(Linear(), _images(2), [1e-3, 1e-3, 1e9], eps_max=1.0, steps=2, max_iter=3)
    assert repr(fe) == (f"FixedEffectResult(norm='l2', direction='decrease', n_images=2, n_units=3, "
                        f"reached=4/6, median_eps={np.median(fe.eps):.4g})")
    opt = maximize(Linear(), _images(1)[0], 1, steps=2)
    assert repr(opt) == (f"OptimizationResult(mode='maximize', objective={opt.objective_name!r}, "
                         f"frames={len(opt.steps)}, objective {opt.objective[0]:.4g} -> {opt.objective[-1]:.4g})")
    assert isinstance(opt, OptimizationResult) and isinstance(fe, FixedEffectResult)


# --------------------------------------------------------------------------------- transfer

def test_probe_deltas_are_each_units_applied_perturbation():
    x = _images(3)
    res = pgd(Linear(2), x, [0.1, 0.3], steps=3, direction="abs", store_perturbations=True)
    for e in (0, 1):
        d = probe_deltas(res, eps_index=e)
        assert d.shape == (2, 3, 3, SIDE, SIDE) and d.dtype == np.float32
        for j in range(2):
            np.testing.assert_array_equal(d[j], res.perturbation(e, j).numpy().astype(np.float32))
    np.testing.assert_array_equal(probe_deltas(res), probe_deltas(res, 0))          # default: first budget
    assert np.allclose(np.linalg.norm(probe_deltas(res, 1).reshape(2, 3, -1), axis=2), 0.3, rtol=1e-6)
    fe = fixed_effect(Linear(2), x, 0.05, units=[1], eps_max=1.0, steps=2, store_perturbations=True)
    np.testing.assert_array_equal(probe_deltas(fe), fe.deltas.astype(np.float32))
    assert probe_deltas(fe).dtype == np.float32
    with pytest.raises(ValueError, match="ProbeResult does not keep its perturbations"):
        probe_deltas(pgd(Linear(2), x, 0.1, steps=2, store_perturbations=False))
    fe_none = fixed_effect(Linear(2), x, 0.05, units=[1], eps_max=1.0, steps=2, store_perturbations=False)
    with pytest.raises(ValueError, match="FixedEffectResult does not keep its probes"):
        probe_deltas(fe_none)
    with pytest.raises(ValueError, match="expected a ProbeResult or FixedEffectResult; got ndarray"):
        probe_deltas(np.zeros((1, 3, 3, SIDE, SIDE)))


def _transfer_result() -> TransferResult:
    rng = np.random.default_rng(0)
    s, t, n, u = 2, 3, 4, 2
    change = rng.uniform(0, 1, (s, t, n, u))
    return TransferResult(names=["a", "b", "c"], sources=["a", "c"], change=change,
                          signed_change=-change, control=rng.uniform(0, 0.1, (s, t, n, u)),
                          probe_norm=rng.uniform(1, 2, (s, n, u)), clean=rng.normal(size=(t, n, u)),
                          units=np.array([7, 3]), direction="abs", roi="FFA")


def test_transfer_table_is_one_row_per_source_target_image_and_unit():
    res = _transfer_result()
    tab = res.table()
    assert list(tab.columns) == ["source", "target", "image", "unit", "change", "control", "probe_norm"]
    assert len(tab) == 2 * 3 * 4 * 2
    for row in tab.sample(12, random_state=0).itertuples():
        si, ti = res.sources.index(row.source), res.names.index(row.target)
        ui = [7, 3].index(row.unit)
        assert row.change == res.change[si, ti, row.image, ui]
        assert row.control == res.control[si, ti, row.image, ui]
        assert row.probe_norm == res.probe_norm[si, row.image, ui]      # the source's probe, any target
    assert tab["source"].tolist()[:24] == ["a"] * 24 and set(tab["target"]) == {"a", "b", "c"}
    assert set(tab["image"]) == {0, 1, 2, 3} and set(tab["unit"]) == {7, 3}


def test_transfer_summaries_average_over_images_and_units():
    res = _transfer_result()
    np.testing.assert_allclose(res.matrix, res.change.mean(axis=(2, 3)))
    np.testing.assert_allclose(res.control_matrix, res.control.mean(axis=(2, 3)))
    own = res.own
    assert own[0] == res.matrix[0, 0] and own[2] == res.matrix[1, 2] and math.isnan(own[1])
    np.testing.assert_allclose(res.relative, res.matrix / own[None, :])
    assert res.per_image.shape == (4, 2, 3)
    np.testing.assert_allclose(res.per_image[1], res.change[:, :, 1, :].mean(axis=2))


def _linear_responses(model: Linear, x: torch.Tensor, units) -> np.ndarray:
    with torch.no_grad():
        return model(x)[:, list(units)].numpy()


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
def test_transfer_of_a_probe_result_reports_the_targets_responses_to_the_same_probes(attack):
    from probelib.probes import fgsm, transfer
    x, source, target = _images(3, seed=1), Linear(seed=0), Linear(seed=6)
    if attack == "pgd":
        res = pgd(source, x, [0.2, 0.5], norm="l2", steps=2, units=[2, 0], store_perturbations=True)
    else:
        res = fgsm(source, x, [0.01, 0.03], units=[2, 0])
    out = transfer(res, x, target)
    clean = _linear_responses(target, x, [2, 0])
    np.testing.assert_allclose(out.clean, clean, rtol=1e-12)
    perturbed = np.stack([np.stack([_linear_responses(target, res.perturbed_images(e, j), [[2, 0][j]])[:, 0]
                                    for j in range(2)], axis=1) for e in range(2)])
    np.testing.assert_allclose(out.perturbed, perturbed, rtol=1e-12)
    np.testing.assert_allclose(out.sensitivity, clean[None] - perturbed, rtol=1e-12)   # "decrease"
    change = perturbed - clean[None]
    assert (change > 0).any() and (change < 0).any()        # both signs occur: the sign is checked
    np.testing.assert_array_equal(out.direction_taken, np.sign(change).astype(np.int8))
    assert out.direction_taken.dtype == np.int8
    norms = np.stack([np.stack([np.linalg.norm(res.perturbation(e, j).numpy().reshape(3, -1), axis=1)
                                for j in range(2)], axis=1) for e in range(2)])
    np.testing.assert_allclose(out.delta_norm, norms, rtol=1e-12)
    np.testing.assert_array_equal(out.eps, res.eps)
    assert out.eps is not res.eps and out.units is not res.units
    np.testing.assert_array_equal(out.units, [2, 0])
    assert (out.method, out.norm, out.direction) == ("transfer", res.norm, "decrease")
    np.testing.assert_array_equal(out.images, res.images)
    assert out.params == {"source": attack, "source_params": res.params}
    if attack == "pgd":
        assert out.sign_grad is None and out.deltas is res.deltas
    else:
        assert out.deltas is None and out.sign_grad is res.sign_grad
    np.testing.assert_array_equal(out.perturbation(1, 1).numpy(), res.perturbation(1, 1).numpy())
    # a source whose units the target does not have
    with pytest.raises(ValueError, match="unit"):
        transfer(res, x, Linear(n_units=2))


def test_transfer_of_raw_perturbations_clamps_them_to_the_box():
    from probelib.probes import transfer
    x, model = _images(2, seed=2), Linear(seed=3)
    d = torch.zeros_like(x)
    d[:, 0] = 0.5                                     # pushes channel 0 past 1 where x > 0.5
    d[:, 1] = -0.05
    d[:, 2] = -0.6                                    # pushes channel 2 below 0 where x < 0.6
    out = transfer(d, x, model, units=[1], direction="increase")
    applied = ((x + d).clamp(0, 1) - x)
    assert float(applied[:, 0].min()) < 0.5 and float(applied[:, 2].max()) > -0.6   # the clamps matter here
    np.testing.assert_allclose(out.deltas[0, 0], applied.numpy(), rtol=0, atol=0)
    np.testing.assert_array_equal(out.units, [1])
    expected = _linear_responses(model, x + applied, [1]) - _linear_responses(model, x, [1])
    np.testing.assert_allclose(out.sensitivity[0], expected, rtol=1e-12)
    np.testing.assert_allclose(out.delta_norm[0, :, 0], np.linalg.norm(applied.numpy().reshape(2, -1), axis=1),
                               rtol=1e-12)
    assert out.eps.shape == (1,) and np.isnan(out.eps[0])
    assert (out.norm, out.direction, out.method) == ("none", "increase", "transfer")
    assert out.params["source"] == "raw"
    np.testing.assert_array_equal(out.images, x.numpy())
    # the images take the perturbations' precision
    out32 = transfer(d.float(), x, model, units=[1])
    assert out32.images.dtype == np.float32 and out32.deltas.dtype == np.float32
    # default: every unit of the target
    np.testing.assert_array_equal(transfer(d, x, model).units, [0, 1, 2])


def test_transfer_of_raw_perturbations_checks_them():
    from probelib.probes import transfer
    x, model = _images(2), Linear()
    with pytest.raises(ValueError, match="^perturbations must be finite floating-point values$"):
        transfer(torch.zeros(x.shape, dtype=torch.int64), x, model)        # integers, all finite
    bad = torch.zeros_like(x)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="^perturbations must be finite floating-point values$"):
        transfer(bad, x, model)
    per_unit = torch.zeros((3, *x.shape), dtype=x.dtype)
    with pytest.raises(ValueError, match=r"^per-unit perturbations \(n_units, N, 3, H, W\) need the units they target$"):
        transfer(per_unit, x, model)
    with pytest.raises(ValueError, match="^3 per-unit perturbations for 2 units$"):
        transfer(per_unit, x, model, units=[0, 1])
    with pytest.raises(ValueError, match=r"perturbations must have shape \(N, 3, H, W\) = \(2, 3, 4, 4\) or "
                                         r"\(n_units, N, 3, H, W\); got \(1, 3, 4, 4\)"):
        transfer(torch.zeros((1, 3, SIDE, SIDE)), x, model)
    with pytest.raises(ValueError, match="^unknown direction 'down'; valid: 'decrease', 'increase', 'abs'$"):
        transfer(torch.zeros_like(x), x, model, direction="down")


def _bar_text(capsys, call) -> str:
    call()
    return capsys.readouterr().err


def test_probes_show_a_named_progress_bar_when_asked_and_none_otherwise(capsys, monkeypatch):
    """progress=True shows a bar named after the probe; False shows none; None shows one only
    when the work (image passes x pixels) reaches the threshold."""
    from probelib.probes import _common, fgsm, minimize, random_control, shuffled_control, transfer
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    x, model = _images(2), Linear()
    res = pgd(model, x, [0.1], steps=2, progress=False)
    calls = {"fgsm (image x unit)": lambda p: fgsm(model, x, 0.01, progress=p),
             "pgd-linf (image x unit x eps)": lambda p: pgd(model, x, 0.1, norm="linf", steps=2, progress=p),
             "transfer": lambda p: transfer(res, x, model, progress=p),
             "random control": lambda p: random_control(model, x, res, progress=p),
             "shuffled control": lambda p: shuffled_control(model, x, res, progress=p),
             "fixed effect (PGD probes)": lambda p: fixed_effect(model, x, 0.01, steps=2, max_iter=2, progress=p),
             "maximize unit 0": lambda p: maximize(model, x[0], 0, steps=2, progress=p),
             "minimize unit 1": lambda p: minimize(model, x[0], 1, steps=2, progress=p)}
    for name, call in calls.items():
        shown = _bar_text(capsys, lambda: call(True))
        assert f"\r{name}:" in shown and "\n" not in shown, name          # and cleared when done
        assert _bar_text(capsys, lambda: call(False)) == "", name
        assert _bar_text(capsys, lambda: call(None)) == "", name          # tiny work: no bar
    assert "\rmaximize unit 0:   0%|          | 0/2 " in _bar_text(capsys, lambda: calls["maximize unit 0"](True))
    # transfer's work: n_eps * n_units * N image passes of 3 * 4 * 4 pixels
    passes = 1 * 3 * 2 * D
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes)
    assert "\rtransfer:   0%|          | 0/3 " in _bar_text(capsys, lambda: transfer(res, x, model))   # budgets x units
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes + 1)
    assert _bar_text(capsys, lambda: transfer(res, x, model)) == ""


# --------------------------------------------------------------------------------- PGD's random start

def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + k) for k in range(n)]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_row_k_is_drawn_from_generator_k_in_float64(norm):
    from probelib.probes.pgd import _random_start
    x0 = torch.full((3, 3, SIDE, SIDE), 0.5, dtype=torch.float32)
    eps = torch.tensor([0.1, 0.2, 0.05], dtype=torch.float32)
    got = _random_start(x0, eps, norm, _gens(3, seed=7))
    assert got.dtype == x0.dtype and got.shape == x0.shape
    for k, g in enumerate(_gens(3, seed=7)):
        if norm == "linf":
            row = 2.0 * torch.rand((3, SIDE, SIDE), generator=g, dtype=torch.float64) - 1.0
        else:
            d = torch.randn((3, SIDE, SIDE), generator=g, dtype=torch.float64)
            row = d * torch.rand((), generator=g, dtype=torch.float64) / d.norm()
        torch.testing.assert_close(got[k], (row.float() * eps[k]), rtol=1e-6, atol=1e-7)


def test_random_start_fills_the_ball_uniformly():
    from probelib.probes.pgd import _random_start
    n = 2000
    x0 = torch.full((n, 3, 1, 1), 0.5, dtype=torch.float64)     # 3 pixels: short Gaussian draws occur
    eps = torch.full((n,), 0.2, dtype=torch.float64)
    linf = _random_start(x0, eps, "linf", _gens(n))
    assert float(linf.abs().max()) <= 0.2 and float(linf.max()) > 0.199 and float(linf.min()) < -0.199
    assert abs(float(linf.mean())) < 0.005 and float(linf.var()) == pytest.approx(0.2 ** 2 / 3, rel=0.05)
    l2 = _random_start(x0, eps, "l2", _gens(n))
    radius = l2.flatten(1).norm(dim=1) / 0.2                        # uniform in [0, 1]
    assert float(radius.max()) <= 1 + 1e-12 and float(radius.max()) > 0.99
    assert float(radius.mean()) == pytest.approx(0.5, abs=0.02)
    assert float((radius < 0.25).double().mean()) == pytest.approx(0.25, abs=0.03)
    direction = l2.flatten(1) / l2.flatten(1).norm(dim=1, keepdim=True)
    assert float(direction.mean(0).abs().max()) < 0.05               # isotropic
    # near the box's edge the start is projected into [0, 1]
    edge = _random_start(torch.ones((4, 3, SIDE, SIDE)), torch.full((4,), 0.5), "linf", _gens(4))
    assert float((torch.ones(4, 3, SIDE, SIDE) + edge).max()) <= 1.0 and float(edge.min()) < -0.4


# --------------------------------------------------------------------------------- optimisation

def test_total_variation_is_the_mean_absolute_neighbour_difference():
    x = _images(3, seed=5)
    a = x.numpy()
    expected = np.abs(np.diff(a, axis=2)).mean(axis=(1, 2, 3)) + np.abs(np.diff(a, axis=3)).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(total_variation(x).numpy(), expected, rtol=1e-12)
    # horizontal stripes vary only vertically: TV = mean vertical difference
    stripes = torch.zeros((1, 3, 4, 6), dtype=torch.float64)
    stripes[..., ::2, :] = 1.0
    assert total_variation(stripes).tolist() == [1.0]
    assert total_variation(stripes.transpose(2, 3)).tolist() == [1.0]


def test_minimize_is_maximize_of_the_negated_objective():
    model, x = Linear(), _images(1, seed=6)[0]
    neg = lambda r: -r[:, 1]  # noqa: E731
    kw = {"steps": 4, "step_size": 0.03, "eps": 0.08, "norm": "linf", "jitter": 1, "smoothness": 0.2,
          "record_every": 3, "seed": 4}                     # (a step other than the default 2.5 eps / steps)
    from probelib.probes import minimize
    lo, hi = minimize(model, x, 1, **kw), maximize(model, x, neg, **kw)
    np.testing.assert_array_equal(lo.images, hi.images)
    np.testing.assert_array_equal(lo.objective, -hi.objective)
    assert lo.steps.tolist() == [0, 3, 4] and lo.mode == "minimize" and lo.params == hi.params
    assert np.abs(lo.images[-1] - lo.images[0]).max() <= 0.08 + 1e-6
    # the defaults: 100 steps of 0.01 * sqrt(3 H W) (L2, the box only), a frame per step, seed 0
    lo, hi = minimize(model, x, 1), maximize(model, x, neg)
    assert len(lo.steps) == 101 and lo.params == {**hi.params}
    assert lo.params == {"steps": 100, "step_size": 0.01 * math.sqrt(D), "eps": None, "norm": "l2", "jitter": 0,
                         "smoothness": 0.0, "record_every": 1, "seed": 0}
    np.testing.assert_array_equal(lo.images, hi.images)
    j0 = minimize(model, x, 1, steps=3, jitter=2)
    np.testing.assert_array_equal(j0.images, maximize(model, x, neg, steps=3, jitter=2, seed=0).images)


def test_objectives_name_themselves_and_refuse_bad_values():
    import functools
    from probelib.probes import minimize
    model, x = Linear(), _images(1, seed=6)[0]

    def second(r):
        return r[:, 1]

    assert maximize(model, x, second, steps=1).objective_name == "second"
    unnamed = functools.partial(lambda r, u: r[:, u], u=1)
    assert maximize(model, x, unnamed, steps=1).objective_name == "custom objective"
    assert maximize(model, x, 2, steps=1).objective_name == "unit 2"
    assert maximize(model, x, np.array([0, 2], dtype=np.uint8), steps=1).objective_name == "mean of units [0, 2]"
    assert minimize(model, x, np.ones(3), steps=1).objective_name == "weighted sum of units"
    with pytest.raises(ValueError, match=r"^a callable objective must map responses \(B, V\) to a tensor of B = 1 values$"):
        maximize(model, x, lambda r: r, steps=1)
    with pytest.raises(ValueError, match="a callable objective must map"):
        maximize(model, x, lambda r: [0.0], steps=1)                    # not a tensor
    for bad in (np.ones(4), np.array([1.0, np.nan, 1.0]), "unit"):
        with pytest.raises(ValueError, match="unit must be an int, integer indices, a float weight vector of length 3"):
            maximize(model, x, bad, steps=1)


def test_evaluate_transfer_keeps_its_settings_and_seeds_its_controls(capsys, monkeypatch):
    from probelib.probes.transfer import evaluate_transfer
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    models = {"a": Linear(2, seed=1), "b": Linear(2, seed=2)}
    x = _images(3, seed=7).float()
    g = torch.Generator().manual_seed(0)
    deltas = {"b": (0.05 * torch.randn((2, *x.shape), generator=g)).numpy()}
    from probelib.probes import _common
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", 1)                # any work would show a bar
    res = evaluate_transfer(models, x.numpy(), deltas, units=[1, 0], direction="decrease", roi="FFA")
    assert capsys.readouterr().err == ""                                    # never a progress bar
    assert evaluate_transfer(models, x, deltas, units=[1, 0]).roi == ""      # default label
    # images and probes in float64 are evaluated in float32, as float32 ones are
    wide = evaluate_transfer(models, x.double().numpy(), {"b": deltas["b"].astype(np.float64)}, units=[1, 0],
                             direction="decrease", roi="FFA")
    np.testing.assert_array_equal(wide.change, res.change)
    np.testing.assert_array_equal(wide.probe_norm, res.probe_norm)
    np.testing.assert_array_equal(wide.control, res.control)               # controls seeded by the same content
    # evaluated in float32: a model without parameters sees the images rounded to float32
    x64 = _images(3, seed=7)                                                # float64 values, not float32 ones
    pixels = evaluate_transfer({"p": nn.Flatten()}, x64.numpy(), {"p": np.zeros((2, *x.shape))}, units=[0, 5])
    np.testing.assert_array_equal(pixels.clean[0], x64.float().flatten(1)[:, [0, 5]].numpy())
    assert not np.array_equal(pixels.clean[0], x64.flatten(1)[:, [0, 5]].numpy())
    # one unit given as an int
    assert evaluate_transfer(models, x, {"b": deltas["b"][:1]}, units=1).units.tolist() == [1]
    # the controls follow the direction: "increase" gives the negated "decrease" controls
    up = evaluate_transfer(models, x, deltas, units=[1, 0], direction="increase")
    np.testing.assert_allclose(up.control, -res.control)
    np.testing.assert_allclose(up.change, -res.change)
    assert (res.direction, res.roi, res.names, res.sources) == ("decrease", "FFA", ["a", "b"], ["b"])
    clean = np.stack([_linear_responses(m, x.double(), [1, 0]) for m in models.values()])
    np.testing.assert_allclose(res.clean, clean, rtol=1e-6)
    np.testing.assert_allclose(res.change, -res.signed_change)             # "decrease": clean - perturbed
    assert (res.signed_change > 0).any() and (res.signed_change < 0).any()
    applied = np.clip(x.numpy()[None] + deltas["b"], 0, 1) - x.numpy()[None]
    np.testing.assert_allclose(res.probe_norm[0], np.linalg.norm(applied.reshape(2, 3, -1).astype(np.float64),
                                                                 axis=2).T, rtol=1e-12)
    # the controls are seeded: the same seed gives the same control, another seed another one
    again = evaluate_transfer(models, x, deltas, units=[1, 0], direction="decrease")
    other = evaluate_transfer(models, x, deltas, units=[1, 0], direction="decrease", seed=1)
    np.testing.assert_array_equal(again.control, res.control)
    assert not np.allclose(other.control, res.control)
    np.testing.assert_allclose(evaluate_transfer(models, x, deltas, units=[1, 0], direction="decrease",
                                                 seed=1).control, other.control)
    with pytest.raises(ValueError, match=r"^deltas must map source names among the models \['a', 'b'\]; "
                                         r"unknown: \['z'\]$"):
        evaluate_transfer(models, x, {"z": deltas["b"]}, units=[1, 0])
    with pytest.raises(ValueError, match=r"unknown: \[\]$"):
        evaluate_transfer(models, x, {}, units=[1, 0])
    with pytest.raises(ValueError, match="^unknown direction 'down'; valid: 'decrease', 'increase', 'abs'$"):
        evaluate_transfer(models, x, deltas, units=[1, 0], direction="down")


def test_transfer_errors_name_the_problem():
    from probelib.probes import transfer
    x, model = _images(2), Linear()
    kept = pgd(model, x, 0.1, steps=2)
    with pytest.raises(ValueError, match="^units are taken from the ProbeResult; pass units only with raw "
                                         "perturbations$"):
        transfer(kept, x, model, units=[0])
    with pytest.raises(ValueError, match=r"^transfer needs the probes' perturbations; rerun the attack with "
                                         r"store_perturbations=True$"):
        transfer(pgd(model, x, 0.1, steps=2, store_perturbations=False), x, model)
    for targets in ({}, {"a": "not a model"}, [model]):
        with pytest.raises(ValueError, match="^target_models must be an nn.Module or a non-empty mapping "
                                             "name -> nn.Module$"):
            transfer(kept, x, targets)
    with pytest.raises(ValueError, match="^batch_size must be an integer >= 1; got 0$"):
        transfer(kept, x, model, batch_size=0)
    with pytest.raises(ValueError, match=r"^this ProbeResult does not keep its perturbations; rerun the attack "
                                         r"with store_perturbations=True$"):
        probe_deltas(pgd(model, x, 0.1, steps=2, store_perturbations=False))
    fe = fixed_effect(model, x, 0.05, units=[1], eps_max=1.0, steps=2, store_perturbations=False)
    with pytest.raises(ValueError, match=r"^this FixedEffectResult does not keep its probes; rerun with "
                                         r"store_perturbations=True$"):
        probe_deltas(fe)
    from probelib.probes.transfer import evaluate_transfer
    with pytest.raises(ValueError, match=r"^deltas\['a'\] must have shape \(U, N, 3, H, W\) = "
                                         r"\(1, 2, 3, 4, 4\); got \(2, 2, 3, 4, 4\)$"):
        evaluate_transfer({"a": model}, x, {"a": np.zeros((2, *x.shape))}, units=[0])


def test_perturbation_indices_follow_python_ranges_and_errors_name_them():
    res = _probe()                                     # 3 budgets, 3 units
    np.testing.assert_array_equal(res.perturbation(-3, -3).numpy(), res.perturbation(0, 0).numpy())
    np.testing.assert_array_equal(res.perturbation(2, 2).numpy(), res.perturbation(-1, -1).numpy())
    for e, j in ((3, 0), (-4, 0), (0, 3), (0, -4)):
        with pytest.raises(IndexError, match=rf"^\(eps_index, unit_index\) = \({e}, {j}\) out of range for 3 "
                                             rf"budgets and 3 units$"):
            res.perturbation(e, j)
    with pytest.raises(ValueError, match=r"^this result does not keep its perturbations \(too large or "
                                         r"store_perturbations=False\); rerun with store_perturbations=True$"):
        _probe(deltas=False).perturbation(0, 0)
    fe = fixed_effect(Linear(), _images(2), 0.05, units=[1], eps_max=1.0, steps=2, store_perturbations=False)
    with pytest.raises(ValueError, match="^this result does not keep its perturbations; rerun with "
                                         "store_perturbations=True$"):
        fe.perturbation(0)


def test_fgsm_leaves_the_pixels_a_unit_does_not_see_unchanged():
    from probelib.probes import fgsm
    model = Linear()
    with torch.no_grad():
        model.weight[:, : D // 2] = 0.0                  # no unit looks at the first half of the pixels
    x = _images(2)
    res = fgsm(model, x, [0.01, 0.03], direction="abs")
    assert (res.sign_grad.reshape(3, 2, -1)[:, :, : D // 2] == 0).all()
    for e in (0, 1):
        for j in range(3):
            d = res.perturbation(e, j).numpy().reshape(2, -1)
            assert (d[:, : D // 2] == 0).all() and np.allclose(np.abs(d[:, D // 2:]), res.eps[e])
    # the evaluated probes too: their norm counts only the pixels the units see
    np.testing.assert_allclose(res.delta_norm, np.asarray(res.eps)[:, None, None] * np.sqrt(D // 2)
                               * np.ones((1, 2, 3)), rtol=1e-6)


# --------------------------------------------------------------------------------- FGSM details

class Bowl(nn.Module):
    """``r(x) = (mean(x) - a)^2``: a step along the gradient sign can overshoot the bottom."""

    def __init__(self, a: float):
        super().__init__()
        self.a = a

    def forward(self, x):
        return ((x.flatten(1).mean(1, keepdim=True) - self.a) ** 2).double()


def test_fgsm_batches_of_any_size_give_the_same_result():
    """Batches of 1, 2, 3 (not dividing N = 5) and 64 images; on a linear model "abs" ties exactly
    (|up| = |down|), so its taken direction is left to rounding: only its sensitivity is compared."""
    from probelib.probes import fgsm
    model, x = Linear(), _images(5, seed=8)
    for direction, names in (("decrease", ("sensitivity", "clean", "perturbed", "delta_norm")),
                             ("abs", ("sensitivity", "clean"))):
        ref = fgsm(model, x, [0.01, 0.02], direction=direction, batch_size=64)
        for b in (1, 2, 3):
            res = fgsm(model, x, [0.01, 0.02], direction=direction, batch_size=b)
            for name in names:                                   # (matmul sums by batch: 1e-15)
                np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=1e-12,
                                           err_msg=f"{name}, {direction}, batch {b}")
            np.testing.assert_array_equal(res.sign_grad, ref.sign_grad)
            assert res.params == {"batch_size": b}
    assert fgsm(model, x, 0.01).params == {"batch_size": 32}


def test_fgsm_decrease_can_overshoot_and_then_reports_a_negative_sensitivity():
    from probelib.probes import fgsm
    x = torch.full((1, 3, SIDE, SIDE), 0.5, dtype=torch.float64)
    res = fgsm(Bowl(0.49), x, 0.05)          # the step moves mean(x) to 0.45: past the bottom at 0.49
    expected = (0.5 - 0.49) ** 2 - (0.45 - 0.49) ** 2
    assert res.sensitivity[0, 0, 0] == pytest.approx(expected) and expected < 0
    assert res.change[0, 0, 0] > 0                                # the response went up


def test_fgsm_checks_the_clean_responses_and_names_its_settings():
    from probelib.probes import fgsm

    class NaNColumn(nn.Module):
        def forward(self, x):
            r = x.flatten(1)[:, :3].clone()
            r[:, 1] = float("nan")
            return r

    with pytest.raises(ValueError, match=r"^clean responses contain 2 NaN/inf values in columns \[1\]$"):
        fgsm(NaNColumn(), _images(2), 0.01)
    with pytest.raises(ValueError, match="^batch_size must be an integer >= 1; got 0$"):
        fgsm(Linear(), _images(2), 0.01, batch_size=0)


def test_fgsm_keeps_its_gradient_signs_up_to_the_store_limit(monkeypatch):
    from probelib.probes import _common, fgsm
    model, x = Linear(), _images(2)
    n_bytes = 3 * 2 * D                                           # int8 signs: units x images x pixels
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes)
    assert fgsm(model, x, 0.01).sign_grad is not None
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes - 1)
    with pytest.warns(UserWarning, match=r"^not keeping the FGSM gradient signs \(0.0 MiB > STORE_LIMIT_BYTES"):
        assert fgsm(model, x, 0.01).sign_grad is None


# --------------------------------------------------------------------------------- controls

def _directions(res: ProbeResult, e: int, j: int) -> np.ndarray:
    d = res.perturbation(e, j).numpy().reshape(res.images.shape[0], -1)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_random_control_draws_are_named_by_seed_image_unit_and_budget():
    """One draw per (seed, image content, unit, budget): a unit, budget or image of its own gets
    another direction; the same ones, grouped otherwise, the same direction."""
    from probelib.probes import random_control
    model, x = Linear(), _images(3, seed=9)
    probe = pgd(model, x, [0.05, 0.1], norm="l2", steps=2, units=[0, 2])
    ctrl = random_control(model, x, probe, seed=3)
    a, b = _directions(ctrl, 0, 0), _directions(ctrl, 0, 1)
    assert np.abs((a * b).sum(1)).max() < 0.9                          # units differ
    assert np.abs((a * _directions(ctrl, 1, 0)).sum(1)).max() < 0.9      # budgets differ
    assert np.abs(a[0] @ a[1]) < 0.9                                     # images differ
    # unit 2 alone, budget 0.1 alone, images 2 and 0 alone: the same draws
    alone = random_control(model, x[[2, 0]], pgd(model, x[[2, 0]], [0.1], norm="l2", steps=2, units=[2]), seed=3)
    np.testing.assert_allclose(_directions(alone, 0, 0), _directions(ctrl, 1, 1)[[2, 0]], rtol=1e-6)
    # the seed: 0 by default, another seed another draw
    np.testing.assert_array_equal(random_control(model, x, probe).deltas, random_control(model, x, probe, seed=0).deltas)
    assert np.abs((_directions(random_control(model, x, probe, seed=4), 0, 0) * a).sum(1)).max() < 0.9


def test_shuffled_control_draws_are_named_like_the_random_ones():
    from probelib.probes import shuffled_control
    model, x = Linear(), _images(3, seed=9)
    probe = pgd(model, x, [0.05, 0.1], norm="linf", steps=2, units=[0, 2])
    ctrl = shuffled_control(model, x, probe, seed=3)
    alone = shuffled_control(model, x[[2, 0]], pgd(model, x[[2, 0]], [0.1], norm="linf", steps=2, units=[2]), seed=3)
    np.testing.assert_allclose(alone.deltas[0, 0], ctrl.deltas[1, 1][[2, 0]], rtol=1e-6)
    np.testing.assert_array_equal(shuffled_control(model, x, probe).deltas, shuffled_control(model, x, probe, seed=0).deltas)
    assert not np.array_equal(shuffled_control(model, x, probe, seed=1).deltas, ctrl.deltas)
    with pytest.raises(ValueError, match=r"^shuffled_control needs the probes' perturbations; rerun the attack "
                                         r"with store_perturbations=True$"):
        shuffled_control(model, x, pgd(model, x, 0.1, steps=2, store_perturbations=False))


def test_random_linf_control_is_a_seeded_sign_pattern_of_the_budget():
    from probelib.probes import random_control
    model, x = Linear(), _images(2, seed=10)
    probe = pgd(model, x, [0.01, 0.03], norm="linf", steps=2)
    ctrl = random_control(model, x, probe, seed=2)
    for e, eps in enumerate((0.01, 0.03)):
        np.testing.assert_allclose(np.abs(ctrl.deltas[e]), eps, rtol=1e-6)   # no clamping at [0.3, 0.7]
        signs = np.sign(ctrl.deltas[e])
        assert 0.3 < (signs > 0).mean() < 0.7
    np.testing.assert_array_equal(random_control(model, x, probe, seed=2).deltas, ctrl.deltas)


def test_random_l2_control_has_the_probes_size_even_for_one_pixel_images():
    from probelib.probes import random_control
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2)).double()
    x = torch.full((12, 3, 1, 1), 0.5, dtype=torch.float64) + 0.01 * torch.arange(12.0, dtype=torch.float64).view(-1, 1, 1, 1)
    probe = pgd(model, x, 0.05, norm="l2", steps=2)
    ctrl = random_control(model, x, probe)
    np.testing.assert_allclose(ctrl.delta_norm, probe.delta_norm, rtol=1e-6)


def test_controls_report_their_fields_and_settings(monkeypatch):
    from probelib.probes import _common, random_control, shuffled_control
    model, x = Linear(), _images(4, seed=11)
    probe = pgd(model, x, [0.05, 0.1], norm="l2", steps=2, units=[2, 0], direction="decrease")
    for control in (random_control, shuffled_control):
        res = control(model, x, probe, seed=5, batch_size=3)
        change = res.perturbed - res.clean[None]
        assert (change > 0).any() and (change < 0).any()
        np.testing.assert_array_equal(res.direction_taken, np.sign(change).astype(np.int8))
        assert res.direction_taken.dtype == np.int8
        np.testing.assert_array_equal(res.eps, probe.eps)
        assert res.eps is not probe.eps
        np.testing.assert_allclose(res.sensitivity, -change)
        assert res.params == {"seed": 5, "source": "pgd", "batch_size": 3}
        assert control(model, x, probe, store_perturbations=False).deltas is None
        with pytest.raises(ValueError, match="^batch_size must be an integer >= 1; got 0$"):
            control(model, x, probe, batch_size=0)
        with pytest.raises(ValueError, match="unit"):
            control(Linear(n_units=2), x, probe)
        # stored up to the limit: budgets x units x images x pixels x bytes per value
        n_bytes = 2 * 2 * 4 * D * 8
        monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes)
        assert control(model, x, probe).deltas is not None
        monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes - 1)
        with pytest.warns(UserWarning, match="^not keeping the (random|shuffled) control perturbations"):
            assert control(model, x, probe).deltas is None
        monkeypatch.undo()


def test_optimisation_refuses_images_it_cannot_use():
    model = Linear()
    with pytest.raises(ValueError, match=r"^image must be a torch.Tensor \(3, H, W\) or \(1, 3, H, W\); got ndarray$"):
        maximize(model, np.zeros((3, SIDE, SIDE)), 0, steps=1)
    with pytest.raises(ValueError, match=r"^image\b"):             # named "image", not "images"
        maximize(model, torch.full((3, SIDE, SIDE), 2.0, dtype=torch.float64), 0, steps=1)


# --------------------------------------------------------------------------------- PGD details

def test_pgd_defaults_and_settings():
    model, x = Linear(), _images(2)
    res = pgd(model, x, 0.1)
    assert res.params == {"steps": 10, "step_size": None, "random_start": False, "restarts": 1, "seed": 0,
                          "batch_size": 32}
    assert res.direction_taken.dtype == np.int8
    ten = pgd(model, x, 0.1, steps=10, norm="l2", direction="decrease")
    np.testing.assert_array_equal(res.deltas, ten.deltas)
    assert not np.array_equal(pgd(model, x, 0.1, steps=11, step_size=0.01).deltas,
                              pgd(model, x, 0.1, step_size=0.01).deltas)   # (eleven steps of 0.01 go further)
    seeded = pgd(model, x, 0.1, steps=2, random_start=True)
    np.testing.assert_array_equal(seeded.deltas, pgd(model, x, 0.1, steps=2, random_start=True, seed=0).deltas)
    assert not np.array_equal(seeded.deltas, pgd(model, x, 0.1, steps=2, random_start=True, seed=1).deltas)


def test_pgd_progress_counts_its_probes_and_shows_by_the_amount_of_work(capsys, monkeypatch):
    from probelib.probes import _common
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    model, x = Linear(), _images(2)
    kw = {"norm": "l2", "steps": 3, "direction": "abs", "random_start": True, "restarts": 2}
    pgd(model, x, [0.1], progress=True, **kw)
    assert "\rpgd-l2 (image x unit x eps):   0%|          | 0/6 " in capsys.readouterr().err   # 2 images x 3 units
    # work: budgets x rows x directions x restarts x (steps + 1) image passes of D pixels
    passes = 1 * 6 * 2 * 2 * 4
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D)
    pgd(model, x, [0.1], **kw)
    assert "pgd-l2" in capsys.readouterr().err
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D + 1)
    pgd(model, x, [0.1], **kw)
    assert capsys.readouterr().err == ""


def test_pgd_keeps_its_perturbations_up_to_the_store_limit(monkeypatch):
    from probelib.probes import _common
    model, x = Linear(), _images(2)
    n_bytes = 2 * 3 * 2 * D * 8                                    # budgets x units x images x pixels x float64
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes)
    assert pgd(model, x, [0.1, 0.2], steps=2).deltas is not None
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes - 1)
    with pytest.warns(UserWarning, match=r"^not keeping the PGD perturbations \(0.0 MiB > STORE_LIMIT_BYTES"):
        assert pgd(model, x, [0.1, 0.2], steps=2).deltas is None


def test_pgd_random_start_of_a_row_is_named_by_seed_image_unit_restart_and_direction():
    """The start of row (image, unit) in restart r pushing the response with sign s is drawn from
    the generator named (seed, image content key, unit, r, s + 1): with steps of size 0 the kept
    perturbation is that start wherever it beats the clean image."""
    from probelib.probes._common import _draw_generator, _image_keys
    from probelib.probes.pgd import _random_start
    model, x = Linear(), _images(2, seed=12)
    keys = _image_keys(x.numpy())
    for direction, sign in (("increase", 1), ("decrease", -1)):
        for norm in ("linf", "l2"):
            res = pgd(model, x, 0.1, norm=norm, steps=1, step_size=0.0, random_start=True, direction=direction,
                      seed=7, restarts=2)
            kept = 0
            for j, unit in enumerate(res.units):
                for i in range(2):
                    got = res.deltas[0, j, i]
                    if not np.any(got):
                        continue                                     # no start beat the clean image
                    starts = [_random_start(x[i:i + 1], torch.tensor([0.1], dtype=x.dtype), norm,
                                            [_draw_generator(7, keys[i], unit, r, sign + 1)])[0].numpy()
                              for r in range(2)]
                    assert any(np.allclose(got, s, rtol=0, atol=1e-12) for s in starts), (direction, norm, i, j)
                    kept += 1
            assert kept >= 2


def test_pgd_restarts_after_the_first_start_at_random_points():
    model, x = Linear(), _images(3, seed=13)
    one = pgd(model, x, 0.1, norm="linf", steps=1, step_size=0.01)
    two = pgd(model, x, 0.1, norm="linf", steps=1, step_size=0.01, restarts=2)
    assert np.all(two.sensitivity >= one.sensitivity - 1e-12)
    assert np.any(two.sensitivity > one.sensitivity + 1e-6)


def test_pgd_takes_exactly_steps_steps():
    model, x = Linear(), _images(2)
    for steps in (1, 2, 5):
        res = pgd(model, x, 1.0, norm="l2", steps=steps, step_size=0.01)
        np.testing.assert_allclose(res.delta_norm, 0.01 * steps, rtol=1e-9)


def test_pgd_default_step_is_two_and_a_half_budgets_over_steps_on_an_overshooting_model():
    """Bowl with its bottom 0.02 below the image's mean: L-inf steps of 2.5 * 0.1 / 10 = 0.025 move
    the mean to 0.475 (0.005 past the bottom); steps of another size land elsewhere."""
    x = torch.full((1, 3, SIDE, SIDE), 0.5, dtype=torch.float64)
    res = pgd(Bowl(0.48), x, 0.1, norm="linf", steps=10)
    assert res.sensitivity[0, 0, 0] == pytest.approx(0.02 ** 2 - 0.005 ** 2, rel=1e-9)


class _CountingLinear(Linear):
    """Counts forward passes and the backward passes that reach the input."""

    def __init__(self):
        super().__init__()
        self.forwards = self.backwards = 0

    def forward(self, x):
        self.forwards += 1
        if x.requires_grad:
            x.register_hook(lambda g: setattr(self, "backwards", self.backwards + 1))
        return super().forward(x)


def test_pgd_spends_one_forward_per_iterate_and_one_backward_per_step():
    """From the image: the clean forward's gradient is the first step (1 + steps forwards, steps
    backwards). From a random start: the clean forward needs no gradient (1 + steps + 1 forwards)."""
    model, x = _CountingLinear(), _images(2)
    pgd(model, x, 0.1, steps=4, units=[0], batch_size=64)
    assert (model.forwards - 1, model.backwards) == (1 + 4, 4)     # (one forward counts the outputs)
    model.forwards = model.backwards = 0
    pgd(model, x, 0.1, steps=4, units=[0], batch_size=64, random_start=True)
    assert (model.forwards - 1, model.backwards) == (1 + 4 + 1, 4)


def test_pgd_names_non_finite_responses_to_its_iterates():
    class NaNAway(nn.Module):
        def forward(self, x):
            r = x.flatten(1)[:, :2].clone()
            r[(x.flatten(1) - 0.5).abs().amax(1) > 1e-9, 1] = float("nan")   # NaN once x moved
            return r

    x = torch.full((2, 3, SIDE, SIDE), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^responses to PGD iterates contain 2 NaN/inf values$"):
        pgd(NaNAway(), x, 0.1, steps=2, units=[1])


class _Sum(nn.Module):
    """``r(x) = sum of pixels + 100`` (float64): changes are exact multiples of the budget."""

    def forward(self, x):
        return x.double().flatten(1).sum(1, keepdim=True) + 100.0


@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_abs_keeps_the_larger_change_and_on_an_exact_tie_the_decrease(attack):
    """Images at 0.1 (down is cut by the box: up wins), 0.9 (up is cut: down wins) and 0.5 (an
    exact tie with eps = 1/4: the decrease, paper 1's direction, is kept)."""
    from probelib.probes import fgsm
    x = torch.stack([torch.full((3, SIDE, SIDE), v, dtype=torch.float64) for v in (0.125, 0.875, 0.5)])
    probe = (lambda: fgsm(_Sum(), x, 0.25, direction="abs")) if attack == "fgsm" else (
        lambda: pgd(_Sum(), x, 0.25, norm="linf", steps=3, direction="abs"))
    res = probe()
    assert res.direction_taken[0, :, 0].tolist() == [1, -1, -1]
    assert res.sensitivity[0, :, 0].tolist() == [0.25 * D, 0.25 * D, 0.25 * D]
    assert res.change[0, :, 0].tolist() == [0.25 * D, -0.25 * D, -0.25 * D]
    # the norm of the kept probe: 0.25 per pixel each time (the other direction was cut to 0.125)
    np.testing.assert_allclose(res.delta_norm[0, :, 0], 0.25 * math.sqrt(D), rtol=1e-12)
    assert res.direction_taken.dtype == np.int8
    for direction in ("decrease", "increase"):
        assert (fgsm(_Sum(), x, 0.25, direction=direction).direction_taken.dtype,
                pgd(_Sum(), x, 0.25, direction=direction, steps=2).direction_taken.dtype) == (np.int8, np.int8)


def test_pgd_argument_errors_name_the_argument():
    model, x = Linear(), _images(2)
    cases = [({"norm": "l1"}, "^unknown norm 'l1'; valid: 'l2', 'linf'$"),
             ({"direction": "up"}, "^unknown direction 'up'; valid: 'decrease', 'increase', 'abs'$"),
             ({"steps": 0}, "^steps must be an integer >= 1; got 0$"),
             ({"restarts": 0}, "^restarts must be an integer >= 1; got 0$"),
             ({"batch_size": 0}, "^batch_size must be an integer >= 1; got 0$"),
             ({"step_size": -1.0}, r"^step_size must be a finite number >= 0; got -1.0$")]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            pgd(model, x, 0.1, **kw)

    class NaNClean(nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2), float("nan"), dtype=x.dtype) + x.flatten(1)[:, :2]

    with pytest.raises(ValueError, match="^clean responses contain 2 NaN/inf values$"):
        pgd(NaNClean(), x, 0.1, units=[1])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_leaves_the_pixels_a_unit_does_not_see_unchanged(norm):
    model = Linear()
    with torch.no_grad():
        model.weight[:, : D // 2] = 0.0
    res = pgd(model, _images(2), [0.02, 0.05], norm=norm, steps=3)
    d = res.deltas.reshape(2, 3, 2, -1)
    assert (d[..., : D // 2] == 0).all() and (np.abs(d[..., D // 2:]) > 0).all()


# --------------------------------------------------------------------------------- optimisation details

def test_optimisation_step_sizes_and_their_defaults():
    model, x = Linear(), _images(1, seed=14)[0]
    assert maximize(model, x, 0, steps=4, eps=0.1).params["step_size"] == 2.5 * 0.1 / 4
    assert maximize(model, x, 0, steps=1, eps=0.1).params["step_size"] == 2.5 * 0.1
    assert maximize(model, x, 0, steps=0, eps=0.1).params["step_size"] == 2.5 * 0.1     # (no step taken)
    assert maximize(model, x, 0, steps=2, norm="linf").params["step_size"] == 2 / 255
    assert maximize(model, x, 0, steps=2, step_size=0.3).params["step_size"] == 0.3
    # an L-inf step moves every pixel the unit sees by the step; the responses follow exactly (float64)
    res = maximize(model, x, 0, steps=1, norm="linf", step_size=0.1)
    w = model.weight.detach()[0]
    moved = x + 0.1 * torch.sign(w).view(x.shape)
    np.testing.assert_allclose(res.images[1], moved.float().numpy(), rtol=0, atol=1e-7)
    with torch.no_grad():
        expected = float(model(moved[None])[0, 0])
    assert res.responses[1, 0] == pytest.approx(expected, rel=1e-15, abs=1e-13)
    # a budget of 0.1 cuts a step of 1 to exactly 0.1 per pixel
    cut = maximize(model, x, 0, steps=1, norm="linf", step_size=1.0, eps=0.1)
    assert cut.responses[1, 0] == pytest.approx(expected, rel=1e-15, abs=1e-13)
    # zero steps: the start image only; a (1, 3, H, W) image is the same image
    assert len(maximize(model, x, 0, steps=0).images) == 1
    np.testing.assert_array_equal(maximize(model, x[None], 0, steps=3).images, maximize(model, x, 0, steps=3).images)


def test_optimisation_argument_errors_name_the_argument():
    model, x = Linear(), _images(1)[0]
    cases = [({"steps": -1}, "^steps must be an integer >= 0; got -1$"),
             ({"record_every": 0}, "^record_every must be an integer >= 1; got 0$"),
             ({"jitter": -1}, "^jitter must be an integer >= 0; got -1$"),
             ({"smoothness": -1.0}, "^smoothness must be"),
             ({"step_size": -1.0}, "^step_size must be"),
             ({"norm": "l1"}, "^unknown norm 'l1'; valid: 'l2', 'linf'$")]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            maximize(model, x, 0, **{"steps": 2, **kw})
    with pytest.raises(ValueError, match="^optimise one image at a time; got a batch of 2$"):
        maximize(model, _images(2), 0, steps=2)

    class NaNAfterAStep(nn.Module):
        def forward(self, x):
            r = x.flatten(1)[:, :2] * 1.0
            return torch.where((x.flatten(1)[:, :2] - 0.5).abs() > 0.3, float("nan"), r)

    with pytest.raises(ValueError, match="^responses during optimisation contain"):
        maximize(NaNAfterAStep(), torch.full((3, SIDE, SIDE), 0.5, dtype=torch.float64) + 0.1, 0,
                 steps=3, step_size=1.0, norm="linf")


class _CountingForwards(Linear):
    def __init__(self):
        super().__init__()
        self.forwards = 0

    def forward(self, x):
        self.forwards += 1
        return super().forward(x)


def test_optimisation_jitter_rolls_by_seeded_shifts_within_the_jitter(monkeypatch):
    """Step t rolls the image by the t-th draw of randint(-jitter, jitter + 1, (2,)) from a generator
    seeded with ``seed``, along H and W; without jitter nothing is rolled and each frame costs no
    extra forward pass."""
    calls = []
    roll = torch.roll
    monkeypatch.setattr(torch, "roll", lambda t, shifts, dims: calls.append((tuple(shifts), tuple(dims))) or roll(t, shifts, dims))
    model, x = _CountingForwards(), _images(1, seed=15)[0]
    maximize(model, x, 0, steps=3)
    assert calls == [] and model.forwards == 1 + 4                  # (one forward counts the outputs)
    res = maximize(model, x, 0, steps=40, jitter=2, seed=6)
    gen = torch.Generator().manual_seed(6)
    expected = [tuple(int(v) for v in torch.randint(-2, 3, (2,), generator=gen)) for _ in range(40)]
    assert [c[0] for c in calls] == expected and all(c[1] == (2, 3) for c in calls)
    assert {s for pair in expected for s in pair} == {-2, -1, 0, 1, 2}
    assert len(res.images) == 41


# --------------------------------------------------------------------------------- shared machinery

def test_random_draws_are_fixed_functions_of_their_names():
    """The draws of random starts and controls are part of what a result means (a cached result must
    be reproducible by the next version): pinned values; seeds and name parts are read modulo 2**64."""
    from probelib.probes._common import _draw_generator
    draw = lambda *name: torch.rand(3, generator=_draw_generator(*name), dtype=torch.float64).tolist()  # noqa: E731
    assert draw(5, 7, 11) == [0.3218172252690895, 0.18207900107218278, 0.9686248458442488]
    assert draw(-1, 2**63 + 5) == draw(2**64 - 1, 2**63 + 5) == [0.7338873475624937, 0.13578772548535234,
                                                                   0.8664721289864215]
    assert draw(5, 7, 11 + 2**64) == draw(5, 7, 11) and draw(5 + 2**64, 7, 11) == draw(5, 7, 11)
    # an image is named by its content: 8 bytes of BLAKE2b, little-endian, shifted right by 2
    from probelib.probes._common import _image_keys
    assert _image_keys(np.zeros((1, 3, 2, 2), np.float32)).tolist() == [1557497530368045568]
    assert _image_keys(np.linspace(0, 1, 24).reshape(2, 3, 2, 2)).tolist() == [1733653008313945637, 28391601117458179]


@pytest.mark.parametrize("which", ["random", "shuffled", "transfer"])
def test_evaluated_probes_do_not_depend_on_the_batch_size(which):
    """7 images in batches of 1, 2 and 3 (none divides 7) and of 64."""
    from probelib.probes import random_control, shuffled_control, transfer
    model, x = Linear(), _images(7, seed=16)
    probe = pgd(model, x, [0.05, 0.1], norm="l2", steps=2, units=[2, 0])
    call = {"random": lambda b: random_control(model, x, probe, batch_size=b),
            "shuffled": lambda b: shuffled_control(model, x, probe, batch_size=b),
            "transfer": lambda b: transfer(probe, x, Linear(seed=3), batch_size=b)}[which]
    ref = call(64)
    for b in (1, 2, 3):
        res = call(b)
        for name in ("clean", "perturbed", "delta_norm", "sensitivity"):
            np.testing.assert_allclose(getattr(res, name), getattr(ref, name), rtol=1e-12, err_msg=f"{name}, batch {b}")


def test_evaluated_probes_pack_whole_chunks_into_each_forward_pass():
    """2 images x 2 units x 2 budgets = 4 chunks of 2 rows; batches of 4 rows hold 2 chunks: one
    forward counts the outputs, one gives the clean responses, two the perturbed ones."""
    from probelib.probes import random_control
    model, x = _CountingForwards(), _images(2, seed=17)
    probe = pgd(model, x, [0.05, 0.1], norm="l2", steps=2, units=[2, 0])
    model.forwards = 0
    random_control(model, x, probe, batch_size=4)
    assert model.forwards == 1 + 1 + 2
    model.forwards = 0
    random_control(model, x, probe, batch_size=3)              # one chunk per pass: 4
    assert model.forwards == 1 + 1 + 4


def test_random_linf_control_is_clamped_to_the_box():
    from probelib.probes import random_control
    model = Linear()
    x = torch.full((2, 3, SIDE, SIDE), 0.1, dtype=torch.float64)
    probe = pgd(model, x, 0.3, norm="linf", steps=2)
    ctrl = random_control(model, x, probe, seed=1)
    d = ctrl.deltas[0]
    assert set(np.round(np.unique(d), 12).tolist()) == {-0.1, 0.3}       # -0.3 cut at 0
    np.testing.assert_allclose(ctrl.delta_norm[0], np.sqrt((d.reshape(3, 2, -1) ** 2).sum(2)).T, rtol=1e-12)
    high = random_control(model, 1.0 - x, pgd(model, 1.0 - x, 0.3, norm="linf", steps=2), seed=1)
    assert set(np.round(np.unique(high.deltas[0]), 12).tolist()) == {-0.3, 0.1}   # +0.3 cut at 1


def test_evaluated_probes_name_non_finite_responses():
    from probelib.probes import random_control

    class NaNWhenMoved(nn.Module):
        def forward(self, x):
            r = x.flatten(1)[:, :2] * 1.0
            return torch.where((x.flatten(1)[:, :2] - 0.5).abs() > 1e-9, float("nan"), r)

    x = torch.full((2, 3, SIDE, SIDE), 0.5, dtype=torch.float64)
    probe = fgsm(Linear(2), x, 0.01)
    with pytest.raises(ValueError, match=r"^responses to perturbed images contain \d+ NaN/inf values"):
        random_control(NaNWhenMoved(), x, probe)
    with pytest.raises(ValueError, match="^eps must be a single budget here; got 2 values$"):
        maximize(Linear(), x[0], 0, steps=1, eps=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"^eps must be finite and >= 0; got \[-0.1\]$"):
        maximize(Linear(), x[0], 0, steps=1, eps=-0.1)


def test_a_probe_that_does_not_keep_its_perturbations_says_why_and_how(monkeypatch):
    from probelib.probes import _common
    model, x = Linear(), _images(8)
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", 2**20 // 10)          # 0.1 MiB
    # 2 budgets x 3 units x 128 images x 48 pixels x 8 bytes = 294,912 bytes = 0.28 MiB
    with pytest.warns(UserWarning) as caught:
        pgd(model, torch.cat([x] * 16), [0.1, 0.2], steps=2)
    assert str(caught[0].message) == (
        "not keeping the PGD perturbations (0.3 MiB > STORE_LIMIT_BYTES = 0.1 MiB); perturbation(), "
        "shuffled_control() and transfer() need them: pass store_perturbations=True to keep them anyway")


# --------------------------------------------------------------------------------- fixed effect

def test_fixed_effect_reports_its_fields_and_defaults():
    model, x = Linear(), _images(2, seed=18)
    res = fixed_effect(model, x, 1, units=[2, 0], steps=3)
    assert res.target.dtype == np.float64 and res.target.tolist() == [1.0, 1.0]
    with torch.no_grad():
        np.testing.assert_allclose(res.clean, model(x)[:, [2, 0]].numpy(), rtol=1e-12)
    assert (res.eps_max, res.tol) == (0.25 * math.sqrt(D), 0.02)
    assert res.params == {"steps": 3, "step_size": None, "max_iter": 30, "random_start": False, "restarts": 1,
                          "seed": 0}
    assert fixed_effect(model, x, 1, norm="linf", steps=2).eps_max == 64 / 255
    assert fixed_effect(model, x, 1, tol=0.5).params["steps"] == 20
    # a step size of its own: steps of 1e-4 cannot reach what the default steps (2.5 eps / steps) reach
    short = fixed_effect(model, x, 1, units=[0], steps=2, step_size=1e-4, eps_max=1.0, tol=0.5)
    assert short.params["step_size"] == 1e-4 and not short.reached.any()
    assert fixed_effect(model, x, 1, units=[0], steps=2, eps_max=1.0, tol=0.5).reached.all()
    assert fixed_effect(model, x, [1, 2, 3], steps=2, tol=0.1, eps_max=2.0).target.tolist() == [1, 2, 3]


def test_fixed_effect_stops_bisecting_once_the_bracket_is_within_tol():
    """On a linear model (needed budget t / ||w_u||) each bracket ends within tol of its upper end
    and no narrower than half of that: bisection stops as soon as it may, for a single row too."""
    model = Linear()
    for x, units in ((_images(1, seed=19), [1]), (_images(3, seed=19), None)):
        res = fixed_effect(model, x, 0.5, units=units, tol=0.02, steps=10, eps_max=1.0)
        need = 0.5 / np.linalg.norm(model.weight.detach().numpy()[res.units], axis=1)
        assert res.reached.all()
        assert np.all(res.eps_lower <= need * (1 + 1e-9)) and np.all(res.eps >= need * (1 - 1e-9))
        width = (res.eps - res.eps_lower) / res.eps
        assert np.all(width <= 0.02) and np.all(width > 0.02 / 2 * 0.5)


def test_fixed_effect_stops_at_a_bracket_exactly_tol_wide():
    """Sum of pixels from white, L-inf down: a budget e changes the response by exactly e * D. The
    target 0.75 D fails at 0.5 after succeeding at 1: the bracket [0.5, 1] is exactly tol = 0.5 of
    its upper end, so bisection stops there."""
    x = torch.ones((1, 3, SIDE, SIDE), dtype=torch.float64)
    res = fixed_effect(_Sum(), x, 0.75 * D, norm="linf", eps_max=1.0, steps=3, tol=0.5)
    assert (res.eps[0, 0], res.eps_lower[0, 0]) == (1.0, 0.5)


def test_fixed_effect_counts_a_target_met_exactly_as_reached():
    """Sum of pixels, L-inf: a budget e changes the response by exactly e * D; the target 0.125 D
    is met exactly at the bisection's first midpoint (0.125 of eps_max 0.25)."""
    x = torch.full((1, 3, SIDE, SIDE), 0.5, dtype=torch.float64)
    res = fixed_effect(_Sum(), x, 0.125 * D, norm="linf", eps_max=0.25, steps=3, tol=0.02)
    assert res.eps[0, 0] == 0.125 and res.change[0, 0] == 0.125 * D


def test_fixed_effect_with_random_starts_is_seeded_and_keeps_to_its_norm():
    model, x = Linear(), _images(2, seed=20)
    kw = {"norm": "linf", "eps_max": 0.1, "steps": 8, "tol": 0.05, "random_start": True}
    res = fixed_effect(model, x, 0.2, **kw)
    assert res.reached.all()
    for j in range(3):
        d = np.abs(res.deltas[j].reshape(2, -1))
        np.testing.assert_allclose(d, res.eps[:, j:j + 1] * np.ones_like(d), rtol=1e-6)   # the corner of the ball
    np.testing.assert_array_equal(fixed_effect(model, x, 0.2, seed=0, **kw).deltas, res.deltas)
    other = fixed_effect(model, x, 0.2, seed=1, restarts=2, **{k: v for k, v in kw.items()})
    assert other.params["seed"] == 1 and other.params["restarts"] == 2
    l2 = fixed_effect(model, x, 0.2, norm="l2", eps_max=1.0, steps=8, tol=0.05, random_start=True)
    l2_other = fixed_effect(model, x, 0.2, norm="l2", eps_max=1.0, steps=8, tol=0.05, random_start=True, seed=3)
    assert not np.array_equal(l2.deltas, l2_other.deltas)


def test_fixed_effect_spends_three_forwards_and_two_backwards_per_trial_of_two_steps():
    """A trial from the image: its gradient, then 2 steps (3 forwards, 2 backwards); from a random
    start: 3 forwards at the iterates, 2 backwards. tol 10 stops after the first trial; 3 rows in
    chunks of 2: 2 chunks, after 2 forwards of clean responses."""
    model, x = _CountingLinear(), _images(3, seed=21)
    fixed_effect(model, x, 0.5, units=[0], steps=2, tol=10.0, batch_size=2, eps_max=1.0)
    assert (model.forwards, model.backwards) == (2 + 2 * 3, 2 * 2)
    model.forwards = model.backwards = 0
    fixed_effect(model, x, 0.5, units=[0], steps=2, tol=10.0, batch_size=2, eps_max=1.0, random_start=True)
    assert (model.forwards, model.backwards) == (2 + 2 * 3, 2 * 2)


def test_fixed_effect_argument_errors_name_the_argument():
    model, x = Linear(n_units=12), _images(2)
    cases = [({"target_change": [[0.1]] * 12}, r"^target_change must be a number or one value per unit \(12\); got shape \(12, 1\)$"),
             ({"target_change": [0.1, 0.2]}, r"^target_change must be a number or one value per unit \(12\); got shape \(2,\)$"),
             ({"target_change": 0.0}, r"^target_change must be finite and > 0; got \[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0\]$"),
             ({"tol": 0.0}, "^tol must be > 0$"),
             ({"tol": -1.0}, "^tol must be a finite number >= 0; got -1.0$"),
             ({"max_iter": 0}, "^max_iter must be an integer >= 1; got 0$"),
             ({"eps_max": 0.0}, "^eps_max must be > 0$"),
             ({"eps_max": [1.0, 2.0]}, "^eps_max must be a single budget here; got 2 values$"),
             ({"eps_max": -1.0}, r"^eps_max must be finite and >= 0; got \[-1.0\]$"),
             ({"tol": "tight"}, "^tol must be a finite number >= 0; got 'tight'$")]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message):
            fixed_effect(model, x, **{"target_change": 0.1, **kw})


def test_fixed_effect_keeps_its_probes_up_to_the_store_limit_and_shows_progress_by_work(capsys, monkeypatch):
    from probelib.probes import _common
    model, x = Linear(), _images(2)
    n_bytes = 3 * 2 * D * 8                                        # units x images x pixels x float64
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes)
    kw = {"steps": 2, "tol": 10.0, "eps_max": 1.0}
    assert fixed_effect(model, x, 0.5, **kw).deltas is not None
    monkeypatch.setattr(_common, "STORE_LIMIT_BYTES", n_bytes - 1)
    with pytest.warns(UserWarning, match=r"^not keeping the fixed-effect probes \(0.0 MiB"):
        assert fixed_effect(model, x, 0.5, **kw).deltas is None
    monkeypatch.undo()
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    # work: rows x directions x restarts x (steps + 1) x 8 trials, image passes of D pixels
    passes = 6 * 2 * 2 * 3 * 8
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D)
    fixed_effect(model, x, 0.5, direction="abs", restarts=2, **kw)
    assert "fixed effect (PGD probes)" in capsys.readouterr().err
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D + 1)
    fixed_effect(model, x, 0.5, direction="abs", restarts=2, **kw)
    assert capsys.readouterr().err == ""


def test_fgsm_progress_counts_image_unit_pairs_and_shows_by_the_amount_of_work(capsys, monkeypatch):
    from probelib.probes import _common
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    model, x = Linear(), _images(2)
    fgsm(model, x, [0.01, 0.02], direction="abs", progress=True)
    assert "\rfgsm (image x unit):   0%|          | 0/6 " in capsys.readouterr().err    # 2 images x 3 units
    # work: image-unit pairs x (1 gradient + budgets x directions), image passes of D pixels
    passes = 6 * (1 + 2 * 2)
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D)
    fgsm(model, x, [0.01, 0.02], direction="abs")
    assert "fgsm (image x unit)" in capsys.readouterr().err
    monkeypatch.setattr(_common, "_AUTO_PROGRESS_PIXELS", passes * D + 1)
    fgsm(model, x, [0.01, 0.02], direction="abs")
    assert capsys.readouterr().err == ""
    with pytest.raises(ValueError, match="^unknown direction 'down'; valid: 'decrease', 'increase', 'abs'$"):
        fgsm(model, x, 0.01, direction="down")
