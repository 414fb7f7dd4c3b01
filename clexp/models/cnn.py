"""A small convolutional network for MNIST-size images (works on 8×8 digits and 32×32 CIFAR too)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.models.heads import ContinualClassifier
from clexp.models.mlp import dense_stack


def CNN(
    input_shape: Sequence[int],
    n_outputs: int,
    channels: Sequence[int] = (32, 64),
    hidden: int | Sequence[int] = (128,),
    n_experiences: int = 1,
    multihead: bool = False,
    batch_norm: bool = False,
    dropout: float = 0.0,
    freeze_norm_stats: bool = False,
) -> ContinualClassifier:
    """[conv3×3 pad 1 (→ BatchNorm) → ReLU → MaxPool2] per entry of `channels` → Flatten →
    [Linear → ReLU (→ Dropout)] per entry of `hidden` (one int: one layer) → head(s) (one per
    experience when `multihead`). `freeze_norm_stats`: BatchNorm statistics stop moving from the
    second experience on (see clexp/models/__init__.py).

    Pooling stops once the maps are smaller than 4×4, so 8×8 digits keep 2×2 maps with two blocks."""
    check_args(CNN.ARGS, channels=channels, hidden=hidden)
    if isinstance(hidden, int):
        hidden = (hidden,)
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
    convs = nn.Sequential(*layers).eval()  # eval: the dummy pass leaves BatchNorm's running statistics alone
    with torch.no_grad():
        width = convs(torch.zeros(1, *input_shape)).shape[1]
    convs.train()
    dense, width = dense_stack(width, hidden, dropout)
    return ContinualClassifier(nn.Sequential(*layers, *dense), width, n_outputs,
                               n_experiences if multihead else 1, freeze_norm_stats)


CNN.ARGS = {"channels": ("ints", {}), "hidden": ("ints", {"one": True})}  # read from source (clexp.config.argspec)
