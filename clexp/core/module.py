"""`ContinualModule`: the model, its configurable regularization term and the loss, as a LightningModule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from clexp.core.evaluation import mask_logits
from clexp.core.step_count import stream_steps

if TYPE_CHECKING:  # the type only: the methods build on this module, never the other way
    from clexp.methods.base import Regularizer

log = logging.getLogger("clexp")


def loss_scale(trainer, device: torch.device) -> torch.Tensor | None:
    """Mixed precision's current loss scale as a 0-dim tensor on `device` (no host sync), or None when
    the gradients are not scaled."""
    scaler = getattr(trainer.precision_plugin, "scaler", None) if trainer is not None else None
    if scaler is None or not scaler.is_enabled():
        return None
    return scaler.scale(torch.ones((), device=device))


def norm_layers_with_statistics(model: nn.Module) -> list[nn.Module]:
    """The layers whose running statistics move in train mode: BatchNorm (any dimension, synced or
    lazy) and InstanceNorm with `track_running_stats=True`."""
    return [m for m in model.modules() if isinstance(m, _NormBase) and m.track_running_stats]


class FeatureRecorder:
    """A forward hook on `model.features` that keeps its output while armed (the training step's
    own forward), so a regularizer reuses it instead of running the backbone a second time. A small
    object rather than a bound method: a deep copy of the model copies the hook, not the module."""

    __slots__ = ("armed", "output")

    def __init__(self):
        self.armed, self.output = False, None

    def __call__(self, module, inputs, output):
        if self.armed:
            self.output = output


class ContinualModule(pl.LightningModule):
    """Cross-entropy on the current experience plus `regularizer(model, x, t, raw_logits)`.

    Batches are `(x, y, t)`: inputs, targets in output space, task ids. `task_masks` (T × outputs,
    bool) masks a shared head to each experience's outputs (task-IL without multiple heads);
    `seen_masks` (T × outputs, bool; class-IL with `scenario.outputs=seen`) masks the outputs to the classes
    seen up to the current experience, in training, importances and evaluation alike (`mask`).
    `strength_key` names the method's strength (`lam`, `c`, ...) in the stiffness warning.
    The optimizer is built at the start of every experience from `optimizer` (a factory taking
    the model's parameters, e.g. a Hydra `_partial_` of `torch.optim.Adam`); the runner loads the
    previous experience's state into it when that is carried over (`train.reset_optimizer=false`).

    The training step is written out (Lightning's manual optimization): zero the gradients,
    backward of the task loss (callbacks' `on_after_backward` see its gradient alone), the
    penalty's analytic gradient, the gradient constraints' projection (`gradient_constraints`),
    clipping (`gradient_clip_val`, by norm), the optimizer step, the constraints' projection of the step.
    `manual_backward` and Lightning's optimizer wrapper keep DDP's gradient all-reduce and mixed
    precision's loss scaling; the closure machinery of automatic optimization, which costs about a
    tenth of a small model's step, is skipped.

    A regularizer with `needs_features = True` (LwF with several heads) is called with
    `features=`: the output of `model.features` in the step's own forward, recorded by a forward
    hook (the backbone runs once per step, so BatchNorm statistics move once).

    With `model.freeze_norm_stats` true, from the second experience on (`experience > 0`, a
    checkpointed buffer: a resumed run freezes alike) every normalisation layer of the model with
    running statistics is kept in eval mode during training: the statistics stay where the first
    experience left them, the affine parameters still train.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        regularizer: Regularizer | None = None,
        task_masks: torch.Tensor | None = None,
        gradient_clip_val: float | None = None,
        augment: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None,
        seen_masks: torch.Tensor | None = None,
        strength_key: str | None = None,
    ):
        super().__init__()
        self.strength_key = strength_key  # the method's strength under `method.` (lam, c, ...), for warnings
        self.automatic_optimization = False
        self.model = model
        self.regularizer = regularizer
        if regularizer is not None and hasattr(regularizer, "bind"):
            regularizer.bind(model)
        self.optimizer_factory = optimizer
        self.gradient_clip_val = gradient_clip_val
        # `dataset.augment` (clexp/data/augment.py): applied to the training batch here and nowhere else; a plain
        # attribute (not a submodule: not in the state_dict, never moved to the device)
        self.augment = augment
        self._augment_steps = 0  # the step count without a trainer (a bare training_step call)
        self.register_buffer("experience", torch.zeros((), dtype=torch.long))
        self.register_buffer("task_masks", task_masks)
        self.register_buffer("seen_masks", seen_masks)  # None (not in the state_dict) unless outputs=seen
        self._features = None
        if regularizer is not None and getattr(regularizer, "needs_features", False):
            if not isinstance(getattr(model, "features", None), nn.Module):
                raise TypeError(f"{type(regularizer).__name__} needs `model.features` (the model contract: "
                                "clexp/models/__init__.py)")
            self._features = FeatureRecorder()
            model.features.register_forward_hook(self._features)
        self._frozen_norms: list[nn.Module] = []
        # objects that append samples to each training batch before its forward (experience replay: the
        # runner registers the method callbacks with a `replay_batch(module, x, y, t) -> (x, y, t)`)
        self.batch_sources: list = []
        # `train.lr_decay` (Stable SGD): experience i trains at lr·decay^i (set by the runner; 1 = no decay)
        self.lr_decay = 1.0
        # the gradient-constraint methods' callbacks (gpm, ogd, agem; each registers itself at its fit's start):
        # `constrain_gradient(module, optimizer)` after the backward and before clipping, `constrain_step(module)`
        # after the optimizer's step (clexp/methods/projection.py)
        self.gradient_constraints: list = []
        # a constraint that must hold after every optimizer step (PackNet: frozen weights put back)
        self._after_step = getattr(regularizer, "after_optimizer_step", None)
        # a method that evaluates each experience with its own view of the model (PackNet's per-experience masks)
        self._evaluation_context = getattr(regularizer, "evaluation_context", None)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """Masked logits (task-IL) or plain logits. In eval mode, a regularizer with an `evaluation_context(module,
        task)` (PackNet) evaluates each task id's inputs inside its context (`per_experience_forward`)."""
        if t is None:
            t = torch.full((len(x),), int(self.experience), dtype=torch.long, device=x.device)
        if self._evaluation_context is not None and not self.training:
            return per_experience_forward(self, x, t, self._evaluation_context)
        return self.mask(self.model(x, t), t)

    def mask(self, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Logits with the outputs no sample may predict at -inf: outside its experience's (task-IL masks),
        or outside the classes seen so far (`scenario.outputs=seen`)."""
        logits = mask_logits(logits, self.task_masks, t)
        if self.seen_masks is not None:
            logits = logits.masked_fill(~self.seen_masks[self.experience], float("-inf"))
        return logits

    def output_mask(self, experience: int) -> torch.Tensor | None:
        """The outputs experience `experience` may predict, or None when all are allowed."""
        if self.task_masks is not None:
            return self.task_masks[experience]
        return None if self.seen_masks is None else self.seen_masks[experience]

    def training_step(self, batch, batch_idx):
        x, y, t = batch
        for source in self.batch_sources:  # replayed samples join the batch (and its augmentation)
            x, y, t = source.replay_batch(self, x, y, t)
        if self.augment is not None:  # training batches only: evaluation and importance estimation never get here
            x = self.augment(x, self._stream_step(), self.global_rank)
        optimizer = self.optimizers()
        recorder = self._features
        if recorder is not None:
            recorder.armed = True
            raw = self.model(x, t)
            recorder.armed, features, recorder.output = False, recorder.output, None
        else:
            raw = self.model(x, t)
        loss = F.cross_entropy(self.mask(raw, t), y)
        log_now, reg = self._log_now(), self.regularizer
        if reg is None:
            penalty = None
        elif reg.analytic_gradient:  # its gradient is added after the backward; its value when logged, and on
            # each experience's first step, so that a penalty that is not finite from the start is named as such
            first = self._trainer is None or self._trainer.global_step == 0
            penalty = reg.value(self.model) if log_now or first else None
        elif recorder is not None:
            penalty = reg(self.model, x, t, raw, features=features)
        else:
            penalty = reg(self.model, x, t, raw)
        terms = {"loss": loss.detach()}
        if penalty is not None:
            terms["penalty"] = penalty.detach()
        self.__dict__["last_terms"] = terms  # a plain attribute: nn.Module's __setattr__ is slow
        if log_now:
            self.log("train/loss", loss, prog_bar=True)
            if penalty is not None:
                self.log("train/penalty", penalty, prog_bar=True)
        total = loss if penalty is None or reg.analytic_gradient else loss + penalty
        optimizer.zero_grad()
        self.manual_backward(total)
        constraints = self.gradient_constraints
        for constraint in constraints:  # projected before clipping: the clipped norm is the projected gradient's
            constraint.constrain_gradient(self, optimizer)
        if self.gradient_clip_val:
            self.clip_gradients(optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")
        optimizer.step()
        for constraint in constraints:  # the step's own change of the protected weights projected (GPM, OGD)
            constraint.constrain_step(self)
        if self._after_step is not None:
            self._after_step(self.model)
        return total.detach()

    def on_after_backward(self) -> None:
        """Runs after the callbacks' `on_after_backward` (which see the task loss's gradient alone).
        Under mixed precision the gradients are still scaled here: the penalty's is scaled alike."""
        if self.regularizer is not None and self.regularizer.analytic_gradient:
            self.regularizer.add_gradient(self.model, loss_scale(self._trainer, self.device))

    def norm_stats_frozen(self) -> bool:
        """True when the normalisation statistics must not move now: `model.freeze_norm_stats` and
        experience > 0 (derived from the checkpointed experience index, never a flag of its own)."""
        # from experience 1 on; pretrained weights set `freeze_norm_stats_from = 0` (keep their statistics at once)
        return bool(getattr(self.model, "freeze_norm_stats", False)) and \
            int(self.experience) >= int(getattr(self.model, "freeze_norm_stats_from", 1))

    def on_train_start(self) -> None:
        """Decide once per experience (one host read of `experience`) which layers stay in eval mode, and
        warn when the consolidated penalty is stiffer than the optimizer's steps allow."""
        self._frozen_norms = norm_layers_with_statistics(self.model) if self.norm_stats_frozen() else []
        self._freeze_norms()
        self._check_stiffness()

    def _check_stiffness(self) -> None:
        from clexp.optim.stability import instability

        strength = getattr(self.regularizer, "strength", None)
        if strength is None or not self.trainer.optimizers or not self.trainer.is_global_zero:
            return
        message = instability(self.regularizer.max_curvature(), self.trainer.optimizers[0],
                              f"method.{self.strength_key}" if self.strength_key else "the strength",
                              float(strength))
        if message:
            log.warning("experience %d: %s", int(self.experience), message)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self._freeze_norms()  # again at every step: a callback may have put the whole model back in train mode

    def on_train_end(self) -> None:
        self._frozen_norms = []

    def _freeze_norms(self) -> None:
        for m in self._frozen_norms:
            m.training = False  # a normalisation layer has no children: no recursive eval()

    def _stream_step(self) -> int:
        """Optimizer steps of the whole stream before this one (continuous across experiences, and as
        a resumed run restores it): what the augmentations' random parameters are drawn from."""
        trainer = self._trainer
        if trainer is None:
            self._augment_steps += 1
            return self._augment_steps - 1
        return stream_steps(trainer)

    def _log_now(self) -> bool:
        """Log (and refresh the bar's numbers) every `log_every_n_steps` steps only: `self.log` costs
        more than a small model's step."""
        trainer = self._trainer
        if trainer is None:
            return True
        every = max(1, trainer.log_every_n_steps)
        # the stream's step count (continuous across experiences), as Lightning decides when to write the
        # logged values: then train/loss reaches the logger every `every` steps in every experience
        # (Lightning's `should_update_logs`: the step count before this step, plus one)
        step = stream_steps(trainer) + 1
        return step % every == 0 or trainer.is_last_batch

    def configure_optimizers(self):
        from clexp.models.freeze import trainable_parameters

        optimizer = self.optimizer_factory(list(trainable_parameters(self.model).values()))  # frozen: no state
        if self.lr_decay != 1.0:  # Stable SGD's per-experience decay: lr_i = lr·decay^i
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * self.lr_decay ** int(self.experience)
        return optimizer


def per_experience_forward(module: ContinualModule, x: torch.Tensor, t: torch.Tensor, context) -> torch.Tensor:
    """`module`'s masked logits with each task id's inputs evaluated inside `context(module, task)`."""
    ids = torch.unique(t).tolist()
    if len(ids) == 1:
        with context(module, int(ids[0])):
            return module.mask(module.model(x, t), t)
    out = None
    for task in ids:
        keep = t == task
        with context(module, int(task)):
            logits = module.mask(module.model(x[keep], t[keep]), t[keep])
        if out is None:
            out = logits.new_empty((len(x), logits.shape[1]))
        out[keep] = logits
    return out
