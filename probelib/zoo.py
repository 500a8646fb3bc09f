"""Model panels: which encoders each analysis compares, on the demo and on the papers' data.

An encoder is named by a short string, so a notebook parameter can list models and a cache key
can name them::

    <registry name>[:untrained][+adv<k>[@<steps>]][+smooth<sigma>]

e.g. ``"mobilenet_v2"``, ``"alexnet:untrained"``, ``"efficientnet_lite0+smooth0.25"`` or
``"mobilenet_v2+adv8"``.

- ``:untrained``: the architecture with random weights (a control).
- ``+adv<k>``: the network **adversarially fine-tuned** (:mod:`probelib.adversarial_training`)
  against L-inf perturbations of at most ``k/255`` per pixel (``k`` in units of 1/255 of the pixel
  range, the unit of the book's FGSM budgets: ``+adv8`` is 8/255, ``+adv0.5`` is 0.5/255; an
  L-inf budget is per pixel, so the same at every image size). The demo's recipe
  (:data:`DEMO_ADV_SCHEDULE`): feature-level adversarial training of the network truncated at
  its encoder layer, on random crops, flips and colour jitter of the demo's *training* photographs
  at :data:`DEMO_ADV_IMAGE_SIZE` px (the split of the ``seed`` passed to :func:`build_encoder`, so
  never the held-out images that the chapters probe), through a budget-doubling curriculum
  (:func:`~probelib.adversarial_training.curriculum`): ``+adv16`` continues the training of
  ``+adv8``, which continues ``+adv4``. Trained once, cached by content.
- ``@<steps>``: training steps per curriculum stage instead of the schedule's (e.g. ``+adv8@4``, a
  tiny schedule for quick test runs; a different model, named differently).
- ``+smooth<sigma>``: Gaussian randomized smoothing with pixel noise s.d. ``sigma`` (pixels in
  [0, 1]) over ``n_samples`` fixed draws (of the adversarially trained network, if both).

The paper's robust ResNet-50 ladder is L2 (eps 0, 0.01, 0.1, 1, 3, 5 at 224 px; an L2 budget ``e``
at 224 px is ``e * S / 224`` at S px, :func:`probelib.probes.budgets.scale_eps`). An L-inf budget
``k/255`` contains the perturbations that move every pixel by ``k/255``, whose L2 norm at S px is
``k/255 * sqrt(3) * S``, i.e. ``k/255 * sqrt(3) * 224`` once scaled to 224 px: the paper's top
rung, L2 5 at 224 px, has the norm of a 3.3/255 change of every pixel, and the demo's rungs 4, 8, 16 (/255)
reach 6.1, 12.2 and 24.3 at 224 px (ImageNet's usual L-inf training budgets are 4/255 and
8/255). The demo's rungs are larger than the paper's because a short feature-level fine-tuning on
127 photographs makes a network less robust than full adversarial training on ImageNet does: the
rungs were chosen so that the ladder spans "standard" to "clearly robust" (FGSM 3/255 sensitivity
of the FFA readout falling monotonically to 0.28 (MobileNet-v2) and 0.40 (EfficientNet-Lite0) of
the standard network's; ``scripts/measure_adv_ladder.py`` measures the ladder).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from collections.abc import Mapping
from typing import NamedTuple

from ._checks import check_choice
from .adversarial_training import AdvSchedule, curriculum
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
#: The adversarial ladder's budgets (L-inf, units of 1/255); 0 = the standard network.
DEMO_BUDGETS = (0, 4, 8, 16)
#: Randomized smoothing (a named comparison, not the ladder): noise s.d., pixels in [0, 1].
DEMO_SIGMAS = (0.0, 0.05, 0.1, 0.25, 0.5)
#: Paper 1's panel on the demo (chapters 2, 3, 5): the two networks, their smoothed versions
#: (more variety among 8 candidates, and the observer's family) and three untrained controls.
DEMO_MODELS = DEMO_TRAINED + tuple(f"{m}+smooth0.25" for m in DEMO_TRAINED) + DEMO_CONTROLS
#: The most robust rung of each trained network's adversarial ladder.
DEMO_ROBUST = tuple(f"{m}+adv{DEMO_BUDGETS[-1]:g}" for m in DEMO_TRAINED)
#: Paper 2's panel on the demo (chapters 6-8): standard and adversarially fine-tuned (the robust
#: stand-ins, the top rung of each ladder) networks, and the untrained controls.
DEMO_PANEL2 = DEMO_TRAINED + DEMO_ROBUST + DEMO_CONTROLS

#: Side of the demo photographs the ``+adv`` networks are trained on (the book's image size).
DEMO_ADV_IMAGE_SIZE = 64
#: Largest ``+adv`` budget accepted (units of 1/255).
MAX_ADV = 64.0
#: How the ``+adv`` networks are trained (per curriculum stage).
DEMO_ADV_SCHEDULE = AdvSchedule(steps=100, batch_size=16, lr=1e-3, attack_steps=2, crop=0.5, flip=True,
                                jitter=0.2, clean_weight=0.0, loss="standardized")
#: First budget (units of 1/255) of the curriculum: ``+adv<k>`` trains at k, preceded by k/2,
#: k/4, ... down to this budget (budgets below it are one stage).
DEMO_ADV_FIRST = 4.0


def demo_ladder(base: str = "mobilenet_v2", budgets=DEMO_BUDGETS, steps: int | None = None,
                **legacy) -> tuple[str, ...]:
    """The adversarial robustness ladder of ``base`` standing in for the paper's robust ResNet-50
    ladder: ``base`` (budget 0) and ``base+adv<k>`` for the other ``budgets`` (L-inf, units of
    1/255). ``steps``: training steps per stage instead of the schedule's (a tiny schedule for
    quick runs: ``+adv<k>@<steps>``). The smoothing ladder is :func:`smoothing_ladder`."""
    if "sigmas" in legacy:
        raise TypeError("demo_ladder() is the adversarial ladder (budgets in units of 1/255); the "
                        "randomized-smoothing ladder is smoothing_ladder(base, sigmas)")
    if legacy:
        raise TypeError(f"demo_ladder() got unexpected arguments {sorted(legacy)}")
    budgets = [float(b) for b in budgets]
    small = [b for b in budgets if 0 < b < 0.5]
    if small:
        raise ValueError(f"budgets are L-inf bounds in units of 1/255 (8 = 8/255); got {small}: smoothing "
                         "sigmas? The randomized-smoothing ladder is smoothing_ladder(base, sigmas)")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer or None; got {steps!r}")
    tail = "" if steps is None else f"@{steps}"
    specs = tuple(base if b == 0 else f"{base}+adv{b:g}{tail}" for b in budgets)
    for spec in specs:
        parse_spec(spec)
    return specs


def smoothing_ladder(base: str = "mobilenet_v2", sigmas=DEMO_SIGMAS) -> tuple[str, ...]:
    """Randomized smoothing of ``base`` at noise levels ``sigmas`` (0 = the network itself): a
    named comparison with the adversarial ladder (few noise draws do not make a network robust)."""
    return tuple(base if s == 0 else f"{base}+smooth{s:g}" for s in sigmas)


class ModelSpec(NamedTuple):
    """A parsed model spec (see the module docstring)."""

    name: str
    untrained: bool
    adv: float  # L-inf training budget in units of 1/255; 0 = not adversarially trained
    adv_steps: int | None  # training steps per stage; None = the schedule's
    sigma: float  # smoothing noise s.d.; 0 = not smoothed


_NUMBER = r"[0-9]+(?:\.[0-9]+)?"
_PATTERN = re.compile(rf"^(?P<name>[A-Za-z0-9_.]+?)(?P<untrained>:untrained)?"
                      rf"(?:\+adv(?P<adv>{_NUMBER})(?:@(?P<steps>[0-9]+))?)?"
                      rf"(?:\+smooth(?P<sigma>{_NUMBER}))?$")
_GRAMMAR = "'<name>[:untrained][+adv<k>[@<steps>]][+smooth<sigma>]'"


def _spec_error(spec: str) -> ValueError:
    hint = ""
    adv = re.search(r"\+adv([^+@]*)", spec) if isinstance(spec, str) else None
    if adv and "/" in adv[1]:
        k = adv[1].split("/")[0]
        hint = f"; +adv budgets are in units of 1/255: write '+adv{k}' for {k}/255"
    elif adv and not re.fullmatch(_NUMBER, adv[1]):
        hint = ("; +adv<k> takes an L-inf budget in units of 1/255 (e.g. '+adv8' = 8/255), the only norm "
                "of the adversarial fine-tuning")
    elif isinstance(spec, str) and "+adv" in spec and 0 <= spec.find("+smooth") < spec.index("+adv"):
        hint = "; write +adv before +smooth"
    return ValueError(f"unknown model {spec!r}: expected {_GRAMMAR} with name in: {', '.join(REGISTRY)}{hint}")


def parse_spec(spec: str) -> ModelSpec:
    """``"mobilenet_v2+adv8@20+smooth0.1"`` -> ModelSpec("mobilenet_v2", False, 8.0, 20, 0.1)."""
    m = _PATTERN.match(spec) if isinstance(spec, str) else None
    if not m or m["name"] not in REGISTRY:
        raise _spec_error(spec)
    adv = float(m["adv"]) if m["adv"] else 0.0
    steps = int(m["steps"]) if m["steps"] else None
    if m["adv"] is not None:
        if m["untrained"]:
            raise ValueError(f"{spec!r}: an untrained network cannot be adversarially fine-tuned (the "
                             "training pulls its features towards those of the trained network)")
        if not 0 < adv <= MAX_ADV:
            raise ValueError(f"{spec!r}: +adv<k> needs 0 < k <= {MAX_ADV:g} (units of 1/255); the standard "
                             f"network is the plain name {m['name']!r}")
        if steps is not None and steps < 1:
            raise ValueError(f"{spec!r}: @<steps> must be a positive integer")
    return ModelSpec(m["name"], bool(m["untrained"]), adv, steps,
                     float(m["sigma"]) if m["sigma"] else 0.0)


_HUBS = ("torchvision:", "timm:")


def split_network(spec: str) -> tuple[str, str] | None:
    """A network outside the zoo, ``"<model>@<layer>"`` with ``<model>`` one that
    :func:`probelib.load_encoder` builds (``"torchvision:<builder>"``, ``"timm:<name>"`` or
    ``"<path>.py:<factory>"``), -> ``(model, layer)``; ``None`` for anything else (a zoo spec)."""
    if not isinstance(spec, str) or "@" not in spec:
        return None
    model, _, layer = spec.rpartition("@")
    if not layer or not (model.startswith(_HUBS) or ".py:" in model):
        return None
    return model, layer


def short_name(spec: str) -> str:
    """A model's name in tables and labels: a network from a file by its file name, not its
    folder (``"/lab/nets.py:build@block2"`` -> ``"nets.py:build@block2"``); anything else as it is."""
    path, sep, rest = spec.rpartition(".py:")
    return f"{Path(path).name}.py:{rest}" if sep else spec


def check_model(spec: str) -> str:
    """``spec`` if it names a model (a zoo spec, :func:`parse_spec`, or a network with its layer,
    :func:`split_network`); else a ``ValueError`` naming both forms. Nothing is loaded."""
    if split_network(spec) is not None:
        return spec
    try:
        parse_spec(spec)
    except ValueError as exc:
        if isinstance(spec, str) and (spec.startswith(_HUBS) or ".py:" in spec):
            raise ValueError(f"{spec!r} needs its layer: '<model>@<layer>', e.g. 'torchvision:resnet18@layer3' "
                             "or 'nets.py:build@features.8' (a name from net.named_modules())") from None
        raise ValueError(f"{exc}; or a network with its layer, '<model>@<layer>' where <model> is "
                         "'torchvision:<builder>', 'timm:<name>' or '<path>.py:<factory>'") from None
    return spec


def parse_model(spec: str) -> tuple[str, bool, float]:
    """``"alexnet:untrained+smooth0.1"`` -> ("alexnet", True, 0.1): name, untrained, smoothing
    sigma (an ``+adv`` part is checked but not returned: see :func:`parse_spec`)."""
    p = parse_spec(spec)
    return p.name, p.untrained, p.sigma


_ROBUST_RESNET = re.compile(r"^resnet50_(?P<norm>l2|linf)_eps(?P<eps>[0-9.]+)$")


def robust_checkpoint(name: str) -> tuple[str, float] | None:
    """``"resnet50_l2_eps3"`` -> ``("l2", 3.0)``: the norm and budget of one of the papers'
    adversarially trained ResNet-50s; None for any other registry name."""
    m = _ROBUST_RESNET.match(name)
    return None if m is None else (m["norm"], float(m["eps"]))


def is_robust(spec: str) -> bool:
    """Trained and robustified: smoothed, adversarially fine-tuned (``+adv``) or one of the
    papers' robust ResNet-50s with a budget > 0."""
    p = parse_spec(spec)
    robust = robust_checkpoint(p.name)
    return not p.untrained and (p.sigma > 0 or p.adv > 0 or (robust is not None and robust[1] > 0))


