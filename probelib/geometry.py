"""Local geometry of an encoding model around one image.

For an image ``x`` of shape (3, H, W) and the responses ``r(x)`` of V output units (voxels or
ROIs), ``J = dr / dvec(x)`` is a (V, D) matrix with ``D = 3·H·W``; pixels are flattened in the
C order of (3, H, W), so row ``i`` reshaped to (3, H, W) is the gradient image of unit ``i``.
Units are response units per pixel-intensity unit (pixels in [0, 1]).

To first order a perturbation ``d`` changes the responses by ``J d``, so
``||r(x + d) - r(x)||² ≈ dᵀ JᵀJ d``: the unit-norm perturbations that change the responses most
are the top right singular vectors of ``J``. The top ``k`` of them span the *perturbation
subspace* (paper 2), and two models are compared by the principal angles between their
subspaces.

Everything here differentiates with respect to the input only (``torch.func`` / ``torch.autograd.grad``
with the image as the only input): parameter ``.grad`` fields are never touched, and the model is
put in eval mode for the duration of a call (its previous train/eval flags are restored).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import _torch
from ._checks import check_choice, check_images, check_positive_int, check_units

__all__ = [
    "Subspace",
    "jacobian",
    "perturbation_subspace",
    "principal_angles",
    "subspace_similarity",
    "similarity_matrix",
]

Units = Sequence[int] | np.ndarray | None
"""Output units to probe: integer indices into the V responses; None = all."""

METHODS = ("exact", "power", "randomized")
DEFAULT_N_ITER = {"power": 30, "randomized": 2}

# What torch.func raises when a model uses something a transform cannot handle (old-style
# autograd.Function, an op without a batching or forward-mode rule, ...): RuntimeError, whose
# subclasses include the error of an op with no implementation for the transform.
_TRANSFORM_ERRORS = (RuntimeError,)


@dataclass(eq=False)
class Subspace:
    """Top-k perturbation subspace of a model at one image (CPU tensors).

    Attributes
    ----------
    basis : (D, k) orthonormal columns, the top right singular vectors of J (D = 3·H·W),
        in order of decreasing singular value.
    singular_values : (k,) descending; ``s_j = ||J v_j||``, the first-order change of the
        response vector (L2 over the probed units) per unit L2 norm of pixel perturbation.
    response_directions : (U, k) left singular vectors, ``J v_j = s_j u_j``: how the probed units
        move along each direction. Sign convention: ``u_j.sum() >= 0``, so stepping along ``+v_j``
        raises the summed response of the probed units (to first order).
    units : (U,) indices of the probed output units.
    image_shape : (3, H, W).
    method : ``"exact"``, ``"power"`` or ``"randomized"``.
    """

    basis: torch.Tensor
    singular_values: torch.Tensor
    response_directions: torch.Tensor
    units: np.ndarray
    image_shape: tuple[int, int, int]
    method: str

    @property
    def k(self) -> int:
        """Number of directions."""
        return int(self.basis.shape[1])

    def directions(self) -> torch.Tensor:
        """The basis as ``k`` unit-L2-norm perturbation images, shape (k, 3, H, W)."""
        return self.basis.T.reshape(self.k, *self.image_shape)


# --------------------------------------------------------------------------- helpers


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _prepare(model: nn.Module, image: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    """Validate ``model`` and a single image; return the image as (1, 3, H, W) on the compute device."""
    _torch.check_module(model)
    if isinstance(image, torch.Tensor) and image.ndim == 3:
        image = image.unsqueeze(0)
    check_images(image, "image")
    if image.shape[0] != 1:
        raise ValueError(f"image must be one image of shape (3, H, W) or (1, 3, H, W); got {tuple(image.shape)}")
    model_device = _torch.model_device(model)
    if device is None:
        target = model_device if model_device is not None else image.device
    else:
        target = torch.device(device)
        if model_device is not None and not _same_device(model_device, target):
            raise ValueError(f"model lives on {model_device} but device={str(target)!r} was requested; "
                             f"move it first with model.to({str(target)!r})")
    return image.detach().to(target)


def _orth(a: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (same shape) of the column span of a tall matrix ``a``."""
    return torch.linalg.qr(a, mode="reduced")[0]


