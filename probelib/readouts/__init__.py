"""Readouts: maps from encoder features to voxel responses, fitted once, then differentiable.

``fit_readout(kind, features, responses, seed=0, **options)`` returns an ``nn.Module`` mapping
features ``(N, D)`` (``(N, C, h, w)`` for ``"cnn"``) to responses ``(N, V)``. Kinds:

- ``"ols"``: least squares with intercept (minimum-norm solution when D > N).
- ``"ridge"``: L2 penalty; ``alphas`` grid, alpha chosen per voxel (``per_voxel=True``) or shared
  by exact leave-one-out cross-validation on the training images only (the same criterion as
  scikit-learn's ``RidgeCV``); ``alphas=[a]`` fixes it.
- ``"lasso"``: L1 penalty, solved exactly by LARS (:func:`lasso_lars`, the same solution as
  scikit-learn's ``Lasso``, far faster when features >> images); with several ``alphas`` the
  alpha is chosen per voxel by K-fold CV (:func:`lasso_cv`, the criterion of ``LassoCV``).
- ``"mlp"``: one hidden layer of 128 ReLU units; weight decay chosen on a validation split.
- ``"cnn"``: one hidden 3x3 conv layer of 128 channels on spatial features, then linear.

Every readout records its hyper-parameters in ``readout.hparams``.

The same readouts as scikit-learn estimators: :class:`Readout` (``fit`` / ``predict`` / ``score``,
``get_params`` / ``set_params``); a linear estimator fitted with scikit-learn or himalaya becomes a
differentiable readout with :func:`as_readout`.
"""
from __future__ import annotations

from .fit import DEFAULT_LASSO_ALPHAS, DEFAULT_RIDGE_ALPHAS, DEFAULT_WEIGHT_DECAYS, KINDS, fit_readout
from .estimator import as_readout
from .lasso import (PAPER_LASSO_ALPHAS, RELATIVE_LASSO_ALPHAS, AlphaSelection, lasso_alpha_max,
                    lasso_cv, lasso_cv_predictions, lasso_lars, lasso_readout, select_lasso_alpha)
from .linear import LinearReadout, ridge_loo
from .nets import NetReadout

__all__ = ["KINDS", "DEFAULT_RIDGE_ALPHAS", "DEFAULT_LASSO_ALPHAS", "DEFAULT_WEIGHT_DECAYS",
           "LinearReadout", "NetReadout", "Readout", "fit_readout", "as_readout", "ridge_loo",
           "lasso_alpha_max", "lasso_lars", "lasso_cv", "lasso_cv_predictions", "lasso_readout",
           "PAPER_LASSO_ALPHAS", "RELATIVE_LASSO_ALPHAS", "AlphaSelection", "select_lasso_alpha"]


def __getattr__(name: str):
    if name == "Readout":  # PEP 562: defined on first use, then an ordinary module attribute
        from .regressor import Readout

        globals()["Readout"] = Readout
        return Readout
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
