"""What the gradient-constraint methods share (`gpm.py`, `ogd.py`, `agem.py`): no term is added to the loss;
the method changes the step's gradient right before the optimizer uses it.

- `ConstraintState`: the `Regularizer` slot of the module holds the method's memory (bases, gradient
  directions, stored samples) in buffers whose size grows with the stream: saved in `state_dict`s and
  stream checkpoints, moved with the module, and resized to the saved shapes when a checkpoint is loaded.
  It adds nothing to the loss (`analytic_gradient` with an empty gradient, no value to log).
- `ConstraintCallback`: the Lightning callback that consolidates at each experience's end (`on_train_end`)
  and, through `ContinualModule.gradient_constraints` (it registers itself at every fit's start), constrains
  every training step in two places:
  1. `constrain_gradient`: right after the backward (and the DDP all-reduce), before `ContinualModule`'s
     gradient clipping, the gradient is projected — on every path alike, so the clipped norm is the norm of
     the projected gradient, whatever the batch size (GPM's input-side path projects inside the backward,
     i.e. before the clipping too). Under mixed precision the gradients are still scaled there: every
     projection is homogeneous of degree one in the gradient, so projecting before or after the unscaling
     is the same.
  2. `constrain_step` (GPM and OGD, `projects_steps = True`): right after `optimizer.step()`, the change the
     optimizer made to the constrained weights is projected as the gradient was (Δθ ← Δθ − Δθ's component
     in the protected subspace; Adam-NSCL, Wang et al. 2021, does so for the null space). A projected
     gradient stays protected only under plain SGD (Δθ = −lr·g̃): Adam and RMSprop rescale it element by
     element, momentum carries gradients of before the last boundary (`train.reset_optimizer=false`),
     weight decay (coupled or decoupled) shrinks the weights in every direction. Projecting Δθ makes every
     step of every optimizer keep the old experiences' protected outputs, whatever its state. Plain SGD
     (`torch.optim.SGD`, momentum 0 and weight decay 0 in every group) needs it not and skips it.
  These methods consolidate at experience boundaries only: a task-free stream is refused
  (`supports_task_free = False`, clexp/core/validation.py).
- `constrained_parameters`: the parameters the constraint covers: every trainable parameter except the
  heads of a multi-head model (task-specific: a step of experience t touches head t alone, and no input of
  another experience ever reaches it).
- `sample_experience`: a seeded subset of the current experience's training data, the same on every rank.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn

from clexp.data.images import input_batches, is_lazy
from clexp.methods.base import Regularizer


class ConstraintState(Regularizer):
    """A method's memory in buffers that grow (their saved shape is taken on load); no loss term."""

    analytic_gradient = True  # nothing to add to the graph; `add_gradient` adds nothing either

    def forward(self, model, x, t, logits):  # never called (analytic_gradient); a zero for direct callers
        return logits.new_zeros(())

    def value(self, model: nn.Module) -> None:
        return None  # no penalty to log

    def add_gradient(self, model: nn.Module, grad_scale=None) -> None:
        pass

    def grow(self, name: str, value: torch.Tensor) -> None:
        """Replace buffer `name` by `value` (a new shape: the memory grew)."""
        self._buffers[name] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        for name, buf in list(self._buffers.items()):
            saved = state_dict.get(prefix + name)
            if buf is not None and saved is not None and saved.shape != buf.shape:
                self._buffers[name] = torch.empty(saved.shape, dtype=saved.dtype, device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self.loaded()

    def loaded(self) -> None:
        """After a state_dict was loaded: drop what was derived from the buffers."""


def constrained_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """{name: parameter} of the trainable parameters the constraint covers: all but a multi-head model's heads."""
    multihead = getattr(model, "n_heads", 1) > 1
    return {n: p for n, p in model.named_parameters()
            if p.requires_grad and not (multihead and n.startswith("heads."))}


def sample_experience(pl_module, n: int, seed: int, salt: int = 0):
    """(x, y, t) of `n` training samples of the current experience (all when it has fewer), a seeded subset
    that every rank draws alike, on the module's device."""
    exp = pl_module.current_experience
    total = len(exp.y_train)
    g = torch.Generator().manual_seed(int(seed) * 7919 + 104_729 * int(exp.index) + int(salt))
    keep = torch.randperm(total, generator=g)[: min(n, total)].sort().values
    device = pl_module.device
    x = exp.x_train
    if is_lazy(x):
        xs = torch.cat(list(input_batches(x, keep.split(256), device)))
    else:
        xs = x[keep.to(x.device)].to(device)
    return xs, exp.y_train[keep.to(exp.y_train.device)].to(device), exp.t_train[keep.to(exp.t_train.device)].to(device)


class eval_mode:
    """The model in eval mode (dropout off, BatchNorm statistics frozen) inside the block, restored after."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode


def plain_sgd(optimizer) -> bool:
    """True when the optimizer's step is −lr·g exactly (`torch.optim.SGD` without momentum and weight decay in
    every group): a projected gradient then gives a projected step, and the step needs no projection."""
    optimizer = getattr(optimizer, "optimizer", optimizer)  # Lightning's wrapper → the torch optimizer
    return type(optimizer) is torch.optim.SGD and all(
        not g.get("momentum", 0) and not g.get("weight_decay", 0) for g in optimizer.param_groups)


class ConstraintCallback(pl.Callback):
    """Projects the gradient (after the backward, before clipping) and, where `projects_steps`, the step's
    change of the constrained weights (after `optimizer.step()`); consolidates at every experience's end.

    Subclasses write `project(trainer, pl_module)` and `consolidate(trainer, pl_module)`; `report(pl_module)`
    is what results.json records under `method_state` (clexp/core/runner.py). With `projects_steps`, the
    regularizer writes `step_start() -> the constrained weights before the step` and
    `project_step(before)`."""

    needs_boundaries = True
    consolidate_every = None
    supports_task_free = False  # consolidation needs experience boundaries: refused in a task-free stream
    projects_steps = False  # GPM, OGD: the weight change itself must stay out of the protected subspace
    _before = None  # the constrained weights before the current step (while one is under way)

    def on_fit_start(self, trainer, pl_module):
        """Register with the module (once: a copy of this callback that a spawned process got is replaced)."""
        constraints = pl_module.gradient_constraints
        constraints[:] = [c for c in constraints if type(c) is not type(self)] + [self]

    def constrain_gradient(self, pl_module, optimizer) -> None:
        """After the backward, before clipping: project the gradient; keep the weights the step starts from
        when the optimizer's step may leave the protected subspace (`plain_sgd`)."""
        self.project(pl_module._trainer, pl_module)
        if self.projects_steps and not plain_sgd(optimizer):
            self._before = pl_module.regularizer.step_start()

    def constrain_step(self, pl_module) -> None:
        """After `optimizer.step()`: the change of the constrained weights projected as the gradient was."""
        before, self._before = self._before, None
        if before is not None:
            pl_module.regularizer.project_step(before)

    def on_train_end(self, trainer, pl_module):
        self.consolidate(trainer, pl_module)

    def project(self, trainer, pl_module) -> None:
        raise NotImplementedError

    def consolidate(self, trainer, pl_module) -> None:
        raise NotImplementedError

    def report(self, pl_module) -> dict:
        """results.json's `method_state`: what the method's memory holds (`state_report`)."""
        return {"method_state": self.state_report(pl_module)}

    def state_report(self, pl_module) -> dict:
        return {}


def flat_grads(params: list[nn.Parameter]) -> torch.Tensor:
    """The parameters' gradients as one vector (a missing gradient is zero and is created)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return torch.cat([p.grad.reshape(-1) for p in params])


def write_grads(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Copy one vector back into the parameters' gradients (the inverse of `flat_grads`)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def flat_values(params: list[nn.Parameter]) -> torch.Tensor:
    """The parameters' values as one vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params])


def write_values(params: list[nn.Parameter], flat: torch.Tensor) -> None:
    """Copy one vector back into the parameters' values, in place (the inverse of `flat_values`)."""
    offset = 0
    with torch.no_grad():
        for p in params:
            n = p.numel()
            p.copy_(flat[offset:offset + n].view_as(p))
            offset += n


def tensor_bytes(*tensors: torch.Tensor) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))
