"""Model panels: which encoders each analysis compares, on the demo and on the papers' data.

An encoder is named by a short string ``"<registry name>[:untrained][+smooth<sigma>]"``, e.g.
``"mobilenet_v2"``, ``"alexnet:untrained"`` or ``"efficientnet_lite0+smooth0.25"``, so a notebook
parameter can list models and a cache key can name them.
"""
from __future__ import annotations

import re

from .encoders import REGISTRY, load_encoder, smooth

# The eight CNNs of the 2024 paper (Fig. 2C/3C).
PAPER1_MODELS = ("alexnet", "vgg16", "resnet50", "inception_v3", "squeezenet1_1", "densenet121",
                 "mobilenet_v2", "cornet_rt")
# The 2024 paper's robustness ladder: adversarially trained ResNet-50s (L2, increasing eps).
PAPER1_LADDER = ("resnet50_l2_eps0", "resnet50_l2_eps0.01", "resnet50_l2_eps0.1", "resnet50_l2_eps1",
                 "resnet50_l2_eps3", "resnet50_l2_eps5")
# The 2025 paper's panel of 14 networks. Our sources name ResNet-50, VGG16, CLIP ResNet-50 and
# robust ResNet-50s explicitly; the rest of this list is our reconstruction from the 2024 panel.
PAPER2_MODELS = PAPER1_MODELS + ("efficientnet_lite0", "clip_rn50", "resnet50_l2_eps0.1",
                                 "resnet50_l2_eps1", "resnet50_l2_eps3", "resnet50_linf_eps4")

# Demo stand-ins (weights installable offline), see the book's introduction.
DEMO_TRAINED = ("mobilenet_v2", "efficientnet_lite0")
DEMO_CONTROLS = ("resnet50:untrained", "alexnet:untrained", "vgg16:untrained")
DEMO_SIGMAS = (0.0, 0.05, 0.1, 0.25, 0.5)
DEMO_MODELS = DEMO_TRAINED + tuple(f"{m}+smooth0.25" for m in DEMO_TRAINED) + DEMO_CONTROLS


def demo_ladder(base: str = "mobilenet_v2", sigmas=DEMO_SIGMAS) -> tuple[str, ...]:
    """The randomized-smoothing ladder standing in for the robust ResNet-50 ladder."""
    return tuple(base if s == 0 else f"{base}+smooth{s:g}" for s in sigmas)


_PATTERN = re.compile(r"^(?P<name>[A-Za-z0-9_.]+?)(?P<untrained>:untrained)?(\+smooth(?P<sigma>[0-9.]+))?$")


def parse_model(spec: str) -> tuple[str, bool, float]:
    """``"alexnet:untrained+smooth0.1"`` -> ("alexnet", True, 0.1)."""
    m = _PATTERN.match(spec)
    if not m or m["name"] not in REGISTRY:
        raise ValueError(f"unknown model {spec!r}: expected '<name>[:untrained][+smooth<sigma>]' "
                         f"with name in: {', '.join(REGISTRY)}")
    return m["name"], bool(m["untrained"]), float(m["sigma"]) if m["sigma"] else 0.0


def build_encoder(spec: str, device="cpu", layer: str | None = None, spatial: bool = False,
                  n_samples: int = 8, seed: int = 0):
    """Load the encoder named by ``spec`` (see module docstring); smoothing uses ``n_samples``
    fixed noise draws from ``seed``. The returned module's ``name`` is ``spec``."""
    name, untrained, sigma = parse_model(spec)
    enc = load_encoder(name, layer=layer, weights=None if untrained else "default", device=device,
                       spatial=spatial, seed=seed)
    if untrained:
        enc.name = f"{name}:untrained"
    if sigma > 0:
        enc = smooth(enc, sigma=sigma, n_samples=n_samples, seed=seed)
        enc.name = spec
    return enc


def model_panel(dataset: str = "demo", paper: int = 1) -> tuple[str, ...]:
    """Default list of models for a chapter: the papers' panel on NSD, the stand-ins on the demo."""
    if dataset == "demo":
        return DEMO_MODELS
    return PAPER1_MODELS if paper == 1 else PAPER2_MODELS
