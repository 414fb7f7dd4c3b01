"""EWC++'s online Fisher: its cost per training step, averaged over an experience, against a naive step
(target ≤ 1.2× at `update_every=10`), for the MLP (784-400-400-10, batch 128) and the CNN of
conf/model/cnn.yaml (batch 128), inside clexp's real training loop. Three configurations: naive,
ewcpp, and the same ewcpp without Fisher updates (the quadratic penalty's analytic gradient only, the
cost EWC's steps pay too, bench/bench_penalty.py). Rows: the updates' own cost, 1 + (ewcpp − ewcpp
without updates) / naive; the whole ewcpp step / naive; the penalty-only step / naive.

Averaged, not a median of step times: the Fisher update runs on one step in ten, and a median of
intervals would leave it out. Each block trains experience 1 of a two-experience stream for a multiple
of `update_every` steps (the penalty active) and is timed from the start of its first measured batch to
the start of the batch after its last: every step's work, the updates included, in their 1-in-10
share. The machines are shared and their speed drifts, so the configurations train in alternating
rounds (naive, ewcpp, naive, ewcpp, ...), the ratio is taken within each round and the median over
rounds reported. One thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)) unless --threads is given.

    python -m bench.bench_ewcpp [--tiny] [--rounds N] [--steps N]
"""

from __future__ import annotations

import copy
import os
import statistics
import tempfile
import time

import pytorch_lightning as pl
from omegaconf import open_dict

from bench.common import format_table, row
from bench.steps import MLP_OVERRIDES

TARGET = 1.2
MODELS = {
    "MLP": [],
    "CNN": ["model=cnn", "model.hidden=[128]"],  # conf/model/cnn.yaml's own widths (MLP_OVERRIDES set the MLP's)
}


class MeanClock(pl.Callback):
    """Seconds per step from the start of batch `skip` to the start of batch `skip + steps` (or the end
    of the fit): `steps` whole steps, whatever each of them did."""

    def __init__(self, skip: int, steps: int):
        self.skip, self.steps = skip, steps

    def on_train_start(self, trainer, pl_module):
        self.t0 = self.t1 = None
        self.seen = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self.seen == self.skip:
            self.t0 = now
        elif self.seen == self.skip + self.steps:
            self.t1 = now
        self.seen += 1

    def on_train_end(self, trainer, pl_module):
        if self.t1 is None:
            self.t1 = time.perf_counter()

    def mean(self) -> float:
        return (self.t1 - self.t0) / self.steps


class Block:
    """A two-experience stream whose first experience was trained once; `run` trains experience 1 from
    the same state each time (weights, penalty buffers, running Fisher)."""

    def __init__(self, overrides: list[str], device: str, skip: int, steps: int):
        from hydra import compose, initialize_config_dir

        from clexp.core.runner import StreamRunner
        from clexp.train import CONF_DIR

        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("config", overrides=[*MLP_OVERRIDES, f"trainer.accelerator={device}", "train.epochs=1",
                                               "train.val_fraction=0", *overrides])
        self.tmp = tempfile.TemporaryDirectory()
        self.clock = MeanClock(skip, steps)
        self.total = skip + steps + 1  # the clock stops at the start of the batch after the last measured
        self.runner = StreamRunner(cfg, self.tmp.name, extra_callbacks=[self.clock])
        self.runner.run_experience(0)
        self.state = copy.deepcopy(self.runner.module.state_dict())

    def run(self) -> float:
        with open_dict(self.runner.cfg):
            self.runner.cfg.train.iterations = self.total
        self.runner.module.load_state_dict(self.state)
        self.runner.run_experience(1)
        return self.clock.mean()

    def close(self):
        self.tmp.cleanup()


def measure(model: list[str], device: str, steps: int, rounds: int, update_every: int) -> dict[str, float]:
    """Medians over the rounds: `step` = ewcpp step / naive step; `update` = 1 + (ewcpp step − the same
    ewcpp step without Fisher updates) / naive step, the updates' own cost per step in naive steps
    (the quadratic penalty's gradient, EWC's too, left out); and the three s/step."""
    skip = update_every  # warm-up steps (the first Fisher update of the experience among them), not timed
    ewcpp = [*model, "method=ewcpp", f"method.update_every={update_every}"]
    cases = {"naive": Block([*model, "method=naive"], device, skip, steps),
             # the same penalty, no update in the timed steps (its one update falls in the warm-up)
             "penalty": Block([*ewcpp, "method.update_every=1000000000"], device, skip, steps),
             "ewcpp": Block(ewcpp, device, skip, steps)}
    try:
        for case in cases.values():
            case.run()  # warm-up round
        times = {name: [] for name in cases}
        for _ in range(rounds):
            for name, case in cases.items():
                times[name].append(case.run())
    finally:
        for case in cases.values():
            case.close()
    t = {k: v for k, v in times.items()}
    return {"step": statistics.median(e / n for e, n in zip(t["ewcpp"], t["naive"])),
            "update": statistics.median(1 + (e - p) / n for e, p, n in zip(t["ewcpp"], t["penalty"], t["naive"])),
            "penalty": statistics.median(p / n for p, n in zip(t["penalty"], t["naive"])),
            **{f"{k}_s": statistics.median(v) for k, v in t.items()}}


def run(tiny: bool = False, device: str = "cpu", rounds: int = 7, steps: int = 60,
        update_every: int = 10) -> list[dict]:
    if tiny:
        rounds, steps = 1, update_every
    rows = []
    for name, model in MODELS.items():
        small = ["model.channels=[4]", "model.hidden=[8]"] if tiny and name == "CNN" else []
        m = measure([*model, *small], device, steps, rounds, update_every)
        tag = f"{name}, update_every={update_every} ({device})"
        rows.append(row("ewcpp", f"Fisher updates per step, naive steps, {tag}", m["update"], f"<= {TARGET}",
                        m["update"] <= TARGET, m["ewcpp_s"], naive_s=m["naive_s"]))
        rows.append(row("ewcpp", f"whole ewcpp step vs naive, {tag}", m["step"], f"<= {TARGET}", m["step"] <= TARGET,
                        m["ewcpp_s"], naive_s=m["naive_s"]))
        rows.append(row("ewcpp", f"of which penalty only (no updates), {tag}", m["penalty"], "report", True,
                        m["penalty_s"]))
    return rows


def main(argv=None):
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=60, help="timed steps per block (a multiple of update_every)")
    parser.add_argument("--update-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    print(format_table(run(args.tiny, args.device, args.rounds, args.steps, args.update_every)))


if __name__ == "__main__":
    main()
