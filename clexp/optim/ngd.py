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

from clexp.config.argspec import check_args


class NGD(torch.optim.Optimizer):
    """Natural gradient with a diagonal (`fisher="diag"`) or Kronecker-factored (`fisher="kfac"`)
    Fisher; until a first estimate arrives it takes plain SGD steps.

    KFAC: for a Linear / Conv2d layer with factors A (inputs) and G (output gradients) the update of
    W̄ = [W, b] is (G + √δ I)⁻¹ ∇W̄ (A + √δ I)⁻¹, with running averages of A and G whose inverses are
    recomputed when a new estimate arrives; the other parameters use the diagonal.
    """

    needs_fisher = True

    ARGS = {"fisher": ("choice", ("diag", "kfac")), "lr": ("number", {"low": 0, "low_open": True}),
            "damping": ("number", {"low": 0}), "beta": ("number", {"low": 0, "high": 1, "high_open": True})}

    def __init__(self, params: Iterable, lr: float = 0.01, damping: float = 1e-3, beta: float = 0.95,
                 fisher: str = "diag"):
        check_args(NGD.ARGS, fisher=fisher, lr=lr, damping=damping, beta=beta)
        self.curvature = fisher
        self.blocks: list[dict] = []  # KFAC: {"weight", "bias", "A", "G", "A_inv", "G_inv"}
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
    def update_kfac(self, blocks: list[tuple[torch.nn.Parameter, torch.nn.Parameter | None, torch.Tensor,
                                             torch.Tensor]]) -> None:
        """Fold fresh factors (weight, bias, A, G) of each layer into the running averages; refresh
        the damped inverses."""
        group = self.param_groups[0]
        beta, root = group["beta"], group["damping"] ** 0.5
        known = {id(b["weight"]): b for b in self.blocks}
        for weight, bias, A, G in blocks:
            block = known.get(id(weight))
            if block is None:
                block = {"weight": weight, "bias": bias, "A": A.clone(), "G": G.clone()}
                self.blocks.append(block)
            else:
                block["A"].mul_(beta).add_(A, alpha=1 - beta)
                block["G"].mul_(beta).add_(G, alpha=1 - beta)
            eye_a = torch.eye(len(block["A"]), device=A.device, dtype=A.dtype)
            eye_g = torch.eye(len(block["G"]), device=G.device, dtype=G.dtype)
            block["A_inv"] = torch.linalg.inv(block["A"] + root * eye_a)
            block["G_inv"] = torch.linalg.inv(block["G"] + root * eye_g)

    @torch.no_grad()
    def _kfac_steps(self, lr: float) -> set[int]:
        done = set()
        for b in self.blocks:
            w, bias = b["weight"], b["bias"]
            if w.grad is None:
                continue
            grad = w.grad.reshape(w.shape[0], -1)
            if bias is not None:
                grad = torch.cat([grad, (bias.grad if bias.grad is not None else torch.zeros_like(bias))[:, None]], 1)
            update = b["G_inv"] @ grad @ b["A_inv"]
            w.add_((update[:, :-1] if bias is not None else update).reshape(w.shape), alpha=-lr)
            done.add(id(w))
            if bias is not None:
                bias.add_(update[:, -1], alpha=-lr)
                done.add(id(bias))
        return done

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done = self._kfac_steps(self.param_groups[0]["lr"]) if self.blocks else set()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or id(p) in done:
                    continue
                fisher = self.state[p].get("fisher")
                if fisher is None:
                    p.add_(p.grad, alpha=-group["lr"])
                else:
                    p.addcdiv_(p.grad, fisher + group["damping"], value=-group["lr"])
        return loss
