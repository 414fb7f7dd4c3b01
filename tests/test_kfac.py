"""KFAC: factors against an explicit per-sample outer-product loop, the single-input diagonal against
the exact diagonal Fisher, the penalty and its gradient against the explicit Kronecker form."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clexp.curvature import diag_fisher
from clexp.curvature.kronecker import hooked_layers, kfac_diagonal, kfac_factors, layer_inputs, weight_matrix
from clexp.methods.kfac_ewc import KroneckerPenalty


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 4, bias=False), nn.ReLU(),
                         nn.Linear(4, 5))


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 2 * 2, 5))


def explicit_factors(model, x):
    """A = mean_n Σ_l ā ā ᵀ; G = mean_n Σ_c p_c (1/L) Σ_l δ_c δ_cᵀ, one sample and one class at a time."""
    model.eval()
    layers = hooked_layers(model)
    out = {n: {"A": 0.0, "G": 0.0} for n in layers}
    for i in range(len(x)):
        seen = {}
        handles = [m.register_forward_hook(lambda m, a, z, n=n: seen.__setitem__(n, (a[0], z)))
                   for n, m in layers.items()]
        logp = F.log_softmax(model(x[i:i + 1])[0], 0)
        for h in handles:
            h.remove()
        for n, m in layers.items():
            a, z = seen[n]
            abar = layer_inputs(m, a)[0]  # L × in'
            out[n]["A"] = out[n]["A"] + abar.t() @ abar / len(x)
        for c in range(len(logp)):
            grads = torch.autograd.grad(logp[c], [seen[n][1] for n in layers], retain_graph=True)
            for (n, m), d in zip(layers.items(), grads):
                d = d[0].reshape(d.shape[1], -1).t() if isinstance(m, nn.Conv2d) else d.reshape(-1, d.shape[-1])
                out[n]["G"] = out[n]["G"] + logp[c].exp().item() * d.t() @ d / d.shape[0] / len(x)
    return out


@pytest.mark.parametrize("make,shape", [(mlp, (7, 12)), (cnn, (7, 2, 4, 4))])
def test_factors_match_an_explicit_loop(make, shape):
    model = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    ours, theirs = kfac_factors(model, x, chunk_size=3), explicit_factors(model, x)
    assert ours.keys() == theirs.keys()
    for n in ours:
        for k in ("A", "G"):
            assert torch.allclose(ours[n][k], theirs[n][k], rtol=1e-10, atol=1e-12), (n, k)


def test_single_input_kfac_diagonal_is_the_exact_diagonal_fisher():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4))
    x = torch.randn(1, 2, 3, 3)  # the convolution sees one position: KFC is exact there too
    exact = diag_fisher(model, x)
    for n, f in kfac_factors(model, x).items():
        for leaf, v in kfac_diagonal(model.get_submodule(n), f).items():
            assert torch.allclose(v, exact[f"{n}.{leaf}"], rtol=1e-10, atol=1e-14)


def test_sampled_factors_approach_the_exact_ones():
    model, x = mlp(), torch.randn(20, 12)
    exact = kfac_factors(model, x)
    sampled = kfac_factors(model, x, variant="sampled", samples=4000, generator=torch.Generator().manual_seed(0))
    for n in exact:
        assert torch.allclose(sampled[n]["A"], exact[n]["A"])
        assert (sampled[n]["G"] - exact[n]["G"]).norm() < 0.05 * exact[n]["G"].norm()


def kronecker_value(model, pen, anchors):
    """½λ Σ vec(ΔW̄)ᵀ (A ⊗ G) vec(ΔW̄), vec stacking columns — the definition, materialised."""
    total = 0.0
    for (n, m), (A, G, anchor) in zip(hooked_layers(model).items(), anchors):
        d = (weight_matrix(m) - anchor).t().reshape(-1)
        total = total + 0.5 * pen.strength * d @ torch.kron(A, G) @ d
    return total


def test_penalty_and_gradient_match_the_explicit_kronecker_form():
    model = mlp()
    pen = KroneckerPenalty(strength=3.0, mode="separate")
    pen.bind(model)
    x = torch.randn(9, 12)
    anchors = []
    for step in range(2):  # two experiences: two factor triples
        factors = kfac_factors(model, x + step)
        anchors += [(factors[n]["A"], factors[n]["G"], weight_matrix(m).detach().clone())
                    for n, m in hooked_layers(model).items()]
        pen.consolidate(factors, {}, model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    layers = list(hooked_layers(model))
    value = pen(model)
    expected = sum(kronecker_value(model, pen, anchors[i * len(layers):(i + 1) * len(layers)]) for i in range(2))
    assert torch.allclose(value, expected, rtol=1e-10)
    expected.backward()
    autograd = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    pen.add_gradient(model)
    for g, p in zip(autograd, model.parameters()):
        assert torch.allclose(p.grad, g, rtol=1e-9, atol=1e-12)


def test_state_survives_a_reload_and_online_mode_sums_factors():
    model, x = mlp(), torch.randn(6, 12)
    pen = KroneckerPenalty(strength=1.0, mode="separate")
    pen.bind(model)
    pen.consolidate(kfac_factors(model, x), {}, model)
    pen.consolidate(kfac_factors(model, 2 * x), {}, model)
    fresh = KroneckerPenalty(strength=1.0, mode="separate")
    fresh.bind(model)
    fresh.load_state_dict(pen.state_dict())
    with torch.no_grad():
        model[1].weight.add_(0.3)
    assert torch.equal(fresh(model), pen(model)) and int(fresh.slots) == 2

    online = KroneckerPenalty(strength=1.0, mode="online", gamma=0.5)
    online.bind(model)
    f1, f2 = kfac_factors(model, x), kfac_factors(model, 2 * x)
    online.consolidate(f1, {}, model)
    online.consolidate(f2, {}, model)
    A = online.kfac0__1__A
    assert int(online.slots) == 1 and torch.allclose(A, 0.5 * f1["1"]["A"] + f2["1"]["A"])


def test_loading_an_earlier_state_drops_the_later_slots():
    """A module that has consolidated more experiences than a saved state loads that state (resume
    of an earlier checkpoint into a used module): later factor slots go, values match."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    pen = KroneckerPenalty(1.0, mode="separate")
    pen.bind(model)
    x = torch.randn(16, 4)
    pen.consolidate(kfac_factors(model, x), {}, model)
    saved = {k: v.clone() for k, v in pen.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(0.1)
    value_one = pen.value(model)
    pen.consolidate(kfac_factors(model, x), {}, model)
    assert int(pen.slots) == 2
    pen.load_state_dict(saved)
    assert int(pen.slots) == 1 and not any(n.startswith("kfac1") for n, _ in pen.named_buffers())
    assert torch.equal(pen.value(model), value_one)