def ladder_position(spec: str, ladder: str = "adversarial") -> tuple[str, float, str]:
    """Where a model spec sits on a robustness ladder: ``(family, level, level_name)``.

    ``ladder="adversarial"``: ``"mobilenet_v2+adv8"`` -> ``("mobilenet_v2", 8.0, "adversarial
    training eps (L-inf, /255)")``, the plain network at level 0 of its ladder; smoothed specs ->
    ``(family, sigma, "smoothing sigma")`` with family ``"<name>+smooth"`` (a separate comparison,
    not the ladder). ``ladder="smoothing"``: the plain network is level 0 of its smoothing ladder,
    ``"mobilenet_v2+smooth0.25"`` -> ``("mobilenet_v2", 0.25, "smoothing sigma")``. On both, the
    adversarially trained ResNet-50s of the paper: ``"resnet50_l2_eps3"`` -> ``("resnet50_l2", 3.0,
    "adversarial training eps (L2)")``.
    """
    if ladder not in ("adversarial", "smoothing"):
        raise ValueError(f"unknown ladder {ladder!r}; valid: 'adversarial', 'smoothing'")
    p = parse_spec(spec)
    robust = robust_checkpoint(p.name)
    name = p.name + (":untrained" if p.untrained else "")
    if p.sigma > 0 and (p.adv > 0 or robust):
        raise ValueError(f"{spec!r} is both adversarially trained and smoothed: not on one ladder")
    if robust:
        norm = {"l2": "L2", "linf": "L-inf"}[robust[0]]
        return f"resnet50_{robust[0]}", robust[1], f"adversarial training eps ({norm})"
    if ladder == "smoothing":
        if p.adv > 0:
            raise ValueError(f"{spec!r} is adversarially trained: not on a smoothing ladder")
        return name, p.sigma, "smoothing sigma"
    if p.sigma > 0:
        return f"{name}+smooth", p.sigma, "smoothing sigma"
    tail = "" if p.adv_steps is None else f"@{p.adv_steps}"
    return name + tail, p.adv, "adversarial training eps (L-inf, /255)"


