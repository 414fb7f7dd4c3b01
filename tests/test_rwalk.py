"""RWalk, both variants, inside Lightning against a plain-PyTorch float64 replay written here (the
path integral, the intervals, the Fisher of tests/oracles.py, the scores, their combination and
normalisation), over two experiences whose length is not a multiple of Δt; and each paper-vs-code
difference of conf/method/rwalk.yaml on its own numbers."""

import copy

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from clexp.core.module import ContinualModule
from clexp.data.loader import TensorLoader
from clexp.methods.rwalk import DEFAULT_EPS, RWalk, RWalkPenalty, combine, interval_score, min_max
from clexp.models import MLP
from tests import oracles

N, BATCH, EPOCHS, DT, ALPHA, LR = 24, 8, 2, 4, 0.7, 0.1  # 6 steps per experience: intervals 4 + 2
# strong enough that in experience 2 the penalty pulls some parameters against their task gradient
LAM = {"paper": 1e-3, "code": 2.0}


def OPT(params):  # momentum: an update may go against the step's own gradient (negative interval scores)
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def data(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 5, generator=g), torch.randint(0, 3, (N,), generator=g)


def batches(x, y):
    return [(x[b:b + BATCH], y[b:b + BATCH]) for b in range(0, N, BATCH)] * EPOCHS


def replay(model, variant, experiences):
    """The importance after each experience, computed in float64 from the replayed trajectory."""
    eps = DEFAULT_EPS[variant]
    half = 0.5 if variant == "paper" else 1.0
    model = copy.deepcopy(model)
    params = list(model.parameters())
    d = lambda ts: [t.detach().double().clone() for t in ts]  # noqa: E731
    Fr = score = imp = anchor = None
    out = []
    for x, y in experiences:
        opt = OPT(params)
        omega = [torch.zeros_like(p) for p in d(params)]
        istart, exp_score, pos = d(params), [torch.zeros_like(p) for p in d(params)], 0
        for xb, yb in batches(x, y):
            if pos % DT == 0:  # the running Fisher at the interval's start, from this batch
                twin = copy.deepcopy(model).double()
                new = list(oracles.fisher(twin, xb.double()).values())
                Fr = new if Fr is None else [ALPHA * a + (1 - ALPHA) * b for a, b in zip(new, Fr)]
            model.train()
            task = F.cross_entropy(model(xb), yb)
            g = torch.autograd.grad(task, params, retain_graph=True)
            pen = 0.0 if imp is None else \
                LAM[variant] * sum((o * (p - a) ** 2).sum() for o, p, a in zip(imp, params, anchor))
            opt.zero_grad()
            (task + pen).backward()
            before = d(params)
            opt.step()
            after = d(params)
            omega = [o - gi.double() * (a - b) for o, gi, a, b in zip(omega, g, after, before)]
            pos += 1
            if pos % DT == 0 or (pos == len(batches(x, y)) and variant == "paper"):  # close (paper: the last too)
                r = [o / (half * f * (a - s0) ** 2 + eps) for o, f, a, s0 in zip(omega, Fr, after, istart)]
                if variant == "code":
                    r = [ri.clamp_min(0) for ri in r]
                exp_score = [e + ri for e, ri in zip(exp_score, r)]
                omega, istart = [torch.zeros_like(o) for o in omega], after
        new = [e.clamp_min(0) for e in exp_score] if variant == "paper" else exp_score
        if score is None:
            score = new
        elif variant == "paper":
            score = [(s + n) / 2 for s, n in zip(score, new)]
        else:
            score = [s + (s + n) / 2 for s, n in zip(score, new)]
        if variant == "paper":
            imp = [f + s for f, s in zip(Fr, score)]
        else:
            lo_f, hi_f = min(f.min() for f in Fr), max(f.max() for f in Fr)
            lo_s, hi_s = min(s.min() for s in score), max(s.max() for s in score)
            imp = [(f - lo_f) / (hi_f - lo_f + 1e-32) + (s - lo_s) / (hi_s - lo_s + 1e-32) for f, s in zip(Fr, score)]
        imp = [i.float() for i in imp]
        anchor = [p.detach().clone() for p in params]
        out.append([i.double() for i in imp])
    return out


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_importance_matches_the_float64_replay(variant):
    torch.manual_seed(0)
    model = MLP((5,), 3, hidden=[4])
    expected = replay(model, variant, [data(1), data(2)])
    module = ContinualModule(model, OPT, RWalkPenalty(LAM[variant]))
    cb = RWalk(alpha=ALPHA, update_every=DT, variant=variant, fisher_variant="exact", plot=False)
    reg = module.regularizer
    for k, (x, y) in enumerate([data(1), data(2)]):
        trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
        trainer.fit(module, TensorLoader((x, y, torch.zeros(N, dtype=torch.long)), BATCH, shuffle=False))
        got = {n: reg.importance(n).double() for n in reg.names}
        assert oracles.rel_err(got, dict(zip(reg.names, expected[k]))) < 1e-4, (variant, k)
    assert reg.scale == LAM[variant]  # λ·Σ (F + s)(θ − θ*)², no ½
    if variant == "code":  # each of F and s in [0, 1]: the importance in [0, 2]
        assert max(float(reg.importance(n).max()) for n in reg.names) <= 2 + 1e-6


