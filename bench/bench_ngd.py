"""NGD's cost: a training step of `optimizer=ngd` (its Fisher refresh every `update_every` steps
included) against an SGD step, MLP 784-400-400-10, batch 128, inside Lightning: ≤ 1.5×.

    python -m bench.bench_ngd [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics

from bench.bench_penalty import step_time
from bench.common import cli, row


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    epochs, rounds = (1, 1) if tiny else (4, 3)
    times = {"sgd": [], "ngd": []}
    step_time("naive", 1, device)  # warm-up
    for _ in range(rounds):
        for name in times:
            times[name].append(step_time("naive", epochs, device, (f"optimizer={name}",)))
    ratio = statistics.median(times["ngd"]) / statistics.median(times["sgd"])
    return [row("ngd", f"ngd step vs sgd step, update_every=10 ({device})", ratio, "<= 1.5", ratio <= 1.5,
                statistics.median(times["ngd"]))]


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
