"""probelib: adversarial probing of ANN-based brain encoding models."""
from .encoders import available_encoders, load_encoder, smooth, imagenet_labels

__version__ = "0.1.0"
