"""L2's Ω: 1 on what training has used, 0 on heads (and outputs) no trained experience has used, so
those train freely later instead of being pulled back to their random initialisation."""

import copy

import pytorch_lightning as pl
import torch

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.methods.l2 import L2Penalty, UniformImportance
from clexp.models import MLP


def data(task, n=32, seed=0, classes=(0, 1)):
    g = torch.Generator().manual_seed(seed + 100 * task)
    x = torch.randn(n, 6, generator=g) + task
    y = torch.tensor(classes)[torch.randint(0, len(classes), (n,), generator=g)]
    return x, y, torch.full((n,), task, dtype=torch.long)


def fit(module, task, callbacks, steps=20, **kw):
    module.experience.fill_(task)
    module.model.active_task = task
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, TensorLoader(data(task, **kw), batch_size=8, shuffle=True, seed=task))


def omega(pen, prefix):
    return torch.cat([pen.importance(n).reshape(-1) for n in pen.names if n.startswith(prefix)])


class PenaltyGradientAtTheEnd(pl.Callback):
    """Before the boundary consolidation: the penalty's gradient at the final parameters, by name."""

    def on_train_end(self, trainer, pl_module):
        model, pen = pl_module.model, pl_module.regularizer
        for p in model.parameters():
            p.grad = None
        pen.add_gradient(model)
        self.grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad(set_to_none=True)


def test_multihead_unused_heads_get_zero_importance_and_train_freely():
    torch.manual_seed(0)
    model = MLP((6,), 2, hidden=[8], n_experiences=3, multihead=True)
    pen = L2Penalty(lam=100.0)
    module = ContinualModule(model, lambda p: torch.optim.Adam(p, lr=0.02), pen)
    importance = UniformImportance()
    fit(module, 0, [importance])
    assert omega(pen, "features").eq(1).all() and omega(pen, "heads.0.").eq(1).all()
    assert omega(pen, "heads.1.").eq(0).all() and omega(pen, "heads.2.").eq(0).all()

    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    spy = PenaltyGradientAtTheEnd()
    fit(module, 1, [spy, importance])  # the spy runs before the consolidation
    head1 = torch.cat([(p.detach() - start[n]).reshape(-1) for n, p in model.named_parameters()
                       if n.startswith("heads.1.")])
    assert head1.norm() > 0.1  # head 1 was trained ...
    for n, g in spy.grads.items():  # ... and nothing pulled it (or head 2) back to its initialisation
        if n.startswith(("heads.1.", "heads.2.")):
            assert torch.equal(g, torch.zeros_like(g)), n
    assert sum(g.abs().sum() for n, g in spy.grads.items() if n.startswith("features")) > 0  # the backbone is held
    for n, p in model.named_parameters():  # head 0 unused by experience 1: it stays at its anchor
        if n.startswith("heads.0."):
            assert torch.equal(p.detach(), start[n]), n
    # after experience 1: heads 0 and 1 used (head 0 still, though it did not move now), head 2 not
    assert omega(pen, "features").eq(1).all() and omega(pen, "heads.0.").eq(1).all()
    assert omega(pen, "heads.1.").eq(1).all() and omega(pen, "heads.2.").eq(0).all()


def test_masked_shared_head_future_outputs_get_zero_importance():
    torch.manual_seed(0)
    model = MLP((6,), 4, hidden=[8])
    pen = L2Penalty(lam=1.0)
    masks = torch.tensor([[True, True, False, False], [False, False, True, True]])
    module = ContinualModule(model, lambda p: torch.optim.Adam(p, lr=0.02), pen, task_masks=masks)
    fit(module, 0, [UniformImportance()], classes=(0, 1))
    w, b = pen.importance("head.weight"), pen.importance("head.bias")
    assert w[:2].eq(1).all() and b[:2].eq(1).all()
    assert w[2:].eq(0).all() and b[2:].eq(0).all()  # the outputs of experience 1: no gradient yet
    assert omega(pen, "features").eq(1).all()


def test_importance_is_the_same_after_a_resume_in_the_middle_of_experience_0():
    def new_module():
        torch.manual_seed(0)
        return ContinualModule(MLP((6,), 2, hidden=[8], n_experiences=3, multihead=True),
                               lambda p: torch.optim.SGD(p, lr=0.1), L2Penalty(lam=1.0))

    full = new_module()
    init = copy.deepcopy(full.model.state_dict())
    fit(full, 0, [UniformImportance()], steps=8)
    class Killed(UniformImportance):
        def on_train_end(self, trainer, pl_module):
            pass  # the run dies before the boundary; its checkpoint holds the module state

    half = new_module()
    fit(half, 0, [Killed()], steps=4)
    resumed = new_module()
    resumed.load_state_dict(half.state_dict())
    for n in resumed.regularizer.names:  # θ at the start of experience 0 travelled in the anchor buffers
        assert torch.equal(resumed.regularizer.anchor(n), init[n])
    resumed.resumed_mid_experience = True
    fit(resumed, 0, [UniformImportance()], steps=4)
    for n in full.regularizer.names:
        assert torch.equal(resumed.regularizer.importance(n), full.regularizer.importance(n)), n
