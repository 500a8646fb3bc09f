"""Analytic properties of probelib.geometry's Jacobians and perturbation subspaces.

Models here are linear (``r = W vec(x)`` with ``W = U diag(s) Vᵀ`` of known singular values) or
quadratic (``r_i = Σ_j a_ij x_j²``, Jacobian ``2 a_ij x_j``), on 3×2×2 images (D = 12), so every
quantity has a closed form: the Jacobian, the singular values, the span of the top directions,
the numerical-rank threshold ``10·sqrt(max(U, D))·eps·s_max``, and the documented cost (one
forward pass for a Jacobian; ``n_iter + 1`` forward-mode products for the matrix-free methods).
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from probelib.geometry import jacobian, perturbation_subspace, principal_angles, subspace_similarity

SHAPE = (3, 2, 2)
D = 12
METHODS = ["exact", "power", "randomized"]


class Linear(nn.Module):
    """r = W vec(x) with W = U diag(s) Vᵀ (U: n_out × len(s), V: D × len(s)); counts forward calls."""

    def __init__(self, s, n_out=None, dtype=torch.float64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n_out = len(s) if n_out is None else n_out
        u = torch.linalg.qr(torch.randn(n_out, len(s), generator=g, dtype=torch.float64))[0]
        v = torch.linalg.qr(torch.randn(D, len(s), generator=g, dtype=torch.float64))[0]
        w = u @ torch.diag(torch.as_tensor(s, dtype=torch.float64)) @ v.T
        self.weight = nn.Parameter(w.to(dtype))
        self.u, self.v, self.s = u, v, torch.as_tensor(s, dtype=torch.float64)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x.flatten(1).to(self.weight.dtype) @ self.weight.T


class Quadratic(nn.Module):
    """r_i = Σ_j a_ij x_j²: J = 2 a_ij x_j. No parameters or buffers (a is a plain attribute)."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return (x.flatten(1) ** 2) @ self.a.T


def _image(seed=0, dtype=torch.float64):
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _rank_warning(record):
    msgs = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    return msgs


# ------------------------------------------------------------------------------------ jacobian

