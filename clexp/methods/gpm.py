"""Gradient Projection Memory (Saha, Garg & Roy 2021, "Gradient Projection Memory for Continual Learning").

Per layer l (every `nn.Linear`, and every `nn.Conv2d` with groups = 1, on its unfolded patches), R_l: the
layer's inputs on `samples` training inputs of the experience as columns (a Conv2d: one column per patch
position and input; a layer with a bias: each column with a 1 appended, so that the bias is constrained with
the weights — for an old input a, ΔW·a + Δb = [ΔW, Δb]·[a; 1]). M_l: an orthonormal basis, d_l × k_l.

- first consolidation: the smallest k with Σ_{i≤k} σ_i² ≥ ε_th·‖R‖²_F (σ the singular values of R);
- later ones: R̂ = R − M Mᵀ R; the smallest k ≥ 0 with ‖M Mᵀ R‖²_F + Σ_{i≤k} σ̂_i² ≥ ε_th·‖R‖²_F (σ̂ those of
  R̂, the paper's Eq. 9), the k first left singular vectors of R̂ appended to M (at most d_l columns);
- every later step: ∇W̄ ← ∇W̄ − ∇W̄·M·Mᵀ, W̄ = [W, b] of shape [out, d_l] (Conv2d: W viewed out × C·kh·kw),
  before the gradient clipping; and after the optimizer's step, its change ΔW̄ ← ΔW̄ − ΔW̄·M·Mᵀ (any optimizer
  but plain SGD, whose step −lr·∇W̄ is projected already: clexp/methods/projection.py) — the paper's
  guarantee, ΔW̄·[a; 1] = 0 for the old inputs a, holds for the step the optimizer takes.

Where the projection happens. ∇W̄ = δᵀĀ (δ: the output gradients, N × out; Ā: the N inputs, N × d, with the
1 appended), so ∇W̄(I − MMᵀ) = δᵀ(Ā − ĀMMᵀ): the inputs can be projected instead of the gradient. That costs
4·N·d·k flops (2·N·d² with the projector) against 4·out·d·k on the gradient, and the weight gradient's own
product δᵀĀ is computed once either way. A plain `nn.Linear` with N < out (the rows of a batch fewer than its
outputs: an MLP's hidden layers at batch 128) is therefore projected in its backward (`_ProjectedLinear`, a
forward installed on the layer during training only); every other layer (Conv2d, whose N = batch × patch
positions, a head with free rows, a layer whose weight also got gradient elsewhere) after the backward, on
`.grad`. The input-side form assumes the weight reaches the loss only through the layer's own forward.

The SVD's left singular vectors and σ² are the eigenvectors and eigenvalues of the Gram matrix R Rᵀ
(R̂ R̂ᵀ = (I − MMᵀ) R Rᵀ (I − MMᵀ)): computed from R Rᵀ (d × d, float64), summed over chunks of inputs, so
the patches of a convolution are never all held at once. Directions of a Gram eigenvalue below 1e-10 of
the largest are never kept (the rank of R caps k).

Differences from the official code (github.com/sahagobinda/GPM): its first-experience criterion keeps one
direction fewer than Eq. 5 (`np.sum(np.cumsum(ratio) < threshold)`, the `+1` commented out): here Eq. 5 as
written; it has one threshold per layer (PMNIST 0.95 first layer, 0.99 others; CIFAR 0.97 + 0.003·t), here one
`threshold` for all by default, with `hidden_threshold` (every layer after the first) and `threshold_increment`
(per experience already consolidated, capped at 1) as options; its convolutions use fewer inputs than its linear
layers (the patches' count): here every
layer uses the same `samples`; its models have no biases and it zeroes the 1-d parameters' gradients after the
first task: here biases are constrained through the appended 1, and parameters of other layer types
(normalisation layers' affine parameters, embeddings) are left free. Task-IL with a masked shared head (the
official code has one head per task): the head's rows of outputs no earlier experience predicts are not
projected (`GPMBases.free_rows`), since those outputs are masked out for every earlier experience.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from clexp.config.argspec import check_args
from clexp.methods.projection import ConstraintCallback, ConstraintState, eval_mode, sample_experience, tensor_bytes

log = logging.getLogger("clexp")

RANK_TOL = 1e-10  # eigenvalues of the Gram below this share of the largest are not directions of R


def projected_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of the layers GPM constrains: Linear, and Conv2d with groups = 1 and zero padding."""
    layers = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and m.weight.requires_grad:
            layers.append((name, m))
        elif isinstance(m, nn.Conv2d) and m.weight.requires_grad:
            if m.groups != 1 or m.padding_mode != "zeros" or isinstance(m.padding, str):
                log.warning("gpm: %s (a Conv2d with groups=%d, padding %s, mode %s) is left unconstrained", name,
                            m.groups, m.padding, m.padding_mode)
                continue
            layers.append((name, m))
    return layers


