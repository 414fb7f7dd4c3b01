"""The continual-learning loop: build everything from the config, train each experience, evaluate,
checkpoint, and write `results.json`."""

from __future__ import annotations

import logging
import platform
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from clexp import checkpoint
from clexp.build import build
from clexp.callbacks import AccuracyMatrix, ExperienceProgressBar
from clexp.callbacks.finite_guard import FiniteGuard
from clexp.callbacks.stream_checkpoint import StreamCheckpoint
from clexp.loader import TensorLoader
from clexp.loggers import build_logger, define_wandb_steps
from clexp.module import ContinualModule
from clexp.plots import run_figures
from clexp.results import write_results
from clexp.stream import Stream, build_stream

log = logging.getLogger(__name__)

TRAINER_KEYS = (
    "accelerator", "devices", "num_nodes", "strategy", "precision",
    "log_every_n_steps", "enable_progress_bar", "deterministic",
)


def load_data(cfg: DictConfig):
    """The dataset source named by `cfg.dataset` (a `SourceData`)."""
    return build(cfg.dataset)


def build_model(cfg: DictConfig, stream: Stream) -> torch.nn.Module:
    heads = len(stream) if stream.multihead else 1
    return build(cfg.model, input_shape=stream.input_shape, n_outputs=stream.n_outputs, n_heads=heads)


