"""Per-step training cost of several configurations, measured side by side inside clexp's real loop.

The machines these run on are shared and their speed drifts by tens of percent within seconds, so
each configuration trains in short blocks that take turns (round 1: A, B, C; round 2: A, B, C; …).
A block's step time is the median interval between consecutive training batches (forward,
backward, penalty, optimizer step, every callback's per-step work, Lightning's loop), and a ratio
is taken within each round, then the median over rounds: drift hits both sides of a ratio alike.
"""

from __future__ import annotations

import copy
import statistics
import tempfile
import time

import pytorch_lightning as pl
from omegaconf import open_dict

MLP_OVERRIDES = ("dataset._target_=bench.common.load_bench_data", "model.hidden=[400,400]",
                 "scenario.n_experiences=2", "train.batch_size=128", "logger=none",
                 "trainer.enable_progress_bar=false", "plots=false")


class StepClock(pl.Callback):
    """Intervals between consecutive training batches of a fit (the first `skip` are warm-up)."""

    def __init__(self, skip: int = 2):
        self.skip, self.intervals, self.last = skip, [], None

    def on_train_start(self, trainer, pl_module):
        self.intervals, self.last = [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self.last is not None:
            self.intervals.append(now - self.last)
        self.last = now

    def median(self) -> float:
        kept = self.intervals[self.skip:] or self.intervals
        return statistics.median(kept)


class Case:
    """One configuration: a 2-experience stream whose first experience is trained once; `block`
    then trains the second experience (its regularization active) for a few steps, each block from
    the same state (weights and penalty buffers as they were after the first experience)."""

    def __init__(self, overrides: list[str], device: str, first_epochs: int = 1, base: tuple = MLP_OVERRIDES):
        from hydra import compose, initialize_config_dir

        from clexp.core.runner import StreamRunner
        from clexp.train import CONF_DIR

        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*base, f"trainer.accelerator={device}",
                                               f"train.epochs={first_epochs}", *overrides])
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = StepClock()
        self.runner = StreamRunner(cfg, self.tmp.name, extra_callbacks=[self.clock])
        self.runner.run_experience(0)
        self.state = copy.deepcopy(self.runner.module.state_dict())

    def block(self, steps: int) -> float:
        """Median seconds per step over `steps` steps of experience 1."""
        with open_dict(self.runner.cfg):
            self.runner.cfg.train.iterations = steps
        self.runner.module.load_state_dict(self.state)
        self.runner.run_experience(1)
        return self.clock.median()

    def close(self):
        self.tmp.cleanup()


def interleaved_ratios(cases: dict[str, list[str]], reference: str, device: str, steps: int,
                       rounds: int, base: tuple = MLP_OVERRIDES) -> tuple[dict[str, float], dict[str, float]]:
    """({case: median over rounds of its step time / the reference's in the same round},
    {case: median step seconds}), the cases' blocks interleaved round by round; `base`: the overrides
    every case starts from (default: the MLP on MNIST-like data)."""
    built = {name: Case(overrides, device, base=base) for name, overrides in cases.items()}
    try:
        for case in built.values():  # warm-up block: allocator, lazy imports, first Trainer
            case.block(max(4, steps // 4))
        times = {name: [] for name in built}
        for _ in range(rounds):
            for name, case in built.items():
                times[name].append(case.block(steps))
    finally:
        for case in built.values():
            case.close()
    ratios = {name: statistics.median(t / r for t, r in zip(times[name], times[reference])) for name in built}
    return ratios, {name: statistics.median(t) for name, t in times.items()}
