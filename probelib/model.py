"""EncodingModel: encoder + readout as one differentiable map, images -> voxel responses."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ._checks import check_images
from .cache import encoder_key, memory


def _device_of(module: nn.Module, default="cpu") -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device(default)


def as_images(images) -> torch.Tensor:
    """Numpy or tensor images (N, 3, H, W) in [0, 1] -> validated float32 tensor."""
    x = torch.as_tensor(images)
    if x.is_floating_point() and x.dtype != torch.float32:
        x = x.float()
    return check_images(x)


@torch.no_grad()
def batched(fn, images, batch_size: int = 32, device=None, progress: bool | None = None,
            desc: str = "images") -> np.ndarray:
    """Apply ``fn`` to images in batches without gradients; returns a float32 numpy array.

    ``device=None``: the device of ``fn`` when it is an ``nn.Module`` with parameters or buffers,
    else where the images are."""
    x = as_images(images)
    if device is None and isinstance(fn, nn.Module):
        device = _device_of(fn, default=x.device)
    n = x.shape[0]
    show = progress if progress is not None else n > 4 * batch_size
    out = []
    for i in tqdm(range(0, n, batch_size), desc=desc, disable=not show, leave=False):
        xb = x[i:i + batch_size].to(device) if device is not None else x[i:i + batch_size]
        out.append(fn(xb).float().cpu().numpy())
    return np.concatenate(out)


def extract_features(encoder: nn.Module, images, batch_size: int = 32, device=None,
                     progress: bool | None = None, cache: bool = True) -> np.ndarray:
    """Encoder features of ``images`` (N, 3, H, W) in [0, 1]: (N, D) or (N, C, h, w), float32.

    Cached on disk by (encoder name/layer/weights/smoothing, image content) when ``cache``.
    """
    device = device if device is not None else _device_of(encoder)
    x = as_images(images)
    if not cache:
        return batched(encoder, x, batch_size, device, progress, desc=f"features {getattr(encoder, 'name', '')}")
    return _cached_features(encoder_key(encoder), x.cpu().numpy(), encoder, batch_size, str(device), progress)


def _features_impl(key, images, encoder, batch_size, device, progress):
    return batched(encoder, torch.from_numpy(images), batch_size, device, progress,
                   desc=f"features {key.get('name', '')}")


def _cached_features(key, images, encoder, batch_size, device, progress):
    fn = memory().cache(_features_impl, ignore=["encoder", "batch_size", "device", "progress"])
    return fn(key, images, encoder, batch_size, device, progress)


class EncodingModel(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> predicted responses (N, V) = readout(encoder(images))."""

    def __init__(self, encoder: nn.Module, readout: nn.Module, name: str | None = None):
        super().__init__()
        self.encoder, self.readout = encoder, readout
        self.name = name or f"{getattr(encoder, 'name', 'encoder')}/{getattr(readout, 'kind', 'readout')}"
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.readout(self.encoder(images))

    def predict(self, images, batch_size: int = 32, device=None, progress: bool | None = None) -> np.ndarray:
        """Batched no-grad predictions (N, V) as numpy, with a progress bar on long runs."""
        device = device if device is not None else _device_of(self)
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
    """Extract (cached) features of training ``images`` and fit a readout to ``responses`` (N, V)."""
    from .readouts import fit_readout

    if device is not None:  # the features are computed where the model will live
        encoder = encoder.to(device)
    feats = extract_features(encoder, images, batch_size=batch_size, device=device)
    readout = fit_readout(kind, feats, responses, seed=seed, **options)
    model = EncodingModel(encoder, readout, name=name)
    return model.to(device if device is not None else _device_of(encoder))
