"""Per-sample gradient statistics without a loop over samples.

Given logit-space vectors v (K × N × C, e.g. √p_c(e_c − p) for the exact Fisher), the per-sample
gradient of `z_n · v_kn` with respect to the parameters is what every estimator needs; this module
accumulates Σ_k Σ_n g² (Fisher) or Σ_n |Σ_k g| (MAS, K = 1) over a chunk of inputs:

- forward hooks keep each nn.Linear / nn.Conv2d layer's input a and output z;
- ONE batched backward (`is_grads_batched`) gives the output gradients δ of every layer for the K
  vectors at once;
- nn.Linear on flat inputs: the per-sample weight gradient is δ aᵀ, so Σ_n g² = (Σ_k δ²)ᵀ(a²) and
  Σ_n |g| = |δ|ᵀ|a| without ever storing per-sample gradients; other shapes (sequence inputs, a
  layer used twice) and nn.Conv2d (through `unfold`) form the chunk's per-sample gradients;
- every other parameter (BatchNorm, LayerNorm, custom layers) goes through `torch.func`
  (functional_call + vmap + grad): exact too, only slower.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

SQUARE, ABS = "square", "abs"


def _conv_supported(m: nn.Conv2d) -> bool:
    return m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str)


def hooked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers handled in closed form, by module name."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and _conv_supported(m)):
            if any(p.requires_grad for p in m.parameters(recurse=False)):
                out[name] = m
    return out


def _param_name(module_name: str, leaf: str) -> str:
    return f"{module_name}.{leaf}" if module_name else leaf


class _Recorder:
    """Forward hooks recording (input, output) of each hooked layer, per call."""

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
        self.handles = []


def _per_sample_linear(a: torch.Tensor, d: torch.Tensor, bias: bool):
    """Per-sample gradients (K, N, out, in) and (K, N, out) of a Linear layer on inputs N × ... × in."""
    a2 = a.reshape(a.shape[0], -1, a.shape[-1])  # N, L, in
    d2 = d.reshape(d.shape[0], d.shape[1], -1, d.shape[-1])  # K, N, L, out
    gw = torch.einsum("knlo,nli->knoi", d2, a2)
    gb = d2.sum(2) if bias else None
    return gw, gb


def _per_sample_conv(m: nn.Conv2d, a: torch.Tensor, d: torch.Tensor):
    """Per-sample gradients (K, N, *weight.shape) and (K, N, out) of a Conv2d layer."""
    cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)  # N, Cin·kk, L
    K, N = d.shape[:2]
    d2 = d.reshape(K, N, d.shape[2], -1)  # K, N, Cout, L
    gw = torch.einsum("kncl,nil->knci", d2, cols).reshape(K, N, *m.weight.shape)
    gb = d2.sum(-1) if m.bias is not None else None
    return gw, gb


def _reduce(g: torch.Tensor, stat: str) -> torch.Tensor:
    """Σ over (K, N) of g² (square), or Σ_n |Σ_k g| (abs)."""
    if stat == SQUARE:
        return g.pow(2).sum((0, 1))
    return g.sum(0).abs().sum(0)


def _conv_square_sums(m: nn.Conv2d, a: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Σ_k Σ_n g² of a Conv2d used once: one batched matmul per vector k (memory: one k at a time)."""
    cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride).transpose(1, 2)
    K, N = d.shape[:2]
    d2 = d.reshape(K, N, d.shape[2], -1)  # K, N, Cout, L
    sw = torch.zeros(m.weight.shape[0], cols.shape[2], device=a.device, dtype=a.dtype)
    sb = None
    for k in range(K):
        g = torch.bmm(d2[k], cols)  # N, Cout, Cin·kk
        sw += g.pow(2).sum(0)
        if m.bias is not None and m.bias.requires_grad:
            b = d2[k].sum(-1).pow(2).sum(0)
            sb = b if sb is None else sb + b
    return sw.reshape(m.weight.shape), sb