def _f64(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float64 for the small dense decompositions: on the CPU for MPS (no float64 there)."""
    return t.cpu().double() if t.device.type == "mps" else t.double()


def _rank_rtol(n_rows: int, n_cols: int, dtype: torch.dtype) -> float:
    """Relative threshold below which a singular value of J is treated as zero."""
    return 10.0 * math.sqrt(max(n_rows, n_cols)) * torch.finfo(dtype).eps


class _JacobianOperator:
    """Matrix-free ``J = d r[units] / d vec(x)`` of a model at one image.

    One forward pass builds the graph; ``rmatmat`` applies ``Jᵀ`` by vector-Jacobian products
    that reuse it, ``matmat`` applies ``J`` by Jacobian-vector products (forward mode). Batches
    of products are vectorised with ``torch.func.vmap``; if the model does not support a
    transform the operator falls back, once and for the rest of its life, to a loop
    (vmap unsupported), to double-backward ``J t = d/du <Jᵀu, t>`` (forward mode unsupported)
    or to plain ``torch.autograd.grad`` (``torch.func`` unsupported altogether).
    """

    def __init__(self, model: nn.Module, image: torch.Tensor, units: Units, chunk_size: int | None) -> None:
        self._model = model
        self._image_shape = image.shape
        self._x = image.reshape(-1)
        self._chunk_size = chunk_size
        self._vmap_ok = {"vjp": True, "jvp": True}
        self._jvp_ok = True
        self._graph: tuple[torch.Tensor, torch.Tensor] | None = None
        try:
            out, self._vjp_fn = torch.func.vjp(self._f, self._x)
        except _TRANSFORM_ERRORS:
            self._vjp_fn = None
            out = self._autograd_graph()[1]
        self.n_outputs = int(out.shape[0])
        self.units = check_units(units, self.n_outputs)
        self._idx = torch.as_tensor(self.units, device=image.device)
        self.dtype = out.dtype
        self.device = image.device
        self.shape = (len(self.units), self._x.numel())

    def _f(self, flat: torch.Tensor) -> torch.Tensor:
        out = self._model(flat.view(self._image_shape))
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"model must map images (N, 3, H, W) to responses (N, V); for one image it returned {shape}")
        return out[0]

    def _autograd_graph(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graph is None:
            x = self._x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                self._graph = (x, self._f(x))
        return self._graph

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, kind: str) -> torch.Tensor:
        if self._vmap_ok[kind]:
            try:
                return torch.func.vmap(fn, chunk_size=self._chunk_size)(rows)
            except _TRANSFORM_ERRORS:
                self._vmap_ok[kind] = False
        return torch.stack([fn(row) for row in rows])

    def rmatmat(self, cot: torch.Tensor) -> torch.Tensor:
        """Rows ``u`` (k, U) -> rows ``Jᵀu`` (k, D)."""
        full = cot.new_zeros(cot.shape[0], self.n_outputs).index_add_(1, self._idx, cot)
        if self._vjp_fn is not None:
            try:
                return self._map(lambda c: self._vjp_fn(c)[0], full, "vjp")
            except _TRANSFORM_ERRORS:
                self._vjp_fn = None
        x, out = self._autograd_graph()
        rows = []
        with torch.enable_grad():
            for c in full:
                g = torch.autograd.grad(out, x, c, retain_graph=True, allow_unused=True)[0] if out.requires_grad else None
                rows.append(torch.zeros_like(x) if g is None else g)
        return torch.stack(rows).detach()

    def matmat(self, tangents: torch.Tensor) -> torch.Tensor:
        """Rows ``t`` (k, D) -> rows ``J t`` (k, U)."""
        if self._jvp_ok:
            try:
                jt = self._map(lambda t: torch.func.jvp(self._f, (self._x,), (t,))[1], tangents, "jvp")
                return jt[:, self._idx]
            except _TRANSFORM_ERRORS:
                self._jvp_ok = False
        x, out = self._autograd_graph()
        rows = []
        with torch.enable_grad():
            for t in tangents:
                jt = None
                if out.requires_grad:
                    u = torch.zeros_like(out, requires_grad=True)
                    g = torch.autograd.grad(out, x, u, create_graph=True, retain_graph=True, allow_unused=True)[0]
                    if g is not None and g.requires_grad:
                        jt = torch.autograd.grad(g, u, t, retain_graph=True, allow_unused=True)[0]
                rows.append(torch.zeros_like(out) if jt is None else jt)
        return torch.stack(rows).detach()[:, self._idx]

    def dense(self) -> torch.Tensor:
        """The full (U, D) Jacobian: U vector-Jacobian products of the single forward pass."""
        return self.rmatmat(torch.eye(self.shape[0], dtype=self.dtype, device=self.device))


# --------------------------------------------------------------------------- Jacobian


def jacobian(model: nn.Module, image: torch.Tensor, units: Units = None, device: str | torch.device | None = None,
             chunk_size: int | None = 32) -> torch.Tensor:
    """Jacobian of the responses with respect to the pixels at one image.

    Parameters
    ----------
    model : maps images (N, 3, H, W) in [0, 1] to responses (N, V).
    image : (3, H, W) or (1, 3, H, W), pixels in [0, 1].
    units : indices of the output units to differentiate (default all V).
    device : where to compute; None = device of the model's first parameter (or of the image).
    chunk_size : vector-Jacobian products vectorised at once (bounds memory); None = all.

    Returns
    -------
    (U, 3·H·W) CPU tensor; row ``i`` is ``d r[units[i]] / d vec(x)`` (response units per unit
    pixel intensity). Cost: one forward pass and U backward passes.
    """
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    x = _prepare(model, image, device)
    with _torch.evaluating(model), torch.no_grad():  # no graph through the parameters
        op = _JacobianOperator(model, x, units, chunk_size)
        return op.dense().detach().cpu()


# --------------------------------------------------------------------------- perturbation subspace


def _exact_svd(op: _JacobianOperator, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k singular triplets: left vectors from the eigen-decomposition of the (U, U) matrix J Jᵀ,
    singular values from J itself (``sqrt`` of J Jᵀ's eigenvalues has a noise floor near
    ``sqrt(eps)·s_max``, far above the rank threshold, so a rank deficit would go unseen)."""
    jac = _f64(op.dense())
    evecs = torch.linalg.eigh(jac @ jac.T).eigenvectors.flip(1)
    s = torch.linalg.svdvals(jac)
    rtol = _rank_rtol(*op.shape, op.dtype)
    keep = min(k, int((s > rtol * s[0]).sum()))
    left = evecs[:, :keep]
    right = (jac.T @ left) / s[:keep]
    # Re-orthonormalise (removes rounding drift) without reordering or flipping columns.
    q, r = torch.linalg.qr(right, mode="reduced")
    right = q * torch.sign(torch.diagonal(r))
    return s, left, right


def _subspace_iteration(op: _JacobianOperator, q: torch.Tensor, n_iter: int,
                        tol: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Block power iteration on JᵀJ from an orthonormal (D, b) start, then Rayleigh-Ritz.

    Runs at most ``n_iter`` applications of JᵀJ; stops early when the Ritz values change by less
    than ``tol`` relative to the largest. Returns all b singular triplets (descending).
    """
    previous = None
    for it in range(n_iter + 1):
        z = op.matmat(q.T).T                                        # (U, b) = J Q
        left, s, wt = torch.linalg.svd(_f64(z), full_matrices=False)
        converged = (tol is not None and previous is not None
                     and float((s - previous).abs().max()) <= tol * float(s[0]))
        if it == n_iter or converged:
            break
        previous = s
        q = _orth(op.rmatmat(left.T.to(op.device, op.dtype)).T)     # span of Jᵀ J Q
    right = _f64(q) @ wt.T
    return s, left, right


def perturbation_subspace(model: nn.Module, image: torch.Tensor, k: int, method: str = "exact", units: Units = None,
                          n_iter: int | None = None, oversample: int = 8, tol: float = 1e-3, seed: int = 0,
                          device: str | torch.device | None = None, chunk_size: int | None = 32) -> Subspace:
    """Top-k right singular vectors of the Jacobian J (U, D) at one image.

    Parameters
    ----------
    model : maps images (N, 3, H, W) in [0, 1] to responses (N, V).
    image : (3, H, W) or (1, 3, H, W), pixels in [0, 1].
    k : number of directions, ``1 <= k <= min(U, D)``.
    method :
        ``"exact"``: form J (one forward, U backward passes), eigen-decompose the U×U matrix
        J Jᵀ and take the singular values from J; ``v_j = Jᵀ u_j / s_j``. Best when U is small (an ROI, up to a few thousand voxels).
        ``"power"``: matrix-free block power (subspace) iteration on JᵀJ with JVPs and VJPs only,
        block ``k + oversample``, at most ``n_iter`` (default 30) iterations, stopping when the
        singular values change by at most ``tol`` (relative to the largest).
        ``"randomized"``: Halko-Martinsson-Tropp randomized SVD of Jᵀ (Gaussian sketch of
        ``k + oversample`` VJPs, ``n_iter`` (default 2) power iterations, Rayleigh-Ritz).
        The matrix-free methods never form J; they need a spectral gap after the k-th value.
    units : output units to probe (default all V).
    seed : seed of the random start of the matrix-free methods (results are deterministic).
    device, chunk_size : as in :func:`jacobian`.

    If J has numerical rank ``< k`` (singular values below ``10·sqrt(max(U, D))·eps·s_max``) a
    ``RuntimeWarning`` is issued and only the rank-many well-defined directions are returned.

    Returns
    -------
    :class:`Subspace` with ``basis`` (D, k) and ``singular_values`` (k,) on the CPU.
    """
    check_choice(method, METHODS, "method")
    k = check_positive_int(k, "k")
    if chunk_size is not None:
        check_positive_int(chunk_size, "chunk_size")
    oversample = check_positive_int(oversample, "oversample", minimum=0)
    if method != "exact":
        n_iter = DEFAULT_N_ITER[method] if n_iter is None else check_positive_int(
            n_iter, "n_iter", minimum=1 if method == "power" else 0)
    if not (isinstance(tol, (int, float)) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0; got {tol!r}")
    x = _prepare(model, image, device)
    with _torch.evaluating(model), torch.no_grad():  # no graph through the parameters
        op = _JacobianOperator(model, x, units, chunk_size)
        n_units, dim = op.shape
        if k > min(n_units, dim):
            raise ValueError(f"k={k} exceeds min(number of probed units, 3·H·W) = min({n_units}, {dim}), "
                             "an upper bound on the rank of the Jacobian")
        if method == "exact":
            s, left, right = _exact_svd(op, k)
        else:
            block = min(k + oversample, n_units, dim)
            gen = torch.Generator().manual_seed(int(seed))
            if method == "power":
                start = _orth(torch.randn(dim, block, generator=gen, dtype=op.dtype).to(op.device))
                s, left, right = _subspace_iteration(op, start, n_iter, tol)
            else:
                sketch = torch.randn(n_units, block, generator=gen, dtype=op.dtype).to(op.device)
                start = _orth(op.rmatmat(sketch.T).T)                # range of Jᵀ Ω
                s, left, right = _subspace_iteration(op, start, n_iter, None)
    if float(s[0]) == 0.0:
        raise ValueError("the Jacobian is zero at this image (the probed responses do not depend on the "
                         "pixels locally): there is no perturbation subspace")
    rtol = _rank_rtol(n_units, dim, op.dtype)
    rank = int((s > rtol * s[0]).sum())
    if rank < k:
        warnings.warn(f"k={k} exceeds the numerical rank {rank} of the Jacobian (singular values below "
                      f"{rtol:.1e}·s_max treated as zero); returning {rank} directions", RuntimeWarning,
                      stacklevel=2)
    keep = min(k, rank)
    s, left, right = s[:keep], left[:, :keep], right[:, :keep]
    flip = torch.where(left.sum(0) < 0, -1.0, 1.0).to(left.dtype)
    return Subspace(
        basis=(right * flip).to(op.dtype).cpu(),
        singular_values=s.to(op.dtype).cpu(),
        response_directions=(left * flip).to(op.dtype).cpu(),
        units=op.units,
        image_shape=tuple(int(n) for n in x.shape[1:]),
        method=method,
    )


# --------------------------------------------------------------------------- subspace similarity


def _orthonormal_basis(p, name: str) -> np.ndarray:
    """Orthonormal basis (D, rank) of the column span of ``p`` (D, k): numpy, torch or Subspace."""
    if isinstance(p, Subspace):
        p = p.basis
    if isinstance(p, torch.Tensor):
        p = p.detach().cpu().double().numpy()
    a = np.asarray(p, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.size == 0:
        raise ValueError(f"{name} must be a (D, k) matrix whose columns span a subspace; got shape {a.shape}")
    if a.shape[1] > a.shape[0]:
        raise ValueError(f"{name} has more columns than rows {a.shape}: bases are (D, k) with the directions "
                         "as columns (did you pass the transpose?)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    rank = int((s > s.max() * max(a.shape) * np.finfo(np.float64).eps).sum()) if s.max() > 0 else 0
    if rank == 0:
        raise ValueError(f"{name} spans nothing (all columns are zero)")
    return u[:, :rank]


def _similarity(p: np.ndarray, q: np.ndarray) -> float:
    if p.shape[0] != q.shape[0]:
        raise ValueError(f"subspaces live in different spaces: D = {p.shape[0]} vs {q.shape[0]}")
    value = float(np.sum((p.T @ q) ** 2)) / min(p.shape[1], q.shape[1])
    return min(max(value, 0.0), 1.0)


def principal_angles(p, q) -> np.ndarray:
    """Principal angles (radians, ascending, ``min(k1, k2)`` of them) between spans of p (D, k1) and q (D, k2)."""
    p, q = _orthonormal_basis(p, "P"), _orthonormal_basis(q, "Q")
    if p.shape[0] != q.shape[0]:
        raise ValueError(f"subspaces live in different spaces: D = {p.shape[0]} vs {q.shape[0]}")
    cos = np.linalg.svd(p.T @ q, compute_uv=False)
    return np.sort(np.arccos(np.clip(cos, 0.0, 1.0)))


def subspace_similarity(p, q) -> float:
    """Mean squared cosine of the principal angles between the spans of p (D, k1) and q (D, k2).

    Equals ``||Pᵀ Q||_F² / min(k1, k2)`` with P, Q orthonormal bases of the spans (inputs need not be
    orthonormal; numpy arrays, torch tensors or :class:`Subspace`). 1 when the smaller span lies in
    the larger, 0 when orthogonal; symmetric and invariant to any change of basis within each span.
    Chance level for random k-dimensional subspaces of R^D is about ``max(k1, k2) / D``.
    """
    return _similarity(_orthonormal_basis(p, "P"), _orthonormal_basis(q, "Q"))


def similarity_matrix(bases: Sequence) -> np.ndarray:
    """Symmetric (n, n) matrix of :func:`subspace_similarity` between n bases (unit diagonal)."""
    ortho = [_orthonormal_basis(b, f"bases[{i}]") for i, b in enumerate(bases)]
    if not ortho:
        raise ValueError("bases must contain at least one basis")
    n = len(ortho)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = _similarity(ortho[i], ortho[j])
    return out


@dataclass
class SubspacePanel:
    """Top-k perturbation subspaces of M models at N images (same output units for all).

    Attributes
    ----------
    names : the M model names.
    bases : (M, N, D, k) float32 orthonormal columns (top right singular vectors of J at each
        image; ``D = 3 * H * W`` in the C order of (3, H, W)).
    singular_values : (M, N, k) descending; first-order response change (L2 over the units)
        per unit L2 norm of pixel perturbation.
    units : (U,) output units of the Jacobian; image_index : (N,) images (dataset indices);
    image_shape : (3, H, W); roi : label.
    """

    names: list[str]
    bases: np.ndarray
    singular_values: np.ndarray
    units: np.ndarray
    image_index: np.ndarray
    image_shape: tuple[int, int, int]
    roi: str = ""

    @property
    def k(self) -> int:
        return int(self.bases.shape[-1])

    @property
    def chance(self) -> float:
        """Expected similarity of two random k-dimensional subspaces of R^D: ``k / D``."""
        return self.k / self.bases.shape[2]

    def similarity(self) -> np.ndarray:
        """(N, M, M) mean squared cosine of the principal angles between models, per image."""
        return np.stack([similarity_matrix([self.bases[m, i] for m in range(len(self.names))])
                         for i in range(self.bases.shape[1])])

    def directions(self, model: str, image_position: int) -> np.ndarray:
        """The k directions of ``model`` at the ``image_position``-th image: (k, 3, H, W)."""
        m = self.names.index(model)
        return self.bases[m, image_position].T.reshape(self.k, *self.image_shape)

    def similarity_by_dimension(self, a: str, b: str) -> np.ndarray:
        """(N, k) similarity of the top-j subspaces of models ``a`` and ``b`` for j = 1..k.

        The bases are nested (ordered singular vectors), so ``[:, j-1]`` is
        ``subspace_similarity`` of the first j columns; chance is ``j / D``.
        """
        pa = self.bases[self.names.index(a)].astype(np.float64)      # (N, D, k)
        pb = self.bases[self.names.index(b)].astype(np.float64)
        cross = np.einsum("ndi,ndj->nij", pa, pb) ** 2               # (N, k, k)
        dims = np.arange(1, self.k + 1)
        return np.stack([cross[:, :j, :j].sum((1, 2)) / j for j in dims], axis=1)


def _top_right_singular(jac: torch.Tensor, k: int) -> np.ndarray:
    """Orthonormal basis (D, k') of the top-k right singular vectors of ``jac`` (U, D), k' <= k
    (directions with a numerically zero singular value are left out)."""
    j = jac.double()
    _, sv, vh = torch.linalg.svd(j, full_matrices=False)
    if float(sv[0]) == 0.0:
        raise ValueError("the Jacobian is zero at this image: the responses do not depend on the pixels")
    rank = int((sv > sv[0] * max(j.shape) * torch.finfo(torch.float64).eps * 10).sum())
    return vh[: min(k, rank)].T.numpy().astype(np.float32)


def block_subspaces(model: nn.Module, images, widths: Sequence[int], k: int, device=None) -> list[list[np.ndarray]]:
    """Per image, per block of output units (``widths[b]`` consecutive outputs, e.g. one block per
    ROI), the top-k right singular vectors of that block's rows of the Jacobian (one forward pass
    per image for all blocks): ``out[image][block]`` (D, k') float32, k' <= k (directions with a
    numerically zero singular value are left out). images : (N, 3, H, W) numpy, in [0, 1]."""
    starts = np.cumsum([0, *widths])
    out = []
    for img in images:
        jac = jacobian(model, torch.from_numpy(np.ascontiguousarray(img)), device=device)  # (sum of widths, D)
        out.append([_top_right_singular(jac[a:b], k) for a, b in zip(starts[:-1], starts[1:])])
    return out

