"""Brute-force references for every curvature test (docs/design.md, section 3, written out, one input and one class
at a time, in float64): the diagonal Fisher's variants, MAS, the Kronecker factors and the explicit
Kronecker penalty. Slow and obvious on purpose; they share no code with clexp/curvature beyond
`torch.autograd.grad`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rel_err(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max over keys of ‖a − b‖ / ‖b‖ (same keys required)."""
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in b)


def log_probs(model: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    z = model(x)
    return F.log_softmax(z if mask is None else z.masked_fill(~mask, float("-inf")), -1)


def _trainable(model):
    return [(k, p) for k, p in model.named_parameters() if p.requires_grad]


def _class_weights(logp, variant, n, y=None, mask=None, draws=None):
    """(class, weight) pairs of input n: every allowed class with p_c (exact), the sampled classes
    with 1/S each (draws: N × S), the dataset label (empirical)."""
    if variant == "exact":
        return [(c, logp[c].exp().item()) for c in range(len(logp)) if mask is None or mask[c]]
    if variant == "sampled":
        return [(int(c), 1 / draws.shape[1]) for c in draws[n]]
    return [(int(y[n]), 1.0)]


def fisher(model, x, y=None, variant="exact", mask=None, draws=None) -> dict[str, torch.Tensor]:
    """Diagonal Fisher: 1/N Σ_n Σ_c w_nc (∇θ log p(c|x_n))², w from `_class_weights`; eval mode."""
    model.eval()
    named = _trainable(model)
    params = [p for _, p in named]
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        logp = log_probs(model, x[n : n + 1], mask)[0]
        for c, w in _class_weights(logp, variant, n, y, mask, draws):
            g = torch.autograd.grad(logp[c], params, retain_graph=True, allow_unused=True)
            for t, gi in zip(total, g):
                if gi is not None:
                    t += w * gi**2
    return {name: t / len(x) for (name, _), t in zip(named, total)}


def batch_fisher(model, x, y, batch_size, mask=None) -> dict[str, torch.Tensor]:
    """1/M Σ_m (∇θ mean_{n∈m} log p(y_n|x_n))² over consecutive mini-batches of `batch_size` inputs."""
    model.eval()
    named = _trainable(model)
    params = [p for _, p in named]
    total = [torch.zeros_like(p) for p in params]
    starts = range(0, len(x), batch_size)
    for s in starts:
        logp = log_probs(model, x[s : s + batch_size], mask)
        g = torch.autograd.grad(logp.gather(1, y[s : s + batch_size, None]).mean(), params, allow_unused=True)
        for t, gi in zip(total, g):
            if gi is not None:
                t += gi**2
    return {name: t / len(starts) for (name, _), t in zip(named, total)}


def mas(model, x, mask=None) -> dict[str, torch.Tensor]:
    """MAS: 1/N Σ_n |∇θ ‖f(x_n)‖²| (outputs outside `mask` left out); eval mode."""
    model.eval()
    named = _trainable(model)
    total = [torch.zeros_like(p) for _, p in named]
    for n in range(len(x)):
        z = model(x[n : n + 1])[0]
        if mask is not None:
            z = z[mask]
        g = torch.autograd.grad(z.pow(2).sum(), [p for _, p in named], allow_unused=True)
        for t, gi in zip(total, g):
            if gi is not None:
                t += gi.abs()
    return {name: t / len(x) for (name, _), t in zip(named, total)}


def _rows(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """One input's rows ā (positions × in'): unfolded patches of a convolution, a 1 for the bias."""
    if isinstance(m, nn.Conv2d):
        r = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)[0].t()
    else:
        r = a.reshape(-1, a.shape[-1])
    if m.bias is not None:
        r = torch.cat([r, torch.ones(len(r), 1, dtype=r.dtype)], 1)
    return r


def _delta_rows(m: nn.Module, d: torch.Tensor) -> torch.Tensor:
    """One input's output gradient as rows (positions × out)."""
    return d[0].reshape(d.shape[1], -1).t() if isinstance(m, nn.Conv2d) else d.reshape(-1, d.shape[-1])


def kfac_factors(model, x, layers, variant="exact", mask=None, draws=None) -> dict[str, dict[str, torch.Tensor]]:
    """Kronecker factors of the named `layers`, one input and one class at a time:

        A = 1/N Σ_n Σ_uses Σ_l ā ā ᵀ,   G = 1/N Σ_n Σ_c w_nc (1/L) Σ_uses Σ_l δ_c δ_cᵀ

    δ_c = ∂ log p(c|x_n)/∂(layer output), w as in `fisher`, L the positions (rows) of all the layer's
    uses together. Layers the forward does not call are left out."""
    model.eval()
    mods = {n: model.get_submodule(n) for n in layers}
    out: dict[str, dict] = {}
    for i in range(len(x)):
        seen = {n: [] for n in mods}

        def hook(m, args, z, n):
            seen[n].append((args[0].detach(), z))
            return z.clone()  # in-place ops downstream must not touch the output we differentiate by

        handles = [m.register_forward_hook(lambda m, a, z, n=n: hook(m, a, z, n)) for n, m in mods.items()]
        try:
            logp = log_probs(model, x[i : i + 1], mask)[0]
        finally:
            for h in handles:
                h.remove()
        used = [n for n in mods if seen[n]]
        for n in used:
            m = mods[n]
            f = out.setdefault(n, {"A": 0.0, "G": 0.0})
            for a, _ in seen[n]:
                r = _rows(m, a)
                f["A"] = f["A"] + r.t() @ r / len(x)
        outputs = [z for n in used for _, z in seen[n]]
        for c, w in _class_weights(logp, variant, i, None, mask, draws):
            grads = iter(torch.autograd.grad(logp[c], outputs, retain_graph=True, allow_unused=True))
            for n in used:
                m = mods[n]
                rows = [_delta_rows(m, d if d is not None else torch.zeros_like(z))
                        for (_, z), d in zip(seen[n], [next(grads) for _ in seen[n]])]
                L = sum(len(r) for r in rows)
                out[n]["G"] = out[n]["G"] + w * sum(r.t() @ r for r in rows) / L / len(x)
    return out


def kronecker_penalty(strength: float, triples) -> torch.Tensor:
    """½λ Σ vec(ΔW̄)ᵀ (A ⊗ G) vec(ΔW̄), vec stacking columns: the definition, materialised with
    torch.kron. `triples`: (W̄ now, A, G, W̄*) per layer and experience."""
    total = 0.0
    for w, A, G, anchor in triples:
        d = (w - anchor).t().reshape(-1)
        total = total + 0.5 * strength * d @ torch.kron(A, G) @ d
    return total
