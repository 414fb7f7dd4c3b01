"""Natural-gradient descent with a diagonal Fisher: θ ← θ − η (F̂ + δ)⁻¹ ∇L.

F̂ is a running average (β) of the diagonal Fisher of the model's OWN predictive distribution:
labels sampled from the model, per-sample squared gradients (never the squared batch gradient,
never the empirical Fisher). The optimizer cannot see the batch, so the training loop hands it
each fresh estimate through `update_fisher` (the `NaturalGradientFisher` callback does so every
`update_every` steps). Adam's second moment is a related but different preconditioner: the square
root of a running mean of squared mini-batch gradients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


class NGD(torch.optim.Optimizer):
    """Diagonal natural gradient; until a first Fisher estimate arrives it takes plain SGD steps."""

    needs_fisher = True

    def __init__(self, params: Iterable, lr: float = 0.01, damping: float = 1e-3, beta: float = 0.95):
        if lr <= 0:
            raise ValueError(f"optimizer.lr={lr}: must be > 0")
        if damping < 0:
            raise ValueError(f"optimizer.damping={damping}: must be >= 0")
        if not 0 <= beta < 1:
            raise ValueError(f"optimizer.beta={beta}: must lie in [0, 1)")
        super().__init__(params, {"lr": lr, "damping": damping, "beta": beta})

    @torch.no_grad()
    def update_fisher(self, fisher: Mapping[torch.nn.Parameter, torch.Tensor] | list[torch.Tensor]) -> None:
        """Fold a fresh diagonal Fisher into the running average (a dict keyed by parameter, or a
        list aligned with the optimizer's parameters)."""
        params = [p for g in self.param_groups for p in g["params"]]
        values = [fisher[p] for p in params] if isinstance(fisher, Mapping) else list(fisher)
        if len(values) != len(params):
            raise ValueError(f"update_fisher: {len(values)} tensors for {len(params)} parameters")
        estimate = dict(zip(map(id, params), values))
        for group in self.param_groups:
            for p in group["params"]:
                f = estimate[id(p)]
                state = self.state[p]
                if "fisher" not in state:
                    state["fisher"] = f.detach().clone()
                else:
                    state["fisher"].mul_(group["beta"]).add_(f, alpha=1 - group["beta"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                fisher = self.state[p].get("fisher")
                if fisher is None:
                    p.add_(p.grad, alpha=-group["lr"])
                else:
                    p.addcdiv_(p.grad, fisher + group["damping"], value=-group["lr"])
        return loss
