"""Averaged Gradient Episodic Memory (Chaudhry, Ranzato, Rohrbach & Elhoseiny 2019, "Efficient Lifelong
Learning with A-GEM").

Episodic memory: `memory_per_experience` training samples (x, y, task id) of each experience, a seeded subset
taken at its end (as in the paper, whose memory is filled at the end of each task — also under train.online).
Every step from the second experience on: g the step's gradient, g_ref the gradient of the mean cross-entropy
on a memory batch of `memory_batch_size` samples drawn from the whole memory (seeded by the run's seed and the
stream's step, the same on every rank: a resumed run draws the same batches), through the same masks / heads
as training; then (Eq. 11)

    g ← g − (g·g_ref / g_ref·g_ref) · g_ref    if g·g_ref < 0,   else g unchanged,

written without a branch (the coefficient min(g·g_ref, 0) / g_ref·g_ref: no host synchronisation). The vector
covers `projection.constrained_parameters` (all trainable parameters but a multi-head model's heads, whose
step gradient touches the current head only). The memory batch runs with the model in its training mode (as
the step's own batch: dropout on, BatchNorm statistics moving). Cost: one extra forward and backward on the
memory batch per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clexp.config.argspec import check_args
from clexp.core.step_count import stream_steps
from clexp.methods.projection import (
    ConstraintCallback,
    ConstraintState,
    constrained_parameters,
    flat_grads,
    sample_experience,
    tensor_bytes,
    write_grads,
)


def agem_project(g: torch.Tensor, g_ref: torch.Tensor) -> torch.Tensor:
    """Eq. 11 of the paper on flat vectors: g − min(g·g_ref, 0) / (g_ref·g_ref) · g_ref."""
    dot = torch.dot(g, g_ref)
    coef = torch.clamp(dot, max=0) / torch.dot(g_ref, g_ref).clamp_min(torch.finfo(g.dtype).tiny)
    return g - coef * g_ref


class EpisodicMemory(ConstraintState):
    """The stored samples (buffers `x`, `y`, `t`) and the samples added at each consolidation (`counts`)."""

    def bind(self, model: nn.Module) -> None:
        self.params = list(constrained_parameters(model).values())
        self.register_buffer("x", torch.zeros(0))
        self.register_buffer("y", torch.zeros(0, dtype=torch.long))
        self.register_buffer("t", torch.zeros(0, dtype=torch.long))
        self.register_buffer("counts", torch.zeros(0, dtype=torch.long))

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        old = self.x if len(self.y) else self.x.new_zeros((0, *x.shape[1:]))
        self.grow("x", torch.cat([old.to(x.device, x.dtype), x]))
        self.grow("y", torch.cat([self.y.to(y.device), y]))
        self.grow("t", torch.cat([self.t.to(t.device), t]))
        self.grow("counts", torch.cat([self.counts, torch.tensor([len(y)], device=self.counts.device)]))

    def batch(self, size: int, generator: torch.Generator):
        n = len(self.y)
        if size >= n:
            return self.x, self.y, self.t
        idx = torch.randperm(n, generator=generator, device=self.y.device)[:size]
        return self.x[idx], self.y[idx], self.t[idx]


class AGEM(ConstraintCallback):
    """Stores `memory_per_experience` samples at each experience's end; before every step, the gradient is
    projected as in the paper's Eq. 11 against the gradient on a memory batch of `memory_batch_size`."""

    ARGS = {"memory_per_experience": ("int", {}), "memory_batch_size": ("int", {})}

    def __init__(self, memory_per_experience: int = 25, memory_batch_size: int = 32, seed: int = 0):
        check_args(AGEM.ARGS, memory_per_experience=memory_per_experience, memory_batch_size=memory_batch_size)
        self.memory_per_experience, self.memory_batch_size = int(memory_per_experience), int(memory_batch_size)
        self.seed = int(seed)

    def reference_gradient(self, trainer, pl_module) -> list[torch.Tensor]:
        """∇ of the mean cross-entropy on a memory batch, per constrained parameter (zeros where unused)."""
        reg = pl_module.regularizer
        step = stream_steps(trainer) if trainer is not None else 0
        gen = torch.Generator(device=reg.y.device).manual_seed(self.seed * 104_729 + 7_919 * int(step) + 3)
        x, y, t = reg.batch(self.memory_batch_size, gen)
        with torch.enable_grad():
            logits = pl_module.mask(pl_module.model(x, t), t)
            loss = F.cross_entropy(logits, y)
            grads = torch.autograd.grad(loss, reg.params, allow_unused=True)
        return [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, reg.params)]

    @torch.no_grad()
    def project(self, trainer, pl_module):
        reg = pl_module.regularizer
        if len(reg.y) == 0:  # the first experience: no memory yet (a shape, no host sync)
            return
        g_ref = torch.cat([r.reshape(-1) for r in self.reference_gradient(trainer, pl_module)])
        write_grads(reg.params, agem_project(flat_grads(reg.params), g_ref))

    def consolidate(self, trainer, pl_module):
        x, y, t = sample_experience(pl_module, self.memory_per_experience, self.seed, salt=3)
        pl_module.regularizer.add(x.detach(), y, t)

    def state_report(self, pl_module) -> dict:
        reg = pl_module.regularizer
        return {"stores": "raw training samples (inputs, labels, task ids)",
                "samples": reg.counts.tolist(),  # added at each experience's end
                "memory_samples": len(reg.y),
                "bytes": tensor_bytes(reg.x, reg.y, reg.t)}
