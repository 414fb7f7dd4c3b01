"""PackNet (Mallya & Lazebnik 2018, "PackNet: adding multiple tasks to a single network by iterative
pruning"): sparsity, one sub-network per experience, no forgetting by construction.

Prunable weights: the weight of every Linear and Conv2d layer of the backbone (`model.features`), each
element owned by at most one experience (`owner` buffer: -1 = free, k = owned by experience k).
Experience i:
1. trains the FREE weights only (owner = -1); every weight owned by an earlier experience keeps its
   value: its gradient is masked (before clipping: it never enters the gradient's norm) and, after every
   optimizer step, it is put back to its value at the experience's start (so weight decay, momentum or
   Adam's moments cannot move it either — bit-identical);
2. at its end, per layer: of the n free weights the floor(p·n) smallest in magnitude (p =
   `prune_fraction`; ties in index order) are pruned — set to 0 and left free for the later experiences
   — and the other n − floor(p·n) become experience i's (owner = i);
3. retrains for `retrain_epochs` epochs over its training data with only its own weights trainable
   (the pruned ones stay 0), a fresh optimizer with the experience's learning rate, no augmentation,
   in full precision, then freezes them (they never change again).
Free fraction of a layer after k experiences: n_k/n with n_{k+1} = n_k − (n_k − floor(p·n_k)) = floor(p·n_k)
(≈ p^k). A stream needs n_i ≥ 1 in every layer for its last experience i = T − 1: the run refuses a
longer stream before training (one line naming `method.prune_fraction`, the layer and after which
experience no weight is free).

Everything else in the backbone (biases, normalisation layers' affine parameters and running
statistics): trained with the first experience only, frozen afterwards (the paper's convention: it prunes
weights only and keeps biases and batch-norm parameters as the first task left them; the running
statistics freeze through `model.freeze_norm_stats`, set here). Heads are task-specific: with one head
per experience (`model.multihead=true`) head k trains in experience k only; a shared head masked per
experience (task-IL) trains only the outputs of the current experience's classes; in domain- and
class-IL the single head is shared by every experience and trains in each.

Evaluation (the hook `evaluation_context`, called by `ContinualModule.forward` in eval mode): in task-IL,
experience j is evaluated with the weights of experiences ≤ j only (later experiences' weights zeroed;
while experience i trains, its free weights count as i's). Domain- and class-IL give no task id at test
time, so every weight is active for every test input: evaluated with all weights, the network as it is
(the paper is task-IL; there, the later experiences' weights change the earlier experiences' outputs,
which is forgetting that PackNet cannot prevent).

Task-free streams are refused: pruning and freezing happen at an experience's end.
"""

from __future__ import annotations

import contextlib
import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from clexp.config.argspec import check_args
from clexp.config.errors import ConfigError
from clexp.methods.base import Regularizer
from clexp.methods.quadratic import buffer_key

FREE = -1


def prunable_parameters(model: nn.Module) -> tuple[list[str], list[str]]:
    """(prunable weights, other backbone parameters) by name: the weights of Linear / Conv2d layers of
    `model.features` (the whole model minus its heads when it has none) that train; the rest of it."""
    features = getattr(model, "features", None)
    root, prefix = (features, "features.") if isinstance(features, nn.Module) else (model, "")
    prunable, shared = [], []
    for mname, m in root.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{prefix}{mname}.{pname}" if mname else f"{prefix}{pname}"
            if not p.requires_grad or full.startswith(("head.", "heads.")):
                continue
            if isinstance(m, (nn.Linear, nn.Conv2d)) and pname == "weight":
                prunable.append(full)
            else:
                shared.append(full)
    return prunable, shared


def free_counts(n: int, p: float, experiences: int) -> list[int]:
    """The free weights of a layer of n weights at the start of each of `experiences` experiences:
    n_0 = n, n_{k+1} = floor(p·n_k)."""
    counts = [n]
    for _ in range(experiences - 1):
        counts.append(math.floor(p * counts[-1]))
    return counts


