"""Per-sample gradient statistics without a loop over samples: the engine of the Fisher, MAS and KFAC.

Given logit-space vectors v (K × N × C, e.g. the exact Fisher's factors of the cross-entropy
Hessian), the per-sample gradient g_kn of `z(x_n) · v_kn` is what every estimator needs. One chunk
of inputs accumulates Σ_k Σ_n g_kn² (SQUARE: Fisher) or Σ_n |Σ_k g_kn| (ABS: MAS), or, for the
Linear / Conv2d layers, the Kronecker factors A = Σ_n Σ ā āᵀ and G = Σ_k Σ_n (1/L) Σ δ_k δ_kᵀ
(KRONECKER: KFAC, see kronecker.py) — the same sites, hooks, chunks and backward passes:

- forward hooks keep the input a and output z of each module that owns trainable parameters;
- one backward per vector k (retain_graph) gives every layer's output gradient δ; a loop over K
  beats `is_grads_batched` on CPU (no vmap fallbacks, cache-sized tensors) and frees δ as it goes;
- nn.Linear on N × in inputs: the per-sample weight gradient is δ aᵀ, so Σ_n g² = (Σ_k δ²)ᵀ(a²)
  and Σ_n |g| = |δ|ᵀ|a| without storing per-sample gradients; sequence inputs (N × L × in), a
  layer called several times, and nn.Conv2d (strided views of the padded input, or `unfold`) form
  per-sample gradients by bmm, in pieces of at most PER_SAMPLE_BUDGET elements;
- any other module with its own parameters (BatchNorm, LayerNorm, Embedding, custom layers) gets
  per-sample gradients from `torch.func` on that module alone (vmap of grad of δ·module(a));
  modules called in other ways (several inputs, keyword arguments, parameters shared between
  modules) fall back to `torch.func` on the whole model. All exact.
- KRONECKER: only the Linear / Conv2d sites of `factor_sites`; A from the kept inputs once per
  chunk, G = Σ δ δᵀ over the rows of every use as each δ arrives (no per-sample gradients, so the
  rows need not be grouped by sample: a layer applied to a flattened (N·L) × in batch is fine). A
  site the hooks cannot read (keyword arguments, several inputs) is an error there, not skipped.

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
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils import parametrize

from clexp.curvature.distributed import all_reduce_sums

SQUARE, ABS, KRONECKER = "square", "abs", "kronecker"
LINEAR, CONV, LOCAL = "linear", "conv", "local"
PER_SAMPLE_BUDGET = 2**24  # elements of per-sample gradients materialised at once
COLS_CACHE_BUDGET = 2**26  # elements of unfolded conv inputs kept for all K vectors of a chunk
ACTIVATION_BUDGET = 2**22  # elements of kept layer outputs per chunk, at most: cache-friendly sizes


class eval_mode:
    """Context: the model in eval mode (dropout off, BatchNorm frozen); each module's mode restored."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        self.modes = {m: m.training for m in self.model.modules()}
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes.items():
            m.training = mode


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


# ---------------------------------------------------------------------------------------------- layers


def _kind(m: nn.Module) -> str:
    if {n for n, _ in m.named_parameters(recurse=False)} - {"weight", "bias"}:
        return LOCAL  # e.g. old-style weight_norm's weight_g, weight_v
    if isinstance(m, nn.Linear):
        return LINEAR
    if isinstance(m, nn.Conv2d) and m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        return CONV
    return LOCAL


