"""SI's path integral: closed form on a toy quadratic, and the real callback inside Lightning
against a plain-PyTorch replay of the same steps (SGD with momentum, Adam, with a penalty active)."""

import copy

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.data.stream import Experience
from clexp.methods.si import PathIntegral, PathIntegralPenalty, accumulate, importance
from clexp.models import MLP


def test_path_integral_on_a_quadratic_matches_the_closed_form():
    # L(θ) = ½ Σ h (θ − a)², gradient descent with step η for n steps
    h = torch.tensor([0.5, 2.0, 4.0])
    a = torch.tensor([1.0, -1.0, 0.5])
    theta = torch.tensor([3.0, 2.0, -1.0])
    eta, n = 0.05, 40
    start = theta.clone()
    omega, prev = [torch.zeros(3)], [theta.clone()]
    for _ in range(n):
        g = h * (theta - a)
        theta = theta - eta * g
        accumulate(omega, prev, [theta], [g])
    r = 1 - eta * h
    d0 = start - a
    closed = eta * h**2 * d0**2 * (1 - r ** (2 * n)) / (1 - r**2)
    assert torch.allclose(omega[0], closed, rtol=1e-5)
    # for a small step the path integral approaches the loss decrease per parameter
    loss = lambda th: 0.5 * h * (th - a) ** 2
    assert torch.allclose(omega[0], loss(start) - loss(theta), rtol=0.15)
    big_omega = importance(omega, [start], [theta], xi=0.1)[0]
    assert torch.allclose(big_omega, omega[0] / ((theta - start) ** 2 + 0.1))


def make_module(optimizer, seed=0):
    torch.manual_seed(seed)
    model = MLP((5,), 3, hidden=[4])
    pen = PathIntegralPenalty(strength=0.5)
    module = ContinualModule(model, optimizer, pen)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(24, 5, generator=g), torch.randint(0, 3, (24,), generator=g)
    module.current_experience = Experience(0, [0, 1, 2], x, y, x, y, [0, 1, 2])
    return module, x, y


def fit(module, x, y, epochs):
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[PathIntegral(xi=0.1, plot=False)])
    loader = TensorLoader((x, y, torch.zeros(len(y), dtype=torch.long)), batch_size=8, shuffle=False)
    trainer.fit(module, loader)


def replay(model, pen, optimizer, x, y, epochs, use_total=False):
    """The same steps in plain PyTorch; ω from the unregularized gradient (or, to show the difference,
    the total one), written out directly."""
    model = copy.deepcopy(model)
    opt = optimizer(model.parameters())
    omega = [torch.zeros_like(p) for p in model.parameters()]
    for _ in range(epochs):
        for b in range(3):
            xb, yb = x[8 * b: 8 * b + 8], y[8 * b: 8 * b + 8]
            opt.zero_grad()
            task = F.cross_entropy(model(xb), yb)
            g_task = torch.autograd.grad(task, list(model.parameters()), retain_graph=True)
            (task + pen(model)).backward()
            if use_total:
                g_task = [p.grad.clone() for p in model.parameters()]
            before = [p.detach().clone() for p in model.parameters()]
            opt.step()
            for o, g, p, b0 in zip(omega, g_task, model.parameters(), before):
                o -= g * (p.detach() - b0)
    return omega, model


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_callback_matches_replay_with_active_penalty(name):
    optimizer = {
        "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    }[name]
    module, x, y = make_module(optimizer)
    reg = module.regularizer
    # an active penalty from an earlier experience, so g_total ≠ g_task
    with torch.no_grad():
        imps = {n: torch.rand_like(p) * 3 for n, p in module.model.named_parameters()}
        reg.consolidate(imps, module.model)
        for p in module.model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    pen_copy = copy.deepcopy(reg)
    start = [p.detach().clone() for p in module.model.parameters()]
    omega_expected, replayed = replay(module.model, pen_copy, optimizer, x, y, epochs=2)
    omega_before = reg.importance(reg.names[0]).clone()

    fit(module, x, y, epochs=2)
    for p, q in zip(module.model.parameters(), replayed.parameters()):
        assert torch.allclose(p, q, atol=1e-6)  # the same trajectory
    # the consolidated Ω added exactly ω/((θ_end − θ_start)² + ξ)
    name0 = reg.names[0]
    p0 = dict(module.model.named_parameters())[name0].detach()
    added = reg.importance(name0) - omega_before
    expected = omega_expected[0] / ((p0 - start[0]) ** 2 + 0.1)
    assert torch.allclose(added, expected, rtol=1e-4, atol=1e-6)
    for o, e in zip(reg.running("omega"), omega_expected):
        assert torch.allclose(o, e, rtol=1e-4, atol=1e-7)


def test_total_gradient_would_give_a_different_omega():
    """Guards the test above: with a strong penalty, ω from g_total differs from ω from g_task."""
    optimizer = lambda p: torch.optim.SGD(p, lr=0.1)
    module, x, y = make_module(optimizer)
    reg = module.regularizer
    with torch.no_grad():
        reg.consolidate({n: torch.ones_like(p) * 5 for n, p in module.model.named_parameters()}, module.model)
        for p in module.model.parameters():
            p.add_(0.5)
    omega_task, _ = replay(module.model, copy.deepcopy(reg), optimizer, x, y, epochs=1)
    omega_total, _ = replay(module.model, copy.deepcopy(reg), optimizer, x, y, epochs=1, use_total=True)
    fit(module, x, y, epochs=1)
    got = reg.running("omega")[0]
    assert torch.allclose(got, omega_task[0], rtol=1e-4, atol=1e-7)
    assert (got - omega_total[0]).abs().max() > 100 * (got - omega_task[0]).abs().max() + 1e-4


def test_in_place_accumulate_matches_the_straightforward_update():
    """ω += −g·(θ − θ_prev), θ_prev ← θ, written without temporaries, against the formula."""
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (3,), (2, 4)]
    omega = [torch.randn(s, generator=g) for s in shapes]
    prev = [torch.randn(s, generator=g) for s in shapes]
    params = [torch.randn(s, generator=g) for s in shapes]
    grads = [torch.randn(s, generator=g) for s in shapes]
    expected = [o - gr * (p - pv) for o, gr, p, pv in zip(omega, grads, params, prev)]
    accumulate(omega, prev, params, grads)
    for o, e, pv, p in zip(omega, expected, prev, params):
        assert torch.allclose(o, e, rtol=1e-6, atol=1e-7)
        assert torch.equal(pv, p)