class PackNetMasks(Regularizer):
    """PackNet's per-weight ownership (buffers `owner__*`, int32: -1 free, k experience k; not int16, which
    gloo cannot broadcast when DDP starts) and the constraint it puts on training: masked gradients, frozen
    weights restored after every step. Not a term of the loss (`value` is None: nothing to log), so it adds
    no backward work."""

    analytic_gradient = True  # the training loop calls add_gradient after the backward: the gradient mask

    ARGS = {"prune_fraction": ("number", {"low": 0, "high": 1, "low_open": True, "high_open": True})}

    def __init__(self, prune_fraction: float = 0.75):
        check_args(PackNetMasks.ARGS, prune_fraction=prune_fraction)
        super().__init__()
        self.prune_fraction = float(prune_fraction)
        self.names: list[str] = []
        self.shared: list[str] = []
        self._trainable: dict[str, torch.Tensor | bool] = {}  # per parameter: a bool mask, or all/nothing
        self._snapshot: dict[str, torch.Tensor] = {}
        self._current = 0

    def bind(self, model: nn.Module) -> None:
        self.names, self.shared = prunable_parameters(model)
        params = dict(model.named_parameters())
        for n in self.names:
            self.register_buffer(f"owner__{buffer_key(n)}", torch.full_like(params[n], FREE, dtype=torch.int32))
        model.freeze_norm_stats = True  # running statistics: those of the first experience (see the docstring)

    def owner(self, name: str) -> torch.Tensor:
        return getattr(self, f"owner__{buffer_key(name)}")

    def value(self, model: nn.Module):
        return None

    def forward(self, model, x, t, logits):
        return logits.new_zeros(())

    # -- the constraint ---------------------------------------------------------------------------------
    @torch.no_grad()
    def begin(self, model: nn.Module, experience: int, output_mask: torch.Tensor | None, retrain: bool = False):
        """Which elements train from now on (experience `experience`; `retrain`: its own weights only),
        and the values every other element is held at."""
        self._current = int(experience)
        params = dict(model.named_parameters())
        trainable: dict[str, torch.Tensor | bool] = {}
        for n in self.names:
            owner = self.owner(n)
            trainable[n] = owner == (self._current if retrain else FREE)
        for n in self.shared:
            trainable[n] = self._current == 0
        for n, p in params.items():
            if not p.requires_grad or n in trainable:
                continue
            if n.startswith("heads."):
                trainable[n] = int(n.split(".")[1]) == self._current
            elif n.startswith("head.") and output_mask is not None:  # task-IL, a shared head: this experience's rows
                mask = output_mask.to(p.device)
                trainable[n] = mask.view(-1, *([1] * (p.dim() - 1))).expand_as(p).clone() if p.dim() else mask
        self._trainable = {n: m for n, m in trainable.items() if m is not True}
        self._snapshot = {n: params[n].detach().clone() for n in self._trainable}

    @torch.no_grad()
    def add_gradient(self, model: nn.Module, grad_scale=None) -> None:
        """Mask the gradients of the elements that do not train (before clipping and the step)."""
        params = dict(model.named_parameters())
        for n, mask in self._trainable.items():
            g = params[n].grad
            if g is None:
                continue
            if mask is False:
                g.zero_()
            else:
                g.mul_(mask)

    @torch.no_grad()
    def after_optimizer_step(self, model: nn.Module) -> None:
        """Put every element that does not train back to its value (whatever the optimizer did to it)."""
        params = dict(model.named_parameters())
        for n, mask in self._trainable.items():
            p = params[n]
            if mask is False:
                p.copy_(self._snapshot[n])
            else:
                p.copy_(torch.where(mask, p, self._snapshot[n]))

    # -- pruning ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def prune(self, model: nn.Module, experience: int) -> None:
        """Per layer: floor(p·n) of the n free weights with the smallest magnitude set to 0 (still free), the
        others owned by `experience`."""
        params = dict(model.named_parameters())
        for n in self.names:
            p, owner = params[n], self.owner(n)
            free = torch.nonzero(owner.flatten() == FREE).flatten()
            k = math.floor(self.prune_fraction * len(free))
            order = torch.sort(p.detach().flatten()[free].abs(), stable=True).indices
            pruned, kept = free[order[:k]], free[order[k:]]
            owner.view(-1)[kept] = int(experience)
            p.view(-1)[pruned] = 0.0

    def capacity_left(self, experiences: int) -> list[float]:
        """The free fraction of the prunable weights after each experience (those pruned at its end and not
        owned by a later one)."""
        total = sum(self.owner(n).numel() for n in self.names) or 1
        out = []
        for i in range(experiences):
            free = sum(int(((self.owner(n) == FREE) | (self.owner(n) > i)).sum()) for n in self.names)
            out.append(free / total)
        return out

    def check_stream(self, model: nn.Module, n_experiences: int) -> None:
        """Refuse a stream longer than the pruning leaves room for (before training)."""
        params = dict(model.named_parameters())
        worst = None
        for n in self.names:
            counts = free_counts(params[n].numel(), self.prune_fraction, n_experiences)
            room = next((i for i, c in enumerate(counts) if c < 1), n_experiences)
            if room < n_experiences and (worst is None or room < worst[0]):
                worst = (room, n, params[n].numel())
        if worst is not None:
            room, name, size = worst
            raise ConfigError("method.prune_fraction", self.prune_fraction,
                              f"room for {room} experience(s) only: after experience {room - 1} (0-based) no weight of "
                              f"layer {name} ({size} weights) is free, and the stream has {n_experiences} "
                              f"(free weights at experience k's start: floor(p·n_(k-1))); a larger prune_fraction, "
                              f"a wider model or fewer experiences")

    # -- evaluation -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def evaluation_context(self, module, task: int):
        """Task-IL: the model with the weights of experiences ≤ `task` only (the current experience's free
        weights count as its own); domain- and class-IL: the model as it is (all weights)."""
        per_task = module.task_masks is not None or getattr(module.model, "n_heads", 1) > 1
        if not per_task or not self.names:
            yield
            return
        current = int(module.experience)
        params = dict(module.model.named_parameters())
        saved = {}
        with torch.no_grad():
            for n in self.names:
                owner, p = self.owner(n), params[n]
                active = ((owner >= 0) & (owner <= task)) | ((owner == FREE) & (task >= current))
                if not bool(active.all()):
                    saved[n] = p.detach().clone()
                    p.mul_(active)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, value in saved.items():
                    params[n].copy_(value)


