"""NGD's cost: a training step of `optimizer=ngd` (its Fisher refresh every `update_every` steps
included) against an SGD step, MLP 784-400-400-10, batch 128, inside Lightning: ≤ 1.5×.

    python -m bench.bench_ngd [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics

from bench.bench_penalty import StepTimer
from bench.common import cli, row


def step_time(optimizer: str, epochs: int, device: str) -> float:
    import tempfile

    from hydra import compose, initialize_config_dir

    from clexp.runner import StreamRunner
    from clexp.train import CONF_DIR

    overrides = ["dataset._target_=bench.common.load_bench_data", "model.hidden=[400,400]", f"optimizer={optimizer}",
                 "scenario.n_experiences=2", f"train.epochs={epochs}", "train.batch_size=128", "logger=none",
                 "trainer.enable_progress_bar=false", f"trainer.accelerator={device}", "plots=false"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        StreamRunner(cfg, tmp, extra_callbacks=[timer]).run()
    return timer.per_step[1]


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    epochs, rounds = (1, 1) if tiny else (4, 3)
    times = {"sgd": [], "ngd": []}
    step_time("sgd", 1, device)  # warm-up
    for _ in range(rounds):
        for name in times:
            times[name].append(step_time(name, epochs, device))
    ratio = statistics.median(times["ngd"]) / statistics.median(times["sgd"])
    return [row("ngd", f"ngd step vs sgd step, update_every=10 ({device})", ratio, "<= 1.5", ratio <= 1.5,
                statistics.median(times["ngd"]))]


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
