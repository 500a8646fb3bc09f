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

from ._checks import check_finite_responses

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


# ------------------------------------------------------------------ forward and gradients

def model_dtype(model: nn.Module, default: torch.dtype) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return default



def images_on(images: Tensor, model: nn.Module, device: torch.device) -> Tensor:
    return images.detach().to(device=device, dtype=model_dtype(model, images.dtype))



def n_outputs(model: nn.Module, x: Tensor) -> int:
    """Number of response units: ``model.n_outputs`` (EncodingModel) or a forward of one image."""
    known = getattr(model, "n_outputs", None)
    if isinstance(known, int):
        return known
    with torch.no_grad():
        return int(forward_responses(model, x[:1]).shape[1])



def forward_responses(model: nn.Module, x: Tensor) -> Tensor:
    """Model responses (B, V); a 1-D output is read as one unit."""
    r = model(x)
    if not isinstance(r, Tensor):
        raise ValueError(f"model must return a tensor of responses (N, V); got {type(r).__name__}")
    if r.ndim == 1:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != x.shape[0]:
        raise ValueError(f"model must map images (N, 3, H, W) to responses (N, V); for N={x.shape[0]} "
                         f"it returned shape {tuple(r.shape)}")
    return r



def clean_responses(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """No-grad responses (N, V) on the device of ``x``; raises on NaN/inf."""
    with torch.no_grad():
        r = torch.cat([forward_responses(model, x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    check_finite_responses(r, "clean responses")
    return r



def input_grad(value: Tensor, x: Tensor, retain_graph: bool = False) -> Tensor:
    """Gradient of the scalar ``value`` with respect to the images ``x`` only."""
    if not value.requires_grad:
        raise ValueError("the model's responses are not differentiable with respect to the images "
                         "(detached output, or torch.no_grad inside the model)")
    (grad,) = torch.autograd.grad(value, x, retain_graph=retain_graph, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad

