"""Targets 2 and 3 — the regularization's cost per training step.

2. Per-step time of `ewc`, `online_ewc`, `mas`, `l2`, `si` (SI's per-step bookkeeping included)
   against `naive`, measured in the same process inside Lightning on the second experience (the
   penalty active): ≤ 1.10×.
3. Separate-mode EWC does not grow with the stream: the penalty's forward+backward after 20
   consolidated experiences against after 2 (≤ 1.05×), and its buffers stay O(parameters).

    python -m bench.bench_penalty [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import time

import pytorch_lightning as pl
import torch

from bench.common import cli, median_time, row

METHODS = ("ewc", "online_ewc", "mas", "l2", "si")


class StepTimer(pl.Callback):
    """Wall time from the first batch's start to the last batch's end of each fit (steps only:
    the boundary's importance estimation is excluded)."""

    def __init__(self):
        self.per_step: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 0:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.t1 = time.perf_counter()  # this callback runs last: SI's bookkeeping is included

    def on_train_end(self, trainer, pl_module):
        self.per_step.append((self.t1 - self.t0) / max(1, trainer.global_step))


def step_time(method: str, epochs: int, device: str, extra: tuple[str, ...] = ()) -> float:
    """Per-step seconds during experience 2 of a 2-experience Split-MNIST-size stream (`extra`: more
    overrides, e.g. another optimizer)."""
    import tempfile

    from hydra import compose, initialize_config_dir

    from clexp.runner import StreamRunner
    from clexp.train import CONF_DIR

    overrides = ["dataset._target_=bench.common.load_bench_data", f"method={method}", "model.hidden=[400,400]",
                 "scenario.n_experiences=2", f"train.epochs={epochs}", "train.batch_size=128", "logger=none",
                 "trainer.enable_progress_bar=false", f"trainer.accelerator={device}", "plots=false", *extra]
    if method in ("ewc", "online_ewc", "kfac_ewc"):
        overrides.append("method.fisher.max_samples=200")
    if method == "mas":
        overrides.append("method.max_samples=200")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        StreamRunner(cfg, tmp, extra_callbacks=[timer]).run()
    return timer.per_step[1]


def growth(device: str, repeats: int) -> tuple[float, int, int]:
    """Penalty forward+backward time after 20 vs 2 consolidations; buffer counts after each."""
    from clexp.models import MLP
    from clexp.penalties import QuadraticPenalty

    model = MLP((784,), 10, hidden=[400, 400]).to(device)
    times, buffers = {}, {}
    for n in (2, 20):
        pen = QuadraticPenalty(100.0, 0.5, "separate").to(device)
        pen.bind(model)
        pen.to(device)
        for _ in range(n):
            pen.consolidate({k: torch.rand_like(p) for k, p in model.named_parameters()}, model)

        def step():
            model.zero_grad(set_to_none=True)
            pen(model).backward()

        times[n] = median_time(step, repeats=repeats, warmup=3)
        buffers[n] = sum(b.numel() for b in pen.buffers())
    return times[20] / times[2], buffers[2], buffers[20]


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    epochs = 1 if tiny else 4
    rounds = 1 if tiny else 3
    rows = []
    times = {m: [] for m in ("naive", *METHODS)}
    step_time("naive", 1, device)  # warm-up
    for _ in range(rounds):  # interleaved rounds: machine noise hits every method alike
        for m in times:
            times[m].append(step_time(m, epochs, device))
    naive = statistics.median(times["naive"])
    for m in METHODS:
        ratio = statistics.median(times[m]) / naive
        rows.append(row("penalty", f"{m} step vs naive ({device})", ratio, "<= 1.10", ratio <= 1.10,
                        statistics.median(times[m])))
    ratio, b2, b20 = growth(device, repeats=5 if tiny else 50)
    rows.append(row("penalty", f"ewc penalty 20 vs 2 experiences ({device})", ratio, "<= 1.05", ratio <= 1.05))
    rows.append(row("penalty", f"ewc buffers 20 vs 2 experiences ({b20}/{b2})", b20 / b2, "== 1.00", b20 == b2))
    return rows


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
