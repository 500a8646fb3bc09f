"""Fitted linear estimators of scikit-learn or himalaya as differentiable readouts
(:func:`as_readout`)."""
from __future__ import annotations

import numpy as np
import torch

from .linear import LinearReadout


def _get_readout_class() -> type:
    from .regressor import Readout

    return Readout


def _as_numpy(value, what: str) -> np.ndarray:
    """numpy, torch (any device) or cupy array -> float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        value = value.get()
    arr = np.array(value, dtype=np.float64)  # a copy: later changes to the estimator do not reach it
    if not np.isfinite(arr).all():
        raise ValueError(f"the estimator's {what} contains NaN or infinite values")
    return arr


def _linear_parts(est) -> tuple[np.ndarray, np.ndarray, str]:
    """(weight (V, D), bias (V,), description) of one fitted linear estimator."""
    if isinstance(est, _get_readout_class()):
        if not hasattr(est, "module_"):
            raise ValueError("the Readout is not fitted: call fit(X, y) first")
        if est.kind not in ("ols", "ridge", "lasso"):
            raise ValueError(f"a {est.kind!r} Readout is not linear: use est.module_ directly")
        m = est.module_
        return _as_numpy(m.weight, "weight"), _as_numpy(m.bias, "bias"), f"Readout({est.kind})"
    name = f"{type(est).__module__.split('.')[0]}.{type(est).__name__}"
    coef = getattr(est, "coef_", None)
    if coef is None and hasattr(est, "get_primal_coef"):  # himalaya kernel ridge, linear kernel
        coef = est.get_primal_coef()
    if coef is None:
        raise ValueError(f"{name} has no coef_: not a fitted linear estimator (fit it first; kernel "
                         "models need a linear kernel)")
    w = _as_numpy(coef, "coef_")
    transposed = type(est).__module__.startswith("himalaya")  # himalaya: coef_ (D,) or (D, V)
    if w.ndim == 1:
        w = w[None, :]
    elif w.ndim == 2 and transposed:
        w = w.T
    elif w.ndim != 2:
        raise ValueError(f"{name}.coef_ must be 1-D or 2-D; got shape {w.shape}")
    n_in = getattr(est, "n_features_in_", None)
    if isinstance(n_in, (int, np.integer)) and w.shape[1] != n_in:
        raise ValueError(f"{name}.coef_ has shape {w.shape}, which does not match n_features_in_ = "
                         f"{n_in} (expected (V, {n_in}))")
    b = getattr(est, "intercept_", 0.0)
    b = np.zeros(w.shape[0]) if b is None else np.broadcast_to(_as_numpy(b, "intercept_"), (w.shape[0],))
    return w, np.array(b, dtype=np.float64), name


def _fold_scaler(step, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold ``x -> (x - mean) / scale`` (a fitted StandardScaler) into ``w x + b``."""
    n = w.shape[1]
    # scikit-learn keeps mean_ without centring (with_mean=False) and sets scale_ = None without scaling
    mean = _as_numpy(step.mean_, "mean_") if step.with_mean else np.zeros(n)
    scale = np.ones(n) if step.scale_ is None else _as_numpy(step.scale_, "scale_")
    if scale.shape != (n,) or mean.shape != (n,):
        raise ValueError(f"the scaler was fitted on {step.n_features_in_} features, the estimator on {n}")
    w2 = w / scale
    return w2, b - w2 @ mean


def as_readout(estimator) -> LinearReadout:
    """A fitted linear estimator as a differentiable readout (``nn.Module``, features (N, D) ->
    responses (N, V)), so that a fit made with scikit-learn or himalaya can be probed:
    ``EncodingModel(encoder, as_readout(est))``.

    Accepts anything with ``coef_`` and ``intercept_`` (``Ridge``, ``RidgeCV``, ``Lasso``,
    ``LinearRegression``, himalaya's ``Ridge`` / ``RidgeCV`` / ``GroupRidgeCV`` whose ``coef_`` is
    (D, V), numpy, torch or cupy), himalaya kernel ridge with a linear kernel
    (``get_primal_coef()``), a fitted :class:`Readout`, a ``Pipeline`` of ``StandardScaler`` steps
    followed by one of these (the scaling is folded into the weights), a fitted search
    (``GridSearchCV``: its ``best_estimator_``) and ``MultiOutputRegressor`` (one estimator per
    response). The weights are copied (float32); later changes to the estimator do not reach
    the readout.
    """
    est = getattr(estimator, "best_estimator_", estimator)
    steps = getattr(est, "steps", None)
    scalers = []
    if steps is not None:  # a Pipeline: scalers, then the linear estimator
        *pre, (_, est) = steps
        from sklearn.preprocessing import StandardScaler

        for label, step in pre:
            if step is None or (isinstance(step, str) and step == "passthrough"):
                continue
            if not isinstance(step, StandardScaler) or not hasattr(step, "n_features_in_"):
                raise ValueError(f"pipeline step {label!r} ({type(step).__name__}) is not a fitted "
                                 "StandardScaler; only standard scaling can be folded into a linear readout")
            scalers.append(step)
    if hasattr(est, "estimators_") and not hasattr(est, "coef_"):  # MultiOutputRegressor
        parts = [_linear_parts(e) for e in est.estimators_]
        w = np.concatenate([p[0] for p in parts])
        b = np.concatenate([p[1] for p in parts])
        name = f"MultiOutputRegressor({parts[0][2]})"
    else:
        w, b, name = _linear_parts(est)
    for step in reversed(scalers):
        w, b = _fold_scaler(step, w, b)
    hp = {"kind": f"wrapped {name}", "n_features": int(w.shape[1]),
          "pipeline": [type(s).__name__ for s in scalers] + [name]}
    return LinearReadout(w, b, f"wrapped:{name}", hp)
