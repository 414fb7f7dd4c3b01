"""The step-size check: SGD's stability limit on a quadratic (against iterating torch's own SGD), the
penalties' largest curvature (against the explicit Hessian), and the warning in the run that collapses."""

import logging

import pytest
import torch
from torch import nn

from clexp.methods.kfac_ewc import KroneckerPenalty
from clexp.methods.quadratic import QuadraticPenalty
from clexp.optim.stability import instability, sgd_limit


def _diverges(lr: float, h: float, **sgd) -> bool:
    """Iterate torch's SGD on ½·h·θ² from θ = 1: does |θ| grow?"""
    theta = torch.ones(1, requires_grad=True, dtype=torch.float64)
    opt = torch.optim.SGD([theta], lr=lr, **sgd)
    for _ in range(400):
        opt.zero_grad()
        (0.5 * h * theta ** 2).sum().backward()
        opt.step()
    return abs(float(theta.detach())) > 1.0


@pytest.mark.parametrize("sgd", [{}, {"momentum": 0.9}, {"momentum": 0.5, "nesterov": True},
                                 {"weight_decay": 0.5}])
def test_the_limit_is_where_torch_sgd_starts_to_diverge(sgd):
    lr = 0.05
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr, **sgd)
    limit, _ = sgd_limit(opt)
    assert not _diverges(lr, limit * 0.98, **sgd)
    assert _diverges(lr, limit * 1.02, **sgd)


def test_other_optimizers_are_not_checked():
    assert sgd_limit(torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1)) is None
    assert instability(1e9, torch.optim.Adam([nn.Parameter(torch.zeros(1))]), "method.lam", 1.0) is None


def test_the_warning_names_a_strength_below_the_limit():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05)  # limit 40
    assert instability(39.0, opt, "method.lam", 100.0) is None
    message = instability(80.0, opt, "method.lam", 100.0)
    assert "method.lam < 50" in message and "lr 0.05" in message


def test_quadratic_curvature_is_the_largest_diagonal_hessian_entry():
    model = nn.Linear(3, 2)
    pen = QuadraticPenalty(strength=7.0, factor=0.5)
    pen.bind(model)
    assert pen.max_curvature() is None  # nothing consolidated
    omega = {n: torch.rand_like(p) for n, p in model.named_parameters()}
    pen.consolidate(omega, model)
    params = tuple(p.detach().clone().requires_grad_() for p in model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def value(*ps):
        for m_p, p in zip(model.parameters(), ps):
            m_p.data = p
        return sum(pen.scale * (pen.importance(n) * (p - pen.anchor(n)) ** 2).sum() for n, p in zip(names, ps))

    hess = torch.autograd.functional.hessian(value, params)
    diag = torch.cat([hess[i][i].reshape(p.numel(), p.numel()).diagonal() for i, p in enumerate(params)])
    assert pen.max_curvature() == pytest.approx(float(diag.max()), rel=1e-5)


def test_kronecker_curvature_is_the_top_eigenvalue_of_lambda_a_kron_g():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2))
    pen = KroneckerPenalty(strength=3.0)
    pen.bind(model)
    a, g = torch.randn(4, 4), torch.randn(2, 2)
    A, G = a @ a.T, g @ g.T
    pen.consolidate({"0": {"A": A, "G": G}}, {}, model)
    top = float(torch.linalg.eigvalsh(3.0 * torch.kron(A, G).double())[-1])
    assert pen.max_curvature() == pytest.approx(top, rel=1e-6)


@pytest.mark.slow
def test_the_run_that_collapses_is_warned_about_and_the_default_is_not(tmp_path, caplog):
    from tests.conftest import run_stream

    base = ["method=ewc", "scenario.incremental=domain", "train.epochs=1", "plots=false", "logger=none",
            "trainer.enable_progress_bar=false"]
    with caplog.at_level(logging.WARNING, logger="clexp"):
        collapsed = run_stream(tmp_path / "stiff", [*base, "optimizer=sgd", "method.lam=100"], fast=False)
    warned = [r.getMessage() for r in caplog.records if "stiffer than SGD" in r.getMessage()]
    assert warned and collapsed["metrics"]["avg_acc"] < 0.6  # the collapse it announces
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="clexp"):  # the default: Adam, whose steps stay bounded
        default = run_stream(tmp_path / "default", base, fast=False)
    assert not [r for r in caplog.records if "stiffer than SGD" in r.getMessage()]
    assert default["metrics"]["avg_acc"] > 0.7