class PackNetPruning(pl.Callback):
    """At each experience's start: which weights train (the free ones); at its end, before the accuracy
    matrix's evaluation (`before_evaluation`): prune, retrain `retrain_epochs` epochs, freeze."""

    needs_boundaries = True
    # a task-free stream has no experience end to prune at: refused before training (clexp/core/validation.py)
    task_free_refusal = ("false for method=packnet: PackNet prunes and freezes an experience's weights at its end, "
                         "and a task-free stream has no ends")
    before_evaluation = True

    ARGS = {"retrain_epochs": ("int", {"low": 0})}

    def __init__(self, retrain_epochs: int = 1):
        check_args(PackNetPruning.ARGS, retrain_epochs=retrain_epochs)
        self.retrain_epochs = retrain_epochs
        self.n_experiences = None

    @staticmethod
    def _head_mask(pl_module, experience: int):
        return pl_module.output_mask(experience)  # None outside task-IL with a shared head

    def on_train_start(self, trainer, pl_module):
        i = int(pl_module.experience)
        pl_module.regularizer.begin(pl_module.model, i, self._head_mask(pl_module, i))
        self.n_experiences = getattr(pl_module, "n_experiences", None)

    def on_train_end(self, trainer, pl_module):
        reg, model, i = pl_module.regularizer, pl_module.model, int(pl_module.experience)
        reg.prune(model, i)
        reg.begin(model, i, self._head_mask(pl_module, i), retrain=True)
        if self.retrain_epochs:
            self.retrain(trainer, pl_module)

    def retrain(self, trainer, pl_module) -> None:
        """`retrain_epochs` passes over the experience's training batches (the fit's loader: this rank's
        shard, seeded order), cross-entropy only, the experience's own weights trainable."""
        import torch.distributed as dist

        reg, model = pl_module.regularizer, pl_module.model
        optimizer = pl_module.configure_optimizers()
        was_training = model.training
        model.train()
        pl_module._freeze_norms()
        loader = trainer.train_dataloader
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        for _ in range(self.retrain_epochs):
            for batch in loader:
                x, y, t = (a.to(pl_module.device) for a in batch[:3])
                optimizer.zero_grad()
                loss = F.cross_entropy(pl_module.mask(model(x, t), t), y)
                loss.backward()
                if world > 1:  # the fit's DDP wrapper is not used here: average the gradients ourselves
                    for p in model.parameters():
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                            p.grad.div_(world)
                reg.add_gradient(model)
                if pl_module.gradient_clip_val:
                    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None],
                                                   pl_module.gradient_clip_val)
                optimizer.step()
                reg.after_optimizer_step(model)
        model.train(was_training)

    def report(self, pl_module) -> dict:
        reg = pl_module.regularizer
        n = int(getattr(pl_module, "n_experiences", 0) or 0)
        layers = {name: int(reg.owner(name).numel()) for name in reg.names}
        return {"packnet": {"prune_fraction": reg.prune_fraction, "capacity_left": reg.capacity_left(n),
                            "prunable_weights": sum(layers.values()), "layers": layers}}
