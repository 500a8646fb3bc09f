"""Properties of probelib.geometry: subspace comparisons, their inputs and their errors.

Principal angles are finite and zero between a span and itself even when rounding makes a cosine
exceed 1; a single vector, a square basis, a one-element basis and non-float arrays are accepted;
every error names the basis at fault; the similarity matrix holds every pair; the top-k subspace
is the top (not bottom) of the spectrum, with the documented sign convention.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import probelib as pl
from probelib import geometry
from probelib.geometry import principal_angles, similarity_matrix, subspace_similarity


@pytest.mark.parametrize("call,message", [
    (lambda: principal_angles(np.ones((2, 2, 2)), np.eye(2)),
     r"^P must be a \(D, k\) matrix whose columns span a subspace; got shape \(2, 2, 2\)$"),
    (lambda: principal_angles(np.eye(3), np.ones((0, 1))),
     r"^Q must be a \(D, k\) matrix whose columns span a subspace; got shape \(0, 1\)$"),
    (lambda: principal_angles(np.eye(4), np.eye(5)), r"^subspaces live in different spaces: D = 4 vs 5$"),
    (lambda: subspace_similarity(np.eye(4)[:, :2], np.eye(5)[:, :3]),
     r"^subspaces live in different spaces: D = 4 vs 5$"),
    (lambda: subspace_similarity(np.ones((2, 3)), np.eye(3)),
     r"^P has more columns than rows \(2, 3\): bases are \(D, k\) with the directions as columns "
     r"\(did you pass the transpose\?\)$"),
    (lambda: subspace_similarity(np.eye(3), np.zeros((3, 2))), r"^Q spans nothing \(all columns are zero\)$"),
    (lambda: subspace_similarity(np.full((3, 1), np.nan), np.eye(3)), r"^P contains NaN or infinite values$"),
    (lambda: similarity_matrix([np.eye(3), np.zeros((3, 1))]), r"^bases\[1\] spans nothing"),
    (lambda: similarity_matrix([]), r"^bases must contain at least one basis$"),
])
def test_errors_name_the_basis_at_fault(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", range(6))
def test_a_span_makes_zero_angles_with_itself(seed):
    a = np.random.default_rng(seed).standard_normal((7, 3))
    angles = principal_angles(a, a @ np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [3.0, 0.0, 1.0]]))
    assert np.all(np.isfinite(angles))
    np.testing.assert_allclose(angles, 0.0, atol=1e-7)   # arccos near 1: sqrt of the rounding
    assert np.all(np.isfinite(principal_angles(a, a)))
    assert 0.0 <= subspace_similarity(a, a) <= 1.0


def test_accepted_basis_forms():
    e = np.eye(4)
    assert principal_angles(e[:, 0], e[:, :2]).tolist() == [0.0]               # a vector is (D, 1)
    np.testing.assert_allclose(principal_angles(e[:, 0], e[:, 1]), [np.pi / 2])
    np.testing.assert_allclose(principal_angles(e, np.random.default_rng(0).normal(size=(4, 4))), 0.0,
                               atol=1e-7)                                      # k = D
    assert principal_angles([[1.0]], [[2.0]]).tolist() == [0.0]                # D = k = 1
    assert subspace_similarity(np.array([[True], [False]]), e[:2, :1]) == 1.0   # booleans
    assert subspace_similarity(np.array([[1], [0], [0]]), e[:3, :2]) == 1.0    # integers
    assert subspace_similarity(torch.eye(3)[:, :1], e[:3, :1]) == 1.0
    angles = principal_angles(e[:, :3], np.column_stack([e[:, 0], (e[:, 1] + e[:, 3]) / np.sqrt(2)]))
    np.testing.assert_allclose(angles, [0.0, np.pi / 4], atol=1e-12)
    assert subspace_similarity(e[:, :3], np.column_stack([e[:, 0], e[:, 1] + e[:, 3]])) == pytest.approx(0.75)


def test_similarity_matrix_holds_every_pair():
    rng = np.random.default_rng(1)
    bases = [rng.normal(size=(6, k)) for k in (1, 2, 3, 2)]
    m = similarity_matrix(bases)
    assert m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert m[i, j] == pytest.approx(subspace_similarity(bases[i], bases[j]))
    np.testing.assert_array_equal(np.diag(m), 1.0)
    assert similarity_matrix([bases[0]]).tolist() == [[1.0]]


def test_same_device_rule():
    d = torch.device
    assert geometry._same_device(d("cuda", 0), d("cuda", 0))
    assert geometry._same_device(d("cuda"), d("cuda", 1))
    assert geometry._same_device(d("cuda", 1), d("cuda"))
    assert not geometry._same_device(d("cuda", 0), d("cuda", 1))
    assert not geometry._same_device(d("cpu"), d("cuda"))


class _Diag(nn.Module):
    """r = W vec(x) with W = U diag(s) V^T of known singular values."""

    def __init__(self, s, side=3, seed=0):
        super().__init__()
        d = 3 * side * side
        g = torch.Generator().manual_seed(seed)
        u = torch.linalg.qr(torch.randn(len(s), len(s), generator=g, dtype=torch.float64))[0]
        v = torch.linalg.qr(torch.randn(d, len(s), generator=g, dtype=torch.float64))[0]
        self.register_buffer("w", u @ torch.diag(torch.as_tensor(s, dtype=torch.float64)) @ v.T)
        self.v = v

    def forward(self, x):
        return x.flatten(1) @ self.w.T


@pytest.mark.parametrize("method", ["exact", "power"])
def test_subspace_is_the_top_of_the_spectrum(method):
    s = [9.0, 5.0, 2.0, 1.0, 0.5]
    model = _Diag(s)
    x = torch.full((3, 3, 3), 0.5, dtype=torch.float64)
    sub = pl.perturbation_subspace(model, x, k=2, method=method, n_iter=8 if method != "exact" else None)
    np.testing.assert_allclose(sub.singular_values.numpy(), s[:2], rtol=1e-6)
    assert subspace_similarity(sub.basis, model.v[:, :2]) == pytest.approx(1.0, abs=1e-6)
    assert subspace_similarity(sub.basis, model.v[:, 3:]) == pytest.approx(0.0, abs=1e-6)
    # J v_j = s_j u_j, and the sign convention u_j.sum() >= 0
    jv = (model.w @ sub.basis.double()).numpy()
    np.testing.assert_allclose(jv, sub.response_directions.numpy() * sub.singular_values.numpy(), atol=1e-6)
    assert np.all(sub.response_directions.numpy().sum(0) >= 0)
    np.testing.assert_allclose(sub.basis.T.double() @ sub.basis.double(), np.eye(2), atol=1e-8)
    assert sub.k == 2 and sub.directions().shape == (2, 3, 3, 3) and sub.method == method
    np.testing.assert_array_equal(sub.units, np.arange(5))


# ------------------------------------------------------------------------------------------------
# SubspacePanel: the models' subspaces at each image, compared per image
# ------------------------------------------------------------------------------------------------

def _subspace_panel(k: int = 3, n_images: int = 2, seed: int = 0) -> geometry.SubspacePanel:
    """Three models at ``n_images`` images of shape (3, 2, 2) (D = 12): random orthonormal bases,
    except that model "b" has model "a"'s subspace at image 0 (columns in reverse order) and "c" a
    subspace orthogonal to "a"'s at image 1."""
    rng = np.random.default_rng(seed)
    bases = np.stack([[np.linalg.qr(rng.standard_normal((12, k)))[0] for _ in range(n_images)]
                      for _ in range(3)])
    bases[1, 0] = bases[0, 0][:, ::-1]
    q = np.linalg.qr(np.concatenate([bases[0, 1], rng.standard_normal((12, k))], axis=1))[0]
    bases[2, 1] = q[:, k:2 * k]
    sv = np.sort(rng.uniform(1, 2, (3, n_images, k)))[..., ::-1]
    return geometry.SubspacePanel(["a", "b", "c"], bases.astype(np.float32), sv.astype(np.float32),
                                  np.arange(4), np.array([7, 3])[:n_images], (3, 2, 2), "FFA")


