"""What anytime evaluation costs: a whole stream with `eval.every_n_steps=N` against the same stream
with it off (the default), in this process, runs taking turns; the ratio is the median of the rounds'.

Also the share of each run's seconds that its anytime evaluations took (timed inside the run, so
less sensitive to a busy machine than the ratio of two runs). The stream is the default one (Split Digits,
5 experiences, MLP, SGD, 5 epochs, batch 32: 41 steps
per experience), logger off, no figures; N = 10 and 1, `eval.anytime_samples` 256 (the default).

    python -m bench.bench_anytime [--tiny] [--rounds N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import format_table, row

QUIET = ["logger=none", "plots=false", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]


def _run(overrides: list[str], folder: Path) -> float:
    from hydra import compose, initialize_config_dir

    from clexp.config import conf_source
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate

    with initialize_config_dir(conf_source.config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=[*QUIET, *overrides])
    t0 = time.perf_counter()
    results = StreamRunner(cfg, folder, parts=validate(cfg)).run()
    seconds = time.perf_counter() - t0
    spent = sum(results["anytime"]["eval_s"]) if results["anytime"] else 0.0
    return seconds, spent / seconds  # the run's seconds, and the share of them the anytime evaluations took


def run(tiny: bool = False, device: str = "cpu", rounds: int = 3) -> list[dict]:
    base = ["train.epochs=1", "scenario.n_experiences=2"] if tiny else []
    rounds = 1 if tiny else rounds
    cases = {"off": [], "every 10 steps": ["eval.every_n_steps=10"], "every step": ["eval.every_n_steps=1"]}
    times = {c: [] for c in cases}
    shares = {c: [] for c in cases}
    with tempfile.TemporaryDirectory() as tmp:
        _run(base, Path(tmp) / "warmup")
        for r in range(rounds):
            for case, extra in cases.items():
                folder = Path(tmp) / f"{r}-{case.replace(' ', '_')}"
                seconds, share = _run([*base, *extra], folder)
                times[case].append(seconds), shares[case].append(share)
    rows = []
    for case in ("every 10 steps", "every step"):
        ratio = statistics.median(a / b for a, b in zip(times[case], times["off"]))
        rows.append(row("anytime", f"{case} / off (whole stream)", ratio, "report", True,
                        statistics.median(times[case])))
        rows.append(row("anytime", f"{case}: its evaluations' share of the run", statistics.median(shares[case]),
                        "report", True))
    return rows


if __name__ == "__main__":
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(format_table(run(args.tiny, rounds=args.rounds)))
    sys.exit(0)
