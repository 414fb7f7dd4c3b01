"""A backbone followed by one linear head, or by one head per experience (task-IL, multi-head)."""

from __future__ import annotations

import torch
from torch import nn


class ContinualClassifier(nn.Module):
    """`features` (a backbone producing `feature_dim` values) + linear head(s).

    With `n_heads > 1`, `forward(x, task)` picks each sample's head from its task id; when `task` is
    omitted, `active_task` is used (estimators such as the Fisher call `model(x)` alone).
    """

    def __init__(self, features: nn.Module, feature_dim: int, n_outputs: int, n_heads: int = 1):
        super().__init__()
        self.features = features
        self.n_heads = n_heads
        self.active_task = 0
        if n_heads == 1:
            self.head = nn.Linear(feature_dim, n_outputs)
        else:
            self.heads = nn.ModuleList(nn.Linear(feature_dim, n_outputs) for _ in range(n_heads))

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
