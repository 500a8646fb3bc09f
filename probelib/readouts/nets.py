"""Trained readouts: a 2-layer MLP and a small CNN on spatial features (full-batch Adam)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ._validate import _check_feature_count



class NetReadout(nn.Module):
    """A small trained network readout (MLP or CNN) with input/output standardisation inside."""

    def __init__(self, net: nn.Module, in_mean, in_std, out_mean, out_std, kind: str, hparams: dict,
                 feature_shape: tuple):
        super().__init__()
        self.net, self.kind, self.hparams = net, kind, hparams
        self.feature_shape = tuple(int(d) for d in feature_shape)  # one image's features
        for name, v in (("in_mean", in_mean), ("in_std", in_std), ("out_mean", out_mean), ("out_std", out_std)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.kind == "cnn":
            if tuple(features.shape[1:]) != self.feature_shape:
                raise ValueError(f"this cnn readout was fitted on features of shape {self.feature_shape} "
                                 f"per image; got {tuple(features.shape[1:])}: features of another "
                                 f"encoder, layer or image size?")
            x = features
        else:
            x = features.flatten(1)
            _check_feature_count(x.shape[1], int(np.prod(self.feature_shape)), features)
        return self.net((x - self.in_mean) / self.in_std) * self.out_std + self.out_mean


def _make_net(kind: str, in_shape: tuple, n_out: int, hidden: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(int(np.prod(in_shape)), hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    c, h, w = in_shape
    return nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(hidden * h * w, n_out))


def _train_net(kind, X, Y, weight_decay, hidden, epochs, lr, seed, device):
    """Full-batch Adam on standardised inputs/outputs; returns a NetReadout."""
    X = torch.as_tensor(X, dtype=torch.float32)
    Y = torch.as_tensor(Y, dtype=torch.float32)
    dims = (0, 2, 3) if kind == "cnn" else (0,)
    in_mean = X.mean(dims, keepdim=True)[0]
    in_std = X.std(dims, keepdim=True)[0].clamp_min(1e-6)
    out_mean, out_std = Y.mean(0), Y.std(0).clamp_min(1e-6)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _make_net(kind, tuple(X.shape[1:]), Y.shape[1], hidden)
    net = net.to(device)
    Xs = ((X - in_mean) / in_std).to(device)
    Ys = ((Y - out_mean) / out_std).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        opt.zero_grad()
        loss = ((net(Xs) - Ys) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    hp = {"weight_decay": weight_decay, "hidden": hidden, "epochs": epochs, "lr": lr, "seed": seed,
          "final_train_mse": float(loss.detach())}
    return NetReadout(net.cpu(), in_mean, in_std, out_mean, out_std, kind, hp, tuple(X.shape[1:]))


def _corr_mean(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    r = (a * b).sum(0) / np.where(den > 0, den, np.inf)  # 0 for a constant column
    return float(r.mean())
