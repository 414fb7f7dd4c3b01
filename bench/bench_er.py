"""Experience replay's cost per training step against a naive step (target ≤ 2.1× at a replay batch equal to
the training batch), for the MLP (784-400-400-10, batch 128) and the CNN of conf/model/cnn.yaml (batch 128),
inside clexp's real training loop (bench/bench_ewcpp.py's blocks: experience 1 of a two-experience stream,
trained again and again from the same state; the buffer is full from experience 0 on).

The arithmetic: an ER step is one forward and backward over a batch of 2B samples (B incoming + B replayed)
instead of B, so its compute is ≈ 2× a naive step's; what ER adds beyond that — drawing the replay indices,
gathering them from the buffer, the reservoir's draws and writes after the step — is small, and the fixed
per-step costs (the optimizer step over the parameters, Lightning's loop) do not double, so the ratio is
expected a little under 2. Rows: the whole er step / naive (target ≤ 2.1); and for reference a naive step at
batch 2B / naive at B (the floor of ER's cost at the same compute). Configurations in alternating rounds, the
ratio within each round, the median over rounds. One thread unless --threads.

    python -m bench.bench_er [--tiny] [--rounds N] [--steps N]
"""

from __future__ import annotations

import os
import statistics

from bench.bench_ewcpp import MODELS, Block
from bench.common import format_table, row

TARGET = 2.1


def measure(model: list[str], device: str, steps: int, rounds: int, batch: int) -> dict[str, float]:
    skip = 5
    cases = {"naive": Block([*model, "method=naive", f"train.batch_size={batch}"], device, skip, steps),
             "er": Block([*model, "method=er", f"train.batch_size={batch}", f"method.replay_batch_size={batch}"],
                         device, skip, steps),
             "double": Block([*model, "method=naive", f"train.batch_size={2 * batch}"], device, skip, steps)}
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
    return {"step": statistics.median(e / n for e, n in zip(times["er"], times["naive"])),
            "double": statistics.median(d / n for d, n in zip(times["double"], times["naive"])),
            **{f"{k}_s": statistics.median(v) for k, v in times.items()}}


def run(tiny: bool = False, device: str = "cpu", rounds: int = 7, steps: int = 40, batch: int = 128) -> list[dict]:
    if tiny:
        rounds, steps = 1, 5
    rows = []
    for name, model in MODELS.items():
        small = ["model.channels=[4]", "model.hidden=[8]"] if tiny and name == "CNN" else []
        m = measure([*model, *small], device, steps, rounds, batch)
        tag = f"{name}, B={batch}+{batch} ({device})"
        rows.append(row("er", f"er step vs naive, {tag}", m["step"], f"<= {TARGET}", m["step"] <= TARGET,
                        m["er_s"], naive_s=m["naive_s"]))
        rows.append(row("er", f"naive at batch {2 * batch} vs {batch}, {name}", m["double"], "report", True,
                        m["double_s"]))
    return rows


def main(argv=None):
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per block")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    print(format_table(run(args.tiny, args.device, args.rounds, args.steps, args.batch)))


if __name__ == "__main__":
    main()
