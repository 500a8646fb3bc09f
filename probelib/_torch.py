"""Model handling shared by feature extraction, probes and geometry: device, eval mode, restore.

Every function of probelib that runs a network does so inside :func:`evaluating`: eval mode
(no dropout, batch-norm running statistics used and never updated), parameters frozen (gradients
flow to the images only), optionally moved to a device; the caller's training flags,
``requires_grad`` flags and device are restored afterwards, whatever happens inside.
"""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import Tensor, nn

DeviceLike = str | torch.device | None


def first_tensor(model: nn.Module) -> Tensor | None:
    """The model's first parameter, else its first buffer, else None."""
    return next(itertools.chain(model.parameters(), model.buffers()), None)


def model_device(model: nn.Module) -> torch.device | None:
    """Where the model's tensors live (None for a module without parameters or buffers)."""
    first = first_tensor(model)
    return None if first is None else first.device


def resolve_device(model: nn.Module, images: Tensor | None, device: DeviceLike) -> torch.device:
    """``device`` if given, else the model's device, else the images' device, else the CPU."""
    if device is not None:
        return torch.device(device)
    home = model_device(model)
    if home is not None:
        return home
    return images.device if images is not None else torch.device("cpu")


def check_module(model, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module; got {type(model).__name__}")
    return model


@contextlib.contextmanager
def evaluating(model: nn.Module, device: DeviceLike = None) -> Iterator[nn.Module]:
    """Eval mode, frozen parameters and (if ``device`` is given) on ``device`` for the block.

    On exit every submodule's ``training`` flag, every parameter's ``requires_grad`` flag and the
    model's device are what they were on entry.
    """
    check_module(model)
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    home = model_device(model)
    moved = device is not None and home is not None and home != torch.device(device)
    try:
        if moved:
            model.to(device)
        model.eval()
        for p in params:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
        if moved:
            model.to(home)
