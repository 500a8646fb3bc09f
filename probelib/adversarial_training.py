"""Adversarial fine-tuning of an encoder's network: robustness ladders made by training.

The papers' robust networks are ResNet-50s adversarially trained on ImageNet. Offline, the demo
makes its own, on a small scale: **feature-level adversarial fine-tuning** of a trained network
truncated at its encoder layer. A student copy of the network is trained so that its features on
an attacked image match the frozen standard network's features on the clean image,

    min_theta  E_x  max_{||delta||_inf <= eps}  mean_j ((f_theta(x + delta)_j - f_0(x)_j) / s_j)^2,

with ``s_j`` the s.d. of feature ``j`` of the standard network over the clean training images
(``loss="standardized"``: every feature counts by how much it varies across images, as it does
for a readout; ``loss="relative"`` uses ``||f_theta(x + delta) - f_0(x)||^2 / ||f_0(x)||^2``).
The inner maximum is found by PGD on the student itself (L-inf, a uniform random start in the
ball, ``attack_steps`` signed-gradient steps, each projected onto the ball and the [0, 1] pixel
box); the outer minimum by Adam on every parameter up to the encoder layer (batch norm frozen in
eval mode: the standard network's statistics stay). The images ``x`` are random resized crops,
flips and colour jitter of the training photographs (never the images that are probed).
:func:`curriculum` trains a ladder of budgets, each rung continuing the rung below it.

:func:`adversarial_finetune` is a pure function of its inputs: the standard network and the
network it starts from (by content, :func:`probelib.cache.module_key`), the training images (by
content), the budget, the schedule (:class:`AdvSchedule`: steps, batch size, learning rate, attack
and augmentation settings), the seed and the code of the training loop (:func:`code_version`).
Every random draw (batches, crops, flips, jitter, PGD starts) comes from a CPU generator seeded by
(seed, budget), so the same inputs give the same weights (bit for bit on the CPU, where training
runs on one thread whatever the machine's core count; on CUDA, with cuDNN in deterministic mode,
up to the rounding of its kernels).
The trained weights are cached by that content in ``<cache dir>/adversarial/<digest>.safetensors``
(no pickle; the file records its key, is written to a temporary file then renamed, so an
interrupted training leaves no file that is read as good; a file that does not load, was written
for other inputs or does not fit the network is trained again and replaced).

The returned network is an :class:`probelib.encoders.Encoder` like any other (same layer, same
normalisation), so every probe, Jacobian and readout works unchanged, and its weights give it its
own :func:`~probelib.cache.module_key`. The layers after the encoder layer are not trained: the
ImageNet classifier on top of the changed features no longer agrees with the standard network's
labels on most images (measured by ``scripts/measure_adv_ladder.py``).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import json
import math
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from ._checks import check_images, check_positive_int, check_seed
from .cache import array_digest, cache_dir, check_cache_dir, module_key
from .encoders import Encoder, load_weights_file

#: Subdirectory of :func:`probelib.cache.cache_dir` holding the trained weights.
SUBDIR = "adversarial"
NORMS = ("linf",)
LOSSES = ("standardized", "relative")


@dataclass(frozen=True)
class AdvSchedule:
    """How a network is adversarially fine-tuned (everything but the budget and the seed).

    steps : optimiser steps (batches).
    batch_size : images per batch.
    lr : Adam learning rate.
    attack_steps : PGD steps of the inner maximisation (1 = FGSM from a random start, "fast
        adversarial training").
    attack_step : PGD step length as a multiple of the budget (``None``: ``2.5 / attack_steps``,
        at least 1.25, so that one step from a random start can reach any corner of the ball).
    norm : the budget's norm (``"linf"``: per-pixel bound, pixels in [0, 1]).
    crop : smallest area fraction of the random resized crops (1 = no cropping).
    flip : random horizontal flips.
    jitter : strength of the colour jitter: brightness, contrast and saturation factors drawn
        uniformly in [1 - jitter, 1 + jitter] (0 = none).
    clean_weight : weight of a second term, the same loss on the clean image, that keeps the clean
        features close to the standard network's (0 = not computed).
    loss : ``"standardized"`` or ``"relative"`` (module docstring).

    The defaults are the demo's recipe (:data:`probelib.zoo.DEMO_ADV_SCHEDULE`).
    """

    steps: int = 100
    batch_size: int = 16
    lr: float = 1e-3
    attack_steps: int = 2
    attack_step: float | None = None
    norm: str = "linf"
    crop: float = 0.5
    flip: bool = True
    jitter: float = 0.2
    clean_weight: float = 0.0
    loss: str = "standardized"

    def __post_init__(self) -> None:
        check_positive_int(self.steps, "steps")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.attack_steps, "attack_steps")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; valid: {', '.join(map(repr, NORMS))}")
        for name, low, open_low, high in (("lr", 0.0, True, math.inf), ("crop", 0.0, True, 1.0),
                                          ("jitter", 0.0, False, 1.0), ("clean_weight", 0.0, False, math.inf)):
            v = getattr(self, name)
            number = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            if not number or v < low or (open_low and v == low) or v > high:
                raise ValueError(f"{name} must be a number in {'(' if open_low else '['}{low:g}, {high:g}"
                                 f"{']' if math.isfinite(high) else ')'}; got {v!r}")
            object.__setattr__(self, name, float(v))  # 1 and 1.0 are the same schedule (and key)
        if self.attack_step is not None and not (isinstance(self.attack_step, (int, float))
                                                 and 0 < self.attack_step < math.inf):
            raise ValueError(f"attack_step must be a positive number or None; got {self.attack_step!r}")
        if self.attack_step is not None:
            object.__setattr__(self, "attack_step", float(self.attack_step))
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; valid: {', '.join(map(repr, LOSSES))}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False; got {self.flip!r}")

    @property
    def step_factor(self) -> float:
        """PGD step length / budget."""
        return self.attack_step if self.attack_step is not None else max(2.5 / self.attack_steps, 1.25)

    def replace(self, **changes) -> "AdvSchedule":
        return AdvSchedule(**{**asdict(self), **changes})


# ------------------------------------------------------------------------------------ the loop

def _augment(x: Tensor, gen: torch.Generator, schedule: AdvSchedule) -> Tensor:
    """Random resized crops (area fraction in [crop, 1], aspect ratio in [3/4, 4/3]) resampled to
    the input size, horizontal flips and colour jitter of a batch x (B, 3, S, S) in [0, 1]; every
    draw from ``gen`` (CPU)."""
    b = x.shape[0]
    u = torch.rand((b, 8), generator=gen, dtype=torch.float64)
    area = schedule.crop + (1.0 - schedule.crop) * u[:, 0]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    if schedule.crop >= 1.0:  # no cropping
        sx, sy = torch.ones_like(sx), torch.ones_like(sy)
    tx = (1.0 - sx) * (2.0 * u[:, 2] - 1.0)  # centre, in [-1, 1] coordinates, crop inside the image
    ty = (1.0 - sy) * (2.0 * u[:, 3] - 1.0)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if schedule.flip else torch.ones(b, dtype=torch.float64)
    theta = torch.zeros((b, 2, 3), dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = sx * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sy, ty
    theta = theta.to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if schedule.jitter > 0:
        j = schedule.jitter
        bright, contrast, sat = ((1.0 - j + 2.0 * j * u[:, k]).to(x).view(b, 1, 1, 1) for k in (5, 6, 7))
        out = out * bright
        gray = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
        out = (out - gray.mean((2, 3), keepdim=True)) * contrast + gray.mean((2, 3), keepdim=True)
        gray = (0.299 * out[:, 0:1] + 0.587 * out[:, 1:2] + 0.114 * out[:, 2:3])
        out = (out - gray) * sat + gray
    return out.clamp(0.0, 1.0)


def _feature_loss(student: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """Per image (B,) of flattened features: ``mean_j ((student_j - target_j) * weight_j)^2``
    ("standardized": ``weight`` = 1 / s.d. of feature j), or ``||student - target||^2 /
    ||target||^2`` when ``weight`` is None ("relative")."""
    s, t = student.flatten(1), target.flatten(1)
    if weight is None:
        return (s - t).pow(2).sum(1) / t.pow(2).sum(1).clamp_min(1e-12)
    return ((s - t) * weight).pow(2).mean(1)


def _feature_weight(teacher: Encoder, images: Tensor, schedule: AdvSchedule, device) -> Tensor | None:
    """1 / s.d. over the clean training images of each feature of the standard network (a floor of
    a tenth of the median s.d. keeps near-constant features from dominating); None for "relative"."""
    if schedule.loss == "relative":
        return None
    with torch.no_grad():
        f = torch.cat([teacher.features(images[i:i + 64].to(device)).flatten(1)
                       for i in range(0, images.shape[0], 64)])
    sd = f.std(0)
    return 1.0 / sd.clamp_min(0.1 * float(sd.median()) + 1e-12)


def _attack(student: Encoder, x: Tensor, target: Tensor, weight: Tensor | None, eps: float,
            schedule: AdvSchedule, gen: torch.Generator) -> Tensor:
    """PGD (L-inf) on the student: delta maximising :func:`_feature_loss` within the budget,
    started at a uniform random point of the ball (drawn from ``gen`` on the CPU)."""
    delta = ((2.0 * torch.rand(x.shape, generator=gen, dtype=torch.float32) - 1.0) * eps).to(x)
    delta = (x + delta).clamp(0.0, 1.0) - x
    alpha = schedule.step_factor * eps
    for _ in range(schedule.attack_steps):
        delta.requires_grad_(True)
        loss = _feature_loss(student.features(x + delta), target, weight).sum()
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0.0, 1.0) - x
    return delta.detach()


def _progress_disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: ``progress`` if given; else off when ``TQDM_DISABLE`` is set (as in the
    book's build), else on in a terminal only (``None``)."""
    if progress is not None:
        return not progress
    env = os.environ.get("TQDM_DISABLE", "")
    return True if env and env.lower() not in ("0", "false") else None


def _stage_generator(seed: int, eps: float) -> torch.Generator:
    """The CPU generator of one training run, seeded by (seed, budget): the stages of a curriculum
    draw different batches, crops and starts."""
    state = np.random.SeedSequence([int(seed), int(round(eps * 255 * 1000))]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _train(teacher: Encoder, init: Encoder, images: Tensor, eps: float, schedule: AdvSchedule,
           seed: int, device: torch.device, progress: bool | None) -> dict[str, Tensor]:
    """:func:`_train_loop` with one torch thread on the CPU (restored after): with several
    threads, sums are split differently and hundreds of steps turn the last bits into different
    weights, so the cached weights (and every number of the book) would depend on the machine's
    core count. The two ladders train side by side, one thread each, anyway."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        return _train_loop(teacher, init, images, eps, schedule, seed, device, progress)
    finally:
        torch.set_num_threads(threads)


def _train_loop(teacher: Encoder, init: Encoder, images: Tensor, eps: float, schedule: AdvSchedule,
                seed: int, device: torch.device, progress: bool | None) -> dict[str, Tensor]:
    """The training loop: a copy of ``init`` trained on ``device`` against the features of
    ``teacher`` (neither is changed); returns the trained network's state dict (CPU tensors)."""
    if _home(teacher) != device:
        teacher = copy.deepcopy(teacher).to(device)
    student = copy.deepcopy(init).to(device)
    student.net.eval()  # batch norm frozen, dropout off
    params = list(student.net.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=schedule.lr)
    weight = _feature_weight(teacher, images, schedule, device)
    gen = _stage_generator(seed, eps)
    n = images.shape[0]
    order: list[int] = []
    desc = f"adversarial fine-tuning {teacher.name} at {eps * 255:g}/255"
    with tqdm(total=schedule.steps, desc=desc, disable=_progress_disabled(progress), leave=False) as bar:
        for _ in range(schedule.steps):
            while len(order) < schedule.batch_size:
                order += torch.randperm(n, generator=gen).tolist()
            idx, order = order[:schedule.batch_size], order[schedule.batch_size:]
            x = _augment(images[idx].to(device), gen, schedule)
            with torch.no_grad():
                target = teacher.features(x)
            delta = _attack(student, x, target, weight, eps, schedule, gen)
            loss = _feature_loss(student.features(x + delta), target, weight).mean()
            if schedule.clean_weight > 0:
                loss = loss + schedule.clean_weight * _feature_loss(student.features(x), target, weight).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    if not all(torch.isfinite(p).all() for p in params):
        raise FloatingPointError(f"adversarial fine-tuning of {teacher.name} at {eps * 255:g}/255 diverged "
                                 f"(non-finite weights); lower the learning rate ({schedule.lr:g})")
    return {k: v.detach().to("cpu").contiguous() for k, v in student.net.state_dict().items()}


def code_version() -> str:
    """Digest of the source of the training code (part of every cache key)."""
    parts = (_augment, _feature_loss, _feature_weight, _attack, _stage_generator, _train, _train_loop,
             AdvSchedule)
    src = "".join(inspect.getsource(f) for f in parts)
    return hashlib.sha256(src.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------ caching

def training_key(teacher: Encoder, init: Encoder, images, eps: float, schedule: AdvSchedule,
                 seed: int) -> dict:
    """Everything the trained weights depend on (JSON-serialisable): the standard network and the
    starting network by content, the layer, the images by content, the budget, the schedule, the
    seed and the code version."""
    return {"teacher": module_key(teacher), "init": module_key(init), "layer": teacher.layer,
            "images": array_digest(images), "n_images": int(images.shape[0]), "eps": float(eps),
            "schedule": asdict(schedule), "seed": int(seed), "code": code_version()}


def weights_path(key: dict, location: str | os.PathLike | None = None) -> Path:
    """Where the weights of ``key`` are cached (the directory is checked like every cache)."""
    root = check_cache_dir(cache_dir() if location is None else location)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return check_cache_dir(root / SUBDIR) / f"{digest}.safetensors"


def _read_cached(path: Path, key: dict, reference: dict[str, Tensor]) -> dict[str, Tensor] | None:
    """The state dict in ``path`` if it is a complete safetensors file written for ``key`` whose
    tensors fit ``reference``; else None (with a warning if a file was there)."""
    if not path.exists():
        return None
    try:
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if json.loads(meta.get("key", "null")) != json.loads(json.dumps(key, sort_keys=True)):
            raise ValueError("it was written for other inputs")
        state = load_weights_file(path)
        if set(state) != set(reference):
            raise ValueError("its tensors are not those of the network")
        for k, v in reference.items():
            if state[k].shape != v.shape or state[k].dtype != v.dtype:
                raise ValueError(f"tensor {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
            if state[k].is_floating_point() and not torch.isfinite(state[k]).all():
                raise ValueError(f"tensor {k} holds NaN or infinite values")
        return state
    except Exception as err:  # noqa: BLE001 - any unreadable file is retrained, never used
        warnings.warn(f"ignoring the cached adversarially trained weights {path} ({err}); training again",
                      stacklevel=3)
        return None


def _write_atomic(path: Path, state: dict[str, Tensor], key: dict) -> None:
    from safetensors.torch import save_file
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={"key": json.dumps(key, sort_keys=True)})
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------------------ public API

def _check_images(images) -> Tensor:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not isinstance(images, Tensor) else images)
    check_images(x.float(), "training images")
    if x.shape[0] < 2:
        raise ValueError(f"need at least 2 training images; got {x.shape[0]}")
    return x.detach().float().cpu().contiguous()


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise ValueError(f"eps must be a number (pixels in [0, 1], e.g. 4/255); got {eps!r}")
    eps = float(eps)
    if not 0 < eps <= 1 or not math.isfinite(eps):
        raise ValueError(f"eps must be in (0, 1] (pixels in [0, 1], e.g. 4/255); got {eps!r}")
    return eps


def _check_encoder(encoder, name: str) -> Encoder:
    if not isinstance(encoder, Encoder):
        raise ValueError(f"adversarial fine-tuning needs a probelib Encoder (load_encoder, or build_encoder "
                         f"of a plain network) as {name}; got {type(encoder).__name__}")
    return encoder


def _home(encoder: Encoder) -> torch.device:
    return next((t.device for t in list(encoder.parameters()) + list(encoder.buffers())), torch.device("cpu"))


def adversarial_finetune(encoder: Encoder, images, eps: float, schedule: AdvSchedule | None = None,
                         seed: int = 0, init: Encoder | None = None, device=None, cache: bool = True,
                         progress: bool | None = None, location: str | os.PathLike | None = None) -> Encoder:
    """A copy of ``encoder`` whose network is adversarially fine-tuned at its layer (module docstring).

    Parameters
    ----------
    encoder : a trained :class:`~probelib.encoders.Encoder`, the standard network whose clean
        features are the targets (not changed).
    images : training images (N, 3, S, S) in [0, 1], numpy or tensor (never the probed images).
    eps : L-inf budget, pixels in [0, 1] (e.g. ``4/255``); per pixel, so independent of S.
    schedule : :class:`AdvSchedule` (default ``AdvSchedule()``).
    seed : seeds every random draw of the training (with ``eps``).
    init : the network training starts from (default ``encoder``; e.g. the rung below in a
        curriculum); same architecture and layer.
    device : where to train (default: where ``encoder`` lives); changes the result only by float
        rounding, and not the cache key.
    cache : read / write the trained weights in the cache directory (``location``, default
        :func:`probelib.cache.cache_dir`, subdirectory ``adversarial``).
    progress : tqdm progress bar (``None``: in a terminal, unless ``TQDM_DISABLE`` is set).

    Returns a new :class:`~probelib.encoders.Encoder` (the layer, normalisation and ``spatial``
    setting of ``encoder``) on the device of ``encoder``, frozen and in eval mode.
    """
    encoder = _check_encoder(encoder, "encoder")
    init = encoder if init is None else _check_encoder(init, "init")
    if type(init.net) is not type(encoder.net) or init.layer != encoder.layer:
        raise ValueError(f"init must be the same network truncated at the same layer as encoder "
                         f"({type(encoder.net).__name__} at {encoder.layer!r}); got "
                         f"{type(init.net).__name__} at {init.layer!r}")
    x = _check_images(images)
    eps = _check_eps(eps)
    schedule = AdvSchedule() if schedule is None else schedule
    if not isinstance(schedule, AdvSchedule):
        raise ValueError(f"schedule must be an AdvSchedule; got {type(schedule).__name__}")
    seed = check_seed(seed, nonnegative=True)
    home = _home(encoder)
    dev = torch.device(device) if device is not None else home
    reference = encoder.net.state_dict()
    state = None
    if cache:
        key = training_key(encoder, init, x, eps, schedule, seed)
        path = weights_path(key, location)
        state = _read_cached(path, key, reference)
    if state is None:
        with _deterministic(dev):
            state = _train(encoder, init, x, eps, schedule, seed, dev, progress)
        if cache:
            _write_atomic(path, state, key)
    out = copy.deepcopy(encoder)
    out.net.load_state_dict(state)
    out.net.eval().requires_grad_(False)
    out.eval()
    out.name = f"{encoder.name}+adv{eps * 255:g}"
    start = "" if init is encoder else f", continuing {init.name}"
    out.weights_source = (f"adversarially fine-tuned at {encoder.layer} (L-inf {eps * 255:g}/255, "
                          f"{schedule.steps} steps, seed {seed}{start}) from {encoder.weights_source}")
    return out.to(home)


def curriculum_budgets(eps: float, first: float | None = None) -> list[float]:
    """The budgets of :func:`curriculum`: ``[..., eps / 4, eps / 2, eps]``, halving while the budget
    stays >= ``first`` (``None``: ``[eps]``)."""
    eps = _check_eps(eps)
    out = [eps]
    if first is not None:
        first = _check_eps(first)
        while out[0] / 2 >= first * (1 - 1e-9):
            out.insert(0, out[0] / 2)
    return out


def curriculum(encoder: Encoder, images, eps: float, schedule: AdvSchedule | None = None,
               first: float | None = None, seed: int = 0, device=None, cache: bool = True,
               progress: bool | None = None, location: str | os.PathLike | None = None) -> Encoder:
    """Adversarial fine-tuning through a budget-doubling curriculum: one :func:`adversarial_finetune`
    run per budget of :func:`curriculum_budgets` (``eps``, halved down to ``first``), each starting
    from the previous one's network, all pulled towards the clean features of ``encoder``.

    Every stage is cached on its own, so a ladder ``first, 2 first, 4 first ...`` costs one stage
    per rung: ``curriculum(enc, x, 16/255, first=4/255)`` reuses the networks of 4/255 and 8/255.
    Arguments as in :func:`adversarial_finetune`.
    """
    current = encoder
    for e in curriculum_budgets(eps, first):
        current = adversarial_finetune(encoder, images, e, schedule, seed=seed,
                                       init=None if current is encoder else current, device=device,
                                       cache=cache, progress=progress, location=location)
    return current


class _deterministic:
    """cuDNN in deterministic mode for the duration of a training on CUDA (restored after)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.saved = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = self.saved
        return False


__all__ = ["AdvSchedule", "adversarial_finetune", "code_version", "curriculum", "curriculum_budgets",
           "training_key", "weights_path"]
