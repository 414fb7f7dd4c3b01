"""The accumulation engine of the Fisher, MAS and KFAC: per-sample gradient statistics without a
loop over samples.

Given logit-space vectors v (K × N × C, e.g. the exact Fisher's factors of the cross-entropy
Hessian), the per-sample gradient g_kn of `z(x_n) · v_kn` is what every estimator needs. One chunk
of inputs accumulates Σ_k Σ_n g_kn² (SQUARE: Fisher) or Σ_n |Σ_k g_kn| (ABS: MAS), or, for the
Linear / Conv2d layers, the Kronecker factors A = Σ_n Σ ā āᵀ and G = Σ_k Σ_n (1/L) Σ δ_k δ_kᵀ
(KRONECKER: KFAC, see kronecker.py) — the same sites, hooks, chunks and backward passes:

- forward hooks keep the input a and output z of each module that owns trainable parameters
  (sites.py: the sites, their kinds, the hooks);
- one backward per vector k (retain_graph) gives every layer's output gradient δ; a loop over K
  beats `is_grads_batched` on CPU (no vmap fallbacks, cache-sized tensors) and frees δ as it goes;
- each site's rule (rules.py: Linear, Conv2d, `torch.func` on the module alone, Kronecker sums)
  adds its statistic as δ arrives, without per-sample gradients where the layer allows it;
- parameters shared between modules, or read outside their module's forward, and modules called
  in ways the hooks do not cover, fall back to `torch.func` on the whole model here. All exact.

Chunks hold at most `chunk_size` inputs; on CPU fewer when the layers' outputs exceed
ACTIVATION_BUDGET elements: the K backward passes are memory-bound and cache-sized tensors run
faster (CNN of bench_fisher: exact Fisher ~1.4× faster).

Assumptions: samples are independent (eval mode) and the batch is dim 0 of every layer's input and
output (else that layer takes the whole-model fallback; KRONECKER needs neither); a parameter is
used only inside the forward of the module that owns it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from clexp.curvature.distributed import all_reduce_sums
from clexp.curvature.rules import ABS, KRONECKER, SQUARE, KroneckerRule, LayerRule, piece_bounds, reduce_stat, rule_for
from clexp.curvature.sites import CONV, LINEAR, Site, eval_mode, factor_sites, plan, record_forward

__all__ = ["ABS", "KRONECKER", "SQUARE", "accumulate", "eval_mode", "finish", "fisher_paths", "zero_factor_sums",
           "zero_sums"]

ACTIVATION_BUDGET = 2**22  # elements of kept layer outputs per chunk, at most: cache-friendly sizes


def zero_sums(model: nn.Module) -> dict[str, torch.Tensor]:
    """Accumulators for the trainable parameters (at least float32, whatever the parameter's dtype)."""
    from clexp.models.freeze import trainable_parameters

    out = {}
    for n, p in trainable_parameters(model).items():
        dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
        out[n] = torch.zeros(p.shape, dtype=dtype, device=p.device)
    return out


def finish(model: nn.Module, sums: dict[str, torch.Tensor], count: float, reduce: bool) -> dict[str, torch.Tensor]:
    """Sums → means over `count` (over all ranks' shards under DDP when `reduce`), in the parameters' dtype."""
    if reduce:
        count = all_reduce_sums(sums, count)
    params = dict(model.named_parameters())
    return {k: (v / max(count, 1.0)).to(params[k].dtype) for k, v in sums.items()}


def zero_factor_sums(model: nn.Module, sites: list[Site]) -> dict[str, torch.Tensor]:
    """Zero accumulators of the Kronecker factors of `sites` (at least float32): every rank creates
    the same keys, whatever its shard reaches, so the sums can be all-reduced."""
    out = {}
    for s in sites:
        w = s.module.weight
        dtype = w.dtype if w.dtype in (torch.float32, torch.float64) else torch.float32
        n_in = w[0].numel() + ("bias" in s.leaves)
        out[f"{s.name}/A"] = torch.zeros(n_in, n_in, dtype=dtype, device=w.device)
        out[f"{s.name}/G"] = torch.zeros(w.shape[0], w.shape[0], dtype=dtype, device=w.device)
        out[f"{s.name}/used"] = torch.zeros((), dtype=dtype, device=w.device)
    return out


def _whole_model(model: nn.Module, names: list[str], x: torch.Tensor, vectors: torch.Tensor, stat: str,
                 sums: dict[str, torch.Tensor]) -> None:
    """torch.func per-sample gradients of z(x_n)·v_kn through the whole model, for `names`."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    subset = {n: params[n].detach() for n in names}

    def contraction(sub, xn, vn):
        z = functional_call(model, ({**params, **sub}, buffers), (xn.unsqueeze(0),))[0]
        return (z * vn).sum()

    per_sample = vmap(grad(contraction), in_dims=(None, 0, 0))
    with torch.no_grad():
        for v in vectors:
            for i, j in piece_bounds(len(x), sum(p.numel() for p in subset.values())):
                for n, g in per_sample(subset, x[i:j], v[i:j]).items():
                    sums[n] += reduce_stat(g, stat)


def accumulate(
    model: nn.Module,
    inputs: torch.Tensor,
    make_vectors: Callable[[torch.Tensor, int, int], torch.Tensor],
    stat: str,
    sums: dict[str, torch.Tensor],
    chunk_size: int,
    sites: list[Site] | None = None,
) -> None:
    """Add the Σ-statistics of all `inputs` into `sums` (from `zero_sums`, or `zero_factor_sums`).

    `make_vectors(logits, start, stop)` returns K × n × C logit-space vectors for inputs[start:stop]
    (constants; weights folded in). SQUARE adds Σ_k Σ_n g_kn², ABS adds Σ_n |Σ_k g_kn| of the
    per-sample gradients of z·v_kn, for every trainable parameter. KRONECKER adds the Kronecker
    factors' sums of `sites` (default: `factor_sites(model)`; see `rules.KroneckerRule`). Chunks hold at most
    `chunk_size` inputs (on CPU fewer when the layers' outputs exceed ACTIVATION_BUDGET elements:
    cache-sized tensors, faster, same result).
    """
    if stat == KRONECKER:
        sites, shared = (factor_sites(model) if sites is None else sites), []
        for s in sites:
            s.batched = False
    else:
        sites, shared = plan(model)
    clone, start, step = False, 0, min(chunk_size, 32 if inputs.device.type == "cpu" else chunk_size)
    while start < len(inputs):
        stop = min(start + step, len(inputs))
        x = inputs[start:stop]
        logits = record_forward(model, x, sites, clone)
        if not clone and any(s.mutated() for s in sites):  # in-place ops changed a kept tensor: keep copies
            clone = True
            logits = record_forward(model, x, sites, clone)
        if start == 0:
            mark_external(model, logits, sites, stat)
        vectors = make_vectors(logits.detach(), start, stop)
        if stat == KRONECKER:
            _factor_chunk(x, logits, vectors, sites, sums)
        else:
            _chunk(model, x, logits, vectors, sites, shared, stat, sums)
        start, step = stop, chunk_size
        if x.device.type == "cpu":  # on CPU, cache-sized pieces run faster; accelerators want big batches
            kept = sum(z.numel() for s in sites for _, z, *_ in s.calls) / len(x)
            step = min(chunk_size, max(1, int(ACTIVATION_BUDGET // max(kept, 1))))


def mark_external(model: nn.Module, logits: torch.Tensor, sites: list[Site], stat: str) -> None:
    """Sites the first chunk's forward never called but whose parameters still reach the logits (a
    parent module reading a child's weight directly, like attention's out_proj, when not in
    ABSORBED): their parameters go to the whole-model fallback; Kronecker factors cannot be formed
    for them (an error). One backward, only when some site went uncalled (e.g. other tasks' heads)."""
    idle = [s for s in sites if s.ok and not s.calls]
    if not idle or not logits.requires_grad:
        return
    params = [model.get_parameter(n) for s in idle for n in s.leaves.values()]
    grads = iter(torch.autograd.grad(logits.sum(), params, retain_graph=True, allow_unused=True))
    external = [s for s in idle if [g is not None for g in [next(grads) for _ in s.leaves]].count(True)]
    if external and stat == KRONECKER:
        raise ValueError(f"Kronecker factors: the parameters of layer(s) {', '.join(repr(s.name) for s in external)} "
                         "are used outside the layer's own forward (its parent reads them directly); "
                         "use the diagonal Fisher (method=ewc)")
    for s in external:
        s.external = True


def _chunk(model, x, logits, vectors, sites, shared, stat, sums) -> None:
    if stat == ABS:
        vectors = vectors.sum(0, keepdim=True)  # the per-sample gradient is linear in v
    fallback = shared + [n for s in sites if not s.ok or s.external for n in s.leaves.values()]
    live = [s for s in sites if s.ok and not s.external and s.calls]
    if len(vectors) and live and logits.requires_grad:
        stats = [rule_for(s, stat, sums) for s in live]
        _backprop(logits, vectors, live, stats)
        for st in stats:
            st.finalize()
    if fallback and len(vectors):
        _whole_model(model, fallback, x, vectors, stat, sums)


def _factor_chunk(x, logits, vectors, sites, sums) -> None:
    """The Kronecker factors' sums of one chunk: A of every layer the forward used, G from the vectors."""
    bad = [s.name for s in sites if not s.ok]
    if bad:
        raise ValueError(f"Kronecker factors: layer(s) {', '.join(map(repr, bad))} are called in a way the "
                         "forward hooks do not cover (keyword arguments, several inputs, or a non-tensor input); "
                         "call them as layer(x), or use the diagonal Fisher (method=ewc)")
    live = [s for s in sites if s.calls]
    stats = [KroneckerRule(s, KRONECKER, sums, len(x)) for s in live]
    if len(vectors) and live and logits.requires_grad:
        _backprop(logits, vectors, live, stats)
    for st in stats:
        st.finalize()


def _backprop(logits, vectors, sites: list[Site], stats: list[LayerRule]) -> None:
    """One backward per vector to every site's outputs, statistics accumulated as δ arrives."""
    outputs = [z for s in sites for _, z, *_ in s.calls]
    for k, v in enumerate(vectors):
        deltas = torch.autograd.grad(logits, outputs, v, retain_graph=k < len(vectors) - 1, allow_unused=True)
        start = 0
        for s, st in zip(sites, stats):
            got = deltas[start : start + len(s.calls)]
            start += len(s.calls)
            if any(d is not None for d in got):  # else the outputs do not reach the logits: zero
                st.update([torch.zeros_like(z) if d is None else d for d, (_, z, *_) in zip(got, s.calls)])
        del deltas


def fisher_paths(model: nn.Module, x: torch.Tensor) -> dict[str, str]:
    """{trainable parameter: the path its per-sample statistics take on inputs `x`}: `linear` / `conv`
    (the fast paths: per-sample gradients from the layer's input and output gradient), `per-module:
    <class>` (torch.func on that module alone: norms, attention, embeddings owned by a container),
    `whole-model` (torch.func through the whole model: shared parameters, calls the hooks cannot
    read) or `unused` (no gradient reaches it on these inputs). For reports and benchmarks."""
    sites, shared = plan(model)
    with eval_mode(model):
        logits = record_forward(model, x, sites, False)
        mark_external(model, logits, sites, SQUARE)
    out = {n: "whole-model" for n in shared}
    for s in sites:
        if not s.ok or s.external:
            path = "whole-model"
        elif not s.calls:
            path = "unused"
        elif s.kind in (LINEAR, CONV):
            path = s.kind
        else:
            path = f"per-module: {type(s.module).__name__}"
        out.update({n: path for n in s.leaves.values()})
    for s in sites:
        s.calls = []
    return out
