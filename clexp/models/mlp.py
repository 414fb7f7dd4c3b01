"""Multi-layer perceptron over flattened inputs; `hidden` lists the hidden widths."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from clexp.models.heads import ContinualClassifier


def MLP(
    input_shape: Sequence[int],
    n_outputs: int,
    hidden: Sequence[int] = (400, 400),
    n_heads: int = 1,
    dropout: float = 0.0,
) -> ContinualClassifier:
    """Flatten → [Linear → ReLU (→ Dropout)] per hidden width → head(s)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    return ContinualClassifier(nn.Sequential(*layers), width, n_outputs, n_heads)
