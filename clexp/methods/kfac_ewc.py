"""KFAC-EWC: ½·λ·Σ_layers tr(ΔW̄ᵀ G ΔW̄ A) with ΔW̄ = W̄ − W̄*, whose gradient is λ·G ΔW̄ A — no
Kronecker product is ever formed.

Every trainable parameter is regularized, none is left out silently:
- the layers of `curvature.kronecker.hooked_layers` (Linear; Conv2d with zero padding, one group;
  all own parameters trainable and not tied to another module) get Kronecker factors — a layer
  called several times per forward (a shared layer) included: its factors sum over the uses, the
  uses' positions counted like more positions of one use (A summed, G summed and divided by the
  total positions; see kronecker.py);
- every other trainable parameter (normalisation layers, embeddings, tied or parametrized weights,
  a trainable bias next to a frozen weight) gets the diagonal Fisher, (λ/2)·Σ F (θ − θ*)².

- `separate` mode keeps one (A, G, W̄*) triple per past experience (the Kronecker sums cannot be
  merged into one quadratic, unlike the diagonal case);
- `online` mode decays and sums the factors, A ← γA + A_t, G ← γG + G_t, with the latest anchor:
  an approximation (Σ A_t ⊗ G_t ≠ (Σ A_t) ⊗ (Σ G_t)), as the config documents.

All state is in buffers; a reloaded state_dict recreates the per-experience buffers it holds.
"""

from __future__ import annotations

import torch
from torch import nn

from clexp.config.argspec import check_args
from clexp.curvature.kronecker import hooked_layers, weight_matrix
from clexp.methods.base import Regularizer, batch_generator, batch_mean, experience_shard, over_chunks
from clexp.methods.ewc import FisherImportance
from clexp.methods.quadratic import QuadraticPenalty, buffer_key


class KroneckerPenalty(Regularizer):
    analytic_gradient = True

    ARGS = {"strength": ("number", {"low": 0}), "mode": ("choice", ("separate", "online")),
            "gamma": ("number", {"low": 0, "high": 1, "low_open": True})}

    def __init__(self, strength: float, mode: str = "separate", gamma: float = 1.0):
        check_args(KroneckerPenalty.ARGS, strength=strength, mode=mode, gamma=gamma)
        super().__init__()
        self.strength, self.mode, self.gamma = float(strength), mode, float(gamma)
        self.diag = QuadraticPenalty(strength, factor=0.5, mode=mode, gamma=gamma)
        self.register_buffer("slots", torch.zeros((), dtype=torch.long))  # factor triples held
        self.layers: list[str] = []

    def bind(self, model: nn.Module) -> None:
        """Kronecker factors for `hooked_layers(model)`, the diagonal penalty for every other trainable
        parameter: together they cover all of them."""
        self.layers = list(hooked_layers(model))
        covered = {f"{layer}.{leaf}" if layer else leaf for layer in self.layers
                   for leaf, _ in model.get_submodule(layer).named_parameters(recurse=False)}
        from clexp.models.freeze import trainable_parameters

        self.diag.bind(model, names=[n for n in trainable_parameters(model) if n not in covered])

    def _key(self, slot: int, layer: str, kind: str) -> str:
        return f"kfac{slot}__{buffer_key(layer)}__{kind}"

    def _triples(self):
        for slot in range(int(self.slots)):
            for layer in self.layers:
                yield layer, tuple(getattr(self, self._key(slot, layer, k)) for k in ("A", "G", "anchor"))

    @torch.no_grad()
    def consolidate(self, factors: dict[str, dict[str, torch.Tensor]], diagonal: dict[str, torch.Tensor],
                    model: nn.Module) -> None:
        """Add an experience's factors (and the diagonal Fisher of the other parameters)."""
        online_update = self.mode == "online" and int(self.slots) == 1
        slot = 0 if self.mode == "online" else int(self.slots)
        for layer in self.layers:
            m = model.get_submodule(layer)
            anchor = weight_matrix(m).detach().clone()
            f = factors.get(layer)
            A = f["A"] if f is not None else torch.zeros(anchor.shape[1], anchor.shape[1], device=anchor.device)
            G = f["G"] if f is not None else torch.zeros(anchor.shape[0], anchor.shape[0], device=anchor.device)
            if online_update:
                old_a, old_g, old_w = (getattr(self, self._key(0, layer, k)) for k in ("A", "G", "anchor"))
                old_a.mul_(self.gamma).add_(A)
                old_g.mul_(self.gamma).add_(G)
                old_w.copy_(anchor)
            else:
                for kind, value in (("A", A), ("G", G), ("anchor", anchor)):
                    self.register_buffer(self._key(slot, layer, kind), value.detach().clone())
        if not online_update:
            self.slots.fill_(slot + 1)
        if self.diag.names:
            self.diag.consolidate(diagonal, model)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        loaded = {key[len(prefix):] for key in state_dict if key.startswith(prefix + "kfac")}
        for name in [n for n, _ in self.named_buffers(recurse=False) if n.startswith("kfac")]:
            if name not in loaded:  # slots of experiences the loaded state has not reached yet
                delattr(self, name)
        for key, value in state_dict.items():  # per-experience buffers a fresh module lacks
            if key.startswith(prefix + "kfac") and "." not in key[len(prefix):]:
                name = key[len(prefix):]
                if not hasattr(self, name):
                    self.register_buffer(name, torch.empty_like(value))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _deltas(self, model):
        for layer, (A, G, anchor) in self._triples():
            m = model.get_submodule(layer)
            yield m, A, G, weight_matrix(m) - anchor

    def forward(self, model, x=None, t=None, logits=None) -> torch.Tensor:
        """½·λ·Σ tr(ΔW̄ᵀ G ΔW̄ A) (+ the diagonal part), differentiable."""
        total = self.diag(model)
        for _, A, G, delta in self._deltas(model):
            total = total + 0.5 * self.strength * ((G @ delta) * (delta @ A)).sum()
        return total

    @torch.no_grad()
    def max_curvature(self) -> float | None:
        """An upper bound on the largest Hessian eigenvalue: per layer λ·Σ_t λmax(A_t)·λmax(G_t) (exact for
        one experience; a layer's block is λ·Σ_t A_t ⊗ G_t), the largest over layers and the diagonal part."""
        per_layer: dict[str, float] = {}
        for layer, (A, G, _) in self._triples():
            top = float(torch.linalg.eigvalsh(A.double())[-1] * torch.linalg.eigvalsh(G.double())[-1])
            per_layer[layer] = per_layer.get(layer, 0.0) + self.strength * max(top, 0.0)
        values = [*per_layer.values(), self.diag.max_curvature() or 0.0]
        return max(values) if any(values) else None

    @torch.no_grad()
    def value(self, model) -> torch.Tensor:
        return self.forward(model).detach()

    @torch.no_grad()
    def add_gradient(self, model, grad_scale: torch.Tensor | float | None = None) -> None:
        """∇W̄ += λ·G ΔW̄ A (A, G symmetric), split into the weight and bias gradients (times
        `grad_scale` while the gradients are still scaled by mixed precision)."""
        self.diag.add_gradient(model, grad_scale)
        if self.strength == 0:
            return
        for m, A, G, delta in self._deltas(model):
            g = self.strength * (G @ delta @ A)
            if grad_scale is not None:
                g = g * grad_scale
            if m.weight.grad is None:
                m.weight.grad = torch.zeros_like(m.weight)
            m.weight.grad += (g[:, :-1] if m.bias is not None else g).reshape(m.weight.shape)
            if m.bias is not None:
                if m.bias.grad is None:
                    m.bias.grad = torch.zeros_like(m.bias)
                m.bias.grad += g[:, -1]


