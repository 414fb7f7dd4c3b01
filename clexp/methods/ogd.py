"""Orthogonal Gradient Descent (Farajtabar, Azizan, Mott & Li 2020), the OGD-GTL variant.

At the end of each experience, for `memory_per_experience` of its training samples (x, y) (a seeded subset):
v = ∇_θ f_y(x; θ), the gradient of the ground-truth logit (the raw logit of the sample's label, of its own
head in a multi-head model; eval mode), at the parameters the experience ended with. Each v is
orthonormalised against the stored directions and the ones before it (Gram-Schmidt, each vector twice,
"twice is enough"; a vector whose residual is below 1e-6 of its norm is in the span already and is dropped)
and appended to S. Every later step: g ← g − Σ_{u∈S} (g·u) u before the gradient clipping, and after the
optimizer's step its change Δθ ← Δθ − Σ_{u∈S} (Δθ·u) u (any optimizer but plain SGD, whose step is −lr·g:
clexp/methods/projection.py): the update orthogonal to span(S) whatever the optimizer does.

θ: the parameters `projection.constrained_parameters` lists (all trainable ones but a multi-head model's
heads). What is stored: the orthonormal directions u (float32, P values each, P the number of those
parameters) — never the inputs, which are read once at the experience's end. The memory grows by
memory_per_experience × P × 4 bytes per experience (an MLP 784-400-400-10, P = 478,410: 1.9 MB per
direction), the projection costs 4·|S|·P flops per step.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.methods.projection import (
    ConstraintCallback,
    ConstraintState,
    constrained_parameters,
    eval_mode,
    flat_grads,
    flat_values,
    sample_experience,
    tensor_bytes,
    write_grads,
    write_values,
)

DROP_TOL = 1e-6


def gram_schmidt(basis: torch.Tensor, vectors: torch.Tensor, tol: float = DROP_TOL) -> torch.Tensor:
    """Rows of `vectors` (n × P) orthonormalised against the orthonormal rows of `basis` (K × P) and each
    other, in order (classical Gram-Schmidt per vector, applied twice); a vector whose residual norm is below
    `tol` of its own is dropped. Returns the new rows only (≤ n × P)."""
    new = torch.empty_like(vectors)
    j = 0
    for v in vectors:
        norm = v.norm()
        if not norm > 0:
            continue
        w = v.clone()
        for _ in range(2):
            if len(basis):
                w -= (basis @ w) @ basis
            if j:
                w -= (new[:j] @ w) @ new[:j]
        residual = w.norm()
        if residual > tol * norm:
            new[j] = w / residual
            j += 1
    return new[:j]


def ground_truth_gradients(model: nn.Module, params: list[nn.Parameter], x: torch.Tensor, y: torch.Tensor,
                           t: torch.Tensor) -> torch.Tensor:
    """n × P: ∇_θ f_{y_i}(x_i) of each sample, flattened over `params` (one backward per sample)."""
    out = torch.zeros(len(y), sum(p.numel() for p in params), device=x.device)
    for i in range(len(y)):
        logit = model(x[i:i + 1], t[i:i + 1])[0, y[i]]
        grads = torch.autograd.grad(logit, params, allow_unused=True)
        out[i] = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
    return out


class GradientDirections(ConstraintState):
    """S (buffer `directions`, |S| × P, float32, orthonormal rows) and per consolidation the samples read and
    the directions kept (`counts`, consolidations × 2)."""

    def bind(self, model: nn.Module) -> None:
        self.params = list(constrained_parameters(model).values())
        size = sum(p.numel() for p in self.params)
        self.register_buffer("directions", torch.zeros(0, size))
        self.register_buffer("counts", torch.zeros(0, 2, dtype=torch.long))
        self.loaded()

    def loaded(self) -> None:
        self._k = int(self.directions.shape[0])

    def consolidate(self, vectors: torch.Tensor, samples: int) -> None:
        new = gram_schmidt(self.directions, vectors.to(self.directions))
        self.grow("directions", torch.cat([self.directions, new]))
        row = torch.tensor([[samples, len(new)]], dtype=torch.long, device=self.counts.device)
        self.grow("counts", torch.cat([self.counts, row]))
        self.loaded()

    @torch.no_grad()
    def project(self) -> None:
        if self._k == 0:
            return
        g = flat_grads(self.params)
        S = self.directions
        g -= (S @ g) @ S
        write_grads(self.params, g)

    @torch.no_grad()
    def step_start(self) -> torch.Tensor | None:
        """θ before the optimizer's step (flat), or None while no direction is stored."""
        return flat_values(self.params) if self._k else None

    @torch.no_grad()
    def project_step(self, before: torch.Tensor | None) -> None:
        """θ ← θ_before + Δθ − Σ_u (Δθ·u) u, Δθ the optimizer's change: the step orthogonal to span(S) whatever
        the optimizer did with the projected gradient (Adam's scaling, carried momentum, weight decay)."""
        if before is None:
            return
        S = self.directions
        delta = flat_values(self.params) - before
        delta -= (S @ delta) @ S
        write_values(self.params, before.add_(delta))


class OrthogonalGradientDescent(ConstraintCallback):
    """At every experience's end, the ground-truth logit's gradients on `memory_per_experience` of its samples
    join the orthonormal directions; before every step, the gradient is projected orthogonal to them."""

    ARGS = {"memory_per_experience": ("int", {})}
    projects_steps = True

    def __init__(self, memory_per_experience: int = 100, seed: int = 0):
        check_args(OrthogonalGradientDescent.ARGS, memory_per_experience=memory_per_experience)
        self.memory_per_experience, self.seed = int(memory_per_experience), int(seed)

    def project(self, trainer, pl_module):
        pl_module.regularizer.project()

    def consolidate(self, trainer, pl_module):
        reg = pl_module.regularizer
        x, y, t = sample_experience(pl_module, self.memory_per_experience, self.seed, salt=2)
        with eval_mode(pl_module.model) as model, torch.enable_grad():
            vectors = ground_truth_gradients(model, reg.params, x, y, t)
        reg.consolidate(vectors, len(y))

    def state_report(self, pl_module) -> dict:
        reg = pl_module.regularizer
        return {"stores": "orthonormal gradient directions of the ground-truth logit (no inputs)",
                "samples": reg.counts[:, 0].tolist(),  # read at each experience's end
                "directions": reg.counts[:, 1].tolist(),  # kept (linearly independent) at each
                "floats_per_direction": int(reg.directions.shape[1]),
                "bytes": tensor_bytes(reg.directions)}
