"""Natural-gradient descent: one step to the optimum of a linear regression with orthogonal features
(the empirical Fisher does not get there), the sampled Fisher fed by the callback, a whole run."""

import pytest
import pytorch_lightning as pl
import torch

from clexp.core.module import ContinualModule
from clexp.curvature import diag_fisher
from clexp.data.loader import TensorLoader
from clexp.data.stream import Experience
from clexp.models import MLP
from clexp.optim import NGD
from clexp.optim.ngd_fisher import NaturalGradientFisher
from tests.conftest import run_stream


def regression(seed=0, n=64):
    """y = X w* + b* + noise with centred, orthogonal (whitened) features."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    X = X - X.mean(0)
    q, _ = torch.linalg.qr(X)
    X = q * n**0.5 * torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)  # orthogonal, different scales
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.7 + 0.1 * torch.randn(n, generator=g,
                                                                                           dtype=torch.float64)
    return X, y


def fit_one_step(fisher_kind):
    X, y = regression()
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = NGD([w, b], lr=1.0, damping=0.0, beta=0.0)
    residual = X @ w + b - y
    if fisher_kind == "exact":  # Gaussian likelihood N(f(x), 1): F = E[x²] (and 1 for the bias)
        opt.update_fisher([X.pow(2).mean(0), torch.ones((), dtype=torch.float64)])
    else:  # empirical: mean of the per-sample squared gradients at the current residuals
        opt.update_fisher([(residual[:, None] * X).pow(2).mean(0).detach(), residual.pow(2).mean().detach()])
    loss = 0.5 * residual.pow(2).mean()
    loss.backward()
    opt.step()
    optimum = torch.linalg.lstsq(torch.cat([X, torch.ones(len(X), 1, dtype=torch.float64)], 1), y[:, None]).solution
    return torch.cat([w.detach(), b.detach()[None]]), optimum.flatten()


def test_natural_gradient_reaches_the_optimum_in_one_step():
    theta, optimum = fit_one_step("exact")
    assert torch.allclose(theta, optimum, atol=1e-10)


def test_empirical_fisher_preconditioning_does_not():
    theta, optimum = fit_one_step("empirical")
    assert (theta - optimum).abs().max() > 0.1


def test_callback_feeds_the_sampled_fisher_of_the_batch():
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[5])
    module = ContinualModule(model, lambda p: NGD(p, lr=0.1, beta=0.0))
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    module.current_experience = Experience(0, [0, 1, 2], x, y, x, y, [0, 1, 2])
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[NaturalGradientFisher(update_every=1, seed=5)])
    trainer.fit(module, TensorLoader((x, y, torch.zeros(16, dtype=torch.long)), 16, shuffle=False))
    reference = MLP((6,), 3, hidden=[5])
    reference.load_state_dict(start)
    expected = diag_fisher(reference, x, variant="sampled", generator=torch.Generator().manual_seed(5))
    opt = trainer.optimizers[0]
    for n, p in model.named_parameters():
        assert torch.allclose(opt.state[p]["fisher"], expected[n], rtol=1e-5, atol=1e-9)


@pytest.mark.slow
def test_ngd_trains_a_whole_stream(tmp_path):
    results = run_stream(tmp_path, ["optimizer=ngd", "optimizer.lr=0.01", "scenario.incremental=task"])
    assert results["metrics"]["avg_acc"] > 0.8


def test_kfac_update_is_the_kronecker_preconditioned_gradient():
    """(G + √δ I)⁻¹ ∇W̄ (A + √δ I)⁻¹ equals the inverse of the explicit A ⊗ G block (δ = 0) applied."""
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        layer = torch.nn.Linear(3, 2)
        opt = NGD(layer.parameters(), lr=1.0, damping=0.0, beta=0.0, fisher="kfac")
        M = torch.randn(4, 4)
        N = torch.randn(2, 2)
        A, G = M @ M.t() + torch.eye(4), N @ N.t() + torch.eye(2)
        opt.update_kfac([(layer.weight, layer.bias, A, G)])
        layer.weight.grad, layer.bias.grad = torch.randn(2, 3), torch.randn(2)
        grad = torch.cat([layer.weight.grad, layer.bias.grad[:, None]], 1)
        before = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1).clone()
        opt.step()
        after = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
        expected = torch.linalg.solve(torch.kron(A, G), grad.t().reshape(-1))  # column-major vec
        assert torch.allclose(before - after, expected.reshape(4, 2).t(), atol=1e-10)
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.slow
def test_ngd_with_kfac_trains_a_whole_stream(tmp_path):
    results = run_stream(tmp_path, ["optimizer=ngd", "optimizer.fisher=kfac", "optimizer.lr=0.1",
                                    "scenario.incremental=task"])
    assert results["metrics"]["avg_acc"] > 0.8
