"""The diagonal Fisher and MAS against brute-force per-sample loops written here (float64)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clexp.importance import diag_fisher, mas_importance
from clexp.models import MLP

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(autouse=True)
def float64():
    """Tight comparisons in double precision; the default dtype is restored for the other tests."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def cnn(bias=True):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=bias), nn.ReLU(), nn.Conv2d(4, 3, 3, stride=2, bias=bias),
                         nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 5))


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 5))


def with_norms():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.LayerNorm(27),
                         nn.Linear(27, 5))


class SequenceModel(nn.Module):
    """A Linear applied to N × L × D inputs (per-sample gradient sums over positions)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 6)
        self.out = nn.Linear(6, 5)

    def forward(self, x):
        return self.out(torch.relu(self.proj(x.reshape(len(x), 3, 4))).mean(1))


def inputs(model_name, n=9):
    g = torch.Generator().manual_seed(1)
    if model_name == "mlp":
        return torch.randn(n, 12, generator=g)
    if model_name == "seq":
        return torch.randn(n, 12, generator=g)
    return torch.randn(n, 2, 5, 5, generator=g)


MODELS = {"mlp": mlp, "cnn": cnn, "cnn_nobias": lambda: cnn(False), "norms": with_norms, "seq": SequenceModel}


def brute(model, x, y=None, variant="exact", mask=None):
    """One backward per sample and class, the definition itself."""
    model.eval()
    params = [p for p in model.parameters()]
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        z = model(x[n : n + 1])[0]
        if mask is not None:
            z = z.masked_fill(~mask, float("-inf"))
        logp = F.log_softmax(z, 0)
        classes = range(len(z)) if variant == "exact" else [int(y[n])]
        for c in classes:
            if mask is not None and not mask[c]:
                continue
            g = torch.autograd.grad(logp[c], params, retain_graph=True)
            w = logp[c].exp().item() if variant == "exact" else 1.0
            for t, gi in zip(total, g):
                t += w * gi**2
    return {name: t / len(x) for (name, _), t in zip(model.named_parameters(), total)}


def rel_err(a, b):
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in b)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("variant", ["exact", "empirical"])
def test_matches_brute_force(name, masked, variant):
    model = MODELS[name]()
    x = inputs(name)
    mask = torch.tensor([True, False, True, True, False]) if masked else None
    y = torch.tensor([0, 2, 3, 0, 2, 3, 3, 0, 2])
    ours = diag_fisher(model, x, y, variant=variant, chunk_size=4, output_mask=mask)
    assert rel_err(ours, brute(model, x, y, variant, mask)) < 1e-5


def test_sampled_approaches_exact():
    model, x = mlp(), inputs("mlp", 16)
    exact = diag_fisher(model, x)
    errs = [rel_err(diag_fisher(model, x, variant="sampled", samples=s, generator=torch.Generator().manual_seed(0)),
                    exact) for s in (1, 30, 3000)]
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.05


def test_batch_variant_is_the_squared_chunk_mean_gradient():
    model, x = mlp(), inputs("mlp", 32)
    y = torch.arange(32) % 5
    empirical = diag_fisher(model, x, y, variant="empirical")
    one = diag_fisher(model, x, y, variant="batch", chunk_size=1)
    assert rel_err(one, empirical) < 1e-10  # batches of one: the same thing
    big = diag_fisher(model, x, y, variant="batch", chunk_size=16)
    ratio = sum(v.sum() for v in big.values()) / sum(v.sum() for v in empirical.values())
    assert ratio < 0.5  # squaring a mean cancels: roughly 1/B of the per-sample Fisher


def test_chunking_does_not_change_the_result():
    model, x = cnn(), inputs("cnn", 10)
    assert rel_err(diag_fisher(model, x, chunk_size=3), diag_fisher(model, x, chunk_size=100)) < 1e-12


def test_unused_head_gets_zeros_and_state_is_restored():
    torch.manual_seed(0)
    model = MLP((12,), 3, hidden=[5], n_heads=2, dropout=0.2)
    model.train()
    x = inputs("mlp")
    fisher = diag_fisher(model, x)
    assert fisher["heads.1.weight"].abs().sum() == 0 and fisher["heads.0.weight"].abs().sum() > 0
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_gaussian_free_closed_form_zero_mean_score():
    """Σ_c p_c ∇log p_c = 0: the exact Fisher's vectors sum to zero, checked through a linear model."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False)
    x = torch.randn(5, 4)
    p = F.softmax(lin(x), 1)
    score_mean = sum(p[:, c:c + 1, None] * ((torch.eye(3)[c] - p)[:, :, None] * x[:, None, :]) for c in range(3))
    assert score_mean.abs().max() < 1e-12
    # and the exact Fisher of a linear softmax model is the closed form Σ_n (diag p − ppᵀ)_cc x_n²
    closed = ((p - p**2).t() @ x**2) / 5
    assert torch.allclose(diag_fisher(lin, x)["weight"], closed, rtol=1e-10)


def test_errors():
    model, x = mlp(), inputs("mlp")
    with pytest.raises(ValueError, match="does not exist"):
        diag_fisher(model, x, variant="bogus")
    with pytest.raises(ValueError, match="samples"):
        diag_fisher(model, x, variant="sampled", samples=0)
    with pytest.raises(ValueError, match="targets"):
        diag_fisher(model, x, variant="empirical")


def brute_mas(model, x, mask=None):
    model.eval()
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        z = model(x[n : n + 1])[0]
        if mask is not None:
            z = z[mask]
        g = torch.autograd.grad(z.pow(2).sum(), params)
        for t, gi in zip(total, g):
            t += gi.abs()
    return {name: t / len(x) for (name, _), t in zip(model.named_parameters(), total)}


@pytest.mark.parametrize("name", ["mlp", "cnn", "norms", "seq"])
@pytest.mark.parametrize("masked", [False, True])
def test_mas_matches_brute_force(name, masked):
    model, x = MODELS[name](), inputs(name)
    mask = torch.tensor([True, False, True, True, False]) if masked else None
    assert rel_err(mas_importance(model, x, chunk_size=4, output_mask=mask), brute_mas(model, x, mask)) < 1e-6
