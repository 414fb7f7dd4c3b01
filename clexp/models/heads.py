"""A backbone followed by one linear head, or by one head per experience (task-IL, multi-head).

`ContinualClassifier` is the reference implementation of the model contract written in
`clexp/models/__init__.py`; wrapping your own backbone in it is the shortest way to follow it."""

from __future__ import annotations

import torch
from torch import nn


class ContinualClassifier(nn.Module):
    """`features` (a backbone producing `feature_dim` values) + linear head(s).

    With `n_heads > 1`, `forward(x, task)` picks each sample's head from its task id; when `task` is
    omitted, `active_task` is used (estimators such as the Fisher call `model(x)` alone).
    `freeze_norm_stats` is read by `ContinualModule`: from the second experience on, the running
    statistics of every normalisation layer stop moving (the layers train in eval mode).
    """

    def __init__(self, features: nn.Module, feature_dim: int, n_outputs: int, n_heads: int = 1,
                 freeze_norm_stats: bool = False):
        super().__init__()
        self.features = features
        self.n_heads = int(n_heads)
        self.active_task = 0
        self.freeze_norm_stats = bool(freeze_norm_stats)
        if self.n_heads == 1:
            self.head = nn.Linear(feature_dim, n_outputs)
        else:
            self.heads = nn.ModuleList(nn.Linear(feature_dim, n_outputs) for _ in range(self.n_heads))

    def forward(self, x: torch.Tensor, task: torch.Tensor | int | None = None) -> torch.Tensor:
        h = self.features(x)
        if self.n_heads == 1:
            return self.head(h)
        if task is None:
            task = self.active_task
        if isinstance(task, int):
            return self.heads[task](h)
        first = int(task[0])
        if bool((task == first).all()):  # one task in the batch: the usual case, no gather
            return self.heads[first](h)
        out = torch.stack([head(h) for head in self.heads])  # heads × N × outputs
        return out[task, torch.arange(len(h), device=h.device)]