class _Site:
    """A module owning trainable parameters, handled from its recorded calls (input a, output z).

    Each call is `(a, z, a version, z version, extra)`: `extra` is None for a call `module(a)`, else
    `(args, kwargs)` of a LOCAL module called with several tensors or keyword arguments (attention:
    `mha(x, x, x, need_weights=False)`), every tensor among them batched along dim 0. A module that
    returns a tuple (attention's `(output, weights)`) is followed through its first element when the
    others carry no gradient."""

    def __init__(self, name: str, module: nn.Module, leaves: dict[str, str]):
        self.name, self.module, self.kind, self.leaves = name, module, _kind(module), leaves
        self.calls: list[tuple] = []
        self.ok = True  # False: called in a way the hooks do not cover → whole-model fallback
        self.batched = True  # dim 0 of input and output must be the samples (False: Kronecker sums only)
        self.external = False  # its parameters reach the logits outside its own forward → whole-model fallback

    def record(self, args, kwargs, output, n: int, clone: bool):
        if not self.ok:
            return None
        z, rest = output, None
        if self.kind == LOCAL and isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor) \
                and all(o is None or (isinstance(o, torch.Tensor) and not o.requires_grad) for o in output[1:]):
            z, rest = output[0], output  # e.g. attention's (output, None): the gradient flows through output[0]
        if isinstance(z, torch.Tensor) and not z.requires_grad:
            return None  # no gradient reaches the parameters through this call
        extra = None
        a = args[0] if len(args) == 1 and not kwargs else None
        if a is None and self.kind == LOCAL:
            extra = _batched_call(args, kwargs, n if self.batched else None)
            a = None if extra is None else next(t for t in _tensors(extra))
        if not isinstance(a, torch.Tensor) or not isinstance(z, torch.Tensor) \
                or a.dim() == 0 or z.dim() == 0 \
                or (self.batched and (a.shape[0] != n or z.shape[0] != n)) \
                or (self.kind == CONV and a.dim() != 4) or (self.kind == LINEAR and a.dim() < 2):
            self.ok = False
            return None
        a = a.detach()
        if clone:  # downstream in-place ops would change what we keep: keep copies
            if extra is not None:
                extra = _map_tensors(extra, lambda t: t.detach().clone())
                a = next(t for t in _tensors(extra))
            else:
                a = a.clone()
            kept, copy = z, z.clone()
            self.calls.append((a, kept, a._version, kept._version, extra))
            if rest is None:
                return copy
            items = (copy, *rest[1:])
            return type(rest)(*items) if hasattr(rest, "_fields") else type(rest)(items)
        if extra is not None:
            extra = _map_tensors(extra, lambda t: t.detach())
        self.calls.append((a, z, a._version, z._version, extra))
        return None

    def mutated(self) -> bool:
        return any(a._version != va or z._version != vz for a, z, va, vz, *_ in self.calls)


def _tensors(call) -> list[torch.Tensor]:
    """The tensors among a call's `(args, kwargs)`, in order."""
    args, kwargs = call
    return [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]


def _map_tensors(call, fn):
    args, kwargs = call
    return (tuple(fn(t) if isinstance(t, torch.Tensor) else t for t in args),
            {k: fn(t) if isinstance(t, torch.Tensor) else t for k, t in kwargs.items()})


def _batched_call(args, kwargs, n: int | None):
    """`(args, kwargs)` when every tensor among them is batched along dim 0 (n samples) and the rest
    are plain values (None, bools, numbers, strings); else None (the call is not covered)."""
    values = (*args, *kwargs.values())
    tensors = [t for t in values if isinstance(t, torch.Tensor)]
    if not tensors or any(t.dim() == 0 or (n is not None and t.shape[0] != n) for t in tensors):
        return None
    if not all(isinstance(v, (torch.Tensor, bool, int, float, str, type(None))) for v in values):
        return None
    return tuple(args), dict(kwargs)


# Submodules whose parameters their parent uses in its own forward, never calling them:
# nn.MultiheadAttention reads out_proj.weight / out_proj.bias inside F.multi_head_attention_forward.
# Their parameters belong to the parent's site (leaves "out_proj.weight", ...).
ABSORBED: tuple[tuple[type, tuple[str, ...]], ...] = ((nn.MultiheadAttention, ("out_proj",)),)


