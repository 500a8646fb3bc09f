"""EncodingModel: encoder + readout as one differentiable map, images -> voxel responses."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from ._progress import progress_bar

from ._checks import check_images, check_positive_int
from ._torch import check_module, evaluating, model_device
from .cache import cached_call, module_key


def as_images(images) -> torch.Tensor:
    """Numpy or tensor images (N, 3, H, W) in [0, 1] -> validated float32 tensor."""
    x = torch.as_tensor(images)
    if x.is_floating_point() and x.dtype != torch.float32:
        x = x.float()
    return check_images(x)


def batched(fn, images, batch_size: int = 32, device=None, progress: bool | None = None,
            desc: str = "images") -> np.ndarray:
    """Apply ``fn`` to images (N, 3, H, W) in [0, 1] in batches without gradients; returns a
    float32 numpy array (N, ...).

    An ``nn.Module`` runs in eval mode on ``device`` (default: where it lives) and is left as it
    was (mode, ``requires_grad`` flags, device); a plain function runs on ``device`` (default:
    where the images are)."""
    x = as_images(images)
    batch_size = check_positive_int(batch_size, "batch_size")
    context = evaluating(fn, device) if isinstance(fn, nn.Module) else contextlib.nullcontext()
    if device is None and isinstance(fn, nn.Module):
        device = model_device(fn)
    n = x.shape[0]
    show = progress if progress is not None else n > 4 * batch_size
    out = []
    with context, torch.no_grad():
        for i in progress_bar(range(0, n, batch_size), desc=desc, disable=not show, leave=False):
            xb = x[i:i + batch_size].to(device) if device is not None else x[i:i + batch_size]
            out.append(fn(xb).float().cpu().numpy())
    return np.concatenate(out)


def extract_features(encoder: nn.Module, images, batch_size: int = 32, device=None,
                     progress: bool | None = None, cache: bool = True) -> np.ndarray:
    """Encoder features of ``images`` (N, 3, H, W) in [0, 1]: (N, D) or (N, C, h, w), float32.

    The encoder runs in eval mode (its own mode is restored). Cached on disk by the encoder's
    content (:func:`probelib.cache.module_key`: code, settings, weights) and the images' content
    when ``cache``; ``batch_size``, ``device`` and ``progress`` do not change the result.
    """
    x = as_images(images)
    check_module(encoder, "encoder")
    if not cache:
        return _features_impl(None, x, encoder, batch_size, device, progress)
    images_np = x.cpu().numpy()
    return cached_call(_features_impl, "features", images_np, encoder, batch_size,
                       None if device is None else str(device), progress,
                       ignore=("encoder", "batch_size", "device", "progress"),
                       check=lambda f: (isinstance(f, np.ndarray) and f.dtype == np.float32
                                        and f.shape[0] == len(images_np)))


def _features_impl(key, images, encoder, batch_size, device, progress):
    return batched(encoder, torch.as_tensor(images), batch_size, device, progress,
                   desc=f"features {getattr(encoder, 'name', type(encoder).__name__)}")


class EncodingModel(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> predicted responses (N, V) = readout(encoder(images))."""

    def __init__(self, encoder: nn.Module, readout: nn.Module, name: str | None = None):
        super().__init__()
        self.encoder, self.readout = encoder, readout
        self.name = name or f"{getattr(encoder, 'name', 'encoder')}/{getattr(readout, 'kind', 'readout')}"
        self.training = False  # this container only: the encoder keeps its owner's mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.readout(self.encoder(images))

    def predict(self, images, batch_size: int = 32, device=None, progress: bool | None = None) -> np.ndarray:
        """Batched no-grad eval-mode predictions (N, V) as numpy, with a progress bar on long runs."""
        return batched(self, images, batch_size, device, progress, desc=f"predict {self.name}")

    @property
    def n_outputs(self) -> int:
        w = getattr(self.readout, "weight", None)
        if w is not None:
            return int(w.shape[0])
        return int(self.readout.out_mean.numel())


