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

from clexp.config.argspec import check_args
from clexp.core.step_count import stream_steps
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
    from clexp.core.callbacks.progress import chunk_progress
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


def stream_step(trainer) -> int:
    """Optimizer steps of the whole stream after the current step (in `on_train_batch_end`; the runner
    keeps Lightning's logging step continuous across experiences, which is incremented after that hook)."""
    return stream_steps(trainer) + 1


def batch_generator(pl_module, seed: int, trainer) -> torch.Generator:
    """The sampled Fisher's draws for the current training batch: seeded by the run's seed and the
    stream's step (a resumed run draws the same labels)."""
    step = stream_steps(trainer)
    return torch.Generator(device=pl_module.device).manual_seed(int(seed) * 104_729 + 7_919 * int(step) + 1)


def task_free(pl_module) -> bool:
    """True in a task-free stream (`scenario.task_free`, set on the module by the runner): no boundary
    events, a method consolidates only every `consolidate_every` steps."""
    return bool(getattr(pl_module, "task_free", False))


def from_batches(pl_module) -> bool:
    """True when importances must come from the training batches as they are trained on: a task-free
    stream (no experience to go back to), or the online setting (`train.online`, experiment=online:
    no second pass over an experience's data)."""
    return task_free(pl_module) or bool(getattr(pl_module, "online_importance", False))