def test_subspace_panel_similarity_is_the_matrix_of_each_image():
    p = _subspace_panel()
    s = p.similarity()
    assert s.shape == (2, 3, 3)
    for i in range(2):
        np.testing.assert_allclose(s[i], similarity_matrix([p.bases[m, i] for m in range(3)]), atol=1e-6)
        for a in range(3):
            for b in range(3):
                assert s[i, a, b] == pytest.approx(subspace_similarity(p.bases[a, i], p.bases[b, i]), abs=1e-6)
    np.testing.assert_allclose(s, s.transpose(0, 2, 1))
    np.testing.assert_allclose(np.diagonal(s, axis1=1, axis2=2), 1.0, atol=1e-6)
    assert s[0, 0, 1] == pytest.approx(1.0, abs=1e-6)   # the same span, another order
    assert s[1, 0, 2] == pytest.approx(0.0, abs=1e-6)   # orthogonal spans
    assert 0 < s[1, 0, 1] < 1
    assert p.k == 3 and p.chance == pytest.approx(3 / 12)


def test_similarity_by_dimension_is_the_similarity_of_the_top_j_directions():
    p = _subspace_panel(k=4, seed=1)
    for a, b in (("a", "b"), ("b", "c"), ("c", "a")):
        by_dim = p.similarity_by_dimension(a, b)
        assert by_dim.shape == (2, 4)
        ia, ib = p.names.index(a), p.names.index(b)
        for i in range(2):
            for j in range(1, 5):
                expected = subspace_similarity(p.bases[ia, i][:, :j], p.bases[ib, i][:, :j])
                assert by_dim[i, j - 1] == pytest.approx(expected, abs=1e-6), (a, b, i, j)
        np.testing.assert_allclose(by_dim[:, -1], p.similarity()[:, ia, ib], atol=1e-6)
    np.testing.assert_allclose(p.similarity_by_dimension("c", "c"), 1.0, atol=1e-6)
    # image 0: "b" holds "a"'s directions in reverse order: the full spans agree, the first one does not
    by_dim = p.similarity_by_dimension("a", "b")
    assert by_dim[0, -1] == pytest.approx(1.0, abs=1e-6) and by_dim[0, 0] < 0.5


def test_directions_are_a_models_basis_columns_as_images():
    p = _subspace_panel()
    for model, m in (("b", 1), ("c", 2)):
        for i in range(2):
            d = p.directions(model, i)
            assert d.shape == (3, 3, 2, 2)
            for j in range(3):
                np.testing.assert_array_equal(d[j].reshape(-1), p.bases[m, i][:, j])
