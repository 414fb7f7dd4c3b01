"""Kronecker-factored Fisher (KFAC, Martens & Grosse 2015; KFC for convolutions, Grosse & Martens
2016) for nn.Linear and nn.Conv2d layers, from the same hooks and batched backward as the diagonal
Fisher.

Per layer, with ā the layer's input (a bias column appended when the layer has a bias) and δ_c the
gradient of log p(c|x) with respect to the layer's output:

    A = E[Σ_l ā_l ā_lᵀ]                     (l: spatial positions; one for a Linear layer)
    G = Σ_c E[p_c · (1/L) Σ_l δ_cl δ_clᵀ]   (exact over the classes, or with sampled labels)

so that the layer's Fisher block is approximately A ⊗ G for the weight matrix W̄ = [W, b] (out × in').
With a single input and a single position, diag(A ⊗ G) is exactly the diagonal Fisher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clexp.curvature.distributed import all_reduce_sums
from clexp.curvature.per_sample import eval_mode

KFAC_VARIANTS = ("exact", "sampled")


def hooked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers KFAC factorises (Linear; Conv2d with zero padding and one group), by module name."""
    out = {}
    for name, m in model.named_modules():
        conv_ok = isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros" \
            and not isinstance(m.padding, str)
        if (isinstance(m, nn.Linear) or conv_ok) and any(p.requires_grad for p in m.parameters(recurse=False)):
            out[name] = m
    return out


def output_vectors(logits: torch.Tensor, variant: str, samples: int, output_mask, generator) -> torch.Tensor:
    """K × N × C logit-space vectors: √p_c (e_c − p) for every allowed class c (exact), or
    (e_ŷ − p)/√S for S labels ŷ sampled from the model (sampled)."""
    z = logits.double() if logits.dtype == torch.float64 else logits.float()
    if output_mask is not None:
        z = z.masked_fill(~output_mask.to(z.device), float("-inf"))
    p = torch.softmax(z, dim=1)
    C = p.shape[1]
    if variant == "exact":
        classes = range(C) if output_mask is None else output_mask.nonzero().flatten().tolist()
        eye = torch.eye(C, device=p.device, dtype=p.dtype)
        v = torch.stack([p[:, c : c + 1].sqrt() * (eye[c] - p) for c in classes])
    else:
        draws = torch.multinomial(p, samples, replacement=True, generator=generator)
        v = (F.one_hot(draws.t(), C).to(p.dtype) - p) / samples**0.5
    return v.to(logits.dtype)


class _Recorder:
    """Forward hooks keeping (input, output) of each layer, per call."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in layers}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in layers.items()]

    def _hook(self, name):
        def hook(module, inputs, output):
            self.calls[name].append((inputs[0].detach(), output))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def layer_inputs(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """ā: N × L × in' (the unfolded patches for a convolution; a ones column for the bias)."""
    if isinstance(m, nn.Conv2d):
        cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride).transpose(1, 2)
    else:
        cols = a.reshape(a.shape[0], -1, a.shape[-1])
    if m.bias is not None:
        cols = torch.cat([cols, cols.new_ones(*cols.shape[:2], 1)], dim=2)
    return cols


def layer_output_grads(m: nn.Module, d: torch.Tensor) -> torch.Tensor:
    """δ: K × N × L × out."""
    if isinstance(m, nn.Conv2d):
        return d.reshape(d.shape[0], d.shape[1], d.shape[2], -1).transpose(2, 3)
    return d.reshape(d.shape[0], d.shape[1], -1, d.shape[-1])


def weight_matrix(m: nn.Module, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """W̄ = [W, b] as out × in' (a convolution's kernel flattened like `unfold`'s patches)."""
    w = (m.weight if weight is None else weight).reshape(m.weight.shape[0], -1)
    if m.bias is None:
        return w
    b = m.bias if bias is None else bias
    return torch.cat([w, b.reshape(-1, 1)], dim=1)


def kfac_factors(
    model: nn.Module,
    inputs: torch.Tensor,
    variant: str = "exact",
    samples: int = 1,
    chunk_size: int = 256,
    output_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    reduce: bool = True,
) -> dict[str, dict[str, torch.Tensor]]:
    """{layer name: {"A": in' × in', "G": out × out}} for every Linear / Conv2d layer (means over inputs).

    With `reduce` under DDP each rank passes its shard; sums and counts are all-reduced."""
    if variant not in KFAC_VARIANTS:
        raise ValueError(f"KFAC Fisher variant {variant!r}: allowed are {', '.join(KFAC_VARIANTS)}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r}: must be an integer >= 1")
    layers = hooked_layers(model)
    sums: dict[str, dict[str, torch.Tensor]] = {}
    n = 0
    with eval_mode(model):
        for start in range(0, len(inputs), chunk_size):
            x = inputs[start : start + chunk_size]
            recorder = _Recorder(layers)
            try:
                with torch.enable_grad():
                    logits = model(x)
            finally:
                recorder.remove()
            vectors = output_vectors(logits.detach(), variant, samples, output_mask, generator)
            used = [(name, calls[0]) for name, calls in recorder.calls.items()
                    if len(calls) == 1 and calls[0][1].requires_grad]
            deltas = torch.autograd.grad(logits, [z for _, (_, z) in used], grad_outputs=vectors,
                                         is_grads_batched=True, allow_unused=True)
            for (name, (a, _)), d in zip(used, deltas):
                if d is None:
                    continue
                m = layers[name]
                abar = layer_inputs(m, a)
                dl = layer_output_grads(m, d)
                A = torch.einsum("nli,nlj->ij", abar, abar)
                G = torch.einsum("knlo,knlp->op", dl, dl) / dl.shape[2]
                if name not in sums:
                    sums[name] = {"A": A, "G": G}
                else:
                    sums[name]["A"] += A
                    sums[name]["G"] += G
            n += len(x)
    if reduce:
        flat = {f"{name}/{k}": v for name, f in sums.items() for k, v in f.items()}
        n = all_reduce_sums(flat, float(n))
    return {name: {k: v / max(n, 1) for k, v in f.items()} for name, f in sums.items()}


def kfac_diagonal(m: nn.Module, factors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diag(A ⊗ G) split back into the layer's weight (and bias) shapes."""
    diag = torch.outer(factors["G"].diagonal(), factors["A"].diagonal())  # out × in'
    out = {"weight": (diag[:, :-1] if m.bias is not None else diag).reshape(m.weight.shape)}
    if m.bias is not None:
        out["bias"] = diag[:, -1]
    return out
