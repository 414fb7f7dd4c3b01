"""MAS importance against a direct per-sample loop: mean over inputs of |∂‖f(x)‖²/∂θ|."""

import pytest
import torch

from clexp.curvature import mas_importance
from tests.test_fisher import MASK, MODELS, TWO, MultiHead, inputs, rel_err, seeded


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def brute_mas(model, x, mask=None):
    model.eval()
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for _, p in named]
    for n in range(len(x)):
        z = model(x[n : n + 1])[0]
        if mask is not None:
            z = z[mask]
        g = torch.autograd.grad(z.pow(2).sum(), [p for _, p in named], allow_unused=True)
        for t, gi in zip(total, g):
            if gi is not None:
                t += gi.abs()
    return {name: t / len(x) for (name, _), t in zip(named, total)}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mask", [None, MASK, TWO], ids=["all", "mask3", "mask2"])
def test_mas_matches_brute_force(name, mask):
    model, x = MODELS[name](), inputs(name)
    assert rel_err(mas_importance(model, x, chunk_size=4, output_mask=mask), brute_mas(model, x, mask)) < 1e-8


def test_mas_is_per_sample_not_the_batch_gradient():
    model, x = MODELS["mlp"](), inputs("mlp", 32)
    ours = mas_importance(model, x)
    z = model(x)
    batch = torch.autograd.grad(z.pow(2).sum(1).mean(), list(model.parameters()))
    assert all((ours[k] >= g.abs() - 1e-12).all() for (k, _), g in zip(model.named_parameters(), batch))
    assert sum(ours[k].sum() for k in ours) > 1.5 * sum(g.abs().sum() for g in batch)


def test_mas_chunking_state_and_unused_head():
    model = seeded(MultiHead).train()
    x = inputs("mlp", 10)
    small, big = mas_importance(model, x, chunk_size=3), mas_importance(model, x, chunk_size=100)
    assert rel_err(small, big) < 1e-12
    assert small["heads.1.weight"].abs().sum() == 0 and small["heads.0.weight"].abs().sum() > 0
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
