"""Per-layer rules of the curvature engine: from a site's kept inputs a and each vector's output
gradient δ, one site's statistic over a chunk — Σ_k Σ_n g_kn² (SQUARE: Fisher), Σ_n |Σ_k g_kn| (ABS:
MAS) or the Kronecker factors (KRONECKER: KFAC) — without a loop over samples.

- nn.Linear on N × in: the per-sample weight gradient is δ aᵀ, so Σ_n g² = (Σ_k δ²)ᵀ(a²) and
  Σ_n |g| = |δ|ᵀ|a| without storing per-sample gradients (FlatLinearRule); sequence inputs
  (N × L × in) or a layer called several times: per-sample gradients by bmm (LinearRule);
- nn.Conv2d: strided views of the padded input, or `unfold` (ConvRule);
- any other module with its own parameters: `torch.func` on that module alone (LocalRule);
- KRONECKER, Linear / Conv2d: A = Σ ā āᵀ once per chunk, G = Σ δ δᵀ as each δ arrives (KroneckerRule).

Per-sample gradients are formed in pieces of at most PER_SAMPLE_BUDGET elements. `RULES` maps a site's
kind (sites.py) to its rule; `rule_for` picks it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from clexp.curvature.sites import CONV, LINEAR, LOCAL, Site

SQUARE, ABS, KRONECKER = "square", "abs", "kronecker"
PER_SAMPLE_BUDGET = 2**24  # elements of per-sample gradients materialised at once
COLS_CACHE_BUDGET = 2**26  # elements of unfolded conv inputs kept for all K vectors of a chunk


def reduce_stat(g: torch.Tensor, stat: str) -> torch.Tensor:
    """Σ over dim 0 (the samples) of g² (SQUARE) or |g| (ABS)."""
    return (g * g).sum(0) if stat == SQUARE else g.abs().sum(0)


def piece_bounds(n: int, per_sample: int) -> list[tuple[int, int]]:
    """[(i, j)] slices of n samples whose per-sample tensors (`per_sample` elements each) fit PER_SAMPLE_BUDGET."""
    step = max(1, PER_SAMPLE_BUDGET // max(per_sample, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


class LayerRule:
    """One site's statistics over the K vectors of a chunk: `update(deltas)` per vector, then `finalize()`."""

    def __init__(self, site: Site, stat: str, sums: dict[str, torch.Tensor]):
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


class FlatLinearRule(LayerRule):
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


class LinearRule(LayerRule):
    """nn.Linear on N × ... × in, or called several times: per-sample gradients Σ_l δ_l a_lᵀ by bmm."""

    def __init__(self, site, stat, sums):
        super().__init__(site, stat, sums)
        self.a = _cat([a.reshape(len(a), -1, a.shape[-1]) for a, *_ in site.calls], 1)  # N, L, in

    def update(self, deltas):
        d = _cat([d.reshape(len(d), -1, d.shape[-1]) for d in deltas], 1)  # N, L, out
        if self.has_weight:
            for i, j in piece_bounds(len(d), self.m.weight.numel()):
                self._add("weight", reduce_stat(torch.bmm(d[i:j].transpose(1, 2), self.a[i:j]), self.stat))
        if self.has_bias:
            self._add("bias", reduce_stat(d.sum(1), self.stat))


class ConvRule(LayerRule):
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
            self._add("bias", reduce_stat(sum(d.sum((2, 3)) for d in deltas), self.stat))

    def _weight_unfold(self, deltas):
        for i, j in piece_bounds(len(deltas[0]), self.m.weight.numel()):
            g = None
            for c, ((a, *_), d) in enumerate(zip(self.site.calls, deltas)):
                cols = self.cols[c][i:j] if self.cols is not None else self._unfold(a[i:j])
                gc = torch.bmm(d[i:j].flatten(2), cols.transpose(1, 2))
                g = gc if g is None else g + gc
            self._add("weight", reduce_stat(g, self.stat))

    def _weight_strided(self, deltas):
        m = self.m
        (kh, kw), (dh, dw), cin, cout = m.kernel_size, m.dilation, m.in_channels, m.out_channels
        padded = [(buf, hp, wp, F.pad(d, (0, wp - d.shape[3])).flatten(2)) for (buf, hp, wp), d in
                  zip(self.padded, deltas)]  # δ widened to the padded rows: N, Cout, Ho·Wp
        for i, j in piece_bounds(len(deltas[0]), m.weight.numel()):
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
            self._add("weight", reduce_stat(g.movedim(2, 0), self.stat).permute(2, 3, 0, 1))


class LocalRule(LayerRule):
    """Any other module: torch.func per-sample gradients of δ·module(inputs) for its own parameters
    (and an absorbed child's, e.g. attention's out_proj), the module alone on each sample."""

    def update(self, deltas):
        m, leaves = self.m, self.site.leaves
        own = {leaf: m.get_parameter(leaf).detach() for leaf in leaves}
        with torch.no_grad():
            for i, j in piece_bounds(len(deltas[0]), sum(p.numel() for p in own.values())):
                total = None
                for (a, _, _, _, extra), d in zip(self.site.calls, deltas):
                    call = ((a,), {}) if extra is None else extra
                    g = _local_grads(m, own, call, d, i, j)
                    total = g if total is None else {k: total[k] + g[k] for k in g}
                for leaf, g in total.items():
                    self._add(leaf, reduce_stat(g, self.stat))


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


class KroneckerRule(LayerRule):
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


def _positions(m: nn.Conv2d, a: torch.Tensor) -> int:
    """Number of output positions of conv `m` on input `a`."""
    out = [(size + 2 * p - d * (k - 1) - 1) // st + 1
           for size, p, d, k, st in zip(a.shape[-2:], m.padding, m.dilation, m.kernel_size, m.stride)]
    return out[0] * out[1]


def _cat(tensors: list[torch.Tensor], dim: int) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim)


def _linear(site, stat, sums):
    flat = len(site.calls) == 1 and site.calls[0][0].dim() == 2
    return (FlatLinearRule if flat else LinearRule)(site, stat, sums)


RULES = {LINEAR: _linear, CONV: ConvRule, LOCAL: LocalRule}  # site kind → rule (SQUARE / ABS)


def rule_for(site: Site, stat: str, sums: dict[str, torch.Tensor]) -> LayerRule:
    """The SQUARE / ABS rule of `site` (KRONECKER: `KroneckerRule` directly, Linear / Conv2d only)."""
    return RULES[site.kind](site, stat, sums)
