"""Multi-layer perceptron over flattened inputs; `hidden` lists the hidden widths."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from clexp.config.argspec import check_args
from clexp.models.heads import ContinualClassifier


def MLP(
    input_shape: Sequence[int],
    n_outputs: int,
    hidden: Sequence[int] = (400, 400),
    n_experiences: int = 1,
    multihead: bool = False,
    dropout: float = 0.0,
    freeze_norm_stats: bool = False,
) -> ContinualClassifier:
    """Flatten → [Linear → ReLU (→ Dropout)] per hidden width → head(s) (one per experience when
    `multihead`). It has no normalisation layer: `freeze_norm_stats` is accepted and changes nothing."""
    check_args(MLP.ARGS, hidden=hidden)
    layers, width = dense_stack(math.prod(input_shape), hidden, dropout)
    return ContinualClassifier(nn.Sequential(nn.Flatten(), *layers), width, n_outputs,
                               n_experiences if multihead else 1, freeze_norm_stats)


MLP.ARGS = {"hidden": ("ints", {})}  # read from source before torch is imported (clexp.config.argspec)


def dense_stack(width: int, hidden: Sequence[int], dropout: float = 0.0) -> tuple[list[nn.Module], int]:
    """[Linear → ReLU (→ Dropout)] per hidden width; returns the layers and the final width."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    return layers, width
