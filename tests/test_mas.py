"""MAS importance against the per-sample oracle (tests/oracles.py): mean over inputs of |∂‖f(x)‖²/∂θ|,
over the shared test problems (tests/cases.py)."""

import pytest
import torch

from clexp.curvature import mas_importance
from tests import oracles
from tests.cases import BY_ID, CASES, KEYWORDS, MASKS
from tests.oracles import rel_err

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny float64 models (tests/conftest.py)


@pytest.mark.parametrize("case", [*CASES, KEYWORDS], ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_mas_matches_brute_force(case, mask):
    model, x = case.model(), case.inputs()
    assert rel_err(mas_importance(model, x, chunk_size=4, output_mask=mask), oracles.mas(model, x, mask)) < 1e-8


def test_mas_is_per_sample_not_the_batch_gradient():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs(32)
    ours = mas_importance(model, x)
    z = model(x)
    batch = torch.autograd.grad(z.pow(2).sum(1).mean(), list(model.parameters()))
    assert all((ours[k] >= g.abs() - 1e-12).all() for (k, _), g in zip(model.named_parameters(), batch))
    assert sum(ours[k].sum() for k in ours) > 1.5 * sum(g.abs().sum() for g in batch)


def test_mas_chunking_state_and_unused_head():
    case = BY_ID["multihead"]
    model = case.model().train()
    x = case.inputs(10)
    small, big = mas_importance(model, x, chunk_size=3), mas_importance(model, x, chunk_size=100)
    assert rel_err(small, big) < 1e-12
    assert small["heads.1.weight"].abs().sum() == 0 and small["heads.0.weight"].abs().sum() > 0
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
