"""Target 1 — framework overhead: a whole 5-experience Split-MNIST-size stream with `naive` through
clexp (Hydra config, Lightning Trainer per experience, callbacks, checkpoints, results.json) against
a plain PyTorch script doing the same training and evaluation (same model, data, steps): ≤ 1.25×.

    python -m bench.bench_overhead [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import format_table, mnist_like, row

EPOCHS, BATCH, LR = 10, 128, 0.05  # 130 steps per experience: ~1.4 epochs of the real Split MNIST


def plain_pytorch_stream(epochs: int, device: str, hidden=(400, 400), seed: int = 0) -> list[list[float]]:
    """The reference: load the data, split by class pairs, SGD, evaluate every experience after each one."""
    data = mnist_like()
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


def clexp_stream(epochs: int, device: str, model: str = "mlp", method: str = "naive", extra=()) -> dict:
    """The same stream through clexp's real runner (in-process, no logger, no progress bar)."""
    from hydra import compose, initialize_config_dir

    from clexp.runner import StreamRunner
    from clexp.train import CONF_DIR
    from clexp.validation import validate

    overrides = [
        "dataset._target_=bench.common.load_bench_data", f"model={model}", f"method={method}",
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


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    epochs = 1 if tiny else EPOCHS
    clexp_stream(1, device)  # warm-up: imports, first Trainer, allocator
    plain_pytorch_stream(1, device)
    t0 = time.perf_counter()
    plain_pytorch_stream(epochs, device)
    plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = clexp_stream(epochs, device)
    ours = time.perf_counter() - t0
    ratio = ours / plain
    return [
        row("overhead", f"naive stream MLP, {mnist_like().name} ({device})", ratio, "<= 1.25", ratio <= 1.25, ours,
            plain_seconds=plain, avg_acc=results["metrics"]["avg_acc"]),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    rows = run(args.tiny, args.device)
    print(format_table(rows))
    for r in rows:
        print(f"  clexp {r['seconds']:.2f} s, plain PyTorch {r['plain_seconds']:.2f} s")


if __name__ == "__main__":
    main()
