"""NGD's cost: a training step of `optimizer=ngd` (its Fisher refresh every `update_every` steps
included) against an SGD step, MLP 784-400-400-10, batch 128, inside Lightning: ≤ 1.5×.

    python -m bench.bench_ngd [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

from bench.common import cli, row
from bench.steps import interleaved_ratios


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    steps, rounds = (6, 1) if tiny else (60, 7)
    cases = {name: ["method=naive", f"optimizer={name}"] for name in ("sgd", "ngd")}
    ratios, seconds = interleaved_ratios(cases, "sgd", device, steps, rounds)
    return [row("ngd", f"ngd step vs sgd step, update_every=10 ({device})", ratios["ngd"], "<= 1.5",
                ratios["ngd"] <= 1.5, seconds["ngd"])]


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
