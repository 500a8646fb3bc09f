"""The :class:`Encoder` wrapper: a network truncated at one layer by a forward hook, with the
input normalisation inside; layer names and their errors; :func:`check_encoder`; Gaussian
randomized smoothing (:class:`SmoothedEncoder`)."""
from __future__ import annotations

import difflib

import torch
import torch.nn as nn

from .._checks import check_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


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


# ------------------------------------------------------------------------- does a network fit?

def check_encoder(encoder: nn.Module, image_size: int = 64, device: str | torch.device | None = None,
                  gradients: bool = True) -> tuple[int, ...]:
    """Check that ``encoder`` takes a batch of two ``image_size`` px images in [0, 1], reaches its
    layer, returns finite features and (``gradients``) is differentiable with respect to the image.

    Raises ``ValueError`` saying which of these fails and why (the network's own error included).
    The encoder runs in eval mode on ``device`` and is restored afterwards (mode, ``requires_grad``
    flags, device). Returns the feature shape of one image.
    """
    from .._torch import evaluating, model_device

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
