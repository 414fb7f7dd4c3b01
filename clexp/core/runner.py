"""The stream loop: for each experience, a fresh Trainer fits the module on its data; at the end the
callbacks evaluate (accuracy matrix) and consolidate (the method's callbacks), and a stream
checkpoint is saved. What is built from the config comes from `clexp.core.build.components`; what is
written at the end from `clexp.core.results.collect`.

Streams without boundary events:
- blurry (`scenario.boundaries=blurry`): the training data of neighbouring experiences mix near each
  boundary (`clexp.data.stream.blur_boundaries`, after the validation split is carved) and each experience
  trains in that fixed order (no reshuffling: the position of a sample is what the blur is about);
- task-free (`scenario.task_free=true`): one continuous run of `train.iterations` optimizer steps over
  the whole stream, the experiences in order, each its share of the steps in proportion to its
  training data (`task_free_steps`). The experiences are still fitted one after the other — so the
  accuracy matrix is still evaluated at the original experience ends (and anytime evaluation every N
  steps where it is on) — but nothing else happens there: the module's `task_free` flag tells the
  method callbacks that there is no boundary (they consolidate every `method.consolidate_every`
  steps), and the optimizer's state carries over from one fit to the next (saved in the stream
  checkpoints, like the method callbacks' running sums: a resumed run is bit for bit the same).
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_only

from clexp.core import checkpoint, shard_record
from clexp.core.build import Components, build_model, components, load_stream
from clexp.core.callbacks import AccuracyMatrix
from clexp.core.callbacks.anytime import AnytimeEvaluation
from clexp.core.callbacks.compute import ComputeAccounting, forward_flops_per_sample
from clexp.core.callbacks.stream_checkpoint import StreamCheckpoint
from clexp.core.console import say
from clexp.core.module import ContinualModule
from clexp.core.naming import strength_key
from clexp.core.results import collect, finish_outputs
from clexp.core.step_count import set_stream_steps
from clexp.data.augment import build_augment
from clexp.data.images import cat_inputs, first_input, is_lazy
from clexp.data.loader import StreamingLoader, TensorLoader
from clexp.data.stream import blur_boundaries, carve_validation

log = logging.getLogger(__name__)


class StreamRunner:
    """Owns the objects that live for the whole stream: module, callbacks, logger, timings."""

    def __init__(self, cfg: DictConfig, run_dir: Path, group: str | None = None, resume: dict | None = None,
                 extra_callbacks: list[pl.Callback] = (), parts: Components | None = None):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        parts = parts if parts is not None else components(cfg)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.stream = carve_validation(load_stream(cfg, parts.scenario), cfg.train.get("val_fraction") or 0,
                                       int(cfg.seed))
        self.augment = build_augment(cfg, self.stream)  # dataset.augment, checked against the data
        self.blurry = getattr(parts.scenario, "boundaries", "sharp") == "blurry"
        if self.blurry:
            blur_boundaries(self.stream, parts.scenario.blur, int(cfg.seed))
        self.task_free = bool(getattr(parts.scenario, "task_free", False))
        self.task_free_steps = task_free_steps(cfg.train.iterations, [len(e.y_train) for e in self.stream]) \
            if self.task_free else None
        self.optimizer_state: list[dict] | None = None  # the optimizer carried from fit to fit (if it is)
        # task-free streams, and `train.reset_optimizer=false`: the next experience goes on with the optimizer's state
        self.carry_optimizer = self.task_free or not cfg.train.get("reset_optimizer", True)
        self.model = build_model(cfg, self.stream)
        if callable(getattr(self.model, "prepare_inputs", None)):  # pretrained backbones: resize and normalise
            from clexp.models.pretrained import preparation_device, prepare_stream  # (and the feature cache), once

            prepare_stream(self.stream, self.model, preparation_device(cfg.trainer))
        seen = self.stream.seen_masks if getattr(parts.scenario, "outputs", "all") == "seen" else None
        self.module = ContinualModule(self.model, parts.optimizer, parts.regularizer, self.stream.task_masks,
                                      gradient_clip_val=cfg.trainer.get("gradient_clip_val"), augment=self.augment,
                                      seen_masks=seen, strength_key=strength_key(cfg.method))
        self.module.n_experiences = len(self.stream)
        self.module.task_free = self.task_free  # the method callbacks: no boundary events
        self.module.online_importance = bool(cfg.train.get("online", False))  # importances from the batches
        self.module.lr_decay = float(cfg.train.get("lr_decay", 1.0) or 1.0)  # Stable SGD: lr·decay^i in experience i
        self.method_callbacks = list(parts.method_callbacks)
        # experience replay: the callbacks that append replayed samples to each training batch
        self.module.batch_sources = [cb for cb in self.method_callbacks if hasattr(cb, "replay_batch")]
        check_stream = getattr(parts.regularizer, "check_stream", None)  # PackNet: room for every experience?
        if check_stream is not None:
            check_stream(self.model, len(self.stream))
        self.accuracy = AccuracyMatrix(self.stream, cfg.train.eval_batch_size)
        every = (cfg.get("eval") or {}).get("every_n_steps")  # anytime evaluation: off (absent) unless set
        self.anytime = AnytimeEvaluation(self.stream, every, cfg.eval.get("anytime_samples", 256), int(cfg.seed),
                                         cfg.train.eval_batch_size) if every else None
        self.compute = ComputeAccounting(parts.method_callbacks)
        tags = [cfg.method.name, cfg.scenario.name, cfg.scenario.incremental, cfg.dataset.name]
        wandb_id = resume.get("wandb_id") if resume else None
        # `group=`, then `logger.group`, then the sweep's default (its date-time and a hash of its overrides)
        group = cfg.get("group") or cfg.logger.get("group") or group
        self.logger = parts.logging(self.run_dir, str(cfg.name), tags, group, OmegaConf.to_container(cfg, resolve=True),
                                    wandb_id)
        self.checkpoints = StreamCheckpoint(checkpoint.last_checkpoint(self.run_dir), self.state,
                                            cfg.trainer.get("checkpoint_every_n_steps"))
        infrastructure = parts.callbacks
        if not cfg.trainer.get("enable_progress_bar", True):
            infrastructure = [c for c in infrastructure if not isinstance(c, ProgressBar)]
        # anytime before the checkpoints: a checkpoint at step s holds the evaluation of step s
        # a method whose experience end changes the model that is evaluated (PackNet prunes and retrains) ends
        # before the accuracy matrix's row; the others after it
        first = [cb for cb in parts.method_callbacks if getattr(cb, "before_evaluation", False)]
        rest = [cb for cb in parts.method_callbacks if cb not in first]
        self.callbacks = [*first, self.accuracy, *([self.anytime] if self.anytime else []), *rest,
                          self.compute, self.checkpoints, *infrastructure, *extra_callbacks]
        self.make_trainer = parts.trainer
        self.train_seconds: list[float] = []
        self.steps = 0  # optimizer steps over the whole stream (the loggers' x axis)
        self.start_experience = 0
        self.resume_point: dict | None = None
        self.is_global_zero = True
        if resume is not None:
            self.restore(resume)

    # -- the pieces of one experience -------------------------------------------------------
    def trainer(self, i: int, done_epochs: int = 0, done_steps: int = 0) -> pl.Trainer:
        """A fresh Trainer for experience i (minus the epochs/steps a resumed run already did)."""
        epochs, iterations = self.cfg.train.epochs, self.cfg.train.iterations
        if self.task_free:
            iterations = self.task_free_steps[i]
        return self.make_trainer(
            max_epochs=-1 if iterations is not None else epochs - done_epochs,
            max_steps=iterations - done_steps if iterations is not None else -1,
            callbacks=self.callbacks,
            logger=self.logger if self.logger is not None else False,
            enable_model_summary=False,  # one line instead (`describe_model`), printed once
            # clexp's progress callback or none: never Lightning's own `Training: 0/?` bar in its place
            enable_progress_bar=any(isinstance(c, ProgressBar) for c in self.callbacks),
            default_root_dir=str(self.run_dir),
        )

    def loader(self, i: int, trainer: pl.Trainer) -> TensorLoader:
        """Experience i's training data (0..i for joint), this rank's shard: tensors on the training
        device, or files decoded by worker processes (the same batches in the same order)."""
        seen = self.stream.experiences[: i + 1] if self.cfg.method.get("joint") else [self.stream[i]]
        x = cat_inputs([e.x_train for e in seen])
        y, t = (torch.cat(parts) for parts in zip(*[(e.y_train, e.t_train) for e in seen]))
        # a blurry stream trains in its fixed order (clexp.data.stream.blur_boundaries)
        order = dict(batch_size=self.cfg.train.batch_size, shuffle=not self.blurry, seed=self.cfg.seed * 1000 + i,
                     rank=trainer.global_rank, world_size=trainer.world_size)
        loader = StreamingLoader(x, (y, t), **order) if is_lazy(x) else TensorLoader((x, y, t), **order)
        return loader.to(trainer.strategy.root_device)

    def prepare(self, i: int) -> None:
        """Point the module (and multi-head model) at experience i."""
        self.module.experience.fill_(i)
        self.module.current_experience = self.stream[i]
        self.model.active_task = i

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> dict:
        start = time.perf_counter()
        quiet_lightning()
        announce(self.cfg, len(self.stream), self.run_dir)
        describe_model(self.model)
        first = self.stream[0]
        flops = forward_flops_per_sample(self.module, first_input(first.x_test), first.t_test)
        for i in range(self.start_experience, len(self.stream)):
            self.run_experience(i)
        results = collect(self.cfg, self.accuracy, self.train_seconds, time.perf_counter() - start,
                          len(self.stream), self.run_dir)
        results["task_aware_acc_matrix"] = self.accuracy.task_aware_rows  # class-IL only, else null
        results["compute"] = {
            "forward_flops_per_sample": flops,
            "optimizer_steps": self.compute.steps,
            "training_samples": self.compute.samples,
            # the fit's seconds minus evaluation (accuracy matrix, anytime) and importance estimation
            "training_s": [max(0.0, f - e - m - a) for f, e, m, a in
                           zip(self.train_seconds, self.accuracy.eval_seconds, self.compute.importance_s,
                               self.anytime.seconds if self.anytime else [0.0] * len(self.train_seconds))],
            "importance_s": self.compute.importance_s,
        }
        results["anytime"] = self.anytime.results() if self.anytime else None
        results["method_state"] = None  # what a constraint method's memory holds (gpm, ogd, agem)
        for cb in self.method_callbacks:  # what a method reports of itself (method_state, ER's memory, PackNet)
            if callable(getattr(cb, "report", None)):
                results.update(cb.report(self.module))
        if self.is_global_zero:
            finish_outputs(results, self.cfg, self.accuracy, self.run_dir, self.logger)
            if self.anytime and self.cfg.get("plots", True):
                self.anytime.plot(self.run_dir / "anytime.png", f"{self.cfg.name}: anytime evaluation")
        return results

    def run_experience(self, i: int) -> None:
        self.prepare(i)
        point, self.resume_point = self.resume_point, None  # a mid-experience checkpoint, once
        done_epochs = point["epoch"] if point else 0
        done_steps = point["step"] if point else 0
        trainer = self.trainer(i, done_epochs, done_steps)
        loader = self.loader(i, trainer)
        shard_record.start(loader)  # CLEXP_RECORD_SHARDS: what this rank trains on (debugging DDP)
        self.checkpoints.begin(loader, i, self.steps, point, self.optimizer_state if self.carry_optimizer else None)
        self.compute.begin(point is not None)
        if self.anytime:
            self.anytime.begin(i, self.steps, done_steps)
        self.module.resumed_mid_experience = point is not None
        set_stream_steps(trainer, self.steps + done_steps)  # continuous x axis
        if i == 0 and not point and self.logger is not None and trainer.is_global_zero:
            from clexp.core.loggers import define_wandb_steps

            define_wandb_steps(self.logger)
        if point:
            loader.load_state_dict(point["loader"])
            torch.set_rng_state(point["torch_rng"])
        t0 = time.perf_counter() - (point["seconds"] if point else 0.0)
        try:
            trainer.fit(self.module, train_dataloaders=loader)
        finally:
            getattr(loader, "close", lambda: None)()  # the streaming loader's worker processes
        self.module.resumed_mid_experience = False
        shard_record.write(loader, getattr(loader, "inputs", loader.tensors[0]), i, trainer.global_rank,
                           trainer.world_size, self.module)
        self.train_seconds[i:] = [time.perf_counter() - t0]
        if self.carry_optimizer:  # the next experience goes on with this optimizer's state
            self.optimizer_state = [opt.state_dict() for opt in trainer.optimizers]
        self.compute.end(i, done_steps + trainer.global_step)
        self.steps += done_steps + trainer.global_step
        self.is_global_zero = trainer.is_global_zero
        if trainer.is_global_zero:
            self.checkpoints.save_boundary(i)
            say(accuracy_row(i, len(self.stream), self.accuracy))

    # -- checkpoints ------------------------------------------------------------------------
    def state(self, i: int, finished: bool) -> dict:
        """Everything that crosses experiences (weights, penalty buffers, SI sums, R, RNG)."""
        return {
            "experience": i,
            "finished": finished,
            "steps": self.steps,
            "module": self.module.state_dict(),
            "accuracy": self.accuracy.state_dict(),
            "anytime": self.anytime.state_dict() if self.anytime else None,
            "compute": self.compute.state_dict(),
            "train_seconds": list(self.train_seconds),
            "torch_rng": torch.get_rng_state(),
            "wandb_id": getattr(self.logger, "version", None) if self.logger is not None else None,
            # the method callbacks' own running state (batch sums of a task-free stream, ...)
            "method_callbacks": [cb.stream_state() if hasattr(cb, "stream_state") else None
                                 for cb in self.method_callbacks],
            "optimizers": self.optimizer_state,  # task-free, reset_optimizer=false: carried over the experience ends
        }

    def restore(self, state: dict) -> None:
        """Continue from a stream checkpoint: after a finished experience, or in the middle of one."""
        self.module.load_state_dict(state["module"])
        self.accuracy.load_state_dict(state["accuracy"])
        if self.anytime and state.get("anytime"):
            self.anytime.load_state_dict(state["anytime"])
        if state.get("compute"):
            self.compute.load_state_dict(state["compute"])
        self.train_seconds = list(state["train_seconds"])
        self.steps = int(state["steps"])
        for cb, saved in zip(self.method_callbacks, state.get("method_callbacks") or []):
            if saved is not None and hasattr(cb, "load_stream_state"):
                cb.load_stream_state(saved)
        self.optimizer_state = state.get("optimizers")
        if state["finished"]:
            self.start_experience = int(state["experience"]) + 1
            torch.set_rng_state(state["torch_rng"])
        else:
            self.start_experience = int(state["experience"])
            self.resume_point = state["point"] | {"torch_rng": state["torch_rng"]}


def task_free_steps(iterations: int, sizes: list[int]) -> list[int]:
    """Each experience's share of a task-free stream's `iterations` optimizer steps, in proportion to
    its training data: experience i ends at step round(iterations · (n_0 + … + n_i) / N)."""
    total, ends, seen = sum(sizes), [], 0
    for n in sizes:
        seen += n
        ends.append(round(iterations * seen / total))
    steps = [b - a for a, b in zip([0, *ends[:-1]], ends)]
    if min(steps) < 1:
        from clexp.config.errors import ConfigError

        raise ConfigError("train.iterations", iterations, f"enough steps for every experience of the task-free "
                          f"stream to get one (its shares: {steps})")
    return steps


@rank_zero_only
def announce(cfg: DictConfig, n_experiences: int, run_dir: Path) -> None:
    """The story's first line: what runs, into which folder (a resumed run: where it goes on, just before)."""
    say(f"start {cfg.name}: {n_experiences} experiences, seed {cfg.seed}; run folder {run_dir}")


