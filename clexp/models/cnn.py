"""A small convolutional network for MNIST-size images (works on 8×8 digits and 32×32 CIFAR too)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clexp.models.heads import ContinualClassifier
from clexp.models.mlp import dense_stack


def CNN(
    input_shape: Sequence[int],
    n_outputs: int,
    channels: Sequence[int] = (32, 64),
    hidden: Sequence[int] = (128,),
    n_heads: int = 1,
    batch_norm: bool = False,
    dropout: float = 0.0,
) -> ContinualClassifier:
    """[conv3×3 (→ BatchNorm) → ReLU → MaxPool2] per channel width → Flatten → [Linear → ReLU] → head(s)."""
    if len(input_shape) != 3:
        raise ValueError(f"model=cnn needs image inputs C×H×W, got shape {tuple(input_shape)}")
    layers: list[nn.Module] = []
    c_in, size = input_shape[0], min(input_shape[1:])
    for c in channels:
        layers += [nn.Conv2d(c_in, int(c), 3, padding=1)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(c)))
        layers.append(nn.ReLU())
        if size >= 4:  # keep at least 2×2 maps on small inputs
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c_in = int(c)
    layers.append(nn.Flatten())
    with torch.no_grad():
        width = nn.Sequential(*layers)(torch.zeros(1, *input_shape)).shape[1]
    dense, width = dense_stack(width, hidden, dropout)
    return ContinualClassifier(nn.Sequential(*layers, *dense), width, n_outputs, n_heads)
