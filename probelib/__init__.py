"""probelib: adversarial probing of ANN-based brain encoding models.

Data flows one way: data -> encoders -> readouts (EncodingModel) -> attacks / geometry -> metrics.
"""
from .attacks import (FixedEffectResult, OptimizationResult, ProbeResult, TransferMatrix, fgsm,
                      fixed_effect, maximize, minimize, pgd, random_control, shuffled_control,
                      transfer, transfer_matrix)
from .encoders import available_encoders, imagenet_labels, load_encoder, smooth
from .geometry import (Subspace, jacobian, perturbation_subspace, principal_angles,
                       similarity_matrix, subspace_similarity)
from .metrics import (correlation_ceiling, discriminability, ncsnr_ceiling, normalized_variance,
                      paired_test, pearson_r, sem, sensitivity_summary, sparseness,
                      spearman_brown, split_half_ceiling)
from .model import EncodingModel, extract_features, fit_encoding_model
from .readouts import fit_readout
from .zoo import build_encoder, demo_ladder, model_panel

__version__ = "0.1.0"
