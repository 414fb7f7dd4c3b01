"""The gradient-constraint methods under an adaptive optimizer and under plain SGD, on the same stream.

Split MNIST on the real MNIST test images (bench/common.py `mnist_like`: 8,000 training / 2,000 test), 5
experiences, MLP 784-400-400, batch 128, 4 epochs per experience, the optimizer rebuilt at every experience
(`train.reset_optimizer=true`), class-IL over all outputs (`scenario.outputs=all`); task-, domain- and
class-IL; Adam lr 0.001 (conf/config.yaml's optimizer) and SGD lr 0.05 (no momentum); seeds 0 and 1:

- gpm and ogd keep every step of either optimizer out of their protected subspace (the step's change is
  projected, clexp/methods/projection.py): the table shows what each reaches under Adam against SGD;
- agem's condition is on the gradient (g̃·g_ref ≥ 0, Eq. 11), which under SGD without momentum is the step
  itself (−lr·g̃) and under Adam is not (the step is Adam's rescaling of g̃): the table measures what that
  costs.

    python -m bench.constraints_optimizers [--seeds 0 1] [--methods naive gpm agem] [--optimizers adam sgd]
                                           [--gpm-threshold 0.9] [--gpm-override KEY=VALUE ...]
                                           [--scenarios task domain class] [--validation] [--tiny]

Prints a markdown table: final average accuracy (forgetting), mean over the seeds, each seed in brackets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.boundary_free_table import DATA, quiet, run

EPOCHS = 4
COMMON = [*DATA, "scenario.n_experiences=5", "model.hidden=[400,400]", "train.batch_size=128",
          "train.val_fraction=0", f"train.epochs={EPOCHS}", "train.reset_optimizer=true", "scenario.outputs=all",
          "logger=none", "plots=false", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
OPTIMIZERS = {"adam": ["optimizer=adam", "optimizer.lr=0.001"], "sgd": ["optimizer=sgd", "optimizer.lr=0.05"]}
SCENARIOS = ("task", "domain", "class")
TINY = ["train.epochs=1", "train.iterations=3", "scenario.n_experiences=2", "method.memory_per_experience=5"]


def cell(values: list[float], forgetting: list[float]) -> str:
    return (f"{statistics.mean(values):.3f} [{', '.join(f'{v:.3f}' for v in values)}] "
            f"({statistics.mean(forgetting):.3f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--methods", nargs="*", default=["naive", "gpm", "agem"])
    parser.add_argument("--optimizers", nargs="*", default=list(OPTIMIZERS), choices=list(OPTIMIZERS))
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--gpm-threshold", type=float, default=0.9, help="method.threshold of gpm")
    parser.add_argument("--gpm-override", nargs="*", default=[],
                        help="more overrides of gpm, e.g. method.hidden_threshold=0.99 "
                             "method.threshold_increment=0.003")
    parser.add_argument("--validation", action="store_true",
                        help="train.val_fraction=0.2 and the validation split's scores (val_metrics), for choosing")
    parser.add_argument("--tiny", action="store_true", help="a smoke run: 2 experiences, a few steps")
    parser.add_argument("--out", default=None, help="keep the run folders here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    quiet()
    split = "validation" if args.validation else "test"
    extra = "".join(" " + o for o in args.gpm_override)
    lines = [f"Final average accuracy (forgetting) on the {split} split; mean over seeds {args.seeds}, "
             f"each seed in brackets; gpm method.threshold={args.gpm_threshold}{extra}, ogd and agem at their "
             "configs' defaults", "",
             "| method | optimizer | " + " | ".join(f"{s}-IL" for s in args.scenarios) + " |",
             "| --- | --- |" + " --- |" * len(args.scenarios)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        for method in args.methods:
            own = [f"method.threshold={args.gpm_threshold}", *args.gpm_override] if method == "gpm" else []
            small = [o for o in TINY if not o.startswith("method.") or method in ("ogd", "agem")] if args.tiny else []
            for opt in args.optimizers:
                cells = []
                for scenario in args.scenarios:
                    values, forgetting = [], []
                    for seed in args.seeds:
                        t0 = time.perf_counter()
                        common = [*COMMON, "train.val_fraction=0.2"] if args.validation else COMMON
                        common = [o for o in common if o != "train.val_fraction=0"] if args.validation else common
                        r = run([*common, *OPTIMIZERS[opt], f"scenario.incremental={scenario}", f"method={method}",
                                 *own, f"seed={seed}", *small], out / f"{method}-{opt}-{scenario}-{seed}")
                        metrics = r["val_metrics"] if args.validation else r["metrics"]  # validation never reads test
                        values.append(metrics["avg_acc"])
                        forgetting.append(metrics["forgetting"])
                        print(f"{method} {opt} {scenario} seed {seed}: {values[-1]:.4f} "
                              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
                    cells.append(cell(values, forgetting))
                lines.append(f"| {method} | {opt} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