def _absorbed(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """id(parent) → [(child name, child)] of ABSORBED submodules."""
    out: dict[int, list[tuple[str, nn.Module]]] = {}
    for m in model.modules():
        for kind, children in ABSORBED:
            if isinstance(m, kind):
                out[id(m)] = [(c, getattr(m, c)) for c in children if isinstance(getattr(m, c, None), nn.Module)]
    return out


def _plan(model: nn.Module) -> tuple[list[_Site], list[str]]:
    """Sites for the modules owning trainable parameters; parameters shared between modules → fallback.
    The parameters of an ABSORBED submodule (attention's out_proj) are their parent's."""
    from clexp.models.freeze import trainable_parameters

    names = {id(p): n for n, p in trainable_parameters(model).items()}
    owners: dict[int, int] = {}
    for m in model.modules():  # parametrized weights are computed outside their module's call
        if parametrize.is_parametrized(m):
            for p in m.parametrizations.parameters():
                owners[id(p)] = 1
    absorbed = _absorbed(model)
    skip = {id(c) for children in absorbed.values() for _, c in children}
    owned = []
    for mname, m in model.named_modules():
        if id(m) in skip:
            continue
        own = list(m.named_parameters(recurse=False))
        for cname, child in absorbed.get(id(m), []):
            own += [(f"{cname}.{leaf}", p) for leaf, p in child.named_parameters()]
        leaves = {leaf: names[id(p)] for leaf, p in own if id(p) in names}
        for leaf, p in own:
            owners[id(p)] = owners.get(id(p), 0) + 1
        if leaves:
            owned.append((mname, m, leaves, own))
    sites, shared = [], []
    for mname, m, leaves, own in owned:
        if any(owners[id(p)] > 1 for leaf, p in own if leaf in leaves):
            shared += list(leaves.values())
        else:
            sites.append(_Site(mname, m, leaves))
    return sites, shared


def factorisable(site: _Site) -> bool:
    """A Linear / Conv2d site whose own parameters (weight, and bias if it has one) are all trainable
    and not shared with another module: the layers with Kronecker factors."""
    own = {leaf for leaf, _ in site.module.named_parameters(recurse=False)}
    return site.kind in (LINEAR, CONV) and "weight" in own and set(site.leaves) == own


def factor_sites(model: nn.Module) -> list[_Site]:
    """The sites `kronecker.kfac_factors` factorises, in module order."""
    return [s for s in _plan(model)[0] if factorisable(s)]


class _Recorder:
    """Forward hooks on every site; removed by `remove` (always call it, in a finally)."""

    def __init__(self, sites: list[_Site], n: int, clone: bool):
        self.handles = []
        for s in sites:
            def hook(module, args, kwargs, output, s=s):
                return s.record(args, kwargs, output, n, clone)

            self.handles.append(s.module.register_forward_hook(hook, with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def _forward(model: nn.Module, x: torch.Tensor, sites: list[_Site], clone: bool) -> torch.Tensor:
    for s in sites:
        s.calls, s.ok = [], True
    recorder = _Recorder(sites, len(x), clone)
    try:
        with torch.enable_grad():
            return model(x)
    finally:
        recorder.remove()


# ------------------------------------------------------------------------------------ per-site statistics


def _reduce(g: torch.Tensor, stat: str) -> torch.Tensor:
    return (g * g).sum(0) if stat == SQUARE else g.abs().sum(0)


def _steps(n: int, per_sample: int) -> list[tuple[int, int]]:
    step = max(1, PER_SAMPLE_BUDGET // max(per_sample, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


class _Stats:
    """One site's statistics over the K vectors of a chunk: `update(deltas)` per vector, then `finalize()`."""

    def __init__(self, site: _Site, stat: str, sums: dict[str, torch.Tensor]):
        self.site, self.stat, self.sums = site, stat, sums
        self.m = site.module
        self.has_bias = "bias" in site.leaves
        self.has_weight = "weight" in site.leaves

    def _add(self, leaf: str, value: torch.Tensor):
        target = self.sums[self.site.leaves[leaf]]
        target += value.reshape(target.shape)

    def update(self, deltas: list[torch.Tensor]):
        raise NotImplementedError

    def finalize(self):
        pass


class _FlatLinear(_Stats):
    """nn.Linear called once on N × in: Σ_n g² = (Σ_k δ²)ᵀ(a²), Σ_n |g| = |δ|ᵀ|a|; no per-sample gradients."""

    def __init__(self, site, stat, sums):
        super().__init__(site, stat, sums)
        a = site.calls[0][0]
        self.a = a * a if stat == SQUARE else a.abs()
        self.acc = None

    def update(self, deltas):
        d = deltas[0]
        if self.acc is None:
            self.acc = d * d if self.stat == SQUARE else d.clone()
        elif self.stat == SQUARE:
            self.acc.addcmul_(d, d)
        else:
            self.acc.add_(d)

    def finalize(self):
        if self.acc is None:
            return
        acc = self.acc if self.stat == SQUARE else self.acc.abs()
        if self.has_weight:
            self._add("weight", acc.t() @ self.a)
        if self.has_bias:
            self._add("bias", acc.sum(0))


class _Linear(_Stats):
    """nn.Linear on N × ... × in, or called several times: per-sample gradients Σ_l δ_l a_lᵀ by bmm."""

    def __init__(self, site, stat, sums):
        super().__init__(site, stat, sums)
        self.a = _cat([a.reshape(len(a), -1, a.shape[-1]) for a, *_ in site.calls], 1)  # N, L, in

    def update(self, deltas):
        d = _cat([d.reshape(len(d), -1, d.shape[-1]) for d in deltas], 1)  # N, L, out
        if self.has_weight:
            for i, j in _steps(len(d), self.m.weight.numel()):
                self._add("weight", _reduce(torch.bmm(d[i:j].transpose(1, 2), self.a[i:j]), self.stat))
        if self.has_bias:
            self._add("bias", _reduce(d.sum(1), self.stat))


class _Conv(_Stats):
    """nn.Conv2d: per-sample gradients Σ_positions δ ⊗ input patch, by bmm.

    Stride 1 (and enough input channels): one bmm per kernel offset on a strided view of the padded
    input, no `unfold` copy (the rows are read with the padding columns, where δ is zero). Otherwise
    `unfold`, kept for all K vectors when it fits COLS_CACHE_BUDGET.
    """

    def __init__(self, site, stat, sums):
        super().__init__(site, stat, sums)
        m, calls = self.m, site.calls
        self.strided = all(s == 1 for s in m.stride) and m.in_channels >= 8
        if self.strided:
            self.padded = [self._pad(a) for a, *_ in calls]
        else:
            size = sum(a.shape[0] * m.weight[0].numel() * _positions(m, a) for a, *_ in calls)
            self.cols = [self._unfold(a) for a, *_ in calls] if size <= COLS_CACHE_BUDGET else None

    def _unfold(self, a):
        m = self.m
        return F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)  # N, I, L

    def _pad(self, a):
        """The zero-padded input in a flat buffer with room for the last rows' overrun."""
        (n, c, h, w), (ph, pw) = a.shape, self.m.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        buf = a.new_zeros(n * c * hp * wp + self.m.dilation[1] * (self.m.kernel_size[1] - 1))
        buf[: n * c * hp * wp].view(n, c, hp, wp)[:, :, ph : ph + h, pw : pw + w] = a
        return buf, hp, wp

    def update(self, deltas):
        if self.has_weight:
            self._weight_strided(deltas) if self.strided else self._weight_unfold(deltas)
        if self.has_bias:
            self._add("bias", _reduce(sum(d.sum((2, 3)) for d in deltas), self.stat))

    def _weight_unfold(self, deltas):
        for i, j in _steps(len(deltas[0]), self.m.weight.numel()):
            g = None
            for c, ((a, *_), d) in enumerate(zip(self.site.calls, deltas)):
                cols = self.cols[c][i:j] if self.cols is not None else self._unfold(a[i:j])
                gc = torch.bmm(d[i:j].flatten(2), cols.transpose(1, 2))
                g = gc if g is None else g + gc
            self._add("weight", _reduce(g, self.stat))

    def _weight_strided(self, deltas):
        m = self.m
        (kh, kw), (dh, dw), cin, cout = m.kernel_size, m.dilation, m.in_channels, m.out_channels
        padded = [(buf, hp, wp, F.pad(d, (0, wp - d.shape[3])).flatten(2)) for (buf, hp, wp), d in
                  zip(self.padded, deltas)]  # δ widened to the padded rows: N, Cout, Ho·Wp
        for i, j in _steps(len(deltas[0]), m.weight.numel()):
            g = deltas[0].new_empty(kh, kw, j - i, cout, cin)  # one bmm per kernel offset writes in place
            for c, (buf, hp, wp, dp) in enumerate(padded):
                for u in range(kh):
                    for v in range(kw):
                        rows = buf.as_strided((j - i, dp.shape[2], cin), (cin * hp * wp, 1, hp * wp),
                                              i * cin * hp * wp + u * dh * wp + v * dw)
                        if c == 0:
                            torch.bmm(dp[i:j], rows, out=g[u, v])
                        else:
                            g[u, v].baddbmm_(dp[i:j], rows)
            self._add("weight", _reduce(g.movedim(2, 0), self.stat).permute(2, 3, 0, 1))


class _Local(_Stats):
    """Any other module: torch.func per-sample gradients of δ·module(inputs) for its own parameters
    (and an absorbed child's, e.g. attention's out_proj), the module alone on each sample."""

    def update(self, deltas):
        m, leaves = self.m, self.site.leaves
        own = {leaf: m.get_parameter(leaf).detach() for leaf in leaves}
        with torch.no_grad():
            for i, j in _steps(len(deltas[0]), sum(p.numel() for p in own.values())):
                total = None
                for (a, _, _, _, extra), d in zip(self.site.calls, deltas):
                    call = ((a,), {}) if extra is None else extra
                    g = _local_grads(m, own, call, d, i, j)
                    total = g if total is None else {k: total[k] + g[k] for k in g}
                for leaf, g in total.items():
                    self._add(leaf, _reduce(g, self.stat))


def _local_grads(m: nn.Module, own: dict, call, d: torch.Tensor, i: int, j: int) -> dict[str, torch.Tensor]:
    """Per-sample gradients (samples i..j) of δ·m(*args, **kwargs) for the parameters `own`."""
    args, kwargs = call
    slots = [k for k, v in enumerate(args) if isinstance(v, torch.Tensor)]
    keys = [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]

    def contraction(params, tensors, dn):
        a, kw = list(args), dict(kwargs)
        for k, t in zip(slots, tensors):
            a[k] = t.unsqueeze(0)
        for k, t in zip(keys, tensors[len(slots):]):
            kw[k] = t.unsqueeze(0)
        out = functional_call(m, params, tuple(a), kw)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return (out.squeeze(0) * dn).sum()

    tensors = [args[k][i:j] for k in slots] + [kwargs[k][i:j] for k in keys]
    return vmap(grad(contraction), in_dims=(None, 0, 0))(own, tensors, d[i:j])


class _Kronecker(_Stats):
    """Linear / Conv2d: one chunk's sums of the Kronecker factors, into `sums["<layer>/A"]`,
    `["<layer>/G"]` and `["<layer>/used"]` (created by `zero_factor_sums`):

        A += Σ_uses Σ_rows ā āᵀ          once per chunk (ā: the input row or unfolded patch, 1 appended
                                          for the bias);
        G += (1/L) Σ_uses Σ_rows δ_k δ_kᵀ  for every vector k, L the rows per sample of all uses together.

    A row is a position (one per sample for a Linear on N × in, L for N × L × in, H_out·W_out for a
    convolution); a layer used several times contributes the rows of every use, as if they were more
    positions of one use. Rows need not be grouped by sample, so a layer applied to a flattened
    (N·L) × in batch is factorised too.
    """

    def __init__(self, site, stat, sums, n: int):
        super().__init__(site, stat, sums)
        key = site.name
        self.A, self.G = sums[f"{key}/A"], sums[f"{key}/G"]
        sums[f"{key}/used"] += 1
        self.bias = "bias" in site.leaves
        rows = [self._rows(a) for a, *_ in site.calls]
        for r in rows:  # A = [[Σ rrᵀ, Σ r], [Σ rᵀ, rows]] without appending a ones column
            inner = self.A[: r.shape[1], : r.shape[1]] if self.bias else self.A
            inner.addmm_(r.t(), r)
            if self.bias:
                total = r.sum(0)
                self.A[-1, :-1] += total
                self.A[:-1, -1] += total
                self.A[-1, -1] += r.shape[0]
        self.positions = max(sum(r.shape[0] for r in rows) / max(n, 1), 1e-30)  # L per sample
        self.acc = None

    def _rows(self, a: torch.Tensor) -> torch.Tensor:
        m = self.m
        if self.site.kind == CONV:
            cols = F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)  # N, I, L
            r = cols.transpose(1, 2).reshape(-1, cols.shape[1])
        else:
            r = a.reshape(-1, a.shape[-1])
        return r.to(self.A.dtype)

    def update(self, deltas):
        for d in deltas:
            if self.site.kind == CONV:  # N, out, H, W → out × (N·H·W)
                r = d.transpose(0, 1).reshape(d.shape[1], -1).to(self.G.dtype)
                rt = r.t()
            else:
                rt = d.reshape(-1, d.shape[-1]).to(self.G.dtype)
                r = rt.t()
            if self.acc is None:
                self.acc = r @ rt
            else:
                self.acc.addmm_(r, rt)

    def finalize(self):
        if self.acc is not None:
            self.G.add_(self.acc, alpha=1.0 / self.positions)


def zero_factor_sums(model: nn.Module, sites: list[_Site]) -> dict[str, torch.Tensor]:
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


def _stats(site: _Site, stat: str, sums: dict[str, torch.Tensor]) -> _Stats:
    if site.kind == LINEAR:
        flat = len(site.calls) == 1 and site.calls[0][0].dim() == 2
        return (_FlatLinear if flat else _Linear)(site, stat, sums)
    return (_Conv if site.kind == CONV else _Local)(site, stat, sums)


def _positions(m: nn.Conv2d, a: torch.Tensor) -> int:
    """Number of output positions of conv `m` on input `a`."""
    out = [(size + 2 * p - d * (k - 1) - 1) // st + 1
           for size, p, d, k, st in zip(a.shape[-2:], m.padding, m.dilation, m.kernel_size, m.stride)]
    return out[0] * out[1]


def _cat(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


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
            for i, j in _steps(len(x), sum(p.numel() for p in subset.values())):
                for n, g in per_sample(subset, x[i:j], v[i:j]).items():
                    sums[n] += _reduce(g, stat)


# ------------------------------------------------------------------------------------------ the chunks


def accumulate(
    model: nn.Module,
    inputs: torch.Tensor,
    make_vectors: Callable[[torch.Tensor, int, int], torch.Tensor],
    stat: str,
    sums: dict[str, torch.Tensor],
    chunk_size: int,
    sites: list[_Site] | None = None,
) -> None:
    """Add the Σ-statistics of all `inputs` into `sums` (from `zero_sums`, or `zero_factor_sums`).

    `make_vectors(logits, start, stop)` returns K × n × C logit-space vectors for inputs[start:stop]
    (constants; weights folded in). SQUARE adds Σ_k Σ_n g_kn², ABS adds Σ_n |Σ_k g_kn| of the
    per-sample gradients of z·v_kn, for every trainable parameter. KRONECKER adds the Kronecker
    factors' sums of `sites` (default: `factor_sites(model)`; see `_Kronecker`). Chunks hold at most
    `chunk_size` inputs (on CPU fewer when the layers' outputs exceed ACTIVATION_BUDGET elements:
    cache-sized tensors, faster, same result).
    """
    if stat == KRONECKER:
        sites, shared = (factor_sites(model) if sites is None else sites), []
        for s in sites:
            s.batched = False
    else:
        sites, shared = _plan(model)
    clone, start, step = False, 0, min(chunk_size, 32 if inputs.device.type == "cpu" else chunk_size)
    while start < len(inputs):
        stop = min(start + step, len(inputs))
        x = inputs[start:stop]
        logits = _forward(model, x, sites, clone)
        if not clone and any(s.mutated() for s in sites):  # in-place ops changed a kept tensor: keep copies
            clone = True
            logits = _forward(model, x, sites, clone)
        if start == 0:
            _mark_external(model, logits, sites, stat)
        vectors = make_vectors(logits.detach(), start, stop)
        if stat == KRONECKER:
            _factor_chunk(x, logits, vectors, sites, sums)
        else:
            _chunk(model, x, logits, vectors, sites, shared, stat, sums)
        start, step = stop, chunk_size
        if x.device.type == "cpu":  # on CPU, cache-sized pieces run faster; accelerators want big batches
            kept = sum(z.numel() for s in sites for _, z, *_ in s.calls) / len(x)
            step = min(chunk_size, max(1, int(ACTIVATION_BUDGET // max(kept, 1))))


def _mark_external(model: nn.Module, logits: torch.Tensor, sites: list[_Site], stat: str) -> None:
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
        stats = [_stats(s, stat, sums) for s in live]
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
    stats = [_Kronecker(s, KRONECKER, sums, len(x)) for s in live]
    if len(vectors) and live and logits.requires_grad:
        _backprop(logits, vectors, live, stats)
    for st in stats:
        st.finalize()


def _backprop(logits, vectors, sites: list[_Site], stats: list[_Stats]) -> None:
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
    sites, shared = _plan(model)
    with eval_mode(model):
        logits = _forward(model, x, sites, False)
        _mark_external(model, logits, sites, SQUARE)
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
