"""Pretrained backbones' costs, measured side by side in one process:

1. `model.trainable=head model.features_cache=true`: one experience run by clexp (the backbone's
   features computed once over its data, the head trained and evaluated on them, Lightning included)
   against its floor — one forward pass of the same backbone over the same data plus the head's
   training in a plain PyTorch loop (same epochs and batches) — target ≤ 1.2×. ResNet-18 (random
   weights: the cost is the same as pretrained ones), synthetic 64×64 images.
2. The exact diagonal Fisher of a small torchvision ViT (random weights, CPU) against one training
   epoch over the same inputs, in total and per path (the fast Linear / Conv2d paths, the per-sample
   fallbacks: LayerNorm, attention, the class token and position embedding), with the layers that
   took a fallback.

    python -m bench.bench_pretrained [--tiny] [--device cpu|cuda]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.common import cli, median_time, row


def _images(path: Path, n_train: int, n_test: int, size: int, classes: int = 2) -> Path:
    g = torch.Generator().manual_seed(0)
    torch.save({"x_train": torch.rand(n_train, 3, size, size, generator=g), "y_train": torch.arange(n_train) % classes,
                "x_test": torch.rand(n_test, 3, size, size, generator=g), "y_test": torch.arange(n_test) % classes},
               path)
    return path


def feature_cache(tiny: bool, device: str) -> list[dict]:
    """Case 1: one experience with the feature cache against backbone forward + plain head training."""
    import clexp.models.pretrained as pretrained
    from clexp.core.runner import StreamRunner
    from clexp.core.validation import validate
    from tests.conftest import compose

    n_train, n_test, size, epochs, batch = (64, 16, 32, 1, 32) if tiny else (1000, 200, 64, 3, 64)
    with tempfile.TemporaryDirectory() as tmp:
        data = _images(Path(tmp) / "d.pt", n_train, n_test, size)
        cfg = compose(["model=torchvision", "model.weights=null", "model.trainable=head", "model.features_cache=true",
                       "dataset=arrays", f"dataset.path={data}", "dataset.normalize=false", "scenario.n_experiences=1",
                       "train.val_fraction=0", f"train.epochs={epochs}", f"train.batch_size={batch}", "logger=none",
                       "trainer.enable_progress_bar=false",
                       f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
                       "plots=false"])
        timed, original = [], pretrained.prepare_stream

        def prepare(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timed.append(time.perf_counter() - start)

        pretrained.prepare_stream = prepare
        try:
            runner = StreamRunner(cfg, Path(tmp) / "run", parts=validate(cfg))
        finally:
            pretrained.prepare_stream = original
        start = time.perf_counter()
        runner.run()
        ours = timed[0] + time.perf_counter() - start
        raw = torch.load(data, weights_only=True)
        backbone = runner.model.backbone.to(device).eval()
        x = torch.cat([raw["x_train"], raw["x_test"]])
        y = raw["y_train"].to(device)
        transform = runner.model.input_transform or (lambda z: z)  # random weights: none

        def floor():
            with torch.no_grad():
                feats = torch.cat([backbone(transform(x[i:i + 256].to(device)))
                                   for i in range(0, len(x), 256)])
            head = nn.Linear(feats.shape[1], 2).to(device)
            opt = torch.optim.SGD(head.parameters(), lr=0.05)
            train = feats[:n_train]
            for e in range(epochs):
                perm = torch.randperm(n_train, device=device)
                for b in range(0, n_train, batch):
                    sel = perm[b:b + batch]
                    loss = F.cross_entropy(head(train[sel]), y[sel])
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            with torch.no_grad():
                head(feats[n_train:]).argmax(1)

        reference = median_time(floor, 1, warmup=0)
    ratio = ours / reference
    return [row("pretrained", f"head+feature cache experience / floor ({device})", ratio, "<= 1.2", ratio <= 1.2,
                ours, floor_s=reference)]


def vit_fisher(tiny: bool, device: str) -> list[dict]:
    """Case 2: the exact diagonal Fisher of a small ViT against one epoch, in total and per path."""
    from torchvision.models.vision_transformer import VisionTransformer

    from clexp.curvature import diag_fisher
    from clexp.curvature.engine import fisher_paths

    n = 8 if tiny else 64
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128,
                            num_classes=10).to(device)
    nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision starts it at zero
    x, y = torch.randn(n, 3, 32, 32, device=device), torch.randint(0, 10, (n,), device=device)

    def epoch():
        opt = torch.optim.SGD(vit.parameters(), lr=1e-3)
        for b in range(0, n, 32):
            loss = F.cross_entropy(vit(x[b:b + 32]), y[b:b + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()

    repeats = 1 if tiny else 3
    t_epoch = median_time(epoch, repeats, warmup=1)
    paths = fisher_paths(vit, x[:2])
    fallback = sorted({p for p in paths.values() if p not in ("linear", "conv")})
    t_all = median_time(lambda: diag_fisher(vit, x), 1, warmup=0)
    rows = [row("pretrained", f"ViT exact Fisher / epoch ({device})", t_all / t_epoch, "report", True, t_all,
                fallback=fallback, fallback_layers=sorted(n for n, p in paths.items() if p not in ("linear", "conv")))]
    groups: dict[str, list[str]] = {}
    for name, path in paths.items():
        groups.setdefault(path, []).append(name)
    for path, names in sorted(groups.items()):
        for name, p in vit.named_parameters():
            p.requires_grad_(name in names)
        t = median_time(lambda: diag_fisher(vit, x), 1, warmup=0)
        rows.append(row("pretrained", f"  Fisher, {path} only ({len(names)} tensors)", t / t_epoch, "report", True, t))
    for p in vit.parameters():
        p.requires_grad_(True)
    return rows


def run(tiny: bool = False, device: str = "cpu") -> list[dict]:
    return feature_cache(tiny, device) + vit_fisher(tiny, device)


def main(argv=None):
    cli(run, __doc__, argv)


if __name__ == "__main__":
    main()