def demo_training_images(image_size: int = DEMO_ADV_IMAGE_SIZE, seed: int = 0):
    """The demo photographs of the training split of ``load_demo(seed=seed)`` (N, 3, S, S), the
    images the ``+adv`` networks are trained on (the held-out split is what the chapters probe)."""
    from .data import load_dataset
    ds = load_dataset("demo", image_size=int(image_size), seed=int(seed))
    return ds.stimuli[ds.split["train"]]


def build_encoder(spec: str, device="cpu", layer: str | None = None, spatial: bool = False,
                  n_samples: int = 8, seed: int = 0, train_images=None, progress: bool | None = None):
    """Load the encoder named by ``spec`` (see module docstring, or a network with its layer,
    ``"torchvision:resnet18@layer3"``, ``"nets.py:build@features.8"``: :func:`split_network`, with
    its default weights); smoothing uses ``n_samples`` fixed noise draws from ``seed``. The
    returned module's ``name`` is ``spec``.

    ``+adv<k>``: trained on ``device`` (or read from the cache) from the demo's training split of
    ``seed`` at :data:`DEMO_ADV_IMAGE_SIZE` px (``train_images`` (N, 3, S, S) in [0, 1] overrides
    them), with :data:`DEMO_ADV_SCHEDULE` and training seed ``seed``, at the network's default
    layer; ``layer`` then chooses which layer of the trained network the encoder reads.
    """
    network = split_network(spec)
    if network is not None:
        model, own_layer = network
        if layer is not None and layer != own_layer:
            raise ValueError(f"{spec!r} names layer {own_layer!r}; got layer={layer!r}")
        enc = load_encoder(model, layer=own_layer, device=device, spatial=spatial, seed=seed)
        enc.name = spec
        return enc
    p = parse_spec(spec)
    enc = load_encoder(p.name, layer=layer, weights=None if p.untrained else "default", device=device,
                       spatial=spatial, seed=seed)
    if p.untrained:
        enc.name = f"{p.name}:untrained"
    if p.adv > 0:
        schedule = DEMO_ADV_SCHEDULE
        if p.adv_steps is not None:
            schedule = schedule.replace(steps=p.adv_steps)
        images = demo_training_images(DEMO_ADV_IMAGE_SIZE, seed) if train_images is None else train_images
        base = load_encoder(p.name, device=device, seed=seed)  # trained at the default layer
        robust = curriculum(base, images, p.adv / 255, schedule, first=DEMO_ADV_FIRST / 255, seed=seed,
                            device=device, progress=progress)
        enc.net.load_state_dict(robust.net.state_dict())
        enc.weights_source = robust.weights_source
        enc.name = spec
    if p.sigma > 0:
        enc = smooth(enc, sigma=p.sigma, n_samples=n_samples, seed=seed)
        enc.name = spec
    return enc


