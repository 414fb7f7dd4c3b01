"""The diagonal Fisher against brute-force loops written here: batch size 1, one backward per class."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clexp.curvature import FISHER_VARIANTS, diag_fisher
from clexp.curvature.fisher import _exact

MASK = torch.tensor([True, False, True, True, False])
TWO = torch.tensor([False, True, False, False, True])
Y = torch.tensor([0, 2, 3, 0, 2, 3, 3, 0, 2])  # inside MASK


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 models: thread start-up would cost more than the work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def seeded(make):
    torch.manual_seed(0)
    return make().double()


def mlp():
    return seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(),
                                        nn.Linear(6, 5)))


def cnn(bias=True):
    return seeded(lambda: nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=bias), nn.ReLU(),
                                        nn.Conv2d(4, 3, 3, stride=2, padding=1, bias=bias), nn.ReLU(),
                                        nn.Flatten(), nn.Linear(3 * 3 * 3, 5, bias=bias)))


def norms():
    """BatchNorm2d and LayerNorm: the torch.func path (BatchNorm statistics made non-trivial)."""
    model = seeded(lambda: nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                                         nn.LayerNorm(27), nn.Linear(27, 5)))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1), model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 2), model[1].bias.uniform_(-1, 1)
        model[4].weight.uniform_(0.5, 2), model[4].bias.uniform_(-1, 1)
    return model


class WideCNN(nn.Module):
    """Convolutions with ≥ 8 input channels and stride 1 (the strided-view path): one called twice,
    one with a rectangular dilated kernel and unequal padding."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(2, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = nn.Conv2d(8, 3, (3, 2), padding=(0, 2), dilation=(1, 2))
        self.out = nn.Linear(3 * 3 * 7, 5)

    def forward(self, x):
        h = torch.relu(self.c2(torch.relu(self.c2(torch.relu(self.c1(x))))))
        return self.out(torch.tanh(self.c3(h)).flatten(1))


class Sequence(nn.Module):
    """A Linear on N × L × D inputs (per-sample gradient: a sum over positions) and one used twice."""

    def __init__(self):
        super().__init__()
        self.proj, self.mix, self.out = nn.Linear(4, 6), nn.Linear(6, 6), nn.Linear(6, 5)

    def forward(self, x):
        h = torch.relu(self.proj(x.reshape(len(x), 3, 4))).mean(1)
        return self.out(self.mix(torch.tanh(self.mix(h))))


class Custom(nn.Module):
    """A module's own parameter next to its children, in-place ReLU, an Embedding, tied weights."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(0.5, 1.5, 6))
        self.emb = nn.Embedding(4, 6)
        self.a, self.b = nn.Linear(12, 6), nn.Linear(6, 6)
        self.tied = nn.Linear(6, 6)
        self.tied.weight = self.b.weight  # one parameter in two modules
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        h = torch.relu_(self.a(x)) * self.scale + self.emb((x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long())
        h = torch.tanh(self.b(h))
        return self.head(torch.tanh(self.tied(h)))


def reparametrized():
    """Weights computed from other parameters: new-style parametrization and old-style weight_norm."""
    from torch.nn.utils import parametrizations

    torch.manual_seed(0)
    with pytest.warns(FutureWarning):
        old_style = torch.nn.utils.weight_norm(nn.Linear(6, 5))
    return nn.Sequential(parametrizations.weight_norm(nn.Linear(12, 6)), nn.Tanh(), old_style).double()


class MultiHead(nn.Module):
    """Task-IL style: two heads, only head 0 used by `forward(x)`."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Dropout(0.5))
        self.heads = nn.ModuleList([nn.Linear(6, 5), nn.Linear(6, 5)])

    def forward(self, x):
        return self.heads[0](self.body(x))


MODELS = {"mlp": mlp, "cnn": cnn, "cnn_nobias": lambda: cnn(False), "cnn_wide": lambda: seeded(WideCNN), "norms": norms,
          "seq": lambda: seeded(Sequence), "custom": lambda: seeded(Custom), "reparametrized": reparametrized}


def inputs(name, n=9):
    g = torch.Generator().manual_seed(1)
    shape = (2, 5, 5) if name.startswith("cnn") or name == "norms" else (12,)
    return torch.randn(n, *shape, generator=g, dtype=torch.float64)


