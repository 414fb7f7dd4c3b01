"""A user's own model, method and dataset for clexp, outside clexp (an example that the test suite runs).

Use it from the command line with this folder on PYTHONPATH and its conf/ as an extra config folder:

    PYTHONPATH=examples/extension clexp --config-dir examples/extension/conf \
        model=tiny_mlp method=drift dataset=blobs train.epochs=20 optimizer.lr=0.01 method.beta=0,10 -m
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.data.base import SourceData
from clexp.methods.base import ImportanceCallback
from clexp.methods.quadratic import QuadraticPenalty
from clexp.models.heads import ContinualClassifier


# -- a dataset: any callable returning a SourceData (train/test tensors, labels in [0, n_classes)) -------
def gaussian_blobs(n_classes: int = 4, per_class: int = 60, dim: int = 8, seed: int = 0,
                   name: str = "blobs") -> SourceData:
    """`n_classes` Gaussian blobs in `dim` dimensions (flat features), 2/3 train, 1/3 test."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(n_classes, dim, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    x = centres[y] + torch.randn(len(y), dim, generator=g)
    order = torch.randperm(len(y), generator=g)
    x, y = x[order], y[order]
    cut = 2 * len(y) // 3
    return SourceData(name, x[:cut], y[:cut], x[cut:], y[cut:], n_classes)


# -- a model: follows the model contract of clexp/models/__init__.py ------------------------------------
def tiny_mlp(input_shape, n_outputs: int, n_experiences: int = 1, multihead: bool = False,
             width: int = 16) -> ContinualClassifier:
    """Flatten → Linear → Tanh → head(s)."""
    features = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.Tanh())
    return ContinualClassifier(features, width, n_outputs, n_experiences if multihead else 1)


# -- a quadratic method with a boundary-time estimator: a penalty and the callback that feeds it --------
class DriftPenalty(QuadraticPenalty):
    """(β/2)·Σ Ω (θ − θ*)², Ω accumulated over experiences; β is the method's strength (`strength: beta`)."""

    ARGS = {"beta": ("number", {"low": 0})}  # a bad value: one line naming method.beta, exit 2, before torch loads

    def __init__(self, beta: float):
        check_args(DriftPenalty.ARGS, beta=beta)
        super().__init__(beta, factor=0.5, mode="online", gamma=1.0)


class DriftImportance(ImportanceCallback):
    """Ω = |θ_end − θ_start| of the experience: weights that moved to learn it are kept."""

    def on_train_start(self, trainer, pl_module):
        self.start = {n: p.detach().clone() for n, p in pl_module.model.named_parameters()}

    def estimate(self, trainer, pl_module):
        return {n: (p.detach() - self.start[n]).abs() for n, p in pl_module.model.named_parameters()
                if p.requires_grad}
