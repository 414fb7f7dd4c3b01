"""LwF: with several heads the backbone runs once per step (BatchNorm statistics move once, the
student's features come from the step's own forward); in task-IL with a shared masked head each old
task is distilled over its own outputs; class-IL / domain-IL keep one softmax over the old outputs."""

import copy
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.methods.lwf import Distillation, DistillationTeacher
from clexp.models import CNN, MLP


def perturb(model, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def kl(new, old, T):
    """T²·mean_n Σ_c p_old (log p_old − log p_new), written out."""
    p_old = F.softmax(old / T, dim=1)
    return T * T * (p_old * (p_old.log() - F.log_softmax(new / T, dim=1))).sum(1).mean()


def bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def one_step(module, x, t, y):
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, TensorLoader((x, y, t), batch_size=len(x), shuffle=False))


def test_multihead_step_runs_the_backbone_once_batchnorm_moves_as_after_one_forward():
    torch.manual_seed(0)
    model = CNN((1, 8, 8), 2, channels=[4], hidden=[6], n_experiences=3, multihead=True, batch_norm=True)
    lwf = Distillation(strength=1.0, temperature=2.0)
    module = ContinualModule(model, lambda p: torch.optim.SGD(p, lr=0.1), lwf)
    assert lwf.needs_features
    with torch.no_grad():  # BatchNorm statistics that are not the defaults, then experience 0 is learnt
        model(torch.randn(16, 1, 8, 8), 0)
    lwf.consolidate(model, output_classes=[0, 1], task=0)
    perturb(model, 1, scale=0.1)
    module.experience.fill_(1)
    model.active_task = 1
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 2, (8,), generator=g)
    t = torch.ones(8, dtype=torch.long)
    reference = copy.deepcopy(model).train()
    with torch.no_grad():
        reference(x, t)  # one forward in train mode
    expected = bn_state(reference)
    seen = {}
    forward = lwf.forward

    def spy(*args, **kwargs):
        seen["features"] = kwargs.get("features")
        seen["value"] = forward(*args, **kwargs)
        return seen["value"]

    lwf.forward = spy
    one_step(module, x, t, y)
    got = bn_state(model)
    assert got.keys() == expected.keys() and got
    for k in expected:
        assert torch.equal(got[k], expected[k]), k
    # the term used the step's own features (train mode: batch statistics, pre-step parameters)
    with torch.no_grad():
        h = reference.features(x)
        value = sum(kl(reference.heads[k](h), lwf.teacher(x, k), 2.0) for k in (0,))
    assert seen["features"] is not None and seen["features"].requires_grad
    assert torch.allclose(seen["value"].detach(), value, rtol=1e-5)
    assert module._features.output is None  # nothing kept after the step


def test_features_passed_give_the_same_term_and_gradient_as_running_the_backbone():
    torch.manual_seed(0)
    model = MLP((6,), 2, hidden=[5], n_experiences=3, multihead=True)
    lwf = Distillation(strength=0.7, temperature=2.0)
    lwf.bind(model)
    lwf.consolidate(model, output_classes=[0, 1], task=0)
    lwf.consolidate(model, output_classes=[0, 1], task=1)
    perturb(model, 3)
    x, t = torch.randn(5, 6), torch.full((5,), 2)
    h = model.features(x)
    with_features = lwf(model, x, t, model.heads[2](h), features=h)
    g1 = torch.autograd.grad(with_features, list(model.parameters()), allow_unused=True)
    without = lwf(model, x, t, model(x, t))
    g2 = torch.autograd.grad(without, list(model.parameters()), allow_unused=True)
    expected = 0.7 * sum(kl(model.heads[k](h), lwf.teacher(x, k), 2.0) for k in (0, 1))
    assert torch.allclose(with_features, expected, rtol=1e-5)
    assert torch.allclose(without, expected, rtol=1e-5)
    for a, b in zip(g1, g2):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)