def input_dim(layer: nn.Module) -> int:
    """d: the length of one column of R (the appended 1 of a bias included)."""
    if isinstance(layer, nn.Linear):
        d = layer.in_features
    else:
        d = layer.in_channels * layer.kernel_size[0] * layer.kernel_size[1]
    return d + (layer.bias is not None)


def columns(layer: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """The layer input `a` as rows of Rᵀ (n × d): Linear inputs flattened over their leading dimensions,
    Conv2d inputs unfolded into patches (torch's C, kh, kw order: the order of `weight.view(out, -1)`); a 1
    appended for a bias."""
    if isinstance(layer, nn.Linear):
        rows = a.reshape(-1, a.shape[-1])
    else:
        patches = F.unfold(a, layer.kernel_size, dilation=layer.dilation, padding=layer.padding,
                           stride=layer.stride)  # N × d × L
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if layer.bias is not None:
        rows = torch.cat([rows, rows.new_ones(len(rows), 1)], dim=1)
    return rows


def representation_grams(model: nn.Module, layers: list[tuple[str, nn.Module]], x: torch.Tensor, t: torch.Tensor,
                         chunk: int = 64) -> list[torch.Tensor]:
    """R Rᵀ (float64, d × d) of every layer on the inputs `x` (task ids `t`), one forward per chunk (no grad)."""
    grams = [torch.zeros(input_dim(m), input_dim(m), dtype=torch.float64, device=x.device) for _, m in layers]

    def hook(i):
        def record(module, inputs, output):
            rows = columns(module, inputs[0].detach()).double()
            grams[i].addmm_(rows.T, rows)
        return record

    handles = [m.register_forward_hook(hook(i)) for i, (_, m) in enumerate(layers)]
    try:
        with torch.no_grad():
            for xs, ts in zip(x.split(chunk), t.split(chunk)):
                model(xs, ts)
    finally:
        for h in handles:
            h.remove()
    return grams


def _count(explained: float, energies: torch.Tensor, total: float, threshold: float) -> int:
    """The smallest k ≥ 0 with explained + Σ_{i≤k} energies_i ≥ threshold·total (energies descending),
    at most the number of energies."""
    if explained >= threshold * total:
        return 0
    cumulative = explained + torch.cumsum(energies, 0)
    reached = (cumulative >= threshold * total).nonzero()
    return int(reached[0]) + 1 if len(reached) else len(energies)


def update_basis(basis: torch.Tensor, gram: torch.Tensor, threshold: float) -> torch.Tensor:
    """GPM's basis update of one layer: `basis` d × k (orthonormal; k = 0 at first), `gram` = R Rᵀ (d × d).
    Returns the new basis d × k' (k' ≥ k: the old columns first, unchanged)."""
    gram = gram.double()
    d, k = basis.shape
    total = float(torch.trace(gram))
    if total <= 0:
        return basis  # the layer's inputs are all zero on this sample: nothing to protect
    M = basis.to(gram)
    if k:
        perp = torch.eye(d, dtype=gram.dtype, device=gram.device) - M @ M.T
        gram = perp @ gram @ perp
        explained = total - float(torch.trace(gram))  # ‖M Mᵀ R‖²_F
    else:
        explained = 0.0
    energies, vectors = torch.linalg.eigh((gram + gram.T) / 2)
    energies, vectors = energies.flip(0).clamp_min(0), vectors.flip(1)  # descending
    significant = int((energies > RANK_TOL * max(float(energies[0]), total * 1e-300)).sum())
    r = min(_count(explained, energies[:significant], total, threshold), d - k)
    if r == 0:
        return basis
    return torch.cat([basis, vectors[:, :r].to(basis)], dim=1)


class _ProjectedLinear(torch.autograd.Function):
    """y = a Wᵀ + b, whose backward gives ∇a = δW as usual and [∇W, ∇b] = δᵀ(Ā − ĀMMᵀ), Ā = [a, 1]: the weight
    gradient already projected out of span(M) (`P`: the projector MMᵀ when the basis is wide, else None)."""

    @staticmethod
    def forward(ctx, a, weight, bias, M, P):
        ctx.save_for_backward(a, weight, M, P)
        ctx.has_bias = bias is not None
        return F.linear(a, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        a, weight, M, P = ctx.saved_tensors
        d_w = weight.shape[1]
        g = grad_out.reshape(-1, weight.shape[0])
        rows = a.reshape(-1, d_w)
        grad_a = (g @ weight).view_as(a) if ctx.needs_input_grad[0] else None
        if P is not None:  # wide: Ā − ĀMMᵀ with the d × d projector
            change = rows @ P[:d_w]  # N × d
            if ctx.has_bias:
                change += P[d_w]
                ones = 1 - change[:, d_w]
            inputs = rows - change[:, :d_w]
        else:
            c = rows @ M[:d_w]  # N × k: the inputs' coordinates in the basis
            if ctx.has_bias:
                c += M[d_w]
                ones = 1 - c @ M[d_w]  # the appended 1, projected
            inputs = rows.addmm(c, M[:d_w].T, alpha=-1)
        grad_w = g.T @ inputs
        grad_b = ones @ g if ctx.has_bias else None
        return grad_a, grad_w, grad_b, None, None


class GPMBases(ConstraintState):
    """The bases M_l (buffers `basis__<i>`, d_l × k_l, float32) and `sizes` (consolidations × layers: k_l
    after each consolidation, for results.json)."""

    def bind(self, model: nn.Module) -> None:
        self.layers = projected_layers(model)
        for i, (_, m) in enumerate(self.layers):
            self.register_buffer(f"basis__{i}", torch.zeros(input_dim(m), 0, device=m.weight.device))
        self.register_buffer("sizes", torch.zeros(0, len(self.layers), dtype=torch.long))
        self.loaded()

    def loaded(self) -> None:
        self._projectors: dict[int, torch.Tensor] = {}  # M Mᵀ of a layer whose basis is over half its d
        self._rows: dict[int, torch.Tensor] = {}  # layer → 1/0 per output row: projected or left free
        self._ranks = [self.basis(i).shape[1] for i in range(len(getattr(self, "layers", [])))]
        self._input_side: set[int] = set()  # layers whose every gradient since the last step was projected in
        self._plain: set[int] = set()  # ... and those that also had an unprojected one (then: on .grad)

    def basis(self, i: int) -> torch.Tensor:
        return getattr(self, f"basis__{i}")

    def projector(self, i: int) -> torch.Tensor:
        """M Mᵀ of layer i (d × d, kept until the basis changes)."""
        M = self.basis(i)
        P = self._projectors.get(i)
        if P is None or P.device != M.device:
            P = self._projectors[i] = M @ M.T
        return P

    def consolidate(self, grams: list[torch.Tensor], threshold: float | list[float]) -> None:
        """`threshold`: one ε_th for every layer, or one per layer (`layer_thresholds`)."""
        thresholds = threshold if isinstance(threshold, (list, tuple)) else [threshold] * len(grams)
        for i, gram in enumerate(grams):
            self.grow(f"basis__{i}", update_basis(self.basis(i), gram.to(self.basis(i).device), thresholds[i]))
        row = torch.tensor([[self.basis(i).shape[1] for i in range(len(self.layers))]], dtype=torch.long)
        self.grow("sizes", torch.cat([self.sizes, row.to(self.sizes.device)]))
        self.loaded()

    def free_rows(self, model: nn.Module, masks: torch.Tensor | None, experience: int) -> None:
        """Task-IL with a masked shared head: the head's rows of outputs no earlier experience predicts are left
        free (those outputs are masked out for every earlier experience: no old prediction depends on them);
        the rows of earlier experiences' outputs are projected. Every other case: every row is projected."""
        self._rows = {}
        head = getattr(model, "head", None) if getattr(model, "n_heads", 1) == 1 else None
        if masks is None or head is None or experience == 0:
            return
        for i, (_, m) in enumerate(self.layers):
            if m is head:
                self._rows[i] = masks[:experience].any(0).to(m.weight.dtype)[:, None]

    def install(self) -> None:
        """Give every plain `nn.Linear` with a basis the forward that projects its inputs in the backward."""
        for i, (_, m) in enumerate(self.layers):
            if type(m) is nn.Linear and self._ranks[i] and i not in self._rows:
                m.forward = self._forward(i, m)

    def uninstall(self) -> None:
        for _, m in self.layers:
            m.__dict__.pop("forward", None)

    def _forward(self, i: int, layer: nn.Linear):
        def forward(a: torch.Tensor) -> torch.Tensor:
            if not (torch.is_grad_enabled() and layer.weight.requires_grad):
                return F.linear(a, layer.weight, layer.bias)
            if a.numel() // a.shape[-1] >= layer.out_features or torch.is_autocast_enabled(a.device.type):
                # N ≥ out: cheaper on the gradient; mixed precision: the gradient's dtypes are autocast's
                self._plain.add(i)
                return F.linear(a, layer.weight, layer.bias)
            M = self.basis(i)
            P = self.projector(i) if 2 * self._ranks[i] > M.shape[0] else None
            self._input_side.add(i)
            return _ProjectedLinear.apply(a, layer.weight, layer.bias, M.to(a.dtype), None if P is None else
                                          P.to(a.dtype))
        return forward

    @torch.no_grad()
    def project(self) -> None:
        """∇W̄ ← ∇W̄ − ∇W̄ M Mᵀ for every layer with a basis (in place, on `.grad`), except those whose gradient
        was projected in the backward (`_ProjectedLinear`) and got no other since the last step."""
        done = self._input_side - self._plain
        self._input_side, self._plain = set(), set()
        for i, (_, m) in enumerate(self.layers):
            if self._ranks[i] == 0 or m.weight.grad is None or i in done:
                continue
            g = m.weight.grad.view(m.weight.shape[0], -1)
            b = m.bias.grad if m.bias is not None else None
            if b is None and m.bias is not None:
                b = m.bias.grad = torch.zeros_like(m.bias)
            self._remove(i, g, b)

    def _remove(self, i: int, g: torch.Tensor, b: torch.Tensor | None) -> None:
        """[g, b] ← [g, b] − [g, b] M Mᵀ in place, on the rows layer i projects (`g`: out × d_w, `b`: out or None)."""
        M = self.basis(i)
        d_w = g.shape[1]
        if 2 * self._ranks[i] > M.shape[0]:  # a wide basis: one product with the d × d projector is cheaper than two
            P = self.projector(i)
            full = g if b is None else torch.cat([g, b[:, None]], dim=1)
            change = full @ P
            if i in self._rows:
                change *= self._rows[i]
            full = full - change
            g.copy_(full[:, :d_w])
            if b is not None:
                b.copy_(full[:, d_w])
        else:
            c = g @ M[:d_w]  # out × k: the coordinates of [g, b] in the basis
            if b is not None:
                c.addr_(b, M[d_w])
            if i in self._rows:
                c *= self._rows[i]
            g.addmm_(c, M[:d_w].T, alpha=-1)
            if b is not None:
                b.sub_(c @ M[d_w])

    @torch.no_grad()
    def step_start(self) -> list[tuple[int, torch.Tensor, torch.Tensor | None]]:
        """(layer, W, b) copies of every layer with a basis, before the optimizer's step (`project_step`)."""
        return [(i, m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
                for i, (_, m) in enumerate(self.layers) if self._ranks[i]]

    @torch.no_grad()
    def project_step(self, before) -> None:
        """W̄ ← W̄_before + ΔW̄ − ΔW̄ M Mᵀ, ΔW̄ the optimizer's change of [W, b]: whatever the optimizer did (Adam's
        per-element scaling, momentum from before the boundary, weight decay), the old inputs' outputs do not
        move (ΔW̄·[a; 1] = 0 for every a in span(M))."""
        for i, w0, b0 in before:
            m, M = self.layers[i][1], self.basis(i)
            w = m.weight.view(m.weight.shape[0], -1)
            d_w = w.shape[1]
            c = w0.view_as(w).sub_(w) @ M[:d_w]  # −ΔW̄ M (out × k), from the exact difference
            if b0 is not None:
                c.addr_(b0.sub_(m.bias), M[d_w])
            if i in self._rows:
                c *= self._rows[i]
            w.addmm_(c, M[:d_w].T)  # W̄ − ΔW̄ M Mᵀ
            if b0 is not None:
                m.bias.add_(c @ M[d_w])

    def orthogonality(self) -> list[float]:
        """max |∇W̄ · M| / ‖∇W̄‖ per layer with a basis (the test's check; 0 for the others)."""
        out = []
        for i, (_, m) in enumerate(self.layers):
            M = self.basis(i)
            if M.shape[1] == 0 or m.weight.grad is None:
                out.append(0.0)
                continue
            g = m.weight.grad.view(m.weight.shape[0], -1)
            full = g if m.bias is None else torch.cat([g, m.bias.grad[:, None]], dim=1)
            out.append(float((full @ M).abs().max() / full.norm().clamp_min(1e-30)))
        return out


class GradientProjectionMemory(ConstraintCallback):
    """At every experience's end, the layers' representation on `samples` of its training inputs updates the
    bases (energy `threshold`); before every step, the gradient is projected out of them."""

    ARGS = {"threshold": ("number", {"low": 0, "high": 1, "low_open": True}),
            "hidden_threshold": ("number", {"low": 0, "high": 1, "low_open": True, "allow_none": True}),
            "threshold_increment": ("number", {"low": 0, "high": 1}), "samples": ("int", {})}
    projects_steps = True

    def __init__(self, threshold: float = 0.9, samples: int = 300, seed: int = 0, chunk_size: int = 64,
                 hidden_threshold: float | None = None, threshold_increment: float = 0.0):
        check_args(GradientProjectionMemory.ARGS, threshold=threshold, samples=samples,
                   hidden_threshold=hidden_threshold, threshold_increment=threshold_increment)
        self.threshold, self.samples, self.seed, self.chunk_size = float(threshold), int(samples), int(seed), \
            int(chunk_size)
        self.hidden_threshold = None if hidden_threshold is None else float(hidden_threshold)
        self.threshold_increment = float(threshold_increment)

    def layer_thresholds(self, n_layers: int, consolidation: int) -> list[float]:
        """ε_th per constrained layer at the `consolidation`-th consolidation (0 at the first experience's end):
        `threshold` for the first layer, `hidden_threshold` (default: `threshold`) for every later one (the
        official code's deeper layers keep more, e.g. PMNIST 0.95 / 0.99), each plus
        `threshold_increment`·consolidation, at most 1 (the official CIFAR schedule: 0.97 + 0.003·t)."""
        hidden = self.threshold if self.hidden_threshold is None else self.hidden_threshold
        base = [self.threshold] + [hidden] * (n_layers - 1)
        return [min(1.0, b + self.threshold_increment * consolidation) for b in base]

    def on_train_start(self, trainer, pl_module):
        pl_module.regularizer.free_rows(pl_module.model, pl_module.task_masks, int(pl_module.experience))
        pl_module.regularizer.install()

    def project(self, trainer, pl_module):
        pl_module.regularizer.project()

    def consolidate(self, trainer, pl_module):
        reg = pl_module.regularizer
        reg.uninstall()
        x, _, t = sample_experience(pl_module, self.samples, self.seed, salt=1)
        with eval_mode(pl_module.model) as model:
            grams = representation_grams(model, reg.layers, x, t, self.chunk_size)
        reg.consolidate(grams, self.layer_thresholds(len(reg.layers), len(reg.sizes)))

    def state_report(self, pl_module) -> dict:
        reg = pl_module.regularizer
        return {"stores": "bases of the layers' input subspaces (no inputs)",
                "layers": [name for name, _ in reg.layers],
                "dims": [input_dim(m) for _, m in reg.layers],
                "basis_sizes": reg.sizes.tolist(),  # after each experience: k per layer
                "bytes": tensor_bytes(*(reg.basis(i) for i in range(len(reg.layers))))}
