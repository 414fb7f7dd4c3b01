"""Fixed costs per run: whole processes, measured side by side.

A sweep is many small jobs, so what a run costs before and after its training counts. On a
5-experience Split MNIST stream of the 10k real MNIST test images (an 80/20 split; random
MNIST-shaped images without the real ones, bench/common.py), MLP 784-400-400-10, SGD, 2 epochs, batch 128:

- `clexp` (the default experiment on that stream: its default logger, figures and checkpoints) as a
  whole process against a plain PyTorch script doing the same work as a whole process (imports,
  data, training, the accuracy matrix, a results file) — target ≤ 1.3×;
- every method's whole process against `naive`'s — target ≤ 1.15×.

Processes take turns for a few rounds; each ratio is the median of the rounds' ratios.

    python -m bench.bench_process [--tiny] [--rounds N]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MNIST_T10K, cli, row

# what clexp's stack costs before any work, as processes of their own (the floor under the first ratio)
FLOORS = {
    "import torch": "import torch",
    "import pytorch_lightning": "import pytorch_lightning",
    "wandb offline run": "import os, tempfile, wandb; d = tempfile.mkdtemp(); "
                         "r = wandb.init(mode='offline', dir=d, project='bench'); r.log({'x': 1}); r.finish()",
}
METHODS = ("ewc", "online_ewc", "si", "mas", "l2", "lwf", "kfac_ewc")
ROOT = Path(__file__).resolve().parents[1]

PLAIN = r'''
import json, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

path, epochs, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
d = np.load(path)
x_train, y_train = torch.from_numpy(d["x_train"]).float(), torch.from_numpy(d["y_train"]).long()
x_test, y_test = torch.from_numpy(d["x_test"]).float(), torch.from_numpy(d["y_test"]).long()
mean, std = x_train.mean(), x_train.std()
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(), nn.Linear(400, 10))
pairs = [(2 * t, 2 * t + 1) for t in range(5)]
sel = lambda y, a, b: (y == a) | (y == b)
train = [(x_train[sel(y_train, a, b)], y_train[sel(y_train, a, b)]) for a, b in pairs]
test = [(x_test[sel(y_test, a, b)], y_test[sel(y_test, a, b)]) for a, b in pairs]
g = torch.Generator().manual_seed(0)
matrix = []
for x, y in train:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for b in range(0, len(y), 128):
            idx = perm[b: b + 128]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        matrix.append([(model(xe).argmax(1) == ye).float().mean().item() for xe, ye in test])
json.dump({"acc_matrix": matrix}, open(out, "w"))
'''


def stream_file(folder: Path, tiny: bool) -> Path:
    """The 10k real MNIST test images as an arrays file (or random images of that shape)."""
    import numpy as np

    out = folder / "mnist_t10k.npz"
    if (MNIST_T10K / "t10k-images-idx3-ubyte.gz").exists() and not tiny:
        from clexp.data.arrays import mnist_t10k_arrays

        mnist_t10k_arrays(MNIST_T10K, out)
    else:
        n = 500 if tiny else 10_000
        rng = np.random.default_rng(0)
        np.savez(out, x_train=rng.random((n, 1, 28, 28), dtype=np.float32), y_train=rng.integers(0, 10, n),
                 x_test=rng.random((n // 4, 1, 28, 28), dtype=np.float32), y_test=rng.integers(0, 10, n // 4))
    return out


def timed(cmd: list[str], cwd: Path) -> float:
    # one thread each: on a shared machine OpenMP's spinning threads make 2-thread timings erratic,
    # and the fixed costs measured here are single-threaded anyway
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds


def run(tiny: bool = False, device: str = "cpu", rounds: int | None = None) -> list[dict]:
    rounds = rounds or (1 if tiny else 5)
    epochs = 1 if tiny else 2
    methods = METHODS[:2] if tiny else METHODS
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = stream_file(tmp, tiny)
        (tmp / "plain.py").write_text(PLAIN)
        base = [sys.executable, "-m", "clexp", "dataset=arrays", f"dataset.path={data}", f"train.epochs={epochs}",
                "train.batch_size=128", "trainer.enable_progress_bar=false", f"paths.data_dir={tmp / 'data'}"]
        times: dict[str, list[float]] = {}
        for r in range(rounds):
            for label, code in FLOORS.items():
                times.setdefault(label, []).append(timed([sys.executable, "-c", code], tmp))
            times.setdefault("plain", []).append(timed([sys.executable, str(tmp / "plain.py"), str(data), str(epochs),
                                                        str(tmp / f"plain{r}.json")], tmp))
            for method in ("naive", *methods):
                cmd = [*base, f"method={method}", f"hydra.run.dir={tmp}/{method}{r}"]
                times.setdefault(method, []).append(timed(cmd, tmp))
    def ratio(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    def med(a):
        return statistics.median(times[a])

    r = ratio("naive", "plain")
    rows = [row("process", "clexp naive vs plain script (processes)", r, "<= 1.3", r <= 1.3, med("naive"),
                plain_s=med("plain"))]
    torch_s = med("import torch")
    rows.append(row("process", "floor: Lightning's import over torch's", (med("import pytorch_lightning") - torch_s)
                    / med("plain"), "(share)", True, med("import pytorch_lightning") - torch_s))
    rows.append(row("process", "floor: a wandb offline run (own process)", med("wandb offline run")
                    / med("plain"), "(share)", True, med("wandb offline run")))
    for method in methods:
        r = ratio(method, "naive")
        rows.append(row("process", f"{method} vs naive (processes)", r, "<= 1.15", r <= 1.15, med(method)))
    return rows


if __name__ == "__main__":
    cli(run, __doc__)
