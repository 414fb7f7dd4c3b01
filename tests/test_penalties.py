"""Quadratic penalty (merged separate mode, online mode, fused gradient) and LwF's distillation,
against direct computations written here."""

import torch
import torch.nn.functional as F
from torch import nn

from clexp.methods.lwf import Distillation
from clexp.methods.quadratic import QuadraticPenalty
from clexp.models import MLP


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return MLP((6,), 3, hidden=[5])


def random_importance(model, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) * (torch.rand(p.shape, generator=g) > 0.3)
            for n, p in model.named_parameters()}


def perturb(model, seed, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def explicit_sum(model, anchors, fishers, scale):
    """Σ_t Σ_k F_t,k (θ_k − θ*_t,k)², the definition, one term per experience."""
    total = 0.0
    for anchor, fisher in zip(anchors, fishers):
        for n, p in model.named_parameters():
            total = total + (fisher[n] * (p - anchor[n]) ** 2).sum()
    return scale * total


def test_merged_separate_mode_equals_explicit_sum_over_anchors():
    model = tiny_model()
    pen = QuadraticPenalty(strength=3.0, factor=0.5, mode="separate")
    pen.bind(model)
    anchors, fishers = [], []
    for t in range(4):
        perturb(model, seed=10 + t)
        fisher = random_importance(model, seed=t)
        anchors.append({n: p.detach().clone() for n, p in model.named_parameters()})
        fishers.append(fisher)
        pen.consolidate(fisher, model)
    perturb(model, seed=99)
    value = pen(model)
    value.backward()
    merged_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = explicit_sum(model, anchors, fishers, scale=1.5)
    expected.backward()
    assert torch.allclose(value.double(), expected.double(), rtol=1e-5)
    for g, p in zip(merged_grads, model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-5, atol=1e-6)
    # the memory does not grow with experiences: two saved tensors per parameter (Ω, θ*), plus one
    # workspace per parameter that is never saved
    assert len(pen.state_dict()) == 2 * len(list(model.parameters())) + 2
    assert len(list(pen.buffers())) == 3 * len(list(model.parameters())) + 2


def test_online_mode_decays_and_moves_the_anchor():
    model = tiny_model()
    pen = QuadraticPenalty(strength=2.0, factor=1.0, mode="online", gamma=0.5)
    pen.bind(model)
    f1, f2 = random_importance(model, 1), random_importance(model, 2)
    pen.consolidate(f1, model)
    perturb(model, 3)
    anchor2 = {n: p.detach().clone() for n, p in model.named_parameters()}
    pen.consolidate(f2, model)
    perturb(model, 4)
    expected = 2.0 * sum(((0.5 * f1[n] + f2[n]) * (p - anchor2[n]) ** 2).sum() for n, p in model.named_parameters())
    assert torch.allclose(pen(model), expected, rtol=1e-5)


def test_analytic_gradients_match_autograd():
    model = tiny_model()
    pen = QuadraticPenalty(strength=5.0, factor=0.5, mode="online")
    pen.bind(model)
    pen.consolidate(random_importance(model, 0), model)
    perturb(model, 1)
    pen(model).backward()
    analytic = pen.gradients([p.detach() for p in model.parameters()])
    for a, p in zip(analytic, model.parameters()):
        assert torch.allclose(a, p.grad, rtol=1e-5, atol=1e-7)


def test_penalty_is_zero_before_any_consolidation_and_state_survives_a_reload():
    model = tiny_model()
    pen = QuadraticPenalty(strength=1.0, mode="separate")
    pen.bind(model)
    assert pen(model).item() == 0.0
    pen.consolidate(random_importance(model, 0), model)
    perturb(model, 1)
    value = pen(model)
    fresh = QuadraticPenalty(strength=1.0, mode="separate")
    fresh.bind(model)
    fresh.load_state_dict(pen.state_dict())
    assert torch.equal(fresh(model), value)


def test_distillation_matches_explicit_kl_on_old_outputs():
    model = MLP((6,), 4, hidden=[5])
    lwf = Distillation(strength=0.7, temperature=2.0)
    lwf.bind(model)
    lwf.consolidate(model, output_classes=[0, 1], task=0)
    teacher_out = model(torch.zeros(1, 6)).detach()
    perturb(model, 5)
    x = torch.randn(8, 6)
    raw = model(x)
    value = lwf(model, x, torch.zeros(8, dtype=torch.long), raw)
    with torch.no_grad():
        perturbed = copy_with(model)
    old = lwf.teacher(x)[:, :2]
    p_old = F.softmax(old / 2.0, dim=1)
    log_p_new = F.log_softmax(raw[:, :2] / 2.0, dim=1)
    kl = (p_old * (p_old.log() - log_p_new)).sum(1).mean()
    assert torch.allclose(value, 0.7 * 4.0 * kl, rtol=1e-5)
    # the teacher is frozen: the value's gradient reaches the student only
    value.backward()
    assert all(p.grad is None for p in lwf.teacher.parameters())
    assert not torch.allclose(lwf.teacher(torch.zeros(1, 6)), perturbed(torch.zeros(1, 6)))
    assert torch.allclose(lwf.teacher(torch.zeros(1, 6)), teacher_out)


def copy_with(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)


def test_distillation_multihead_distils_previous_heads_only():
    model = MLP((6,), 2, hidden=[5], n_experiences=3, multihead=True)
    lwf = Distillation(strength=1.0, temperature=1.0)
    lwf.bind(model)
    lwf.consolidate(model, output_classes=[0, 1], task=0)
    x = torch.randn(5, 6)
    t = torch.full((5,), 1)
    assert lwf(model, x, t, model(x, t)).item() == 0.0  # nothing changed yet
    perturb(model, 2)
    expected = F.kl_div(F.log_softmax(model(x, 0), 1), F.log_softmax(lwf.teacher(x, 0), 1), log_target=True,
                        reduction="batchmean")
    assert torch.allclose(lwf(model, x, t, model(x, t)), expected, rtol=1e-5)


def test_training_step_path_matches_the_definition_on_every_call():
    """`add_gradient` and `value` (in-place, reused workspace) against autograd of the explicit sum,
    over several steps with moving parameters, in both modes; `grad_scale` scales the gradient."""
    for mode in ("separate", "online"):
        model = tiny_model()
        pen = QuadraticPenalty(strength=3.0, factor=0.5, mode=mode, gamma=0.7)
        pen.bind(model)
        anchors, fishers = [], []
        for t in range(3):
            perturb(model, seed=20 + t)
            fishers.append(random_importance(model, seed=t))
            anchors.append({n: p.detach().clone() for n, p in model.named_parameters()})
            pen.consolidate(fishers[-1], model)
        if mode == "online":  # F̃ = Σ γ^(T−1−t) F_t around the latest anchor
            fishers = [{n: sum(0.7 ** (2 - t) * f[n] for t, f in enumerate(fishers)) for n in fishers[0]}]
            anchors = anchors[-1:]
        for step in range(3):
            perturb(model, seed=50 + step, scale=0.1)
            model.zero_grad()
            expected = explicit_sum(model, anchors, fishers, scale=1.5)
            expected.backward()
            reference = [p.grad.clone() for p in model.parameters()]
            task = [torch.randn_like(p) for p in model.parameters()]  # a task gradient already there
            for p, g in zip(model.parameters(), task):
                p.grad = g.clone()
            pen.add_gradient(model, grad_scale=None if step < 2 else 8.0)
            scale = 1.0 if step < 2 else 8.0
            for p, g, r in zip(model.parameters(), task, reference):
                assert torch.allclose(p.grad, g + scale * r, rtol=1e-5, atol=1e-6)
            if mode == "online":
                assert torch.allclose(pen.value(model).double(), expected.double(), rtol=1e-5)
        if mode == "separate":  # the merged form's constant keeps the value exact
            assert torch.allclose(pen.value(model).double(), expected.double(), rtol=1e-5)
            assert torch.allclose(pen.value(model), pen(model).detach(), rtol=1e-6)
