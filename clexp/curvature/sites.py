"""Where the curvature engine reads a model: the modules owning trainable parameters (sites), the
forward hooks that keep each site's inputs and outputs, and the kind of per-layer rule each site takes.

A site's kind comes from a registry by module type (`register_kind`): nn.Linear → "linear", nn.Conv2d
with zero padding and one group → "conv", anything else → "local" (torch.func on the module alone;
rules.py). Parameters shared between modules, or read outside their module's own forward, go to the
engine's whole-model fallback (engine.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

LINEAR, CONV, LOCAL = "linear", "conv", "local"


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


# module type → (kind, a test of the instance); looked up along the type's MRO (subclasses inherit)
KIND_REGISTRY: dict[type, tuple[str, Callable[[nn.Module], bool]]] = {}


def register_kind(module_type: type, kind: str, accepts: Callable[[nn.Module], bool] = lambda m: True) -> None:
    """Route modules of `module_type` (and its subclasses) that `accepts` to the per-layer rule `kind`."""
    KIND_REGISTRY[module_type] = (kind, accepts)


register_kind(nn.Linear, LINEAR)
register_kind(nn.Conv2d, CONV,
              lambda m: m.groups == 1 and m.padding_mode == "zeros" and not isinstance(m.padding, str))


def site_kind(m: nn.Module) -> str:
    """The rule kind of module `m`: LOCAL for a module with parameters other than weight / bias (e.g.
    old-style weight_norm's weight_g, weight_v) or of no registered type, else its registered kind."""
    if {n for n, _ in m.named_parameters(recurse=False)} - {"weight", "bias"}:
        return LOCAL
    for t in type(m).__mro__:
        if t in KIND_REGISTRY:
            kind, accepts = KIND_REGISTRY[t]
            return kind if accepts(m) else LOCAL
    return LOCAL


class Site:
    """A module owning trainable parameters, handled from its recorded calls (input a, output z).

    Each call is `(a, z, a version, z version, extra)`: `extra` is None for a call `module(a)`, else
    `(args, kwargs)` of a LOCAL module called with several tensors or keyword arguments (attention:
    `mha(x, x, x, need_weights=False)`), every tensor among them batched along dim 0. A module that
    returns a tuple (attention's `(output, weights)`) is followed through its first element when the
    others carry no gradient."""

    def __init__(self, name: str, module: nn.Module, leaves: dict[str, str]):
        self.name, self.module, self.kind, self.leaves = name, module, site_kind(module), leaves
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


def plan(model: nn.Module) -> tuple[list[Site], list[str]]:
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
            sites.append(Site(mname, m, leaves))
    return sites, shared


def factorisable(site: Site) -> bool:
    """A Linear / Conv2d site whose own parameters (weight, and bias if it has one) are all trainable
    and not shared with another module: the layers with Kronecker factors."""
    own = {leaf for leaf, _ in site.module.named_parameters(recurse=False)}
    return site.kind in (LINEAR, CONV) and "weight" in own and set(site.leaves) == own


def factor_sites(model: nn.Module) -> list[Site]:
    """The sites `kronecker.kfac_factors` factorises, in module order."""
    return [s for s in plan(model)[0] if factorisable(s)]


class Recorder:
    """Forward hooks on every site; removed by `remove` (always call it, in a finally)."""

    def __init__(self, sites: list[Site], n: int, clone: bool):
        self.handles = []
        for s in sites:
            def hook(module, args, kwargs, output, s=s):
                return s.record(args, kwargs, output, n, clone)

            self.handles.append(s.module.register_forward_hook(hook, with_kwargs=True))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


def record_forward(model: nn.Module, x: torch.Tensor, sites: list[Site], clone: bool) -> torch.Tensor:
    for s in sites:
        s.calls, s.ok = [], True
    recorder = Recorder(sites, len(x), clone)
    try:
        with torch.enable_grad():
            return model(x)
    finally:
        recorder.remove()
