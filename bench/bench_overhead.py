"""Target 1 — framework overhead: a whole 5-experience Split-MNIST-size stream with `naive` through
clexp (Hydra config, a Lightning Trainer per experience, callbacks, stream checkpoints,
results.json, the run's figures) against a plain PyTorch script doing the same training and
evaluation (same model, data, number of steps): ≤ 1.25× wall time.

The stream is Split MNIST at its real size (60,000 training and 10,000 test images, the real MNIST
test images when bench/common.py finds them) trained as the `hsu2018_split_mnist` preset trains it: MLP
784-400-400-10, batch 128, 4 epochs per experience (376 steps each, 1,880 in all), SGD. The two
runs take turns for a few rounds and the ratio is the median of the rounds' ratios (the machines
are shared: their speed drifts between rounds).

    python -m bench.bench_overhead [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import cli, mnist_like, row, split_mnist_size

EPOCHS, BATCH, LR = 4, 128, 0.05


def plain_pytorch_stream(data, epochs: int, device: str, hidden=(400, 400), seed: int = 0) -> list[list[float]]:
    """The reference: split by class pairs, SGD, evaluate every experience after each one."""
    torch.manual_seed(seed)
    layers, width = [nn.Flatten()], 784
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    model = nn.Sequential(*layers, nn.Linear(width, 10)).to(device)
    xs, ys = data.x_train.to(device), data.y_train.to(device)
    xt, yt = data.x_test.to(device), data.y_test.to(device)
    pairs = [(2 * t, 2 * t + 1) for t in range(5)]
    train = [(xs[(ys == a) | (ys == b)], ys[(ys == a) | (ys == b)]) for a, b in pairs]
    test = [(xt[(yt == a) | (yt == b)], yt[(yt == a) | (yt == b)]) for a, b in pairs]
    matrix = []
    g = torch.Generator().manual_seed(seed)
    for x, y in train:
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=g).to(device)
            for b in range(0, len(y), BATCH):
                idx = perm[b: b + BATCH]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            matrix.append([(model(xe).argmax(1) == ye).float().mean().item() for xe, ye in test])
    return matrix


def clexp_stream(data_target: str, epochs: int, device: str, model: str = "mlp", method: str = "naive",
                 extra=()) -> dict:
    """The same stream through clexp's real runner, as `clexp` runs it (compose, validate, run), with
    its defaults (figures and checkpoints on) but no logger and no progress bar."""
    from hydra import compose, initialize_config_dir

    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate
    from clexp.train import CONF_DIR

    overrides = [
        f"dataset._target_={data_target}", f"model={model}", f"method={method}",
        f"train.epochs={epochs}", f"train.batch_size={BATCH}", "optimizer=sgd", f"optimizer.lr={LR}",
        "logger=none", "trainer.enable_progress_bar=false", f"trainer.accelerator={device}", *extra,
    ]
    if model == "mlp":
        overrides.append("model.hidden=[400,400]")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    validate(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        return StreamRunner(cfg, tmp).run()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    if tiny:
        target, load, epochs, rounds = "bench.common.load_bench_data", mnist_like, 1, 1
    else:
        target, load, epochs, rounds = "bench.common.load_split_mnist_size", split_mnist_size, EPOCHS, 5
    data = None
    results = {}

    def plain():
        nonlocal data
        data = load()  # clexp loads its data inside the run too
        plain_pytorch_stream(data, epochs, device)

    def ours():
        results.update(clexp_stream(target, epochs, device))

    timed(lambda: clexp_stream("bench.common.load_bench_data", 1, device))  # warm-up: imports, first Trainer
    timed(lambda: plain_pytorch_stream(mnist_like(), 1, device))
    pairs = [(timed(plain), timed(ours)) for _ in range(rounds)]
    ratio = statistics.median(o / p for p, o in pairs)
    plain_s, ours_s = statistics.median(p for p, _ in pairs), statistics.median(o for _, o in pairs)
    return [
        row("overhead", f"naive stream MLP, {data.name} ({device})", ratio, "<= 1.25", ratio <= 1.25, ours_s,
            plain_seconds=plain_s, avg_acc=results["metrics"]["avg_acc"]),
    ]


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
