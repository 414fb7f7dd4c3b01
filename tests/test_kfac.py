"""KFAC: the factors against the per-sample, per-class oracle (tests/oracles.py) over the shared test
problems (tests/cases.py) — shared layers, flattened batches, masks, sampled labels included —, the
single-input diagonal against the exact diagonal Fisher, the penalty and its gradient against the
explicit Kronecker form, and every trainable parameter covered by factors or the diagonal fallback."""

import pytest
import torch
from torch import nn

from clexp.curvature import diag_fisher
from clexp.curvature.kronecker import hooked_layers, kfac_diagonal, kfac_factors, layer_inputs, weight_matrix
from clexp.methods.kfac_ewc import KroneckerPenalty
from tests import oracles
from tests.cases import BY_ID, CASES, KEYWORDS, MASK, MASKS, SHARED_CLASSIFIER, seeded

FACTORED = [c for c in CASES if c.factored]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny float64 models (tests/conftest.py)


def close(ours, theirs, rtol=1e-10, atol=1e-12):
    assert ours.keys() == theirs.keys()
    for n in ours:
        for k in ("A", "G"):
            assert torch.allclose(ours[n][k], theirs[n][k], rtol=rtol, atol=atol), (n, k)


@pytest.mark.parametrize("case", [*CASES, KEYWORDS, SHARED_CLASSIFIER], ids=str)
def test_hooked_layers_and_the_diagonal_fallback_cover_every_parameter(case):
    model = case.model()
    assert tuple(hooked_layers(model)) == case.factored
    pen = KroneckerPenalty(1.0)
    pen.bind(model)
    covered = [f"{layer}.{leaf}" for layer in pen.layers
               for leaf, _ in model.get_submodule(layer).named_parameters(recurse=False)]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(covered + pen.diag.names) == sorted(trainable)


@pytest.mark.parametrize("case", FACTORED, ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
def test_factors_match_the_oracle(case, mask):
    model, x = case.model(), case.inputs()
    ours = kfac_factors(model, x, chunk_size=4, output_mask=mask)
    close(ours, oracles.kfac_factors(model, x, case.factored, mask=mask))


@pytest.mark.parametrize("case", [BY_ID["cnn"], BY_ID["seq"], BY_ID["cnn_wide"]], ids=str)
@pytest.mark.parametrize("samples", [3, 12])  # fewer draws than classes: one vector per draw; more: counts
@pytest.mark.parametrize("mask", [None, MASK], ids=["all", "mask3"])
def test_sampled_factors_are_exactly_those_of_their_draws(case, samples, mask):
    model, x = case.model(), case.inputs()
    ours = kfac_factors(model, x, "sampled", samples, output_mask=mask, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        p = oracles.log_probs(model.eval(), x, mask).exp()
    draws = torch.multinomial(p, samples, replacement=True, generator=torch.Generator().manual_seed(5))
    close(ours, oracles.kfac_factors(model, x, case.factored, "sampled", mask, draws))


@pytest.mark.parametrize("case", [c for c in FACTORED if c.shared], ids=str)
def test_shared_layers_get_summed_factors(case):
    """Every use of a shared layer counts: its factors are not those of any single use, and they match
    the oracle's sum over the uses (A summed, G summed over all positions / L)."""
    model, x = case.model(), case.inputs()
    ours = kfac_factors(model, x)
    for layer in case.shared:
        assert layer in ours and ours[layer]["G"].abs().sum() > 0
    close(ours, oracles.kfac_factors(model, x, case.factored))


def test_chunking_does_not_change_the_factors():
    case = BY_ID["cnn_wide"]
    model, x = case.model(), case.inputs(10)
    close(kfac_factors(model, x, chunk_size=3), kfac_factors(model, x, chunk_size=1000), rtol=1e-12, atol=1e-14)


def test_single_input_kfac_diagonal_is_the_exact_diagonal_fisher():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3, 6), nn.Tanh(),
                          nn.Linear(6, 4)).double()
    x = torch.randn(1, 2, 3, 3, dtype=torch.float64)  # the convolution sees one position: KFC is exact there too
    exact = diag_fisher(model, x)
    for n, f in kfac_factors(model, x).items():
        for leaf, v in kfac_diagonal(model.get_submodule(n), f).items():
            assert torch.allclose(v, exact[f"{n}.{leaf}"], rtol=1e-10, atol=1e-14)