def model_panel(dataset: str = "demo", paper: int = 1) -> tuple[str, ...]:
    """Default list of models for a chapter: the papers' panel on NSD, the stand-ins on the demo
    (:data:`DEMO_MODELS` for paper 1, :data:`DEMO_PANEL2` with the adversarially fine-tuned
    networks for paper 2)."""
    if paper not in (1, 2):
        raise ValueError(f"paper must be 1 (2024) or 2 (2025); got {paper!r}")
    check_choice(dataset, ("demo", "nsd"), "dataset")
    if dataset == "demo":
        return DEMO_MODELS if paper == 1 else DEMO_PANEL2
    return PAPER1_MODELS if paper == 1 else PAPER2_MODELS


__all__ = ["DEMO_BUDGETS", "DEMO_MODELS", "DEMO_PANEL2", "DEMO_ROBUST", "DEMO_SIGMAS", "ModelSpec", "PAPER1_LADDER",
           "PAPER1_MODELS", "PAPER2_MODELS", "build_encoder", "check_model", "demo_ladder", "demo_training_images",
           "ladder_position", "model_panel", "parse_model", "parse_spec", "robustness_level", "select_robust",
           "short_name", "smoothing_ladder", "split_network"]


def robustness_level(spec: str) -> float:
    """Robustness of a model spec: the smoothing sigma of ``"...+smooth<sigma>"`` (pixel units),
    the L-inf budget of ``"...+adv<k>"`` (k/255, pixel units), the training budget of an
    adversarially trained ``"resnet50_l2_eps<eps>"``, else 0.

    >>> robustness_level("mobilenet_v2+smooth0.25"), robustness_level("resnet50_l2_eps3")
    (0.25, 3.0)
    """
    p = parse_spec(spec)
    if p.sigma > 0:
        return p.sigma
    if p.adv > 0:
        return p.adv / 255  # an L-inf training budget in pixel units
    robust = robust_checkpoint(p.name)
    return robust[1] if robust else 0.0


