"""Classical robustness: does the ImageNet top-1 label of an encoder's classifier survive FGSM?"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..cache import array_digest, cached_call, module_key

__all__ = ["ClassificationRobustness", "classification_robustness"]

@dataclass
class ClassificationRobustness:
    """FGSM (L-inf) on an ImageNet classifier.

    eps : (E,) budgets; clean_label : (N,) top-1 class of the clean images (or the given labels);
    clean_prob : (N,) softmax probability of that class; adv_label : (E, N) top-1 class of the
    attacked images; label_prob : (E, N) probability of the clean label after the attack.
    """

    eps: np.ndarray
    clean_label: np.ndarray
    clean_prob: np.ndarray
    adv_label: np.ndarray
    label_prob: np.ndarray

    @property
    def survival(self) -> np.ndarray:
        """(E,) fraction of images whose top-1 label is unchanged by the attack."""
        return (self.adv_label == self.clean_label[None]).mean(1)


def _classification_impl(key, encoder, images, eps, labels, batch_size):
    del key
    x_all = torch.as_tensor(images)
    dev = next((t.device for t in list(encoder.parameters()) + list(encoder.buffers())), torch.device("cpu"))
    eps = [float(e) for e in eps]
    clean_label, clean_prob = [], []
    adv_label = [[] for _ in eps]
    label_prob = [[] for _ in eps]
    was_training = encoder.training
    encoder.eval()
    try:
        for b in range(0, len(x_all), batch_size):
            x = x_all[b:b + batch_size].to(dev).clone().requires_grad_(True)
            with torch.enable_grad():
                logits = encoder.classify(x)
                y = logits.argmax(1) if labels is None else torch.as_tensor(labels[b:b + batch_size], device=dev)
                loss = F.cross_entropy(logits, y, reduction="sum")
                grad = torch.autograd.grad(loss, x)[0]
            clean_label.append(y.cpu())
            clean_prob.append(logits.detach().softmax(1).gather(1, y[:, None])[:, 0].cpu())
            with torch.no_grad():
                for e, eps_e in enumerate(eps):
                    x_adv = (x.detach() + eps_e * grad.sign()).clamp(0.0, 1.0)
                    p = encoder.classify(x_adv).softmax(1)
                    adv_label[e].append(p.argmax(1).cpu())
                    label_prob[e].append(p.gather(1, y[:, None])[:, 0].cpu())
    finally:
        encoder.train(was_training)
    return ClassificationRobustness(
        eps=np.asarray(eps), clean_label=torch.cat(clean_label).numpy(),
        clean_prob=torch.cat(clean_prob).numpy().astype(np.float64),
        adv_label=np.stack([torch.cat(a).numpy() for a in adv_label]),
        label_prob=np.stack([torch.cat(a).numpy() for a in label_prob]).astype(np.float64))


def classification_robustness(encoder, images, eps, labels=None, batch_size: int = 8,
                              cache: bool = True) -> ClassificationRobustness:
    """FGSM on the ImageNet classifier of ``encoder`` (an :class:`~probelib.encoders.Encoder` or a
    smoothed one; its ``classify`` gives logits (N, 1000), averaged over the noise draws when
    smoothed): ``x_adv = clamp(x + eps * sign(grad CE(logits(x), y)), 0, 1)``.

    images : (N, 3, H, W) in [0, 1] (the networks' native 224 px or smaller); eps : budget or grid
    (per-pixel, e.g. ``3/255``); labels : (N,) reference classes (default: the encoder's own clean
    top-1 prediction, so the measure is the stability of its decision, no ground truth needed).
    Cached on disk by the encoder's identity (incl. smoothing draws), the images, eps and labels.
    """
    x = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W); got {x.shape}")
    if x.min() < 0 or x.max() > 1:
        raise ValueError("images must have pixels in [0, 1]")
    if not hasattr(encoder, "classify"):
        raise ValueError("encoder has no ImageNet classifier (classify method)")
    eps_list = [float(e) for e in np.atleast_1d(np.asarray(eps, dtype=np.float64))]
    if any(e < 0 for e in eps_list):
        raise ValueError(f"eps must be >= 0; got {eps_list}")
    lab = None if labels is None else np.asarray(labels, dtype=np.int64).reshape(-1)
    key = {"encoder": module_key(encoder), "images": array_digest(x), "eps": eps_list,
           "labels": None if lab is None else lab.tolist()}
    return cached_call(_classification_impl, key if cache else None, encoder, x, eps_list, lab,
                       int(batch_size), ignore=("batch_size",),
                       check=lambda r: (isinstance(r, ClassificationRobustness)
                                        and len(r.clean_label) == len(x)))