class KFACImportance(FisherImportance):
    """Kronecker factors of the Linear / Conv2d layers (exact over classes, or sampled) and the
    diagonal Fisher of the other parameters, consolidated into a `KroneckerPenalty`. Same options as
    `FisherImportance` (variant: exact or sampled); from the training batches (task-free streams,
    `train.online`) the factors and the diagonal are means over the batches since the last consolidation."""

    VARIANTS = ("exact", "sampled")
    ARGS = {"variant": ("choice", VARIANTS)}  # over FisherImportance's rules

    def _statistics(self, pl_module, mask, g):
        """`estimate(x, y, reduce)` → {"factors": ..., "diagonal": ...}: means over the inputs."""
        from clexp.curvature import diag_fisher, kfac_factors

        model, reg = pl_module.model, pl_module.regularizer

        def estimate(xc, yc, reduce=True):
            out = {"factors": kfac_factors(model, xc, self.variant, self.samples, self.chunk_size, mask, g, reduce)}
            if reg.diag.names:
                variant = "exact" if self.variant == "exact" else "sampled"
                full = diag_fisher(model, xc, yc, variant=variant, samples=self.samples, chunk_size=self.chunk_size,
                                   output_mask=mask, generator=g, reduce=reduce)
                out["diagonal"] = {n: full[n] for n in reg.diag.names}
            return out

        return estimate

    def estimate(self, trainer, pl_module):
        x, y = experience_shard(trainer, pl_module, self.max_samples, self.seed)
        i = int(pl_module.experience)
        g = torch.Generator(device=pl_module.device).manual_seed(self.seed * 104729 + i)
        # files: each chunk read once for both statistics
        return over_chunks(trainer, pl_module, x, y, self._statistics(pl_module, pl_module.output_mask(i), g),
                           desc="KFAC factors")

    def estimate_batch(self, trainer, pl_module, x, y, t):
        g = batch_generator(pl_module, self.seed, trainer)
        return batch_mean(pl_module, x, y, t, lambda xs, ys, mask: self._statistics(pl_module, mask, g)(xs, ys))

    def apply(self, trainer, pl_module, importance):
        from clexp.curvature import kfac_diagonal

        model, reg = pl_module.model, pl_module.regularizer
        factors, diagonal = importance.get("factors", {}), importance.get("diagonal", {})
        reg.consolidate(factors, diagonal, model)
        if self.plot and trainer.is_global_zero:
            shown = dict(diagonal)
            for layer, f in factors.items():
                for leaf, v in kfac_diagonal(model.get_submodule(layer), f).items():
                    shown[f"{layer}.{leaf}"] = v
            self.show(trainer, pl_module, shown, "KFAC diagonal")