def select_robust(predictivity: Mapping[str, float], min_relative: float = 0.95) -> str:
    """The most robust trained model that still predicts well.

    predictivity : model spec -> one held-out accuracy (e.g. Pearson r averaged over ROIs).
    min_relative : a model "predicts well" if its accuracy is at least this fraction of the
        best accuracy among all the given models.

    Returns the spec with the largest :func:`robustness_level` > 0 among trained models
    (no ``":untrained"``) that predict well; ties go to the better predictor. If no robust
    model predicts well, the best-predicting robust model; raises ``ValueError`` if none is robust.
    """
    if not 0 < min_relative <= 1:
        raise ValueError(f"min_relative must be in (0, 1]; got {min_relative!r}")
    scores = {str(k): float(v) for k, v in predictivity.items()}
    if not scores or not all(math.isfinite(v) for v in scores.values()):
        raise ValueError(f"predictivity must map specs to finite numbers; got {predictivity!r}")
    robust = [s for s in scores if robustness_level(s) > 0 and ":untrained" not in s]
    if not robust:
        raise ValueError(f"no robust (smoothed or adversarially trained) model among {list(scores)}")
    best = max(scores.values())
    good = [s for s in robust if scores[s] >= min_relative * best]
    if not good:
        return max(robust, key=lambda s: scores[s])
    return max(good, key=lambda s: (robustness_level(s), scores[s]))


def encoder_macs(spec: str, image_size: int, layer: str | None = None) -> int:
    """Multiply-accumulates of one image's forward pass through ``spec``'s encoder up to its layer
    (the default layer unless ``layer``), at ``image_size`` px: the sum over the convolutions and
    linear layers that the pass reaches, counted by forward hooks on the ``meta`` device (no
    weights are allocated, loaded or trained, nothing is computed). ``+adv`` and ``+smooth`` do
    not change the network: they are counted as the plain architecture (a smoothed model's
    ``n_samples`` noise draws multiply its cost; the caller knows them). Raises what building the
    encoder on ``meta`` raises (e.g. a user model that cannot be built there)."""
    import torch

    network = split_network(spec)
    if network is not None:
        enc = load_encoder(network[0], layer=layer or network[1], weights=None, device="meta")
    else:
        enc = load_encoder(parse_spec(spec).name, layer=layer, weights=None, device="meta")
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, torch.nn.Linear):
            total += output[0].numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in enc.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.no_grad():
            enc.features(torch.empty(1, 3, int(image_size), int(image_size), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return int(total)
