"""The readouts as scikit-learn estimators (:class:`Readout`), and fitted linear estimators of
scikit-learn or himalaya as differentiable readouts (:func:`as_readout`)."""
from __future__ import annotations

import numpy as np
import torch

from .._checks import check_choice
from .fit import KINDS, fit_readout
from .linear import LinearReadout



def _readout_class() -> type:
    """Define :class:`Readout` on first use (scikit-learn's base classes cost a second to import)."""
    from sklearn.base import BaseEstimator as _BaseEstimator
    from sklearn.base import RegressorMixin as _RegressorMixin

    class Readout(_RegressorMixin, _BaseEstimator):
        """A readout as a scikit-learn regressor: ``fit(X, y)``, ``predict(X)``, ``score(X, y)`` (R²),
        ``get_params`` / ``set_params``, so ``cross_val_score``, ``Pipeline`` and ``GridSearchCV``
        work. :func:`fit_readout` is the functional form; this class calls it.

        Parameters are those of :func:`fit_readout` (``None`` = its default): ``kind``; ridge
        ``alphas``, ``per_voxel``; lasso ``alphas``, ``cv``, ``max_iter``; mlp / cnn
        ``weight_decays``, ``hidden``, ``epochs``, ``lr``, ``device``; ``seed``. Options of the other
        kinds are ignored.

        ``X``: features (N, D) (``(N, C, h, w)`` for ``kind="cnn"``); ``y``: responses (N,) or (N, V).
        After ``fit``: ``module_`` (the differentiable ``nn.Module`` readout, e.g. for
        ``EncodingModel(encoder, est.module_)``), ``hparams_`` (what was chosen, e.g. ridge
        ``alpha``), ``n_features_in_``, and for the linear kinds ``coef_`` (V, D) or (D,) and
        ``intercept_`` (V,) or a float, as in scikit-learn's linear models. Predictions are float64.
        """

        _LINEAR = ("ols", "ridge", "lasso")

        def __init__(self, kind: str = "ridge", alphas=None, per_voxel: bool = True, cv: int = 5,
                     max_iter: int | None = None, weight_decays=None, hidden: int = 128, epochs: int = 300,
                     lr: float = 1e-3, device: str = "cpu", seed: int = 0):
            self.kind = kind
            self.alphas = alphas
            self.per_voxel = per_voxel
            self.cv = cv
            self.max_iter = max_iter
            self.weight_decays = weight_decays
            self.hidden = hidden
            self.epochs = epochs
            self.lr = lr
            self.device = device
            self.seed = seed

        def __sklearn_tags__(self):
            tags = super().__sklearn_tags__()
            tags.target_tags.multi_output = True
            tags.target_tags.single_output = True
            if self.kind == "cnn":
                tags.input_tags.two_d_array = False
            return tags

        def _options(self) -> dict:
            check_choice(self.kind, KINDS, "readout kind")
            opts: dict = {}
            if self.kind in ("ridge", "lasso") and self.alphas is not None:
                opts["alphas"] = self.alphas
            if self.kind == "ridge":
                opts["per_voxel"] = self.per_voxel
            if self.kind == "lasso":
                opts.update(cv=self.cv, max_iter=self.max_iter)
            if self.kind in ("mlp", "cnn"):
                if self.weight_decays is not None:
                    opts["weight_decays"] = self.weight_decays
                opts.update(hidden=self.hidden, epochs=self.epochs, lr=self.lr, device=self.device)
            return opts

        def _validate(self, X, y=None, reset: bool = True):
            from sklearn.utils.validation import validate_data

            common = dict(reset=reset, dtype=np.float64, allow_nd=self.kind == "cnn")
            if y is None and not reset:
                return validate_data(self, X, **common)
            return validate_data(self, X, y, multi_output=True, y_numeric=True, ensure_min_samples=2, **common)

        def fit(self, X, y):
            """Fit the readout to features ``X`` (N, D) and responses ``y`` (N,) or (N, V); returns self."""
            opts = self._options()
            X, y = self._validate(X, y)
            if self.kind == "cnn" and X.ndim != 4:
                raise ValueError(f"kind='cnn' needs spatial features (N, C, h, w); got shape {X.shape}")
            y = np.asarray(y, dtype=np.float64)
            self._single_output = y.ndim == 1
            self.module_ = fit_readout(self.kind, X, y, seed=self.seed, **opts)
            self.hparams_ = self.module_.hparams
            if self.kind in self._LINEAR:
                w = self.module_.weight.detach().double().cpu().numpy()
                b = self.module_.bias.detach().double().cpu().numpy()
                self.coef_, self.intercept_ = (w[0], float(b[0])) if self._single_output else (w, b)
            return self

        def predict(self, X) -> np.ndarray:
            """Predicted responses (N,) (a single response was fitted) or (N, V), float64."""
            from sklearn.utils.validation import check_is_fitted

            check_is_fitted(self, "module_")
            X = self._validate(X, reset=False)
            if self.kind in self._LINEAR:
                out = X.reshape(len(X), -1) @ np.atleast_2d(self.coef_).T + self.intercept_
            else:
                with torch.no_grad():
                    out = self.module_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
            return out[:, 0] if self._single_output and out.ndim == 2 else out

    Readout.__module__, Readout.__qualname__ = "probelib.readouts", "Readout"  # pickled as probelib.readouts.Readout
    return Readout


def _get_readout_class() -> type:
    from .. import readouts

    return readouts.Readout


def _as_numpy(value, what: str) -> np.ndarray:
    """numpy, torch (any device) or cupy array -> float64 numpy array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    elif hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        value = value.get()
    arr = np.asarray(value, dtype=np.float64)
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
    mean = getattr(step, "mean_", None) if getattr(step, "with_mean", True) else None
    scale = getattr(step, "scale_", None) if getattr(step, "with_std", True) else None
    scale = np.ones(n) if scale is None else _as_numpy(scale, "scale_")
    mean = np.zeros(n) if mean is None else _as_numpy(mean, "mean_")
    if scale.shape != (n,) or mean.shape != (n,):
        raise ValueError(f"the scaler was fitted on {mean.size} features, the estimator on {n}")
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
