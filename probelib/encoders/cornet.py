"""CORnet-RT (Kubilius et al. 2018), with the parameter names of dicarlolab/CORnet so that its
checkpoint loads."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn


class _CORblockRT(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        self.out_channels, self.kernel_size, self.stride = out_channels, kernel_size, stride
        self.conv_input = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, out_channels)
        self.nonlin_input = nn.ReLU()
        self.conv1 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, out_channels)
        self.nonlin1 = nn.ReLU()
        self.output = nn.Identity()

    def out_size(self, size: int) -> int:
        return (size + 2 * (self.kernel_size // 2) - self.kernel_size) // self.stride + 1

    def forward(self, inp: torch.Tensor | None, state, like: torch.Tensor, size: int) -> torch.Tensor:
        if inp is None:  # t = 0: no feed-forward input yet above V1
            inp = like.new_zeros(like.shape[0], self.out_channels, size, size)
        else:
            inp = self.nonlin_input(self.norm_input(self.conv_input(inp)))
        x = self.nonlin1(self.norm1(self.conv1(inp + state)))
        return self.output(x)


class CORnetRT(nn.Module):
    """CORnet-RT with ``times`` recurrent steps; works at any input size (not only 224 px)."""

    blocks = ("V1", "V2", "V4", "IT")

    def __init__(self, times: int = 5, num_classes: int = 1000):
        super().__init__()
        self.times = times
        self.V1 = _CORblockRT(3, 64, kernel_size=7, stride=4)
        self.V2 = _CORblockRT(64, 128, stride=2)
        self.V4 = _CORblockRT(128, 256, stride=2)
        self.IT = _CORblockRT(256, 512, stride=2)
        self.decoder = nn.Sequential(OrderedDict([
            ("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
            ("linear", nn.Linear(512, num_classes))]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes, s = {}, x.shape[-1]
        for b in self.blocks:
            s = getattr(self, b).out_size(s)
            sizes[b] = s
        outputs: dict = {"inp": x}
        states: dict = {b: 0 for b in self.blocks}
        for t in range(self.times):
            new = {"inp": x}
            prev = "inp"
            for b in self.blocks:
                inp = outputs[prev] if (t > 0 or b == "V1") else None
                new[b] = getattr(self, b)(inp, states[b], x, sizes[b])
                states[b] = new[b]
                prev = b
            outputs = new
        return self.decoder(outputs["IT"])
