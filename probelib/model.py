"""EncodingModel: encoder + readout as one differentiable map, images -> voxel responses."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn as nn
from ._progress import progress_bar

from ._checks import check_images, check_positive_int
from ._torch import check_module, evaluating, model_device
from .cache import cached_call


def as_images(images) -> torch.Tensor:
    """Numpy or tensor images (N, 3, H, W) in [0, 1] -> validated float32 tensor."""
    x = torch.as_tensor(images)
    if x.is_floating_point() and x.dtype != torch.float32:
        x = x.float()
    return check_images(x)


def batched(fn, images, batch_size: int = 32, device=None, progress: bool | None = None,
            desc: str = "images") -> np.ndarray:
    """Apply ``fn`` to images (N, 3, H, W) in [0, 1] in batches without gradients; returns a
    float32 numpy array (N, ...).

    An ``nn.Module`` runs in eval mode on ``device`` (default: where it lives) and is left as it
    was (mode, ``requires_grad`` flags, device); a plain function runs on ``device`` (default:
    where the images are)."""
    x = as_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    context = evaluating(fn, device) if isinstance(fn, nn.Module) else contextlib.nullcontext()
    if device is None and isinstance(fn, nn.Module):
        device = model_device(fn)
    n = x.shape[0]
    show = progress if progress is not None else n > 4 * batch_size
    out = []
    with context, torch.no_grad():
        for i in progress_bar(range(0, n, batch_size), desc=desc, disable=not show, leave=False):
            xb = x[i:i + batch_size].to(device) if device is not None else x[i:i + batch_size]
            out.append(fn(xb).float().cpu().numpy())
    return np.concatenate(out)


def extract_features(encoder: nn.Module, images, batch_size: int = 32, device=None,
                     progress: bool | None = None, cache: bool = True) -> np.ndarray:
    """Encoder features of ``images`` (N, 3, H, W) in [0, 1]: (N, D) or (N, C, h, w), float32.

    The encoder runs in eval mode (its own mode is restored). Cached on disk by the encoder's
    content (:func:`probelib.cache.module_key`: code, settings, weights) and the images' content
    when ``cache``; ``batch_size``, ``device`` and ``progress`` do not change the result.
    """
    x = as_images(images)
    check_module(encoder, "encoder")
    if not cache:
        return _features_impl(None, x, encoder, batch_size, device, progress)
    images_np = x.cpu().numpy()
    return cached_call(_features_impl, "features", images_np, encoder, batch_size,
                       None if device is None else str(device), progress,
                       ignore=("encoder", "batch_size", "device", "progress"),
                       check=lambda f: (isinstance(f, np.ndarray) and f.dtype == np.float32
                                        and f.shape[0] == len(images_np)))


def _features_impl(key, images, encoder, batch_size, device, progress):
    return batched(encoder, torch.as_tensor(images), batch_size, device, progress,
                   desc=f"features {getattr(encoder, 'name', type(encoder).__name__)}")


class EncodingModel(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> predicted responses (N, V) = readout(encoder(images))."""

    def __init__(self, encoder: nn.Module, readout: nn.Module, name: str | None = None):
        super().__init__()
        self.encoder, self.readout = encoder, readout
        self.name = name or f"{getattr(encoder, 'name', 'encoder')}/{getattr(readout, 'kind', 'readout')}"
        self.training = False  # this container only: the encoder keeps its owner's mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.readout(self.encoder(images))

    def predict(self, images, batch_size: int = 32, device=None, progress: bool | None = None) -> np.ndarray:
        """Batched no-grad eval-mode predictions (N, V) as numpy, with a progress bar on long runs."""
        return batched(self, images, batch_size, device, progress, desc=f"predict {self.name}")

    @property
    def n_outputs(self) -> int:
        w = getattr(self.readout, "weight", None)
        if w is not None:
            return int(w.shape[0])
        return int(self.readout.out_mean.numel())


def fit_encoding_model(encoder: nn.Module, images, responses, kind: str = "ridge", seed: int = 0,
                       batch_size: int = 32, device=None, name: str | None = None,
                       **options) -> EncodingModel:
    """Extract (cached, eval-mode) features of training ``images`` (N, 3, H, W) in [0, 1] and fit a
    ``kind`` readout to ``responses`` (N, V). With ``device``, the returned model (and so the
    encoder it holds) lives there; otherwise where the encoder lives."""
    from .readouts import fit_readout

    if device is not None:  # the model will live there: compute the features there too
        encoder.to(device)
    feats = extract_features(encoder, images, batch_size=batch_size)
    readout = fit_readout(kind, feats, responses, seed=seed, **options)
    home = model_device(encoder)
    model = EncodingModel(encoder, readout, name=name)
    return model if home is None else model.to(home)