def _layer_stats(m: nn.Module, calls, deltas, stat: str) -> dict[str, torch.Tensor]:
    """Σ-statistics of a hooked layer's own parameters from its recorded inputs and output gradients."""
    has_bias = getattr(m, "bias", None) is not None and m.bias.requires_grad
    out = {}
    if isinstance(m, nn.Linear) and len(calls) == 1 and calls[0][0].dim() == 2:
        a, d = calls[0][0], deltas[0]  # a: N × in ; d: K × N × out
        if stat == SQUARE:
            d2 = d.pow(2).sum(0)
            out["weight"] = d2.t() @ a.pow(2)
            if has_bias:
                out["bias"] = d2.sum(0)
        else:
            ds = d.sum(0)
            out["weight"] = ds.abs().t() @ a.abs()
            if has_bias:
                out["bias"] = ds.abs().sum(0)
        return out
    if isinstance(m, nn.Conv2d) and len(calls) == 1 and stat == SQUARE:
        w, b = _conv_square_sums(m, calls[0][0], deltas[0])
        return {"weight": w, **({"bias": b} if b is not None else {})}
    gw = gb = None
    for (a, _), d in zip(calls, deltas):  # a layer called several times: gradients add up per sample
        if isinstance(m, nn.Linear):
            w, b = _per_sample_linear(a, d, has_bias)
        else:
            w, b = _per_sample_conv(m, a, d)
        gw = w if gw is None else gw + w
        if has_bias:
            gb = b if gb is None else gb + b
    out["weight"] = _reduce(gw, stat)
    if has_bias:
        out["bias"] = _reduce(gb, stat)
    return out


def _fallback_stats(model: nn.Module, names: list[str], x: torch.Tensor, vectors: torch.Tensor,
                    stat: str) -> dict[str, torch.Tensor]:
    """torch.func per-sample gradients of z(x_n)·v_kn for the parameters in `names`."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = dict(model.named_buffers())
    subset = {n: params[n] for n in names}

    def contraction(sub, xn, vn):
        z = functional_call(model, ({**params, **sub}, buffers), (xn.unsqueeze(0),))[0]
        return (z * vn).sum()

    per_sample = vmap(grad(contraction), in_dims=(None, 0, 0))
    sums = {n: torch.zeros_like(p) for n, p in subset.items()}
    signed = {n: None for n in subset}
    for v in vectors:  # K vectors
        g = per_sample(subset, x, v)
        for n in names:
            if stat == SQUARE:
                sums[n] += g[n].pow(2).sum(0)
            else:
                signed[n] = g[n] if signed[n] is None else signed[n] + g[n]
    if stat == ABS:
        sums = {n: signed[n].abs().sum(0) for n in names}
    return sums


def accumulate_chunk(
    model: nn.Module,
    x: torch.Tensor,
    make_vectors: Callable[[torch.Tensor], torch.Tensor],
    stat: str,
    sums: dict[str, torch.Tensor],
) -> None:
    """Add one chunk's Σ statistics into `sums` (keyed by parameter name).

    `make_vectors(logits)` returns K × N × C logit-space vectors (no gradient needed through them).
    """
    layers = hooked_layers(model)
    recorder = _Recorder(layers)
    try:
        with torch.enable_grad():
            logits = model(x)
    finally:
        recorder.remove()
    vectors = make_vectors(logits.detach())
    used = [(n, i) for n, calls in recorder.calls.items() for i, (_, z) in enumerate(calls) if z.requires_grad]
    outputs = [recorder.calls[n][i][1] for n, i in used]
    deltas_by_layer: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    if outputs:
        deltas = torch.autograd.grad(logits, outputs, grad_outputs=vectors, is_grads_batched=True,
                                     retain_graph=False, allow_unused=True)
        for (n, _), d in zip(used, deltas):
            if d is not None:
                deltas_by_layer[n].append(d)
    covered = set()
    for name, m in layers.items():
        calls = [c for c, _ in zip(recorder.calls[name], deltas_by_layer[name])]
        for leaf, p in m.named_parameters(recurse=False):
            covered.add(_param_name(name, leaf))
        if not deltas_by_layer[name]:
            continue  # the layer took no part (an unused head): zero contribution
        for leaf, value in _layer_stats(m, calls, deltas_by_layer[name], stat).items():
            sums[_param_name(name, leaf)] += value
    rest = [n for n, p in model.named_parameters() if p.requires_grad and n not in covered]
    if rest:
        for n, value in _fallback_stats(model, rest, x, vectors, stat).items():
            sums[n] += value