def fit_encoding_model(encoder: nn.Module, images, responses, kind: str = "ridge", seed: int = 0,
                       batch_size: int = 32, device=None, name: str | None = None,
                       **options) -> EncodingModel:
    """Extract (cached, eval-mode) features of training ``images`` (N, 3, H, W) in [0, 1] and fit a
    ``kind`` readout to ``responses`` (N, V). With ``device``, the returned model (and so the
    encoder it holds) lives there; otherwise where the encoder lives."""
    from .fitting import fit_and_predict

    if device is not None:  # the model will live there: compute the features there too
        encoder.to(device)
    feats = extract_features(encoder, images, batch_size=batch_size)
    readout, _ = fit_and_predict(kind, feats, responses, seed=seed, **options)
    home = model_device(encoder)
    model = EncodingModel(encoder, readout, name=name)
    return model if home is None else model.to(home)


# ----------------------------------------------------------------------------------------------
# Models made of other models: noise draws, several ROIs as one model, some units of a model
# ----------------------------------------------------------------------------------------------

def with_noise_samples(model: EncodingModel, n_samples: int, seed: int | None = None) -> EncodingModel:
    """The same smoothed encoding model evaluated with ``n_samples`` noise draws.

    A smoothed encoder averages its network over a fixed set of noise images
    (:class:`probelib.encoders.SmoothedEncoder`); its expected features, and hence the fitted
    readout, do not depend on how many draws estimate them, but its input gradient does: with few
    draws the gradient carries the high-frequency imprint of those particular noise images. The
    returned model shares ``model``'s readout (not copied) and wraps the same network.
    ``seed`` defaults to the original smoothing seed.
    """
    enc = model.encoder
    if not hasattr(enc, "sigma") or not hasattr(enc, "encoder"):
        raise ValueError(f"{getattr(model, 'name', model)!r} has no smoothed encoder; only smoothed "
                         "models have noise draws")
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be >= 1; got {n_samples!r}")
    from .encoders import smooth
    new = smooth(enc.encoder, sigma=enc.sigma, n_samples=int(n_samples),
                 seed=enc.seed if seed is None else int(seed))
    new.name = f"{getattr(enc, 'name', 'smoothed')} (n={int(n_samples)})"
    return EncodingModel(new, model.readout, name=f"{model.name} (n={int(n_samples)})")


class StackedModel(nn.Module):
    """One encoder, several readouts: images (N, 3, H, W) -> (N, sum of readout outputs).

    ``names[i]`` labels the columns ``columns[i]`` (a slice) produced by ``readouts[i]``.
    """

    def __init__(self, encoder: nn.Module, readouts: Sequence[nn.Module], names: Sequence[str],
                 n_outputs: Sequence[int], name: str = "stacked") -> None:
        super().__init__()
        if not (len(readouts) == len(names) == len(n_outputs)) or not readouts:
            raise ValueError("need one name and one output count per readout (at least one)")
        self.encoder = encoder
        self.readouts = nn.ModuleList(readouts)
        self.names = list(names)
        starts = np.cumsum([0, *n_outputs])
        self.columns = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        self.name = name
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(images)
        return torch.cat([r(feats) for r in self.readouts], dim=1)


class SelectUnits(nn.Module):
    """``model`` restricted to some of its output units: (N, V) -> (N, len(units)).

    E.g. one ROI of a :class:`StackedModel` or of :func:`observer_for_rois`, as a target for
    :func:`probelib.probes.transfer` of probes made on a single-ROI model (unit 0).
    """

    def __init__(self, model: nn.Module, units: Sequence[int]) -> None:
        super().__init__()
        self.model = model
        self.units = [int(u) for u in np.atleast_1d(units)]
        if not self.units:
            raise ValueError("units must name at least one output")
        self.name = f"{getattr(model, 'name', 'model')}[{self.units}]"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)[:, self.units]


