"""Tests of probelib.geometry on tiny models (3x8x8 / 3x16x16 images)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from probelib.geometry import (
    Subspace,
    block_subspaces,
    jacobian,
    perturbation_subspace,
    principal_angles,
    similarity_matrix,
    subspace_similarity,
)

SHAPE = (3, 8, 8)
D = 3 * 8 * 8


class LinearModel(nn.Module):
    """r = W vec(x) + b."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(torch.randn(weight.shape[0], dtype=weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T + self.bias


class TinyCNN(nn.Module):
    """conv-BN-ReLU(inplace)-pool-conv-tanh -> linear readout (optionally low rank)."""

    def __init__(self, n_out: int = 6, readout_rank: int | None = None) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(inplace=True),
            nn.AvgPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.Tanh(), nn.Flatten(),
        )
        self.readout = nn.Linear(8 * (SHAPE[1] // 2) * (SHAPE[2] // 2), n_out)
        if readout_rank is not None:
            with torch.no_grad():
                a = torch.randn(n_out, readout_rank) * torch.tensor([4.0, 2.0, 1.0][:readout_rank])
                w = a @ torch.randn(readout_rank, self.readout.in_features) / 4
                self.readout.weight.copy_(w + 1e-3 * torch.randn_like(w))
        with torch.no_grad():  # non-trivial BN statistics
            self.features[1].running_mean.uniform_(-0.2, 0.2)
            self.features[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.features(x))


class _NoVmapRelu(torch.autograd.Function):
    """ReLU whose backward leaves torch (vmap cannot batch it) and without a forward-mode rule."""

    @staticmethod
    def forward(x):
        return x.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        if bool(grad.abs().sum() >= 0):  # data-dependent control flow: vmap cannot batch this
            return grad * (x > 0).to(grad.dtype)
        raise AssertionError("unreachable")


class _OldStyleRelu(torch.autograd.Function):
    """Old-style autograd.Function (no setup_context): torch.func cannot transform it at all."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0).to(grad.dtype)


class CustomOpCNN(TinyCNN):
    def __init__(self, fn, n_out: int = 5) -> None:
        super().__init__(n_out)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fn.apply(self.features[1](self.features[0](x)))
        return self.readout(self.features[6](self.features[5](self.features[4](self.features[3](h)))))


def _image(seed: int = 0, shape=SHAPE) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def _reference_jacobian(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    model.eval()
    jac = torch.autograd.functional.jacobian(lambda x: model(x.view(1, *SHAPE))[0], image.reshape(-1))
    return jac


def _low_rank_weight(n_out: int, rank: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.linalg.qr(torch.randn(n_out, rank, generator=g))[0]
    v = torch.linalg.qr(torch.randn(D, rank, generator=g))[0]
    s = torch.tensor([10.0, 6.0, 3.0, 2.0][:rank])
    return u @ torch.diag(s) @ v.T + noise * torch.randn(n_out, D, generator=g)


# --------------------------------------------------------------------------- jacobian


def test_jacobian_of_linear_model_is_its_weight():
    torch.manual_seed(0)
    w = torch.randn(7, D)
    model = LinearModel(w)
    jac = jacobian(model, _image())
    assert jac.shape == (7, D) and jac.device.type == "cpu"
    torch.testing.assert_close(jac, w, rtol=0, atol=1e-6)
    # batched form of a single image, and a subset of units (negative index allowed)
    torch.testing.assert_close(jacobian(model, _image()[None], units=[2, -1]), w[[2, 6]], rtol=0, atol=1e-6)


def test_jacobian_matches_autograd_on_nonlinear_cnn():
    torch.manual_seed(1)
    model = TinyCNN(n_out=6)
    image = _image(1)
    expected = _reference_jacobian(model, image)
    model.train()  # jacobian must switch to eval mode and restore the flag
    got = jacobian(model, image, chunk_size=4)
    assert model.training and model.features[1].training
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch internals, on the vmap failure path
@pytest.mark.parametrize("fn", [_NoVmapRelu, _OldStyleRelu], ids=["no-vmap-no-jvp", "no-torch-func"])
def test_fallbacks_for_models_torch_func_cannot_transform(fn):
    torch.manual_seed(2)
    model = CustomOpCNN(fn)
    image = _image(2)
    expected = _reference_jacobian(model, image)
    torch.testing.assert_close(jacobian(model, image), expected, rtol=1e-4, atol=1e-5)
    exact = perturbation_subspace(model, image, k=2)
    power = perturbation_subspace(model, image, k=2, method="power", n_iter=60, oversample=3)
    assert subspace_similarity(exact, power) > 0.99
    assert all(p.grad is None for p in model.parameters())


def test_bad_inputs_raise_value_error():
    model = LinearModel(torch.randn(4, D))
    image = _image()
    with pytest.raises(ValueError, match="units out of range"):
        jacobian(model, image, units=[4])
    with pytest.raises(ValueError, match="one image"):
        jacobian(model, torch.stack([image, image]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        jacobian(model, image * 255)
    with pytest.raises(ValueError, match="k must be"):
        perturbation_subspace(model, image, k=0)
    with pytest.raises(ValueError, match="unknown method"):
        perturbation_subspace(model, image, k=1, method="lanczos")
    with pytest.raises(ValueError, match="units out of range"):
        perturbation_subspace(model, image, k=1, units=[0, 9])
    with pytest.raises(ValueError, match="exceeds"):
        perturbation_subspace(model, image, k=5)
    with pytest.raises(ValueError, match="must be a torch.nn.Module"):
        jacobian(lambda x: x, image)
    with pytest.raises(ValueError, match="move it first"):
        jacobian(model, image, device="meta")


def test_model_with_bad_output_shape_is_rejected():
    with pytest.raises(ValueError, match=r"responses \(N, V\)"):
        jacobian(nn.Flatten(0), _image())


# --------------------------------------------------------------------------- perturbation subspace


def test_exact_subspace_of_linear_model_is_top_right_singular_vectors():
    torch.manual_seed(3)
    w = torch.randn(12, D)
    sub = perturbation_subspace(LinearModel(w), _image(), k=4)
    assert isinstance(sub, Subspace) and sub.basis.shape == (D, 4) and sub.k == 4
    _, s, vt = torch.linalg.svd(w.double(), full_matrices=False)
    assert subspace_similarity(sub.basis, vt[:4].T) > 0.999
    torch.testing.assert_close(sub.singular_values.double(), s[:4], rtol=1e-5, atol=0)
    assert torch.all(sub.singular_values[:-1] >= sub.singular_values[1:])
    torch.testing.assert_close(sub.basis.T @ sub.basis, torch.eye(4), rtol=0, atol=1e-5)
    # J v_j = s_j u_j and the sign convention (summed response rises along +v_j)
    torch.testing.assert_close(w @ sub.basis, sub.response_directions * sub.singular_values, rtol=0, atol=1e-4)
    assert torch.all(sub.response_directions.sum(0) >= 0)
    assert sub.directions().shape == (4, *SHAPE)


def test_units_restrict_the_jacobian_rows():
    torch.manual_seed(4)
    w = torch.randn(10, D)
    sub = perturbation_subspace(LinearModel(w), _image(), k=3, units=[1, 4, 7])
    _, _, vt = torch.linalg.svd(w[[1, 4, 7]].double(), full_matrices=False)
    assert subspace_similarity(sub, vt.T) > 0.999
    np.testing.assert_array_equal(sub.units, [1, 4, 7])


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_matrix_free_methods_match_exact_on_low_rank_linear_model(method):
    model = LinearModel(_low_rank_weight(40, rank=3, noise=1e-3))
    image = _image()
    exact = perturbation_subspace(model, image, k=3)
    approx = perturbation_subspace(model, image, k=3, method=method, seed=5)
    assert approx.basis.shape == (D, 3)
    assert subspace_similarity(exact, approx) > 0.99
    torch.testing.assert_close(approx.singular_values, exact.singular_values, rtol=1e-3, atol=0)
    torch.testing.assert_close(approx.basis.T @ approx.basis, torch.eye(3), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_matrix_free_methods_match_exact_on_cnn_with_decaying_spectrum(method):
    torch.manual_seed(6)
    model = TinyCNN(n_out=30, readout_rank=3)
    image = _image(6)
    exact = perturbation_subspace(model, image, k=3)
    approx = perturbation_subspace(model, image, k=3, method=method)
    assert subspace_similarity(exact, approx) > 0.99
    # the sign convention makes the bases agree column by column, not only as spans
    assert torch.all((exact.basis * approx.basis).sum(0) > 0.9)


@pytest.mark.parametrize("method", ["power", "randomized"])
def test_matrix_free_methods_are_deterministic_under_seed(method):
    model = LinearModel(_low_rank_weight(20, rank=2, noise=0.5))
    image = _image()
    a = perturbation_subspace(model, image, k=2, method=method, seed=11, n_iter=1)
    b = perturbation_subspace(model, image, k=2, method=method, seed=11, n_iter=1)
    c = perturbation_subspace(model, image, k=2, method=method, seed=12, n_iter=1)
    assert torch.equal(a.basis, b.basis) and torch.equal(a.singular_values, b.singular_values)
    assert not torch.equal(a.basis, c.basis)


@pytest.mark.parametrize("method", ["exact", "power", "randomized"])
def test_k_above_numerical_rank_is_clipped_with_warning(method):
    model = LinearModel(_low_rank_weight(10, rank=2, noise=0.0))
    with pytest.warns(RuntimeWarning, match="numerical rank 2"):
        sub = perturbation_subspace(model, _image(), k=4, method=method)
    assert sub.basis.shape == (D, 2) and sub.singular_values.shape == (2,)


def test_zero_jacobian_raises():
    model = LinearModel(torch.zeros(3, D))
    with pytest.raises(ValueError, match="Jacobian is zero"):
        perturbation_subspace(model, _image(), k=1)


# --------------------------------------------------------------------------- similarity


def _random_basis(d: int, k: int, seed: int) -> np.ndarray:
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((d, k)))[0]


def test_similarity_identity_orthogonal_symmetric_rotation_invariant():
    p = _random_basis(50, 4, 0)
    assert subspace_similarity(p, p) == pytest.approx(1.0)
    e = np.eye(50)
    assert subspace_similarity(e[:, :3], e[:, 3:7]) == pytest.approx(0.0, abs=1e-12)
    q = _random_basis(50, 6, 1)
    assert subspace_similarity(p, q) == pytest.approx(subspace_similarity(q, p))
    rotation = _random_basis(4, 4, 2)
    scaled = p @ rotation @ np.diag([1.0, 2.0, 0.5, 3.0])  # same span, non-orthonormal basis
    assert subspace_similarity(scaled, q) == pytest.approx(subspace_similarity(p, q))
    assert subspace_similarity(torch.from_numpy(scaled).float(), p) == pytest.approx(1.0, abs=1e-6)
    # nested spans: the smaller one inside the larger -> 1
    assert subspace_similarity(e[:, :2], e[:, :5]) == pytest.approx(1.0)


def test_similarity_known_value_and_principal_angles():
    e = np.eye(6)
    theta = 0.3
    p = e[:, :2]
    q = np.stack([e[:, 0], np.cos(theta) * e[:, 1] + np.sin(theta) * e[:, 2]], axis=1)
    assert subspace_similarity(p, q) == pytest.approx((1 + np.cos(theta) ** 2) / 2)
    np.testing.assert_allclose(principal_angles(p, q), [0.0, theta], atol=1e-7)


def test_similarity_matrix_is_symmetric_with_unit_diagonal():
    bases = [_random_basis(30, 3, s) for s in range(3)] + [torch.from_numpy(_random_basis(30, 2, 9))]
    m = similarity_matrix(bases)
    assert m.shape == (4, 4)
    np.testing.assert_allclose(m, m.T)
    np.testing.assert_allclose(np.diag(m), 1.0)
    assert m[0, 1] == pytest.approx(subspace_similarity(bases[0], bases[1]))
    assert np.all((m >= 0) & (m <= 1))


def test_similarity_rejects_bad_bases():
    with pytest.raises(ValueError, match="different spaces"):
        subspace_similarity(np.ones((5, 1)), np.ones((6, 1)))
    with pytest.raises(ValueError, match="transpose"):
        subspace_similarity(np.ones((2, 5)), np.ones((2, 5)))
    with pytest.raises(ValueError, match="spans nothing"):
        subspace_similarity(np.zeros((5, 2)), np.ones((5, 1)))
    with pytest.raises(ValueError, match="NaN"):
        subspace_similarity(np.full((5, 1), np.nan), np.ones((5, 1)))


def test_float64_linear_algebra_stays_on_devices_with_float64():
    from probelib.geometry import _f64
    t = torch.ones(2, 2, device="meta")
    assert _f64(t).device.type == "meta" and _f64(t).dtype == torch.float64
    assert _f64(torch.ones(2)).dtype == torch.float64  # MPS (no float64) goes to the CPU instead


def test_block_subspaces_of_a_linear_model():
    """Each block's basis spans the top right singular vectors of its rows of W (the Jacobian)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3 * 4 * 4, generator=g, dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 5, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(w)
    images = np.random.default_rng(0).random((2, 3, 4, 4))
    out = block_subspaces(model, images, [3, 2], k=2)
    assert len(out) == 2 and [b.shape for b in out[0]] == [(48, 2), (48, 2)]
    for (a, b), rows in zip([(0, 3), (3, 5)], range(2)):
        vh = np.linalg.svd(w[a:b].numpy())[2][:2].T
        assert subspace_similarity(out[1][rows], vh) == pytest.approx(1.0, abs=1e-5)
