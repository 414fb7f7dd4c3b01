"""LwF (Li & Hoiem 2016): distillation from a frozen copy of the model at the end of the previous
experience, `λ·T²·KL(softmax(z_old/T) ‖ softmax(z/T))` on the previous experiences' outputs."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

import pytorch_lightning as pl

from clexp.methods.base import Regularizer


def distillation_kl(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(old/T) ‖ softmax(new/T)), averaged over the batch."""
    T = temperature
    old = F.log_softmax(old_logits / T, dim=1)
    new = F.log_softmax(new_logits / T, dim=1)
    return T * T * F.kl_div(new, old, log_target=True, reduction="batchmean")


class Distillation(Regularizer):
    """The teacher is a frozen submodule (saved with the module); `old_outputs` marks the outputs of
    the experiences already learnt (single head) and `old_tasks` the heads (multi-head)."""

    def __init__(self, strength: float = 1.0, temperature: float = 2.0):
        super().__init__()
        self.strength, self.temperature = float(strength), float(temperature)
        self.teacher: nn.Module | None = None
        self._active = False

    def bind(self, model: nn.Module) -> None:
        self.teacher = copy.deepcopy(model)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        n_out = self._n_outputs(model)
        self.register_buffer("old_outputs", torch.zeros(n_out, dtype=torch.bool))
        self.register_buffer("old_tasks", torch.zeros(getattr(model, "n_heads", 1), dtype=torch.bool))

    @staticmethod
    def _n_outputs(model: nn.Module) -> int:
        head = model.head if getattr(model, "n_heads", 1) == 1 else model.heads[0]
        return head.out_features

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher always predicts in eval mode
        return self

    def forward(self, model, x, t, logits) -> torch.Tensor:
        """`logits` are the model's raw (unmasked) outputs on the batch."""
        if not self._active or self.strength == 0:
            return logits.new_zeros(())
        if getattr(model, "n_heads", 1) > 1:  # distil every previous head on the current inputs
            tasks = self._old_heads
            h = model.features(x)
            with torch.no_grad():
                feats = self.teacher.features(x)
                old = [self.teacher.heads[k](feats) for k in tasks]
            loss = sum(distillation_kl(model.heads[k](h), o, self.temperature) for k, o in zip(tasks, old))
            return self.strength * loss
        if self._old_idx.device != logits.device:
            self._old_idx = self._old_idx.to(logits.device)
        with torch.no_grad():
            old = self.teacher(x, t).index_select(1, self._old_idx)
        return self.strength * distillation_kl(logits.index_select(1, self._old_idx), old, self.temperature)

    def _cache(self) -> None:
        """Index forms of the masks, computed once per consolidation (no device sync per step)."""
        self._old_idx = self.old_outputs.nonzero().flatten()
        self._old_heads = self.old_tasks.nonzero().flatten().tolist()
        self._active = bool(self._old_heads) or len(self._old_idx) > 0

    @torch.no_grad()
    def consolidate(self, model: nn.Module, output_classes: list[int], task: int) -> None:
        """Freeze the current model as the teacher; mark this experience's outputs / head as old."""
        self.teacher.load_state_dict(model.state_dict())
        self.old_outputs[output_classes] = True
        if len(self.old_tasks) > 1:
            self.old_tasks[task] = True
        self._cache()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._cache()


class DistillationTeacher(pl.Callback):
    """At the end of each experience the model becomes the frozen teacher for the next ones."""

    def on_train_end(self, trainer, pl_module):
        exp = pl_module.current_experience
        pl_module.regularizer.consolidate(pl_module.model, exp.output_classes, exp.index)