def task_groups(pl_module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
    """(inputs, targets, output mask, share of the batch) per task id in a batch — one group unless a
    blurry stream mixes experiences in task-IL. A multi-head model's `active_task` is set to each group's
    task while it is yielded (the estimators call `model(x)` alone), and restored after."""
    model = pl_module.model
    per_task = pl_module.task_masks is not None or getattr(model, "n_heads", 1) > 1
    before = getattr(model, "active_task", None)
    try:
        if not per_task:  # one group; its mask: the classes seen so far under `scenario.outputs=seen`, else None
            output_mask = getattr(pl_module, "output_mask", None)
            yield x, y, output_mask(int(pl_module.experience)) if output_mask else None, 1.0
            return
        ids = torch.unique(t).tolist()
        for task in ids:
            keep = t == task if len(ids) > 1 else slice(None)
            if before is not None:
                model.active_task = int(task)
            xs, ys = x[keep], y[keep]
            yield xs, ys, pl_module.output_mask(int(task)), len(ys) / len(y)
    finally:
        if before is not None:
            model.active_task = before


def batch_mean(pl_module, x, y, t, estimate) -> dict:
    """`estimate(inputs, targets, output_mask) -> {name: mean over the inputs}` over a batch, averaged
    over its task groups (`task_groups`) by their share: the mean over the whole batch."""
    total = None
    for xs, ys, mask, share in task_groups(pl_module, x, y, t):
        total = tree_add(total, estimate(xs, ys, mask), share)
    return total


def tree_add(acc, new, weight: float = 1.0):
    """acc + weight·new over (nested dicts of) tensors; `acc` None starts the sum."""
    if isinstance(new, dict):
        acc = {} if acc is None else acc
        for k, v in new.items():
            acc[k] = tree_add(acc.get(k), v, weight)
        return acc
    new = new.detach()
    if acc is None:
        return new if weight == 1.0 else new * weight  # the common one-group batch: no copy
    return acc.to(new.device).add_(new, alpha=weight)  # a sum loaded from a checkpoint lives on the CPU


def tree_map(fn, tree):
    return {k: tree_map(fn, v) for k, v in tree.items()} if isinstance(tree, dict) else fn(tree)


class ImportanceCallback(pl.Callback):
    """At the end of each experience: `estimate(trainer, pl_module) -> {param name: importance}` on
    its training data, consolidated into the module's quadratic penalty (and drawn as a histogram).
    Under DDP each rank estimates on its own shard; the curvature estimators all-reduce.

    Without boundaries (a task-free stream, `pl_module.task_free`) there is no end of an experience:
    the consolidation runs every `consolidate_every` optimizer steps of the stream instead (a method
    with `needs_boundaries` refuses a task-free stream without it: clexp/core/validation.py). When the
    importance must come from the training batches (`from_batches`: task-free, or the online setting),
    an estimator that reads the experience's data writes `estimate_batch` too: the consolidated
    importance is then the mean of its per-batch estimates since the last consolidation (each batch
    estimated once, at the parameters it was trained at, right after its step). Those running sums
    are saved in stream checkpoints (`stream_state`).
    """

    # the estimate needs the end of an experience (EWC, MAS, L2, KFAC-EWC): a task-free stream needs
    # `consolidate_every`; SI, EWC++ and RWalk estimate along the way and set False
    needs_boundaries = True
    consolidate_every: int | None = None
    _sums = None  # the per-batch estimates since the last consolidation (summed, weighted by batch size)
    _count = 0.0

    ARGS = {"consolidate_every": ("int", {"allow_none": True})}

    def __init__(self, plot: bool = True, consolidate_every: int | None = None):
        check_args(ImportanceCallback.ARGS, consolidate_every=consolidate_every)
        self.plot = plot
        self.consolidate_every = consolidate_every

    def estimate(self, trainer, pl_module) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def estimate_batch(self, trainer, pl_module, x: torch.Tensor, y: torch.Tensor,
                       t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The importance of one training batch (a mean over its inputs); estimators that read the
        experience's data write it, the others (SI, L2, EWC++, RWalk) need no data at consolidation."""
        raise NotImplementedError

    @property
    def _reads_batches(self) -> bool:
        return type(self).estimate_batch is not ImportanceCallback.estimate_batch

    def after_step(self, trainer, pl_module, batch) -> None:
        """Per-step work of the method (SI's path integral, ...), before the consolidation check."""

    def after_consolidation(self, trainer, pl_module) -> None:
        """Reset what a consolidation closes (SI's ω and start, ...)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step(trainer, pl_module, batch)
        if self._reads_batches and from_batches(pl_module):
            x, y, t = batch[:3]
            self._sums = tree_add(self._sums, self.estimate_batch(trainer, pl_module, x, y, t), float(len(y)))
            self._count += float(len(y))
        every = self.consolidate_every
        if every and task_free(pl_module) and stream_step(trainer) % every == 0:
            self.consolidate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module):
        if not task_free(pl_module):
            self.consolidate(trainer, pl_module)

    def consolidate(self, trainer, pl_module) -> None:
        """Estimate (from the batches since the last consolidation, or at the end of the experience)
        and fold into the penalty."""
        if self._reads_batches and from_batches(pl_module):
            sums, count = self._sums, self._count
            if sums is None:
                return  # no batch since the last consolidation
            importance = tree_map(lambda v: v / count, sums)
            self._sums, self._count = None, 0.0
        else:
            importance = self.estimate(trainer, pl_module)
        self.apply(trainer, pl_module, importance)
        self.after_consolidation(trainer, pl_module)

    def apply(self, trainer, pl_module, importance) -> None:
        pl_module.regularizer.consolidate(importance, pl_module.model)
        self.show(trainer, pl_module, importance, type(self).__name__)

    def stream_state(self) -> dict:
        """What a stream checkpoint keeps of this callback: the batch sums since the last consolidation."""
        sums = self._sums
        return {"sums": None if sums is None else tree_map(lambda v: v.detach().cpu(), sums), "count": self._count}

    def load_stream_state(self, state: dict) -> None:
        self._sums, self._count = state.get("sums"), float(state.get("count", 0.0))

    def show(self, trainer, pl_module, importance: dict[str, torch.Tensor], title: str) -> None:
        if self.plot and trainer.is_global_zero:
            from clexp.core.plots import log_importance

            log_importance(trainer, importance, int(pl_module.experience), title)
