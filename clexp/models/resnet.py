"""The reduced ResNet-18 of continual-learning papers (Lopez-Paz & Ranzato 2017, GEM): BasicBlocks
[2, 2, 2, 2] with widths nf, 2nf, 4nf, 8nf (nf = 20), a 3×3 stride-1 stem, BatchNorm, for 32×32 images.

Global average pooling gives the 8nf features: GEM's `avg_pool2d(out, 4)` on the 4×4 maps of a 32×32
input, and other sizes (28×28, 8×8) work too."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from clexp.models.heads import ContinualClassifier


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetFeatures(nn.Module):
    def __init__(self, in_channels: int, nf: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())
        blocks, c = [], nf
        for i, width in enumerate((nf, 2 * nf, 4 * nf, 8 * nf)):
            for j in range(2):
                blocks.append(BasicBlock(c, width, 2 if (i > 0 and j == 0) else 1))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = c

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)


MIN_SIZE = 16  # three stride-2 stages: smaller images end as 1×1 maps after the second stage


def ResNet18(input_shape: Sequence[int], n_outputs: int, n_experiences: int = 1, multihead: bool = False,
             width: int = 20, freeze_norm_stats: bool = False) -> ContinualClassifier:
    """Reduced ResNet-18 (nf = `width`), one head per experience when `multihead`. BatchNorm
    statistics are frozen during importance estimation, and during training from the second
    experience on with `freeze_norm_stats` (see clexp/models/__init__.py)."""
    if len(input_shape) != 3:
        raise ValueError(f"model=resnet18 needs image inputs C×H×W, got shape {tuple(input_shape)}")
    if min(input_shape[1:]) < MIN_SIZE:
        raise ValueError(f"model=resnet18 needs images of at least {MIN_SIZE}×{MIN_SIZE} (it is built for 32×32), "
                         f"got {'×'.join(map(str, input_shape))}: use model=cnn or model=mlp for small images")
    features = ResNetFeatures(input_shape[0], width)
    return ContinualClassifier(features, features.out_dim, n_outputs, n_experiences if multihead else 1,
                               freeze_norm_stats)
