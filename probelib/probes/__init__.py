"""Adversarial probes of encoding models in pixel space (one module per probe).

Every function takes any ``torch.nn.Module`` mapping images ``(N, 3, H, W)`` (float, pixels in
[0, 1], NCHW) to responses ``(N, V)`` (voxels or ROIs; a 1-D output is read as ``V = 1``).
Perturbed images are always clamped to the box [0, 1].

Sensitivity of unit ``i`` at image ``x`` for a perturbation ``d`` with ``||d|| <= eps``:

- ``"decrease"`` (paper 1): ``s_i = r_i(x) - r_i(x + d)``, ``d`` chosen to lower the response;
- ``"increase"``: ``s_i = r_i(x + d) - r_i(x)``, ``d`` chosen to raise it;
- ``"abs"`` (paper 2): both directions are probed and the one with the larger absolute change
  is kept (on an exact tie, the decrease), ``s_i = |r_i(x + d) - r_i(x)|`` (the signed change is
  ``perturbed - clean``).

Norms: ``"linf"`` (``eps`` = max change of any pixel, e.g. ``3/255``) and ``"l2"`` (``eps`` =
Euclidean norm of the whole ``(3, H, W)`` perturbation, pixels in [0, 1] units).

Models are put in eval mode and their parameters are frozen for the duration of a call (training
flags, ``requires_grad`` flags and the model's device are restored afterwards); gradients are
taken with respect to the input only. ``device=None`` means the device of the model's first
parameter (or buffer), else the device of the images. Results are dataclasses of numpy arrays.
Images in a batch must be processed independently by the model (true for eval-mode networks).
"""
from __future__ import annotations

from ._common import sensitivity_of_change
from .controls import random_control, shuffled_control
from .fgsm import fgsm
from .fixed_effect import fixed_effect
from .optimize import maximize, minimize
from .pgd import pgd
from .results import DIRECTIONS, NORMS, FixedEffectResult, OptimizationResult, ProbeResult
from .transfer import transfer

__all__ = ["DIRECTIONS", "NORMS", "ProbeResult", "FixedEffectResult", "OptimizationResult",
           "fgsm", "pgd", "shuffled_control", "random_control", "fixed_effect",
           "maximize", "minimize", "transfer", "sensitivity_of_change"]