class StreamRunner:
    """Owns the objects that live for the whole stream: module, callbacks, logger, timings."""

    def __init__(self, cfg: DictConfig, run_dir: Path, group: str | None = None, resume: dict | None = None,
                 extra_callbacks: list[pl.Callback] = ()):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.group = group
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        self.stream = build_stream(load_data(cfg), cfg.scenario, bool(cfg.model.get("multihead")), cfg.seed)
        self.model = build_model(cfg, self.stream)
        regularizer = build(cfg.method.regularizer)
        self.module = ContinualModule(self.model, build(cfg.optimizer), regularizer, self.stream.task_masks,
                                      gradient_clip_val=cfg.trainer.get("gradient_clip_val"))
        self.accuracy = AccuracyMatrix(self.stream, cfg.train.eval_batch_size)
        self.method_callbacks = [build(node) for node in (cfg.method.get("callbacks") or {}).values()]
        # an optimizer may need a callback of its own (NGD: the Fisher of each batch)
        self.extra_callbacks_optimizer = [build(cfg.optimizer.callback)] if cfg.optimizer.get("callback") else []
        self.progress = ExperienceProgressBar(len(self.stream)) if cfg.trainer.enable_progress_bar else None
        tags = [cfg.method.name, cfg.scenario.name, cfg.scenario.incremental, cfg.dataset.name]
        wandb_id = resume.get("wandb_id") if resume else None
        self.logger = build_logger(cfg, self.run_dir, tags, group, wandb_id)
        self.extra_callbacks = list(extra_callbacks)  # e.g. a benchmark's timer; run after clexp's own
        self.guard = FiniteGuard()
        self.stream_checkpoint = StreamCheckpoint(self, cfg.trainer.get("checkpoint_every_n_steps"))
        self.train_seconds: list[float] = []
        self.steps = 0  # optimizer steps over the whole stream (the loggers' x axis)
        self.start_experience = 0
        self.resume_point: dict | None = None
        if resume is not None:
            self.restore(resume)

    # -- the pieces of one experience -------------------------------------------------------
    @property
    def callbacks(self) -> list[pl.Callback]:
        cbs = [self.accuracy, self.guard]
        cbs += self.method_callbacks
        cbs.append(self.stream_checkpoint)
        if self.progress is not None:
            cbs.append(self.progress)
        return cbs + self.extra_callbacks_optimizer + self.extra_callbacks

    def trainer(self, i: int, done_epochs: int = 0, done_steps: int = 0) -> pl.Trainer:
        """A fresh Trainer for experience i (minus the epochs/steps a resumed run already did)."""
        t = self.cfg.trainer
        epochs, iterations = self.cfg.train.epochs, self.cfg.train.iterations
        return pl.Trainer(
            **{k: t[k] for k in TRAINER_KEYS if k in t},
            max_epochs=-1 if iterations is not None else epochs - done_epochs,
            max_steps=iterations - done_steps if iterations is not None else -1,
            callbacks=self.callbacks,
            logger=self.logger if self.logger is not None else False,
            enable_checkpointing=False,
            enable_model_summary=i == self.start_experience and not done_steps,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            use_distributed_sampler=False,
            default_root_dir=str(self.run_dir),
        )

    def loader(self, i: int, trainer: pl.Trainer) -> TensorLoader:
        """Experience i's training data (0..i for joint), on the training device, this rank's shard."""
        seen = self.stream.experiences[: i + 1] if self.cfg.method.get("joint") else [self.stream[i]]
        tensors = tuple(torch.cat(parts) for parts in zip(*[(e.x_train, e.y_train, e.t_train) for e in seen]))
        loader = TensorLoader(
            tensors, self.cfg.train.batch_size, shuffle=True, seed=self.cfg.seed * 1000 + i,
            rank=trainer.global_rank, world_size=trainer.world_size,
        )
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
        for i in range(self.start_experience, len(self.stream)):
            self.run_experience(i)
        return self.finish(time.perf_counter() - start)

    def run_experience(self, i: int) -> None:
        self.prepare(i)
        point, self.resume_point = self.resume_point, None  # a mid-experience checkpoint, once
        done_epochs = point["epoch"] if point else 0
        done_steps = point["step"] if point else 0
        trainer = self.trainer(i, done_epochs, done_steps)
        loader = self.loader(i, trainer)
        self.stream_checkpoint.begin(trainer, loader, i, done_steps, point)
        self.module.resumed_mid_experience = point is not None
        trainer.fit_loop.epoch_loop._batches_that_stepped = self.steps + done_steps  # continuous x axis
        if i == 0 and not point and self.logger is not None and trainer.is_global_zero:
            define_wandb_steps(self.logger)
        if point:
            loader.load_state_dict(point["loader"])
            torch.set_rng_state(point["torch_rng"])
        t0 = time.perf_counter() - (point["seconds"] if point else 0.0)
        trainer.fit(self.module, train_dataloaders=loader)
        self.module.resumed_mid_experience = False
        self.train_seconds[i:] = [time.perf_counter() - t0]
        self.steps += done_steps + trainer.global_step
        self.is_global_zero = trainer.is_global_zero
        if trainer.is_global_zero:
            self.save_checkpoint(i)

    # -- checkpoints ------------------------------------------------------------------------
    def state(self, i: int, finished: bool) -> dict:
        """Everything that crosses experiences (weights, penalty buffers, SI sums, R, RNG)."""
        return {
            "experience": i,
            "finished": finished,
            "steps": self.steps,
            "module": self.module.state_dict(),
            "accuracy": self.accuracy.state_dict(),
            "train_seconds": list(self.train_seconds),
            "torch_rng": torch.get_rng_state(),
            "wandb_id": getattr(self.logger, "version", None) if self.logger is not None else None,
        }

    def save_checkpoint(self, i: int) -> None:
        """After experience i (atomic: a kill never leaves a torn file)."""
        checkpoint.save_atomic(self.state(i, finished=True), checkpoint.last_checkpoint(self.run_dir))

    def restore(self, state: dict) -> None:
        """Continue from a stream checkpoint: after a finished experience, or in the middle of one."""
        self.module.load_state_dict(state["module"])
        self.accuracy.load_state_dict(state["accuracy"])
        self.train_seconds = list(state["train_seconds"])
        self.steps = int(state["steps"])
        if state["finished"]:
            self.start_experience = int(state["experience"]) + 1
            torch.set_rng_state(state["torch_rng"])
        else:
            self.start_experience = int(state["experience"])
            self.resume_point = state["point"] | {"torch_rng": state["torch_rng"]}

    def finish(self, total_seconds: float) -> dict:
        summary = self.accuracy.summary
        results = {
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "seed": int(self.cfg.seed),
            "status": "completed",
            "acc_matrix": self.accuracy.rows,
            "baseline_acc": self.accuracy.baseline,
            "metrics": summary,
            "timings": {
                "train_s": self.train_seconds,
                "eval_s": self.accuracy.eval_seconds,
                "total_s": total_seconds,
            },
            "versions": versions(),
            "n_experiences": len(self.stream),
            "run_dir": str(self.run_dir),
        }
        if getattr(self, "is_global_zero", True):
            write_results(results, self.run_dir)
            if self.accuracy.rows and self.cfg.get("plots", True):
                run_figures(self.accuracy.rows, self.run_dir, str(self.cfg.name), self.logger)
            if self.logger is not None and hasattr(self.logger, "experiment"):
                finish_wandb(self.logger, summary)
        return results


def quiet_lightning() -> None:
    """After the first Trainer, Lightning's per-Trainer banners (GPU available, ...) are noise, and
    some warnings do not apply to tensor-resident loaders."""
    for pattern in (".*LeafSpec.*", ".*smaller than the logging interval.*", ".*anonymous setting.*",
                    ".*does not have many workers.*"):
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "pytorch_lightning.accelerators.cuda", "lightning.pytorch.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def finish_wandb(logger, summary: dict) -> None:
    from pytorch_lightning.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        run = logger.experiment
        run.summary.update({f"final/{k}": v for k, v in summary.items() if v is not None})
        run.finish()


def versions() -> dict[str, str]:
    import hydra

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "hydra": hydra.__version__,
    }
