"""What every method file builds on: the regularization term's interface and the boundary-time
importance callback.

A method is a `Regularizer` (the term added to the task loss; its state in buffers) plus the
Lightning callback(s) that feed it. A quadratic method with a boundary-time estimator only writes
`estimate(trainer, pl_module) -> {parameter name: importance}` (see `ewc.py`, `mas.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from clexp.data.images import input_batches, is_lazy

# inputs decoded per chunk when importance estimation reads the experience from files
READ_CHUNK = 1024


class Regularizer(nn.Module):
    """A term added to the task loss: `forward(model, x, t, logits) -> scalar tensor`.

    Its state (importances, anchors, frozen copies) lives in registered buffers or submodules, so
    it is saved in `state_dict`s, moves with `.to(device)` and survives a resume. Callbacks call
    `consolidate(...)` at experience boundaries; the training loop never needs to know which method
    it runs.
    """

    # True: the training loop asks `value(model)` only when it logs, and adds the gradient itself with
    # `add_gradient(model, grad_scale)` after the backward (no autograd graph, fewest passes over the parameters)
    analytic_gradient = False
    # True: the term also receives `features=` (the output of `model.features` in the step's own
    # forward, recorded by ContinualModule) instead of running the backbone a second time (LwF)
    needs_features = False

    def forward(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def max_curvature(self) -> float | None:
        """The penalty's largest curvature (of its Hessian in the parameters), for the step-size check of
        `clexp.optim.stability`; None when it has none to offer (not quadratic, nothing consolidated)."""
        return None


def experience_shard(trainer, pl_module, max_samples: int | None, seed: int):
    """This rank's share of the current experience's training inputs and targets (a seeded subset
    of `max_samples` inputs when set), on the module's device (inputs read from files stay files:
    `over_chunks` reads them)."""
    exp = pl_module.current_experience
    x, y = exp.x_train, exp.y_train
    if max_samples is not None and max_samples < len(y):
        g = torch.Generator().manual_seed(seed * 7919 + exp.index)
        keep = torch.randperm(len(y), generator=g)[:max_samples]
        x, y = x[keep], y[keep]
    rank, world = trainer.global_rank, trainer.world_size
    x, y = x[rank::world], y[rank::world]
    return (x if is_lazy(x) else x.to(pl_module.device)), y.to(pl_module.device)


def _flatten(tree, prefix=()) -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, (*prefix, k)))
        return out
    return {prefix: tree}


def _unflatten(flat: dict) -> dict:
    out: dict = {}
    for path, v in flat.items():
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = v
    return out


def over_chunks(trainer, pl_module, x, y, estimate: Callable, multiple: int = 1,
                weight: Callable[[int], float] = float, desc: str = "importance"):
    """`estimate(x, y, reduce)` → a (nested) dict of means over the inputs it is given, on all of `x`.

    In memory: one call, `estimate(x, y, True)`. Inputs read from files (`ImageFiles`): chunks of
    READ_CHUNK inputs (a multiple of `multiple`: the batch Fisher's mini-batches stay whole) decoded
    by the experience's worker processes, each chunk's means (`reduce=False`) weighted by
    `weight(chunk size)` (its count: inputs, or mini-batches) and all-reduced once under DDP — the
    mean over the whole shard, as in memory. A progress bar shows when the read takes long."""
    if not is_lazy(x):
        return estimate(x, y, True)
    from clexp.callbacks.progress import chunk_progress
    from clexp.curvature.distributed import all_reduce_sums

    size = math.ceil(READ_CHUNK / multiple) * multiple
    chunks = torch.arange(len(x)).split(size)
    pairs = ((len(c), (c, xb)) for c, xb in zip(chunks, input_batches(x, chunks, pl_module.device)))
    sums, total = {}, 0.0
    for _, (chunk, xb) in chunk_progress(pairs, len(x), f"{desc} (experience {int(pl_module.experience) + 1})",
                                         trainer):
        part = _flatten(estimate(xb, y[chunk.to(y.device)], False))
        w = float(weight(len(chunk)))
        for k, v in part.items():
            sums[k] = v * w if k not in sums else sums[k].add_(v, alpha=w)
        total += w
    total = all_reduce_sums(sums, total)
    return _unflatten({k: v / max(total, 1.0) for k, v in sums.items()})


class ImportanceCallback(pl.Callback):
    """At the end of each experience: `estimate(trainer, pl_module) -> {param name: importance}` on
    its training data, consolidated into the module's quadratic penalty (and drawn as a histogram).
    Under DDP each rank estimates on its own shard; the curvature estimators all-reduce."""

    def __init__(self, plot: bool = True):
        self.plot = plot

    def estimate(self, trainer, pl_module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_train_end(self, trainer, pl_module):
        importance = self.estimate(trainer, pl_module)
        pl_module.regularizer.consolidate(importance, pl_module.model)
        self.show(trainer, pl_module, importance, type(self).__name__)

    def show(self, trainer, pl_module, importance: dict[str, torch.Tensor], title: str) -> None:
        if self.plot and trainer.is_global_zero:
            from clexp.plots import log_importance

            log_importance(trainer, importance, int(pl_module.experience), title)