def test_jacobian_of_a_linear_map_is_its_matrix_with_one_forward_pass():
    model = Linear([3.0, 2.0, 1.0], n_out=4)
    image = _image()
    jac = jacobian(model, image)
    assert model.calls == 1                              # "one forward pass and U backward passes"
    assert jac.shape == (4, D) and jac.dtype == torch.float64 and jac.device.type == "cpu"
    torch.testing.assert_close(jac, model.weight.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(jacobian(model, image[None], units=[-1, 0]), model.weight.detach()[[3, 0]],
                               rtol=0, atol=1e-12)
    for chunk in (1, 3, None):
        torch.testing.assert_close(jacobian(model, image, chunk_size=chunk), jac, rtol=0, atol=1e-12)


def test_jacobian_of_a_quadratic_map_is_evaluated_at_the_given_image():
    a = torch.randn(5, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = Quadratic(a)                                  # no parameters: computed on the image's device
    for seed in (0, 1):
        image = _image(seed)
        expected = 2 * a * image.reshape(-1)
        torch.testing.assert_close(jacobian(model, image), expected, rtol=0, atol=1e-12)
        torch.testing.assert_close(jacobian(model, image, device="cpu", units=[2]), expected[[2]],
                                   rtol=0, atol=1e-12)


def test_jacobian_and_subspace_reject_bad_images_chunks_and_devices_with_clear_messages():
    model = Linear([2.0, 1.0])
    image = _image()
    with pytest.raises(ValueError, match=re.escape("image must be one image of shape (3, H, W) or (1, 3, H, W); "
                                                   "got (2, 3, 2, 2)")):
        jacobian(model, torch.stack([image, image]))
    with pytest.raises(ValueError, match=r"^image must have pixels in \[0, 1\]"):
        jacobian(model, image + 1.0)
    with pytest.raises(ValueError, match=r"^image must have rank 4"):
        jacobian(model, image[0])
    for fn, extra in ((jacobian, {}), (perturbation_subspace, {"k": 1})):
        with pytest.raises(ValueError, match=r"^chunk_size must be an integer >= 1; got 0$"):
            fn(model, image, chunk_size=0, **extra)
        with pytest.raises(ValueError, match=re.escape("model lives on cpu but device='cuda:1' was requested; "
                                                       "move it first with model.to('cuda:1')")):
            fn(model, image, device="cuda:1", **extra)


def test_model_output_must_be_one_row_of_responses():
    class Wrong(nn.Module):
        def forward(self, x):
            return x.flatten(1).sum(1)

    class Pair(nn.Module):          # a tuple, not a tensor: its type is named
        def forward(self, x):
            return x.flatten(1), x.flatten(1)

    class TwoRows(nn.Module):       # two rows of responses for one image
        def forward(self, x):
            return torch.cat([x.flatten(1), x.flatten(1)])

    for model, got in ((Wrong(), "(1,)"), (Pair(), "tuple"), (TwoRows(), "(2, 12)")):
        with pytest.raises(ValueError, match=re.escape("model must map images (N, 3, H, W) to responses (N, V); "
                                                       f"for one image it returned {got}")):
            jacobian(model, _image())


# ------------------------------------------------------------------------ perturbation subspace

@pytest.mark.parametrize("method", METHODS)
def test_subspace_of_a_known_spectrum(method):
    s = [8.0, 4.0, 2.0, 1.0, 0.5]
    model = Linear(s)
    image = _image()
    sub = perturbation_subspace(model, image, k=3, method=method, oversample=2)
    np.testing.assert_allclose(sub.singular_values.numpy(), s[:3], rtol=1e-9)
    assert sub.basis.dtype == torch.float64 and sub.singular_values.dtype == torch.float64
    assert sub.basis.shape == (D, 3) and sub.response_directions.shape == (5, 3)
    assert subspace_similarity(sub.basis, model.v[:, :3]) == pytest.approx(1.0, abs=1e-12)
    w = model.weight.detach()
    torch.testing.assert_close(w @ sub.basis, sub.response_directions * sub.singular_values, rtol=0, atol=1e-10)
    torch.testing.assert_close(sub.basis.T @ sub.basis, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(sub.response_directions.T @ sub.response_directions,
                               torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-12)
    assert torch.all(sub.response_directions.sum(0) >= 0)
    assert sub.image_shape == SHAPE and all(type(n) is int for n in sub.image_shape)
    assert sub.method == method and sub.k == 3
    np.testing.assert_array_equal(sub.units, np.arange(5))
    directions = sub.directions()
    for j in range(3):
        torch.testing.assert_close(directions[j], sub.basis[:, j].reshape(SHAPE), rtol=0, atol=0)


@pytest.mark.parametrize("method", METHODS)
def test_subspace_keeps_the_model_dtype_and_restricts_to_units(method):
    model = Linear([5.0, 3.0, 2.0, 1.0], dtype=torch.float32, seed=3)
    sub = perturbation_subspace(model, _image(dtype=torch.float32), k=2, method=method, units=[3, 1, 0],
                                n_iter=20 if method != "exact" else None)
    assert sub.basis.dtype == torch.float32 and sub.response_directions.dtype == torch.float32
    assert sub.singular_values.dtype == torch.float32
    np.testing.assert_array_equal(sub.units, [3, 1, 0])
    w = model.weight.detach().double()[[3, 1, 0]]
    _, s, vt = torch.linalg.svd(w, full_matrices=False)
    np.testing.assert_allclose(sub.singular_values.double().numpy(), s[:2].numpy(), rtol=1e-4)
    assert subspace_similarity(sub.basis, vt[:2].T) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(w.float() @ sub.basis, sub.response_directions * sub.singular_values,
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_k_may_equal_but_not_exceed_the_number_of_units_or_pixels(method):
    model = Linear([3.0, 2.0])
    sub = perturbation_subspace(model, _image(), k=2, method=method)
    np.testing.assert_allclose(sub.singular_values.numpy(), [3.0, 2.0], rtol=1e-9)
    with pytest.raises(ValueError, match=re.escape("k=3 exceeds min(number of probed units, 3·H·W) = min(2, 12), "
                                                   "an upper bound on the rank of the Jacobian")):
        perturbation_subspace(model, _image(), k=3, method=method)
    tall = Linear(list(np.linspace(12.0, 1.0, 12)), n_out=20)
    sub = perturbation_subspace(tall, _image(), k=12, method=method)
    np.testing.assert_allclose(sub.singular_values.numpy(), np.linspace(12.0, 1.0, 12), rtol=1e-8)
    with pytest.raises(ValueError, match=re.escape("= min(20, 12)")):
        perturbation_subspace(tall, _image(), k=13, method=method)


@pytest.mark.parametrize("method,dtype", [("exact", torch.float32), ("power", torch.float32),
                                          ("randomized", torch.float32), ("exact", torch.float64),
                                          ("power", torch.float64), ("randomized", torch.float64)])
def test_rank_threshold_and_warning(method, dtype):
    # U = 4 units, rank 2: the warning names the rank and the threshold 10·sqrt(max(U, D))·eps
    model = Linear([4.0, 1.0], n_out=4, dtype=dtype, seed=5)
    rtol = 10.0 * math.sqrt(max(4, D)) * torch.finfo(dtype).eps
    with pytest.warns(RuntimeWarning) as record:
        sub = perturbation_subspace(model, _image(dtype=dtype), k=3, method=method)
    expected = (f"k=3 exceeds the numerical rank 2 of the Jacobian (singular values below {rtol:.1e}·s_max "
                "treated as zero); returning 2 directions")
    assert expected in _rank_warning(record)
    assert sub.k == 2 and sub.singular_values.shape == (2,) and sub.response_directions.shape == (4, 2)
    np.testing.assert_allclose(sub.singular_values.double().numpy(), [4.0, 1.0], rtol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_small_but_resolvable_singular_values_count_towards_the_rank(method):
    model = Linear([1.0, 1e-5], n_out=3)                   # 1e-5 is far above the float64 threshold
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        sub = perturbation_subspace(model, _image(), k=2, method=method)
    assert sub.k == 2
    np.testing.assert_allclose(sub.singular_values.numpy(), [1.0, 1e-5], rtol=1e-3)


class _OldStyleIdentity(torch.autograd.Function):
    """Old-style autograd.Function (no setup_context): torch.func refuses it, so the operator
    falls back to its plain-autograd loops."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class _ConstantResponses(nn.Module):
    """Responses (N, 3) that do not depend on the pixels: from a plain tensor that requires grad
    (an autograd graph that never reaches the pixels; parameters are frozen while probing) or
    from a buffer (no graph at all)."""

    def __init__(self, in_graph: bool):
        super().__init__()
        value = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
        if in_graph:
            self.value = value.requires_grad_(True)
        else:
            self.register_buffer("value", value)

    def forward(self, x):
        return _OldStyleIdentity.apply(self.value).expand(x.shape[0], -1)


@pytest.mark.parametrize("in_graph", [True, False], ids=["graph", "buffer"])
@pytest.mark.parametrize("method", METHODS)
def test_responses_independent_of_the_pixels_through_the_autograd_fallbacks(method, in_graph):
    """The loops used when torch.func cannot transform a model give zero rows (not an error) for
    responses the pixels do not reach, so the subspace fails with its own clear message."""
    model = _ConstantResponses(in_graph)
    torch.testing.assert_close(jacobian(model, _image()), torch.zeros(3, D, dtype=torch.float64), rtol=0, atol=0)
    with pytest.raises(ValueError, match=re.escape("the Jacobian is zero at this image")):
        perturbation_subspace(model, _image(), k=1, method=method)


@pytest.mark.parametrize("method", METHODS)
def test_zero_jacobian_has_no_subspace(method):
    model = Linear([1.0, 1.0])
    with torch.no_grad():
        model.weight.zero_()
    with pytest.raises(ValueError, match=re.escape("the Jacobian is zero at this image (the probed responses do "
                                                   "not depend on the pixels locally): there is no perturbation "
                                                   "subspace")):
        perturbation_subspace(model, _image(), k=1, method=method)


def test_parameter_validation_messages_and_boundaries():
    model = Linear([3.0, 2.0, 1.0])
    image = _image()
    with pytest.raises(ValueError, match=r"^tol must be a number >= 0; got -0\.001$"):
        perturbation_subspace(model, image, k=1, method="power", tol=-1e-3)
    with pytest.raises(ValueError, match=r"^tol must be a number >= 0; got '0'$"):
        perturbation_subspace(model, image, k=1, tol="0")
    with pytest.raises(ValueError, match=r"^n_iter must be an integer >= 1; got 0$"):
        perturbation_subspace(model, image, k=1, method="power", n_iter=0)
    with pytest.raises(ValueError, match=r"^oversample must be an integer >= 0; got -1$"):
        perturbation_subspace(model, image, k=1, oversample=-1)
    with pytest.raises(ValueError, match=r"^k must be an integer >= 1; got 0$"):
        perturbation_subspace(model, image, k=0)
    with pytest.raises(ValueError, match=r"^unknown method 'svd'; valid: 'exact', 'power', 'randomized'$"):
        perturbation_subspace(model, image, k=1, method="svd")
    # boundaries that are accepted: tol = 0, oversample = 0, n_iter = 0 for the randomized method
    for kwargs in ({"method": "power", "tol": 0.0, "n_iter": 3}, {"method": "power", "oversample": 0, "n_iter": 60, "tol": 0},
                   {"method": "randomized", "n_iter": 0, "oversample": 2}, {"method": "exact", "n_iter": 0}):
        sub = perturbation_subspace(model, image, k=1, **kwargs)
        assert sub.singular_values[0].item() == pytest.approx(3.0, rel=1e-6)


# -------------------------------------------------------------------------- cost of the methods

def _slow_model():
    # nearly flat spectrum: block power iteration does not converge to tol = 0 in a few steps
    return Linear([1.0, 0.99, 0.98, 0.97, 0.96, 0.95], seed=7)


@pytest.mark.parametrize("n_iter", [1, 3])
def test_power_method_applies_the_jacobian_n_iter_plus_one_times_at_most(n_iter):
    model = _slow_model()
    perturbation_subspace(model, _image(), k=1, method="power", n_iter=n_iter, tol=0.0, oversample=1)
    assert model.calls == 1 + (n_iter + 1)                # the forward pass + one J·Q per iteration


def test_power_method_defaults_to_thirty_iterations_and_stops_early_once_converged():
    model = _slow_model()
    perturbation_subspace(model, _image(), k=1, method="power", tol=0.0, oversample=1)
    assert model.calls == 1 + 31
    # the block spans the whole range: exact after one iteration, seen to be converged after two
    exact_rank = Linear([5.0, 1.0])
    perturbation_subspace(exact_rank, _image(), k=1, method="power", oversample=1)
    assert exact_rank.calls == 1 + 3


@pytest.mark.parametrize("n_iter,calls", [(None, 1 + 3), (0, 1 + 1), (2, 1 + 3), (4, 1 + 5)])
def test_randomized_method_runs_n_iter_power_iterations_default_two(n_iter, calls):
    model = _slow_model()
    perturbation_subspace(model, _image(), k=1, method="randomized", n_iter=n_iter, oversample=1)
    assert model.calls == calls


def test_exact_method_needs_a_single_forward_pass():
    model = _slow_model()
    perturbation_subspace(model, _image(), k=2)
    assert model.calls == 1


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_oversampling_improves_a_short_run_on_a_flat_spectrum(method):
    model = Linear([1.0, 0.9, 0.2, 0.19, 0.18, 0.17], seed=9)
    image = _image()
    worse = perturbation_subspace(model, image, k=2, method=method, n_iter=1, oversample=0, seed=1)
    better = perturbation_subspace(model, image, k=2, method=method, n_iter=1, oversample=4, seed=1)
    # a block of k + oversample = 6 = U covers the whole range: exact after one iteration
    assert subspace_similarity(better, model.v[:, :2]) == pytest.approx(1.0, abs=1e-10)
    assert subspace_similarity(worse, model.v[:, :2]) < 1.0 - 1e-6


@pytest.mark.parametrize("method", METHODS)
def test_subspace_is_invariant_to_the_scale_of_the_responses(method):
    # J and c·J have the same directions and singular values scaled by c, however small c is
    s = [1.0, 1e-5]
    model, scaled = Linear(s, n_out=3, seed=11), Linear(s, n_out=3, seed=11)
    with torch.no_grad():
        scaled.weight.mul_(1e-6)
    a = perturbation_subspace(model, _image(), k=2, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        b = perturbation_subspace(scaled, _image(), k=2, method=method)
    assert b.k == 2
    np.testing.assert_allclose(b.singular_values.numpy(), 1e-6 * a.singular_values.numpy(), rtol=1e-3)
    assert torch.all((a.basis * b.basis).sum(0) > 1 - 1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_a_single_unit_has_its_gradient_as_only_direction(method):
    model = Linear([2.5], n_out=1, seed=13)
    image = _image()
    sub = perturbation_subspace(model, image, k=1, method=method)
    grad = model.weight.detach()[0]
    assert sub.singular_values.tolist() == pytest.approx([float(grad.norm())], rel=1e-9)
    torch.testing.assert_close(sub.basis[:, 0], grad / grad.norm(), rtol=0, atol=1e-10)
    assert sub.response_directions.tolist() == [[pytest.approx(1.0, abs=1e-12)]]


# ------------------------------------------------------------------------- subspace comparisons

def test_float32_bases_are_compared_in_float64():
    rng = np.random.default_rng(3)
    p = rng.standard_normal((40, 3)).astype(np.float32)
    mix = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]], dtype=np.float32)
    angles = principal_angles(p, p @ mix)
    assert angles.dtype == np.float64
    # the float32 entries are exact in float64: the same span to float64 precision, not float32's
    assert subspace_similarity(p, p) == pytest.approx(1.0, abs=1e-12)
    assert subspace_similarity(p, (p @ mix).astype(np.float64)) == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(angles, 0.0, atol=1e-6)


def test_subspace_comparisons_emit_no_warnings():
    rng = np.random.default_rng(4)
    p, q = rng.standard_normal((10, 2)), rng.standard_normal((10, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        subspace_similarity(p, q)
        principal_angles(p, q)


def test_columns_below_the_rank_tolerance_span_nothing():
    # tolerance: max(D, k)·eps·s_max; a column of norm 2·eps (or eps) next to a unit one is noise
    eps = np.finfo(np.float64).eps
    e = np.eye(2)
    for tiny in (2 * eps, eps):
        a = np.diag([1.0, tiny])
        assert subspace_similarity(a, e[:, 1:]) == 0.0
        assert principal_angles(a, e).tolist() == [0.0]
    a = np.diag([1.0, 4 * eps])                             # above the tolerance: a second direction
    assert subspace_similarity(a, e[:, 1:]) == pytest.approx(1.0)


def test_dimension_mismatch_names_both_dimensions():
    with pytest.raises(ValueError, match=r"^subspaces live in different spaces: D = 4 vs 5$"):
        principal_angles(np.ones((4, 1)), np.eye(5)[:, :2])
    with pytest.raises(ValueError, match=r"^subspaces live in different spaces: D = 6 vs 3$"):
        principal_angles(np.eye(6)[:, :2], np.ones((3, 1)))


def test_power_method_with_zero_tolerance_stops_when_the_values_repeat_exactly():
    # one unit, block 1: the second iterate is the gradient direction, the third repeats it bit for bit
    model = Linear([2.0], n_out=1, seed=17)
    sub = perturbation_subspace(model, _image(), k=1, method="power", n_iter=10, tol=0.0, oversample=0)
    assert model.calls == 1 + 3
    assert sub.singular_values.tolist() == pytest.approx([2.0], rel=1e-12)


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_matrix_free_defaults_are_the_documented_seed_and_oversampling(method):
    model = Linear(list(np.linspace(3.0, 1.0, 12)), n_out=12, seed=19)   # block k + 8 = 9 < U, D
    image = _image()
    default = perturbation_subspace(model, image, k=1, method=method, n_iter=1)
    explicit = perturbation_subspace(model, image, k=1, method=method, n_iter=1, seed=0, oversample=8)
    assert torch.equal(default.basis, explicit.basis)
    assert torch.equal(default.singular_values, explicit.singular_values)
    other = perturbation_subspace(model, image, k=1, method=method, n_iter=1, seed=0, oversample=9)
    assert not torch.equal(default.basis, other.basis)


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_the_matrix_free_defaults_are_the_documented_ones(method):
    """Called without them, the matrix-free methods use oversample = 8, seed = 0, tol = 1e-3 and
    their documented default iterations: the same result bit for bit, and another seed or
    oversampling (a flat spectrum, so that the approximation depends on the start) another one."""
    from probelib.geometry import DEFAULT_N_ITER

    model = Linear(list(np.linspace(2.0, 1.0, 10)), n_out=10)
    default = perturbation_subspace(model, _image(), k=2, method=method)
    explicit = perturbation_subspace(model, _image(), k=2, method=method, oversample=8, seed=0, tol=1e-3,
                                     n_iter={"power": 30, "randomized": 2}[method])
    assert DEFAULT_N_ITER == {"power": 30, "randomized": 2}
    assert torch.equal(default.basis, explicit.basis)
    assert torch.equal(default.singular_values, explicit.singular_values)
    for other in ({"seed": 1}, {"oversample": 7}):
        changed = perturbation_subspace(model, _image(), k=2, method=method, **other)
        assert not torch.equal(changed.singular_values, default.singular_values), other


# ------------------------------------------------------------------------------- block_subspaces

def test_block_subspaces_rank_threshold_single_unit_blocks_and_zero_blocks():
    """Per block, directions whose singular value is at most ``10·max(U_b, D)·eps·s_max`` are left
    out (just above the threshold: kept; just below: dropped); a one-unit block gives its unit's
    gradient direction; a block that does not depend on the pixels is a clear error."""
    from probelib.geometry import block_subspaces

    threshold = 10 * D * np.finfo(np.float64).eps  # s_max = 1, U_b = 2 <= D
    for factor, kept in ((1.05, 2), (0.6, 1)):
        model = Linear([1.0, factor * threshold], seed=3)
        bases = block_subspaces(model, _image()[None].numpy(), [2], k=2)[0][0]
        assert bases.shape == (D, kept), factor
        v = model.v.numpy()
        np.testing.assert_allclose(abs(bases[:, 0] @ v[:, 0]), 1.0, atol=1e-6)
    model = Linear([3.0, 2.0, 1.0], seed=4)                 # blocks of 1 and 2 units
    one, two = block_subspaces(model, _image()[None].numpy(), [1, 2], k=2)[0]
    w = model.weight.detach().numpy()
    assert one.shape == (D, 1) and two.shape == (D, 2)
    assert one.dtype == two.dtype == np.float32                            # as documented, for a float64 model
    np.testing.assert_allclose(abs(one[:, 0] @ w[0]) / np.linalg.norm(w[0]), 1.0, atol=1e-6)
    assert subspace_similarity(two, w[1:].T) == pytest.approx(1.0, abs=1e-6)
    zero = Quadratic(torch.zeros(2, D, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^the Jacobian is zero at this image: the responses do not depend on "
                                         r"the pixels$"):
        block_subspaces(zero, _image()[None].numpy(), [2], k=1)
