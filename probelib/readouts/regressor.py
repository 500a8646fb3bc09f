"""The readouts as a scikit-learn regressor (:class:`Readout`).

Imported on first use of ``probelib.readouts.Readout`` (scikit-learn's base classes cost a second
to import)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .._checks import check_choice
from .fit import KINDS, fit_readout


class Readout(RegressorMixin, BaseEstimator):
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
        check_is_fitted(self, "module_")
        X = self._validate(X, reset=False)
        if self.kind in self._LINEAR:
            out = X.reshape(len(X), -1) @ np.atleast_2d(self.coef_).T + self.intercept_
        else:
            with torch.no_grad():
                out = self.module_(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
        return out[:, 0] if self._single_output and out.ndim == 2 else out


Readout.__module__ = "probelib.readouts"  # its public name (pickled as probelib.readouts.Readout)