def stack_rois(fit, spec: str, rois: Sequence[str]) -> StackedModel:
    """The models ``fit.models[(spec, roi)]`` of a :class:`~probelib.fitting.PanelFit` as one
    model whose outputs are the ROIs' units side by side (ROI order of ``rois``).

    The encoder runs once per batch for all ROIs, so a Jacobian over all ROIs costs one forward
    pass. The per-ROI models must share an encoder (as :func:`~probelib.fitting.fit_panel`
    builds them) or named encoders with identical descriptions.
    """
    rois = list(rois)
    models = [fit.models[(spec, r)] for r in rois]
    first = models[0].encoder
    key = module_key(first)
    for roi, m in zip(rois, models):
        if m.encoder is not first and module_key(m.encoder) != key:
            raise ValueError(f"the models of {spec!r} do not share an encoder ({roi!r} differs)")
    return StackedModel(first, [m.readout for m in models], rois, [m.n_outputs for m in models],
                        name=f"{spec}/{'+'.join(rois)}")


def observer_for_rois(dataset, rois: Sequence[str], n_subjects: int = 3, n_voxels: int = 400,
                      seed: int = 0, device: str | torch.device = "cpu") -> nn.Module:
    """The demo's hidden observer with the columns of ``dataset.responses[roi]`` for each ROI
    side by side: (N, sum of V_roi) noiseless expected responses (ROI means for a subject-averaged
    dataset), the "ground-truth brain" against which candidate models are compared.

    ``dataset`` must be a :func:`probelib.data.demo.load_demo` result made with the same
    ``n_subjects``, ``n_voxels`` and ``seed`` (checked).
    """
    from .data.demo import demo_observer

    if not dataset.voxels or any("observer_index" not in dataset.voxels.get(r, {}) for r in rois):
        raise ValueError("the observer exists only for the demo dataset (dataset='demo')")
    obs = demo_observer(n_subjects=n_subjects, n_voxels=n_voxels, seed=seed, device=device)
    columns, blocks = [], []
    for roi in rois:
        part = obs.for_roi(dataset, roi)  # checks that the dataset came from this observer
        columns.append(np.asarray(dataset.voxels[roi]["observer_index"]))
        blocks.append(part.readout.detach().cpu().double().numpy())
    out = obs.restrict(np.concatenate(columns), _block_diagonal(blocks)).eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def _block_diagonal(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Block-diagonal matrix of 2-D blocks (K_i, M_i) -> (sum K_i, sum M_i)."""
    weights = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
    r0 = c0 = 0
    for b in blocks:
        weights[r0:r0 + b.shape[0], c0:c0 + b.shape[1]] = b
        r0, c0 = r0 + b.shape[0], c0 + b.shape[1]
    return weights


class ProbeModels:
    """The models ``(spec, roi)`` of a :class:`~probelib.fitting.PanelFit` as they are probed, and
    their cache keys.

    A smoothed spec (``"+smooth"``) is evaluated with ``probe_samples`` noise draws
    (:func:`with_noise_samples`, one encoder per spec shared by its ROIs) when that differs from the
    ``n_samples`` it was fitted with; other models are used as fitted. ``key(spec, roi)`` describes
    the probed model for the cached calls (:mod:`probelib.probes.cached`).
    """

    def __init__(self, fit, n_samples: int, probe_samples: int, digest: str, seed: int = 0,
                 device="cpu") -> None:
        self.fit, self.n_samples, self.probe_samples = fit, int(n_samples), int(probe_samples)
        self.digest, self.seed, self.device = digest, seed, device
        self._encoders: dict[str, nn.Module] = {}

    def model(self, spec: str, roi: str) -> EncodingModel:
        m = self.fit.models[(spec, roi)]
        if "+smooth" in spec and self.probe_samples != self.n_samples:
            if spec not in self._encoders:
                self._encoders[spec] = with_noise_samples(m, self.probe_samples).encoder
            m = EncodingModel(self._encoders[spec], m.readout, name=f"{spec}/{roi} (n={self.probe_samples})")
        return m.to(self.device)

    def key(self, spec: str, roi: str) -> dict:
        return {"dataset": self.digest, "spec": spec, "roi": roi,
                "n_samples": self.probe_samples if "+smooth" in spec else self.n_samples, "seed": self.seed}