def log_probs(model, x, mask):
    z = model(x)
    return F.log_softmax(z if mask is None else z.masked_fill(~mask, float("-inf")), -1)


def brute(model, x, y=None, variant="exact", mask=None, draws=None):
    """The definitions, one input and one class at a time (draws: N × S sampled classes)."""
    model.eval()
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    total = [torch.zeros_like(p) for p in params]
    for n in range(len(x)):
        logp = log_probs(model, x[n : n + 1], mask)[0]
        if variant == "exact":
            terms = [(c, logp[c].exp().item()) for c in range(len(logp)) if mask is None or mask[c]]
        elif variant == "sampled":
            terms = [(int(c), 1 / draws.shape[1]) for c in draws[n]]
        else:
            terms = [(int(y[n]), 1.0)]
        for c, w in terms:
            g = torch.autograd.grad(logp[c], params, retain_graph=True, allow_unused=True)
            for t, gi in zip(total, g):
                if gi is not None:
                    t += w * gi**2
    return {name: t / len(x) for (name, _), t in zip(named, total)}


def brute_batch(model, x, y, chunk, mask=None):
    model.eval()
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    starts = range(0, len(x), chunk)
    for s in starts:
        logp = log_probs(model, x[s : s + chunk], mask)
        g = torch.autograd.grad(logp.gather(1, y[s : s + chunk, None]).mean(), params, allow_unused=True)
        for t, gi in zip(total, g):
            if gi is not None:
                t += gi**2
    return {name: t / len(starts) for (name, _), t in zip(model.named_parameters(), total)}


def rel_err(a, b):
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-30)).item() for k in b)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("mask", [None, MASK, TWO], ids=["all", "mask3", "mask2"])
@pytest.mark.parametrize("variant", ["exact", "empirical", "batch"])
def test_matches_brute_force(name, mask, variant):
    model, x = MODELS[name](), inputs(name)
    y = Y if mask is not TWO else torch.tensor([1, 4] * 4 + [1])
    ours = diag_fisher(model, x, y, variant=variant, chunk_size=4, output_mask=mask)
    ref = brute_batch(model, x, y, 4, mask) if variant == "batch" else brute(model, x, y, variant, mask)
    assert rel_err(ours, ref) < 1e-8