# ---------------------------------------------------------------- the differences, one at a time


def test_difference_1_the_half_in_the_denominator():
    omega, drift, fisher = [torch.tensor([0.3])], [torch.tensor([0.2])], [torch.tensor([5.0])]
    paper = interval_score(omega, drift, fisher, 0.01, "paper")[0]
    code = interval_score(omega, drift, fisher, 0.01, "code")[0]
    assert torch.allclose(paper, torch.tensor(0.3 / (0.5 * 5.0 * 0.04 + 0.01)))
    assert torch.allclose(code, torch.tensor(0.3 / (5.0 * 0.04 + 0.01)))


def test_difference_2_negative_scores_clipped_per_experience_or_per_interval():
    """Two intervals scoring +2 and −3: the paper clips their sum (0), the code each of them (2 + 0)."""
    one, zero = [torch.ones(1)], [torch.zeros(1)]
    paper = [interval_score([torch.tensor([w])], one, zero, 1.0, "paper")[0] for w in (2.0, -3.0)]
    code = [interval_score([torch.tensor([w])], one, zero, 1.0, "code")[0] for w in (2.0, -3.0)]
    assert torch.equal(sum(paper), torch.tensor([-1.0])) and torch.equal(sum(paper).clamp_min(0), torch.zeros(1))
    assert torch.equal(sum(code), torch.tensor([2.0]))


@pytest.mark.parametrize("variant", ["paper", "code"])
def test_difference_2_inside_the_callback(variant):
    """A negative ΔL: the code's interval adds nothing, the paper's adds its negative score; at the
    consolidation the paper clips the experience's score, the code's is already ≥ 0."""
    torch.manual_seed(0)
    module = ContinualModule(MLP((5,), 3, hidden=[4]), OPT, RWalkPenalty(LAM[variant]))
    cb = RWalk(alpha=ALPHA, update_every=DT, variant=variant, fisher_variant="exact", plot=False)
    x, y = data(1)
    trainer = pl.Trainer(max_steps=DT, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(module, TensorLoader((x, y, torch.zeros(N, dtype=torch.long)), BATCH, shuffle=False))
    reg = module.regularizer
    params = cb._params(module)
    old = [s.clone() for s in reg.running("score")]
    torch._foreach_zero_(reg.running("expscore"))
    for o in reg.running("omega"):
        o.fill_(-1.0)  # an interval whose every parameter increased the loss
    cb.close_interval(reg, params)
    exp = reg.running("expscore")
    assert all(bool((e < 0).all()) for e in exp) if variant == "paper" else all(bool((e == 0).all()) for e in exp)
    importance = cb.estimate(trainer, module)
    for o, s in zip(old, reg.running("score")):
        expected = 0.5 * (o + 0) if variant == "paper" else o + 0.5 * (o + 0)  # the new score: 0
        assert torch.allclose(s, expected)
    assert all(bool((v >= 0).all()) for v in importance.values())


def test_difference_3_eps_defaults():
    assert RWalk(variant="paper").eps == 1e-8 and RWalk(variant="code").eps == 1e-3
    assert RWalk(variant="code", eps=0.5).eps == 0.5


def test_difference_4_min_max_over_all_parameters_together():
    a, b = torch.tensor([1.0, 3.0]), torch.tensor([[5.0], [2.0]])
    na, nb = min_max([a, b])
    assert torch.allclose(na, torch.tensor([0.0, 0.5])) and torch.allclose(nb, torch.tensor([[1.0], [0.25]]))


def test_difference_5_scores_across_experiences():
    old, new = [torch.tensor([4.0])], [torch.tensor([2.0])]
    assert torch.equal(combine(old, new, True, "paper")[0], new[0])
    assert torch.equal(combine(old, new, True, "code")[0], new[0])  # the code's doubling, then half of it
    assert torch.allclose(combine(old, new, False, "paper")[0], torch.tensor([3.0]))  # ½(4 + 2)
    assert torch.allclose(combine(old, new, False, "code")[0], torch.tensor([7.0]))  # 4 + ½(4 + 2)


@pytest.mark.parametrize("variant,closed", [("paper", True), ("code", False)])
def test_difference_6_the_incomplete_last_interval(variant, closed):
    """6 steps with Δt = 4: the paper's experience score holds the last 2 steps' interval, the code's not."""
    torch.manual_seed(0)
    module = ContinualModule(MLP((5,), 3, hidden=[4]), OPT, RWalkPenalty(LAM[variant]))
    cb = RWalk(alpha=ALPHA, update_every=DT, variant=variant, fisher_variant="exact", plot=False)
    closes = []
    orig = cb.close_interval
    cb.close_interval = lambda reg, params: (closes.append(reg._steps), orig(reg, params))
    x, y = data(1)
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[cb])
    trainer.fit(module, TensorLoader((x, y, torch.zeros(N, dtype=torch.long)), BATCH, shuffle=False))
    assert closes == ([4, 6] if closed else [4])


@pytest.mark.parametrize("kwargs,key", [({"variant": "both"}, "variant"), ({"eps": 0.0}, "eps"),
                                        ({"alpha": 0}, "alpha"), ({"update_every": 0}, "update_every")])
def test_bad_values_name_their_argument(kwargs, key):
    from clexp.config.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        RWalk(**kwargs)
