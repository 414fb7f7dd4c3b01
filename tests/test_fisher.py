"""The diagonal Fisher against the brute-force oracles (tests/oracles.py: batch size 1, one backward
per class) over the shared test problems (tests/cases.py)."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from clexp.curvature import FISHER_VARIANTS, diag_fisher
from clexp.curvature.fisher import _exact, logit_vectors
from tests import oracles
from tests.cases import BY_ID, CASES, KEYWORDS, MASK, MASKS, TWO, Y, labels, seeded
from tests.conftest import compose
from tests.oracles import rel_err

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny float64 models (tests/conftest.py)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mask", list(MASKS.values()), ids=list(MASKS))
@pytest.mark.parametrize("variant", ["exact", "empirical", "batch"])
def test_matches_brute_force(case, mask, variant):
    model, x = case.model(), case.inputs()
    y = labels(mask)
    ours = diag_fisher(model, x, y, variant=variant, chunk_size=4, output_mask=mask, batch_size=4)
    ref = oracles.batch_fisher(model, x, y, 4, mask) if variant == "batch" else oracles.fisher(model, x, y, variant,
                                                                                               mask)
    assert rel_err(ours, ref) < 1e-8


@pytest.mark.parametrize("samples", [3, 12])  # fewer draws than classes: one vector per draw; more: counts
@pytest.mark.parametrize("mask", [None, MASK], ids=["all", "mask3"])
def test_sampled_is_exactly_the_average_over_its_draws(samples, mask):
    case = BY_ID["cnn"]
    model, x = case.model(), case.inputs()
    ours = diag_fisher(model, x, variant="sampled", samples=samples, output_mask=mask,
                       generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        p = oracles.log_probs(model.eval(), x, mask).exp()
    draws = torch.multinomial(p, samples, replacement=True, generator=torch.Generator().manual_seed(5))
    assert rel_err(ours, oracles.fisher(model, x, variant="sampled", mask=mask, draws=draws)) < 1e-8


def test_sampled_approaches_exact():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs(16)
    exact = diag_fisher(model, x)
    errs = [rel_err(diag_fisher(model, x, variant="sampled", samples=s, generator=torch.Generator().manual_seed(0)),
                    exact) for s in (1, 30, 2000)]
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.1


def test_batch_variant_with_batch_size_one_is_the_empirical_fisher():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs(64)
    y = torch.arange(64) % 5
    empirical = diag_fisher(model, x, y, variant="empirical")
    assert rel_err(diag_fisher(model, x, y, variant="batch", batch_size=1), empirical) < 1e-12


def test_batch_variant_is_about_one_over_b_of_empirical_when_gradients_are_uncorrelated():
    """docs/design.md, section 3: squaring a mini-batch mean of B roughly uncorrelated per-sample gradients gives ≈ 1/B
    of the per-sample (empirical) Fisher. Softmax regression at θ = 0 on zero-mean inputs with labels
    independent of them: E[g_n] = 0 and the g_n are independent, so E[(mean g)²] = E[g²]/B."""
    torch.manual_seed(0)
    model = nn.Linear(6, 4).double()
    with torch.no_grad():
        model.weight.zero_(), model.bias.zero_()
    model.bias.requires_grad_(False)  # the bias gradient e_y − p has a non-zero mean for finite samples
    n, B = 4096, 16
    x = torch.randn(n, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(2))
    empirical = diag_fisher(model, x, y, variant="empirical")["weight"].sum()
    batch = diag_fisher(model, x, y, variant="batch", batch_size=B)["weight"].sum()
    assert 0.85 < (B * batch / empirical).item() < 1.15


def test_batch_variant_uses_batch_size_and_chunk_size_only_bounds_memory():
    case = BY_ID["cnn"]
    model, x = case.model(), case.inputs(20)
    y = labels(None, 20)
    ref = oracles.batch_fisher(model, x, y, 8)  # 8, 8, 4
    for chunk in (1, 3, 8, 256):
        assert rel_err(diag_fisher(model, x, y, variant="batch", batch_size=8, chunk_size=chunk), ref) < 1e-10


@pytest.mark.parametrize("method", ["ewc", "online_ewc"])
def test_batch_variant_from_the_method_config_uses_the_training_batch_size(method):
    """method.fisher.variant=batch: B is train.batch_size (not fisher.chunk_size, a memory bound)."""
    cfg = compose([f"method={method}", "method.fisher.variant=batch", "train.batch_size=8"])
    callback = instantiate(cfg.method.callbacks.importance)
    assert callback.batch_size == 8 and callback.chunk_size == 256
    case = BY_ID["mlp"]
    model, x, y = case.model(), case.inputs(20), labels(None, 20)
    pl_module = SimpleNamespace(model=model, current_experience=SimpleNamespace(x_train=x, y_train=y, index=0),
                                experience=torch.tensor(0), device=torch.device("cpu"), output_mask=lambda i: None)
    trainer = SimpleNamespace(global_rank=0, world_size=1)
    assert rel_err(callback.estimate(trainer, pl_module), oracles.batch_fisher(model, x, y, 8)) < 1e-10
    with pytest.raises(ValueError, match="batch_size"):
        type(callback)(variant="batch")  # no silent default for B


@pytest.mark.parametrize("mask", [None, MASK, TWO])
def test_hessian_factor_and_zero_mean_score(mask):
    """Σ_k t_k t_kᵀ = diag(p) − ppᵀ = Σ_c s_c s_cᵀ with one vector fewer than classes, s_c = √p_c (e_c − p)
    (the per-class vectors of KFAC's G); Σ_c p_c (e_c − p) = 0."""
    logits = torch.randn(7, 5, dtype=torch.float64) * 3
    p = F.softmax(logits if mask is None else logits.masked_fill(~mask, float("-inf")), -1)
    allowed = torch.arange(5) if mask is None else mask.nonzero().flatten()
    t = _exact(p, allowed)
    assert t.shape == (len(allowed) - 1, 7, 5)
    hessian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert torch.allclose(torch.einsum("kni,knj->nij", t, t), hessian, atol=1e-14)
    s = torch.stack([p[:, c : c + 1].sqrt() * (torch.eye(5, dtype=p.dtype)[c] - p) for c in allowed.tolist()])
    assert torch.allclose(torch.einsum("kni,knj->nij", s, s), hessian, atol=1e-14)
    assert torch.allclose(logit_vectors(logits, "exact", output_mask=mask), t, atol=1e-15)
    assert (p[:, :, None] * (torch.eye(5) - p[:, None, :])).sum(1).abs().max() < 1e-14


def test_one_allowed_output_gives_zero_and_linear_softmax_closed_form():
    torch.manual_seed(0)
    lin = nn.Linear(4, 3, bias=False).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    one = torch.tensor([False, True, False])
    assert diag_fisher(lin, x, output_mask=one)["weight"].abs().max() == 0
    p = F.softmax(lin(x), 1).detach()
    closed = ((p - p**2).t() @ x**2) / 5  # Σ_n (diag p − ppᵀ)_cc x_n² / N
    assert torch.allclose(diag_fisher(lin, x)["weight"], closed, rtol=1e-12)


def test_in_place_ops_on_kept_tensors_are_detected(monkeypatch):
    from clexp.curvature import engine

    modes, forward = [], engine.record_forward
    monkeypatch.setattr(engine, "record_forward", lambda *a: modes.append(a[-1]) or forward(*a))
    case = BY_ID["custom"]
    model, x = case.model(), case.inputs()
    assert rel_err(diag_fisher(model, x, chunk_size=4), oracles.fisher(model, x)) < 1e-8
    assert modes == [False, True, True, True]  # detected once, then copies for every chunk


def test_keyword_calls_take_the_whole_model_fallback():
    model, x = KEYWORDS.model(), KEYWORDS.inputs()
    assert rel_err(diag_fisher(model, x, chunk_size=4), oracles.fisher(model, x)) < 1e-8


def test_float32_model():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs()
    ref = oracles.fisher(model, x)
    ours = diag_fisher(model.float(), x.float())
    assert all(v.dtype == torch.float32 for v in ours.values())
    assert rel_err({k: v.double() for k, v in ours.items()}, ref) < 1e-5


def test_chunking_does_not_change_the_result():
    case = BY_ID["custom"]
    model, x = case.model(), case.inputs(10)
    assert rel_err(diag_fisher(model, x, chunk_size=3), diag_fisher(model, x, chunk_size=1000)) < 1e-12


def test_chunks_never_exceed_chunk_size_and_cache_sized_pieces_change_nothing(monkeypatch):
    from clexp.curvature import engine

    case = BY_ID["cnn_wide"]
    model, x = case.model(), case.inputs(40)
    sizes, forward = [], engine.record_forward
    monkeypatch.setattr(engine, "record_forward", lambda m, xs, *a: sizes.append(len(xs)) or forward(m, xs, *a))
    whole = diag_fisher(model, x, chunk_size=1000)
    assert sizes == [32, 8]  # a first piece, then as large as ACTIVATION_BUDGET allows
    sizes.clear()
    assert rel_err(diag_fisher(model, x, chunk_size=7), whole) < 1e-12 and max(sizes) == 7
    monkeypatch.setattr(engine, "ACTIVATION_BUDGET", 1000)  # 1 input at a time
    sizes.clear()
    assert rel_err(diag_fisher(model, x, chunk_size=1000), whole) < 1e-12 and sizes == [32] + [1] * 8


def test_unused_head_gets_zeros_and_state_is_restored():
    case = BY_ID["multihead"]
    model = case.model().train()
    model.body[2].eval()  # modes are restored module by module
    x = case.inputs()
    for variant in FISHER_VARIANTS:
        fisher = diag_fisher(model, x, Y, variant=variant, samples=2, batch_size=4)
        assert set(fisher) == {n for n, _ in model.named_parameters()}
        assert not any(v.requires_grad for v in fisher.values())
        assert fisher["heads.1.weight"].abs().sum() == 0 and fisher["heads.0.weight"].abs().sum() > 0
        assert model.training and model.body[0].training and not model.body[2].training
        assert all(p.grad is None for p in model.parameters())
        assert all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


def test_dropout_is_off():
    model, x = BY_ID["multihead"].model(), BY_ID["multihead"].inputs()
    assert rel_err(diag_fisher(model.train(), x), diag_fisher(model.eval(), x)) == 0


def test_frozen_parameters_are_left_out():
    case = BY_ID["mlp"]
    model, x = case.model(), case.inputs()
    model[1].weight.requires_grad_(False)
    fisher = diag_fisher(model, x)
    assert "1.weight" not in fisher and "1.bias" in fisher
    assert rel_err(fisher, oracles.fisher(model, x)) < 1e-8


def test_errors():
    model, x = seeded(BY_ID["mlp"].make), BY_ID["mlp"].inputs()
    with pytest.raises(ValueError, match="does not exist"):
        diag_fisher(model, x, variant="bogus")
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="samples"):
            diag_fisher(model, x, variant="sampled", samples=bad)
    for variant in ("empirical", "batch"):
        with pytest.raises(ValueError, match="targets"):
            diag_fisher(model, x, variant=variant, batch_size=4)
    with pytest.raises(ValueError, match="output_mask"):
        diag_fisher(model, x, torch.ones(9, dtype=torch.long), variant="empirical", output_mask=MASK)
    for bad in (None, 0, 2.0, True):
        with pytest.raises(ValueError, match="batch_size"):
            diag_fisher(model, x, Y, variant="batch", batch_size=bad)
    assert all(not m._forward_hooks_with_kwargs for m in model.modules())