@rank_zero_only
def describe_model(model: torch.nn.Module) -> None:
    from clexp.models.freeze import count

    total, trainable = count(model)
    what = getattr(model, "description", "") or type(model).__name__
    say(f"model: {what}, {total:,} parameters ({trainable:,} trainable)")


def accuracy_row(i: int, n: int, accuracy: AccuracyMatrix) -> str:
    """Row i of the accuracy matrix as one line (%; numbered as the final table, `after 0` the first), with
    the mean over the experiences seen so far, and the same on the validation splits."""
    def line(row: list[float]) -> str:
        return f"{' '.join(f'{100 * a:.1f}' for a in row)} (seen {100 * sum(row[:i + 1]) / (i + 1):.1f})"

    text = f"after {i} ({i + 1}/{n} experiences): test % {line(accuracy.rows[i])}"
    if accuracy.val_rows:
        text += f"; validation % {line(accuracy.val_rows[i])}"
    return text


def quiet_lightning() -> None:
    """After the first Trainer, Lightning's per-Trainer banners (GPU available, ...) are noise, and
    some warnings do not apply to tensor-resident loaders."""
    # "modules in eval mode": frozen layers (a pretrained backbone, LwF's teacher, frozen BatchNorm) are meant
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*anonymous setting.*",
                    ".*does not have many workers.*", ".*module\\(s\\) in eval mode.*"):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
