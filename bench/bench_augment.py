"""The cost of `dataset.augment` on the training device (issue 18): ≤ 1.15× a training step without it.

A CNN (conv 32-64, fc 128) on CIFAR-size synthetic inputs (3×32×32, 10 classes), batch 128, inside
clexp's real loop: the step time with random crops (padding 4) and horizontal flips, each sample its
own draw, against the same step without augmentation, in interleaved blocks (bench/steps.py: the
configurations take turns, the ratio is the median of the per-round ratios).

    python -m bench.bench_augment [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import torch

from bench.common import cli, row
from bench.steps import interleaved_ratios

CIFAR_LIKE = (2 * 1280, 512)  # training and test images: 2 experiences of 1,280 training images (10 steps)
TINY_DATA = ("++dataset.n_train=512", "++dataset.n_test=128")  # --tiny: 2 steps per epoch
BASE = ("dataset._target_=bench.bench_augment.load_cifar_like", "model=cnn", "scenario.n_experiences=2",
        "train.batch_size=128", "train.val_fraction=0", "logger=none", "trainer.enable_progress_bar=false",
        "plots=false")
CROP_FLIP = "dataset.augment=[{name:random_crop,size:32,padding:4},{name:hflip,p:0.5}]"


def load_cifar_like(n_train: int = CIFAR_LIKE[0], n_test: int = CIFAR_LIKE[1], **_ignored):
    """Hydra `_target_`: CIFAR-shaped random images, standardised per channel, 10 classes."""
    from clexp.data.base import SourceData

    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_train + n_test, 3, 32, 32, generator=g)
    x = (x - x[:n_train].mean((0, 2, 3), keepdim=True)) / x[:n_train].std((0, 2, 3), keepdim=True)
    y = torch.randint(0, 10, (n_train + n_test,), generator=g)
    return SourceData("cifar-like", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10)


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    steps, rounds = (4, 1) if tiny else (20, 9)
    cases = {"none": ["dataset.augment=[]"], "crop+flip": [CROP_FLIP]}
    base = (*BASE, *TINY_DATA) if tiny else BASE
    ratios, seconds = interleaved_ratios(cases, "none", device, steps, rounds, base=base)
    ratio = ratios["crop+flip"]
    return [row("augment", f"crop+flip step vs none, CNN b128 ({device})", ratio, "<= 1.15", ratio <= 1.15,
                seconds["crop+flip"], reference_seconds=seconds["none"])]


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
