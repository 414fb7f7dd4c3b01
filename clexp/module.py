"""`ContinualModule`: the model, its configurable regularization term and the loss, as a LightningModule."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from clexp.penalties.base import Regularizer


def mask_logits(logits: torch.Tensor, masks: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
    """Task-IL masking: outputs outside each sample's experience become -inf."""
    if masks is None:
        return logits
    return logits.masked_fill(~masks[t], float("-inf"))


class ContinualModule(pl.LightningModule):
    """Cross-entropy on the current experience plus `regularizer(model, x, t, raw_logits)`.

    Batches are `(x, y, t)`: inputs, targets in output space, task ids. `task_masks` (T × outputs,
    bool) masks a shared head to each experience's outputs (task-IL without multiple heads).
    The optimizer is rebuilt at the start of every experience from `optimizer` (a factory taking
    the model's parameters, e.g. a Hydra `_partial_` of `torch.optim.Adam`).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        regularizer: Regularizer | None = None,
        task_masks: torch.Tensor | None = None,
    ):
        super().__init__()
        self.model = model
        self.regularizer = regularizer
        if regularizer is not None and hasattr(regularizer, "bind"):
            regularizer.bind(model)
        self.optimizer_factory = optimizer
        self.register_buffer("experience", torch.zeros((), dtype=torch.long))
        self.register_buffer("task_masks", task_masks)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Masked logits (task-IL) or plain logits."""
        if t is None:
            t = torch.full((len(x),), int(self.experience), dtype=torch.long, device=x.device)
        return mask_logits(self.model(x, t), self.task_masks, t)

    def output_mask(self, experience: int) -> torch.Tensor | None:
        """The outputs experience `experience` may predict, or None when all are allowed."""
        return None if self.task_masks is None else self.task_masks[experience]

    def training_step(self, batch, batch_idx):
        x, y, t = batch
        raw = self.model(x, t)
        loss = F.cross_entropy(mask_logits(raw, self.task_masks, t), y)
        self.log("train/loss", loss, prog_bar=True)
        if self.regularizer is None:
            self.last_terms = {"loss": loss.detach()}
            return loss
        penalty = self.regularizer(self.model, x, t, raw)
        self.log("train/penalty", penalty, prog_bar=True)
        self.last_terms = {"loss": loss.detach(), "penalty": penalty.detach()}
        return loss + penalty

    def configure_optimizers(self):
        return self.optimizer_factory(self.model.parameters())
