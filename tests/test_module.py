"""ContinualModule's written-out training step: one optimizer step per batch, the penalty's gradient
in the step, gradient clipping by norm."""

import pytorch_lightning as pl
import torch

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.methods.quadratic import QuadraticPenalty
from clexp.models import MLP


def fit(module, steps=3, n=24):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, TensorLoader((x, y, torch.zeros(n, dtype=torch.long)), batch_size=8, shuffle=False))
    return trainer, x, y


def test_one_sgd_step_per_batch_with_the_penalty_gradient():
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[5])
    pen = QuadraticPenalty(strength=2.0, factor=0.5, mode="online")
    module = ContinualModule(model, lambda p: torch.optim.SGD(p, lr=0.1), pen)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    pen.consolidate({n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}, model)
    with torch.no_grad():
        for p in model.parameters():
            p.sub_(0.3)
    start = [p.detach().clone() for p in model.parameters()]
    trainer, x, y = fit(module, steps=1)
    assert trainer.global_step == 1
    # the same step by hand: task gradient + 2·s·Ω(θ − θ*), s = λ/2
    ref = MLP((6,), 3, hidden=[5])
    with torch.no_grad():
        for r, s in zip(ref.parameters(), start):
            r.copy_(s)
    loss = torch.nn.functional.cross_entropy(ref(x[:8]), y[:8])
    loss.backward()
    for r, p, s in zip(ref.parameters(), model.parameters(), start):
        expected = s - 0.1 * (r.grad + 2 * 1.0 * 0.5 * (s - (s + 0.3)))
        assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_gradient_clip_val_bounds_the_update():
    torch.manual_seed(0)
    model = MLP((6,), 3, hidden=[5])
    start = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    module = ContinualModule(model, lambda p: torch.optim.SGD(p, lr=1.0), gradient_clip_val=1e-3)
    fit(module, steps=1)
    moved = torch.cat([p.detach().reshape(-1) for p in model.parameters()]) - start
    assert 0 < moved.norm() <= 1e-3 * (1 + 1e-4)
    torch.manual_seed(0)
    free = MLP((6,), 3, hidden=[5])
    fit(ContinualModule(free, lambda p: torch.optim.SGD(p, lr=1.0)), steps=1)
    assert (torch.cat([p.detach().reshape(-1) for p in free.parameters()]) - start).norm() > 1e-2


def test_loss_scale_is_a_device_tensor_only_under_a_scaler():
    """The penalty's gradient and SI's task gradient follow mixed precision's loss scale, read as a
    tensor (no host sync); without a scaler there is nothing to scale."""
    from types import SimpleNamespace

    from clexp.core.module import loss_scale

    assert loss_scale(None, torch.device("cpu")) is None
    assert loss_scale(SimpleNamespace(precision_plugin=object()), torch.device("cpu")) is None
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scale = loss_scale(SimpleNamespace(precision_plugin=SimpleNamespace(scaler=scaler)), torch.device("cpu"))
    assert isinstance(scale, torch.Tensor) and scale.dim() == 0 and scale.item() == 1024.0
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert loss_scale(SimpleNamespace(precision_plugin=SimpleNamespace(scaler=off)), torch.device("cpu")) is None
