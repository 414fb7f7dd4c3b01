"""Targets 2 and 3 — the regularization's cost per training step.

2. Per-step time of `ewc`, `online_ewc`, `mas`, `l2`, `si` (SI's per-step bookkeeping included)
   against `naive`, inside clexp's real loop on the second experience (the penalty active), in
   interleaved blocks (bench/steps.py): ≤ 1.10×.
3. Separate-mode EWC does not grow with the stream: the penalty's forward+backward after 20
   consolidated experiences against after 2 (≤ 1.05×), and its buffers stay O(parameters).

    python -m bench.bench_penalty [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import torch

from bench.common import cli, median_time, row
from bench.steps import interleaved_ratios

METHODS = ("ewc", "online_ewc", "mas", "l2", "si")
ESTIMATE_ON = ("method.fisher.max_samples=200",)  # the boundary's estimate is not what is timed


def method_overrides(method: str) -> list[str]:
    extra = {"ewc": ESTIMATE_ON, "online_ewc": ESTIMATE_ON, "kfac_ewc": ESTIMATE_ON,
             "mas": ("method.max_samples=200",)}.get(method, ())
    return [f"method={method}", *extra]


def growth(device: str, repeats: int) -> tuple[float, int, int]:
    """The penalty's training-step work (its analytic gradient added to the parameters' gradients,
    and its value) after 20 vs 2 consolidations, timed in alternation; buffer counts after each."""
    import statistics

    from clexp.methods.quadratic import QuadraticPenalty
    from clexp.models import MLP

    model = MLP((784,), 10, hidden=[400, 400]).to(device)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    penalties, buffers = {}, {}
    for n in (2, 20):
        pen = QuadraticPenalty(100.0, 0.5, "separate")
        pen.bind(model)
        pen.to(device)
        for _ in range(n):
            with torch.no_grad():  # each experience ends somewhere else
                for p in model.parameters():
                    p.add_(torch.randn_like(p), alpha=0.01)
            pen.consolidate({k: torch.rand_like(p) for k, p in model.named_parameters()}, model)
        penalties[n], buffers[n] = pen, sum(b.numel() for b in pen.buffers())

    def work(pen):
        pen.add_gradient(model)
        pen.value(model)

    ratios = []
    for _ in range(repeats):
        t = {n: median_time(lambda pen=pen: work(pen), repeats=5, warmup=1) for n, pen in penalties.items()}
        ratios.append(t[20] / t[2])
    return statistics.median(ratios), buffers[2], buffers[20]


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    steps, rounds = (6, 1) if tiny else (60, 9)
    cases = {m: method_overrides(m) for m in ("naive", *METHODS)}
    ratios, seconds = interleaved_ratios(cases, "naive", device, steps, rounds)
    rows = [row("penalty", f"{m} step vs naive ({device})", ratios[m], "<= 1.10", ratios[m] <= 1.10, seconds[m])
            for m in METHODS]
    ratio, b2, b20 = growth(device, repeats=5 if tiny else 50)
    rows.append(row("penalty", f"ewc penalty 20 vs 2 experiences ({device})", ratio, "<= 1.05", ratio <= 1.05))
    rows.append(row("penalty", f"ewc buffers 20 vs 2 experiences ({b20}/{b2})", b20 / b2, "== 1.00", b20 == b2))
    return rows


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