@pytest.mark.parametrize("samples", [3, 12])  # fewer draws than classes: one vector per draw; more: counts
@pytest.mark.parametrize("mask", [None, MASK], ids=["all", "mask3"])
def test_sampled_is_exactly_the_average_over_its_draws(samples, mask):
    model, x = MODELS["cnn"](), inputs("cnn")
    ours = diag_fisher(model, x, variant="sampled", samples=samples, output_mask=mask,
                       generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        p = log_probs(model.eval(), x, mask).exp()
    draws = torch.multinomial(p, samples, replacement=True, generator=torch.Generator().manual_seed(5))
    assert rel_err(ours, brute(model, x, variant="sampled", mask=mask, draws=draws)) < 1e-8


def test_sampled_approaches_exact():
    model, x = mlp(), inputs("mlp", 16)
    exact = diag_fisher(model, x)
    errs = [rel_err(diag_fisher(model, x, variant="sampled", samples=s, generator=torch.Generator().manual_seed(0)),
                    exact) for s in (1, 30, 2000)]
    assert errs[2] < errs[1] < errs[0] and errs[2] < 0.1


def test_batch_variant_is_about_one_over_the_batch_size_of_empirical():
    model, x = mlp(), inputs("mlp", 64)
    y = torch.arange(64) % 5
    empirical = diag_fisher(model, x, y, variant="empirical")
    assert rel_err(diag_fisher(model, x, y, variant="batch", chunk_size=1), empirical) < 1e-12
    big = diag_fisher(model, x, y, variant="batch", chunk_size=16)
    ratio = sum(v.sum() for v in big.values()) / sum(v.sum() for v in empirical.values())
    assert ratio < 0.5  # squaring a mean cancels: roughly 1/B of the per-sample Fisher


@pytest.mark.parametrize("mask", [None, MASK, TWO])
def test_hessian_factor_and_zero_mean_score(mask):
    """Σ_k t_k t_kᵀ = diag(p) − ppᵀ with one vector fewer than classes; Σ_c p_c (e_c − p) = 0."""
    logits = torch.randn(7, 5, dtype=torch.float64) * 3
    p = F.softmax(logits if mask is None else logits.masked_fill(~mask, float("-inf")), -1)
    allowed = torch.arange(5) if mask is None else mask.nonzero().flatten()
    t = _exact(p, allowed)
    assert t.shape == (len(allowed) - 1, 7, 5)
    hessian = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    assert torch.allclose(torch.einsum("kni,knj->nij", t, t), hessian, atol=1e-14)
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
    from clexp.curvature import per_sample

    modes, forward = [], per_sample._forward
    monkeypatch.setattr(per_sample, "_forward", lambda *a: modes.append(a[-1]) or forward(*a))
    model, x = MODELS["custom"](), inputs("custom")
    assert rel_err(diag_fisher(model, x, chunk_size=4), brute(model, x)) < 1e-8
    assert modes == [False, True, True, True]  # detected once, then copies for every chunk


def test_float32_model():
    model, x = mlp(), inputs("mlp")
    ref = brute(model, x)
    ours = diag_fisher(model.float(), x.float())
    assert all(v.dtype == torch.float32 for v in ours.values())
    assert rel_err({k: v.double() for k, v in ours.items()}, ref) < 1e-5


def test_chunking_does_not_change_the_result():
    model, x = MODELS["custom"](), inputs("custom", 10)
    assert rel_err(diag_fisher(model, x, chunk_size=3), diag_fisher(model, x, chunk_size=1000)) < 1e-12


def test_chunks_never_exceed_chunk_size_and_cache_sized_pieces_change_nothing(monkeypatch):
    from clexp.curvature import per_sample

    model, x = MODELS["cnn_wide"](), inputs("cnn_wide", 40)
    sizes, forward = [], per_sample._forward
    monkeypatch.setattr(per_sample, "_forward", lambda m, xs, *a: sizes.append(len(xs)) or forward(m, xs, *a))
    whole = diag_fisher(model, x, chunk_size=1000)
    assert sizes == [32, 8]  # a first piece, then as large as ACTIVATION_BUDGET allows
    sizes.clear()
    assert rel_err(diag_fisher(model, x, chunk_size=7), whole) < 1e-12 and max(sizes) == 7
    monkeypatch.setattr(per_sample, "ACTIVATION_BUDGET", 1000)  # 1 input at a time
    sizes.clear()
    assert rel_err(diag_fisher(model, x, chunk_size=1000), whole) < 1e-12 and sizes == [32] + [1] * 8


def test_unused_head_gets_zeros_and_state_is_restored():
    model = seeded(MultiHead).train()
    model.body[2].eval()  # modes are restored module by module
    for p in model.heads[1].parameters():
        p.requires_grad_(True)
    x = inputs("mlp")
    for variant in FISHER_VARIANTS:
        fisher = diag_fisher(model, x, Y, variant=variant, samples=2)
        assert set(fisher) == {n for n, _ in model.named_parameters()}
        assert not any(v.requires_grad for v in fisher.values())
        assert fisher["heads.1.weight"].abs().sum() == 0 and fisher["heads.0.weight"].abs().sum() > 0
        assert model.training and model.body[0].training and not model.body[2].training
        assert all(p.grad is None for p in model.parameters())
        assert all(not m._forward_hooks and not m._forward_hooks_with_kwargs for m in model.modules())


def test_dropout_is_off():
    model, x = seeded(MultiHead), inputs("mlp")
    assert rel_err(diag_fisher(model.train(), x), diag_fisher(model.eval(), x)) == 0


def test_frozen_parameters_are_left_out():
    model, x = mlp(), inputs("mlp")
    model[1].weight.requires_grad_(False)
    fisher = diag_fisher(model, x)
    assert "1.weight" not in fisher and "1.bias" in fisher
    assert rel_err(fisher, brute(model, x)) < 1e-8


def test_errors():
    model, x = mlp(), inputs("mlp")
    with pytest.raises(ValueError, match="does not exist"):
        diag_fisher(model, x, variant="bogus")
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="samples"):
            diag_fisher(model, x, variant="sampled", samples=bad)
    for variant in ("empirical", "batch"):
        with pytest.raises(ValueError, match="targets"):
            diag_fisher(model, x, variant=variant)
    with pytest.raises(ValueError, match="output_mask"):
        diag_fisher(model, x, torch.ones(9, dtype=torch.long), variant="empirical", output_mask=MASK)
    assert all(not m._forward_hooks_with_kwargs for m in model.modules())
