"""The gradient-constraint methods' cost per training step against a naive step, measured side by side in one
run inside clexp's real loop (bench/steps.py: interleaved blocks, the median ratio over rounds), for the MLP
784-400-400-10 and the CNN of conf/model/cnn.yaml, batch 128, MNIST-like images, the second experience of a
two-experience stream (the first one's bases / memory in place):

- gpm ≤ 1.3× (per layer, the cheaper of projecting the gradient, 4·out·d·k flops for a basis of k ≤ d/2
  directions, 2·out·d² with the d × d projector beyond, and projecting the N layer inputs in the backward,
  4·N·d·k: the MLP's hidden layers take the inputs at N = 128 < 400 outputs);
- agem ≤ 2.2× (one extra forward and backward on a memory batch of 128, the training batch: the floor is
  about 2×, a naive step being one forward and one backward);
- ogd: reported (4·|S|·P flops per step: it grows with the stored directions).

    python -m bench.bench_constraints [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

from bench.common import cli, row
from bench.steps import interleaved_ratios

MODELS = {"MLP": [], "CNN": ["model=cnn", "model.hidden=[128]"]}
TARGETS = {"gpm": 1.3, "agem": 2.2, "ogd": None}


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    steps, rounds = (4, 1) if tiny else (40, 5)
    rows = []
    for name, model in MODELS.items():
        small = ["model.channels=[4]", "model.hidden=[8]"] if tiny and name == "CNN" else []
        cases = {"naive": [*model, *small, "method=naive"], "gpm": [*model, *small, "method=gpm"],
                 "agem": [*model, *small, "method=agem"],
                 "ogd": [*model, *small, "method=ogd", "method.memory_per_experience=20"]}
        ratios, seconds = interleaved_ratios(cases, "naive", device, steps, rounds)
        for method, target in TARGETS.items():
            label = f"{method} step vs naive, {name}" + (", 20 directions" if method == "ogd" else "") + f" ({device})"
            rows.append(row("constraints", label, ratios[method], f"<= {target}" if target else "report",
                            ratios[method] <= target if target else True, seconds[method], naive_s=seconds["naive"]))
    return rows


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