def test_sampled_factors_approach_the_exact_ones():
    case = BY_ID["mlp_partial_bias"]
    model, x = case.model(), case.inputs(20)
    exact = kfac_factors(model, x)
    sampled = kfac_factors(model, x, variant="sampled", samples=4000, generator=torch.Generator().manual_seed(0))
    for n in exact:
        assert torch.allclose(sampled[n]["A"], exact[n]["A"])
        assert (sampled[n]["G"] - exact[n]["G"]).norm() < 0.05 * exact[n]["G"].norm()


def test_unused_head_has_no_factors_and_state_is_restored():
    case = BY_ID["multihead"]
    model = case.model().train()
    factors = kfac_factors(model, case.inputs())
    assert set(factors) == {"body.0", "heads.0"}
    assert all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


def test_float32_model():
    case = BY_ID["cnn"]
    model, x = case.model(), case.inputs()
    ref = oracles.kfac_factors(model, x, case.factored)
    ours = kfac_factors(model.float(), x.float())
    assert all(v.dtype == torch.float32 for f in ours.values() for v in f.values())
    close({n: {k: v.double() for k, v in f.items()} for n, f in ours.items()}, ref, rtol=1e-4, atol=1e-6)


def test_layer_inputs_and_weight_matrix():
    conv = seeded(lambda: nn.Conv2d(2, 3, 3, padding=1))
    a = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    abar = layer_inputs(conv, a)
    assert abar.shape == (4, 25, 2 * 9 + 1) and (abar[..., -1] == 1).all()
    out = abar @ weight_matrix(conv).t()  # N, L, out: the convolution as a matrix product
    assert torch.allclose(out.transpose(1, 2).reshape(4, 3, 5, 5), conv(a), atol=1e-12)


def test_errors():
    model, x = KEYWORDS.model(), KEYWORDS.inputs()
    with pytest.raises(ValueError, match="'a'.*keyword"):
        kfac_factors(model, x)
    assert all(not m._forward_hooks_with_kwargs for m in model.modules())
    model, x = BY_ID["mlp"].model(), BY_ID["mlp"].inputs()
    with pytest.raises(ValueError, match="variant"):
        kfac_factors(model, x, variant="empirical")
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="samples"):
            kfac_factors(model, x, variant="sampled", samples=bad)


def test_frozen_weight_leaves_the_layer_to_the_diagonal():
    model = BY_ID["mlp"].model()
    model[3].weight.requires_grad_(False)
    assert "3" not in hooked_layers(model)
    pen = KroneckerPenalty(1.0)
    pen.bind(model)
    assert "3.bias" in pen.diag.names and "3.weight" not in pen.diag.names


# ------------------------------------------------------------------------------------------- penalty


def consolidate_twice(case, pen):
    """Two experiences (inputs x and x + 1), the parameters moved after each: the penalty's triples
    (W̄ now, A, G, W̄*) for the oracle."""
    model, x = case.model(), case.inputs()
    pen.bind(model)
    anchors = []
    for step in range(2):
        factors = kfac_factors(model, x + step)
        diagonal = diag_fisher(model, x + step)
        anchors += [(n, factors[n]["A"], factors[n]["G"], weight_matrix(m).detach().clone())
                    for n, m in hooked_layers(model).items() if n in factors]
        pen.consolidate(factors, {n: diagonal[n] for n in pen.diag.names}, model)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    triples = [(weight_matrix(model.get_submodule(n)), A, G, w) for n, A, G, w in anchors]
    return model, triples


@pytest.mark.parametrize("case", [BY_ID["mlp_partial_bias"], BY_ID["seq"], BY_ID["cnn_wide"]], ids=str)
def test_penalty_and_gradient_match_the_explicit_kronecker_form(case):
    torch.manual_seed(0)
    pen = KroneckerPenalty(strength=3.0, mode="separate")
    model, triples = consolidate_twice(case, pen)
    value = pen(model)
    expected = oracles.kronecker_penalty(pen.strength, triples) + pen.diag(model)
    assert torch.allclose(value, expected, rtol=1e-10)
    expected.backward()
    autograd = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    pen.add_gradient(model)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, autograd[n], rtol=1e-9, atol=1e-12), n
    for layer in case.shared:  # the shared layer is regularized
        assert model.get_submodule(layer).weight.grad.abs().sum() > 0


def test_state_survives_a_reload_and_online_mode_sums_factors():
    case = BY_ID["mlp_partial_bias"]
    model, x = case.model(), case.inputs(6)
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
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    pen = KroneckerPenalty(1.0, mode="separate")
    pen.bind(model)
    x = torch.randn(16, 4, dtype=torch.float64)
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
