"""LwF (Li & Hoiem 2016): distillation from a frozen copy of the model at the end of the previous
experience, `λ·T²·KL(softmax(z_old/T) ‖ softmax(z/T))` on the previous experiences' outputs.

Which softmax, per scenario:
- multi-head task-IL: one KL per old head, summed over the old heads (the paper's setting);
- task-IL with a shared masked head: one KL per old task over that task's own outputs (each old
  task's softmax, as its own head would give), summed over the old tasks;
- class-IL: one softmax over every old output together (the old classes compete in the one
  head at test time, so the teacher's distribution over all of them is what is kept);
- domain-IL: every experience shares the outputs: one softmax over all of them.
"""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from clexp.config.argspec import check_args
from clexp.methods.base import Regularizer


def distillation_kl(new_logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T²·KL(softmax(old/T) ‖ softmax(new/T)) over the last dimension, summed over every other
    dimension but the batch (groups of outputs: N × G × k), averaged over the batch."""
    T = temperature
    old = F.log_softmax(old_logits / T, dim=-1)
    new = F.log_softmax(new_logits / T, dim=-1)
    return T * T * F.kl_div(new, old, log_target=True, reduction="sum") / new_logits.shape[0]


class Distillation(Regularizer):
    """The teacher is a frozen submodule (saved with the module).

    Buffers: `output_group` (one entry per output: -1 for outputs no experience has learnt yet, else
    the softmax group the output is distilled in: 0 for every old output in class-IL / domain-IL,
    the old task's index in task-IL with a masked shared head) and `old_tasks` (the old heads of a
    multi-head model).

    With several heads `needs_features` is true: `ContinualModule` passes `features=`, the student's
    backbone output from the training step's own forward, so the backbone (and its BatchNorm
    statistics) runs once per step.
    """

    ARGS = {"strength": ("number", {"low": 0}), "temperature": ("number", {"low": 0, "low_open": True})}

    def __init__(self, strength: float = 1.0, temperature: float = 2.0):
        check_args(Distillation.ARGS, strength=strength, temperature=temperature)
        super().__init__()
        self.strength, self.temperature = float(strength), float(temperature)
        self.teacher: nn.Module | None = None
        self.needs_features = False
        self._active = False

    def bind(self, model: nn.Module) -> None:
        self.teacher = copy.deepcopy(model)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        n_out = self._n_outputs(model)
        n_heads = getattr(model, "n_heads", 1)
        self.needs_features = n_heads > 1
        self.register_buffer("output_group", torch.full((n_out,), -1, dtype=torch.long))
        self.register_buffer("old_tasks", torch.zeros(n_heads, dtype=torch.bool))
        self._cache()

    @staticmethod
    def _n_outputs(model: nn.Module) -> int:
        head = model.head if getattr(model, "n_heads", 1) == 1 else model.heads[0]
        return head.out_features

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # the teacher always predicts in eval mode
        return self

    def forward(self, model, x, t, logits, features: torch.Tensor | None = None) -> torch.Tensor:
        """`logits` are the model's raw (unmasked) outputs on the batch; `features` (multi-head) the
        output of `model.features(x)` in the same forward: without it the backbone runs again."""
        if not self._active or self.strength == 0:
            return logits.new_zeros(())
        if getattr(model, "n_heads", 1) > 1:  # distil every previous head on the current inputs
            h = model.features(x) if features is None else features
            with torch.no_grad():
                feats = self.teacher.features(x)
                old = [self.teacher.heads[k](feats) for k in self._old_heads]
            loss = sum(distillation_kl(model.heads[k](h), o, self.temperature) for k, o in zip(self._old_heads, old))
            return self.strength * loss
        with torch.no_grad():
            old = self.teacher(x, t)
        if self._groups is not None:  # groups of equal size: one gather N × G × k, one softmax per group
            if self._groups.device != logits.device:
                self._groups = self._groups.to(logits.device)
            idx = self._groups
            return self.strength * distillation_kl(logits[:, idx], old[:, idx], self.temperature)
        loss = 0.0
        for i, idx in enumerate(self._group_list):
            if idx.device != logits.device:
                self._group_list[i] = idx = idx.to(logits.device)
            loss = loss + distillation_kl(logits.index_select(1, idx), old.index_select(1, idx), self.temperature)
        return self.strength * loss

    def _cache(self) -> None:
        """Index forms of the buffers, computed once per consolidation (no device sync per step)."""
        group = self.output_group.cpu()
        ids = sorted(set(group[group >= 0].tolist()))
        self._group_list = [(group == g).nonzero().flatten() for g in ids]
        sizes = {len(idx) for idx in self._group_list}
        self._groups = torch.stack(self._group_list) if len(sizes) == 1 else None
        self._old_heads = self.old_tasks.nonzero().flatten().tolist()
        self._active = bool(self._old_heads) or bool(self._group_list)

    @torch.no_grad()
    def consolidate(self, model: nn.Module, output_classes: list[int], task: int, per_task: bool = False) -> None:
        """Freeze the current model as the teacher; mark this experience's outputs / head as old.

        `per_task` (task-IL with a shared masked head): the experience's outputs form a softmax group
        of their own; otherwise every old output is distilled in one softmax."""
        self.teacher.load_state_dict(model.state_dict())
        if len(self.old_tasks) > 1:
            self.old_tasks[task] = True
        else:
            outputs = torch.as_tensor(list(output_classes), dtype=torch.long)
            group = self.output_group.cpu()
            if per_task:
                taken = group[outputs]
                if bool(((taken >= 0) & (taken != task)).any()):
                    raise ValueError(f"LwF: outputs {outputs[taken >= 0].tolist()} of task {task} already belong "
                                     "to another task (per-task distillation needs disjoint output sets)")
                group[outputs] = task
            else:
                group[outputs] = 0
            self.output_group.copy_(group)
        self._cache()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._cache()


class DistillationTeacher(pl.Callback):
    """At the end of each experience the model becomes the frozen teacher for the next ones; with
    task masks (task-IL, one shared head) each old task is distilled over its own outputs.

    Task-free streams (no end of an experience) need `consolidate_every`: every that many optimizer
    steps the model becomes the teacher, and the outputs (per task id) of the batches trained since the
    last consolidation become old outputs — what the learner has seen, not the experiences' class lists.
    """

    needs_boundaries = True

    def __init__(self, consolidate_every: int | None = None):
        from clexp.config.errors import check_int

        check_int("consolidate_every", consolidate_every, allow_none=True)
        self.consolidate_every = consolidate_every
        self.seen: dict[int, set[int]] = {}  # task id → outputs seen since the last consolidation

    def on_train_end(self, trainer, pl_module):
        from clexp.methods.base import task_free

        if task_free(pl_module):
            return
        exp = pl_module.current_experience
        pl_module.regularizer.consolidate(pl_module.model, exp.output_classes, exp.index,
                                          per_task=pl_module.task_masks is not None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        from clexp.methods.base import stream_step, task_free

        if not task_free(pl_module):
            return
        _, y, t = batch[:3]
        for task, out in torch.unique(torch.stack([t, y]), dim=1).t().tolist():
            self.seen.setdefault(int(task), set()).add(int(out))
        if self.consolidate_every and stream_step(trainer) % self.consolidate_every == 0:
            for task, outs in sorted(self.seen.items()):
                pl_module.regularizer.consolidate(pl_module.model, sorted(outs), task,
                                                  per_task=pl_module.task_masks is not None)
            self.seen = {}

    def stream_state(self) -> dict:
        return {"seen": {k: sorted(v) for k, v in self.seen.items()}}

    def load_stream_state(self, state: dict) -> None:
        self.seen = {int(k): set(v) for k, v in state.get("seen", {}).items()}