def test_a_regularizer_that_needs_features_on_a_model_without_them_is_refused():
    lwf = Distillation()

    class Bare(torch.nn.Module):  # heads but no `features`
        n_heads = 2

        def __init__(self):
            super().__init__()
            self.heads = torch.nn.ModuleList(torch.nn.Linear(6, 2) for _ in range(2))

        def forward(self, x, task=None):
            return self.heads[0](x)

    with pytest.raises(TypeError, match="model.features"):
        ContinualModule(Bare(), lambda p: torch.optim.SGD(p, lr=0.1), lwf)


@pytest.mark.parametrize("groups", [([0, 1], [2, 3], [4, 5]), ([0, 1], [2, 3, 4])])
def test_task_il_masked_head_distils_each_old_task_over_its_own_outputs(groups):
    torch.manual_seed(0)
    model = MLP((6,), 6, hidden=[5])
    lwf = Distillation(strength=0.7, temperature=2.0)
    lwf.bind(model)
    old_tasks = groups[:-1] if len(groups) == 3 else groups
    for task, outputs in enumerate(old_tasks):
        perturb(model, 10 + task)
        lwf.consolidate(model, output_classes=outputs, task=task, per_task=True)
    perturb(model, 5)
    x, t = torch.randn(8, 6), torch.full((8,), len(old_tasks))
    raw = model(x)
    value = lwf(model, x, t, raw)
    with torch.no_grad():
        old = lwf.teacher(x)
    expected = 0.7 * sum(kl(raw[:, outputs], old[:, outputs], 2.0) for outputs in old_tasks)
    assert torch.allclose(value, expected, rtol=1e-5)
    joint = [c for outputs in old_tasks for c in outputs]
    assert not torch.allclose(value, 0.7 * kl(raw[:, joint], old[:, joint], 2.0), rtol=1e-3)
    value.backward()
    assert model.head.weight.grad[[c for c in range(6) if c not in joint]].abs().max() == 0


def test_class_il_keeps_one_softmax_over_every_old_output():
    torch.manual_seed(0)
    model = MLP((6,), 6, hidden=[5])
    lwf = Distillation(strength=1.0, temperature=3.0)
    lwf.bind(model)
    lwf.consolidate(model, output_classes=[0, 1], task=0)
    lwf.consolidate(model, output_classes=[2, 3], task=1)
    perturb(model, 5)
    x = torch.randn(8, 6)
    raw = model(x)
    with torch.no_grad():
        old = lwf.teacher(x)
    value = lwf(model, x, torch.full((8,), 2), raw)
    assert torch.allclose(value, kl(raw[:, :4], old[:, :4], 3.0), rtol=1e-5)


def test_callback_distils_per_task_exactly_when_the_module_masks_a_shared_head():
    for masks, per_task in ((torch.ones(2, 4, dtype=torch.bool), True), (None, False)):
        model = MLP((6,), 4, hidden=[5])
        lwf = Distillation()
        lwf.bind(model)
        module = SimpleNamespace(model=model, regularizer=lwf, task_masks=masks)
        for task, outputs in enumerate(([0, 1], [2, 3])):
            module.current_experience = SimpleNamespace(index=task, output_classes=outputs)
            DistillationTeacher().on_train_end(None, module)
        assert lwf.output_group.tolist() == ([0, 0, 1, 1] if per_task else [0, 0, 0, 0])


def test_groups_survive_a_reload():
    model = MLP((6,), 6, hidden=[5])
    lwf = Distillation(strength=0.5)
    lwf.bind(model)
    lwf.consolidate(model, [0, 1], 0, per_task=True)
    lwf.consolidate(model, [2, 3], 1, per_task=True)
    fresh = Distillation(strength=0.5)
    fresh.bind(MLP((6,), 6, hidden=[5]))
    fresh.load_state_dict(lwf.state_dict())
    perturb(model, 1)
    x = torch.randn(4, 6)
    t = torch.full((4,), 2)
    assert torch.allclose(fresh(model, x, t, model(x)), lwf(model, x, t, model(x)))
