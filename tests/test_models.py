"""Backbones and heads: shapes on every input size, per-sample head selection."""

import pytest
import torch

from clexp.models import CNN, MLP, ResNet18


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)])
def test_cnn_on_every_image_size(shape):
    model = CNN(shape, 10)
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_resnet18_reduced_size_and_output():
    model = ResNet18((3, 32, 32), 100)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.2e6  # GEM's reduced ResNet-18: ~1.1M


def test_multihead_picks_each_samples_head():
    torch.manual_seed(0)
    model = MLP((4,), 3, hidden=[5], n_heads=3)
    x = torch.randn(6, 4)
    t = torch.tensor([0, 1, 2, 2, 1, 0])
    mixed = model(x, t)
    for i in range(6):
        assert torch.allclose(mixed[i], model(x[i:i + 1], int(t[i]))[0])
    model.active_task = 2
    assert torch.allclose(model(x), model(x, 2))


def test_image_models_reject_flat_inputs():
    with pytest.raises(ValueError, match="image inputs"):
        CNN((784,), 10)
