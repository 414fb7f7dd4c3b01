"""Backbones and heads: shapes on every input size, per-sample head selection, sizes."""

import pytest
import torch
from torch import nn

from clexp.models import CNN, MLP, ContinualClassifier, ResNet18


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_cnn_on_every_image_size(shape, batch_norm):
    model = CNN(shape, 10, batch_norm=batch_norm, dropout=0.1)
    assert isinstance(model, ContinualClassifier)
    assert model(torch.randn(3, *shape)).shape == (3, 10)
    model.eval()
    assert model(torch.randn(1, *shape)).shape == (1, 10)


def test_cnn_layout_and_size_on_mnist():
    model = CNN((1, 28, 28), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    # conv 1→32, conv 32→64, Linear 64·7·7→128, head 128→10
    expected = (9 * 32 + 32) + (9 * 32 * 64 + 64) + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert n_params(model) == expected


def test_cnn_keeps_2x2_maps_on_8x8_digits_and_accepts_an_int_hidden():
    model = CNN((1, 8, 8), 10, channels=(8, 16, 32), hidden=24)
    first_linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert first_linear.in_features == 32 * 2 * 2 and first_linear.out_features == 24
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_cnn_construction_leaves_batchnorm_statistics_untouched():
    model = CNN((1, 8, 8), 10, batch_norm=True)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert model.training and all(m.training for m in model.modules())


def test_resnet18_reduced_size_and_output():
    model = ResNet18((3, 32, 32), 100)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert 1.0e6 < n_params(model) < 1.2e6  # GEM's reduced ResNet-18: ~1.1M
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    stem = convs[0]
    assert stem.out_channels == 20 and stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert sum(m.kernel_size == (3, 3) for m in convs) == 17  # stem + 8 BasicBlocks × 2
    assert sorted({m.out_channels for m in convs}) == [20, 40, 80, 160]
    assert model.head.in_features == 160
    model.eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 100)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 16, 16)])
def test_resnet18_on_other_sizes(shape):
    assert ResNet18(shape, 10, width=4)(torch.randn(2, *shape)).shape == (2, 10)


def test_resnet18_refuses_images_too_small_for_it_in_one_line(tmp_path, clexp_main):
    with pytest.raises(ValueError, match="at least 16×16"):
        ResNet18((1, 8, 8), 10)
    out = clexp_main(["model=resnet18", "logger=none", "trainer.enable_progress_bar=false", "hydra.run.dir=run"],
                     tmp_path)  # the 8×8 digits
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.startswith("clexp: error:")]
    assert len(lines) == 1 and "model=resnet18" in lines[0] and "model=cnn" in lines[0], out.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    "factory,shape",
    [
        (lambda s, o, h: MLP(s, o, hidden=[5], n_experiences=h, multihead=h > 1), (4,)),
        (lambda s, o, h: CNN(s, o, channels=[4], hidden=[6], n_experiences=h, multihead=h > 1), (1, 8, 8)),
        (lambda s, o, h: ResNet18(s, o, n_experiences=h, multihead=h > 1, width=4), (3, 16, 16)),
    ],
)
def test_multihead_picks_each_samples_head(factory, shape):
    torch.manual_seed(0)
    model = factory(shape, 3, 3).eval()  # eval: BatchNorm must not depend on the batch
    assert len(model.heads) == 3
    x = torch.randn(6, *shape)
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    mixed = model(x, t)
    assert mixed.shape == (6, 3)
    for i in range(6):
        assert torch.allclose(mixed[i], model(x[i : i + 1], int(t[i]))[0], atol=1e-6)
    assert torch.allclose(model(x, torch.full((6,), 1)), model(x, 1))
    model.active_task = 2
    assert torch.allclose(model(x), model(x, 2))
    # the heads share the backbone: one head's gradient never reaches another head
    model(x[:2], 0).sum().backward()
    assert model.heads[1].weight.grad is None and model.heads[0].weight.grad is not None


def test_multihead_adds_one_head_of_parameters_per_task():
    single, multi = CNN((1, 8, 8), 2), CNN((1, 8, 8), 2, n_experiences=5, multihead=True)
    assert n_params(multi) - n_params(single) == 4 * (128 * 2 + 2)


def test_image_models_reject_flat_inputs():
    with pytest.raises(ValueError, match="image inputs"):
        CNN((784,), 10)
    with pytest.raises(ValueError, match="image inputs"):
        ResNet18((784,), 10)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18"])
@pytest.mark.parametrize("multihead", [False, True])
def test_every_model_config_follows_the_contract(name, multihead, tmp_path):
    """Each conf/model node is instantiated whole (no key stripped) with the runner's arguments, and
    the model has what clexp/models/__init__.py promises."""
    from clexp.core.build import build_model, load_stream
    from tests.conftest import compose

    overrides = [f"model={name}", f"model.multihead={str(multihead).lower()}", "model.freeze_norm_stats=true",
                 "scenario.incremental=task"]
    if name == "resnet18":  # on 16×16 images (the smallest it takes): upsampled digits as an arrays file
        import numpy as np
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        d = load_digits()
        x = F.interpolate(torch.tensor(d.images, dtype=torch.float32)[:, None], size=16).numpy()
        np.savez(tmp_path / "digits16.npz", x_train=x[:1400], y_train=d.target[:1400], x_test=x[1400:],
                 y_test=d.target[1400:])
        overrides += ["model.width=2", "dataset=arrays", f"dataset.path={tmp_path / 'digits16.npz'}"]
    cfg = compose(overrides)
    assert {"multihead", "freeze_norm_stats"} <= set(cfg.model) and "name" not in cfg.model
    stream = load_stream(cfg)
    model = build_model(cfg, stream)
    T = len(stream)
    assert model.n_heads == (T if multihead else 1) and model.freeze_norm_stats is True
    assert isinstance(model.features, nn.Module) and model.active_task == 0
    heads = list(model.heads) if multihead else [model.head]
    assert len(heads) == model.n_heads and all(h.out_features == stream.n_outputs for h in heads)
    x = stream[1].x_test[:4]
    t = torch.ones(len(x), dtype=torch.long)
    out = model(x, t)
    assert out.shape == (len(x), stream.n_outputs)
    model.active_task = 1
    assert torch.equal(model(x), out)  # no task given: the active task's head
