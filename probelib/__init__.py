"""probelib: adversarial probing of ANN-based brain encoding models.

Data flows one way: data -> encoders -> readouts (EncodingModel) -> probes / geometry -> metrics.

The names below are imported on first use (PEP 562), so ``import probelib`` is cheap and a
script that needs only ``probelib.metrics`` does not pay for torchvision and timm.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"  # the only place the version is written (pyproject reads it from here)

_EXPORTS = {
    "probes": ["FixedEffectResult", "OptimizationResult", "ProbeResult", "fgsm",
               "fixed_effect", "maximize", "minimize", "pgd", "random_control", "shuffled_control",
               "transfer"],
    "encoders": ["available_encoders", "check_encoder", "imagenet_labels", "layer_names", "load_encoder",
                 "smooth", "weights_status"],
    "geometry": ["Subspace", "jacobian", "perturbation_subspace", "principal_angles",
                 "similarity_matrix", "subspace_similarity"],
    "metrics": ["correlation_ceiling", "discriminability", "ncsnr_ceiling", "normalized_variance",
                "paired_test", "pearson_r", "sem", "sensitivity_summary", "sparseness",
                "spearman_brown", "split_half_ceiling"],
    "model": ["EncodingModel", "extract_features", "fit_encoding_model"],
    "readouts": ["Readout", "as_readout", "fit_readout"],
    "scoring": ["ScoreReport", "score", "score_report"],
    "zoo": ["build_encoder", "demo_ladder", "model_panel", "smoothing_ladder"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
_SUBMODULES = {"adversarial_training", "cache", "cli", "data", "encoders", "fitting", "geometry", "metrics", "model",
               "plotting", "probes", "readouts", "scoring", "study", "tables", "zoo"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'probelib' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
