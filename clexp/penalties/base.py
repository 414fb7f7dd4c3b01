"""The interface every regularization term implements."""

from __future__ import annotations

import torch
from torch import nn


class Regularizer(nn.Module):
    """A term added to the task loss: `forward(model, x, t, logits) -> scalar tensor`.

    Its state (importances, anchors, frozen copies) lives in registered buffers or submodules, so
    it is saved in `state_dict`s, moves with `.to(device)` and survives a resume. Importance
    callbacks call `consolidate(...)` at experience boundaries; the training loop never needs to
    know which method it runs.
    """

    def forward(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
