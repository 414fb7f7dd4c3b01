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

    # True: the training loop asks `value(model)` only when it logs, and adds the gradient itself with
    # `add_gradient(model, grad_scale)` after the backward (no autograd graph, fewest passes over the parameters)
    analytic_gradient = False

    def forward(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
